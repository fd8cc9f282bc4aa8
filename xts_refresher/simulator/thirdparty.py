"""The simulator's broker whose API login needs the account holder (XTS's "thirdparty" login).

Such a broker refuses the key-and-secret login of its users; the holder signs in on its login
page instead (``GET {root}/interactive/thirdparty?appKey=..&returnURL=..``: user ID, password
and a TOTP per RFC 6238), and the page hands the session to the return URL: a self-submitting
form POST (one hidden field ``session``) or, with ``method=get`` in the page's query (or the
broker's ``handover`` setting), a redirect to the return URL with ``session`` in its query.
The session is one of two shapes (the broker's ``session_shape`` setting): an access token,
which the application exchanges once at ``POST {root}/interactive/user/session`` (``appKey``,
``secretKey``, ``accessToken``, ``source``) for an ordinary session, or the finished session
itself; ``double_encoded`` sends the JSON encoded twice, as some brokers do.

``sign_in`` plays the holder's browser without a browser (the demo and the tests use it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import struct
import threading
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qs, quote, urlencode, urljoin, urlsplit, urlunsplit

from .faults import Fault, RecordedRequest, error_body

if TYPE_CHECKING:
    from .routes import Answer
    from .server import XtsSimulator

THIRDPARTY_INTERACTIVE_KEY = "thirdparty-interactive-key"
THIRDPARTY_INTERACTIVE_SECRET = "thirdparty-interactive-secret"
THIRDPARTY_MARKETDATA_KEY = "thirdparty-marketdata-key"
THIRDPARTY_MARKETDATA_SECRET = "thirdparty-marketdata-secret"
THIRDPARTY_USER_ID = "TP01"
THIRDPARTY_PASSWORD = "thirdparty-password"
# The base32 secret of the holder's authenticator app (RFC 4648 base32, as TOTP apps take it).
THIRDPARTY_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DP"

CODE_KEY_LOGIN_REFUSED = "e-user-0012"
KEY_LOGIN_REFUSED_DESCRIPTION = (
    "Login with the app key and secret key is not enabled for this user: "
    "the user must log in on the broker's login page (interactive/thirdparty)"
)
CODE_BAD_ACCESS_TOKEN = "e-session-0011"
BAD_ACCESS_TOKEN_DESCRIPTION = "Invalid or expired access token"

SESSION_SHAPES = ("accessToken", "token")
HANDOVERS = ("post", "get")
ACCESS_TOKEN_SECONDS = 600  # an unused access token dies after this, as a one-time code does
TOTP_STEP = 30
PAGE_PATH = "/interactive/thirdparty"
WRONG_SIGN_IN = "Wrong user ID, password or TOTP."


def totp(
    secret_b32: str, at: float | None = None, *, digits: int = 6, step: int = TOTP_STEP
) -> str:
    """The TOTP (RFC 6238: HMAC-SHA-1, ``step`` seconds from the epoch) of ``secret_b32`` at
    ``at`` (now when None): ``digits`` decimal digits, zero-padded."""
    padded = secret_b32.replace(" ", "").upper()
    padded += "=" * (-len(padded) % 8)
    key = base64.b32decode(padded)
    counter = int((time.time() if at is None else at) // step)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    code = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10**digits).zfill(digits)


def totp_accepted(secret_b32: str, code: str, at: float | None = None) -> bool:
    """Whether ``code`` is the TOTP of ``secret_b32`` at ``at`` or one step either side (the
    clock drift servers allow)."""
    now = time.time() if at is None else at
    return any(
        hmac.compare_digest(totp(secret_b32, now + drift * TOTP_STEP).encode(), code.encode())
        for drift in (-1, 0, 1)
    )


class ThirdpartyAccount(NamedTuple):
    """A user of the broker's login page: the app's key and secret, and the holder's sign-in."""

    app_key: str
    secret: str
    user_id: str
    password: str
    totp_secret: str


class _AccessToken(NamedTuple):
    app_key: str
    user_id: str
    expires: float


