"""The XTS client: logins, host lookup and token checks over HTTP, with retries and a deadline.

What an answer means (success judged on the XTS body, never on the HTTP status alone) is
decided in answers.py. Transient failures are retried with exponential backoff and jitter,
bounded by ``XTS_RETRIES`` and by the run's deadline; a refusal is never retried.
"""

from __future__ import annotations

import errno
import socket
import warnings
from collections.abc import Callable, Iterator, Mapping
from http.client import RemoteDisconnected
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import InsecureRequestWarning, NewConnectionError

from . import __version__
from .answers import (
    LoginResult,
    RedirectedError,
    RetryableError,
    RouteNotFoundError,
    decode_answer,
    describe_xts_error,
    is_rate_limit,
    login_result,
    one_line,
    require_token,
    retryable,
    shown_url,
)
from .errors import SETTINGS_FILE, LoginRefusedError, TokenRejectedError, XtsUnavailableError
from .sessions import INTERACTIVE, SESSIONS, Session
from .settings import Settings
from .store import StoredToken
from .timebox import (
    Deadline,
    RetriesSpent,
    run_within,
    seconds_text,
    with_retries,
)
from .urls import is_loopback_url
from .values import Frozen, plural

MAX_BODY_BYTES = 4 * 1024 * 1024
HOSTLOOKUP_PASSWORD = "2021HostLookUpAccess"  # noqa: S105 - public, the same for every broker
HOSTLOOKUP_VERSION = "interactive_1.0.1"
USER_AGENT = f"xts-token-refresher/{__version__}"
TOKEN_ERROR_PREFIXES = ("e-session-", "e-token-")
RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE})
# What a failure beneath requests' exception means, by the type of the socket's own error.
TRANSPORT_REASONS: tuple[tuple[tuple[type[BaseException], ...], str], ...] = (
    ((socket.gaierror,), "the host name does not resolve (DNS)"),
    ((ConnectionRefusedError,), "connection refused"),
    (
        (ConnectionResetError, ConnectionAbortedError, RemoteDisconnected),
        "the connection was reset",
    ),
)

# What to check when XTS answers a request with a redirect or "Route not found".
ROOT_HINT = (
    f"Check XTS_API_ROOT in {SETTINGS_FILE}: the API address your broker gives (https, with "
    "any path prefix, e.g. https://ttblaze.iifl.com)."
)
MARKETDATA_PATH_HINT = (
    f"Check XTS_MARKETDATA_PATH in {SETTINGS_FILE}: binary-feed brokers (Jainam, RMoney, "
    "ibulls) use /apibinarymarketdata, the others /apimarketdata; and XTS_API_ROOT."
)
HOSTLOOKUP_HINT = f"Check XTS_HOSTLOOKUP_URL (in {SETTINGS_FILE}) with your broker."

if TYPE_CHECKING:
    from .console import Log


class _Request(Frozen):
    """One HTTP request to XTS, as it is sent on every attempt."""

    __slots__ = ("headers", "method", "params", "payload", "rate_limit_is_answer", "url")
    _hidden = ("payload", "headers")  # the payload holds the secret, the headers a token
    method: str
    url: str
    payload: dict[str, str] | None
    params: dict[str, str] | None
    headers: dict[str, str] | None
    rate_limit_is_answer: bool

    def __init__(
        self,
        method: str,
        url: str,
        *,
        payload: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        rate_limit_is_answer: bool = False,
    ) -> None:
        self._set(
            method=method,
            url=url,
            payload=payload,
            params=params,
            headers=headers,
            rate_limit_is_answer=rate_limit_is_answer,
        )


def _causes(failure: BaseException) -> Iterator[BaseException]:
    """``failure`` and every exception beneath it: causes, contexts, and the ``reason`` or
    arguments in which requests and urllib3 wrap the socket's own error."""
    pending, seen = [failure], set()
    while pending:
        item = pending.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        inner = (item.__cause__, item.__context__, getattr(item, "reason", None), *item.args)
        pending += [found for found in inner if isinstance(found, BaseException)]


