"""Times shown to people: in XTS_DISPLAY_TZ (default Asia/Kolkata), with its abbreviation.

The console, the human text of log lines, Telegram, ``status`` and the banner show a time as
``shown_time`` writes it (``2024-10-13 09:00:00 IST``), whatever zone the machine keeps (a VPS
is usually on UTC, the market on IST). Files written for programs (token files, the run
record, ``status --json``) keep their own formats.

The zone database costs: importing ``zoneinfo`` costs a refresh about 10 M instructions (it
asks ``sysconfig`` for its search path), 2 % of the whole refresh, for the banner's time alone.
So a zone that has kept one offset since its last transition and whose rule for the future
(the TZif file's footer) has no daylight saving time, as Asia/Kolkata and most of Asia, is
read from its TZif file in the system's zone folder: the offset and abbreviation then hold for
every time since that transition. Any other zone, any earlier time, and a machine whose zone
files are elsewhere go through ``zoneinfo``, with its own search path and the ``tzdata``
package; where neither has Asia/Kolkata or UTC, their fixed offsets are built in.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone, tzinfo
from types import MappingProxyType

from .paths import read_small_file

DISPLAY_TZ_VARIABLE = "XTS_DISPLAY_TZ"
DEFAULT_DISPLAY_TZ = "Asia/Kolkata"
# Where the fast path looks for a zone's TZif file (zoneinfo's first folder on Linux).
SYSTEM_ZONE_FOLDER = "/usr/share/zoneinfo"
# The zones that matter most, for a machine with no zone database (nor the tzdata package).
FALLBACK_ZONES = MappingProxyType(
    {
        "Asia/Kolkata": timezone(timedelta(hours=5, minutes=30), "IST"),
        "UTC": timezone.utc,
        "Etc/UTC": timezone.utc,
    }
)
# A zone name's characters (zoneinfo's keys are paths below the zone folder).
ZONE_NAME_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_+-"
)
TZIF_HEADER_BYTES = 44


class UnknownZoneError(ValueError):
    """A time zone name that neither the zone database nor the built-in offsets know."""


class _Zone:
    """A display zone: its name, and, where the fast path applies, the fixed offset (as a
    ``timezone`` with the abbreviation) that holds from the Unix time ``since`` on."""

    __slots__ = ("fixed", "name", "since")

    def __init__(self, name: str, fixed: timezone | None, since: float) -> None:
        self.name = name
        self.fixed = fixed
        self.since = since

    def at(self, moment: datetime) -> tzinfo:
        """The zone's rule for ``moment`` (aware): the fixed offset when it holds then."""
        if self.fixed is not None and moment.timestamp() >= self.since:
            return self.fixed
        return named_zone(self.name)


_zones: dict[str, _Zone] = {}
_display = [DEFAULT_DISPLAY_TZ]  # the zone shown_time uses (use_display_zone sets it)


