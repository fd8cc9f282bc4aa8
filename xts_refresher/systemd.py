"""The ``systemd`` command: a service and a timer unit, printed, installed or removed.

The alternative to ``cron``. systemd reads a zone in ``OnCalendar=`` itself, so the time is
written as given (``*-*-* 09:00:00 Asia/Kolkata``), with no conversion to the machine's zone
and no daylight-saving drift. The service runs the wrapper with absolute paths, the path flags
and ``--account NAME`` passed on, as the crontab line does.

Where the units go, and who runs them:

- root: system units in ``/etc/systemd/system``, with ``User=root`` (a warning says so);
- anyone else: user units in ``~/.config/systemd/user`` (``$XDG_CONFIG_HOME`` when set),
  which run only while the user has a session unless lingering is on
  (``loginctl enable-linger USER``; a note says which it is);
- ``--dir DIR``: into DIR only, and systemd is not told;
- ``XTS_SYSTEMD_UNIT_DIR`` (process environment only): into that folder instead of the two
  above, systemd told as usual. It is there for the tests, which run as root and must not
  write ``/etc/systemd/system``.

Names: ``xts-token-refresh.service``/``.timer`` for all accounts; for chosen accounts
``xts-token-refresh-<names>``, the names sorted, each once, joined by ``-``, a ``-`` inside a
name written ``\\x2d`` as ``systemd-escape`` does (``huf``, ``alice-carol``, ``my\\x2dhuf``),
so units for different accounts coexist. Each unit's first line is the crontab line's marker
(``# xts-token-refresh:<APP_DIR>``, `` accounts=<a,b>`` for chosen accounts): ``install``
replaces and ``uninstall`` removes only units with exactly that marker (or, for a unit written
by hand from the old template, none and this folder's ``WorkingDirectory=``), never another
folder's.

``install`` then runs ``systemctl daemon-reload`` and ``systemctl enable --now <timer>`` when
``systemctl`` can reach systemd. When it cannot (a container, ``sudo -u`` without a session),
the files are written, exit 0, and a ``⚠`` line says that the timer is not active and what to
run. ``uninstall`` reverses exactly that for the named units: ``disable --now``, the two files
(and an ``enable`` link left beside them), ``daemon-reload``.
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
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple
from urllib.parse import quote

from . import cron
from .errors import ConfigError, LocalError
from .hook import HOOK_MAX_SECONDS
from .paths import account_file, file_value
from .settings import (
    APP_DIR,
    DEFAULT_DEADLINE_SECONDS,
    DEFAULT_ENV_FILE,
    PathOverrides,
    resolve_path,
)

UNIT_PREFIX = "xts-token-refresh"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
UNIT_DIR_VARIABLE = "XTS_SYSTEMD_UNIT_DIR"
LINGER_DIR = Path("/var/lib/systemd/linger")
ZONEINFO_DIR = Path("/usr/share/zoneinfo")
CALENDAR_DAYS = MappingProxyType({"daily": "*-*-*", "weekdays": "Mon..Fri *-*-*"})
DAY_WORDS = MappingProxyType({"daily": "every day", "weekdays": "on weekdays"})
# Beyond XTS_DEADLINE: the post-refresh hook's longest time, and the start-up, the summary and
# the notifications (Telegram and the health check time out after 5 s each).
START_AND_REPORT_SECONDS = 60
MAX_UNIT_NAME = 255
# ExecStart words written bare; any other is quoted (and every % and $ doubled).
BARE_WORD = re.compile(r"[A-Za-z0-9_@+=:,./-]+")
PROBE_SECONDS = 15
SYSTEMCTL_SECONDS = 90


class Scope(NamedTuple):
    """Who runs the units and where they go."""

    system: bool  # a system unit (root), else a user unit
    user: str
    group: str
    folder: Path
    told: bool  # systemd is told (daemon-reload, enable); False with --dir


class Units(NamedTuple):
    """The two unit files: their paths and their text."""

    name: str  # without the suffix
    service_path: Path
    timer_path: Path
    service: str
    timer: str
    notes: tuple[str, ...]

    @property
    def timer_name(self) -> str:
        """``<name>.timer``."""
        return f"{self.name}.timer"

    @property
    def service_name(self) -> str:
        """``<name>.service``."""
        return f"{self.name}.service"


def unit_name(accounts: tuple[str, ...] = ()) -> str:
    """The units' name (no suffix) for ``accounts`` (() is all accounts); ConfigError for a
    name no account may have, or a selection whose name would be too long for systemd."""
    selection = cron.account_selection(accounts)
    if not selection:
        return UNIT_PREFIX
    name = "-".join([UNIT_PREFIX, *(account.replace("-", "\\x2d") for account in selection)])
    if len(name) + len(".service") > MAX_UNIT_NAME:
        raise ConfigError(
            f"The units for {cron.describe(selection)} would have a name longer than systemd "
            f"allows ({MAX_UNIT_NAME} characters).",
            "Install units for fewer accounts at a time, or one for all accounts.",
        )
    return name


def on_calendar(at: str, zone: str, days: str) -> str:
    """The ``OnCalendar=`` value: ``[Mon..Fri ]*-*-* HH:MM:00 <zone>``; ConfigError for a bad
    ``at``, an unknown zone or days."""
    if days not in CALENDAR_DAYS:
        raise ConfigError(f"--days {days!r} is not known.", "Use --days daily or --days weekdays.")
    hour, minute = cron.parse_at(at)
    cron.named_zone(zone)
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
    cron.refuse_control_characters(word, "a systemd unit")
    if not BARE_WORD.fullmatch(word):
        word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    word = specifiers_escaped(word)
    return word if program else word.replace("$", "$$")


def _check_folder(folder: Path) -> None:
    """ConfigError when ``folder`` cannot be written as a unit's WorkingDirectory= value."""
    text = str(folder)
    cron.refuse_control_characters(text, "a systemd unit")
    if "\\" in text or text != text.strip():
        raise ConfigError(
            f"The program's folder {text!r} holds a backslash or surrounding spaces, which "
            "systemd's WorkingDirectory= cannot carry.",
            "Move the program to a folder with a plain name, or use `cron install`.",
        )