def never_sent(failure: requests.RequestException) -> bool:
    """Whether ``failure`` happened before the request could reach the server: no connection
    was made (DNS, refused, connect time-out), or TLS failed before anything was sent."""
    if isinstance(failure, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError)):
        return True
    unconnected = (NewConnectionError, socket.gaierror, ConnectionRefusedError)
    return any(isinstance(cause, unconnected) for cause in _causes(failure))


def _authorization_as_set(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """``request`` unchanged: the session's auth, so that requests never reads ~/.netrc."""
    return request


class XtsClient:
    """Talks to one broker's XTS API root on behalf of one run."""

    def __init__(
        self,
        settings: Settings,
        deadline: Deadline,
        log: Log,
    ) -> None:
        self.settings = settings
        self.deadline = deadline
        self.log = log
        self.http = NoRedirects()
        self.http.headers["User-Agent"] = USER_AGENT
        # With no auth of its own, requests reads ~/.netrc: an entry for the broker's host would
        # replace the token in Authorization with that login, and send its password to XTS.
        self.http.auth = _authorization_as_set
        # verify_ssl=false is announced once per run, loudly; not once per request. A filter,
        # not warnings.catch_warnings(), which is not safe while accounts run in threads.
        warnings.filterwarnings("ignore", category=InsecureRequestWarning)
        # Passed on every request: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE in the
        # environment override a session's verify, which would silently defeat XTS_CA_BUNDLE.
        self.tls_verify: bool | str = (
            str(settings.ca_bundle) if settings.ca_bundle is not None else settings.verify_ssl
        )

    def close(self) -> None:
        """Close pooled connections."""
        self.http.close()

    def __enter__(self) -> XtsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- sessions ---------------------------------------------------------------------------

    def login(self, session: Session) -> LoginResult:
        """Log in to ``session``, through a host lookup where the session and settings use one.

        A market-data login ends any earlier market-data session of the same app key.
        """
        creds = self.settings.credentials[session.name]
        payload = {
            "appKey": creds.app_key,
            "secretKey": creds.secret,
            "source": self.settings.source,
        }
        if session.uses_hostlookup and self.settings.hostlookup_url:
            unique_key, root = self.lookup_host(self.settings.hostlookup_url)
            payload["uniqueKey"] = unique_key
            url = f"{root}{session.login_path}"
        else:
            root = self.settings.api_root
            url = f"{root}{self.settings.base_path(session)}{session.login_path}"
        label = f"{session.label} login"
        fix = self._path_hint(session)
        body = self._call("POST", url, label, fix, payload=payload, check=require_token)
        return login_result(session, body, root)

    def exchange_access_token(self, access_token: str) -> LoginResult:
        """The interactive session for an access token the broker's login page handed over:
        ``POST {root}/interactive/user/session`` with the app key, secret and access token,
        answered like a key login (the same checks; a redirect is refused).

        An access token is good for one exchange, so a failure after which XTS may have acted
        on the request (a time-out, a reset, a 5xx) is not retried: a second try would be
        refused, and the person would be told the wrong reason. A failure before the request
        reached XTS (no connection), or XTS's rate limit, is retried as usual.
        """
        creds = self.settings.credentials[INTERACTIVE.name]
        payload = {
            "appKey": creds.app_key,
            "secretKey": creds.secret,
            "accessToken": access_token,
            "source": self.settings.source,
        }
        root = self.settings.api_root
        url = f"{root}{self.settings.base_path(INTERACTIVE)}{INTERACTIVE.login_path}"
        body = self._call(
            "POST",
            url,
            "access-token exchange",
            ROOT_HINT,
            payload=payload,
            check=require_token,
            one_time=True,
        )
        if body.get("type") != "success":
            raise LoginRefusedError(
                f"XTS refused the access token the broker's page handed over: "
                f"{describe_xts_error(body)}.",
                f"Sign in on the broker's page again; if XTS refuses again, check "
                f"{INTERACTIVE.key_variable} and {INTERACTIVE.secret_variable} (the link and the "
                "exchange must use the same app).",
            )
        return login_result(INTERACTIVE, body, root)

    def _path_hint(self, session: Session) -> str:
        """The setting to check when XTS answers ``session``'s requests with a redirect or
        "Route not found"."""
        if session.uses_hostlookup and self.settings.hostlookup_url:
            return HOSTLOOKUP_HINT
        return MARKETDATA_PATH_HINT if session.base_variable else ROOT_HINT

    def lookup_host(self, lookup_url: str) -> tuple[str, str]:
        """The unique key and connection string a clustered deployment assigns to this run."""
        payload = {"accesspassword": HOSTLOOKUP_PASSWORD, "version": HOSTLOOKUP_VERSION}

        def fields(body: dict[str, Any]) -> dict[str, str]:
            result = body.get("result")
            found = (
                {str(k).lower(): v for k, v in result.items()} if isinstance(result, dict) else {}
            )
            return {
                name: str(found.get(name.lower()) or "")
                for name in ("uniqueKey", "connectionString")
            }

        def complete(body: dict[str, Any]) -> None:
            if body.get("type") in ("success", True) and not all(fields(body).values()):
                raise RetryableError("the host lookup answer has no uniqueKey or connectionString")

        body = self._call(
            "POST", lookup_url, "host lookup", HOSTLOOKUP_HINT, payload=payload, check=complete
        )
        if body.get("type") not in ("success", True):
            raise XtsUnavailableError(
                f"The host lookup at {shown_url(lookup_url)} failed: {describe_xts_error(body)}.",
                HOSTLOOKUP_HINT,
            )
        found = fields(body)
        connection = found["connectionString"].rstrip("/")
        unsafe = unsafe_connection(connection, self.settings.api_root)
        if unsafe:
            raise XtsUnavailableError(
                f"The host lookup at {shown_url(lookup_url)} answered the connection string "
                f"{shown_url(connection)}, which {unsafe}: no login was sent (it carries the "
                "API secret).",
                f"Check XTS_HOSTLOOKUP_URL (in {SETTINGS_FILE}) with your broker: the connection "
                "string it hands out "
                "must be https, with no user or password in it.",
            )
        return found["uniqueKey"], connection

    def verify(self, stored: StoredToken) -> str:
        """Prove with one cheap authenticated call that XTS accepts ``stored``.

        Returns a short note on how it was accepted; raises TokenRejectedError when XTS says
        the token is invalid, XtsUnavailableError when XTS could not be asked.
        """
        session = SESSIONS[stored.session]
        # With host lookup, the stored root is the connection string: the base is in it.
        via_lookup = session.uses_hostlookup and self.settings.hostlookup_url
        base = "" if via_lookup else self.settings.base_path(session)
        url = f"{stored.api_root}{base}{session.check_path}"
        params = (
            {session.check_user_parameter: stored.user_id} if session.check_user_parameter else {}
        )
        label = f"{session.label} token check"
        body = self._call(
            "GET",
            url,
            label,
            self._path_hint(session),
            params=params,
            headers={"Authorization": stored.token},
            rate_limit_is_answer=True,
        )
        if body.get("type") == "success":
            return "accepted"
        if is_rate_limit(body):
            return "accepted (rate-limited, which proves the token was recognised)"
        code = str(body.get("code", ""))
        if (
            code.startswith(TOKEN_ERROR_PREFIXES)
            or "invalid token" in str(body.get("description", "")).lower()
        ):
            raise TokenRejectedError(
                f"XTS rejected the {session.label} token: {describe_xts_error(body)}."
            )
        return f"accepted (XTS answered {describe_xts_error(body)})"

    def probe(self, url: str) -> int:
        """The HTTP status of ``url`` (so DNS, TCP and TLS work); XtsUnavailableError if not."""
        timeout = min(self.settings.timeout, max(self.deadline.remaining(), 0.001))
        try:
            with self.http.get(
                url, timeout=timeout, stream=True, allow_redirects=False, verify=self.tls_verify
            ) as answer:
                return answer.status_code
        except requests.RequestException as exc:
            raise XtsUnavailableError(
                f"{shown_url(url)} cannot be reached: {explain_transport_failure(exc)}.",
                "Check the URL, DNS, the firewall and the certificate settings.",
            ) from None

    # -- transport --------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        url: str,
        label: str,
        fix: str,
        *,
        payload: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        check: Callable[[dict[str, Any]], None] | None = None,
        rate_limit_is_answer: bool = False,
        one_time: bool = False,
    ) -> dict[str, Any]:
        """The XTS JSON body of ``method url``, retrying transient failures.

        Raises XtsUnavailableError once the retries or the deadline are spent, and at once for
        a redirect or "Route not found", with ``fix`` (the setting to check) as its hint. With
        ``one_time`` (the request spends what it carries), only failures after which XTS
        cannot have acted on it are retried.
        """
        request = _Request(
            method,
            url,
            payload=payload,
            params=params,
            headers=headers,
            rate_limit_is_answer=rate_limit_is_answer,
        )

        def attempt(_number: int) -> dict[str, Any]:
            try:
                body = self._attempt(request)
            except RedirectedError as redirect:
                raise XtsUnavailableError(
                    f"The {label} at {shown_url(url)} was answered with {redirect.message}, "
                    "which is not followed (it would take the request, and the secret or token "
                    "in it, elsewhere).",
                    fix,
                ) from None
            except RouteNotFoundError as missing:
                raise XtsUnavailableError(
                    f"The {label} at {shown_url(url)} was answered {missing.message}: XTS "
                    "has no such path.",
                    fix,
                ) from None
            if is_rate_limit(body) and not rate_limit_is_answer:
                reason = f"rate limit: {describe_xts_error(body)}"
                raise RetryableError(reason, replay_safe=True)
            if check is not None:
                check(body)
            return body

        def attempt_once(number: int) -> dict[str, Any]:
            """An attempt at a request that spends what it carries: a failure after which it
            may have been acted on is final (another try would be refused, or worse)."""
            try:
                return attempt(number)
            except RetryableError as failure:
                if failure.replay_safe:
                    raise
                raise XtsUnavailableError(
                    f"The {label} at {shown_url(url)} failed ({failure.reason}), and is not "
                    "tried again: what it carries is good for one use, and XTS may have used "
                    "it up.",
                    fix,
                ) from None

        try:
            return with_retries(
                f"The {label}",
                attempt_once if one_time else attempt,
                self.log,
                transient=retryable,
                attempts=self.settings.retries + 1,
                first_wait=self.settings.retry_backoff,
                limits=(self.deadline,),
            )
        except RetriesSpent as spent:
            reason = spent.failure.reason
            if spent.limit is None:
                raise XtsUnavailableError(
                    f"The {label} failed after {plural(spent.attempts, 'attempt')}: {reason}."
                ) from None
            raise XtsUnavailableError(
                f"The {label} failed ({reason}) and XTS_DEADLINE ({self.deadline.seconds:g} s) "
                f"leaves no time for another try after {plural(spent.attempts, 'attempt')}.",
            ) from None

    def _attempt(self, request: _Request) -> dict[str, Any]:
        """One request, answered whole within the time left; RetryableError when it fails.

        requests' timeout bounds each socket read, not the whole exchange: a server that
        trickles its headers or body one byte at a time, or a resolver that hangs, would stretch
        one request without limit, so the whole exchange is bounded by run_within.
        """
        budget = min(self.settings.timeout, self.deadline.remaining())
        if budget <= 0:
            raise RetryableError("XTS_DEADLINE reached")
        try:
            status, answer_headers, raw = run_within(
                budget, lambda: self._exchange(request, budget)
            )
        except TimeoutError:
            raise RetryableError(f"no complete answer within {seconds_text(budget)} s") from None
        except requests.RequestException as exc:
            reason = explain_transport_failure(exc)
            if isinstance(exc, requests.exceptions.Timeout):
                # requests' socket time-out and run_within's bound are the same budget: either
                # may fire first, and the run says the same of both.
                reason = f"no complete answer within {seconds_text(budget)} s"
            raise RetryableError(reason, replay_safe=never_sent(exc)) from None
        return decode_answer(status, answer_headers, raw, request.rate_limit_is_answer)

    def _exchange(self, request: _Request, budget: float) -> tuple[int, Mapping[str, str], bytes]:
        """The status, headers and body of one request (blocking)."""
        answer = self.http.request(
            request.method,
            request.url,
            json=request.payload,
            params=request.params,
            headers=request.headers,
            timeout=budget,
            stream=True,
            allow_redirects=False,
            verify=self.tls_verify,
        )
        with answer:
            return answer.status_code, answer.headers, self._read_body(answer)

    @staticmethod
    def _read_body(answer: requests.Response) -> bytes:
        """The body, refused past MAX_BODY_BYTES (a runaway answer cannot fill the memory)."""
        body = read_capped(answer, MAX_BODY_BYTES)
        if body is None:
            raise RetryableError(f"the answer is larger than {MAX_BODY_BYTES // 1048576} MiB")
        return body


