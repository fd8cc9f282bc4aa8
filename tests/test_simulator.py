"""The simulator, in process: a real simulator on 127.0.0.1, real HTTP requests.

Its route table: every route is reached by its exact method and path and recorded under its
name; near misses (a wrong prefix, a misspelt path, an extra segment, a wrong method) are the
"unknown" route, answered 404 with an XTS error body, as from a real server; with an API
prefix only the prefixed XTS paths route. Its ``login_delay``: with a delay every login
(interactive and market-data) is answered normally, with a token, but only after the delay;
other routes are not delayed; without one a login is answered at once; and stopping the
simulator ends a delayed login at once, without an answer. Its broker whose holder signs in on
a login page: the page, a wrong sign-in refused, the session handed to the return URL (form
POST or GET; access token or finished session; JSON or JSON encoded twice), the access token
exchanged once only, the holder's key login refused, and ``totp`` against RFC 6238's vectors.
These tests run in a few seconds.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urljoin, urlsplit

import pytest
import requests

from xts_refresher.simulator import (
    CODE_BAD_ACCESS_TOKEN,
    CODE_KEY_LOGIN_REFUSED,
    DEMO_INTERACTIVE_KEY,
    DEMO_INTERACTIVE_SECRET,
    DEMO_MARKETDATA_KEY,
    DEMO_MARKETDATA_SECRET,
    ROUTES,
    THIRDPARTY_INTERACTIVE_KEY,
    THIRDPARTY_INTERACTIVE_SECRET,
    THIRDPARTY_MARKETDATA_KEY,
    THIRDPARTY_MARKETDATA_SECRET,
    THIRDPARTY_PASSWORD,
    THIRDPARTY_TOTP_SECRET,
    THIRDPARTY_USER_ID,
    Fault,
    XtsSimulator,
    page_forms,
    sign_in,
    totp,
)

SESSION = "/interactive/user/session"
BALANCE = "/interactive/user/balance"
PAGE = "/interactive/thirdparty"
TELEGRAM = "/bot123456:AAfake-token_x/sendMessage"
TELEGRAM_GETME = "/bot123456:AAfake-token_x/getMe"
TELEGRAM_GETCHAT = "/bot123456:AAfake-token_x/getChat"


@dataclass(frozen=True)
class Call:
    """One request to send: the method, the path (and query), and an optional JSON body."""

    method: str
    path: str
    body: Any = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}" + ("" if self.body is None else " +body")


@dataclass(frozen=True)
class Answer:
    """What the simulator answered: the HTTP status and the raw body."""

    status: int
    body: bytes


def send(sim: XtsSimulator, call: Call) -> Answer:
    """Send ``call`` to ``sim``; the Answer, whatever its status."""
    data = None if call.body is None else json.dumps(call.body).encode("utf-8")
    headers = {} if data is None else {"Content-Type": "application/json"}
    request = urllib.request.Request(  # noqa: S310 - always http://127.0.0.1
        sim.url + call.path, data=data, method=call.method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return Answer(response.status, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, error.read())


def routes_taken(sim: XtsSimulator) -> list[str]:
    """The route names of every request ``sim`` recorded, in arrival order."""
    return [request.route for request in sim.requests()]


# One simulator per API prefix for the whole module: starting is instant, but each stop()
# waits out serve_forever's poll interval (50 ms), which would dominate these tests.
@pytest.fixture(scope="module")
def running() -> Iterator[dict[str, XtsSimulator]]:
    """Running simulators by API prefix: ``""`` and ``"/xts"``."""
    with XtsSimulator() as plain, XtsSimulator(api_prefix="/xts") as prefixed:
        yield {"": plain, "/xts": prefixed}


@pytest.fixture
def sim(running: dict[str, XtsSimulator]) -> XtsSimulator:
    """The module's simulator without an API prefix, its recorded requests forgotten."""
    running[""].clear()
    return running[""]


@pytest.fixture
def prefixed_sim(running: dict[str, XtsSimulator]) -> XtsSimulator:
    """The module's simulator whose API root is ``{url}/xts``, its requests forgotten."""
    running["/xts"].clear()
    return running["/xts"]


