"""The ``systemd`` command: a service and a timer unit, printed, installed or removed.

The alternative to ``cron``. systemd reads a zone in ``OnCalendar=`` itself, so the time is
written as given (``*-*-* 09:00:00 Asia/Kolkata``), without conversion or daylight-saving
drift. The service runs the wrapper with absolute paths, the path flags and ``--account NAME``
passed on, as the crontab line does.

Where the units go: as root, system units in ``/etc/systemd/system`` (``User=root``, warned
of); as anyone else, user units in ``~/.config/systemd/user`` (``$XDG_CONFIG_HOME`` when set),
which run only while the user has a session unless lingering is on; with ``--dir DIR``, into
DIR only, and systemd is not told.

Names: ``xts-token-refresh.service``/``.timer`` for all accounts; for chosen accounts
``xts-token-refresh-<names>``, the names sorted, each once, joined by ``-``, a ``-`` inside a
name written ``\\x2d`` as ``systemd-escape`` does. Each unit's first line is the crontab
line's marker: ``install`` replaces and ``uninstall`` removes only units with exactly that
marker, never another folder's. ``install`` then runs ``systemctl daemon-reload`` and
``enable --now <timer>`` when ``systemctl`` can reach systemd; when it cannot, the files are
written, exit 0, and a ``⚠`` line says what to run. ``uninstall`` reverses exactly that.
"""

from __future__ import annotations

import contextlib
import grp
import math
import os
import pwd
import re
import shlex
import shutil
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
from .schedule import account_flags, describe
from .settings import APP_DIR, resolve_path

UNIT_PREFIX = "xts-token-refresh"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
LINGER_DIR = Path("/var/lib/systemd/linger")
ZONEINFO_DIR = Path("/usr/share/zoneinfo")
CALENDAR_DAYS = MappingProxyType({"daily": "*-*-*", "weekdays": "Mon..Fri *-*-*"})
DAY_WORDS = MappingProxyType({"daily": "every day", "weekdays": "on weekdays"})
# Beyond the run's deadline, the post-refresh hook and the alerts: start-up and the summary.
START_AND_REPORT_SECONDS = 60
MAX_UNIT_NAME = 255
# ExecStart words written bare; any other is quoted (and every % and $ doubled).
BARE_WORD = re.compile(r"[A-Za-z0-9_@+=:,./-]+")
PROBE_SECONDS = 15
SYSTEMCTL_SECONDS = 90
HEADER = """\
{marker}
# Written by `xts_token_refresh.py systemd install`, which replaces it; `xts_token_refresh.py
# systemd uninstall{flags}` removes it. See CRON_SETUP.md, "Alternative: a systemd timer".
"""
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
# The output goes to the journal ({journal}). To append it to
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

    @property
    def timer_name(self) -> str:
        """``<name>.timer``."""
        return f"{self.name}.timer"


def unit_name(accounts: tuple[str, ...] = ()) -> str:
    """The units' name (no suffix) for ``accounts`` (() is all accounts); ConfigError for a
    name no account may have, or a selection whose name would be too long for systemd."""
    selection = schedule.account_selection(accounts)
    if not selection:
        return UNIT_PREFIX
    name = "-".join([UNIT_PREFIX, *(account.replace("-", "\\x2d") for account in selection)])
    if len(name) + len(".service") > MAX_UNIT_NAME:
        raise ConfigError(
            f"The units for {describe(selection)} would have a name longer than systemd "
            f"allows ({MAX_UNIT_NAME} characters).",
            "Install units for fewer accounts at a time, or one for all accounts.",
        )
    return name


def on_calendar(at: str, zone: str, days: str) -> str:
    """The ``OnCalendar=`` value: ``[Mon..Fri ]*-*-* HH:MM:00 <zone>``; ConfigError for a bad
    ``at``, an unknown zone or days."""
    schedule.check_days(days)
    hour, minute = schedule.parse_at(at)
    schedule.named_zone(zone)
    if not re.fullmatch(r"[A-Za-z0-9_+./-]+", zone):
        raise ConfigError(f"Unknown time zone {zone!r}.", "Use a name such as Asia/Kolkata.")
    return f"{CALENDAR_DAYS[days]} {hour:02d}:{minute:02d}:00 {zone}"


def specifiers_escaped(text: str) -> str:
    """``text`` with every ``%`` doubled: systemd expands ``%x`` specifiers in most values."""
    return text.replace("%", "%%")