class NoRedirects(requests.Session):
    """A requests session that never works out where a redirect leads. The refresher follows
    none (each caller refuses a redirect itself, naming the setting to fix), yet requests, even
    with ``allow_redirects=False``, reads a redirect's whole body and decodes its Location as
    UTF-8: one that is not (a server's escape bytes) raised UnicodeDecodeError, exit 4."""

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        """None: no redirect is ever followed (see the class)."""
        return None


def request_once(method: str, url: str, **options: Any) -> requests.Response:
    """``requests.request(method, url, **options)``, through NoRedirects."""
    with NoRedirects() as http:
        return http.request(method, url, **options)


def unsafe_connection(connection: str, api_root: str) -> str | None:
    """Why a host lookup's ``connection`` string must not be logged in at, or None when it may.

    The login there carries the API secret: it must be https, with no user or password, no
    query and no fragment. Plain http is allowed only between loopback addresses, where an
    XTS_API_ROOT on plain http over loopback (a local simulator or tunnel) hands out one.
    """
    try:
        parts = urlsplit(connection)
        _ = parts.port
    except ValueError:
        return "is not a valid URL"
    if "@" in parts.netloc:
        return "carries a user or password"
    if parts.query or parts.fragment or "?" in connection or "#" in connection:
        return "has a query or fragment"
    if not parts.hostname:
        return "names no host"
    if parts.scheme.lower() == "https":
        return None
    local = (
        parts.scheme.lower() == "http"
        and api_root.lower().startswith("http://")
        and is_loopback_url(api_root)
        and is_loopback_url(connection)
    )
    return None if local else "is not https"


def read_capped(answer: requests.Response, limit: int) -> bytes | None:
    """The body of a streamed ``answer``, or None once it passes ``limit`` bytes (the rest is
    never read)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in answer.iter_content(65536):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def explain_transport_failure(
    exc: requests.RequestException, tls_hint: str = "see XTS_CA_BUNDLE", hide: str = ""
) -> str:
    """A one-line reason for a requests failure, from the types and ``errno`` of the
    failure and the exceptions beneath it (never from their English text); ``tls_hint`` says
    where the certificates that failed come from. ``hide`` (a secret in the URL, which some of
    requests' messages quote) is cut out of the text before it is shortened."""
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS failed (certificate not trusted or handshake broken; {tls_hint})"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    for cause in _causes(exc):
        for types, reason in TRANSPORT_REASONS:
            if isinstance(cause, types):
                return reason
        if isinstance(cause, OSError) and cause.errno in RESET_ERRNOS:
            return "the connection was reset"
    text = str(exc).replace(hide, "…") if hide else str(exc)
    return f"{type(exc).__name__}: {one_line(text)[:200]}"