# Every route of the table, by every method it serves, at its exact path (api_prefix "").
EXACT: list[tuple[str, Call]] = [
    ("interactive_login", Call("POST", SESSION, {"appKey": "k"})),
    ("interactive_exchange", Call("POST", SESSION, {"appKey": "k", "accessToken": "t"})),
    ("thirdparty_page", Call("GET", PAGE + "?appKey=k&returnURL=x")),
    ("thirdparty_sign_in", Call("POST", PAGE, {})),
    ("interactive_logout", Call("DELETE", SESSION)),
    ("interactive_balance", Call("GET", BALANCE + "?clientID=CK68")),
    ("marketdata_login", Call("POST", "/apimarketdata/auth/login")),
    ("marketdata_login", Call("POST", "/apibinarymarketdata/auth/login")),
    ("marketdata_config", Call("GET", "/apimarketdata/config/clientConfig")),
    ("marketdata_config", Call("GET", "/apibinarymarketdata/config/clientConfig")),
    ("hostlookup", Call("POST", "/hostlookup", {"accesspassword": "x"})),
    ("hostlookup", Call("POST", "/HostLookUp")),
    ("hostlookup", Call("POST", "/HOSTLOOKUP")),
    ("telegram", Call("POST", TELEGRAM, {"chat_id": "4242", "text": "hi"})),
    ("telegram", Call("GET", TELEGRAM + "?chat_id=4242&text=hi")),
    ("telegram_getme", Call("GET", TELEGRAM_GETME)),
    ("telegram_getme", Call("POST", TELEGRAM_GETME, {})),
    ("telegram_getchat", Call("POST", TELEGRAM_GETCHAT, {"chat_id": "4242"})),
    ("telegram_getchat", Call("GET", TELEGRAM_GETCHAT + "?chat_id=4242")),
    ("healthcheck", Call("GET", "/ping/abc-uuid")),
    ("healthcheck", Call("POST", "/ping/abc-uuid/start")),
    ("healthcheck", Call("HEAD", "/ping/abc-uuid/0")),
]

# Paths a broker would not serve: each must be the "unknown" route (api_prefix "").
NEAR_MISSES: list[Call] = [
    # a wrong prefix
    Call("POST", "/xts" + SESSION),
    Call("GET", "/xts" + BALANCE),
    Call("POST", "/api/apimarketdata/auth/login"),
    Call("POST", "/xts/hostlookup"),
    # a misspelt path
    Call("POST", "/apimarketdat/auth/login"),
    Call("GET", "/apimarketdata/config/clientconfig"),
    Call("POST", "/interactive/user/sessions"),
    Call("POST", "/host-lookup"),
    Call("POST", "/bot123/sendmessage"),
    Call("GET", "/pings/abc"),
    # a trailing extra segment (or slash), or a missing one
    Call("POST", SESSION + "/extra"),
    Call("DELETE", SESSION + "/"),
    Call("GET", BALANCE + "/extra"),
    Call("POST", "/apibinarymarketdata/auth/login/extra"),
    Call("POST", "/hostlookup/extra"),
    Call("POST", TELEGRAM + "/extra"),
    Call("POST", "/bot123/extra/sendMessage"),
    Call("POST", "/bot/sendMessage"),
    Call("GET", "/ping"),
    Call("GET", PAGE + "/extra"),
    Call("GET", "/thirdparty"),
    # a wrong method
    Call("GET", SESSION),
    Call("PUT", SESSION),
    Call("GET", "/apimarketdata/auth/login"),
    Call("GET", "/apibinarymarketdata/auth/login"),
    Call("POST", BALANCE),
    Call("POST", "/apimarketdata/config/clientConfig"),
    Call("DELETE", "/apimarketdata/auth/login"),
    Call("GET", "/hostlookup"),
    Call("HEAD", TELEGRAM),
    Call("PUT", "/ping/abc-uuid"),
    Call("DELETE", "/ping/abc-uuid"),
    # nothing like a route
    Call("GET", "/"),
    Call("PATCH", "/interactive/user/profile"),
]


def test_the_exact_cases_cover_every_route() -> None:
    """A route added to the table needs a case here; "unknown" is the one fallback, last."""
    assert {name for name, _ in EXACT} == set(ROUTES) - {"unknown"}
    assert ROUTES[-1] == "unknown"
    assert len(set(ROUTES)) == len(ROUTES)


@pytest.mark.parametrize(("route", "call"), EXACT, ids=[str(call) for _, call in EXACT])
def test_every_route_is_reached_by_its_exact_path_and_method(
    sim: XtsSimulator, route: str, call: Call
) -> None:
    """The request is answered by its route (not a 404) and recorded under the route's name."""
    answer = send(sim, call)
    assert answer.status != 404, answer.body
    assert routes_taken(sim) == [route]
    assert sim.count(route) == 1
    (recorded,) = sim.requests(route)
    assert recorded.method == call.method
    assert recorded.path == call.path.split("?")[0]


