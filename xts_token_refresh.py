#!/usr/bin/env python3
"""XTS token refresher: log in to XTS every morning and leave fresh tokens for trading bots.

Run it (usually from cron, through refresh_xts_token.sh)::

    xts_token_refresh.py [refresh|status|check-config|cron|demo] [options]

or read a stored token from a trading program, without importing the HTTP stack::

    from xts_token_refresh import load_token
    stored = load_token()            # raises TokenUnavailableError: missing, corrupt, expired
    xt._set_common_variables(stored.token, stored.user_id, stored.extra["isInvestorClient"])

The contract (commands, settings, files, exit codes) is documented in README.md.
"""

from __future__ import annotations

import os
import sys
from types import MappingProxyType

from xts_refresher.errors import TokenUnavailableError, XtsRefreshError
from xts_refresher.paths import APP_DIR, resolve
from xts_refresher.store import StoredToken, read_token_file

__all__ = ["StoredToken", "TokenUnavailableError", "XtsRefreshError", "load_token", "main"]

DEFAULT_FILES = MappingProxyType(
    {"interactive": "xts_store_token.json", "marketdata": "xts_marketdata_token.json"}
)
PATH_VARIABLES = MappingProxyType(
    {"interactive": "XTS_TOKEN_FILE", "marketdata": "XTS_MARKETDATA_TOKEN_FILE"}
)


def _env_file_value(variable: str) -> str | None:
    """``variable`` as the .env beside this file sets it, or None.

    A deliberately small reader (``export``, quotes, a byte-order mark, comments) so that a
    trading program needs neither python-dotenv nor read access to anything but this line.
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
        found = _unquote(value.strip()) or None
    return found


def _unquote(value: str) -> str:
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


def _configured_path(session: str) -> str:
    """The token file the refresher writes for ``session``: the environment, .env, or default."""
    variable = PATH_VARIABLES[session]
    return resolve(os.environ.get(variable) or _env_file_value(variable) or DEFAULT_FILES[session])


def load_token(
    path: str | os.PathLike[str] | None = None, session: str = "interactive"
) -> StoredToken:
    """The stored, unexpired token of ``session`` ("interactive" or "marketdata").

    ``path`` (a relative one is taken from this file's folder, as the refresher takes it)
    defaults to where the refresher saves that session (XTS_TOKEN_FILE or
    XTS_MARKETDATA_TOKEN_FILE from the environment or the .env beside this file, else the
    default name beside this file). Returns a StoredToken: ``token``, ``user_id``,
    ``refreshed_at``, ``expires_at`` (aware datetime or None), ``seconds_left()``, ``extra``
    (``isInvestorClient`` and ``clientCodes``, or ``application_expiry_date``).

    Raises TokenUnavailableError (``.state`` is "missing", "corrupt" or "expired") with a
    message that says which file and what to do.
    """
    if session not in PATH_VARIABLES:
        raise ValueError(f"session must be 'interactive' or 'marketdata', not {session!r}")
    token_path = resolve(os.fspath(path)) if path is not None else _configured_path(session)
    stored = read_token_file(token_path, session)
    if stored.is_expired():
        raise TokenUnavailableError(
            f"The {session} token in {token_path} expired at {stored.effective_expiry}"
            + ("." if stored.expires_at else " (assumed: 24 h after its login; it has no exp)."),
            state="expired",
            path=str(token_path),
        )
    return stored


def main() -> int:
    """Run the command line; the exit code."""
    from importlib.util import find_spec

    missing = [name for name in ("requests", "dotenv") if find_spec(name) is None]
    if missing:
        venv = os.path.join(APP_DIR, ".venv")
        venv_python = os.path.join(venv, "bin", "python")
        if (
            os.path.exists(venv_python)
            and os.path.realpath(sys.prefix) != os.path.realpath(venv)
            and not os.environ.get("XTS_REEXECUTED")  # once: a broken .venv must not loop
        ):
            os.environ["XTS_REEXECUTED"] = "1"
            # Started with the system python (e.g. `./xts_token_refresh.py` or a hand-written
            # cron line): continue in the project's virtualenv, which has the packages.
            argv = [venv_python, os.path.realpath(__file__), *sys.argv[1:]]
            os.execv(venv_python, argv)  # noqa: S606 - the same program, in its virtualenv
        try:
            print(
                f"✗ Required packages are missing ({', '.join(missing)}). Run "
                "`./refresh_xts_token.sh --setup` (or pip install -r requirements.txt in your "
                "venv).",
                flush=True,
            )
        except BrokenPipeError:  # the reader went away (`| head`): the exit code still says it
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return 2
    from xts_refresher.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
