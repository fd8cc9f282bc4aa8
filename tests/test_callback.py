"""The browser login's callback listener, in process: a real listener on 127.0.0.1 (port 0),
real HTTP from requests and from raw sockets.

What the listener accepts: a form POST or a GET at the return URL's path carrying the
``session`` and the right one-time ``state``; each accepted session goes to its account's
handler, once. What it refuses (4xx, a ⚠ line without the request's content, and the wait goes
on): a forged state, a replayed one, a body over 64 KiB or of no declared length, a client too
slow to send its request (which never holds up another), a wrong path, a wrong method. And the
pure helpers: the state, the return URL carrying it, the login link, the listen address. And
end to end with the bundled simulator's login page.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
from conftest import APP_DIR

from xts_refresher.callback import (
    MAX_BODY,
    MAX_CONNECTIONS,
    CallbackListener,
    listen_address,
    login_link,
    new_state,
    return_url_with_state,
)
from xts_refresher.errors import ConfigError

PATH = "/xts/callback"
FORM = "application/x-www-form-urlencoded"
# A session as a page hands it over; none of it may ever reach the log.
SESSION = '{"accessToken": "at-FAKE-5d1e0c-access-token", "userID": "CK68"}'
SESSION_MARKERS = ("at-FAKE-5d1e0c-access-token", "accessToken")
LOGGED_IN = "alice is logged in as CK68. You can close this page."
# A listener's bound time per request in these tests (users get 10 s).
REQUEST_SECONDS = 1.0


class Arrivals:
    """A handle() for one account that keeps each session it is given, answering ``text``."""

    def __init__(self, text: str = LOGGED_IN, fail: BaseException | None = None) -> None:
        self.text = text
        self.fail = fail
        self.sessions: list[str] = []

    def __call__(self, session: str) -> str:
        self.sessions.append(session)
        if self.fail is not None:
            raise self.fail
        return self.text


class Logged:
    """A logger of its own whose lines the test reads (``text``)."""

    def __init__(self, name: str) -> None:
        self.stream = io.StringIO()
        self.log = logging.getLogger(f"test_callback.{name}")
        self.log.handlers[:] = [logging.StreamHandler(self.stream)]
        self.log.setLevel(logging.DEBUG)
        self.log.propagate = False

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def warnings(self) -> list[str]:
        return [line for line in self.text.splitlines() if line.startswith("⚠")]


@pytest.fixture
def logged(request: pytest.FixtureRequest) -> Logged:
    return Logged(request.node.name)


@contextmanager
def listening(logged: Logged) -> Iterator[CallbackListener]:
    """A listener on 127.0.0.1, a free port, with the tests' short bound per request."""
    with CallbackListener("127.0.0.1", 0, logged.log, request_seconds=REQUEST_SECONDS) as listener:
        yield listener


def http() -> requests.Session:
    """A requests session that ignores the environment's proxies (everything is loopback)."""
    session = requests.Session()
    session.trust_env = False
    return session


def url(listener: CallbackListener, path: str = PATH, state: str | None = None) -> str:
    base = f"http://127.0.0.1:{listener.port}{path}"
    return base if state is None else f"{base}?state={quote(state)}"


def post(listener: CallbackListener, state: str, session: str = SESSION) -> requests.Response:
    with http() as client:
        return client.post(url(listener, state=state), data={"session": session}, timeout=5)


def get(listener: CallbackListener, state: str, session: str = SESSION) -> requests.Response:
    with http() as client:
        params = {"state": state, "session": session}
        return client.get(url(listener), params=params, timeout=5)