@pytest.mark.parametrize("call", NEAR_MISSES, ids=str)
def test_near_miss_paths_are_unknown_and_answered_404(sim: XtsSimulator, call: Call) -> None:
    """A path a broker would not serve is a 404 with an XTS error body, recorded as unknown."""
    answer = send(sim, call)
    assert answer.status == 404
    assert routes_taken(sim) == ["unknown"]
    if call.method != "HEAD":
        path = call.path.split("?")[0]
        assert json.loads(answer.body) == {
            "type": "error",
            "code": "e-route-0404",
            "description": f"Route not found: {call.method} {path}",
            "result": {},
        }


def test_a_real_login_on_each_session_path_answers_a_token() -> None:
    """The table hands each login path to its own kind of login, with its own accounts."""
    logins = [
        (SESSION, DEMO_INTERACTIVE_KEY, DEMO_INTERACTIVE_SECRET),
        ("/apibinarymarketdata/auth/login", DEMO_MARKETDATA_KEY, DEMO_MARKETDATA_SECRET),
    ]
    with XtsSimulator() as sim:  # its own: the token counts below start from zero
        for path, key, secret in logins:
            body = {"appKey": key, "secretKey": secret, "source": "WEBAPI"}
            answer = send(sim, Call("POST", path, body))
            assert answer.status == 200, answer.body
            assert json.loads(answer.body)["type"] == "success"
        assert len(sim.issued_tokens("interactive")) == len(sim.issued_tokens("marketdata")) == 1


# With api_prefix "/xts": the XTS paths route only under the prefix; host lookup, Telegram
# and healthchecks (not part of the API root) and the clustered login route without it.
PREFIXED: list[tuple[str, Call]] = [
    ("interactive_login", Call("POST", "/xts" + SESSION)),
    ("interactive_login", Call("POST", SESSION, {"uniqueKey": "k"})),
    ("interactive_exchange", Call("POST", "/xts" + SESSION, {"accessToken": "t"})),
    ("thirdparty_page", Call("GET", "/xts" + PAGE)),
    ("interactive_logout", Call("DELETE", "/xts" + SESSION)),
    ("interactive_balance", Call("GET", "/xts" + BALANCE)),
    ("marketdata_login", Call("POST", "/xts/apimarketdata/auth/login")),
    ("marketdata_login", Call("POST", "/xts/apibinarymarketdata/auth/login")),
    ("marketdata_config", Call("GET", "/xts/apimarketdata/config/clientConfig")),
    ("marketdata_config", Call("GET", "/xts/apibinarymarketdata/config/clientConfig")),
    ("hostlookup", Call("POST", "/hostlookup")),
    ("telegram", Call("POST", TELEGRAM)),
    ("telegram_getme", Call("GET", TELEGRAM_GETME)),
    ("telegram_getchat", Call("POST", TELEGRAM_GETCHAT)),
    ("healthcheck", Call("GET", "/ping/abc-uuid")),
    ("unknown", Call("POST", SESSION)),
    ("unknown", Call("POST", SESSION, {"appKey": "k"})),
    ("unknown", Call("DELETE", SESSION)),
    ("unknown", Call("DELETE", SESSION, {"uniqueKey": "k"})),
    ("unknown", Call("POST", "/xts" + SESSION + "/extra", {"uniqueKey": "k"})),
    ("unknown", Call("GET", BALANCE)),
    ("unknown", Call("POST", SESSION, {"accessToken": "t"})),
    ("unknown", Call("GET", PAGE)),
    ("unknown", Call("POST", "/apimarketdata/auth/login")),
    ("unknown", Call("POST", "/apibinarymarketdata/auth/login")),
    ("unknown", Call("GET", "/apimarketdata/config/clientConfig")),
    ("unknown", Call("GET", "/apibinarymarketdata/config/clientConfig")),
    ("unknown", Call("POST", "/xts/xts" + SESSION)),
    ("unknown", Call("POST", "/api" + SESSION, {"uniqueKey": "k"})),
    ("unknown", Call("POST", "/xts/hostlookup")),
]


@pytest.mark.parametrize(("route", "call"), PREFIXED, ids=[str(call) for _, call in PREFIXED])
def test_with_an_api_prefix_only_the_prefixed_paths_route(
    prefixed_sim: XtsSimulator, route: str, call: Call
) -> None:
    """``api_prefix="/xts"`` serves the API at ``/xts/...`` and nowhere else."""
    answer = send(prefixed_sim, call)
    assert (answer.status == 404) == (route == "unknown"), answer.body
    assert routes_taken(prefixed_sim) == [route]


