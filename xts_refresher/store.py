"""Token files: their shape, reading them and writing them atomically (the run lock beside
each is in locks.py).

Only the standard library is imported here, and only what reading a token needs at import
time (pathlib, typing and base64 are imported where they are used, or only for the type
checker), so trading programs read a token (``xts_token_refresh.load_token``) about as fast as
they read the JSON file themselves (see benchmarks/bench.py).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import time
from datetime import datetime, timedelta, timezone

from .errors import TokenSaveError, TokenUnavailableError
from .paths import RefusedFileError, read_small_file
from .sessions import SESSIONS, Session
from .values import Frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; mypy honours the name
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

TOKEN_FILE_MODE = 0o600
# With XTS_TOKEN_GROUP: the group's members (bots running as other users) may read the token.
GROUP_TOKEN_FILE_MODE = 0o640
# Linux's FS_IOC_GETFLAGS and the two flags that stop a rename over a file (chattr +i, +a).
FS_IOC_GETFLAGS = 0x80086601
FS_IMMUTABLE_OR_APPEND_FL = 0x10 | 0x20
ASSUMED_LIFETIME = timedelta(hours=24)
# A token that expires within this is renewed by `refresh --if-needed` and shown as expiring
# by `status` (`--renew-before` changes it for one refresh).
DEFAULT_RENEW_BEFORE = 2 * 3600.0
# The years a token file's times may fall in: from the Unix epoch to one year short of the
# last one datetime knows, so that zone changes and the assumed lifetime never overflow.
FIRST_YEAR, LAST_YEAR = 1970, 9998


class StoredToken(Frozen):
    """One session token as the token file holds it.

    ``extra`` keeps the session-specific fields (``isInvestorClient`` and ``clientCodes`` for the
    interactive session, ``application_expiry_date`` for market data) in the order XTS sent them.
    ``timestamp`` is the naive local time of the login on the machine that saved it, and
    ``utc_offset`` that machine's UTC offset then (None in files written before it was kept).
    """

    __slots__ = (
        "api_root",
        "expires_at",
        "extra",
        "session",
        "timestamp",
        "token",
        "user_id",
        "utc_offset",
    )
    _hidden = ("token",)
    token: str
    user_id: str
    session: str
    api_root: str
    timestamp: datetime
    expires_at: datetime | None
    extra: dict[str, Any]
    utc_offset: timedelta | None

    def __init__(
        self,
        *,
        token: str,
        user_id: str,
        session: str,
        api_root: str,
        timestamp: datetime,
        expires_at: datetime | None,
        extra: dict[str, Any] | None = None,
        utc_offset: timedelta | None = None,
    ) -> None:
        self._set(
            token=token,
            user_id=user_id,
            session=session,
            api_root=api_root,
            timestamp=timestamp,
            expires_at=expires_at,
            extra=dict(extra or {}),
            utc_offset=utc_offset,
        )

    @classmethod
    def logged_in_now(cls, **fields: Any) -> StoredToken:
        """A StoredToken of a login that happened just now: ``timestamp`` the local time,
        ``utc_offset`` this machine's offset; ``fields`` are the others."""
        now = datetime.now().astimezone()
        return cls(timestamp=now.replace(tzinfo=None), utc_offset=now.utcoffset(), **fields)

    @property
    def refreshed_at(self) -> datetime:
        """The local time of the login, to the second."""
        return self.timestamp.replace(microsecond=0)

    @property
    def logged_in_at(self) -> datetime:
        """When the login happened, as an aware datetime: ``timestamp`` in the zone it was
        written in (``utc_offset``); a file without ``utc_offset`` is read in this machine's
        zone, as it was before the offset was kept."""
        if self.timestamp.tzinfo is not None:  # a hand-written file may say its zone itself
            return self.timestamp
        if self.utc_offset is not None:
            return self.timestamp.replace(tzinfo=timezone(self.utc_offset))
        return self.timestamp.astimezone()

    @property
    def effective_expiry(self) -> datetime:
        """``expires_at``; for a token without a readable ``exp``, 24 h after the login.

        XTS tokens have lived ``exp - iat`` = 86,400 s; assuming so beats calling a token of
        last year fresh.
        """
        if self.expires_at is not None:
            return self.expires_at
        return self.logged_in_at + ASSUMED_LIFETIME

    def seconds_left(self, now: datetime | None = None) -> float:
        """Seconds until the token expires (negative once expired), see effective_expiry."""
        current = now or datetime.now(timezone.utc)
        return (self.effective_expiry - current).total_seconds()

    def is_expired(self, now: datetime | None = None) -> bool:
        """True when the token's (effective) expiry is in the past."""
        return self.seconds_left(now) <= 0

    def masked(self) -> str:
        """The token masked as ``mask`` does: at most its first six characters."""
        return mask(self.token)

    def to_json(self) -> dict[str, Any]:
        """The token file's JSON object, in the contract's key order."""
        data: dict[str, Any] = {
            "token": self.token,
            "userID": self.user_id,
            "timestamp": self.timestamp.isoformat(timespec="microseconds"),
            "refreshed_at": self.refreshed_at.strftime("%Y-%m-%d %H:%M:%S"),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "session": self.session,
            "api_root": self.api_root,
        }
        if self.utc_offset is not None:
            data["utc_offset"] = format_utc_offset(self.utc_offset)
        data.update(self.extra)
        return data


