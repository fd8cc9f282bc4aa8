"""The ``systemd`` command: a service and a timer unit, printed, installed or removed.

``OnCalendar=`` names the zone of ``--at``, which systemd reads itself: no conversion, no
daylight-saving drift. Root gets system units, anyone else user units; with ``--dir`` they go
into that folder only, and systemd is not told. The units carry the crontab line's marker:
``install`` replaces and ``uninstall`` removes only units with exactly that marker.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import math
import os
import pwd
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple
from urllib.parse import quote

from . import schedule
from .errors import ConfigError, LocalError, TokenSaveError
from .parsers import resolve_path
from .schedule import APP, account_flags, describe

UNIT_PREFIX = "xts-token-refresh"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
LINGER_DIR = Path("/var/lib/systemd/linger")
ZONEINFO_DIR = Path("/usr/share/zoneinfo")
# --days: OnCalendar='s days, and the words the timer's description uses.
CALENDAR_DAYS = MappingProxyType(
    {"daily": ("*-*-*", "every day"), "weekdays": ("Mon..Fri *-*-*", "on weekdays")}
)
# Beyond the run's deadline, the post-refresh hook and the alerts: start-up and the summary.
START_AND_REPORT_SECONDS = 60
MAX_UNIT_NAME = 255
# ExecStart words written bare; any other is quoted (and every % and $ doubled).
BARE_WORD = re.compile(r"[A-Za-z0-9_@+=:,./-]+")
PROBE_SECONDS = 15
SYSTEMCTL_SECONDS = 90
# The user manager has no network-online.target: a start before the network is up
# (Persistent= at boot) is retried within XTS_DEADLINE.
SYSTEM_DEPENDENCIES = "Wants=network-online.target\nAfter=network-online.target\n"
USER_UNIT = (
    "# A user unit: it runs as {0} while {0} has a session, "
    "or always with lingering (loginctl enable-linger {0})."
)
HEADER = """\
{marker}
# Written by `xts_token_refresh.py systemd install`, which replaces it; `xts_token_refresh.py
# systemd uninstall{flags}` removes it. See CRON_SETUP.md, "Alternative: a systemd timer".
"""
# The texts below follow HEADER.
SERVICE = """
[Unit]
Description=Refresh the XTS API session tokens{whose}
Documentation={documentation}
{dependencies}
[Service]
Type=oneshot
{runs_as}
WorkingDirectory={folder}
ExecStart={command}
# New files (tokens, logs) readable by the owner only.
UMask=0077
{reason}
TimeoutStartSec={timeout}
# The output goes to the journal (journalctl{user} -u {name}.service). To append it to
# cron_output.log as cron does, add:
#StandardOutput=append:{folder}/cron_output.log
#StandardError=inherit
# A failed run (exit code 1-5) marks the unit failed: `systemctl --failed` lists it, and
# OnFailure= in [Unit] can start a unit of yours that alerts you.
"""
TIMER = """
[Unit]
Description=Refresh the XTS tokens at {when} {zone} {days}{whose}
Documentation={documentation}

[Timer]
# At {when} in {zone} whatever this machine's zone is (systemd 235 or newer).
OnCalendar={calendar}
# A start missed while the machine was off or asleep happens as soon as it is back.
Persistent=true
AccuracySec=1min

