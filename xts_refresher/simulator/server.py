"""A local HTTP server that answers like an XTS broker, for tests and the ``demo`` command.

It simulates the interactive and market-data login endpoints, the cheap token checks
(``user/balance``, ``config/clientConfig``), logout and host lookup, as PROTOCOL.md describes
them (endpoints, answer and error shapes); any other path is answered 404, as a real server
does. It also plays a fake Telegram Bot API (``/bot<token>/sendMessage``, ``getMe`` and
``getChat``; a refused bot token answers 401, a forgotten chat 400 "chat not found") and a fake
healthchecks.io (``/ping/...``) so tests can count notifications and pings. Every route is
named once, in the route table (``ROUTE_TABLE``). Every request is recorded under its route's
name; faults can be queued per route to make the next answers fail (errors, HTML proxy pages,
rate limits, hangs, resets, trickled bodies, redirects), and ``login_delay`` makes every login
answer only after a wait, as a slow broker does. ``marketdata_path`` makes it a broker of one
market-data feed (``/apibinarymarketdata`` for a binary-feed broker: the other feed's paths are
"Route not found"), and ``hostlookup_connection`` sets the connection string its host lookup
hands out.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import secrets
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from . import thirdparty
from .faults import Fault, RecordedRequest, error_body, json_bytes, success_body
from .routes import (
    LOGIN_ROUTES,
    MARKETDATA_ROUTES,
    MD_PREFIXES,
    ROUTES,
    UNKNOWN,
    Answer,
    find_route,
    login_fields,
    required_field,
    telegram_fields,
)
from .thirdparty import (
    THIRDPARTY_INTERACTIVE_KEY,
    THIRDPARTY_INTERACTIVE_SECRET,
    THIRDPARTY_MARKETDATA_KEY,
    THIRDPARTY_MARKETDATA_SECRET,
    THIRDPARTY_PASSWORD,
    THIRDPARTY_TOTP_SECRET,
    THIRDPARTY_USER_ID,
)

__all__ = ["ROUTES", "Fault", "RecordedRequest", "XtsSimulator"]

DEMO_INTERACTIVE_KEY = "demo-interactive-key"
DEMO_INTERACTIVE_SECRET = "demo-interactive-secret"
DEMO_MARKETDATA_KEY = "demo-marketdata-key"
DEMO_MARKETDATA_SECRET = "demo-marketdata-secret"
DEMO_USER_ID = "DEMO01"

CODE_BAD_CREDENTIALS_INTERACTIVE = "e-user-0005"
CODE_BAD_CREDENTIALS_MARKETDATA = "e-response-0005"
BAD_CREDENTIALS_DESCRIPTION = "Invalid credentials. Please check your App Key and Secret Key."

KINDS = ("interactive", "marketdata")

_MAX_BODY = 10 * 1024 * 1024


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class _Token:
    kind: str
    app_key: str
    exp: float
    valid: bool = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Handlers stuck on a slow client must not make server_close() wait for them.
    block_on_close = False
    sim: XtsSimulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Keep test output clean: clients vanishing mid-answer is expected here."""


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0 closes every connection after one answer, so nothing lingers at stop().
    protocol_version = "HTTP/1.0"
    timeout = 30
    server_version = "nginx/1.18.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request stderr logging."""

    def do_GET(self) -> None:
        self._dispatch()

    # Every method goes through the same recorder, so unexpected ones show up as "unknown".
    do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_GET  # noqa: N815

    def _dispatch(self) -> None:
        self.close_connection = True
        sim = cast(_Server, self.server).sim
        try:
            self._serve(sim)
        except OSError:
            pass  # the client went away; nothing left to answer
        except Exception as exc:  # a simulator bug must show as a 500, not a hung client
            with contextlib.suppress(OSError):
                self._send(500, json_bytes(error_body("e-sim-0500", repr(exc))), ())

    def _serve(self, sim: XtsSimulator) -> None:
        try:
            length = min(max(int(self.headers.get("Content-Length", "0")), 0), _MAX_BODY)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length else b""
        parsed: Any = None
        if body:
            with contextlib.suppress(ValueError):
                parsed = json.loads(body)
        split = urlsplit(self.path)
        route = find_route(self.command, split.path, parsed, sim.api_prefix)
        if route.name in MARKETDATA_ROUTES and not split.path.startswith(
            tuple(sim.api_prefix + md_path + "/" for md_path in sim.marketdata_paths)
        ):
            route = UNKNOWN  # the other feed's path: this broker does not serve it
        request = RecordedRequest(
            route=route.name,
            method=self.command,
            path=split.path,
            query={k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            json=parsed,
            at=time.time(),
        )
        fault = sim._record(request)
        if fault is not None:
            self._send_fault(sim, fault)
            return
        delay = sim.login_delay if route.name in LOGIN_ROUTES else 0.0
        if delay > 0 and sim._stopping.wait(delay):
            return  # stopping: leave without answering so stop() stays fast
        status, answer = route.answer(sim, request)
        if isinstance(answer, Fault):
            self._send_fault(sim, answer)
        elif isinstance(answer, bytes):
            self._send(status, answer, (("Content-Type", "text/plain; charset=utf-8"),))
        else:
            self._send(status, json_bytes(answer), (("Content-Type", "application/json"),))

    def _send(self, status: int, body: bytes, headers: tuple[tuple[str, str], ...]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if not any(name.lower() == "content-length" for name, _ in headers):
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_fault(self, sim: XtsSimulator, fault: Fault) -> None:
        if fault.delay > 0 and sim._stopping.wait(fault.delay):
            return  # stopping: leave without answering so stop() stays fast
        if fault.reset and fault.cut_after >= 0:
            headers = (*fault.headers, ("Content-Length", str(len(fault.body))))
            self._send(fault.status, fault.body[: fault.cut_after], headers)
            self.wfile.flush()
        if fault.reset:
            # Linger 0 turns close() into a TCP RST instead of an orderly FIN; the socket is
            # really closed when finish() drops the last file object on it.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        if fault.trickle <= 0:
            self._send(fault.status, fault.body, fault.headers)
            return
        self._send(fault.status, b"", (*fault.headers, ("Content-Length", str(len(fault.body)))))
        for index in range(len(fault.body)):
            if sim._stopping.wait(fault.trickle):
                return
            self.wfile.write(fault.body[index : index + 1])


class XtsSimulator:
    """A fake XTS broker (plus Telegram and healthchecks.io) serving on a local port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token_lifetime: int = 86400,
        application_expiry_date: str = "30-12-2028",
        tls: ssl.SSLContext | None = None,
        api_prefix: str = "",
        login_delay: float = 0.0,
        marketdata_path: str | None = None,
    ) -> None:
        if login_delay < 0:
            raise ValueError("login_delay must not be negative")
        self.token_lifetime = token_lifetime
        # Seconds every login (interactive and market-data) waits before it is answered, as a
        # slow broker does; a queued fault is sent instead, with its own delay.
        self.login_delay = login_delay
        # The path prefix of the simulated API root: "/xts" serves https://host/xts.
        self.api_prefix = api_prefix.rstrip("/")
        self.application_expiry_date = application_expiry_date
        self.interactive_user_override: str | None = None
        self.marketdata_user_override: str | None = None
        self.hostlookup_style: str = "standard"
        # The connection string host lookups hand out; None: {url}/interactive, this server.
        self.hostlookup_connection: str | None = None
        # The market-data API paths served: both, or only the one of a broker's feed
        # ("/apibinarymarketdata" for a binary-feed broker), the other answered 404.
        self.marketdata_paths = MD_PREFIXES if marketdata_path is None else (marketdata_path,)
        self.last_unique_key: str | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._accounts: dict[tuple[str, str], tuple[str, str]] = {}
        self._faults: dict[str, list[Fault]] = {route: [] for route in ROUTES}
        self._requests: list[RecordedRequest] = []
        self._tokens: dict[str, _Token] = {}
        self._issued: dict[str, list[str]] = {kind: [] for kind in KINDS}
        self._md_current: dict[str, str] = {}
        self._messages: list[RecordedRequest] = []
        self._refused_bot_tokens: set[str] = set()
        self._unknown_chats: set[str] = set()
        self._thread: threading.Thread | None = None
        self._stopped = False
        # Bind now so that url is known before start(), e.g. to build a test's config.
        self._server = _Server((host, port), _Handler)
        self._server.sim = self
        self._scheme = "http"
        if tls is not None:
            # Serve HTTPS with the caller's certificate (tests of TLS failures and XTS_CA_BUNDLE).
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        self.add_account(DEMO_INTERACTIVE_KEY, DEMO_INTERACTIVE_SECRET, DEMO_USER_ID)
        self.add_account(DEMO_MARKETDATA_KEY, DEMO_MARKETDATA_SECRET, DEMO_USER_ID, "marketdata")
        # The broker's login page and its holder, who must sign in there (see thirdparty.py).
        self.thirdparty = thirdparty.ThirdpartyBroker()
        self.thirdparty.add_account(
            THIRDPARTY_INTERACTIVE_KEY, THIRDPARTY_INTERACTIVE_SECRET, THIRDPARTY_USER_ID
        )
        self.add_account(
            THIRDPARTY_MARKETDATA_KEY,
            THIRDPARTY_MARKETDATA_SECRET,
            THIRDPARTY_USER_ID,
            "marketdata",
        )

    @property
    def url(self) -> str:
        """Return the base URL, e.g. ``http://127.0.0.1:54321``."""
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}"

    def start(self) -> XtsSimulator:
        """Serve in a daemon thread; return self."""
        if self._stopped:
            raise RuntimeError("a stopped XtsSimulator cannot be restarted")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"xts-simulator-{self.url}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, waking hung or trickling handlers; return None. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=1.0)
        self._server.server_close()

    def __enter__(self) -> XtsSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def add_account(
        self, app_key: str, secret: str, user_id: str, kind: str = "interactive"
    ) -> None:
        """Accept ``app_key``/``secret`` on the ``kind`` login endpoint; return None."""
        if kind not in KINDS:
            raise ValueError(f"unknown account kind {kind!r}; expected one of {KINDS}")
        with self._lock:
            self._accounts[(kind, app_key)] = (secret, user_id)

    def add_fault(self, route: str, fault: Fault, times: int = 1) -> None:
        """Make the next ``times`` requests on ``route`` get ``fault``; return None."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; expected one of {ROUTES}")
        if times < 0:
            raise ValueError("times must not be negative")
        with self._lock:
            self._faults[route].extend([fault] * times)

    def requests(self, route: str | None = None) -> list[RecordedRequest]:
        """Return a copy of the recorded requests in arrival order, optionally for one route."""
        with self._lock:
            return [r for r in self._requests if route is None or r.route == route]

    def count(self, route: str) -> int:
        """Return how many requests arrived on ``route``."""
        return len(self.requests(route))

    def clear(self) -> None:
        """Forget recorded requests (accounts, tokens and faults stay); return None."""
        with self._lock:
            self._requests.clear()

    def issued_tokens(self, kind: str) -> list[str]:
        """Return the tokens handed out for ``kind`` ("interactive"/"marketdata"), in order."""
        if kind not in KINDS:
            raise ValueError(f"unknown token kind {kind!r}; expected one of {KINDS}")
        with self._lock:
            return list(self._issued[kind])

    def telegram_messages(self) -> list[RecordedRequest]:
        """Return the sendMessage requests Telegram accepted (not those a fault answered, nor
        the refused), in order: each is a message that reached its chat."""
        with self._lock:
            return list(self._messages)

    def refuse_bot_token(self, token: str) -> None:
        """Answer every Bot API request made with ``token`` 401 Unauthorized, as Telegram
        does for a revoked or mistyped token; return None."""
        with self._lock:
            self._refused_bot_tokens.add(token)

    def forget_chat(self, chat_id: str) -> None:
        """Answer sendMessage and getChat for ``chat_id`` 400 "chat not found"; return None."""
        with self._lock:
            self._unknown_chats.add(str(chat_id))

    def invalidate_tokens(self, kind: str | None = None) -> None:
        """Make every token issued so far (of ``kind`` only, when given) answer "Invalid Token",
        as after a broker restart; return None."""
        with self._lock:
            for info in self._tokens.values():
                if kind is None or info.kind == kind:
                    info.valid = False

    # Internals below run on handler threads.

    def _valid_kind(self, token: str) -> str | None:
        info = self._tokens.get(token)
        if info is None or not info.valid or time.time() >= info.exp:
            return None
        return info.kind

    def _record(self, request: RecordedRequest) -> Fault | None:
        with self._lock:
            self._requests.append(request)
            queue = self._faults[request.route]
            return queue.pop(0) if queue else None

    def _deliver_message(self, request: RecordedRequest) -> int:
        """Keep ``request`` as a delivered message; return its ID (1, 2, ...)."""
        with self._lock:
            self._messages.append(request)
            return len(self._messages)

    def _telegram_refusal(self, request: RecordedRequest, *, needs_chat: bool) -> Answer | None:
        """Telegram's refusal of ``request``, or None: 401 for a refused bot token, 400 for a
        forgotten chat (or no chat_id at all) where the method needs one."""
        token = request.path.split("/")[1][len("bot") :]
        with self._lock:
            refused = token in self._refused_bot_tokens
            unknown = self._unknown_chats.copy()
        if refused:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        chat_id = telegram_fields(request).get("chat_id")
        if needs_chat and (chat_id in (None, "") or str(chat_id) in unknown):
            description = "Bad Request: chat not found"
            return 400, {"ok": False, "error_code": 400, "description": description}
        return None

    def _login(self, request: RecordedRequest, kind: str) -> Answer:
        fields = login_fields(request)
        names = ("appKey", "secretKey", "source")
        errors = [
            required_field(n) for n in names if not isinstance(fields.get(n), str) or not fields[n]
        ]
        if errors:
            return 400, error_body("e-validation-0001", "Bad Request", {"errors": errors})
        app_key = fields["appKey"]
        if kind == "interactive":
            refusal = thirdparty.key_login_refusal(self, app_key, fields["secretKey"])
            if refusal is not None:
                return refusal
        with self._lock:
            account = self._accounts.get((kind, app_key))
        if account is None or account[0] != fields["secretKey"]:
            code = CODE_BAD_CREDENTIALS_INTERACTIVE
            if kind == "marketdata":
                code = CODE_BAD_CREDENTIALS_MARKETDATA
            return 400, error_body(code, BAD_CREDENTIALS_DESCRIPTION)
        return self._logged_in(kind, app_key, account[1])

    def _logged_in(self, kind: str, app_key: str, user_id: str) -> Answer:
        """The answer of a successful ``kind`` login of ``app_key``, whose user is ``user_id``
        (unless a user override says otherwise): a new session token."""
        override = self.interactive_user_override
        if kind == "marketdata":
            override = self.marketdata_user_override
        user = override if override is not None else user_id
        token = self._issue(kind, app_key, user)
        if kind == "marketdata":
            result: dict[str, Any] = {
                "token": token,
                "userID": user,
                "appVersion": "5.0.15",
                "application_expiry_date": self.application_expiry_date,
            }
            return 200, success_body("s-response-0010", "Provided Valid Credentials", result)
        result = {
            "enums": {"orderSide": ["BUY", "SELL"]},
            "clientCodes": [user],
            "exchangeSegmentArray": [{}],
            "token": token,
            "userID": user,
            "isInvestorClient": True,
            "isOneTouchUser": False,
        }
        return 200, success_body("s-user-0001", "Valid User.", result)

    def _issue(self, kind: str, app_key: str, user: str) -> str:
        now = int(time.time())
        exp = now + self.token_lifetime
        user_id = f"{user}_{secrets.token_hex(10).upper()}"
        payload = {"userID": user_id, "publicKey": secrets.token_hex(16), "iat": now, "exp": exp}
        # The signature is random: clients must read the JWT without verifying it.
        parts = ({"alg": "HS256", "typ": "JWT"}, payload)
        encoded = [_b64url(json.dumps(part, separators=(",", ":")).encode()) for part in parts]
        token = ".".join((*encoded, _b64url(secrets.token_bytes(32))))
        with self._lock:
            if kind == "marketdata":
                # One market-data session per app key, as the real server enforces.
                previous = self._tokens.get(self._md_current.get(app_key, ""))
                if previous is not None:
                    previous.valid = False
                self._md_current[app_key] = token
            self._tokens[token] = _Token(kind=kind, app_key=app_key, exp=exp)
            self._issued[kind].append(token)
        return token

    def _authorized(
        self, request: RecordedRequest, kind: str, *, logout: bool = False
    ) -> tuple[int, Any]:
        token = request.headers.get("authorization")
        if not token:
            return 400, error_body("e-token-0002", "Please Provide token to Authenticate")
        with self._lock:
            if self._valid_kind(token) != kind:
                return 400, error_body("e-session-0007", "Invalid Token")
            if logout:
                self._tokens[token].valid = False
        if logout:
            return 200, success_body(
                "s-user-0002", "User logged out successfully", {"token": token}
            )
        if kind == "marketdata":
            result: Any = {
                "exchangeSegments": {"NSECM": 1, "NSEFO": 2, "NSECD": 3, "BSECM": 11, "MCXFO": 51},
                "xtsMessageCode": {"touchlineEvent": 1501, "marketDepthEvent": 1502},
                "publishFormat": ["Binary", "JSON"],
                "broadCastMode": ["Full", "Partial"],
            }
            description = "Fetched client config successfully"
        else:
            limits = {"cashAvailable": "100000", "netMarginAvailable": "100000"}
            balance = {"limitHeader": "ALL|ALL|ALL", "limitObject": {"RMSSubLimits": limits}}
            result = {"BalanceList": [balance]}
            description = "Get Balance successfully!"
        return 200, success_body("s-user-0001", description, result)

    def _hostlookup(self) -> dict[str, Any]:
        unique_key = base64.b64encode(secrets.token_bytes(24)).decode("ascii")
        self.last_unique_key = unique_key
        connection = self.hostlookup_connection or f"{self.url}/interactive"
        described = "Hostlookup successful"
        if self.hostlookup_style == "pascal":
            keys = ("UniqueKey", "ConnectionString", "TimeStamp", "Remarks")
            values = (unique_key, connection, "0", "")
            return success_body("hostlookup", described, dict(zip(keys, values)), kind=True)
        keys = ("uniqueKey", "connectionString", "timeStamp", "remarks")
        values = (unique_key, connection, "0", "")
        return success_body("hostlookup", described, dict(zip(keys, values)))


def main(argv: list[str] | None = None) -> int:
    """Serve the simulator in the foreground until Ctrl-C (or, with ``--totp``, print the
    thirdparty holder's current TOTP); return the exit code."""
    parser = argparse.ArgumentParser(description="Run a fake XTS broker on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any)")
    parser.add_argument(
        "--totp",
        action="store_true",
        help="print the current TOTP of the login page's user (or of --totp-secret) and exit",
    )
    parser.add_argument(
        "--totp-secret",
        default=THIRDPARTY_TOTP_SECRET,
        help="the base32 TOTP secret of the login page's user (default: the simulator's)",
    )
    parser.add_argument(
        "--session-shape",
        choices=thirdparty.SESSION_SHAPES,
        default="accessToken",
        help="what the login page hands over: an access token to exchange, or the session",
    )
    parser.add_argument(
        "--handover",
        choices=thirdparty.HANDOVERS,
        default="post",
        help="how the login page hands it over: a form POST, or a GET of the return URL",
    )
    args = parser.parse_args(argv)
    if args.totp:
        print(thirdparty.totp(args.totp_secret))
        return 0
    sim = XtsSimulator(port=args.port)
    sim.thirdparty.session_shape = args.session_shape
    sim.thirdparty.handover = args.handover
    sim.thirdparty.add_account(
        THIRDPARTY_INTERACTIVE_KEY,
        THIRDPARTY_INTERACTIVE_SECRET,
        THIRDPARTY_USER_ID,
        totp_secret=args.totp_secret,
    )
    sim.start()
    print(f"XTS simulator listening on {sim.url}  (Ctrl-C to stop)")
    print("Fake demo credentials (they only work against this simulator):")
    print(f"  user ID:             {DEMO_USER_ID}")
    print(f"  interactive key:     {DEMO_INTERACTIVE_KEY}  secret: {DEMO_INTERACTIVE_SECRET}")
    print(f"  market-data key:     {DEMO_MARKETDATA_KEY}  secret: {DEMO_MARKETDATA_SECRET}")
    print("  market-data path:    /apimarketdata (or /apibinarymarketdata)")
    print("A user who must sign in on the login page (its key login is refused):")
    print(f"  login page:          {sim.url}{thirdparty.PAGE_PATH}")
    print(f"  user ID:             {THIRDPARTY_USER_ID}  password: {THIRDPARTY_PASSWORD}")
    print(f"  TOTP secret:         {args.totp_secret}  (python -m xts_refresher.simulator --totp)")
    print(
        f"  interactive key:     {THIRDPARTY_INTERACTIVE_KEY}  secret: "
        f"{THIRDPARTY_INTERACTIVE_SECRET}"
    )
    print(
        f"  market-data key:     {THIRDPARTY_MARKETDATA_KEY}  secret: "
        f"{THIRDPARTY_MARKETDATA_SECRET}"
    )
    print(f"  the page hands over: {args.session_shape} by {args.handover.upper()}")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
