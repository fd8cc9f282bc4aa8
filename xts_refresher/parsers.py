"""The parsers of settings' text: each turns the text of one variable into its value.

Each takes the text as read (possibly blank) and returns the value, None when the text is blank
(the setting's default then applies), or raises InvalidSettingError with what is wrong, a
sentence that follows the variable's name.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from urllib.parse import urlsplit

from . import paths
from .values import Frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; mypy honours the name
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")

TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})
# Placeholders from .env.example: sending them to the broker would only earn a refusal.
PLACEHOLDER_PREFIXES = ("your_", "your-", "<")


class InvalidSettingError(ValueError):
    """The text of a setting that its parser refuses; the message follows the variable's name
    (``must be true or false ...``)."""


def parse_text(raw: str) -> str | None:
    """The text, trimmed; InvalidSettingError for a placeholder left from .env.example."""
    value = raw.strip()
    if value.lower().startswith(PLACEHOLDER_PREFIXES):
        raise InvalidSettingError("still holds the placeholder from .env.example.")
    return value or None


def url_parser(*, base: bool = False, no_user: bool = False) -> Callable[[str], str | None]:
    """A parser of an http(s) URL, returned without a trailing ``/``; with ``base``, paths are
    added to it, so a query or a fragment (which would end up before those paths) is refused
    too; with ``no_user``, so is a user or password (never shown)."""

    def parse_url(raw: str) -> str | None:
        value = parse_text(raw)
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            if parts.port == 0:  # no server listens there, nor could the callback's listener
                raise ValueError
        except ValueError:
            problem = "is not a valid URL (check the brackets and the port)."
            raise InvalidSettingError(problem) from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise InvalidSettingError("must be an http(s) URL, e.g. https://host:port/path.")
        if no_user and "@" in parts.netloc:
            raise InvalidSettingError(
                "must not hold a user or password (user:password@): XTS reads the session "
                "token from the Authorization header, which they would replace."
            )
        if base and ("?" in value or "#" in value):
            raise InvalidSettingError(
                "must not have a query (?…) or a fragment (#…): paths are added to it, "
                "e.g. https://host:port/path."
            )
        return value.rstrip("/")

    return parse_url


def required(parse: Callable[[str], T | None], example: str) -> Callable[[str], T]:
    """``parse`` for a setting that must be set: blank text is InvalidSettingError too."""

    def parse_required(raw: str) -> T:
        value = parse(raw)
        if value is None:  # blank: a parser reads any other text as something, or refuses it
            raise InvalidSettingError(f"is not set (e.g. {example}).")
        return value

    return parse_required


def parse_boolean(raw: str) -> bool | None:
    """True or False from true/false, 1/0 or yes/no in any case; nothing else."""
    value = raw.strip().lower()
    if not value:
        return None
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise InvalidSettingError(f"must be true or false (or 1/0, yes/no), not {value!r}.")


def seconds_parser(
    minimum: float = 0.001, maximum: float = 86400.0
) -> Callable[[str], float | None]:
    """A parser of a number of seconds from ``minimum`` to ``maximum``."""

    def parse_seconds(raw: str) -> float | None:
        value = raw.strip()
        if not value:
            return None
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not minimum <= number <= maximum:
            raise InvalidSettingError(
                f"must be a number of seconds from {minimum:g} to {maximum:g}, not {value!r}."
            )
        return number

    return parse_seconds


def whole_parser(maximum: int) -> Callable[[str], int | None]:
    """A parser of a whole number from 0 to ``maximum`` (ASCII digits only)."""

    def parse_whole(raw: str) -> int | None:
        value = raw.strip()
        if not value:
            return None
        # Not a regular expression: compiling one costs every run about 0.3 M instructions.
        digits = value.isascii() and value.isdigit() and len(value) <= 6
        if not digits or int(value) > maximum:
            raise InvalidSettingError(f"must be a whole number from 0 to {maximum}, not {value!r}.")
        return int(value)

    return parse_whole


def choice_parser(*choices: str) -> Callable[[str], str | None]:
    """A parser of one of ``choices``, in any case."""

    def parse_choice(raw: str) -> str | None:
        value = raw.strip().lower()
        if value and value not in choices:
            raise InvalidSettingError(f"must be one of {', '.join(choices)}, not {value!r}.")
        return value or None

    return parse_choice


def parse_chat_ids(raw: str) -> tuple[str, ...] | None:
    """The chat IDs of a comma-separated list, each trimmed, in the order given; an empty item
    (``42,,7``, a trailing comma) is skipped and a repeated ID kept once (one message per chat
    and run). InvalidSettingError for an item with white space in it (IDs separated by spaces
    instead of commas) or a placeholder."""
    chats: list[str] = []
    for item in raw.split(","):
        chat = parse_text(item)
        if chat is None or chat in chats:
            continue
        if len(chat.split()) > 1:
            raise InvalidSettingError(
                "must be chat IDs separated by commas (e.g. 4242,-1001234567890), "
                f"not {raw.strip()!r}."
            )
        chats.append(chat)
    return tuple(chats) or None


def duration_parser(maximum: float) -> Callable[[str], float | None]:
    """A parser of seconds in ``30m``, ``1h30m``, ``45s`` or ``600`` (a bare number is seconds),
    as the command line's durations, from 0 to ``maximum`` (a whole number of hours)."""

    def parse_duration_setting(raw: str) -> float | None:
        value = raw.strip()
        if not value:
            return None
        if value.isascii() and value.isdigit():  # the default "0", read by every refresh
            seconds = float(value)
        else:
            from argparse import ArgumentTypeError

            from .cli import parse_duration  # the command line's reading of a duration

            try:
                seconds = parse_duration(value)
            except ArgumentTypeError:
                raise InvalidSettingError(
                    f"must be a duration such as 30m, 1h or 600, not {value!r}."
                ) from None
        if seconds > maximum:
            raise InvalidSettingError(f"must be at most {maximum / 3600:g}h, not {value!r}.")
        return seconds

    return parse_duration_setting


