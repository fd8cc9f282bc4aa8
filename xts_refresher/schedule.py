"""What the ``cron`` and ``systemd`` commands share: zones, ``--at`` and ``--days`` (and their
conversion to the machine's zone), account selections, markers, and the warnings both give.

A marker says whose a crontab line or a unit is: ``# xts-token-refresh:<APP_DIR>`` for all
accounts, ``... accounts=<a,b>`` for some (sorted, each once); a ``%`` in it is written ``\\%``,
since cron reads the comment as part of the command.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timezone, tzinfo
from itertools import groupby
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

from .errors import ConfigError, XtsRefreshError
from .paths import APP_DIR, is_account_name

if TYPE_CHECKING:
    from .settings import PathOverrides

APP = Path(APP_DIR)
MARKER = "# xts-token-refresh:"
# Between the folder and the account names in the marker of a line for some accounts.
ACCOUNTS_TAG = " accounts="
# What would split a crontab line or a unit's line, or the text when Python reads it back
# (str.splitlines): C0 and C1 control characters, DEL, Unicode's line and paragraph separators.
LINE_SPLITTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# A zone name as OnCalendar= can carry it (every name in the zoneinfo database is one).
ZONE_NAME = re.compile(r"[A-Za-z0-9_+./-]+")
# --days: the days of the week (0 is Sunday) the job runs on; None is every day.
DAY_SPECS = MappingProxyType({"daily": None, "weekdays": (1, 5)})


class Schedule(NamedTuple):
    """A crontab time converted to the machine's zone, with what the operator should know."""

    minute: int
    hour: int
    days: str
    notes: tuple[str, ...]


def named_zone(name: str) -> tzinfo:
    """The time zone called ``name``; ConfigError when it is unknown."""
    from .shown_time import UnknownZoneError
    from .shown_time import named_zone as zone_called

    if ZONE_NAME.fullmatch(name):
        with contextlib.suppress(UnknownZoneError):
            return zone_called(name)
    raise ConfigError(f"Unknown time zone {name!r}.", "Use a name such as Asia/Kolkata.")


def machine_zone(environ: Mapping[str, str]) -> tuple[tzinfo, str]:
    """The zone cron reads its schedule in, and its name: the one ``TZ`` names (``Asia/Kolkata``)
    or holds (``:/etc/localtime``), else the system's, ``/etc/localtime`` (UTC when unreadable)."""
    from zoneinfo import ZoneInfo

    path = environ.get("TZ", "").lstrip(":")
    if path and not path.startswith("/"):
        return named_zone(path), path
    target = os.path.realpath(path or "/etc/localtime")
    name = target.partition("zoneinfo/")[2]
    with contextlib.suppress(ConfigError):
        return named_zone(name), name
    try:
        with open(target, "rb") as handle:
            return ZoneInfo.from_file(handle), path or "the system's local zone"
    except (OSError, ValueError):
        if not path:
            return timezone.utc, "UTC"
        hint = "Set TZ to a name such as Asia/Kolkata."
        raise ConfigError(f"Cannot read the time zone file {path}.", hint) from None


def system_zone() -> tuple[tzinfo, str]:
    """The zone the cron daemon uses (``/etc/localtime``) and its name; UTC when unreadable."""
    return machine_zone({})


def parse_at(text: str) -> tuple[int, int]:
    """The hour and minute of ``HH:MM``; ConfigError otherwise."""
    found = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})", text.strip())
    if not found or int(found[1]) > 23 or int(found[2]) > 59:
        raise ConfigError(f"--at {text!r} is not a time of day.", "Use HH:MM, e.g. --at 08:45.")
    return int(found[1]), int(found[2])


def check_days(days: str) -> str:
    """``days`` itself when ``--days`` knows it; ConfigError otherwise."""
    if days not in DAY_SPECS:
        raise ConfigError(f"--days {days!r} is not known.", "Use --days daily or --days weekdays.")
    return days


def at_today(at: str, zone_name: str, today: date | None = None) -> datetime:
    """``at`` today (or on ``today``) in the zone ``zone_name``; ConfigError for a bad one."""
    hour, minute = parse_at(at)
    zone = named_zone(zone_name)
    day = today or datetime.now(zone).date()
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)