def test_a_trailing_slash_in_the_api_prefix_is_dropped() -> None:
    """``api_prefix="/xts/"`` is the same root as ``"/xts"``."""
    with XtsSimulator(api_prefix="/xts/") as sim:
        send(sim, Call("GET", "/xts" + BALANCE))
        send(sim, Call("GET", "/xts/" + BALANCE))
        assert routes_taken(sim) == ["interactive_balance", "unknown"]


@pytest.mark.parametrize("route", ROUTES)
def test_a_fault_queued_on_a_route_is_served_on_that_route_only(
    sim: XtsSimulator, route: str
) -> None:
    """add_fault takes every route name; the fault goes to the next request on that route."""
    call = next((c for name, c in EXACT if name == route), NEAR_MISSES[0])
    other = Call("GET", "/ping/x") if route != "healthcheck" else Call("GET", BALANCE)
    sim.add_fault(route, Fault.raw(b"faulted", status=418, content_type="text/plain"))
    assert send(sim, other).status != 418
    answer = send(sim, call)
    assert answer.status == 418
    assert answer.body == b"faulted"
    assert send(sim, call).status != 418


@pytest.mark.parametrize("name", ["", "login", "Interactive_Login", "telegram ", "ROUTES"])
def test_add_fault_rejects_an_unknown_route_name(sim: XtsSimulator, name: str) -> None:
    """A misspelt route name is an error, not a fault that silently never fires."""
    with pytest.raises(ValueError, match=r"unknown route .*expected one of"):
        sim.add_fault(name, Fault.html())