def return_url_parser(default: str) -> Callable[[str], str | None]:
    """A parser of an http(s) URL the broker's page sends the browser to, kept as written (its
    path is the one the callback listens at); no user or password, no fragment. ``default``
    is taken as it is, unparsed (every refresh reads it)."""

    def parse_return_url(raw: str) -> str | None:
        value = parse_text(raw)
        if value is None or value == default:
            return value
        parse_url = url_parser(no_user=True)
        parse_url(value)
        if "#" in value:
            raise InvalidSettingError("must not have a fragment (#…): browsers never send it.")
        return value

    return parse_return_url


def parse_listen_address(raw: str) -> str | None:
    """``host:port`` or ``[IPv6]:port`` of the callback listener, as written (listen_host_port
    reads it); InvalidSettingError for anything else."""
    value = raw.strip()
    if not value:
        return None
    listen_host_port(value)
    return value


def listen_host_port(text: str) -> tuple[str, int]:
    """The host and port of ``text``: ``host:port`` (an IPv4 address or a host name) or
    ``[IPv6 address]:port``, port 1-65535, nothing else (no user, no path); else
    InvalidSettingError."""
    import ipaddress
    import re

    refusal = InvalidSettingError(
        f"must be host:port, e.g. 127.0.0.1:8765 or [::1]:8765, not {text!r}."
    )
    try:
        split = urlsplit("//" + text)
        host, port = split.hostname, split.port
    except ValueError:
        raise refusal from None
    digits = text.rpartition(":")[2]  # int() would also take "+1" or "8_765" on old Pythons
    if not host or not port or split.netloc != text or split.username is not None:
        raise refusal
    if not (digits.isascii() and digits.isdigit()):
        raise refusal
    if (split.path, split.query, split.fragment) != ("", "", ""):
        raise refusal
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if text.startswith("[") or not re.fullmatch(
            r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", host
        ):
            raise refusal from None
    else:
        if (address.version == 6) != text.startswith("["):
            raise refusal
    return host, port


class TokenGroup(Frozen):
    """The group that may read the token files (XTS_TOKEN_GROUP): its name and ID."""

    __slots__ = ("gid", "name")
    name: str
    gid: int

    def __init__(self, name: str, gid: int) -> None:
        self._set(name=name, gid=gid)


def parse_group(raw: str) -> TokenGroup | None:
    """The group of this machine that ``raw`` names (a name, or a group ID), when this process
    may give files to it (root, or a member); InvalidSettingError for an unknown group or one
    this user is not in."""
    value = parse_text(raw)
    if value is None:
        return None
    import grp  # only installs with a token group pay for it

    entry: grp.struct_group | None = None
    with contextlib.suppress(KeyError):
        entry = grp.getgrnam(value)
    if entry is None and value.isascii() and value.isdigit():
        with contextlib.suppress(KeyError, OverflowError):
            entry = grp.getgrgid(int(value))
    if entry is None:
        raise InvalidSettingError(
            f"names the group {value!r}, which this machine does not have (`getent group` "
            "lists them; create it with `groupadd`)."
        )
    group = TokenGroup(entry.gr_name, entry.gr_gid)
    if os.geteuid() != 0 and group.gid != os.getegid() and group.gid not in os.getgroups():
        import pwd

        try:
            user = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            user = f"uid {os.geteuid()}"
        raise InvalidSettingError(
            f"names the group {group.name}, but this user ({user}) is not a member of it, so "
            f"the token files cannot be given to it: add the user to the group (`usermod -aG "
            f"{group.name} {user}`, then log in again) or name a group the user is in."
        )
    return group


def parse_path(raw: str) -> Path | None:
    """The path, absolute (see resolve_path), taken as written: neither trimmed nor checked."""
    return resolve_path(raw) if raw else None


def parse_file_path(raw: str) -> Path | None:
    """The path of a file, trimmed, absolute (see resolve_path); placeholders refused."""
    value = parse_text(raw)
    return resolve_path(value) if value else None


def parse_readable_file(raw: str) -> Path | None:
    """The path of a file that must exist and be readable (file_path)."""
    found = parse_file_path(raw)
    if found is not None and not _is_file(found):
        raise InvalidSettingError(f"points to {found}, which is not a readable file.")
    return found


def parse_display_zone(raw: str) -> str | None:
    """A time zone's name (``Asia/Kolkata``) that this machine knows (shown_time)."""
    from .shown_time import UnknownZoneError, display_zone

    value = parse_text(raw)
    if value is None:
        return None
    try:
        display_zone(value)
    except UnknownZoneError:
        raise InvalidSettingError(f"is not a time zone this machine knows ({value!r}).") from None
    return value


def parse_api_path(raw: str) -> str | None:
    """A path under the API root, ``/``-led without a trailing ``/``; "" for ``/`` (the API at
    the root itself)."""
    value = parse_text(raw)
    if value is None:
        return None
    stripped = value.strip("/")
    return f"/{stripped}" if stripped else ""


def resolve_path(value: str | os.PathLike[str]) -> Path:
    """``value`` as an absolute path; a relative one is taken from the program's folder."""
    return Path(paths.resolve(os.fspath(value)))


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte
        return False
