"""Where the program's files are: one resolver for every path the program or a bot reads.

Cron starts jobs in ``$HOME``, so a relative path is taken from the folder that holds
``xts_token_refresh.py``, never from the current folder. Only ``os`` is imported:
``load_token`` uses this module, and trading programs pay for every import; so it also
holds the small ``.env`` reader and the account lookup with which ``load_token`` finds a
token file (``bot_token_path``; its errors come from the package's own light ``errors``), and
the one way every token, settings and lock file is read (``read_small_file``).
"""

from __future__ import annotations

import errno
import os
import stat

from .errors import TokenUnavailableError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; mypy honours the name
if TYPE_CHECKING:
    from collections.abc import Mapping

    from .sessions import Session

APP_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
# With no account files, the single account of `.env` carries this name.
DEFAULT_ACCOUNT = "default"
DEFAULT_ACCOUNTS_DIR = "accounts"
ACCOUNT_FILE_SUFFIX = ".env"
ACCOUNT_NAME_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
)
MAX_ACCOUNT_NAME = 64
# The most a token, settings or lock file may hold: real ones hold a few kilobytes.
MAX_SMALL_FILE = 1 << 20
SMALL_FILE_LIMIT_TEXT = "1 MiB"


class RefusedFileError(OSError):
    """The file at a path is not one the program reads: a FIFO, a device, a folder, a socket,
    or a regular file larger than MAX_SMALL_FILE. ``strerror`` says which."""


def file_kind(mode: int) -> str:
    """What a file of ``mode`` (``st_mode``) is, in words: "a FIFO", "a device", ...."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refuse_unless_small(info: os.stat_result) -> None:
    """Raise RefusedFileError unless ``info`` is a regular file of at most MAX_SMALL_FILE."""
    if not stat.S_ISREG(info.st_mode):
        raise RefusedFileError(errno.EINVAL, f"it is {file_kind(info.st_mode)}, not a regular file")
    if info.st_size > MAX_SMALL_FILE:
        raise RefusedFileError(errno.EFBIG, f"it is larger than {SMALL_FILE_LIMIT_TEXT}")


def read_small_file(path: str | os.PathLike[str]) -> tuple[bytes, os.stat_result]:
    """The bytes of the regular file at ``path`` (symlinks followed) and its ``fstat``.

    Never blocks and never reads without limit: a FIFO would block the reader until someone
    writes, a device (``/dev/zero``) never ends, and a huge file fills the memory. So the
    path is looked at before it is opened (opening some devices has effects of its own), the
    open is non-blocking, the opened file is checked again (the path may have changed
    meanwhile), and at most MAX_SMALL_FILE + 1 bytes are read. Raises RefusedFileError for
    anything but a regular file of at most MAX_SMALL_FILE bytes, and the OSError of the
    failing call otherwise (FileNotFoundError when nothing is there).
    """
    _refuse_unless_small(os.stat(path))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        info = os.fstat(fd)
        _refuse_unless_small(info)
        chunks = []
        left = MAX_SMALL_FILE + 1
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    if left <= 0:  # it grew past the limit after the check
        raise RefusedFileError(errno.EFBIG, f"it is larger than {SMALL_FILE_LIMIT_TEXT}")
    return b"".join(chunks), info


def resolve(value: str) -> str:
    """``value`` as an absolute path: ``~`` and ``~user`` expanded (an unknown user's name is
    kept as written), a relative path taken from APP_DIR and tidied (no ``dir/../``).

    An absolute path is kept as written, since ``..`` after a symlink leads elsewhere than the
    text suggests.
    """
    path = os.path.expanduser(value)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(APP_DIR, path))


def env_file_value(variable: str) -> str | None:
    """``variable`` as the .env beside the program sets it, or None (see file_value)."""
    return file_value(os.path.join(APP_DIR, ".env"), variable)


def file_value(path: str, variable: str) -> str | None:
    """``variable`` as the .env-style file ``path`` sets it (its last non-empty value), or None
    when it is not set there or the file cannot be read.

    A deliberately small reader (``export``, quotes, a byte-order mark, comments) so that a
    trading program needs neither python-dotenv nor read access to anything but this line; a
    property test holds it to python-dotenv, which the refresher itself uses.
    """
    try:
        text = read_small_file(path)[0].decode("utf-8-sig", "replace")
    except OSError:  # also a FIFO, a device or a huge file (read_small_file)
        return None
    found = None
    for line in text.splitlines():
        name, sep, value = line.strip().removeprefix("export ").partition("=")
        if not sep or name.strip() != variable:
            continue
        found = unquote(value.strip()) or None
    return found


def unquote(value: str) -> str:
    """A .env value as python-dotenv reads it: quotes removed, a backslash before the quote or
    a backslash decoded inside quotes, and a ``#`` comment (after white space) dropped from a
    bare value."""
    quote = value[:1]
    if quote in ("'", '"'):
        out, index = [], 1
        while index < len(value) and value[index] != quote:
            if value[index] == "\\" and index + 1 < len(value) and value[index + 1] in quote + "\\":
                index += 1
            out.append(value[index])
            index += 1
        return "".join(out)
    for index, char in enumerate(value):
        if char == "#" and index > 0 and value[index - 1].isspace():
            return value[:index].strip()
    return value


def configured_token_path(session: Session, environ: Mapping[str, str]) -> str:
    """The token file the refresher writes for ``session``: ``environ``, the .env beside the
    program, or the default, resolved as the refresher resolves it."""
    variable = session.path_variable
    configured = environ.get(variable) or env_file_value(variable)
    return resolve(configured or session.default_file)


def is_account_name(name: str) -> bool:
    """True for a name an account may have: letters, digits, ``-``, ``_``, ``.``; 1-64 of
    them, not starting with ``.`` (a hidden file is no account)."""
    return (
        0 < len(name) <= MAX_ACCOUNT_NAME
        and not name.startswith(".")
        and set(name) <= ACCOUNT_NAME_CHARACTERS
    )


def account_names(accounts_dir: str) -> list[str]:
    """The names of the account files ``NAME.env`` in ``accounts_dir``, sorted; [] when there
    is no such folder. Names that no account may have are included, for the caller to refuse."""
    try:
        entries = os.listdir(accounts_dir)
    except OSError:
        return []
    names = [
        entry[: -len(ACCOUNT_FILE_SUFFIX)]
        for entry in entries
        if entry.endswith(ACCOUNT_FILE_SUFFIX) and not entry.startswith(".")
    ]
    return sorted(name for name in names if name)


def account_file(accounts_dir: str, name: str) -> str:
    """The settings file of account ``name``."""
    return os.path.join(accounts_dir, name + ACCOUNT_FILE_SUFFIX)


def account_folder(accounts_dir: str, name: str) -> str:
    """Where account ``name``'s token files go unless its own file says otherwise."""
    return os.path.join(accounts_dir, name)