def exec_word(word: str, *, program: bool = False) -> str:
    """``word`` as one word of ``ExecStart=``: bare when plain, else double-quoted with ``\\``
    and ``"`` escaped; ``%`` doubled, and ``$`` in an argument (systemd expands specifiers,
    and variables in the arguments, inside quotes too; not variables in the ``program``)."""
    schedule.refuse_control_characters(word, "a systemd unit")
    if not BARE_WORD.fullmatch(word):
        word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    word = specifiers_escaped(word)
    return word if program else word.replace("$", "$$")


def _check_folder(folder: Path) -> None:
    """Nothing when ``folder`` can be a unit's WorkingDirectory= value; ConfigError otherwise."""
    text = str(folder)
    schedule.refuse_control_characters(text, "a systemd unit")
    if "\\" in text or text != text.strip():
        raise ConfigError(
            f"The program's folder {text!r} holds a backslash or surrounding spaces, which "
            "systemd's WorkingDirectory= cannot carry.",
            "Move the program to a folder with a plain name, or use `cron install`.",
        )


def unit_scope(
    environ: Mapping[str, str], unit_dir: str | None = None, euid: int | None = None
) -> Scope:
    """The scope of the invoking user ``euid`` (root: system units; anyone else: user units),
    and the folder: ``unit_dir`` (``--dir``), else systemd's own for that scope."""
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
    if unit_dir is not None:
        return Scope(system, user, group, resolve_path(unit_dir), told=False)
    if system:
        return Scope(system, user, group, SYSTEM_UNIT_DIR, told=True)
    config = environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(config):
        home = environ.get("HOME") or (entry.pw_dir if entry else "")
        if not home:
            raise ConfigError("HOME is not set, so the user unit folder is not known.")
        config = os.path.join(home, ".config")
    return Scope(system, user, group, Path(config) / "systemd" / "user", told=True)


def start_timeout() -> tuple[int, str]:
    """``TimeoutStartSec=`` and why: a run stops itself at its deadline, which a settings
    file may set up to the longest the settings allow; then come the post-refresh hook and
    the alerts, each bounded. The unit never stops a run that keeps within those bounds."""
    from .delivery import PING_BUDGET_SECONDS, TELEGRAM_BUDGET_SECONDS
    from .hook import HOOK_MAX_SECONDS
    from .settings import MAX_DEADLINE_SECONDS

    alerts = math.ceil(TELEGRAM_BUDGET_SECONDS + PING_BUDGET_SECONDS)
    parts = (MAX_DEADLINE_SECONDS, HOOK_MAX_SECONDS, alerts, START_AND_REPORT_SECONDS)
    reason = (
        f"XTS_DEADLINE at its maximum ({MAX_DEADLINE_SECONDS:g} s) + {HOOK_MAX_SECONDS:g} s "
        f"for the post-refresh hook + {alerts} s for Telegram and the health check + "
        f"{START_AND_REPORT_SECONDS} s to start and report"
    )
    return sum(map(math.ceil, parts)), reason


def render(
    at: str,
    zone: str,
    days: str,
    scope: Scope,
    *,
    app_dir: Path = APP_DIR,
    arguments: tuple[str, ...] = (),
    accounts: tuple[str, ...] = (),
) -> Units:
    """The service and the timer that run the wrapper in ``app_dir`` (with ``arguments``, then
    ``--account NAME`` for each of ``accounts``) at ``at`` in ``zone``, ``days``."""
    calendar = on_calendar(at, zone, days)
    selection = schedule.account_selection(accounts)
    name = unit_name(selection)
    _check_folder(app_dir)
    words = [str(app_dir / "refresh_xts_token.sh"), *arguments]
    words += [part for account in selection for part in ("--account", account)]
    timeout, reason = start_timeout()
    header = HEADER.format(
        marker=schedule.own_marker(app_dir, selection), flags=account_flags(selection)
    )
    shared = {
        "whose": f" ({describe(selection)})" if selection else "",
        "documentation": specifiers_escaped("file://" + quote(str(app_dir / "CRON_SETUP.md"))),
    }
    service = SERVICE.format(
        **shared,
        **_runs_as(scope, name),
        folder=specifiers_escaped(str(app_dir)),
        command=" ".join(exec_word(word, program=n == 0) for n, word in enumerate(words)),
        reason=textwrap.fill(
            f"# {reason}; the run stops itself before this.", 94, subsequent_indent="# "
        ),
        timeout=timeout,
    )
    hour, minute = schedule.parse_at(at)
    timer = TIMER.format(
        **shared, when=f"{hour:02d}:{minute:02d}", zone=zone, days=DAY_WORDS[days],
        calendar=calendar,
    )  # fmt: skip
    folder = scope.folder
    paths = folder / f"{name}.service", folder / f"{name}.timer"
    return Units(name, *paths, header + service, header + timer)