def raw(listener: CallbackListener, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection; everything the listener answers until it closes."""
    with socket.create_connection(("127.0.0.1", listener.port), timeout=timeout) as conn:
        conn.sendall(data)
        return read_all(conn)


def read_all(conn: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP answer (0 when nothing came back)."""
    return int(answer.split(b" ", 2)[1]) if answer else 0


def assert_answered_safely(answer: requests.Response) -> None:
    """A page of the listener: plain, not cached, no referrer, no sniffing, no script."""
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script" not in answer.text.lower()


def assert_refused_and_logged(logged: Logged, answer_status: int, reason: str) -> None:
    """A refusal: a 4xx status and one ⚠ line naming the reason (and nothing of the request)."""
    assert 400 <= answer_status < 500
    warnings = logged.warnings()
    assert any(reason in line for line in warnings), logged.text
    assert_nothing_of_the_session_logged(logged)


def assert_nothing_of_the_session_logged(logged: Logged, *states: str) -> None:
    for marker in (*SESSION_MARKERS, *states):
        assert marker not in logged.text


def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass; whether it held."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# What is accepted.


@pytest.mark.parametrize("send", [post, get], ids=["POST", "GET"])
def test_a_callback_with_the_right_state_hands_the_session_to_its_account(
    logged: Logged, send: Callable[[CallbackListener, str], requests.Response]
) -> None:
    arrivals = Arrivals()
    state = new_state()
    with listening(logged) as listener:
        listener.expect("alice", state, PATH, arrivals)
        answer = send(listener, state)
        results = listener.wait(time.monotonic() + 5)
    assert answer.status_code == 200
    assert answer.text == LOGGED_IN
    assert_answered_safely(answer)
    assert arrivals.sessions == [SESSION]
    assert results == {"alice": None}
    assert_nothing_of_the_session_logged(logged, state)


def test_two_accounts_on_one_listener_each_get_their_own_session(logged: Logged) -> None:
    alice, bob = Arrivals("alice is logged in."), Arrivals("bob is logged in.")
    alice_state, bob_state = new_state(), new_state()
    with listening(logged) as listener:
        listener.expect("alice", alice_state, PATH, alice)
        listener.expect("bob", bob_state, PATH, bob)
        bob_answer = post(listener, bob_state, '{"accessToken": "for-bob"}')
        assert listener.wait(time.monotonic() + 0.2) == {"bob": None}  # alice still waits
        alice_answer = get(listener, alice_state, '{"accessToken": "for-alice"}')
        results = listener.wait(time.monotonic() + 5)
    assert (bob_answer.text, alice_answer.text) == ("bob is logged in.", "alice is logged in.")
    assert bob.sessions == ['{"accessToken": "for-bob"}']
    assert alice.sessions == ['{"accessToken": "for-alice"}']
    assert results == {"alice": None, "bob": None}


def test_a_handler_that_fails_gives_the_browser_a_failure_page_and_wait_its_exception(
    logged: Logged,
) -> None:
    failure = ConfigError("XTS refused the session: e-session-0011: Invalid access token.")
    arrivals = Arrivals(fail=failure)
    state = new_state()
    with listening(logged) as listener:
        listener.expect("alice", state, PATH, arrivals)
        answer = post(listener, state)
        results = listener.wait(time.monotonic() + 5)
    assert answer.status_code == 500
    assert "alice" in answer.text
    assert "not logged in" in answer.text
    assert_answered_safely(answer)
    assert results == {"alice": failure}
    assert arrivals.sessions == [SESSION]


def test_nobody_coming_ends_the_wait_at_its_deadline(logged: Logged) -> None:
    with listening(logged) as listener:
        listener.expect("alice", new_state(), PATH, Arrivals())
        started = time.monotonic()
        results = listener.wait(started + 0.3)
        waited = time.monotonic() - started
    assert results == {}
    assert 0.3 <= waited < 2


class HeldHandler:
    """A handler that keeps the first session's request open until ``release`` is set, its
    session posted from a thread of its own: a callback whose exchange is still under way."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.sessions: list[str] = []
        self.sender: threading.Thread | None = None

    def __call__(self, session: str) -> str:
        self.sessions.append(session)
        self.release.wait(5)
        return LOGGED_IN

    def hold(self, listener: CallbackListener, state: str) -> None:
        """Expect ``state`` for alice, post its session, and return once it is being handled."""
        listener.expect("alice", state, PATH, self)
        self.sender = threading.Thread(target=post, args=(listener, state), daemon=True)
        self.sender.start()
        assert wait_until(lambda: self.sessions == [SESSION])


def test_a_session_accepted_before_the_deadline_is_waited_for_to_the_end(logged: Logged) -> None:
    """The holder came in time: the exchange under way is not cut off by the deadline."""
    held = HeldHandler()
    with listening(logged) as listener:
        held.hold(listener, new_state())
        threading.Timer(0.3, held.release.set).start()
        results = listener.wait(time.monotonic() + 0.05)
        assert held.sender is not None
        held.sender.join(5)
    assert results == {"alice": None}


# What is refused, and the wait goes on.


def test_a_forged_state_is_refused_and_the_wait_goes_on(logged: Logged) -> None:
    arrivals = Arrivals()
    state = new_state()
    with listening(logged) as listener:
        listener.expect("alice", state, PATH, arrivals)
        forged = [
            post(listener, new_state()),
            post(listener, state[:-1]),
            post(listener, state + "x"),
            post(listener, "é" + state[1:]),  # not ASCII: refused, not a crash
            get(listener, ""),
        ]
        with http() as client:  # no state at all
            forged.append(client.post(url(listener), data={"session": SESSION}, timeout=5))
        assert arrivals.sessions == []
        assert listener.wait(time.monotonic() + 0.1) == {}
        answer = post(listener, state)
        results = listener.wait(time.monotonic() + 5)
    assert [a.status_code for a in forged] == [403, 403, 403, 403, 400, 400]
    for refused in forged:
        assert_answered_safely(refused)
    assert_refused_and_logged(logged, forged[0].status_code, "unknown state")
    assert answer.status_code == 200
    assert arrivals.sessions == [SESSION]
    assert results == {"alice": None}
    assert len(logged.warnings()) == len(forged)


def test_a_replayed_state_is_refused(logged: Logged) -> None:
    arrivals = Arrivals()
    state = new_state()
    with listening(logged) as listener:
        listener.expect("alice", state, PATH, arrivals)
        first = post(listener, state)
        again = post(listener, state, '{"accessToken": "replayed"}')
        by_get = get(listener, state)
        results = listener.wait(time.monotonic() + 5)
    assert first.status_code == 200
    assert again.status_code == by_get.status_code == 409
    assert arrivals.sessions == [SESSION]
    assert results == {"alice": None}
    assert_refused_and_logged(logged, again.status_code, "state already used")
    assert "replayed" not in logged.text


def test_a_second_callback_arriving_while_the_first_is_handled_is_refused(
    logged: Logged,
) -> None:
    held = HeldHandler()
    state = new_state()
    with listening(logged) as listener:
        held.hold(listener, state)
        second = post(listener, state, '{"accessToken": "second"}')
        held.release.set()
        assert held.sender is not None
        held.sender.join(5)
    assert second.status_code == 409
    assert held.sessions == [SESSION]


def test_a_wrong_path_is_refused(logged: Logged) -> None:
    arrivals = Arrivals()
    state = new_state()
    with listening(logged) as listener:
        listener.expect("alice", state, PATH, arrivals)
        with http() as client:
            answers = [
                client.post(url(listener, path, state), data={"session": SESSION}, timeout=5)
                for path in ("/", "/xts/callback/", "/XTS/callback", "/xts/callback/x", "/other")
            ]
        assert post(listener, state).status_code == 200
    assert {a.status_code for a in answers} == {404}
    assert arrivals.sessions == [SESSION]
    assert_refused_and_logged(logged, 404, "wrong path")


def test_the_browsers_own_favicon_request_is_answered_404_without_a_warning(
    logged: Logged,
) -> None:
    with listening(logged) as listener:
        listener.expect("alice", new_state(), PATH, Arrivals())
        with http() as client:
            answer = client.get(url(listener, "/favicon.ico"), timeout=5)
    assert answer.status_code == 404
    assert_answered_safely(answer)
    assert logged.text == ""


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "BREW"])
def test_a_wrong_method_is_refused(logged: Logged, method: str) -> None:
    arrivals = Arrivals()
    state = new_state()
    with listening(logged) as listener:
        listener.expect("alice", state, PATH, arrivals)
        request = (
            f"{method} {PATH}?state={state}&session=x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        answer = raw(listener, request.encode())
        assert post(listener, state).status_code == 200
    assert status_of(answer) == 405
    assert b"Allow: GET, POST\r\n" in answer
    assert arrivals.sessions == [SESSION]
    assert_refused_and_logged(logged, 405, "method not allowed")


@pytest.mark.parametrize(
    ("content_type", "body", "status", "reason"),
    [
        ("application/json", '{"session": "x"}', 415, "not a form"),
        ("application/x-www-form-urlencoded", "other=1", 400, "no session"),
        ("application/x-www-form-urlencoded", "session=a&session=b", 400, "no session"),
    ],
    ids=["json", "no session", "two sessions"],
)
def test_a_post_that_is_not_a_form_with_one_session_is_refused(
    logged: Logged, content_type: str, body: str, status: int, reason: str
) -> None:
    arrivals = Arrivals()
    state = new_state()
    with listening(logged) as listener:
        listener.expect("alice", state, PATH, arrivals)
        with http() as client:
            headers = {"Content-Type": content_type}
            answer = client.post(url(listener, state=state), data=body, headers=headers, timeout=5)
        # The state is not spent by a refused callback.
        assert post(listener, state).status_code == 200
    assert answer.status_code == status
    assert_refused_and_logged(logged, status, reason)
    assert arrivals.sessions == [SESSION]


@pytest.mark.parametrize("length", [b"\xb2", b"1\xb9", b"-1", b"+3", b"0x10", b" 3 3"])
def test_a_content_length_that_is_not_ascii_digits_is_refused(
    logged: Logged, length: bytes
) -> None:
    """A declared length that is not plain ASCII digits (``²`` passes str.isdigit() but not
    int()): 400 with a ⚠ line like any malformed request, never a request left unanswered."""
    state = new_state()
    with listening(logged) as listener:
        arrivals = Arrivals()
        listener.expect("alice", state, PATH, arrivals)
        answer = raw(
            listener,
            f"POST {PATH}?state={state} HTTP/1.1\r\nContent-Type: {FORM}\r\n".encode()
            + b"Content-Length: " + length + b"\r\n\r\nsession=x",
        )  # fmt: skip
        assert post(listener, state).status_code == 200
    assert status_of(answer) == 400
    assert_refused_and_logged(logged, status_of(answer), "malformed request")
    assert not any("failed on a request" in line for line in logged.warnings())
    assert arrivals.sessions == [SESSION]


def test_a_body_over_64_kib_is_refused_before_it_is_read(logged: Logged) -> None:
    """The length is declared but the body never sent: the 413 comes back at once."""
    arrivals = Arrivals()
    state = new_state()
    with listening(logged) as listener:
        listener.expect("alice", state, PATH, arrivals)
        head = (
            f"POST {PATH}?state={state} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {MAX_BODY + 1}\r\n\r\n"
        )
        started = time.monotonic()
        answer = raw(listener, head.encode())
        seconds = time.monotonic() - started
        assert post(listener, state).status_code == 200
    assert status_of(answer) == 413
    assert seconds < REQUEST_SECONDS * 0.9  # not when the request's time ran out
    assert arrivals.sessions == [SESSION]
    assert_refused_and_logged(logged, 413, "body too large")


def test_a_body_of_exactly_64_kib_is_accepted(logged: Logged) -> None:
    arrivals = Arrivals()
    state = new_state()
    field = "session="
    session = "x" * (MAX_BODY - len(field))
    with listening(logged) as listener:
        listener.expect("alice", state, PATH, arrivals)
        with http() as client:
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            body = field + session
            answer = client.post(url(listener, state=state), data=body, headers=headers, timeout=5)
    assert answer.status_code == 200
    assert arrivals.sessions == [session]


@pytest.mark.parametrize("framing", ["chunked", "until close"])
def test_a_body_of_undeclared_length_is_refused_unread(logged: Logged, framing: str) -> None:
    arrivals = Arrivals()
    state = new_state()
    with listening(logged) as listener:
        listener.expect("alice", state, PATH, arrivals)
        head = (
            f"POST {PATH}?state={state} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
        )
        if framing == "chunked":
            head += "Transfer-Encoding: chunked\r\n\r\n"
            body = b"".join(b"8000\r\n" + b"s" * 0x8000 + b"\r\n" for _ in range(8))
        else:
            head += "\r\n"
            body = b"session=" + b"s" * (MAX_BODY * 4)
        with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as conn:
            conn.sendall(head.encode())
            with pytest.raises(OSError):  # the listener closes without reading it all
                for _ in range(64):
                    conn.sendall(body)
            answer = read_all(conn)
        assert post(listener, state).status_code == 200
    assert status_of(answer) in (0, 411)  # a reset may lose the answer, never the refusal
    assert arrivals.sessions == [SESSION]
    assert_refused_and_logged(logged, 411, "no declared length")


def test_a_slow_client_does_not_block_a_good_callback(logged: Logged) -> None:
    """Half a request, then nothing: the good callback is answered at once, the stalled one
    refused when its time is up."""
    arrivals = Arrivals()
    state = new_state()
    with listening(logged) as listener:
        listener.expect("alice", state, PATH, arrivals)
        with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as stalled:
            stalled.sendall(f"POST {PATH}?state={state} HTTP/1.1\r\nHost: 12".encode())
            started = time.monotonic()
            good = post(listener, state)
            good_seconds = time.monotonic() - started
            answer = read_all(stalled)
            stalled_seconds = time.monotonic() - started
    assert good.status_code == 200
    assert good_seconds < REQUEST_SECONDS * 0.9
    assert status_of(answer) == 408
    assert REQUEST_SECONDS * 0.8 <= stalled_seconds < REQUEST_SECONDS * 3
    assert arrivals.sessions == [SESSION]
    assert_refused_and_logged(logged, 408, "too slow")


def test_a_client_trickling_its_request_is_cut_off_when_its_time_is_up(logged: Logged) -> None:
    """One byte every 0.1 s (each read in time, the whole never): refused at the bound."""
    state = new_state()
    with listening(logged) as listener:
        listener.expect("alice", state, PATH, Arrivals())
        request = f"GET {PATH}?state={state}&session={'s' * 200} HTTP/1.1\r\n".encode()
        with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as conn:
            started = time.monotonic()
            with pytest.raises(OSError):
                for byte in request:
                    conn.sendall(bytes([byte]))
                    time.sleep(0.1)
                raise AssertionError("the listener read the whole trickled request")
            seconds = time.monotonic() - started
    assert seconds < REQUEST_SECONDS * 3
    assert_refused_and_logged(logged, 408, "too slow")


def test_connections_past_the_limit_are_closed_unanswered_until_slots_free_up(
    logged: Logged,
) -> None:
    """A flood of stalled connections costs at most MAX_CONNECTIONS threads: one more is closed
    at once; once the stalled ones' time is up, a good callback is served again."""
    arrivals = Arrivals()
    state = new_state()
    with listening(logged) as listener:
        listener.expect("alice", state, PATH, arrivals)
        stalled = []
        try:
            for _ in range(MAX_CONNECTIONS):
                conn = socket.create_connection(("127.0.0.1", listener.port), timeout=5)
                conn.sendall(b"GET ")
                stalled.append(conn)
            assert wait_until(lambda: listener.busy() == MAX_CONNECTIONS)
            started = time.monotonic()
            extra = raw(listener, f"GET {PATH} HTTP/1.1\r\n\r\n".encode())
            assert extra == b""
            assert time.monotonic() - started < REQUEST_SECONDS * 0.9
            answers = [read_all(conn) for conn in stalled]
        finally:
            for conn in stalled:
                conn.close()
        assert wait_until(lambda: listener.busy() == 0)
        assert post(listener, state).status_code == 200
    assert {status_of(a) for a in answers} == {408}
    assert arrivals.sessions == [SESSION]


def test_an_overlong_request_line_or_too_many_headers_are_refused(logged: Logged) -> None:
    state = new_state()
    with listening(logged) as listener:
        listener.expect("alice", state, PATH, Arrivals())
        long_line = raw(listener, f"GET {PATH}?state={'s' * 70000} HTTP/1.1\r\n\r\n".encode())
        headers = "".join(f"X-{n}: {n}\r\n" for n in range(200))
        many = raw(listener, f"GET {PATH}?state={state} HTTP/1.1\r\n{headers}\r\n".encode())
        nonsense = raw(listener, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")
        assert post(listener, state).status_code == 200
    assert [status_of(a) for a in (long_line, many, nonsense)] == [414, 431, 400]
    assert len(logged.warnings()) == 3
    assert "sss" not in logged.text


def test_a_refusal_is_logged_with_its_method_reason_and_client_but_none_of_its_content(
    logged: Logged,
) -> None:
    state = new_state()
    with listening(logged) as listener:
        listener.expect("alice", state, PATH, Arrivals())
        with http() as client:
            client.post(
                url(listener, state="forged-state-value"),
                data={"session": SESSION},
                headers={"X-Secret-Header": "header-value-secret", "Cookie": "c=cookie-secret"},
                timeout=5,
            )
        post(listener, state)
        get(listener, state)  # a replay
    (forged, replay) = logged.warnings()
    assert forged.startswith("⚠ ")
    assert "POST" in forged
    assert "127.0.0.1" in forged
    assert "unknown state" in forged
    assert "GET" in replay
    for content in (
        "forged-state-value",
        "header-value-secret",
        "cookie-secret",
        state,
        *SESSION_MARKERS,
        "session=",
    ):
        assert content not in logged.text


# Listening.


def test_an_address_in_use_is_a_config_error_naming_it(logged: Logged) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as refused:
            CallbackListener("127.0.0.1", port, logged.log).__enter__()
    assert refused.value.exit_code == 2
    assert f"127.0.0.1:{port}" in refused.value.message
    assert "XTS_CALLBACK_LISTEN" in refused.value.hint


def test_an_ipv6_loopback_address_is_served(logged: Logged) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    arrivals = Arrivals()
    state = new_state()
    try:
        listener = CallbackListener("::1", 0, logged.log).__enter__()
    except ConfigError:
        pytest.skip("::1 cannot be bound here")
    with listener:
        listener.expect("alice", state, PATH, arrivals)
        with http() as client:
            answer = client.get(
                f"http://[::1]:{listener.port}{PATH}",
                params={"state": state, "session": SESSION},
                timeout=5,
            )
    assert answer.status_code == 200
    assert arrivals.sessions == [SESSION]


def test_leaving_the_listener_closes_its_socket(logged: Logged) -> None:
    with listening(logged) as listener:
        port = listener.port
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


# The pure helpers.


def test_a_new_state_is_long_random_and_url_safe() -> None:
    states = {new_state() for _ in range(100)}
    assert len(states) == 100
    for state in states:
        assert len(state) >= 43
        assert quote(state, safe="") == state


@pytest.mark.parametrize(
    ("return_url", "expected"),
    [
        ("http://127.0.0.1:8765/xts/callback", "http://127.0.0.1:8765/xts/callback?state=S-1"),
        ("https://me.example/cb?a=1&b=x%20y", "https://me.example/cb?a=1&b=x%20y&state=S-1"),
        ("https://me.example/cb?state=old&a=1", "https://me.example/cb?a=1&state=S-1"),
        ("https://me.example/cb#top", "https://me.example/cb?state=S-1#top"),
    ],
)
def test_the_return_url_carries_the_state_and_keeps_its_own_query(
    return_url: str, expected: str
) -> None:
    assert return_url_with_state(return_url, "S-1") == expected


def test_the_login_link_carries_the_app_key_and_the_encoded_return_url() -> None:
    return_url = "http://127.0.0.1:8765/xts/callback?state=a&b"
    link = login_link("https://xts.example:3000/interactive/thirdparty", "key &1", return_url)
    split = urlsplit(link)
    assert split._replace(query="").geturl() == "https://xts.example:3000/interactive/thirdparty"
    assert parse_qs(split.query) == {"appKey": ["key &1"], "returnURL": [return_url]}
    assert link.endswith("returnURL=http%3A%2F%2F127.0.0.1%3A8765%2Fxts%2Fcallback%3Fstate%3Da%26b")
    with_query = login_link("https://xts.example/login?broker=x", "k", return_url)
    assert with_query.startswith("https://xts.example/login?broker=x&appKey=k&returnURL=")


@pytest.mark.parametrize(
    ("setting", "return_url", "expected"),
    [
        (None, "http://127.0.0.1:8765/xts/callback", ("127.0.0.1", 8765)),
        (None, "http://127.0.0.1:9000/cb", ("127.0.0.1", 9000)),
        (None, "http://127.0.0.2:9000/cb", ("127.0.0.2", 9000)),
        (None, "http://localhost:9001/cb", ("127.0.0.1", 9001)),
        (None, "http://[::1]:9002/cb", ("::1", 9002)),
        (None, "http://localhost/cb", ("127.0.0.1", 80)),
        (None, "https://localhost./cb", ("127.0.0.1", 443)),
        (None, "https://me.example/xts/callback", ("127.0.0.1", 8765)),
        (None, "https://10.0.0.5:9443/cb", ("127.0.0.1", 8765)),
        ("", "https://me.example/cb", ("127.0.0.1", 8765)),
        ("0.0.0.0:9999", "https://me.example/cb", ("0.0.0.0", 9999)),  # noqa: S104 - parsed only
        ("127.0.0.1:8000", "http://127.0.0.1:8765/cb", ("127.0.0.1", 8000)),
        ("[::1]:8766", "https://me.example/cb", ("::1", 8766)),
        (" 192.168.1.5:8765 ", "https://me.example/cb", ("192.168.1.5", 8765)),
    ],
)
def test_the_listen_address_is_the_setting_else_a_loopback_return_urls_else_the_default(
    setting: str | None, return_url: str, expected: tuple[str, int]
) -> None:
    assert listen_address(setting, return_url) == expected


def test_a_loopback_return_url_with_a_port_out_of_range_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as refused:
        listen_address(None, "http://127.0.0.1:99999/cb")
    assert "XTS_RETURN_URL" in refused.value.message


@pytest.mark.parametrize(
    "setting",
    [
        "8765",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:99999",
        "::1:8765",
        "h:p",
        "a:1/x",
        "user@127.0.0.1:8765",
        "[127.0.0.1]:8765",
        "127.0.0.1:+1",
    ],
)
def test_a_listen_setting_that_is_not_host_and_port_is_a_config_error(setting: str) -> None:
    with pytest.raises(ConfigError) as refused:
        listen_address(setting, "https://me.example/cb")
    assert refused.value.exit_code == 2
    assert "XTS_CALLBACK_LISTEN" in refused.value.message


def test_a_key_refresh_imports_nothing_of_the_listener() -> None:
    """Start-up budget: only a run with a browser account waiting imports the listener (and
    http.server with it)."""
    probe = (
        "import sys, xts_token_refresh, xts_refresher.cli, xts_refresher.refresh\n"
        "print(sorted(m for m in ('xts_refresher.callback', 'http.server') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=APP_DIR, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.mark.parametrize("handover", ["post", "get"])
def test_the_simulated_brokers_login_page_hands_its_session_to_the_listener(
    logged: Logged, handover: str
) -> None:
    """End to end with the bundled simulator's login page, its holder's browser played by
    ``sign_in``: the listener's handler gets the session JSON the page handed over."""
    from xts_refresher.simulator import THIRDPARTY_INTERACTIVE_KEY, XtsSimulator, sign_in

    arrivals = Arrivals()
    state = new_state()
    with XtsSimulator() as sim, listening(logged) as listener:
        sim.thirdparty.handover = handover
        listener.expect("alice", state, PATH, arrivals)
        return_url = return_url_with_state(url(listener), state)
        link = login_link(
            f"{sim.url}/interactive/thirdparty", THIRDPARTY_INTERACTIVE_KEY, return_url
        )
        status, text = sign_in(link)
        results = listener.wait(time.monotonic() + 5)
        (session,) = arrivals.sessions
        assert json.loads(session)["accessToken"] == sim.thirdparty.access_tokens()[-1]
    assert (status, text) == (200, LOGGED_IN)
    assert results == {"alice": None}
    assert logged.warnings() == []