@pytest.mark.parametrize(
    ("feed", "served", "refused"),
    [
        ("/apibinarymarketdata", "/apibinarymarketdata", "/apimarketdata"),
        ("/apimarketdata", "/apimarketdata", "/apibinarymarketdata"),
    ],
)
def test_a_broker_of_one_market_data_feed_serves_its_path_only(
    feed: str, served: str, refused: str
) -> None:
    """``marketdata_path`` makes a broker of one feed (a binary-feed broker serves
    ``/apibinarymarketdata``): the other feed's paths are the "unknown" route, 404 "Route not
    found"; without it, both are served."""
    login = {"appKey": DEMO_MARKETDATA_KEY, "secretKey": DEMO_MARKETDATA_SECRET, "source": "WEBAPI"}
    with XtsSimulator(marketdata_path=feed) as broker:
        assert send(broker, Call("POST", f"{served}/auth/login", login)).status == 200
        missing = send(broker, Call("POST", f"{refused}/auth/login", login))
        assert missing.status == 404
        assert b"Route not found" in missing.body
        assert send(broker, Call("GET", f"{refused}/config/clientConfig")).status == 404
        assert routes_taken(broker) == ["marketdata_login", "unknown", "unknown"]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_fault_answers_its_status_and_location(sim: XtsSimulator, status: int) -> None:
    """Fault.redirect answers the status with a Location header (urllib would follow it: the
    raw answer is read with http.client)."""
    import http.client

    sim.add_fault("telegram", Fault.redirect("http://127.0.0.1:9/elsewhere", status))
    host, port = sim.url.split("://", 1)[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("POST", TELEGRAM, body=b"{}")
        answer = connection.getresponse()
        assert answer.status == status
        assert answer.getheader("Location") == "http://127.0.0.1:9/elsewhere"
    finally:
        connection.close()
    assert routes_taken(sim) == ["telegram"]


def test_the_host_lookup_hands_out_the_connection_string_it_is_given(sim: XtsSimulator) -> None:
    """``hostlookup_connection`` replaces the connection string (any text: the tests of unsafe
    ones need it); unset, it is this server's ``/interactive``."""
    first = json.loads(send(sim, Call("POST", "/hostlookup", {})).body)
    assert first["result"]["connectionString"] == f"{sim.url}/interactive"
    sim.hostlookup_connection = "http://user:pw@elsewhere.invalid/interactive"
    try:
        second = json.loads(send(sim, Call("POST", "/hostlookup", {})).body)
    finally:
        sim.hostlookup_connection = None
    assert second["result"]["connectionString"] == "http://user:pw@elsewhere.invalid/interactive"


# -- login_delay --------------------------------------------------------------------------------


DELAY = 0.3


FAST = 0.2  # an undelayed login on loopback takes a few milliseconds


def post_login(sim: XtsSimulator, path: str, key: str, secret: str) -> tuple[float, Any]:
    """POST a login to ``sim``: the seconds until its answer was read, and the answer."""
    payload = {"appKey": key, "secretKey": secret, "source": "WEBAPI"}
    request = urllib.request.Request(  # noqa: S310 - always http://127.0.0.1
        sim.url + path,
        data=json.dumps(payload).encode("utf-8"),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        body = json.loads(response.read())
    return time.perf_counter() - started, body


def interactive_login(sim: XtsSimulator) -> tuple[float, Any]:
    """The interactive login of the demo account: seconds and answer."""
    return post_login(
        sim, "/interactive/user/session", DEMO_INTERACTIVE_KEY, DEMO_INTERACTIVE_SECRET
    )


def test_delayed_logins_answer_with_a_token_after_the_delay() -> None:
    with XtsSimulator(login_delay=DELAY) as sim:
        assert sim.login_delay == DELAY
        seconds, body = interactive_login(sim)
        assert seconds >= DELAY
        assert body["type"] == "success"
        token = body["result"]["token"]
        assert token == sim.issued_tokens("interactive")[-1]

        seconds, body = post_login(
            sim, "/apimarketdata/auth/login", DEMO_MARKETDATA_KEY, DEMO_MARKETDATA_SECRET
        )
        assert seconds >= DELAY
        assert body["result"]["token"] == sim.issued_tokens("marketdata")[-1]

        # Only logins wait: the token check is answered at once.
        check = urllib.request.Request(  # noqa: S310 - always http://127.0.0.1
            sim.url + "/interactive/user/balance", headers={"Authorization": token}
        )
        started = time.perf_counter()
        with urllib.request.urlopen(check, timeout=10) as response:  # noqa: S310
            assert json.loads(response.read())["type"] == "success"
        assert time.perf_counter() - started < FAST


def test_without_a_delay_a_login_is_answered_at_once() -> None:
    with XtsSimulator() as sim:
        assert sim.login_delay == 0.0
        seconds, body = interactive_login(sim)
        assert seconds < FAST
        assert body["result"]["token"] == sim.issued_tokens("interactive")[-1]


def test_stopping_ends_a_delayed_login_without_an_answer() -> None:
    sim = XtsSimulator(login_delay=60.0).start()
    outcome: list[BaseException | tuple[float, Any]] = []

    def login() -> None:
        try:
            outcome.append(interactive_login(sim))
        except (OSError, http.client.HTTPException) as exc:
            outcome.append(exc)

    client = threading.Thread(target=login, daemon=True)
    client.start()
    deadline = time.monotonic() + 5
    while sim.count("interactive_login") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sim.count("interactive_login") == 1
    started = time.perf_counter()
    sim.stop()
    client.join(timeout=5)
    assert time.perf_counter() - started < 2
    assert not client.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], BaseException)  # the connection closed, nothing answered
    assert sim.issued_tokens("interactive") == []


def test_a_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="login_delay"):
        XtsSimulator(login_delay=-1.0)


# The broker whose API login needs the account holder: its login page (user ID, password and
# a TOTP), the session it hands to the return URL (a form POST or a GET; an access token or
# the finished session; JSON or JSON encoded twice), the one-time exchange of an access token,
# and the refusal of its holder's key login.

RETURN_URL = "http://127.0.0.1:9/xts/callback?state=s-1"
# RFC 6238, appendix B: the SHA-1 seed "12345678901234567890" (base32 below), 8 digits.
RFC6238_SHA1_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
RFC6238_SHA1 = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


@pytest.fixture
def broker() -> Iterator[XtsSimulator]:
    """A fresh simulator of its own: the access tokens and tokens it issued start from none."""
    with XtsSimulator() as simulator:
        yield simulator


@pytest.mark.parametrize(("at", "code"), RFC6238_SHA1)
def test_totp_gives_the_rfc_6238_sha1_test_vectors(at: int, code: str) -> None:
    assert totp(RFC6238_SHA1_SECRET, at, digits=8) == code
    assert totp(RFC6238_SHA1_SECRET, at) == code[-6:]  # 6 digits: the same code's last six


def test_totp_is_the_current_steps_by_default() -> None:
    before = totp(THIRDPARTY_TOTP_SECRET, time.time())
    now = totp(THIRDPARTY_TOTP_SECRET)
    after = totp(THIRDPARTY_TOTP_SECRET, time.time())
    assert now in (before, after)
    assert len(now) == 6
    assert now.isdigit()