def _runs_as(scope: Scope, name: str) -> dict[str, str]:
    """The service's lines that depend on ``scope``: its dependencies, its user, and how to
    read its journal."""
    if scope.system:
        return {
            "dependencies": "Wants=network-online.target\nAfter=network-online.target\n",
            "runs_as": f"User={scope.user}\nGroup={scope.group}",
            "journal": f"journalctl -u {name}.service",
        }
    # The user manager has no network-online.target: a start before the network is up
    # (Persistent= at boot) is retried within XTS_DEADLINE.
    return {
        "dependencies": "",
        "runs_as": f"# A user unit: it runs as {scope.user} while {scope.user} has a session, "
        f"or always with lingering (loginctl enable-linger {scope.user}).",
        "journal": f"journalctl --user -u {name}.service",
    }


def owner(path: Path, app_dir: Path, accounts: tuple[str, ...]) -> str | None:
    """None when ``path`` is missing or this folder's unit for ``accounts``; otherwise who
    it belongs to, for the messages."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except (FileNotFoundError, NotADirectoryError):  # below a file: no unit there either
        return None
    except OSError as exc:
        return f"unknown (it cannot be read: {exc.strerror})"
    if any(schedule.is_own_line(line, app_dir, accounts) for line in lines):
        return None
    markers = [line for line in lines if line.startswith(schedule.MARKER)]
    if markers:
        return f"the program in {markers[0][len(schedule.MARKER) :].strip()}"
    folders = [line.split("=", 1)[1] for line in lines if line.startswith("WorkingDirectory=")]
    return (
        f"something else (WorkingDirectory={folders[-1].strip()})" if folders else "something else"
    )


def other_units(folder: Path, app_dir: Path, name: str) -> list[tuple[str, tuple[str, ...]]]:
    """This folder's other timers in ``folder``: their names and accounts."""
    found = []
    for timer in sorted(folder.glob(f"{UNIT_PREFIX}*.timer")):
        if timer.name == f"{name}.timer":
            continue
        with contextlib.suppress(OSError):
            for line in timer.read_text(encoding="utf-8", errors="replace").splitlines():
                selection = schedule.line_accounts(line, app_dir) if line[:1] == "#" else None
                if selection is not None:
                    found.append((timer.name, selection))
                    break
    return found


def _overlap_warnings(selection: tuple[str, ...], folder: Path, name: str) -> list[str]:
    """Warnings for the accounts the units ``name`` for ``selection`` log in that another
    timer of this folder in ``folder``, or a crontab line, logs in too."""
    from .cron import read_crontab

    crontab: list[str] = []
    with contextlib.suppress(ConfigError, OSError):  # no cron at all is fine here
        crontab = read_crontab()
    others = other_units(folder, APP_DIR, name)
    for found in map(schedule.line_accounts, crontab):
        if found is not None:
            others.append(("the crontab line", found))
    remedy = (
        "keep one: `xts_token_refresh.py cron uninstall` or `xts_token_refresh.py systemd "
        "uninstall` (with the --account options it was installed with) removes the other."
    )
    warnings = []
    for where, found in others:
        twice = schedule.shared_accounts(selection, found)
        if twice is not None:
            warnings.append(schedule.overlap_warning(twice, where, "", remedy))
    return warnings


