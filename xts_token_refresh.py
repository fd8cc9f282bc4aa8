#!/usr/bin/env python3
"""XTS token refresher: log in to XTS every morning and leave fresh tokens for trading bots.

Run it (usually from cron, through refresh_xts_token.sh)::

    xts_token_refresh.py [refresh|status|check-config|cron|demo] [options]

or read a stored token from a trading program, without importing the HTTP stack::

    from xts_token_refresh import load_token
    stored = load_token()            # raises TokenUnavailableError: missing, corrupt, expired
    stored = load_token(account="huf")  # with several accounts (accounts/NAME.env), name one
    xt._set_common_variables(stored.token, stored.user_id, stored.extra["isInvestorClient"])

The contract (commands, settings, files, exit codes) is documented in README.md.
"""

from __future__ import annotations

import os
import sys

from xts_refresher.errors import TokenUnavailableError, XtsRefreshError
from xts_refresher.paths import bot_token_path, missing_session_error, resolve
from xts_refresher.sessions import SESSIONS
from xts_refresher.store import StoredToken, read_token_file

__all__ = ["StoredToken", "TokenUnavailableError", "XtsRefreshError", "load_token", "main"]


def load_token(
    path: str | os.PathLike[str] | None = None,
    session: str = "interactive",
    account: str | None = None,
) -> StoredToken:
    """The stored, unexpired token of ``session`` ("interactive" or "marketdata").

    ``path`` (a relative one is taken from this file's folder, as the refresher takes it)
    wins over everything (``account`` is then ignored). Without it, the file is where the
    refresher saves that session for ``account``:

    - no account files (no ``NAME.env`` in the accounts folder: XTS_ACCOUNTS_DIR from the
      environment or the .env beside this file, else ``accounts`` beside this file): the
      single account ``default`` (``account`` None or "default"); XTS_TOKEN_FILE or
      XTS_MARKETDATA_TOKEN_FILE from the environment or the .env, else the default name
      beside this file;
    - account files: the account ``account`` names (None: the only one); what its file
      ``accounts/NAME.env`` sets, else ``accounts/NAME/<the default name>``.

    Returns a StoredToken: ``token``, ``user_id``, ``refreshed_at``, ``expires_at`` (aware
    datetime or None), ``seconds_left()``, ``extra`` (``isInvestorClient`` and ``clientCodes``,
    or ``application_expiry_date``).

    Raises TokenUnavailableError (``.state`` is "missing", "corrupt" or "expired") with a
    message that says which file (absolute) and what to do; "missing" also for an unknown
    account, for several accounts and none named (the message lists them), and for a
    session the account does not have (the message says so, naming its settings file).
    """
    if session not in SESSIONS:
        raise ValueError(
            f"session must be one of {', '.join(map(repr, SESSIONS))}, not {session!r}"
        )
    if path is not None:
        token_path = resolve(os.fspath(path))
    else:
        token_path = bot_token_path(SESSIONS[session], os.environ, account)
    try:
        stored = read_token_file(token_path, session)
    except TokenUnavailableError as exc:
        # No token file: a session the account does not have is told as such.
        unconfigured = None
        if exc.state == "missing" and path is None:
            unconfigured = missing_session_error(SESSIONS[session], os.environ, account, token_path)
        raise unconfigured or exc from None
    if stored.is_expired():
        label = SESSIONS[session].label
        raise TokenUnavailableError(
            f"The {label} token in {token_path} expired at {stored.effective_expiry}"
            + ("." if stored.expires_at else " (assumed: 24 h after its login; it has no exp)."),
            state="expired",
            path=str(token_path),
        )
    return stored


def main() -> int:
    """Run the command line (in the project's virtualenv when this Python lacks the packages);
    the exit code."""
    from xts_refresher.launch import main as launch

    return launch(os.path.realpath(__file__))


if __name__ == "__main__":
    sys.exit(main())