def http_client() -> requests.Session:
    """A requests session that ignores the environment's proxies (everything is loopback)."""
    session = requests.Session()
    session.trust_env = False
    return session


def login_page(sim: XtsSimulator, return_url: str = RETURN_URL, **extra: str) -> str:
    """The login link of the simulator's thirdparty app for ``return_url``."""
    query = {"appKey": THIRDPARTY_INTERACTIVE_KEY, "returnURL": return_url, **extra}
    return f"{sim.url}/interactive/thirdparty?{urlencode(query)}"


def sign_in_form(
    sim: XtsSimulator,
    return_url: str = RETURN_URL,
    code: str | None = None,
    query: dict[str, str] | None = None,
    changed: dict[str, str] | None = None,
) -> requests.Response:
    """Open the login page (``query`` added to the link's), fill in the thirdparty user's
    sign-in (``changed`` replacing some of its fields, ``code`` the TOTP) and submit it; the
    answer (redirects not followed)."""
    with http_client() as client:
        page = client.get(login_page(sim, return_url, **(query or {})), timeout=5)
        assert page.status_code == 200, page.text
        ((method, action, fields),) = page_forms(page.text)
        assert method == "post"
        fields.update(userID=THIRDPARTY_USER_ID, password=THIRDPARTY_PASSWORD)
        fields["totp"] = totp(THIRDPARTY_TOTP_SECRET) if code is None else code
        fields.update(changed or {})
        return client.post(urljoin(page.url, action), data=fields, allow_redirects=False, timeout=5)


def handed_over(answer: requests.Response, return_url: str = RETURN_URL) -> Any:
    """The session JSON (decoded once) of a self-submitting form posting to ``return_url``."""
    assert answer.status_code == 200, answer.text
    ((method, action, fields),) = page_forms(answer.text)
    assert (method, action, list(fields)) == ("post", return_url, ["session"])
    assert "document.getElementById('handover').submit()" in answer.text
    return json.loads(fields["session"])


def exchange(
    sim: XtsSimulator, access_token: str, secret: str = THIRDPARTY_INTERACTIVE_SECRET
) -> Any:
    """The simulator's answer (HTTP status, JSON) to the exchange of ``access_token``."""
    body = {
        "appKey": THIRDPARTY_INTERACTIVE_KEY,
        "secretKey": secret,
        "accessToken": access_token,
        "source": "WEBAPI",
    }
    answer = send(sim, Call("POST", SESSION, body))
    return answer.status, json.loads(answer.body)


def test_the_login_page_is_a_form_a_browser_can_fill_in(broker: XtsSimulator) -> None:
    with http_client() as client:
        page = client.get(login_page(broker), timeout=5)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    for element in ('id="userID" name="userID"', 'id="password" name="password"'):
        assert element in page.text
    assert 'id="totp" name="totp"' in page.text
    assert '<button id="submit" type="submit">' in page.text
    ((method, action, fields),) = page_forms(page.text)
    assert (method, action) == ("post", "/interactive/thirdparty")
    assert fields["appKey"] == THIRDPARTY_INTERACTIVE_KEY
    assert fields["returnURL"] == RETURN_URL
    assert routes_taken(broker) == ["thirdparty_page"]
    assert broker.requests("thirdparty_page")[0].query["appKey"] == THIRDPARTY_INTERACTIVE_KEY


@pytest.mark.parametrize(
    ("app_key", "return_url"),
    [
        ("demo-interactive-key", RETURN_URL),  # a key-login app has no login page
        (THIRDPARTY_INTERACTIVE_KEY, "javascript:alert(1)"),
        (THIRDPARTY_INTERACTIVE_KEY, "/relative/callback"),
        (THIRDPARTY_INTERACTIVE_KEY, ""),
    ],
)
def test_the_login_page_refuses_an_unknown_app_or_a_return_url_that_is_not_a_web_address(
    broker: XtsSimulator, app_key: str, return_url: str
) -> None:
    query = urlencode({"appKey": app_key, "returnURL": return_url})
    with http_client() as client:
        page = client.get(f"{broker.url}/interactive/thirdparty?{query}", timeout=5)
    assert page.status_code == 400
    assert page_forms(page.text) == []
    assert 'id="error"' in page.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("totp", "000000"),
        ("totp", ""),
        ("totp", "٣٣٣٣٣٣"),  # not ASCII: refused, not a crash
        ("password", "not-the-password"),
        ("userID", "DEMO01"),
    ],
    ids=["totp", "no totp", "arabic digits", "password", "user"],
)
def test_a_wrong_sign_in_shows_the_page_again_with_an_error_and_hands_nothing_over(
    broker: XtsSimulator, field: str, value: str
) -> None:
    if value == totp(THIRDPARTY_TOTP_SECRET):
        value = "000001"  # one morning in a million
    answer = sign_in_form(broker, changed={field: value})
    assert answer.status_code == 401
    assert "Wrong user ID, password or TOTP." in answer.text
    ((_, action, fields),) = page_forms(answer.text)
    assert action == "/interactive/thirdparty"
    assert "session" not in fields
    assert broker.thirdparty.access_tokens() == []
    assert broker.issued_tokens("interactive") == []
    assert routes_taken(broker) == ["thirdparty_page", "thirdparty_sign_in"]