def _seconds(text: str | None) -> float | None:
    """XTS_DEADLINE's value as the settings accept it (0.001-86400 s); None otherwise."""
    try:
        number = float((text or "").strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and 0.001 <= number <= 86400 else None


def run_deadline(
    overrides: PathOverrides, environ: Mapping[str, str], accounts: tuple[str, ...]
) -> tuple[float, list[str]]:
    """The longest XTS_DEADLINE of the accounts a unit runs (every account when none is
    named), as the settings files set it, and what the operator should know about it.

    The unit runs without this shell's environment, so only the files count: an account's
    own file, else ``.env``, else 300 s.
    """
    from .accounts import find_install

    notes = []
    env_file = str(resolve_path(overrides.env_file or DEFAULT_ENV_FILE))
    shared = file_value(env_file, "XTS_DEADLINE")
    try:
        install = find_install(overrides, environ)
    except ConfigError:
        values = [shared]
    else:
        names = accounts or (install.names if install.has_account_files else ())
        values = [
            file_value(account_file(str(install.accounts_dir), name), "XTS_DEADLINE") or shared
            for name in names
        ] or [shared]
    deadlines = []
    for value in values:
        seconds = _seconds(value) if value else DEFAULT_DEADLINE_SECONDS
        if seconds is None:
            notes.append(
                f"WARNING: XTS_DEADLINE={value!r} is not a number of seconds, so the run will "
                "refuse to start (exit 2); TimeoutStartSec= counts "
                f"{DEFAULT_DEADLINE_SECONDS:g} s for it."
            )
            seconds = DEFAULT_DEADLINE_SECONDS
        deadlines.append(seconds)
    if environ.get("XTS_DEADLINE") and _seconds(environ["XTS_DEADLINE"]) not in deadlines:
        notes.append(
            f"XTS_DEADLINE={environ['XTS_DEADLINE']} in this shell does not reach the unit, "
            "which runs without this shell's environment: set it in the settings file."
        )
    return max(deadlines), notes


def unit_scope(
    environ: Mapping[str, str], unit_dir: str | None = None, euid: int | None = None
) -> Scope:
    """The scope of the invoking user ``euid`` (root: system units; anyone else: user units),
    and the folder: ``unit_dir`` (``--dir``), else ``XTS_SYSTEMD_UNIT_DIR``, else systemd's own."""
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
    override = environ.get(UNIT_DIR_VARIABLE, "")
    if override:
        if not os.path.isabs(override):
            raise ConfigError(f"{UNIT_DIR_VARIABLE}={override!r} is not an absolute path.")
        return Scope(system, user, group, Path(override), told=True)
    if system:
        return Scope(system, user, group, SYSTEM_UNIT_DIR, told=True)
    config = environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(config):
        home = environ.get("HOME") or (entry.pw_dir if entry else "")
        if not home:
            raise ConfigError("HOME is not set, so the user unit folder is not known.")
        config = os.path.join(home, ".config")
    return Scope(system, user, group, Path(config) / "systemd" / "user", told=True)


def render(
    at: str,
    zone: str,
    days: str,
    scope: Scope,
    *,
    app_dir: Path = APP_DIR,
    arguments: tuple[str, ...] = (),
    accounts: tuple[str, ...] = (),
    deadline: float = DEFAULT_DEADLINE_SECONDS,
) -> Units:
    """The service and the timer that run the wrapper in ``app_dir`` (with ``arguments``, then
    ``--account NAME`` for each of ``accounts``) at ``at`` in ``zone``, ``days``."""
    calendar = on_calendar(at, zone, days)
    hour, minute = cron.parse_at(at)
    when = f"{hour:02d}:{minute:02d}"
    selection = cron.account_selection(accounts)
    name = unit_name(selection)
    _check_folder(app_dir)
    marker = cron.own_marker(app_dir, selection)
    whose = f" ({cron.describe(selection)})" if selection else ""
    words = [str(app_dir / "refresh_xts_token.sh"), *arguments]
    words += [part for account in selection for part in ("--account", account)]
    folder = specifiers_escaped(str(app_dir))
    documentation = specifiers_escaped("file://" + quote(str(app_dir / "CRON_SETUP.md")))
    timeout = math.ceil(deadline) + math.ceil(HOOK_MAX_SECONDS) + START_AND_REPORT_SECONDS
    written = [
        marker,
        "# Written by `xts_token_refresh.py systemd install`, which replaces it; "
        "`xts_token_refresh.py",
        f"# systemd uninstall{cron.account_flags(selection)}` removes it. See CRON_SETUP.md, "
        '"Alternative: a systemd timer".',
    ]
    if scope.system:
        unit_dependencies = ["Wants=network-online.target", "After=network-online.target"]
        runs_as = [f"User={scope.user}", f"Group={scope.group}"]
        journal = f"journalctl -u {name}.service"
    else:
        # The user manager has no network-online.target: a start before the network is up
        # (Persistent= at boot) is retried within XTS_DEADLINE.
        unit_dependencies = []
        runs_as = [
            f"# A user unit: it runs as {scope.user} while {scope.user} has a session, or always "
            f"with lingering (loginctl enable-linger {scope.user})."
        ]
        journal = f"journalctl --user -u {name}.service"
    service = [
        *written,
        "",
        "[Unit]",
        f"Description=Refresh the XTS API session tokens{whose}",
        f"Documentation={documentation}",
        *unit_dependencies,
        "",
        "[Service]",
        "Type=oneshot",
        *runs_as,
        f"WorkingDirectory={folder}",
        f"ExecStart={' '.join(exec_word(w, program=n == 0) for n, w in enumerate(words))}",
        "# New files (tokens, logs) readable by the owner only.",
        "UMask=0077",
        f"# {timeout_reason(deadline)}; the run",
        "# stops itself before this.",
        f"TimeoutStartSec={timeout}",
        f"# The output goes to the journal ({journal}). To append it to",
        "# cron_output.log as cron does, add:",
        f"#StandardOutput=append:{folder}/cron_output.log",
        "#StandardError=inherit",
        "# A failed run (exit code 1-5) marks the unit failed: `systemctl --failed` lists it, and",
        "# OnFailure= in [Unit] can start a unit of yours that alerts you.",
    ]
    timer = [
        *written,
        "",
        "[Unit]",
        f"Description=Refresh the XTS tokens at {when} {zone} {DAY_WORDS[days]}{whose}",
        f"Documentation={documentation}",
        "",
        "[Timer]",
        f"# At {when} in {zone} whatever this machine's zone is (systemd 235 or newer).",
        f"OnCalendar={calendar}",
        "# A start missed while the machine was off or asleep happens as soon as it is back.",
        "Persistent=true",
        "AccuracySec=1min",
        "",
        "[Install]",
        "WantedBy=timers.target",
    ]
    notes = [f"TimeoutStartSec={timeout}: {timeout_reason(deadline)}"]
    return Units(
        name,
        scope.folder / f"{name}.service",
        scope.folder / f"{name}.timer",
        "\n".join(service) + "\n",
        "\n".join(timer) + "\n",
        tuple(notes),
    )


def timeout_reason(deadline: float) -> str:
    """Why TimeoutStartSec= is what it is, for the notes."""
    return (
        f"XTS_DEADLINE ({deadline:g} s) + {HOOK_MAX_SECONDS:g} s for the post-refresh hook + "
        f"{START_AND_REPORT_SECONDS} s to start and report"
    )


def owner(path: Path, app_dir: Path, accounts: tuple[str, ...]) -> str | None:
    """None when ``path`` is missing or this folder's unit for ``accounts``; otherwise who
    it belongs to, for the messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):  # below a file: no unit there either
        return None
    except OSError as exc:
        return f"unknown (it cannot be read: {exc.strerror})"
    lines = text.splitlines()
    if any(cron.is_own_line(line, app_dir, accounts) for line in lines):
        return None
    markers = [line for line in lines if line.startswith(cron.MARKER)]
    if markers:
        return f"the program in {markers[0][len(cron.MARKER) :].strip()}"
    folders = [
        line.split("=", 1)[1].strip() for line in lines if line.startswith("WorkingDirectory=")
    ]
    if folders and folders[-1].replace("%%", "%") == str(app_dir):
        return None  # this folder's unit, written by hand from the old template
    return f"something else (WorkingDirectory={folders[-1]})" if folders else "something else"


def other_units(folder: Path, app_dir: Path, name: str) -> list[tuple[str, tuple[str, ...]]]:
    """This folder's other timers in ``folder``: their names and accounts."""
    found = []
    for timer in sorted(folder.glob(f"{UNIT_PREFIX}*.timer")):
        if timer.name == f"{name}.timer":
            continue
        with contextlib.suppress(OSError):
            for line in timer.read_text(encoding="utf-8", errors="replace").splitlines():
                selection = cron.line_accounts(line, app_dir) if line.startswith("#") else None
                if selection is not None:
                    found.append((timer.name, selection))
                    break
    return found


def overlap_warnings(
    selection: tuple[str, ...], others: list[tuple[str, tuple[str, ...]]]
) -> list[str]:
    """Warnings for the accounts the units for ``selection`` log in that ``others`` (another
    timer, a crontab line: where, and for which accounts) log in too."""
    warnings = []
    for where, found in others:
        if selection and found:
            twice = tuple(sorted(set(selection) & set(found)))
            if not twice:
                continue
        else:
            twice = selection or found
        verb = "is" if len(twice) == 1 else "are"
        warnings.append(
            f"WARNING: {cron.describe(twice)} {verb} also logged in by {where} of this folder, "
            "so each login replaces the previous session (a market-data login cuts off a bot "
            "streaming quotes). Unless that is meant, keep one: `xts_token_refresh.py cron "
            "uninstall` or `xts_token_refresh.py systemd uninstall` (with the --account "
            "options it was installed with) removes the other."
        )
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


def _write(path: Path, text: str) -> None:
    """Write ``path`` atomically, mode 0644 (a unit holds no secret; systemd reads it)."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as unit:
            os.fchmod(unit.fileno(), 0o644)
            unit.write(text)
            unit.flush()
            os.fsync(unit.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _scope_notes(scope: Scope, at: str, zone: str) -> list[str]:
    """Who runs the units, where, and the time in this machine's zone."""
    notes = []
    with contextlib.suppress(ConfigError, ValueError, OverflowError):
        machine, machine_name = cron.system_zone()
        hour, minute = cron.parse_at(at)
        source = cron.named_zone(zone)
        day = datetime.now(source).date()
        local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=source)
        local = local.astimezone(machine)
        notes.append(
            f"{at.strip()} {zone} is {local:%H:%M} today in this machine's zone ({machine_name}); "
            f"the timer keeps to {zone} itself, whatever this machine's zone"
        )
    if not (ZONEINFO_DIR / zone).is_file() and zone not in ("UTC", "Etc/UTC"):
        notes.append(
            f"WARNING: {ZONEINFO_DIR / zone} is missing, and systemd reads OnCalendar='s zone "
            "there: install tzdata (apt-get install tzdata), or the timer will not load."
        )
    notes += filter(None, [cron.wrapper_not_executable("systemd")])
    if scope.system:
        notes.append(
            f"a system unit in {scope.folder}, run as {scope.user}"
            + ("" if scope.told else " (systemd is not told: --dir)")
        )
        if scope.user == "root":
            notes.append(
                "WARNING: the job will run as root. CRON_SETUP.md advises a dedicated "
                "unprivileged user that owns this folder, .env and the token files: run "
                "`xts_token_refresh.py systemd install` as that user (a user unit; then "
                "`sudo loginctl enable-linger USER`), and `xts_token_refresh.py systemd "
                "uninstall` here as root."
            )
    else:
        notes.append(
            f"a user unit in {scope.folder}, run as {scope.user}"
            + ("" if scope.told else " (systemd is not told: --dir)")
        )
        if (LINGER_DIR / scope.user).exists():
            notes.append(f"lingering is on for {scope.user}: the timer runs after logout too")
        else:
            notes.append(
                f"WARNING: a user unit runs only while {scope.user} is logged in: "
                f"`sudo loginctl enable-linger {scope.user}` keeps it running after logout "
                "and starts it at boot."
            )
    return notes


