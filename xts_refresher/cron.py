"""The ``cron`` command: the crontab line, in this machine's time zone, installed or removed.

XTS markets keep Indian time, but cron reads the schedule in the machine's zone, so a VPS on
UTC running ``0 9 * * *`` refreshes at 14:30 IST, after the open. The line is converted here,
uses absolute paths, and carries a marker so ``install`` replaces only its own line.

The marker is a comment at the end of the line, one per installation and account selection:

- ``# xts-token-refresh:<APP_DIR>``: the line for all accounts (``cron install``);
- ``# xts-token-refresh:<APP_DIR> accounts=<a,b>``: the line for the accounts ``a`` and ``b``
  (``cron install --account b --account a``; names sorted, each once, joined by ``,``), which
  runs the wrapper with ``--account a --account b``.

A ``%`` in ``<APP_DIR>`` is written ``\\%`` (cron reads the comment as part of the command);
account names cannot hold one, nor a space or a comma. ``install`` replaces only the line with
exactly its marker (same folder, same accounts), in place, so lines for different accounts
coexist and installing twice leaves the crontab as it was; ``uninstall`` removes only that
line (without ``--account``, only the line for all accounts).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from .errors import ConfigError
from .paths import is_account_name
from .settings import APP_DIR

MARKER = "# xts-token-refresh:"
# Between the folder and the account names in the marker of a line for some accounts.
ACCOUNTS_TAG = " accounts="
# What would split a crontab line or a unit's line, or the text when Python reads it back
# (str.splitlines): C0 and C1 control characters, DEL, Unicode's line and paragraph separators.
LINE_SPLITTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Process names of cron daemons: Debian's cron, cronie's and busybox's crond, fcron.
CRON_DAEMONS = frozenset({"cron", "crond", "cronie", "fcron"})
DAY_SPECS = MappingProxyType({"daily": None, "weekdays": (1, 5)})
# Offsets for the two zones that matter most, where the machine has no zoneinfo database.
FALLBACK_ZONES = MappingProxyType(
    {
        "Asia/Kolkata": timezone(timedelta(hours=5, minutes=30)),
        "UTC": timezone.utc,
        "Etc/UTC": timezone.utc,
    }
)


class Schedule(NamedTuple):
    """A crontab time converted to the machine's zone, with what the operator should know."""

    minute: int
    hour: int
    days: str
    notes: tuple[str, ...]


def named_zone(name: str) -> tzinfo:
    """The time zone called ``name``; ConfigError when it is unknown."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if name in FALLBACK_ZONES:
            return FALLBACK_ZONES[name]
        raise ConfigError(
            f"Unknown time zone {name!r}.", "Use a name such as Asia/Kolkata."
        ) from None


def _zone_from_file(path: Path, label: str) -> tuple[tzinfo, str]:
    """The zone stored in the TZif file ``path`` (e.g. /etc/localtime), and its name."""
    target = os.path.realpath(path)
    if "zoneinfo/" in target:
        name = target.split("zoneinfo/", 1)[1]
        with contextlib.suppress(ConfigError):
            return named_zone(name), name
    from zoneinfo import ZoneInfo

    try:
        with open(target, "rb") as handle:
            return ZoneInfo.from_file(handle), label
    except (OSError, ValueError):
        raise ConfigError(
            f"Cannot read the time zone file {path}.", "Set TZ to a name such as Asia/Kolkata."
        ) from None


def system_zone() -> tuple[tzinfo, str]:
    """The system's zone (``/etc/localtime``), which the cron daemon uses; UTC when unreadable."""
    localtime = Path("/etc/localtime")
    try:
        return _zone_from_file(localtime, "the system's local zone")
    except ConfigError:
        return timezone.utc, "UTC"


def machine_zone(environ: Mapping[str, str]) -> tuple[tzinfo, str]:
    """The zone cron reads its schedule in, and its name.

    That is the system's zone (``/etc/localtime``); ``TZ`` overrides it for machines whose cron
    daemon runs with another zone, and for tests. ``TZ`` may name a zone (``Asia/Kolkata``) or a
    zone file (``:/etc/localtime``).
    """
    name = environ.get("TZ", "").lstrip(":")
    if name.startswith("/"):
        return _zone_from_file(Path(name), name)
    if name:
        return named_zone(name), name
    return system_zone()


def day_field(days: str, shift: int) -> str:
    """The crontab day-of-week field of ``days`` moved by ``shift`` days (0 is Sunday)."""
    span = DAY_SPECS[days]
    if span is None:
        return "*"
    moved = sorted({(day + shift) % 7 for day in range(span[0], span[1] + 1)})
    runs: list[list[int]] = []
    for day in moved:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def parse_at(text: str) -> tuple[int, int]:
    """The hour and minute of ``HH:MM``; ConfigError otherwise."""
    found = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})", text.strip())
    if not found or int(found[1]) > 23 or int(found[2]) > 59:
        raise ConfigError(f"--at {text!r} is not a time of day.", "Use HH:MM, e.g. --at 08:45.")
    return int(found[1]), int(found[2])