def test_a_totp_two_steps_old_is_refused_and_one_step_old_accepted(broker: XtsSimulator) -> None:
    stale = totp(THIRDPARTY_TOTP_SECRET, time.time() - 60)
    if stale not in {totp(THIRDPARTY_TOTP_SECRET, time.time() + d) for d in (-30, 0, 30)}:
        assert sign_in_form(broker, code=stale).status_code == 401
    late = totp(THIRDPARTY_TOTP_SECRET, time.time() - 30)
    assert "accessToken" in handed_over(sign_in_form(broker, code=late))


def test_a_right_sign_in_hands_over_an_access_token_that_is_exchanged_once(
    broker: XtsSimulator,
) -> None:
    session = handed_over(sign_in_form(broker))
    assert session == {
        "accessToken": broker.thirdparty.access_tokens()[-1],
        "userID": THIRDPARTY_USER_ID,
        "appKey": THIRDPARTY_INTERACTIVE_KEY,
    }
    assert broker.issued_tokens("interactive") == []  # nothing logged in before the exchange
    status, body = exchange(broker, session["accessToken"])
    assert status == 200, body
    assert body["type"] == "success"
    assert body["result"]["userID"] == THIRDPARTY_USER_ID
    assert body["result"]["token"] == broker.issued_tokens("interactive")[-1]
    balance = Call("GET", f"{BALANCE}?clientID={THIRDPARTY_USER_ID}")
    with_token = urllib.request.Request(  # noqa: S310 - http://127.0.0.1
        broker.url + balance.path, headers={"Authorization": body["result"]["token"]}
    )
    with urllib.request.urlopen(with_token, timeout=5) as response:  # noqa: S310
        assert json.loads(response.read())["type"] == "success"
    # A one-time code: the same access token again is refused, and no token is issued.
    status, again = exchange(broker, session["accessToken"])
    assert status == 400
    assert again["type"] == "error"
    assert again["code"] == CODE_BAD_ACCESS_TOKEN
    assert len(broker.issued_tokens("interactive")) == 1
    assert [r.route for r in broker.requests() if r.route.startswith("interactive")] == [
        "interactive_exchange",
        "interactive_balance",
        "interactive_exchange",
    ]
    assert broker.requests("interactive_exchange")[0].json["accessToken"] == session["accessToken"]


@pytest.mark.parametrize(
    ("access_token", "secret"),
    [
        ("never-issued", THIRDPARTY_INTERACTIVE_SECRET),
        (None, "not-the-secret"),
        (None, ""),
    ],
    ids=["unknown access token", "wrong secret", "no secret"],
)
def test_an_exchange_without_a_valid_access_token_key_and_secret_is_refused(
    broker: XtsSimulator, access_token: str | None, secret: str
) -> None:
    issued = handed_over(sign_in_form(broker))["accessToken"]
    status, body = exchange(broker, access_token or issued, secret)
    assert status == 400
    assert body["type"] == "error"
    assert body["code"] and body["description"]
    assert broker.issued_tokens("interactive") == []
    if access_token is None:  # the refused try did not use the access token up
        assert exchange(broker, issued)[0] == 200


def test_an_access_token_is_exchanged_only_for_the_app_it_was_issued_to(
    broker: XtsSimulator,
) -> None:
    broker.thirdparty.add_account("other-app-key", "other-app-secret", "TP02")
    issued = handed_over(sign_in_form(broker))["accessToken"]
    body = {
        "appKey": "other-app-key",
        "secretKey": "other-app-secret",
        "accessToken": issued,
        "source": "WEBAPI",
    }
    answer = send(broker, Call("POST", SESSION, body))
    assert answer.status == 400
    assert json.loads(answer.body)["code"] == CODE_BAD_ACCESS_TOKEN
    assert broker.issued_tokens("interactive") == []