def accounts_dir(environ: Mapping[str, str]) -> str:
    """The accounts folder, absolute: XTS_ACCOUNTS_DIR from ``environ`` or the .env beside
    the program, else ``accounts`` beside the program (as the refresher finds it)."""
    variable = "XTS_ACCOUNTS_DIR"
    return resolve(environ.get(variable) or env_file_value(variable) or DEFAULT_ACCOUNTS_DIR)


def bot_token_path(session: Session, environ: Mapping[str, str], account: str | None) -> str:
    """The token file of ``session`` for ``account`` (None: the only one), as ``load_token``
    reads it: absolute, where the refresher writes it.

    With no account files, ``.env`` is the single account ``default`` (configured_token_path).
    With account files, the path is what ``accounts/NAME.env`` sets (XTS_TOKEN_FILE or
    XTS_MARKETDATA_TOKEN_FILE; the environment's and ``.env``'s are not the account's), else
    ``accounts/NAME/<default file>``. Raises TokenUnavailableError (state ``missing``) for an
    account that does not exist, and when several do and ``account`` names none.
    """
    folder = accounts_dir(environ)
    names = account_names(folder)

    def refuse(message: str, hint: str) -> TokenUnavailableError:
        return TokenUnavailableError(message, state="missing", path=folder, hint=hint)

    if not names:
        if account is None or account == DEFAULT_ACCOUNT:
            return configured_token_path(session, environ)
        raise refuse(
            f"There is no account {account!r}: there are no account files (NAME.env) in "
            f"{folder}, so the only account is {DEFAULT_ACCOUNT!r} (the .env beside the "
            "refresher).",
            f"Call load_token() without account=, or create {account_file(folder, account)} "
            "and run the refresher.",
        )
    listing = ", ".join(names)
    if account is None:
        if len(names) > 1:
            raise refuse(
                f"There are several accounts in {folder} ({listing}): name one: "
                "load_token(account=...).",
                f"Pass account= one of {listing}.",
            )
        (account,) = names
    elif account not in names:
        raise refuse(
            f"There is no account {account!r} in {folder}: the accounts are {listing}.",
            f"Pass account= one of {listing}, or create {account_file(folder, account)} "
            "and run the refresher.",
        )
    configured = file_value(account_file(folder, account), session.path_variable)
    if configured:
        return resolve(configured)
    return os.path.join(account_folder(folder, account), session.default_file)


def missing_session_error(
    session: Session, environ: Mapping[str, str], account: str | None, token_path: str
) -> TokenUnavailableError | None:
    """The failure of a ``load_token`` for a session that ``account`` (None: the only one)
    does not have, as the refresher reads its settings: its key set nowhere (not in its own
    file, the environment, nor the .env beside the program); None when it has that session.
    Only asked once its token file ``token_path`` is found missing, so a found token costs
    nothing more."""
    folder = accounts_dir(environ)
    names = account_names(folder)
    if names:
        name = account or names[0]
        own_file = account_file(folder, name)
    else:
        name, own_file = DEFAULT_ACCOUNT, os.path.join(APP_DIR, ".env")
    variable = session.key_variable
    if (names and file_value(own_file, variable)) or environ.get(variable):
        return None
    if env_file_value(variable):
        return None
    return TokenUnavailableError(
        f"The account {name!r} has no {session.label} session: {variable} is set neither in "
        f"{own_file} nor in the environment, so the refresher saves no token at {token_path}.",
        state="missing",
        path=token_path,
        hint=f"Load a session the account has, or set {variable} and "
        f"{session.secret_variable} in {own_file}, then run the refresher.",
    )
