"""The simulator, in process: a real simulator on 127.0.0.1, real HTTP requests.

Its route table: every route is reached by its exact method and path and recorded under its
name; near misses (a wrong prefix, a misspelt path, an extra segment, a wrong method) are the
"unknown" route, answered 404 with an XTS error body, as from a real server; with an API
prefix only the prefixed XTS paths route. Its ``login_delay``: with a delay every login
(interactive and market-data) is answered normally, with a token, but only after the delay;
other routes are not delayed; without one a login is answered at once; and stopping the
simulator ends a delayed login at once, without an answer. These tests run in a second or two.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from xts_refresher.simulator import (
    DEMO_INTERACTIVE_KEY,
    DEMO_INTERACTIVE_SECRET,
    DEMO_MARKETDATA_KEY,
    DEMO_MARKETDATA_SECRET,
    ROUTES,
    Fault,
    XtsSimulator,
)

SESSION = "/interactive/user/session"
BALANCE = "/interactive/user/balance"
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