[Install]
WantedBy=timers.target
"""


class Scope(NamedTuple):
    """Who runs the units and where they go."""

    system: bool  # a system unit (root), else a user unit
    user: str
    group: str
    folder: Path
    told: bool  # systemd is told (daemon-reload, enable); False with --dir


class Units(NamedTuple):
    """The two unit files: their name (without the suffix), paths and text."""

    name: str
    service_path: Path
    timer_path: Path
    service: str
    timer: str


def unit_name(accounts: tuple[str, ...] = ()) -> str:
    """The units' name (no suffix) for ``accounts`` (() is all; a ``-`` in a name is written
    ``\\x2d`` as systemd-escape does); ConfigError for a bad name or one too long."""
    selection = schedule.account_selection(accounts)
    name = "-".join([UNIT_PREFIX, *(account.replace("-", "\\x2d") for account in selection)])
    if len(name) + len(".service") > MAX_UNIT_NAME:
        raise ConfigError(
            f"The units for {describe(selection)} would have a name longer than systemd "
            f"allows ({MAX_UNIT_NAME} characters).",
            "Install units for fewer accounts at a time, or one for all accounts.",
        )
    return name


def exec_word(word: str, *, program: bool = False) -> str:
    """``word`` as one ``ExecStart=`` word: bare when plain, else double-quoted (``\\`` and ``"``
    escaped); ``%`` doubled, and ``$`` unless it is the ``program`` (systemd expands no $ there)."""
    schedule.refuse_control_characters(word, "a systemd unit")
    if not BARE_WORD.fullmatch(word):
        word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    word = word.replace("%", "%%")  # systemd expands %x specifiers in most values
    return word if program else word.replace("$", "$$")


def unit_scope(
    environ: Mapping[str, str], unit_dir: str | None = None, euid: int | None = None
) -> Scope:
    """The scope of the user ``euid`` (root: system units; anyone else: user units), and its
    folder: ``unit_dir`` (``--dir``), else systemd's own."""
    euid = os.geteuid() if euid is None else euid
    try:
        entry: pwd.struct_passwd | None = pwd.getpwuid(euid)
    except KeyError:
        entry = None
    user = entry.pw_name if entry else environ.get("USER") or environ.get("LOGNAME") or str(euid)
    gid = os.getegid() if euid == os.geteuid() or entry is None else entry.pw_gid
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    system = euid == 0
    if unit_dir is not None or system:
        folder = SYSTEM_UNIT_DIR if unit_dir is None else resolve_path(unit_dir)
        return Scope(system, user, group, folder, told=unit_dir is None)
    config = environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(config):
        home = environ.get("HOME") or (entry.pw_dir if entry else "")
        if not home:
            raise ConfigError("HOME is not set, so the user unit folder is not known.")
        config = os.path.join(home, ".config")
    return Scope(system, user, group, Path(config) / "systemd" / "user", told=True)


def start_timeout() -> tuple[int, str]:
    """``TimeoutStartSec=``, and why: the longest XTS_DEADLINE the settings allow, then the
    hook's and the alerts' own bounds, so no run within its deadline is stopped."""
    from .alerts import PING_BUDGET_SECONDS, TELEGRAM_BUDGET_SECONDS
    from .hook import HOOK_MAX_SECONDS
    from .settings import MAX_DEADLINE_SECONDS

    alerts = math.ceil(TELEGRAM_BUDGET_SECONDS + PING_BUDGET_SECONDS)
    parts = (MAX_DEADLINE_SECONDS, HOOK_MAX_SECONDS, alerts, START_AND_REPORT_SECONDS)
    return sum(map(math.ceil, parts)), (
        f"XTS_DEADLINE at its maximum ({MAX_DEADLINE_SECONDS:g} s) + {HOOK_MAX_SECONDS:g} s "
        f"for the post-refresh hook + {alerts} s for Telegram and the health check + "
        f"{START_AND_REPORT_SECONDS} s to start and report"
    )


def render(
    at: str,
    zone: str,
    days: str,
    scope: Scope,
    *,
    app_dir: Path = APP,
    arguments: tuple[str, ...] = (),
    accounts: tuple[str, ...] = (),
) -> Units:
    """The service and the timer that run the job in ``app_dir`` at ``at`` in ``zone``, ``days``."""
    selection = schedule.account_selection(accounts)
    name = unit_name(selection)
    words = schedule.job_words(app_dir, arguments, selection, "a systemd unit")
    if "\\" in str(app_dir) or str(app_dir) != str(app_dir).strip():
        raise ConfigError(
            f"The program's folder {str(app_dir)!r} holds a backslash or surrounding spaces, "
            "which systemd's WorkingDirectory= cannot carry.",
            "Move the program to a folder with a plain name, or use `cron install`.",
        )
    hour, minute = schedule.parse_at(at)
    calendar = f"{CALENDAR_DAYS[schedule.check_days(days)][0]} {hour:02d}:{minute:02d}:00 {zone}"
    schedule.named_zone(zone)  # which refuses a name OnCalendar= could not carry, too
    timeout, reason = start_timeout()
    fields = {
        "name": name,
        "user": "" if scope.system else " --user",
        "dependencies": SYSTEM_DEPENDENCIES if scope.system else "",
        "runs_as": f"User={scope.user}\nGroup={scope.group}"
        if scope.system
        else USER_UNIT.format(scope.user),
        "calendar": calendar,
        "when": f"{hour:02d}:{minute:02d}",
        "zone": zone,
        "days": CALENDAR_DAYS[days][1],
        "marker": schedule.own_marker(app_dir, selection),
        "flags": account_flags(selection),
        "whose": f" ({describe(selection)})" if selection else "",
        "documentation": "file://" + quote(str(app_dir / "CRON_SETUP.md")).replace("%", "%%"),
        "folder": str(app_dir).replace("%", "%%"),
        "command": " ".join(exec_word(word, program=n == 0) for n, word in enumerate(words)),
        "reason": textwrap.fill(
            f"# {reason}; the run stops itself before this.", 94, subsequent_indent="# "
        ),
        "timeout": str(timeout),
    }
    paths = scope.folder / f"{name}.service", scope.folder / f"{name}.timer"
    service, timer = ((HEADER + text).format(**fields) for text in (SERVICE, TIMER))
    return Units(name, *paths, service, timer)