def _has_dst(zone: tzinfo, year: int) -> bool:
    winter = datetime(year, 1, 1, 12, tzinfo=zone).utcoffset()
    summer = datetime(year, 7, 1, 12, tzinfo=zone).utcoffset()
    return winter != summer


def convert(
    at: str,
    zone_name: str,
    days: str,
    machine: tzinfo,
    machine_name: str,
    *,
    today: date | None = None,
) -> Schedule:
    """``at`` in ``zone_name`` as a crontab time in ``machine``'s zone.

    When the conversion crosses midnight the day-of-week range moves with it.
    """
    if days not in DAY_SPECS:
        raise ConfigError(f"--days {days!r} is not known.", "Use --days daily or --days weekdays.")
    hour, minute = parse_at(at)
    source = named_zone(zone_name)
    day = today or datetime.now(source).date()
    wanted = datetime(day.year, day.month, day.day, hour, minute, tzinfo=source)
    local = wanted.astimezone(machine)
    shift = (local.date() - day).days
    notes = [f"{at} {zone_name} is {local:%H:%M} in this machine's zone ({machine_name})"]
    if shift:
        notes.append("the conversion crosses midnight, so the days of the week move with it")
    if _has_dst(machine, day.year) or _has_dst(source, day.year):
        notes.append(
            f"WARNING: {machine_name if _has_dst(machine, day.year) else zone_name} observes "
            f"daylight saving time, so the job will run an hour off {at} {zone_name} for part of "
            "the year. To avoid it, set the machine's zone to UTC or Asia/Kolkata "
            "(timedatectl set-timezone UTC) and run `cron install` again, or use the systemd "
            "timer, whose OnCalendar= takes a zone."
        )
    return Schedule(local.minute, local.hour, day_field(days, shift), tuple(notes))


def account_selection(accounts: Iterable[str] = ()) -> tuple[str, ...]:
    """``accounts`` sorted, each once: the selection a line is for (() is all accounts).

    ConfigError for a name no account may have, which would also break the marker.
    """
    selection = tuple(sorted(set(accounts)))
    refused = [name for name in selection if not is_account_name(name)]
    if refused:
        raise ConfigError(
            f"Not an account name: {', '.join(map(repr, refused))}.",
            "Account names are letters, digits, '-', '_' and '.', at most 64 characters.",
        )
    return selection


def refuse_control_characters(path: str | Path, carrier: str) -> None:
    """ConfigError (exit 2) naming ``path``, escaped, when it holds a control character, which
    would split the line of ``carrier`` (``a crontab line``, ``a systemd unit``) that holds it."""
    text = str(path)
    if LINE_SPLITTERS.search(text):
        raise ConfigError(
            f"The path {text!r} holds a control character (a line break, a tab, an escape...), "
            f"which {carrier} cannot carry.",
            "Rename the file or folder, or give a path without one.",
        )


def crontab_line(
    schedule: Schedule,
    app_dir: Path = APP_DIR,
    arguments: tuple[str, ...] = (),
    accounts: Iterable[str] = (),
) -> str:
    """The crontab line that runs the wrapper (with ``arguments``, then ``--account NAME``
    for each of ``accounts``) at ``schedule``, output appended to its log."""

    def quoted(word: str | Path) -> str:
        # cron turns an unescaped % into a newline.
        return shlex.quote(str(word)).replace("%", "\\%")

    selection = account_selection(accounts)
    for path in (str(app_dir), *arguments):
        refuse_control_characters(path, "a crontab line")
    chosen = [part for name in selection for part in ("--account", name)]
    words = [str(app_dir / "refresh_xts_token.sh"), *arguments, *chosen]
    wrapper = " ".join(quoted(word) for word in words)
    command = f"{wrapper} >> {quoted(app_dir / 'cron_output.log')} 2>&1"
    when = f"{schedule.minute} {schedule.hour} * * {schedule.days}"
    return f"{when} {command} {own_marker(app_dir, selection)}"


def read_crontab() -> list[str]:
    """The current user's crontab lines ([] when there is none)."""
    try:
        listing = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ConfigError(
            "The crontab command is not installed.",
            "Install cron (Debian/Ubuntu: apt-get install cron), or use the systemd timer.",
        ) from None
    if listing.returncode != 0:
        if "no crontab" in listing.stderr.lower():
            return []
        raise ConfigError(f"crontab -l failed: {listing.stderr.strip()}")
    # Split at line ends only: str.splitlines would also split another job's line at a form
    # feed or a Unicode line separator in it, and write it back as two.
    return listing.stdout.removesuffix("\n").split("\n") if listing.stdout else []