def format_duration(seconds: float) -> str:
    """``seconds`` in human units: ``23h 59m``, ``12m``, ``45s``, ``2d 3h``."""
    seconds = abs(int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def base_user(user_id: str) -> str:
    """The user part of an XTS userID (market data appends ``_<suffix>``), upper-cased."""
    return user_id.split("_", 1)[0].strip().upper()


def is_user(session: Session, user_id: str, wanted: str) -> bool:
    """Whether ``user_id``, as ``session``'s login answered it, is the user ``wanted`` (any
    case). Only a market-data userID may carry a ``_<suffix>``: an interactive ``CK68_EVIL``
    is not CK68."""
    if session.user_id_has_suffix:
        return base_user(user_id) == base_user(wanted)
    return user_id.strip().upper() == wanted.strip().upper()


def format_utc_offset(offset: timedelta) -> str:
    """``offset`` as ISO 8601 writes it: ``+05:30``, ``-04:00`` (whole minutes)."""
    minutes = round(offset.total_seconds() / 60)
    hours, minutes = divmod(abs(minutes), 60)
    return f"{'-' if offset < timedelta(0) else '+'}{hours:02d}:{minutes:02d}"


def parse_utc_offset(value: Any) -> timedelta | None:
    """A ``utc_offset`` as format_utc_offset writes it (``+05:30``), or None when it is not
    one (the file is then read as one written before the offset was kept)."""
    if not isinstance(value, str) or len(value) != 6 or value[0] not in "+-" or value[3] != ":":
        return None
    hours, minutes = value[1:3], value[4:]
    if not (hours.isdigit() and minutes.isdigit() and hours.isascii() and minutes.isascii()):
        return None
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    if offset >= timedelta(hours=24) or int(minutes) >= 60:
        return None
    return -offset if value[0] == "-" else offset


def is_plausible_time(moment: datetime) -> bool:
    """True when ``moment`` falls in the years FIRST_YEAR to LAST_YEAR: a time a token file
    may hold, and that every conversion the program makes can handle."""
    return FIRST_YEAR <= moment.year <= LAST_YEAR


def is_token_text(token: str) -> bool:
    """True when ``token`` is printable ASCII without white space (``\\x21``-``\\x7e``): what can
    travel in an Authorization header and sit whole in a file and a log line."""
    return token.isascii() and token.isprintable() and " " not in token


def mask(secret: str) -> str:
    """A secret shown as its first six characters (fewer for short ones) and an ellipsis."""
    return secret[: min(6, len(secret) // 3)] + "…"


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, decoded without checking the signature; {} when it is not a JWT.

    The signing key is the broker's, so the signature cannot be checked here; the claims are
    only used to know when the token dies.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    import base64
    import binascii

    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error, RecursionError):
        return {}
    return claims if isinstance(claims, dict) else {}


def expiry_from_token(token: str) -> datetime | None:
    """The token's ``exp`` claim as an aware local datetime, or None when it cannot be read."""
    exp = jwt_claims(token).get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    try:
        expiry = datetime.fromtimestamp(exp, timezone.utc).astimezone()
    except (OverflowError, OSError, ValueError):
        return None
    return expiry if is_plausible_time(expiry) else None


def app_key_expiry(value: Any) -> datetime | None:
    """XTS's ``application_expiry_date`` of a market-data login (``30-12-2028``) as a naive
    local date, or None when it is not one of the shapes XTS sends."""
    for shape in ("%d-%m-%Y", "%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(str(value).strip(), shape)
        except ValueError:
            continue
    return None


def _parse_local_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


# The token file's own fields; any other is kept in StoredToken.extra.
OWN_FIELDS = frozenset(
    {
        "token",
        "userID",
        "timestamp",
        "refreshed_at",
        "expires_at",
        "session",
        "api_root",
        "utc_offset",
    }
)


def parse_token_json(data: Any, path: str | os.PathLike[str], session: str) -> StoredToken:
    """A StoredToken from a token file's decoded JSON; TokenUnavailableError('corrupt') if bad."""

    def corrupt(why: str) -> TokenUnavailableError:
        return TokenUnavailableError(
            f"The token file {path} is corrupt: {why}.", state="corrupt", path=str(path)
        )

    if not isinstance(data, dict):
        raise corrupt("it is not a JSON object")
    token = data.get("token")
    if not isinstance(token, str) or not token:
        raise corrupt("it has no token")
    if not is_token_text(token):
        raise corrupt("its token is not printable ASCII")
    timestamp = _parse_local_time(data.get("timestamp"))
    if timestamp is None:
        raise corrupt("its timestamp is missing or malformed")
    if not is_plausible_time(timestamp):
        raise corrupt(f"its timestamp is not a time from {FIRST_YEAR} to {LAST_YEAR}")
    stored_session = data.get("session", session)
    if stored_session != session:
        raise corrupt(f"it holds the {stored_session!r} session, not {session!r}")
    expires_at = _parse_local_time(data.get("expires_at"))
    if expires_at is None:
        expires_at = expiry_from_token(token)
    elif not is_plausible_time(expires_at):
        raise corrupt(f"its expires_at is not a time from {FIRST_YEAR} to {LAST_YEAR}")
    elif expires_at.tzinfo is None:
        expires_at = expires_at.astimezone()
    return StoredToken(
        token=token,
        user_id=str(data.get("userID") or ""),
        session=session,
        api_root=str(data.get("api_root") or ""),
        timestamp=timestamp,
        expires_at=expires_at,
        extra={k: v for k, v in data.items() if k not in OWN_FIELDS},
        utc_offset=parse_utc_offset(data.get("utc_offset")),
    )


def read_token_file(path: str | os.PathLike[str], session: str = "interactive") -> StoredToken:
    """The token stored at ``path``, expired or not.

    Raises TokenUnavailableError with state ``missing`` or ``corrupt``.
    """
    try:
        raw = read_small_file(path)[0]
    except FileNotFoundError:
        raise TokenUnavailableError(
            f"No token file at {path}.", state="missing", path=str(path)
        ) from None
    except RefusedFileError as exc:
        raise TokenUnavailableError(
            f"The token file {path} is corrupt: {exc.strerror}.",
            state="corrupt",
            path=str(path),
            hint="Remove it (the refresher saves a regular file there), then run "
            "`xts_token_refresh.py` to log in again.",
        ) from None
    except OSError as exc:
        raise TokenUnavailableError(
            f"The token file {path} cannot be read: {exc.strerror}.",
            state="corrupt",
            path=str(path),
            hint="Check the file's owner and mode (0600, owned by the user running the bot).",
        ) from None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise TokenUnavailableError(
            f"The token file {path} is corrupt: it is not valid JSON.",
            state="corrupt",
            path=str(path),
        ) from None
    return parse_token_json(data, path, session)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems refuse fsync on a folder; the rename itself is still atomic.
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _temporary_beside(path: Path) -> Path:
    """A new temporary file name beside ``path``; remove_stale_temporaries knows the pattern."""
    return path.parent / f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"


def _is_immutable(path: Path) -> bool:
    """True when ``path`` carries the immutable or append-only flag (Linux; else False)."""
    import struct

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        flags = struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 4))[0]
    except OSError:  # not Linux, or a filesystem without flags
        return False
    finally:
        os.close(fd)
    return bool(flags & FS_IMMUTABLE_OR_APPEND_FL)


def check_writable(path: Path, session: Session) -> None:
    """Prove that ``path`` can be replaced, by creating and removing a temporary file beside it.

    A market-data login ends the previous market-data session, so a token that could not be
    saved must never be asked for: this runs before any login. Raises TokenSaveError saying
    what stands in the way (a folder at the path, a folder this user cannot write, an
    immutable file).
    """
    folder = path.parent
    label = session.label
    hint = (
        f"No {label} login was sent, so the current {label} token still works. Let the user "
        f"running the job write to {folder} (or point the token file elsewhere), then run again."
    )

    def refuse(why: str) -> TokenSaveError:
        return TokenSaveError(f"Cannot write the token file {path}: {why}.", hint)

    if path.is_dir() and not path.is_symlink():
        raise refuse("it is a folder")
    probe = _temporary_beside(path)
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except OSError as exc:
        raise refuse(f"cannot create a file in {folder} ({exc.strerror})") from None
    try:
        probe.unlink()
    except OSError as exc:  # an append-only folder: files go in, but never out again
        raise refuse(f"cannot remove a file from {folder} ({exc.strerror})") from None
    if not path.is_symlink() and _is_immutable(path):
        raise refuse("it is marked immutable or append-only (lsattr shows i or a; chattr -i)")


def write_atomically(
    path: Path,
    content: bytes,
    kept: str = "the previous token is kept",
    mode: int = TOKEN_FILE_MODE,
    what: str = "the token",
    *,
    group: int | None = None,
) -> None:
    """Replace ``path`` with ``content`` so a reader sees the old file or the new one, whole.

    The temporary file is created in the same folder (owner-only), given the group ``group``
    (a group ID; None keeps the user's) and then ``mode`` (0600 unless given; whatever the
    umask) before anything is written to it, written, fsynced, then renamed over ``path``: the
    file at ``path`` has its final group and mode from the moment it exists. A symbolic link at
    ``path`` is replaced, not followed. On any failure the temporary file is removed, the old
    file is untouched, and TokenSaveError says why (saving ``what``), then ``kept`` (what the
    untouched old file means).
    """
    folder = path.parent
    tmp = _temporary_beside(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise TokenSaveError(f"Cannot create a file in {folder}: {exc.strerror}; {kept}.") from None
    try:
        try:
            if group is not None:
                os.fchown(fd, -1, group)
            os.fchmod(fd, mode)  # after the group: a change of group may clear mode bits
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if path.is_dir() and not path.is_symlink():
            raise IsADirectoryError(errno.EISDIR, "it is a folder")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        reason = exc.strerror or str(exc)
        raise TokenSaveError(f"Cannot save {what} to {path}: {reason}; {kept}.") from None
    _fsync_folder(folder)


def give_to_group(path: Path, group: int, mode: int) -> bool:
    """Give the file or folder at ``path`` to the group ``group`` with ``mode``, when it is one
    of this user's and not already so (a symbolic link is left alone); True when it changed.
    Raises OSError when it cannot be changed."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        kind = stat.S_IFMT(info.st_mode)
        ours = info.st_uid == os.geteuid() and kind in (stat.S_IFREG, stat.S_IFDIR)
        if not ours or (info.st_gid, stat.S_IMODE(info.st_mode)) == (group, mode):
            return False
        os.fchown(fd, -1, group)
        os.fchmod(fd, mode)  # after the group: a change of group may clear mode bits
        return True
    finally:
        os.close(fd)


def remove_stale_temporaries(path: Path) -> int:
    """Delete the temporary files that killed runs left beside ``path``; how many went.

    Only a writer holding the run lock may call this: every other writer's temporary file is
    then a leftover of a run that died between creating it and renaming it.
    """
    removed = 0
    prefix = f".{path.name}."
    try:
        names = os.listdir(path.parent)
    except OSError:
        return 0  # the folder's problem is reported by the writability check
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        try:
            (path.parent / name).unlink()
            removed += 1
        except OSError:
            continue  # not ours to force: a later run tries again
    return removed


def save_token(path: Path, stored: StoredToken, group: int | None = None) -> None:
    """Write ``stored`` to ``path`` atomically (see write_atomically): mode 0600, or 0640 and
    owned by the group ``group`` (a group ID, from XTS_TOKEN_GROUP) when given."""
    mode = TOKEN_FILE_MODE if group is None else GROUP_TOKEN_FILE_MODE
    try:
        # ASCII-only and standard JSON (no NaN): every bot's JSON reader must take it.
        content = json.dumps(stored.to_json(), indent=2, allow_nan=False) + "\n"
    except ValueError as exc:
        raise TokenSaveError(f"The token for {path} cannot be written as JSON: {exc}.") from None
    session = SESSIONS[stored.session]
    if session.one_login_per_app_key:
        # The login that produced this token ended the previous session of its app key.
        kept = (
            f"the previous {session.label} token file is kept, but that token no longer works: "
            "this login ended its session"
        )
        try:
            write_atomically(path, content.encode("utf-8"), kept, mode, group=group)
        except TokenSaveError as exc:
            raise TokenSaveError(
                exc.message,
                "Free the disk or fix the folder, then run the refresh again at once: bots that "
                f"stream quotes need a new {session.label} token.",
            ) from None
        return
    write_atomically(path, content.encode("utf-8"), mode=mode, group=group)
