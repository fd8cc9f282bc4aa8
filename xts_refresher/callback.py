"""The browser login's callback: where the broker's login page sends the browser back.

While a run waits for an account holder to sign in on the broker's page, one small HTTP server
listens at the return URL's address; every account waiting on that address shares it, and the
one-time ``state`` each login link carries says whose a callback is. It accepts only a form
POST (``session`` in the body, ``state`` in the URL) or a GET (both in the query) at the
return URL's path, with a ``state`` it handed out and nobody used yet; the accepted session
goes to the account's handler. Anything else is answered 4xx and logged as a ⚠ line holding
the method, the client's address and the reason (never the request's content), and the wait
goes on. A request is bounded in size (its body 64 KiB, declared up front) and in time (a few
seconds, whole), and each has its own thread, so a slow client holds up nobody.

Only a run with a browser account waiting imports this module.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import secrets
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, quote, unquote_plus, urlsplit, urlunsplit

from .errors import ConfigError
from .parsers import InvalidSettingError, listen_host_port
from .settings import DEFAULT_RETURN_URL

if TYPE_CHECKING:
    from .console import Log

# Where a return URL that is not on this machine is listened for: the default return URL's
# address (the user's proxy forwards to it).
DEFAULT_LISTEN = listen_host_port(urlsplit(DEFAULT_RETURN_URL).netloc)
MAX_BODY = 64 * 1024  # a session (even a whole login answer) is a few KiB
MAX_REQUEST_LINE = 65536  # a GET carries the session in its query
REQUEST_SECONDS = 10.0  # the whole request, from connecting to its last byte
MAX_CONNECTIONS = 32  # at once; more are closed unanswered
MAX_LOGGED_REFUSALS = 50  # a flood of refusals must not flood the log
MAX_FIELDS = 20  # of a query or a form
FORM = "application/x-www-form-urlencoded"
FAVICON = "/favicon.ico"
ALLOWED = "GET, POST"
# The methods a refusal names; any other word a client sends is logged as "a request".
KNOWN_METHODS = frozenset(("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"))
# A line of HTTP headers every page of the listener carries: not cached, no referrer sent on
# (the URL holds the state), no content sniffing, nothing loaded or run.
PAGE_HEADERS = (
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'"),
)
# What to do when the listen address cannot be bound (a ConfigError: exit 2). Not a class of
# its own in errors.py: every refresh imports that module, and a class costs instructions.
LISTEN_HINT = (
    "Stop what listens there, or set XTS_CALLBACK_LISTEN (and XTS_RETURN_URL with it) to a "
    "free address of this machine, then run again."
)


def new_state() -> str:
    """A one-time random state for a login link (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def return_url_with_state(return_url: str, state: str) -> str:
    """``return_url`` with ``state=<state>`` added to its query (its other parameters kept as
    written, a ``state`` it had already replaced)."""
    split = urlsplit(return_url)
    kept = [
        part
        for part in split.query.split("&")
        if part and unquote_plus(part.split("=", 1)[0]) != "state"
    ]
    kept.append(f"state={quote(state, safe='')}")
    return urlunsplit(split._replace(query="&".join(kept)))


def login_link(login_url: str, app_key: str, return_url: str) -> str:
    """The link the holder opens: ``login_url`` with the app key and the URL-encoded return URL
    (which already carries the state) in its query."""
    separator = "&" if "?" in login_url else "?"
    app = quote(app_key, safe="")
    back = quote(return_url, safe="")
    return f"{login_url}{separator}appKey={app}&returnURL={back}"


def listen_address(setting: str | None, return_url: str) -> tuple[str, int]:
    """Where to listen: XTS_CALLBACK_LISTEN (``host:port``, ``[::1]:port``) when set; else the
    return URL's host and port when it is a loopback URL; else DEFAULT_LISTEN (the user's proxy
    forwards to it). ConfigError when the setting is not a host and port."""
    from .urls import is_loopback_url

    if setting is not None and setting.strip():
        try:
            return listen_host_port(setting.strip())
        except InvalidSettingError as exc:
            raise ConfigError(f"XTS_CALLBACK_LISTEN {exc}") from None
    if not is_loopback_url(return_url):
        return DEFAULT_LISTEN
    split = urlsplit(return_url)
    try:
        host, port = (split.hostname or "").rstrip("."), split.port
    except ValueError:
        raise ConfigError(
            "XTS_RETURN_URL has a port that is not a number from 1 to 65535."
        ) from None
    if port is None:
        port = 443 if split.scheme == "https" else 80
    return ("127.0.0.1" if host == "localhost" else host), port


def listen_addresses(setting: str | None, return_url: str) -> list[tuple[str, int]]:
    """Every address to listen on: listen_address's, and, for a return URL at the name
    ``localhost`` with no XTS_CALLBACK_LISTEN, ``::1`` on the same port too when this machine
    has it. A browser may resolve the name to either loopback address; the one left unbound
    would be free for any user of this machine to take, and the session would go there."""
    first = listen_address(setting, return_url)
    if setting is not None and setting.strip():
        return [first]
    try:
        named = (urlsplit(return_url).hostname or "").rstrip(".") == "localhost"
    except ValueError:
        named = False
    if not named or not _has_ipv6_loopback():
        return [first]
    return [first, ("::1", first[1])]


def _has_ipv6_loopback() -> bool:
    """Whether ::1 can be bound here (not on a machine without IPv6)."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def _shown_address(host: str, port: int) -> str:
    """``host:port``, an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Expected:
    """One account's wait: its state, the return URL's path, its handler; whether spent."""

    __slots__ = ("account", "handle", "path", "spent", "state")

    def __init__(self, account: str, state: str, path: str, handle: Callable[[str], str]) -> None:
        self.account = account
        self.state = state.encode("utf-8")
        self.path = path
        self.handle = handle
        self.spent = False


class _RefusedError(Exception):
    """A request the listener refuses: its status, the reason logged and shown, extra headers."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


class CallbackListener:
    """One small HTTP server on one listen address, serving every account that waits on it
    (the state says which). A context manager: it binds on entering (ConfigError, exit 2,
    when it cannot), serves in a daemon thread, and closes its socket on leaving.

    ``request_seconds`` bounds each request's whole time (tests shorten it)."""

    def __init__(
        self, host: str, port: int, log: Log, *, request_seconds: float = REQUEST_SECONDS
    ) -> None:
        self.host = host
        self.log = log
        self.request_seconds = request_seconds
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self._expected: list[_Expected] = []
        self._handling: set[str] = set()
        self._results: dict[str, BaseException | None] = {}
        self._refusals = 0
        self._connections = 0

    @property
    def port(self) -> int:
        """The port bound (the one asked for, or the one the system chose for port 0)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        """Where it listens, as ``host:port`` (``[::1]:port``)."""
        return _shown_address(self.host, self.port)

    def busy(self) -> int:
        """How many connections are being served now."""
        with self._changed:
            return self._connections

    def __enter__(self) -> CallbackListener:
        server_class = _Server6 if ":" in self.host else _Server
        try:
            self._server = server_class((self.host, self._requested_port), _Handler)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ConfigError(
                f"Cannot listen on {self.address} for the broker's login page to hand the "
                f"session back ({reason}).",
                LISTEN_HINT,
            ) from None
        self._server.listener = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"xts-callback-{self.address}",
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def expect(self, account: str, state: str, path: str, handle: Callable[[str], str]) -> None:
        """Wait for a callback at ``path`` carrying ``state``. For the first accepted one, call
        handle(session_text) in the request's thread: it returns the plain text shown to the
        browser (never a token). If it raises, the browser gets a failure page and wait()
        reports the exception. The state is spent once a callback carrying it is accepted."""
        with self._changed:
            self._expected.append(_Expected(account, state, path, handle))

    def wait(self, deadline: float) -> dict[str, BaseException | None]:
        """Block until every expected account's callback was handled, or time.monotonic()
        reaches ``deadline`` (a callback accepted before then is let finish); for each account
        handled, None or the exception its handler raised. An account missing from the
        result: nobody came in time."""
        with self._changed:
            while True:
                pending = {e.account for e in self._expected} - self._results.keys()
                left = deadline - time.monotonic()
                if not pending or (left <= 0 and not pending & self._handling):
                    return dict(self._results)
                self._changed.wait(left if left > 0 else 1.0)

    # Run on the requests' threads.

    def _accept(self, path: str, state: str) -> _Expected:
        """The wait ``state`` belongs to, now spent (the request's path must be its path);
        _RefusedError when there is none or it was spent already."""
        given = state.encode("utf-8")
        with self._changed:
            # Every state is compared (in constant time), so timing tells nothing of which.
            matched = [e for e in self._expected if hmac.compare_digest(e.state, given)]
            if not matched or matched[0].path != path:
                raise _RefusedError(403, "unknown state")
            found = matched[0]
            if found.spent:
                raise _RefusedError(409, "state already used")
            found.spent = True
            self._handling.add(found.account)
            return found

    def _handled(self, account: str, outcome: BaseException | None) -> None:
        with self._changed:
            self._handling.discard(account)
            self._results[account] = outcome
            self._changed.notify_all()

    def _connection_opened(self) -> bool:
        """Count a new connection in; False when MAX_CONNECTIONS are served already."""
        with self._changed:
            if self._connections >= MAX_CONNECTIONS:
                return False
            self._connections += 1
            return True

    def _connection_closed(self) -> None:
        with self._changed:
            self._connections -= 1

    def _paths(self) -> set[str]:
        with self._changed:
            return {e.path for e in self._expected}

    def _refused(self, method: str, client: str, reason: str) -> None:
        """Log one refusal: its method, client and reason, nothing of its content."""
        with self._changed:
            self._refusals += 1
            count = self._refusals
        if count <= MAX_LOGGED_REFUSALS:
            self.log.warning(
                "⚠ The login callback on %s refused %s from %s (%s); still waiting.",
                self.address,
                method,
                client,
                reason,
            )
        if count == MAX_LOGGED_REFUSALS:
            self.log.warning(
                "⚠ The login callback on %s refused %d requests; further ones are not logged.",
                self.address,
                count,
            )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Handlers stuck on a slow client must not make server_close() wait for them.
    block_on_close = False
    # The listen backlog: a burst of connections (a browser opens several) waits to be accepted
    # instead of having its SYNs dropped and retried a second later.
    request_queue_size = 2 * MAX_CONNECTIONS
    listener: CallbackListener

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse lookup of the host name (a slow DNS must not
        delay the wait)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in a thread of its own, unless MAX_CONNECTIONS are already
        being served: then close it unanswered."""
        if not self.listener._connection_opened():
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.listener._connection_closed()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.listener._connection_closed()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A failure no check foresaw: one ⚠ line with its type, never the request."""
        kind = type(sys.exc_info()[1]).__name__
        self.listener.log.warning(
            "⚠ The login callback on %s failed on a request from %s (%s); still waiting.",
            self.listener.address,
            client_address[0],
            kind,
        )


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """One connection, one request: read within the bounds, check it, answer it, close."""

    protocol_version = "HTTP/1.0"
    # Every answer has a status line and headers, even to a request line of no version.
    default_request_version = "HTTP/1.0"
    server_version = "xts-token-refresher"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        listener = self.server.listener
        super().setup()
        self.connection.settimeout(listener.request_seconds)  # each read
        self.command = ""
        self.request_version = self.default_request_version
        self.out_of_time = False
        # The whole request: when its time is up, its reading side is shut, which ends a read
        # under way (a client trickling a byte at a time never times out a single read).
        self.clock = threading.Timer(listener.request_seconds, self._time_is_up)
        self.clock.daemon = True
        self.clock.start()

    def finish(self) -> None:
        self.clock.cancel()
        with contextlib.suppress(OSError):
            super().finish()

    def _time_is_up(self) -> None:
        self.out_of_time = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RD)

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing of a request is logged but the refusals' lines."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Nothing of a request is logged but the refusals' lines."""

    def handle(self) -> None:
        self.close_connection = True
        try:
            if not cast(io.BufferedReader, self.rfile).peek(1):
                return  # connected and sent nothing (a browser's spare connection)
        except OSError:  # a time-out too: nothing was asked, there is nothing to refuse
            return
        try:
            self._serve()
        except socket.timeout:  # TimeoutError from 3.10; OSError before
            self._refuse(_RefusedError(408, "too slow"))
        except _RefusedError as refusal:
            self._refuse(refusal)
        except OSError:
            pass  # the client went away: nobody to answer

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """parse_request's refusals (a malformed line or headers) answered as every other one."""
        reasons = {414: "request line too long", 431: "too many or too long headers"}
        status = code if code in reasons else 400
        self._refuse(_RefusedError(status, reasons.get(code, "malformed request")))

    def _serve(self) -> None:
        line = self.rfile.readline(MAX_REQUEST_LINE + 1)
        self._check_time()
        if len(line) > MAX_REQUEST_LINE:
            raise _RefusedError(414, "request line too long")
        if not line.endswith(b"\n"):
            raise _RefusedError(400, "incomplete request")
        self.raw_requestline = line
        if not self.parse_request():
            return  # refused by send_error
        self._check_time()
        if self.command not in ("GET", "POST"):
            raise _RefusedError(405, "method not allowed", (("Allow", ALLOWED),))
        split = urlsplit(self.path)
        if split.path == FAVICON and split.path not in self.server.listener._paths():
            self._answer(404, "Not found.\n")  # asked by the browser itself: not worth a line
            return
        if split.path not in self.server.listener._paths():
            raise _RefusedError(404, "wrong path")
        query = _fields(split.query)
        fields = query if self.command == "GET" else _fields(self._form_body())
        self.clock.cancel()  # all of the request is in
        states = query.get("state", [])
        if len(states) != 1 or not states[0]:
            raise _RefusedError(400, "no state")
        sessions = fields.get("session", [])
        if len(sessions) != 1 or not sessions[0]:
            raise _RefusedError(400, "no session")
        expected = self.server.listener._accept(split.path, states[0])
        self._hand_over(expected, sessions[0])

    def _check_time(self) -> None:
        if self.out_of_time:
            raise _RefusedError(408, "too slow")

    def _form_body(self) -> str:
        """A POST's form body, read only when its declared length is within MAX_BODY."""
        if "Transfer-Encoding" in self.headers or "Content-Length" not in self.headers:
            raise _RefusedError(411, "no declared length")
        declared = self.headers.get("Content-Length", "").strip()
        # isascii too: "²" is a digit to str.isdigit() but not to int().
        if (
            not (declared.isascii() and declared.isdigit())
            or len(self.headers.get_all("Content-Length", [])) != 1
        ):
            raise _RefusedError(400, "malformed request")
        length = int(declared)
        if length > MAX_BODY:
            raise _RefusedError(413, "body too large")
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != FORM:
            raise _RefusedError(415, "not a form")
        body = self.rfile.read(length)
        self._check_time()
        if len(body) != length:
            raise _RefusedError(400, "incomplete request")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise _RefusedError(400, "malformed request") from None

    def _hand_over(self, expected: _Expected, session: str) -> None:
        """Give the session to its account's handler; answer the browser with its text, or
        with a failure page when it raised."""
        outcome: BaseException | None = None
        try:
            text = expected.handle(session)
            status = 200
        except BaseException as exc:  # reported by wait(), whatever it is
            outcome = exc
            status = 500
            text = (
                f"{expected.account} is not logged in: the login did not finish. The "
                "refresher's output says why."
            )
        try:
            self._answer(status, text)
        finally:
            self.server.listener._handled(expected.account, outcome)

    def _refuse(self, refusal: _RefusedError) -> None:
        method = self.command if self.command in KNOWN_METHODS else "a request"
        self.server.listener._refused(method, str(self.client_address[0]), refusal.reason)
        with contextlib.suppress(OSError):
            self._answer(refusal.status, f"Refused: {refusal.reason}.\n", refusal.headers)

    def _answer(self, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        body = text.encode("utf-8")
        self.send_response(status)
        for name, value in (*PAGE_HEADERS, *headers):
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()


def _fields(text: str) -> dict[str, list[str]]:
    """The fields of a query or a form body; _RefusedError when it is malformed or has too many."""
    try:
        return parse_qs(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS)
    except ValueError:  # too many fields, or not UTF-8 once percent-decoded
        raise _RefusedError(400, "malformed request") from None
