"""What an XTS answer means: its JSON decoded and classified (a usable body, a refusal, or a
failure worth retrying), and a server's text made safe to show.

Success is judged on the XTS body (``type`` and a token), never on the HTTP status alone: XTS
has answered "Invalid Token" with HTTP 200 and with 400 (see PROTOCOL.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .console import without_controls
from .errors import SETTINGS_FILE, LoginRefusedError, XtsUnavailableError
from .sessions import Session
from .store import is_token_text
from .timebox import Failure, retry_after_seconds
from .urls import without_credentials
from .values import Frozen


class LoginResult(Frozen):
    """A successful login: the token, who it is for, and the answer's ``result`` object."""

    __slots__ = ("api_root", "result", "session", "token", "user_id")
    _hidden = ("token", "result")
    session: str
    token: str
    user_id: str
    api_root: str
    result: dict[str, Any]

    def __init__(
        self, session: str, token: str, user_id: str, api_root: str, result: dict[str, Any]
    ) -> None:
        self._set(session=session, token=token, user_id=user_id, api_root=api_root, result=result)


class RetryableError(XtsUnavailableError):
    """One attempt failed in a way worth retrying; ``retry_after`` is the server's wish.

    The retry loop turns the last one into a plain XtsUnavailableError (exit 3).
    """

    def __init__(
        self, reason: str, retry_after: float | None = None, *, replay_safe: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        # True when the request cannot have been acted on: it never reached the server (no
        # connection), or XTS declined to look at it (rate limit). Only such a failure is
        # retried for a request that spends something (an access token is good for one use).
        self.replay_safe = replay_safe


def retryable(exc: Exception) -> Failure | None:
    """What the retry loop needs of ``exc`` when another attempt may mend it, else None."""
    return Failure(exc.reason, exc.retry_after) if isinstance(exc, RetryableError) else None


class RedirectedError(XtsUnavailableError):
    """XTS answered with a redirect, which is never followed: a login's secret (a 307 or 308
    resends the body) would go wherever the answer points. Not retried: the next answer
    would point the same way."""

    def __init__(self, status: int, location: str) -> None:
        super().__init__(f"a redirect (HTTP {status}) to {shown_url(location) or 'nowhere'}")


class RouteNotFoundError(XtsUnavailableError):
    """XTS has no such path (HTTP 404, "Route not found"): a setting names the wrong path, and
    no key or secret is to blame. Not retried."""


def one_line(text: str) -> str:
    """Text a server wrote, ready to be shown: line breaks and runs of white space folded into
    single spaces, any other control character written as ``\\xNN`` (without_controls).

    A line break could forge a ✓ line on stdout; an ESC sequence, a carriage return or a C1
    character could clear or rewrite the reader's terminal.
    """
    return without_controls(" ".join(text.split()))


def shown_url(url: str) -> str:
    """A URL a server sent, as it may be shown: on one line, without user and password."""
    return one_line(without_credentials(url))


def describe_xts_error(body: dict[str, Any]) -> str:
    """XTS's own code and description, plus any field errors of a 400 answer."""
    code = one_line(str(body.get("code") or "no code"))
    description = one_line(str(body.get("description") or "no description")).rstrip(".")
    text = f"{code}: {description}"
    result = body.get("result")
    errors = result.get("errors") if isinstance(result, dict) else None
    if isinstance(errors, list):
        details = []
        for item in errors:
            if isinstance(item, dict):
                messages = item.get("messages")
                joined = "; ".join(map(str, messages)) if isinstance(messages, list) else ""
                details.append(one_line(joined))
        details = [d for d in details if d]
        if details:
            text += f" ({'; '.join(details)})"
    return text


def is_rate_limit(body: dict[str, Any]) -> bool:
    """True when ``body`` is XTS's rate-limit answer (an ``e-apirl`` code)."""
    return str(body.get("code", "")).startswith("e-apirl")


def require_token(body: dict[str, Any]) -> None:
    """RetryableError when XTS says success but hands over no token (not a usable answer)."""
    result = body.get("result")
    token = result.get("token") if isinstance(result, dict) else None
    if body.get("type") == "success" and not (isinstance(token, str) and token.strip()):
        raise RetryableError("XTS answered success without a token")


def login_result(session: Session, body: dict[str, Any], root: str) -> LoginResult:
    """The LoginResult of a login answer's XTS body; LoginRefusedError when XTS refused.

    A token that is not printable ASCII could not travel in an Authorization header (and
    would be mangled in the file and the logs): such an answer is not a usable one.
    """
    if body.get("type") != "success":
        raise LoginRefusedError(
            f"XTS refused the {session.label} login: {describe_xts_error(body)}.",
            f"Fix {session.key_variable} and {session.secret_variable} in {SETTINGS_FILE} (the "
            "key and its secret must belong together, and to XTS_USER_ID when it is set), then "
            "run again.",
        )
    require_token(body)
    result: dict[str, Any] = body["result"]
    token = result["token"].strip()
    if not is_token_text(token):
        raise RetryableError("XTS answered a token that is not printable ASCII")
    # Lone UTF-16 surrogates (valid in JSON, not in UTF-8) are spelled out, not kept.
    raw_user = str(result.get("userID") or "").encode("utf-8", "backslashreplace").decode()
    user_id = one_line(raw_user)
    return LoginResult(session.name, token, user_id, root, result)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    """A JSON number as a float; ValueError for one too large to be finite (1e999)."""
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is out of range")
    return number


def decode_answer(
    status: int, headers: Mapping[str, str], raw: bytes, rate_limit_is_answer: bool = False
) -> dict[str, Any]:
    """The XTS JSON object of an answer; RetryableError for anything else, 5xx and 429.

    With ``rate_limit_is_answer`` (token checks), an XTS rate-limit body is an answer even
    with HTTP 429: XTS only rate-limits a token it recognised.
    """
    retry_after = retry_after_seconds(headers.get("Retry-After"))
    try:
        body = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):  # not JSON, NaN/Infinity, or nested past all reason
        body = None
    if 300 <= status < 400 and "Location" in headers:
        raise RedirectedError(status, headers["Location"])
    if status == 404:
        said = f" ({describe_xts_error(body)})" if isinstance(body, dict) else ""
        raise RouteNotFoundError(f"HTTP 404{said}")
    if not isinstance(body, dict) or "type" not in body:
        kind = one_line(headers.get("Content-Type", "no content type").split(";")[0])
        where = f" (redirect to {shown_url(headers['Location'])})" if "Location" in headers else ""
        raise RetryableError(
            f"HTTP {status}{where}, {len(raw)} bytes of {kind} that is not XTS JSON",
            retry_after,
        )
    if status == 429 and rate_limit_is_answer and is_rate_limit(body):
        return body
    if status >= 500 or status == 429:
        raise RetryableError(
            f"HTTP {status}: {describe_xts_error(body)}", retry_after, replay_safe=status == 429
        )
    return body