class ThirdpartyBroker:
    """The simulator's login page: its accounts, how it hands a session over (``session_shape``
    ``"accessToken"`` or ``"token"``, ``double_encoded``, ``handover`` ``"post"`` or ``"get"``)
    and the access tokens it issued (each exchanged once at most)."""

    def __init__(self) -> None:
        self.session_shape = "accessToken"
        self.double_encoded = False
        self.handover = "post"
        self._lock = threading.Lock()
        self._accounts: dict[str, ThirdpartyAccount] = {}
        self._unused: dict[str, _AccessToken] = {}
        self._issued: list[str] = []

    def add_account(
        self,
        app_key: str,
        secret: str,
        user_id: str,
        password: str = THIRDPARTY_PASSWORD,
        totp_secret: str = THIRDPARTY_TOTP_SECRET,
    ) -> None:
        """Make ``app_key`` an app whose holder ``user_id`` signs in on the page with
        ``password`` and the TOTP of ``totp_secret``; its key login is refused; return None."""
        with self._lock:
            self._accounts[app_key] = ThirdpartyAccount(
                app_key, secret, user_id, password, totp_secret
            )

    def account(self, app_key: str) -> ThirdpartyAccount | None:
        """The account of ``app_key``, or None when the page does not know that app."""
        with self._lock:
            return self._accounts.get(app_key)

    def access_tokens(self) -> list[str]:
        """Every access token the page handed over, in order (used or not)."""
        with self._lock:
            return list(self._issued)

    def new_access_token(self, account: ThirdpartyAccount) -> str:
        """A fresh one-time access token for ``account``'s app and holder."""
        token = secrets.token_hex(20)
        expires = time.time() + ACCESS_TOKEN_SECONDS
        with self._lock:
            self._unused[token] = _AccessToken(account.app_key, account.user_id, expires)
            self._issued.append(token)
        return token

    def spend(self, access_token: str, app_key: str) -> str | None:
        """The user ID of an unused, unexpired ``access_token`` issued for ``app_key`` (now used
        up), or None when it is not one."""
        with self._lock:
            found = self._unused.get(access_token)
            if found is None or found.app_key != app_key or time.time() >= found.expires:
                return None
            del self._unused[access_token]
            return found.user_id


def key_login_refusal(sim: XtsSimulator, app_key: str, secret: str) -> Answer | None:
    """The broker's refusal of a key login with the key and secret of a holder who must sign in
    on the page, or None when ``app_key`` is not such an app's."""
    account = sim.thirdparty.account(app_key)
    if account is None or not hmac.compare_digest(account.secret, secret):
        return None
    return 400, error_body(CODE_KEY_LOGIN_REFUSED, KEY_LOGIN_REFUSED_DESCRIPTION)


def answer_page(sim: XtsSimulator, request: RecordedRequest) -> Answer:
    """The login page for the app and return URL of the query, or why it cannot be shown."""
    return _sign_in_page(sim, request.path, request.query, "", 200)


def answer_sign_in(sim: XtsSimulator, request: RecordedRequest) -> Answer:
    """The session handed to the return URL for a right user ID, password and TOTP; else the
    page again with an error."""
    form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
    account = sim.thirdparty.account(form.get("appKey", ""))
    return_url = form.get("returnURL", "")
    if account is None or not _is_web_url(return_url):
        return _sign_in_page(sim, request.path, form, "", 400)
    entered = (form.get("userID", ""), form.get("password", ""), form.get("totp", ""))
    right = [
        hmac.compare_digest(given.encode(), expected.encode())
        for given, expected in zip(entered, (account.user_id, account.password))
    ]
    if not (all(right) and totp_accepted(account.totp_secret, entered[2].strip())):
        return _sign_in_page(sim, request.path, form, WRONG_SIGN_IN, 401)
    session = json.dumps(_session(sim, account))
    if sim.thirdparty.double_encoded:
        session = json.dumps(session)
    method = form.get("method") or sim.thirdparty.handover
    if method == "get":
        handover = Fault.redirect(_with_query(return_url, session=session), status=303)
        return handover.status, handover
    page = (
        f'<form id="handover" method="post" action="{html.escape(return_url)}">'
        f'<input type="hidden" name="session" value="{html.escape(session)}">'
        '<noscript><button type="submit">Continue</button></noscript></form>'
        "<script>document.getElementById('handover').submit();</script>"
    )
    return 200, _html(200, "Logging in", page)


def answer_exchange(sim: XtsSimulator, request: RecordedRequest) -> Answer:
    """The session for a one-time access token the page handed over, as a login answers it;
    or the XTS error when the token, the key or the secret is not right."""
    fields = request.json if isinstance(request.json, dict) else {}
    names = ("appKey", "secretKey", "accessToken", "source")
    missing = [n for n in names if not isinstance(fields.get(n), str) or not fields[n]]
    if missing:
        errors = [
            {"field": [n], "location": "body", "messages": [f'"{n}" is required']} for n in missing
        ]
        return 400, error_body("e-validation-0001", "Bad Request", {"errors": errors})
    account = sim.thirdparty.account(fields["appKey"])
    if account is None or not hmac.compare_digest(account.secret, fields["secretKey"]):
        return 400, error_body(
            "e-user-0005", "Invalid credentials. Please check your App Key and Secret Key."
        )
    user_id = sim.thirdparty.spend(fields["accessToken"], account.app_key)
    if user_id is None:
        return 400, error_body(CODE_BAD_ACCESS_TOKEN, BAD_ACCESS_TOKEN_DESCRIPTION)
    return sim._logged_in("interactive", account.app_key, user_id)