def day_field(days: str, shift: int) -> str:
    """The crontab day-of-week field of ``days`` moved by ``shift`` days (0 is Sunday)."""
    span = DAY_SPECS[days]
    if span is None:
        return "*"
    moved = enumerate(sorted({(day + shift) % 7 for day in range(span[0], span[1] + 1)}))
    runs = [[day for _, day in run] for _, run in groupby(moved, lambda pair: pair[1] - pair[0])]
    return ",".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def convert(
    at: str,
    zone_name: str,
    days: str,
    machine: tzinfo,
    machine_name: str,
    *,
    today: date | None = None,
) -> Schedule:
    """``at`` in ``zone_name`` on ``days`` as a crontab time in ``machine``'s zone (the days
    of the week move when the conversion crosses midnight)."""
    check_days(days)
    wanted = at_today(at, zone_name, today)
    local = wanted.astimezone(machine)
    shift = (local.date() - wanted.date()).days
    notes = [f"{at} {zone_name} is {local:%H:%M} in this machine's zone ({machine_name})"]
    if shift:
        notes.append("the conversion crosses midnight, so the days of the week move with it")
    # A zone drifts when it keeps another offset in summer than in winter.
    drifts = [
        len({datetime(wanted.year, month, 1, 12, tzinfo=zone).utcoffset() for month in (1, 7)}) > 1
        for zone in (machine, wanted.tzinfo)
    ]
    if any(drifts):
        notes.append(
            f"WARNING: {machine_name if drifts[0] else zone_name} observes daylight saving "
            f"time, so the job will run an hour off {at} {zone_name} for part of the year. To "
            "avoid it, set the machine's zone to UTC or Asia/Kolkata (timedatectl set-timezone "
            "UTC) and run `cron install` again, or use the systemd timer, whose OnCalendar= "
            "takes a zone."
        )
    return Schedule(local.minute, local.hour, day_field(days, shift), tuple(notes))


def account_selection(accounts: Iterable[str] = ()) -> tuple[str, ...]:
    """``accounts`` sorted, each once (() is all accounts); ConfigError for a name no account
    may have, which would also break the marker."""
    selection = tuple(sorted(set(accounts)))
    refused = [name for name in selection if not is_account_name(name)]
    if refused:
        raise ConfigError(
            f"Not an account name: {', '.join(map(repr, refused))}.",
            "Account names are letters, digits, '-', '_' and '.', at most 64 characters.",
        )
    return selection


def describe(accounts: tuple[str, ...]) -> str:
    """``all accounts``, ``account bob`` or ``accounts alice, carol``, for the messages."""
    if not accounts:
        return "all accounts"
    return f"account{'s' if len(accounts) > 1 else ''} {', '.join(accounts)}"


def account_flags(accounts: tuple[str, ...]) -> str:
    """`` --account a --account b`` (empty for all accounts), for the commands shown."""
    return "".join(f" --account {name}" for name in accounts)


def job_words(
    app_dir: Path, arguments: tuple[str, ...], accounts: tuple[str, ...], carrier: str
) -> list[str]:
    """The job's command: the wrapper, ``arguments``, then ``--account NAME`` per account;
    ConfigError when the folder or an argument would split the line of ``carrier``."""
    for path in (str(app_dir), *arguments):
        refuse_control_characters(path, carrier)
    return [str(app_dir / "refresh_xts_token.sh"), *arguments, *account_flags(accounts).split()]


def own_marker(app_dir: Path = APP, accounts: Iterable[str] = ()) -> str:
    """The marker of this installation's line for ``accounts`` (() is all), ``%`` escaped."""
    selection = account_selection(accounts)
    marker = f"{MARKER}{app_dir}".replace("%", "\\%")
    return f"{marker}{ACCOUNTS_TAG}{','.join(selection)}" if selection else marker


def is_own_line(line: str, app_dir: Path = APP, accounts: Iterable[str] = ()) -> bool:
    """True for the line this installation wrote for exactly ``accounts`` (() is all)."""
    return line_accounts(line, app_dir) == account_selection(accounts)


def line_accounts(line: str, app_dir: Path = APP) -> tuple[str, ...] | None:
    """The accounts of this installation's ``line`` (() for all accounts); None for any other."""
    text = line.rstrip()
    if text.endswith(own_marker(app_dir)):
        return ()
    head, tag, names = text.rpartition(ACCOUNTS_TAG)
    if not tag or not head.endswith(own_marker(app_dir)):
        return None
    selection = tuple(names.split(","))
    if not all(map(is_account_name, selection)) or selection != tuple(sorted(set(selection))):
        return None  # not a marker this program writes
    return selection


def remaining_note(command: str, thing: str, remaining: list[tuple[str, ...]]) -> str:
    """The note that ``command``'s ``thing``s (a crontab line, a timer) of this folder for
    the account selections ``remaining`` are left, with the commands that remove them."""
    many = len(remaining) > 1
    commands = "; ".join(
        f"`xts_token_refresh.py {command} uninstall{account_flags(found)}`" for found in remaining
    )
    return (
        f"  {len(remaining)} {thing}{'s' if many else ''} of this folder for chosen accounts "
        f"remain{'' if many else 's'}, untouched: remove {'them' if many else 'it'} with "
        f"{commands}."
    )


