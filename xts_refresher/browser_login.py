"""A browser account's interactive session: what the broker's login page hands over, made a
saved token.

Some brokers issue an interactive session only after the account holder signs in on their XTS
login page; the page then hands the session to the return URL (a form POST or a GET carrying
``session``). What arrives there, what ``login --paste`` reads and what
XTS_ACCESS_TOKEN_COMMAND prints all come here: the JSON (also encoded twice), the whole
address the browser ended on, or a bare access token. An access token is exchanged for the
session (``XtsClient.exchange_access_token``); a finished session is taken as it is. Either
way the user is checked as for a key login, the token is proven with one authenticated call
(the same as ``--verify``), and only then saved, exactly as a refresh saves.

Only runs with a browser account import this module (account_refresh.py imports it lazily).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from .answers import LoginResult, one_line
from .errors import HolderLoginError, XtsRefreshError
from .sessions import INTERACTIVE
from .store import base_user, is_token_text, jwt_claims
from .values import Frozen

if TYPE_CHECKING:
    from .account_refresh import RefreshRun, SessionOutcome
    from .client import XtsClient
    from .settings import Settings

# What the page, a paste or a token command may hand over at most (the callback's own bound).
MAX_SESSION_BYTES = 64 * 1024
# A bare access token shorter than this is taken for a word of some message, not a token.
MIN_BARE_TOKEN_CHARACTERS = 16


class HandedSession(Frozen):
    """What the broker's page handed over: an access token to exchange, or a finished session
    (its token, user and the fields a token file keeps). ``state`` is the ``state`` parameter
    of a pasted address (None when there was none)."""

    __slots__ = ("access_token", "result", "state")
    _hidden = ("access_token", "result")
    access_token: str | None
    result: dict[str, Any] | None
    state: str | None

    def __init__(
        self,
        *,
        access_token: str | None = None,
        result: dict[str, Any] | None = None,
        state: str | None = None,
    ) -> None:
        self._set(access_token=access_token, result=result, state=state)

    def secrets(self) -> list[str]:
        """The access token and the session token it holds, for the redactor."""
        token = (self.result or {}).get("token")
        return [s for s in (self.access_token, token) if isinstance(s, str) and s]


def unusable(what: str, hint: str | None = None) -> HolderLoginError:
    """The failure of a handed-over session that cannot be used; ``what`` never quotes it."""
    return HolderLoginError(
        f"{what}; nothing was saved.",
        hint
        or "Sign in on the broker's page again (xts_token_refresh.py login); if this repeats, "
        "check XTS_LOGIN_URL and XTS_RETURN_URL with your broker.",
    )


def _decoded_json(text: str) -> Any:
    """``text`` as JSON, unwrapped once more when it is a JSON string holding JSON (some pages
    encode it twice); None when it is not JSON."""
    try:
        value = json.loads(text)
        if isinstance(value, str) and value.strip()[:1] in ("{", '"'):
            value = json.loads(value)
    except (ValueError, RecursionError):
        return None
    return value


def parse_session(text: str) -> HandedSession:
    """The session in ``text``: the page's JSON (``{"accessToken": …}`` or the finished
    ``{"token": …, "userID": …}``, also encoded twice or under ``result``), the whole address
    the browser ended on (its ``session`` parameter), or a bare access token.

    HolderLoginError (exit 1) for anything else; its message never quotes ``text``.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SESSION_BYTES:
        raise unusable(f"The session handed over is larger than {MAX_SESSION_BYTES // 1024} KiB")
    stripped = text.strip()
    if stripped.lower().startswith(("http://", "https://")):
        return _session_in_address(stripped)
    value = _decoded_json(stripped)
    if isinstance(value, dict):
        return _session_in_object(value)
    words = stripped.split()
    if (
        value is None
        and len(words) == 1
        and len(stripped) >= MIN_BARE_TOKEN_CHARACTERS
        and is_token_text(stripped)
        and stripped[0] not in "{[\"'<"
    ):
        return HandedSession(access_token=stripped)
    if not stripped:
        raise unusable("Nothing was handed over (no session)")
    raise unusable(
        "What was handed over is neither the session JSON of the broker's page, the address "
        "the browser ended on, nor an access token"
    )


def _session_in_address(address: str) -> HandedSession:
    """The session carried by the ``session`` parameter of the address the browser ended on,
    with the address's ``state``."""
    try:
        query = parse_qs(urlsplit(address).query, keep_blank_values=True)
    except ValueError:
        raise unusable("The address handed over is not a valid URL") from None
    state = (query.get("state") or [""])[0] or None
    sessions = query.get("session")
    if not sessions:
        raise unusable(
            "The address handed over carries no session parameter",
            "The page sent the session in a form (POST), which an address does not show: sign "
            "in again with `xts_token_refresh.py login`, which receives it itself, or paste the "
            "session JSON.",
        )
    value = _decoded_json(sessions[0].strip())
    if not isinstance(value, dict):
        raise unusable("The session parameter of the address handed over is not session JSON")
    found = _session_in_object(value)
    return found.replaced(state=state)