def _session(sim: XtsSimulator, account: ThirdpartyAccount) -> dict[str, Any]:
    """What the page hands over: a new access token, or a new finished session."""
    if sim.thirdparty.session_shape == "token":
        _, answer = sim._logged_in("interactive", account.app_key, account.user_id)
        return dict(answer["result"])
    token = sim.thirdparty.new_access_token(account)
    return {"accessToken": token, "userID": account.user_id, "appKey": account.app_key}


def _sign_in_page(
    sim: XtsSimulator, path: str, fields: dict[str, str], error: str, status: int
) -> Answer:
    """The sign-in form for the app and return URL in ``fields`` (with ``error`` shown), or
    a page saying why there is none (400)."""
    app_key = fields.get("appKey", "")
    return_url = fields.get("returnURL", "")
    if sim.thirdparty.account(app_key) is None:
        return 400, _html(400, "Log in", '<p id="error">Unknown appKey.</p>')
    if not _is_web_url(return_url):
        return 400, _html(400, "Log in", '<p id="error">Missing or invalid returnURL.</p>')
    hidden = {"appKey": app_key, "returnURL": return_url, "method": fields.get("method", "")}
    inputs = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
        for name, value in hidden.items()
    )
    shown_error = f'<p id="error" role="alert">{html.escape(error)}</p>' if error else ""
    body = (
        "<h1>XTS simulator: log in</h1>"
        f'{shown_error}<form id="login" method="post" action="{html.escape(path)}">{inputs}'
        '<p><label for="userID">User ID</label> '
        '<input id="userID" name="userID" autocomplete="username" required></p>'
        '<p><label for="password">Password</label> <input id="password" name="password" '
        'type="password" autocomplete="current-password" required></p>'
        '<p><label for="totp">TOTP</label> <input id="totp" name="totp" inputmode="numeric" '
        'autocomplete="one-time-code" required></p>'
        '<p><button id="submit" type="submit">Log in</button></p></form>'
    )
    return status, _html(status, "Log in", body)


def _html(status: int, title: str, body: str) -> Fault:
    """A whole HTML page answered with ``status``."""
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>\n"
    )
    return Fault.raw(page.encode("utf-8"), status=status, content_type="text/html; charset=utf-8")


def _is_web_url(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL (nothing else may be a form's action)."""
    split = urlsplit(url)
    return split.scheme in ("http", "https") and bool(split.netloc)


def _with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to its query (its own query kept)."""
    split = urlsplit(url)
    added = urlencode(params, quote_via=quote)
    query = f"{split.query}&{added}" if split.query else added
    return urlunsplit(split._replace(query=query))


class _Forms(HTMLParser):
    """The forms of a page: each one's method, action and named input values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((named.get("method", "get").lower(), named.get("action", ""), {}))
        elif tag == "input" and self.forms and "name" in named:
            self.forms[-1][2][named["name"]] = named.get("value", "")


def page_forms(page: str) -> list[tuple[str, str, dict[str, str]]]:
    """The forms of the HTML ``page``: (method, action, {input name: value}) each, in order."""
    parser = _Forms()
    parser.feed(page)
    parser.close()
    return parser.forms


def sign_in(
    link: str,
    user_id: str = THIRDPARTY_USER_ID,
    password: str = THIRDPARTY_PASSWORD,
    totp_secret: str = THIRDPARTY_TOTP_SECRET,
    timeout: float = 10.0,
) -> tuple[int, str]:
    """Do what the holder's browser does with the login ``link``: open the page, sign in, and
    follow the handover (submit the self-submitting form, or follow the redirect) to the return
    URL; the return URL's HTTP status and text. No proxy is used (everything is loopback)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def fetch(url: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
        data = None if form is None else urlencode(form).encode("ascii")
        try:
            with opener.open(url, data=data, timeout=timeout) as response:
                return response.status, response.geturl(), response.read().decode("utf-8")
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.geturl(), error.read().decode("utf-8", "replace")

    status, url, page = fetch(link)
    if status != 200:
        return status, page
    _, action, fields = page_forms(page)[0]
    fields.update(userID=user_id, password=password, totp=totp(totp_secret))
    status, url, page = fetch(urljoin(url, action), fields)
    forms = page_forms(page) if status == 200 else []
    if not forms or forms[0][1] == "" or "session" not in forms[0][2]:
        return status, page  # a redirect already reached the return URL, or a refusal
    _, action, fields = forms[0]
    status, _, page = fetch(action, fields)
    return status, page