def write_crontab(lines: list[str]) -> None:
    """Replace the current user's crontab with ``lines``."""
    text = "\n".join(lines) + "\n" if lines else ""
    done = subprocess.run(["crontab", "-"], input=text, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ConfigError(f"crontab refused the new table: {done.stderr.strip()}")


def own_marker(app_dir: Path = APP_DIR, accounts: Iterable[str] = ()) -> str:
    """The comment that marks this installation's line for ``accounts`` (() is all of them);
    a ``%`` in it is escaped too, since cron reads the comment as part of the command."""
    selection = account_selection(accounts)
    marker = f"{MARKER}{app_dir}".replace("%", "\\%")
    return f"{marker}{ACCOUNTS_TAG}{','.join(selection)}" if selection else marker


def is_own_line(line: str, app_dir: Path = APP_DIR, accounts: Iterable[str] = ()) -> bool:
    """True for the line this installation put in the crontab for ``accounts`` (() is the
    line for all accounts, never a line for some)."""
    return line.rstrip().endswith(own_marker(app_dir, accounts))


def line_accounts(line: str, app_dir: Path = APP_DIR) -> tuple[str, ...] | None:
    """The accounts of this installation's line ``line`` (() for the line for all accounts);
    None for any other line."""
    text = line.rstrip()
    if text.endswith(own_marker(app_dir)):
        return ()
    head, tag, names = text.rpartition(ACCOUNTS_TAG)
    if not tag or not head.endswith(own_marker(app_dir)):
        return None
    selection = tuple(names.split(","))
    if not all(map(is_account_name, selection)) or selection != tuple(sorted(set(selection))):
        return None  # not a marker cron install writes
    return selection


def describe(accounts: tuple[str, ...]) -> str:
    """``all accounts``, ``account bob`` or ``accounts alice, carol``, for the messages."""
    if not accounts:
        return "all accounts"
    return f"account{'s' if len(accounts) > 1 else ''} {', '.join(accounts)}"


def account_flags(accounts: tuple[str, ...]) -> str:
    """`` --account a --account b`` (empty for all accounts), for the commands shown."""
    return "".join(f" --account {name}" for name in accounts)


def _setup_warnings(machine: tzinfo, machine_name: str, environ: Mapping[str, str]) -> list[str]:
    """What would make the installed line misfire on this machine."""
    warnings = []
    if environ.get("TZ"):
        system, system_name = system_zone()
        now = datetime.now(timezone.utc)
        if now.astimezone(system).utcoffset() != now.astimezone(machine).utcoffset():
            warnings.append(
                f"WARNING: TZ={environ['TZ']} is set here, so the line is in {machine_name} time, "
                f"but the cron daemon reads its schedule in the system's zone ({system_name}) "
                "unless it runs with the same TZ. If in doubt, run again without TZ "
                "(env -u TZ ./xts_token_refresh.py cron install)."
            )
    warnings += filter(None, [wrapper_not_executable("cron")])
    return warnings


def wrapper_not_executable(scheduler: str) -> str | None:
    """The warning that ``scheduler`` (cron, systemd) cannot start the wrapper, which is not
    executable; None when it is."""
    wrapper = APP_DIR / "refresh_xts_token.sh"
    if os.access(wrapper, os.X_OK):
        return None
    return (
        f"WARNING: {wrapper} is not executable, so {scheduler} cannot start it: "
        "run ./refresh_xts_token.sh --setup (or chmod +x refresh_xts_token.sh)."
    )


def _is_cron_daemon(process: Path) -> bool:
    """True when the process folder ``/proc/<pid>`` is a cron daemon, by its name or command
    line (``crond``, ``/usr/sbin/cron -f``, ``busybox crond -f``)."""
    try:
        name = (process / "comm").read_text(encoding="utf-8", errors="replace").strip()
        argv = (process / "cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError:  # ended meanwhile, or not ours to read
        return False
    words = [os.path.basename(word) for word in argv[:2]]
    return (
        name in CRON_DAEMONS
        or words[0] in CRON_DAEMONS
        or (words[0] == "busybox" and words[1:] == ["crond"])
    )


def cron_daemon_running(proc: Path = Path("/proc")) -> bool | None:
    """Whether a cron daemon runs on this machine; None when it cannot be told (no /proc, as
    on macOS, or other users' processes hidden by ``hidepid``)."""
    try:
        (proc / "1" / "comm").read_bytes()
    except OSError:
        return None
    return any(_is_cron_daemon(process) for process in proc.glob("[0-9]*"))


def _install_warnings() -> list[str]:
    """What would keep the installed line from running as it should."""
    warnings = []
    if cron_daemon_running() is False:
        warnings.append(
            "WARNING: no cron daemon runs on this machine (no cron or crond process), so the "
            "line is installed but will never run. Start cron, and have it start at boot: "
            "sudo systemctl enable --now cron (the service is crond on Red Hat-like systems), "
            "or sudo service cron start where there is no systemd; or use the systemd timer "
            "(CRON_SETUP.md)."
        )
    if os.geteuid() == 0:
        warnings.append(
            "WARNING: this installs the line into root's crontab, so the job will run as root. "
            "CRON_SETUP.md advises a dedicated unprivileged user that owns this folder, .env "
            "and the token files: run `xts_token_refresh.py cron install` as that user (e.g. "
            "sudo -u xts ./xts_token_refresh.py cron install), and `xts_token_refresh.py cron "
            "uninstall` here as root."
        )
    return warnings


def _overlap_warnings(lines: list[str], selection: tuple[str, ...]) -> list[str]:
    """Warnings when the line for ``selection`` would log an account in that another line of
    this installation logs in too: each login replaces the account's previous session."""
    others = [
        found
        for found in (line_accounts(line) for line in lines)
        if found is not None and found != selection
    ]
    if selection:
        twice = sorted({name for found in others for name in (found or selection)} & set(selection))
    else:
        twice = sorted({name for found in others for name in found})
    if not twice:
        return []
    return [
        f"WARNING: {describe(tuple(twice))} {'is' if len(twice) == 1 else 'are'} also logged "
        "in by another xts-token-refresh line of this folder, so each run of either line logs "
        "in again, and each login replaces the previous session (a market-data login cuts off "
        "a bot streaming quotes). Unless that is meant, keep one line for all accounts or one "
        "line per account: `crontab -l` shows the lines, `xts_token_refresh.py cron uninstall` "
        "(with the line's --account options, if any) removes one."
    ]


def _uninstall(selection: tuple[str, ...]) -> int:
    """``cron uninstall``: remove this installation's line for ``selection`` only."""
    lines = read_crontab()
    kept = [line for line in lines if not is_own_line(line, APP_DIR, selection)]
    whose = f"{APP_DIR}" if not selection else f"{APP_DIR} ({describe(selection)})"
    if len(kept) == len(lines):
        print(f"Nothing to remove: no xts-token-refresh line for {whose} in the crontab.")
    else:
        write_crontab(kept)
        print(f"✓ Removed the xts-token-refresh line for {whose}; other lines are untouched.")
    if not selection:
        remaining = [found for found in map(line_accounts, kept) if found]
        if remaining:
            count = len(remaining)
            commands = "; ".join(
                f"`xts_token_refresh.py cron uninstall{account_flags(found)}`"
                for found in remaining
            )
            print(
                f"  {count} line{'s' if count > 1 else ''} of this folder for chosen accounts "
                f"remain{'s' if count == 1 else ''}, untouched: remove "
                f"{'them' if count > 1 else 'it'} with {commands}."
            )
    return 0


def cron_command(
    action: str,
    at: str,
    zone: str,
    days: str,
    *,
    environ: Mapping[str, str],
    arguments: tuple[str, ...] = (),
    accounts: tuple[str, ...] = (),
) -> int:
    """``cron print|install|uninstall`` for ``accounts`` (() is the line for all accounts);
    exit 0, or ConfigError (2)."""
    selection = account_selection(accounts)
    if action == "uninstall":
        return _uninstall(selection)
    machine, machine_name = machine_zone(environ)
    schedule = convert(at, zone, days, machine, machine_name)
    line = crontab_line(schedule, arguments=arguments, accounts=selection)
    notes = [*schedule.notes, *_setup_warnings(machine, machine_name, environ)]
    existing: list[str] = []
    if action == "install":
        existing = read_crontab()
        notes += [*_install_warnings(), *_overlap_warnings(existing, selection)]
    for note in notes:
        print(f"# {note}", file=sys.stderr)
    if action == "print":
        print(line)
        return 0
    # The line takes the place of its own earlier line (so installing twice changes nothing,
    # whatever follows it); a first install appends it.
    lines: list[str] = []
    for current in existing:
        if not is_own_line(current, APP_DIR, selection):
            lines.append(current)
        elif line not in lines:
            lines.append(line)
    if line not in lines:
        lines.append(line)
    write_crontab(lines)
    with contextlib.suppress(OSError):  # cron's shell would create it world-readable (umask 022)
        os.close(
            os.open(APP_DIR / "cron_output.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        )
    print(f"✓ Installed in the crontab: {line}")
    print(
        "  Check it with `crontab -l`; remove it with "
        f"`xts_token_refresh.py cron uninstall{account_flags(selection)}`."
    )
    return 0