def owner(path: Path, accounts: tuple[str, ...]) -> str | None:
    """None when ``path`` is missing or this folder's unit for ``accounts``; else whose it is."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except (FileNotFoundError, NotADirectoryError):  # below a file: no unit there either
        return None
    except OSError as exc:
        return f"unknown (it cannot be read: {exc.strerror})"
    if any(schedule.is_own_line(line, APP, accounts) for line in lines):
        return None
    markers = [line[len(schedule.MARKER) :] for line in lines if line.startswith(schedule.MARKER)]
    folders = [line.split("=", 1)[1] for line in lines if line.startswith("WorkingDirectory=")]
    if markers:
        return f"the program in {markers[0].strip()}"
    return (
        f"something else (WorkingDirectory={folders[-1].strip()})" if folders else "something else"
    )


def other_units(folder: Path, name: str) -> list[tuple[str, tuple[str, ...]]]:
    """This folder's timers in ``folder`` other than ``name``'s: their names and accounts."""
    found = []
    for timer in sorted(folder.glob(f"{UNIT_PREFIX}*.timer")):
        if timer.name == f"{name}.timer":
            continue
        with contextlib.suppress(OSError):
            lines = timer.read_text(encoding="utf-8", errors="replace").splitlines()
            marked = [schedule.line_accounts(line) for line in lines if line.startswith("#")]
            found += [(timer.name, accounts) for accounts in marked if accounts is not None][:1]
    return found


class Systemctl:
    """``systemctl`` (``systemctl --user`` for user units), found on the environment's PATH."""

    def __init__(self, scope: Scope, environ: Mapping[str, str]) -> None:
        self.environ = dict(environ)
        self.flags = () if scope.system else ("--user",)

    def shown(self, *args: str) -> str:
        """The command as the operator would type it."""
        return shlex.join(["systemctl", *self.flags, *args])

    def run(self, *args: str, timeout: float = SYSTEMCTL_SECONDS) -> tuple[int, str, str]:
        """``systemctl [--user] args``' exit code, output and complaint; a time-out fails."""
        try:  # found on the environment's PATH
            done = subprocess.run(
                ["systemctl", *self.flags, *args],
                capture_output=True,
                text=True,
                check=False,
                env=self.environ,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return 124, "", f"no answer within {timeout:g} s"
        except OSError as exc:
            missing = exc.errno == errno.ENOENT
            return 127, "", "systemctl is not installed" if missing else str(exc.strerror)
        return done.returncode, done.stdout.strip(), (done.stderr or done.stdout).strip()

    def reachable(self) -> str | None:
        """None when systemctl can talk to the (user's) systemd; else why not."""
        code, _, said = self.run("show", "--property=Version", timeout=PROBE_SECONDS)
        return None if code == 0 else " ".join(said.split()) or f"exit code {code}"

    def must(self, *args: str, written: str) -> None:
        """Run ``systemctl [--user] args``; ConfigError naming what was done when it fails."""
        code, _, said = self.run(*args)
        if code != 0:
            raise ConfigError(
                f"`{self.shown(*args)}` failed: {said or f'exit code {code}'}. {written}",
                "Fix what systemctl names, then run the command again.",
            )


def _notes(scope: Scope, at: str, zone: str) -> list[str]:
    """Notes on the time in this machine's zone, on who runs the units and where, and on
    their time-out."""
    machine, machine_name = schedule.system_zone()
    local = schedule.at_today(at, zone).astimezone(machine)
    notes = [
        f"{at.strip()} {zone} is {local:%H:%M} today in this machine's zone ({machine_name}); "
        f"the timer keeps to {zone} itself, whatever this machine's zone"
    ]
    if not (ZONEINFO_DIR / zone).is_file() and zone not in ("UTC", "Etc/UTC"):
        notes.append(
            f"WARNING: {ZONEINFO_DIR / zone} is missing, and systemd reads OnCalendar='s zone "
            "there: install tzdata (apt-get install tzdata), or the timer will not load."
        )
    notes += filter(None, [schedule.wrapper_not_executable("systemd")])
    told = "" if scope.told else " (systemd is not told: --dir)"
    kind = "system" if scope.system else "user"
    notes.append(f"a {kind} unit in {scope.folder}, run as {scope.user}{told}")
    if scope.system and scope.user == "root":
        example = "a user unit; then `sudo loginctl enable-linger USER`"
        notes.append(schedule.runs_as_root("systemd", "", example))
    elif not scope.system and (LINGER_DIR / scope.user).exists():
        notes.append(f"lingering is on for {scope.user}: the timer runs after logout too")
    elif not scope.system:
        notes.append(
            f"WARNING: a user unit runs only while {scope.user} is logged in: "
            f"`sudo loginctl enable-linger {scope.user}` keeps it running after logout "
            "and starts it at boot."
        )
    timeout, reason = start_timeout()
    return [*notes, f"TimeoutStartSec={timeout}: {reason}"]


def _overlap_warnings(selection: tuple[str, ...], folder: Path, name: str) -> list[str]:
    """Warnings for the accounts the units ``name`` (for ``selection``) log in that another
    timer of this folder in ``folder``, or a crontab line, logs in too."""
    from .cron import read_crontab

    crontab: list[str] = []
    with contextlib.suppress(ConfigError, OSError):  # no cron at all is fine here
        crontab = read_crontab()
    lines = [found for found in map(schedule.line_accounts, crontab) if found is not None]
    others = [*other_units(folder, name), *(("the crontab line", found) for found in lines)]
    remedy = (
        "keep one: `xts_token_refresh.py cron uninstall` or `xts_token_refresh.py systemd "
        "uninstall` (with the --account options it was installed with) removes the other."
    )
    shared = [(where, schedule.shared_accounts(selection, found)) for where, found in others]
    return [
        schedule.overlap_warning(twice, where, "", remedy)
        for where, twice in shared
        if twice is not None
    ]


def _install(units: Units, scope: Scope, selection: tuple[str, ...], systemctl: Systemctl) -> int:
    """``systemd install``: the units written (not over another's), then activated; exit 0,
    ConfigError (2) or LocalError (4) when the folder cannot take them."""
    from .store import write_atomically

    timer = units.timer_path.name
    written = {units.service_path: units.service, units.timer_path: units.timer}
    for path in written:
        other = owner(path, selection)
        if other is not None:
            raise ConfigError(
                f"{path} exists and belongs to {other}, not to this folder's "
                f"{describe(selection)}; nothing was written.",
                "Remove it where it was installed (`xts_token_refresh.py systemd uninstall` "
                f"there, or `{systemctl.shown('disable', '--now', timer)}` and "
                f"`rm {shlex.join(map(str, written))}`), or install units for chosen accounts "
                "(--account NAME), which have names of their own.",
            )
    try:
        scope.folder.mkdir(parents=True, exist_ok=True)
        for path, text in written.items():  # a unit holds no secret: mode 0644
            write_atomically(path, text.encode("utf-8"), mode=0o644, what="the unit")
    except (OSError, TokenSaveError) as exc:
        # write_atomically raises TokenSaveError while it handles the OSError that says why.
        failure = exc if isinstance(exc, OSError) else exc.__context__
        raise LocalError(
            f"Cannot write the units into {scope.folder}: {getattr(failure, 'strerror', exc)}.",
            "Run as root for a system unit, or as the job's own user for a user unit; or "
            "write them elsewhere with --dir DIR.",
        ) from None
    print(f"✓ Wrote {units.service_path}\n✓ Wrote {units.timer_path}")
    _activate(units, scope, selection, systemctl)
    return 0


def _activate(units: Units, scope: Scope, selection: tuple[str, ...], systemctl: Systemctl) -> None:
    """Have systemd load the units and start the timer, or say what to run when systemd is
    not told (--dir) or cannot be reached; ConfigError when systemctl refuses."""
    timer = units.timer_path.name
    activate = [systemctl.shown("daemon-reload"), systemctl.shown("enable", "--now", timer)]
    unreachable = systemctl.reachable() if scope.told else None
    if not scope.told:
        folder = SYSTEM_UNIT_DIR if scope.system else "~/.config/systemd/user"
        print(
            f"  systemd was not told (--dir). To use them, copy both into {folder}, then run: "
            + "; ".join(activate)
        )
    elif unreachable:
        session = (
            "in a login session (ssh, not su or sudo: systemctl --user needs the session's bus)"
        )
        where = "as root" if scope.system else f"as {scope.user} {session}"
        print(
            f"⚠ The timer is NOT active: systemctl cannot reach systemd here ({unreachable}). "
            f"Nothing will run until you run these, {where}, once systemd runs:"
        )
        for command in activate:
            print(f"    {command}")
        if not scope.system:
            print(f"    sudo loginctl enable-linger {scope.user}   # to run after logout too")
    else:
        written = f"{units.service_path} and {units.timer_path} are written."
        systemctl.must("daemon-reload", written=written)
        systemctl.must("enable", "--now", timer, written=written)
        state = systemctl.run("is-active", timer)[1] or "unknown"
        if state == "active":
            print(f"✓ {activate[0]}; {activate[1]}: the timer is active.")
        else:
            status = systemctl.shown("status", timer)
            print(f"⚠ {activate[1]} succeeded, but the timer is {state}: see `{status}`.")
        print(
            f"  Next run: `{systemctl.shown('list-timers', timer)}`; a run now: "
            f"`{systemctl.shown('start', units.service_path.name)}`; remove it with "
            f"`xts_token_refresh.py systemd uninstall{account_flags(selection)}`."
        )


def _uninstall(scope: Scope, selection: tuple[str, ...], systemctl: Systemctl) -> int:
    """``systemd uninstall``: undo ``install`` for the units of ``selection`` only; exit 0,
    or LocalError (4) when they cannot be removed."""
    name = unit_name(selection)
    timer = f"{name}.timer"
    paths = [scope.folder / f"{name}.service", scope.folder / timer]
    owners = {path: owner(path, selection) for path in paths if path.exists() or path.is_symlink()}
    ours = [path for path, other in owners.items() if other is None]
    for path, other in owners.items():
        if other is not None:
            print(f"  Left alone: {path} belongs to {other}.")
    if not ours:
        print(f"Nothing to remove: no {name} units of {APP} in {scope.folder}.")
        return 0
    unreachable = systemctl.reachable() if scope.told else "--dir"
    if not unreachable and scope.folder / timer in ours:
        systemctl.must("disable", "--now", timer, written="Nothing was removed.")
    # The link `enable` made, should systemd not be there to remove it.
    link = scope.folder / "timers.target.wants" / timer
    try:
        for path in ours:
            path.unlink()
        if scope.folder / timer in ours and link.is_symlink():
            link.unlink()
    except OSError as exc:
        raise LocalError(f"Cannot remove the units from {scope.folder}: {exc.strerror}.") from None
    print("".join(f"✓ Removed {path}\n" for path in ours), end="")
    if not unreachable:
        systemctl.must("daemon-reload", written="The unit files are removed.")
        stopped = systemctl.shown("disable", "--now", timer)
        print(f"✓ {stopped}; {systemctl.shown('daemon-reload')}")
    elif scope.told:
        print(f"  systemctl cannot reach systemd here ({unreachable}): there was no timer to stop.")
    remaining = [found for _, found in other_units(scope.folder, name)] if not selection else []
    if remaining:
        print(schedule.remaining_note("systemd", "timer", remaining))
    return 0


def systemd_command(
    action: str,
    at: str,
    zone: str,
    days: str,
    *,
    environ: Mapping[str, str],
    arguments: tuple[str, ...] = (),
    accounts: tuple[str, ...] = (),
    unit_dir: str | None = None,
    euid: int | None = None,
    holders: tuple[str, ...] = (),
) -> int:
    """``systemd print|install|uninstall`` for ``accounts`` (() is the units for all
    accounts); exit 0, ConfigError (2) or LocalError (4)."""
    selection = schedule.account_selection(accounts)
    scope = unit_scope(environ, unit_dir, euid)
    systemctl = Systemctl(scope, environ)
    if action == "uninstall":
        return _uninstall(scope, selection, systemctl)
    units = render(at, zone, days, scope, arguments=arguments, accounts=selection)
    notes = [*_notes(scope, at, zone), schedule.holder_warning("systemd", arguments, holders)]
    if action == "install":
        notes += _overlap_warnings(selection, scope.folder, units.name)
    for note in filter(None, notes):
        print(f"# {note}", file=sys.stderr)
    if action == "print":
        print(f"# file: {units.service_path}\n{units.service}")
        print(f"# file: {units.timer_path}\n{units.timer}", end="")
        return 0
    return _install(units, scope, selection, systemctl)