def shared_accounts(selection: tuple[str, ...], other: tuple[str, ...]) -> tuple[str, ...] | None:
    """The accounts jobs for ``selection`` and ``other`` both log in (() is all); None if none."""
    if selection and other:
        return tuple(sorted(set(selection) & set(other))) or None
    return selection or other


def overlap_warning(twice: tuple[str, ...], where: str, then: str, remedy: str) -> str:
    """The warning that ``twice`` are also logged in by ``where``, ``then`` what follows."""
    return (
        f"WARNING: {describe(twice)} {'is' if len(twice) == 1 else 'are'} also logged in by "
        f"{where} of this folder, so {then}each login replaces the previous session (a "
        f"market-data login cuts off a bot streaming quotes). Unless that is meant, {remedy}"
    )


def runs_as_root(command: str, lead: str, example: str) -> str:
    """The warning that ``command``'s job will run as root, with the way out (``example``)."""
    return (
        f"WARNING: {lead}the job will run as root. CRON_SETUP.md advises a dedicated "
        "unprivileged user that owns this folder, .env and the token files: run "
        f"`xts_token_refresh.py {command} install` as that user ({example}), and "
        f"`xts_token_refresh.py {command} uninstall` here as root."
    )


def unattended_browser_accounts(
    overrides: PathOverrides, environ: Mapping[str, str], accounts: tuple[str, ...]
) -> tuple[str, ...]:
    """The accounts of ``accounts`` (() is all) that sign in on the broker's page with nothing
    to wait for their holder (XTS_LOGIN_WAIT 0) or sign in for them (no XTS_ACCESS_TOKEN_COMMAND);
    an account whose settings cannot be read is not among them."""
    from .accounts import account_settings, find_install
    from .settings import BROWSER_LOGIN

    found: list[str] = []
    with contextlib.suppress(XtsRefreshError, OSError):
        install = find_install(overrides, environ)
        for name in accounts or install.names:
            with contextlib.suppress(XtsRefreshError, OSError):
                settings = account_settings(install, name, overrides)
                signed_in = settings.access_token_command or settings.login_wait > 0
                if settings.login == BROWSER_LOGIN and not signed_in:
                    found.append(name)
    return tuple(found)


def holder_warning(command: str, arguments: tuple[str, ...], holders: tuple[str, ...]) -> str:
    """The warning that a job without --if-needed logs ``holders`` (browser accounts no run can
    sign in) in anew every day, with the two ways CRON_SETUP.md gives; "" when none is."""
    if not holders or "--if-needed" in arguments:
        return ""
    flags = account_flags(holders)
    return (
        f"WARNING: {describe(holders)} {'signs' if len(holders) == 1 else 'sign'} in on the "
        "broker's page (XTS_LOGIN=browser) with neither XTS_LOGIN_WAIT nor "
        "XTS_ACCESS_TOKEN_COMMAND, and this job runs without --if-needed: it fails for "
        f"{'it' if len(holders) == 1 else 'them'} every day, or replaces the session made by "
        f"hand with `login`. Give {'it' if len(holders) == 1 else 'each'} a job of its own: "
        "set XTS_LOGIN_WAIT=30m and run "
        f"`xts_token_refresh.py {command} install{flags} --at 08:30`; or sign in before the open "
        f"with `xts_token_refresh.py login{flags}` and add a crontab line of your own with "
        f'`refresh_xts_token.sh{flags} --if-needed` at 09:00 IST (CRON_SETUP.md, "Accounts '
        'that need their holder").'
    )


def wrapper_not_executable(scheduler: str) -> str | None:
    """The warning that ``scheduler`` cannot start the wrapper; None when it is executable."""
    wrapper = APP / "refresh_xts_token.sh"
    if os.access(wrapper, os.X_OK):
        return None
    return (
        f"WARNING: {wrapper} is not executable, so {scheduler} cannot start it: "
        "run ./refresh_xts_token.sh --setup (or chmod +x refresh_xts_token.sh)."
    )


def refuse_control_characters(path: str, carrier: str) -> None:
    """ConfigError naming ``path`` (escaped) when it holds a control character, which would
    split the line of ``carrier`` (``a crontab line``, ``a systemd unit``)."""
    if LINE_SPLITTERS.search(path):
        raise ConfigError(
            f"The path {path!r} holds a control character (a line break, a tab, an "
            f"escape...), which {carrier} cannot carry.",
            "Rename the file or folder, or give a path without one.",
        )
