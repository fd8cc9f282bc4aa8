"""Where the program's files are: one resolver for every path the program or a bot reads.

Cron starts jobs in ``$HOME``, so a relative path is taken from the folder that holds
``xts_token_refresh.py``, never from the current folder. Only ``os`` is imported:
``load_token`` uses this module, and trading programs pay for every import; so it also
holds the small ``.env`` reader with which ``load_token`` finds a configured token file.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; mypy honours the name
if TYPE_CHECKING:
    from collections.abc import Mapping

    from .sessions import Session

APP_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


def resolve(value: str) -> str:
    """``value`` as an absolute path: ``~`` and ``~user`` expanded (an unknown user's name is
    kept as written), a relative path taken from APP_DIR and tidied (no ``dir/../``).

    An absolute path is kept as written, since ``..`` after a symlink leads elsewhere than the
    text suggests.
    """
    path = os.path.expanduser(value)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(APP_DIR, path))


def env_file_value(variable: str) -> str | None:
    """``variable`` as the .env beside the program sets it, or None.

    A deliberately small reader (``export``, quotes, a byte-order mark, comments) so that a
    trading program needs neither python-dotenv nor read access to anything but this line; a
    property test holds it to python-dotenv, which the refresher itself uses.
    """
    try:
        with open(os.path.join(APP_DIR, ".env"), encoding="utf-8-sig", errors="replace") as env:
            text = env.read()
    except OSError:
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