def named_zone(name: str) -> tzinfo:
    """The zone called ``name`` from the zone database (``zoneinfo``), else from the built-in
    offsets of the zones that matter most; UnknownZoneError when neither knows it."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        if name in FALLBACK_ZONES:
            return FALLBACK_ZONES[name]
        raise UnknownZoneError(f"unknown time zone {name!r}") from None


def _footer_offset(footer: bytes) -> timedelta | None:
    """The offset of a TZif footer (a POSIX TZ string) that names a standard time alone
    (``IST-5:30``, ``<+04>-4``, ``UTC0``), east of Greenwich positive; None for any other
    (daylight saving time, rules, nothing)."""
    text = footer.decode("ascii", "replace")
    if text.startswith("<"):
        end = text.find(">")
        rest = text[end + 1 :] if end > 0 else ""
    else:
        rest = text.lstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        if len(rest) == len(text) or len(text) - len(rest) < 3:
            return None
    sign = -1 if rest.startswith("+") or rest[:1].isdigit() else 1  # POSIX: west positive
    parts = rest.lstrip("+-").split(":")
    if not rest or len(parts) > 3 or not all(p.isdigit() and p.isascii() for p in parts):
        return None
    seconds = sum(int(p) * unit for p, unit in zip(parts, (3600, 60, 1)))
    return timedelta(seconds=sign * seconds) if seconds < 25 * 3600 else None


def fixed_tail(data: bytes) -> tuple[timezone, float] | None:
    """The offset and abbreviation a TZif file (RFC 8536, version 2 or later) keeps from its
    last transition on, with that transition's Unix time (-inf for a zone without any), when
    its footer has no daylight saving time and agrees with that last offset; else None."""
    counts = _counts(data, 0)
    if counts is None or data[4:5] in (b"\x00", b""):
        return None  # a version 1 file has no footer: its future is unknown
    start = TZIF_HEADER_BYTES + _block_size(counts, 4)
    counts = _counts(data, start)
    if counts is None:
        return None
    isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt = counts
    times = start + TZIF_HEADER_BYTES
    indices = times + 8 * timecnt
    types = indices + timecnt
    chars = types + 6 * typecnt
    footer = chars + charcnt + 12 * leapcnt + isstdcnt + isutcnt
    end = data.find(b"\n", footer + 1)
    if typecnt == 0 or data[footer : footer + 1] != b"\n" or end < 0:
        return None
    offset = _footer_offset(data[footer + 1 : end])
    kind = data[indices + timecnt - 1] if timecnt else 0
    if offset is None or kind >= typecnt:
        return None
    entry = types + 6 * kind
    utoff = int.from_bytes(data[entry : entry + 4], "big", signed=True)
    is_dst, abbreviation_at = data[entry + 4], data[entry + 5]
    stop = data.find(b"\x00", chars + abbreviation_at, chars + charcnt)
    if is_dst or utoff != offset.total_seconds() or stop < 0:
        return None
    abbreviation = data[chars + abbreviation_at : stop].decode("ascii", "replace")
    since = int.from_bytes(data[times + 8 * (timecnt - 1) : indices], "big", signed=True)
    return timezone(offset, abbreviation), (float(since) if timecnt else float("-inf"))


def _counts(data: bytes, at: int) -> tuple[int, int, int, int, int, int] | None:
    """The six counts of the TZif header at ``at``, or None when there is none."""
    if data[at : at + 4] != b"TZif" or len(data) < at + TZIF_HEADER_BYTES:
        return None
    found = [int.from_bytes(data[i : i + 4], "big") for i in range(at + 20, at + 44, 4)]
    return found[0], found[1], found[2], found[3], found[4], found[5]


def _block_size(counts: tuple[int, int, int, int, int, int], time_bytes: int) -> int:
    """The bytes of a TZif data block with these counts and ``time_bytes`` per time."""
    isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt = counts
    return (
        timecnt * (time_bytes + 1)
        + typecnt * 6
        + charcnt
        + leapcnt * (time_bytes + 4)
        + isstdcnt
        + isutcnt
    )


def _load(name: str) -> _Zone:
    """The zone ``name``: read from its TZif file when the fast path applies, else checked
    with ``zoneinfo`` (UnknownZoneError when unknown)."""
    plain = (
        name
        and set(name) <= ZONE_NAME_CHARACTERS
        and not name.startswith("/")
        and ".." not in name.split("/")
    )
    if plain and os.environ.get("PYTHONTZPATH") is None:  # a search path of someone's choice
        try:
            found = fixed_tail(read_small_file(os.path.join(SYSTEM_ZONE_FOLDER, name))[0])
        except OSError:
            found = None
        if found is not None:
            return _Zone(name, found[0], found[1])
    named_zone(name)  # UnknownZoneError when it is not a zone
    return _Zone(name, None, 0.0)


def display_zone(name: str) -> _Zone:
    """The zone ``name`` as shown_time uses it, loaded once; UnknownZoneError when unknown."""
    zone = _zones.get(name)
    if zone is None:
        zone = _zones[name] = _load(name)
    return zone


def use_display_zone(name: str) -> None:
    """Show times in the zone ``name`` from now on; UnknownZoneError when it is unknown."""
    display_zone(name)
    _display[0] = name


def shown_time(moment: datetime | float, *, seconds: bool = True, today: bool = False) -> str:
    """``moment`` (an aware datetime, a naive one in this machine's zone, or a Unix time) as
    people are shown it: ``2024-10-13 09:00:00 IST`` in the display zone (use_display_zone);
    without ``seconds`` ``2024-10-13 09:00 IST``; with ``today``, the date is left out when it
    is today's there (``09:00 IST``)."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, timezone.utc)
    elif moment.tzinfo is None:
        moment = moment.astimezone()
    zone = display_zone(_display[0])
    local = moment.astimezone(zone.at(moment))
    clock = f"{local:%H:%M:%S}" if seconds else f"{local:%H:%M}"
    if today:
        now = datetime.now(timezone.utc)
        if local.date() == now.astimezone(zone.at(now)).date():
            return f"{clock} {local:%Z}"
    return f"{local:%Y-%m-%d} {clock} {local:%Z}"