def _crontab_lines() -> list[str]:
    """The user's crontab, or [] when it cannot be read (no cron at all is fine here)."""
    with contextlib.suppress(ConfigError, OSError):
        return cron.read_crontab()
    return []


def _install(
    units: Units, scope: Scope, selection: tuple[str, ...], environ: Mapping[str, str]
) -> int:
    """``systemd install``: write the units; enable the timer when systemd can be reached."""
    systemctl = Systemctl(scope, environ)
    for path in (units.service_path, units.timer_path):
        other = owner(path, APP_DIR, selection)
        if other is not None:
            files = shlex.join([str(units.service_path), str(units.timer_path)])
            raise ConfigError(
                f"{path} exists and belongs to {other}, not to this folder's "
                f"{cron.describe(selection)}; nothing was written.",
                "Remove it where it was installed (`xts_token_refresh.py systemd uninstall` "
                f"there, or `{systemctl.shown('disable', '--now', units.timer_name)}` and "
                f"`rm {files}`), or install units for chosen accounts (--account NAME), "
                "which have names of their own.",
            )
    try:
        scope.folder.mkdir(parents=True, exist_ok=True)
        _write(units.service_path, units.service)
        _write(units.timer_path, units.timer)
    except OSError as exc:
        raise LocalError(
            f"Cannot write the units into {scope.folder}: {exc.strerror}.",
            "Run as root for a system unit, or as the job's own user for a user unit; or "
            "write them elsewhere with --dir DIR.",
        ) from None
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
        f"`{systemctl.shown('start', units.service_name)}`; remove it with "
        f"`xts_token_refresh.py systemd uninstall{cron.account_flags(selection)}`."
    )
    return 0