class Systemctl:
    """``systemctl`` (``systemctl --user`` for user units), found on the environment's PATH."""

    def __init__(self, scope: Scope, environ: Mapping[str, str]) -> None:
        self.environ = dict(environ)
        self.program = shutil.which("systemctl", path=environ.get("PATH") or os.defpath)
        self.flags = () if scope.system else ("--user",)

    def shown(self, *args: str) -> str:
        """The command as the operator would type it."""
        return shlex.join(["systemctl", *self.flags, *args])

    def run(
        self, *args: str, timeout: float = SYSTEMCTL_SECONDS
    ) -> subprocess.CompletedProcess[str]:
        """Run ``systemctl [--user] args``; a time-out is a failed run."""
        if self.program is None:
            return subprocess.CompletedProcess(args, 127, "", "systemctl is not installed")
        try:
            return subprocess.run(
                [self.program, *self.flags, *args],
                capture_output=True,
                text=True,
                check=False,
                env=self.environ,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(args, 124, "", f"no answer within {timeout:g} s")
        except OSError as exc:
            return subprocess.CompletedProcess(args, 126, "", str(exc.strerror))

    def reachable(self) -> tuple[bool, str]:
        """Whether systemctl can talk to the (user's) systemd, and why not."""
        probe = self.run("show", "--property=Version", timeout=PROBE_SECONDS)
        if probe.returncode == 0:
            return True, ""
        said = " ".join((probe.stderr or probe.stdout).split())
        return False, said or f"exit code {probe.returncode}"

    def must(self, *args: str, written: str) -> str:
        """Run ``systemctl [--user] args``; its output, or ConfigError naming what was done."""
        done = self.run(*args)
        if done.returncode != 0:
            reason = (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"
            raise ConfigError(
                f"`{self.shown(*args)}` failed: {reason}. {written}",
                "Fix what systemctl names, then run the command again.",
            )
        return done.stdout.strip()


def _scope_notes(scope: Scope, at: str, zone: str) -> list[str]:
    """Who runs the units, where, and the time in this machine's zone."""
    machine, machine_name = schedule.system_zone()
    notes = []
    with contextlib.suppress(ValueError, OverflowError):
        local = schedule.at_today(at, zone).astimezone(machine)
        notes.append(
            f"{at.strip()} {zone} is {local:%H:%M} today in this machine's zone "
            f"({machine_name}); the timer keeps to {zone} itself, whatever this machine's zone"
        )
    if not (ZONEINFO_DIR / zone).is_file() and zone not in ("UTC", "Etc/UTC"):
        notes.append(
            f"WARNING: {ZONEINFO_DIR / zone} is missing, and systemd reads OnCalendar='s zone "
            "there: install tzdata (apt-get install tzdata), or the timer will not load."
        )
    notes += filter(None, [schedule.wrapper_not_executable("systemd")])
    kind = "system" if scope.system else "user"
    told = "" if scope.told else " (systemd is not told: --dir)"
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
    return notes


def _write_units(units: Units, folder: Path) -> None:
    """Write both units into ``folder`` (made if missing), each atomically, mode 0644 (a unit
    holds no secret; systemd reads it); LocalError when the folder cannot take them."""
    from .store import write_atomically

    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path, text in ((units.service_path, units.service), (units.timer_path, units.timer)):
            write_atomically(path, text.encode("utf-8"), mode=0o644, what="the unit")
    except (OSError, TokenSaveError) as exc:
        # write_atomically raises TokenSaveError from None in handling an OSError, which
        # says why in the words this message has always used.
        failure = exc if isinstance(exc, OSError) else exc.__context__
        reason = getattr(failure, "strerror", None) or str(exc)
        raise LocalError(
            f"Cannot write the units into {folder}: {reason}.",
            "Run as root for a system unit, or as the job's own user for a user unit; or "
            "write them elsewhere with --dir DIR.",
        ) from None


def _refuse_foreign(units: Units, selection: tuple[str, ...], systemctl: Systemctl) -> None:
    """Nothing when neither unit file exists or both are this folder's for ``selection``;
    ConfigError naming the other owner otherwise."""
    for path in (units.service_path, units.timer_path):
        other = owner(path, APP_DIR, selection)
        if other is not None:
            files = shlex.join([str(units.service_path), str(units.timer_path)])
            raise ConfigError(
                f"{path} exists and belongs to {other}, not to this folder's "
                f"{describe(selection)}; nothing was written.",
                "Remove it where it was installed (`xts_token_refresh.py systemd uninstall` "
                f"there, or `{systemctl.shown('disable', '--now', units.timer_name)}` and "
                f"`rm {files}`), or install units for chosen accounts (--account NAME), "
                "which have names of their own.",
            )


def _not_active(scope: Scope, reason: str, activate: list[str]) -> None:
    """Say that the timer is not active, since systemd cannot be reached, and what to run."""
    where = (
        "as root"
        if scope.system
        else f"as {scope.user} in a login session (ssh, not su or sudo: systemctl --user "
        "needs the session's bus)"
    )
    print(
        f"⚠ The timer is NOT active: systemctl cannot reach systemd here ({reason}). "
        f"Nothing will run until you run these, {where}, once systemd runs:"
    )
    for command in activate:
        print(f"    {command}")
    if not scope.system:
        print(f"    sudo loginctl enable-linger {scope.user}   # to run after logout too")


def _install(
    units: Units, scope: Scope, selection: tuple[str, ...], environ: Mapping[str, str]
) -> int:
    """``systemd install``: write the units; enable the timer when systemd can be reached;
    exit 0."""
    systemctl = Systemctl(scope, environ)
    _refuse_foreign(units, selection, systemctl)
    _write_units(units, scope.folder)
    print(f"✓ Wrote {units.service_path}")
    print(f"✓ Wrote {units.timer_path}")
    activate = [
        systemctl.shown("daemon-reload"),
        systemctl.shown("enable", "--now", units.timer_name),
    ]
    if not scope.told:
        print(
            "  systemd was not told (--dir). To use them, copy both into "
            f"{SYSTEM_UNIT_DIR if scope.system else '~/.config/systemd/user'}, then run: "
            + "; ".join(activate)
        )
        return 0
    reachable, reason = systemctl.reachable()
    if not reachable:
        _not_active(scope, reason, activate)
        return 0
    written = f"{units.service_path} and {units.timer_path} are written."
    systemctl.must("daemon-reload", written=written)
    systemctl.must("enable", "--now", units.timer_name, written=written)
    state = systemctl.run("is-active", units.timer_name).stdout.strip() or "unknown"
    if state == "active":
        print(f"✓ {activate[0]}; {activate[1]}: the timer is active.")
    else:
        print(
            f"⚠ {activate[1]} succeeded, but the timer is {state}: see "
            f"`{systemctl.shown('status', units.timer_name)}`."
        )
    print(
        f"  Next run: `{systemctl.shown('list-timers', units.timer_name)}`; a run now: "
        f"`{systemctl.shown('start', f'{units.name}.service')}`; remove it with "
        f"`xts_token_refresh.py systemd uninstall{account_flags(selection)}`."
    )
    return 0


def _uninstall(scope: Scope, selection: tuple[str, ...], environ: Mapping[str, str]) -> int:
    """``systemd uninstall``: undo ``install`` for the units of ``selection`` only; exit 0."""
    name = unit_name(selection)
    timer_name = f"{name}.timer"
    service_path, timer_path = scope.folder / f"{name}.service", scope.folder / timer_name
    present = [path for path in (service_path, timer_path) if path.exists() or path.is_symlink()]
    ours = [path for path in present if owner(path, APP_DIR, selection) is None]
    for path in present:
        if path not in ours:
            print(f"  Left alone: {path} belongs to {owner(path, APP_DIR, selection)}.")
    if not ours:
        print(f"Nothing to remove: no {name} units of {APP_DIR} in {scope.folder}.")
        return 0
    systemctl = Systemctl(scope, environ)
    reachable, reason = systemctl.reachable() if scope.told else (False, "--dir")
    if reachable and timer_path in ours:
        systemctl.must("disable", "--now", timer_name, written="Nothing was removed.")
    link = scope.folder / "timers.target.wants" / timer_name
    try:
        for path in ours:
            path.unlink()
        if timer_path in ours and link.is_symlink():
            link.unlink()  # what `enable` made, should systemd not be there to undo it
    except OSError as exc:
        raise LocalError(f"Cannot remove the units from {scope.folder}: {exc.strerror}.") from None
    for path in ours:
        print(f"✓ Removed {path}")
    if reachable:
        systemctl.must("daemon-reload", written="The unit files are removed.")
        print(
            f"✓ {systemctl.shown('disable', '--now', timer_name)}; "
            f"{systemctl.shown('daemon-reload')}"
        )
    elif scope.told:
        print(f"  systemctl cannot reach systemd here ({reason}): there was no timer to stop.")
    remaining = other_units(scope.folder, APP_DIR, name) if not selection else []
    if remaining:
        commands = "; ".join(
            f"`xts_token_refresh.py systemd uninstall{account_flags(found)}`"
            for _, found in remaining
        )
        print(f"  Units of this folder for chosen accounts remain, untouched: {commands}.")
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
) -> int:
    """``systemd print|install|uninstall`` for ``accounts`` (() is the units for all
    accounts); exit 0, ConfigError (2) or LocalError (4)."""
    selection = schedule.account_selection(accounts)
    scope = unit_scope(environ, unit_dir, euid)
    if action == "uninstall":
        return _uninstall(scope, selection, environ)
    units = render(at, zone, days, scope, arguments=arguments, accounts=selection)
    timeout, reason = start_timeout()
    notes = [*_scope_notes(scope, at, zone), f"TimeoutStartSec={timeout}: {reason}"]
    if action == "install":
        notes += _overlap_warnings(selection, scope.folder, units.name)
    for note in notes:
        print(f"# {note}", file=sys.stderr)
    if action == "print":
        print(f"# file: {units.service_path}")
        print(units.service)
        print(f"# file: {units.timer_path}")
        print(units.timer, end="")
        return 0
    return _install(units, scope, selection, environ)
