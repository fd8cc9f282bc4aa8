"""The simulator's ``login_delay``, in process: a real simulator on 127.0.0.1, real logins.

With a delay every login (interactive and market-data) is answered normally, with a token,
but only after the delay; other routes are not delayed; without one a login is answered at
once; and stopping the simulator ends a delayed login at once, without an answer. These tests
run in about a second.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.request
from typing import Any

import pytest

from xts_refresher.simulator import (
    DEMO_INTERACTIVE_KEY,
    DEMO_INTERACTIVE_SECRET,
    DEMO_MARKETDATA_KEY,
    DEMO_MARKETDATA_SECRET,
    XtsSimulator,
)

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