def _uninstall(scope: Scope, selection: tuple[str, ...], environ: Mapping[str, str]) -> int:
    """``systemd uninstall``: undo ``install`` for the units of ``selection`` only."""
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
    if not selection:
        remaining = other_units(scope.folder, APP_DIR, name)
        if remaining:
            commands = "; ".join(
                f"`xts_token_refresh.py systemd uninstall{cron.account_flags(found)}`"
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
    overrides: PathOverrides | None = None,
    arguments: tuple[str, ...] = (),
    accounts: tuple[str, ...] = (),
    unit_dir: str | None = None,
    euid: int | None = None,
) -> int:
    """``systemd print|install|uninstall`` for ``accounts`` (() is the units for all
    accounts); exit 0, ConfigError (2) or LocalError (4)."""
    selection = cron.account_selection(accounts)
    scope = unit_scope(environ, unit_dir, euid)
    if action == "uninstall":
        return _uninstall(scope, selection, environ)
    overrides = overrides or PathOverrides(None, None, None)
    deadline, deadline_notes = run_deadline(overrides, environ, selection)
    units = render(
        at, zone, days, scope, arguments=arguments, accounts=selection, deadline=deadline
    )
    notes = [*_scope_notes(scope, at, zone), *units.notes, *deadline_notes]
    if action == "install":
        others = other_units(scope.folder, APP_DIR, units.name)
        others += [
            ("the crontab line", found)
            for found in map(cron.line_accounts, _crontab_lines())
            if found is not None
        ]
        notes += overlap_warnings(selection, others)
    for note in notes:
        print(f"# {note}", file=sys.stderr)
    if action == "print":
        print(f"# file: {units.service_path}")
        print(units.service)
        print(f"# file: {units.timer_path}")
        print(units.timer, end="")
        return 0
    return _install(units, scope, selection, environ)