def test_the_finished_session_shape_hands_over_a_working_token(broker: XtsSimulator) -> None:
    broker.thirdparty.session_shape = "token"
    try:
        session = handed_over(sign_in_form(broker))
    finally:
        broker.thirdparty.session_shape = "accessToken"
    assert session["token"] == broker.issued_tokens("interactive")[-1]
    assert session["userID"] == THIRDPARTY_USER_ID
    assert session["isInvestorClient"] is True
    assert "accessToken" not in session
    assert broker.thirdparty.access_tokens() == []


def test_the_double_encoded_variant_hands_over_json_inside_a_json_string(
    broker: XtsSimulator,
) -> None:
    broker.thirdparty.double_encoded = True
    try:
        once = handed_over(sign_in_form(broker))
    finally:
        broker.thirdparty.double_encoded = False
    assert isinstance(once, str)
    assert json.loads(once)["accessToken"] == broker.thirdparty.access_tokens()[-1]


def test_the_get_handover_redirects_to_the_return_url_with_the_session_in_its_query(
    broker: XtsSimulator,
) -> None:
    answer = sign_in_form(broker, query={"method": "get"})
    assert answer.status_code == 303
    location = urlsplit(answer.headers["Location"])
    assert location._replace(query="").geturl() == "http://127.0.0.1:9/xts/callback"
    query = parse_qs(location.query)
    assert query["state"] == ["s-1"]  # the return URL's own query is kept
    (session,) = query["session"]
    assert json.loads(session)["accessToken"] == broker.thirdparty.access_tokens()[-1]


def test_the_key_login_of_a_holder_who_must_sign_in_on_the_page_is_refused(
    broker: XtsSimulator,
) -> None:
    body = {
        "appKey": THIRDPARTY_INTERACTIVE_KEY,
        "secretKey": THIRDPARTY_INTERACTIVE_SECRET,
        "source": "WEBAPI",
    }
    answer = send(broker, Call("POST", SESSION, body))
    assert answer.status == 400
    refusal = json.loads(answer.body)
    assert refusal["type"] == "error"
    assert refusal["code"] == CODE_KEY_LOGIN_REFUSED
    assert "login page" in refusal["description"]
    assert broker.issued_tokens("interactive") == []
    assert routes_taken(broker) == ["interactive_login"]
    # The holder's market data still logs in with its own key and secret.
    md = {
        "appKey": THIRDPARTY_MARKETDATA_KEY,
        "secretKey": THIRDPARTY_MARKETDATA_SECRET,
        "source": "WEBAPI",
    }
    answer = send(broker, Call("POST", "/apimarketdata/auth/login", md))
    assert answer.status == 200
    assert json.loads(answer.body)["result"]["userID"] == THIRDPARTY_USER_ID


@pytest.mark.parametrize("handover", ["post", "get"])
def test_sign_in_plays_the_holders_browser_up_to_the_return_url(
    broker: XtsSimulator, handover: str
) -> None:
    """``sign_in`` reaches the return URL (here the simulator's own ping route, which keeps
    what it receives) with the session, by the form or by the redirect."""
    return_url = f"{broker.url}/ping/callback?state=s-2"
    query = {"method": "get"} if handover == "get" else {}
    status, text = sign_in(login_page(broker, return_url, **query))
    assert (status, text) == (200, "OK")
    (arrived,) = broker.requests("healthcheck")
    assert arrived.method == handover.upper()
    fields = arrived.query if handover == "get" else dict(parse_qsl(arrived.body.decode()))
    assert arrived.query["state"] == "s-2"
    assert json.loads(fields["session"])["accessToken"] == broker.thirdparty.access_tokens()[-1]


def test_sign_in_with_a_wrong_password_stops_at_the_page(broker: XtsSimulator) -> None:
    status, text = sign_in(login_page(broker), password="wrong")
    assert status == 401
    assert "Wrong user ID, password or TOTP." in text
    assert broker.count("healthcheck") == 0


def test_the_command_line_prints_the_current_totp() -> None:
    before = totp(THIRDPARTY_TOTP_SECRET)
    done = subprocess.run(
        [sys.executable, "-m", "xts_refresher.simulator", "--totp"],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    )
    assert done.stdout.strip() in (before, totp(THIRDPARTY_TOTP_SECRET))