def _session_in_object(value: dict[str, Any]) -> HandedSession:
    """An access token or a finished session, from the page's JSON object."""
    inner = value.get("result")
    if isinstance(inner, dict) and "accessToken" not in value and "token" not in value:
        value = inner  # an XTS-style answer: {"type": "success", "result": {...}}
    access = value.get("accessToken")
    if isinstance(access, str) and access.strip():
        if not is_token_text(access.strip()):
            raise unusable("The access token handed over is not printable ASCII")
        return HandedSession(access_token=access.strip())
    token = value.get("token")
    if isinstance(token, str) and token.strip():
        if not is_token_text(token.strip()):
            raise unusable("The session token handed over is not printable ASCII")
        return HandedSession(result={**value, "token": token.strip()})
    raise unusable("The session JSON handed over holds neither an accessToken nor a token")


def session_login(handed: HandedSession, client: XtsClient) -> LoginResult:
    """The LoginResult of a handed-over session: the exchange's for an access token (exit 1
    when XTS refuses it), else the finished session's own, at this account's API root."""
    if handed.access_token is not None:
        return client.exchange_access_token(handed.access_token)
    result = dict(handed.result or {})
    raw_user = str(result.get("userID") or "").encode("utf-8", "backslashreplace").decode()
    # The page's userID is only its claim; the token's own (XTS signed it, and the proof call
    # puts it to XTS) says whose session it is. Unsigned JSON must not pair them otherwise.
    token_user = str(jwt_claims(result["token"]).get("userID") or "")
    if raw_user and token_user and base_user(token_user) != base_user(raw_user):
        raise unusable(
            f"The session token handed over belongs to user {one_line(base_user(token_user))}, "
            f"not to the userID {one_line(raw_user)} it came with"
        )
    return LoginResult(
        INTERACTIVE.name, result["token"], one_line(raw_user), client.settings.api_root, result
    )


def login_command_text(settings: Settings) -> str:
    """The command that lets the holder of ``settings``' account sign in."""
    return f"xts_token_refresh.py login --account {settings.account}"


def holder_needed(settings: Settings) -> HolderLoginError:
    """The failure of a refresh that has no way to a browser account's session on its own."""
    return HolderLoginError(
        f"{settings.account} needs its holder to sign in on the broker's page:",
        f"run {login_command_text(settings)}",
    )


def accept_session(
    run: RefreshRun, client: XtsClient, text: str, expected_state: str | None = None
) -> SessionOutcome:
    """Make ``text`` (what the page, a paste or the token command handed over) the account's
    saved interactive token: parse it, exchange an access token, check the user, prove the
    token with one authenticated call, save it as a refresh does. The outcome says what came
    of it (its error set on failure, which is also logged as a ✗ line); nothing is saved
    unless every step passed. A pasted address whose ``state`` is not ``expected_state`` is
    refused (it belongs to an older link)."""
    from .account_refresh import SessionOutcome

    try:
        handed = parse_session(text)
        for secret in handed.secrets():
            run.redactor.add(secret)
        if expected_state is not None and handed.state not in (None, expected_state):
            raise unusable(
                "The address handed over belongs to another sign-in (its state is not this "
                "one's link)",
                "Open the link this run printed, sign in, and paste the address it ends on.",
            )
        result = session_login(handed, client)
    except XtsRefreshError as exc:
        run.report(INTERACTIVE.title, exc, whole=True)
        return SessionOutcome(INTERACTIVE, error=exc)
    return run.save_login(INTERACTIVE, result, prove=client.verify)


def holder_session(run: RefreshRun, client: XtsClient) -> SessionOutcome:
    """The interactive session of a browser account in a refresh or ``login``: from the
    token command, the holder (waiting for the callback, or reading a paste), or, with
    neither, the failure that names the ``login`` command (exit 1)."""
    from .account_refresh import SessionOutcome

    settings = run.settings
    login = run.options.login
    try:
        if login is None and settings.access_token_command:
            from .token_command import run_token_command

            text = run_token_command(settings, run.deadline, run.redactor, run.log, run.stop)
            return accept_session(run, client, text)
        if login is None and settings.login_wait <= 0:
            raise holder_needed(settings)
        from .login import wait_for_holder

        wait = settings.login_wait if login is None else login.wait
        paste = login is not None and login.paste
        return wait_for_holder(run, client, wait, paste=paste)
    except XtsRefreshError as exc:
        exc.place(settings.broker, settings.shown_env_file)  # its hint names the account's file
        run.log.error("✗ %s", exc)
        return SessionOutcome(INTERACTIVE, error=exc)
