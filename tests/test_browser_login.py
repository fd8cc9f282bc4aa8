"""Browser login: accounts whose interactive session comes from the broker's login page.

The holder's browser is played with plain requests against the simulator's login page: open
the link the program printed, post the sign-in form (user ID, password, TOTP), and deliver the
session the page hands over to the return URL, by form POST or by GET, as a browser would.
Every run is the real script, started as cron starts it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import pytest
import requests
from conftest import (
    CRON_PATH,
    PYTHON,
    SCRIPT,
    Project,
    Run,
    assert_no_secrets,
    closed_port,
    run_process,
    skip_or_fail,
    telegram_texts,
    token_json,
    with_healthcheck,
)

from xts_refresher.simulator import CODE_KEY_LOGIN_REFUSED, Fault, totp
from xts_refresher.simulator.thirdparty import (
    THIRDPARTY_PASSWORD,
    THIRDPARTY_TOTP_SECRET,
    page_forms,
)

# The browser account's app (distinctive fakes: they must appear nowhere but in the link).
TP_KEY = "tp-FAKE-5d1c-browser-app-key"
TP_SECRET = "tp-FAKE-9e7b-browser-app-secret"
TP_USER = "TP01"
TP_KEY_2 = "tp-FAKE-77aa-second-browser-app-key"
TP_SECRET_2 = "tp-FAKE-31cd-second-browser-app-secret"
TP_USER_2 = "TP02"
LINK_LINE = "Open this link to log in "
NO_INTERACTIVE_KEY = {"XTS_INTERACTIVE_API_KEY": "", "XTS_INTERACTIVE_API_SECRET": ""}
BROWSER_MODULES = (
    "xts_refresher.browser_login",
    "xts_refresher.callback",
    "xts_refresher.login",
    "xts_refresher.token_command",
)


# -- the holder's browser ------------------------------------------------------------------------


def hand_over(link: str, *, get: bool = False, user: str = TP_USER) -> tuple[str, str]:
    """Sign in on the broker's page that ``link`` opens, as the holder's browser does; where
    the page sends the browser and the session it carries: (return URL with its query, the
    session field) for a form POST, or (the whole address with ``session``, "") for a GET."""
    page = requests.get(link, timeout=10)
    assert page.status_code == 200, page.text
    _, action, fields = page_forms(page.text)[0]
    fields.update(userID=user, password=THIRDPARTY_PASSWORD, totp=totp(THIRDPARTY_TOTP_SECRET))
    if get:
        fields["method"] = "get"
    answer = requests.post(urljoin(link, action), data=fields, timeout=10, allow_redirects=False)
    if get:
        assert answer.status_code in (302, 303), answer.text
        return answer.headers["Location"], ""
    assert answer.status_code == 200, answer.text
    _, return_url, handed = page_forms(answer.text)[0]
    return return_url, handed["session"]


def deliver(callback: str, session: str) -> requests.Response:
    """What the browser does with a handover: POST the form to the return URL, or GET the
    address (when ``session`` is "", it is in the address)."""
    if session:
        return requests.post(callback, data={"session": session}, timeout=15)
    return requests.get(callback, timeout=15)


def sign_in(link: str, *, get: bool = False, user: str = TP_USER) -> requests.Response:
    """The whole sign-in of the holder: the page, then the handover to the return URL."""
    return deliver(*hand_over(link, get=get, user=user))


# -- a run that waits ----------------------------------------------------------------------------


class LiveRun:
    """The script running in the background as cron would, its output read as it comes."""

    def __init__(self, project: Project, *args: str, env: dict[str, str] | None = None) -> None:
        self.project = project
        self.process = project.start(*args, env=env)
        self.stdout: list[str] = []
        self.stderr = ""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.stdout.append(line)

    def line(self, start: str, timeout: float = 20) -> str:
        """The first line of standard output so far that holds ``start``, waited for."""
        end = time.monotonic() + timeout
        while True:
            found = [line for line in list(self.stdout) if start in line]
            if found:
                return found[0].rstrip("\n")
            if time.monotonic() > end:
                raise AssertionError(f"no line with {start!r}; so far: {''.join(self.stdout)}")
            time.sleep(0.02)

    def link(self, account: str = "default") -> str:
        """The link the run printed for ``account``."""
        line = self.line(f"{LINK_LINE}{account}: ")
        return line.split(f"{LINK_LINE}{account}: ", 1)[1]

    def finish(self, timeout: float = 60) -> Run:
        """Wait for the end; the Run (its output checked for secrets as browser_secrets says)."""
        self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()
        log = self.project.log_file.read_text("utf-8") if self.project.log_file.exists() else ""
        run = Run(self.process.returncode, "".join(self.stdout), self.stderr, log)
        assert_browser_secrets_kept(self.project, run)
        return run


@pytest.fixture
def live() -> Iterator[list[LiveRun]]:
    """Runs started by a test; any still running at its end is killed."""
    started: list[LiveRun] = []
    yield started
    for run in started:
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()


def browser_secrets(project: Project) -> list[str]:
    """Every secret of a browser test: the project's, the browser apps' secrets, and every
    access token and session token the page and XTS handed out."""
    return [
        *project.secrets(),
        TP_SECRET,
        TP_SECRET_2,
        *project.sim.thirdparty.access_tokens(),
    ]


def assert_browser_secrets_kept(project: Project, run: Run) -> None:
    """No secret or token in the output or the log; the browser app's key only in the link's
    own line on the console (the log has it masked)."""
    without_links = "\n".join(line for line in run.output.splitlines() if LINK_LINE not in line)
    for text in (without_links, run.log):
        for secret in (*browser_secrets(project), TP_KEY, TP_KEY_2):
            assert secret not in text, f"a secret leaked: {secret[:8]}..."
    for line in run.output.splitlines():
        if LINK_LINE in line:
            assert_no_secrets(project, line)
            for secret in browser_secrets(project):
                assert secret not in line


def browser_account(project: Project, **settings: str) -> str:
    """Make the project's .env a browser account of the simulator's login page (its holder
    TP_USER); the return URL's port is free. The return URL."""
    project.sim.thirdparty.add_account(TP_KEY, TP_SECRET, TP_USER)
    return_url = f"http://127.0.0.1:{closed_port()}/xts/callback"
    project.settings.update(
        XTS_LOGIN="browser",
        XTS_INTERACTIVE_API_KEY=TP_KEY,
        XTS_INTERACTIVE_API_SECRET=TP_SECRET,
        XTS_USER_ID=TP_USER,
        XTS_RETURN_URL=return_url,
        **settings,
    )
    return return_url


def previous_token(project: Project) -> bytes:
    """A good token file written by a key login of another app before the test: its bytes."""
    sim = project.sim
    sim.add_account("old-key-FAKE-0001", "old-secret-FAKE-0001", TP_USER, "interactive")
    done = run_process(
        [PYTHON, str(SCRIPT), "--env-file", str(project.write_env())],
        env={
            "XTS_LOGIN": "key",
            "XTS_INTERACTIVE_API_KEY": "old-key-FAKE-0001",
            "XTS_INTERACTIVE_API_SECRET": "old-secret-FAKE-0001",
        },
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return project.token_file.read_bytes()


def exchanges(project: Project) -> list[dict[str, Any]]:
    """The bodies of the interactive logins XTS received that exchange an access token."""
    return [
        r.json
        for r in project.sim.requests()
        if isinstance(r.json, dict) and "accessToken" in r.json
    ]


# -- refresh: the three ways to a browser account's session --------------------------------------


def test_a_refresh_with_no_way_to_the_session_fails_at_once_naming_login(project: Project) -> None:
    """No token command and no XTS_LOGIN_WAIT: exit 1 at once, the line names the command that
    lets the holder sign in; nothing was sent to XTS and the previous token is intact."""
    browser_account(project)
    before = previous_token(project)
    project.sim.clear()

    run = project.run()

    assert run.code == 1, run.output
    assert (
        "✗ default needs its holder to sign in on the broker's page: run xts_token_refresh.py "
        "login --account default\n" in run.stdout
    )
    assert project.sim.requests() == []
    assert project.token_file.read_bytes() == before
    assert_browser_secrets_kept(project, run)


def test_refresh_if_needed_keeps_a_browser_accounts_good_token_without_its_holder(
    project: Project,
) -> None:
    """`refresh --if-needed` (the 09:00 line after a `login` by hand): a stored token that is
    still good is kept, as for any account: exit 0, no link, nothing sent to XTS, the file
    byte-identical."""
    browser_account(project)
    before = previous_token(project)
    project.sim.clear()

    run = project.run("--if-needed")

    assert run.code == 0, run.output
    assert "Open this link" not in run.output
    assert "needs its holder" not in run.output
    assert project.sim.requests() == []
    assert project.token_file.read_bytes() == before


@pytest.mark.parametrize("shape", ["accessToken", "token"])
@pytest.mark.parametrize("get", [False, True], ids=["form-post", "get"])
def test_login_saves_the_session_the_page_hands_over(
    project: Project, live: list[LiveRun], shape: str, get: bool
) -> None:
    """`login` prints the link, receives the session at the callback (form POST or GET; an
    access token to exchange or the finished session), proves it, saves it as a refresh does,
    and tells the browser who is logged in, never the token."""
    browser_account(project)
    project.sim.thirdparty.session_shape = shape
    live.append(LiveRun(project, "login", "--wait", "30s"))

    answer = sign_in(live[0].link(), get=get)
    run = live[0].finish()

    assert answer.status_code == 200, answer.text
    assert answer.text.strip() == f"default is logged in as {TP_USER}. You can close this page."
    assert run.code == 0, run.output
    saved = token_json(project.token_file)
    assert saved["userID"] == TP_USER and saved["session"] == "interactive"
    assert saved["token"] == project.sim.issued_tokens("interactive")[-1]
    assert saved["token"] not in answer.text
    assert len(exchanges(project)) == (1 if shape == "accessToken" else 0)
    if shape == "accessToken":
        sent = exchanges(project)[0]
        assert (sent["appKey"], sent["secretKey"]) == (TP_KEY, TP_SECRET)
    assert project.sim.count("interactive_balance") == 1  # the proof, before the save
    assert oct(project.token_file.stat().st_mode & 0o777) == "0o600"
    assert "✓ Token saved to: " in run.stdout


def test_a_session_encoded_twice_is_read(project: Project, live: list[LiveRun]) -> None:
    """A page that encodes the session JSON twice (a JSON string holding it) is understood."""
    browser_account(project)
    project.sim.thirdparty.double_encoded = True
    live.append(LiveRun(project, "login", "--wait", "30s"))

    answer = sign_in(live[0].link())
    run = live[0].finish()

    assert answer.status_code == 200 and run.code == 0, run.output
    assert token_json(project.token_file)["userID"] == TP_USER


@pytest.mark.parametrize("notify", ["failure", "off"])
def test_a_refresh_waits_for_the_holder_and_sends_the_link_to_telegram(
    project: Project, live: list[LiveRun], notify: str
) -> None:
    """XTS_LOGIN_WAIT: the refresh prints the link, sends it to Telegram whatever
    TELEGRAM_NOTIFY says, and saves the session when the holder signs in; no message, ping
    or log line carries a token, and the app key only travels in the link."""
    browser_account(project, XTS_LOGIN_WAIT="30s")
    project.with_telegram(notify=notify)
    ping = with_healthcheck(project)
    live.append(LiveRun(project))

    link = live[0].link()
    deadline = time.monotonic() + 15
    while not project.sim.requests("telegram") and time.monotonic() < deadline:
        time.sleep(0.05)
    texts = telegram_texts(project)
    answer = sign_in(link)
    run = live[0].finish()

    assert answer.status_code == 200 and run.code == 0, run.output
    assert len(texts) == 1 and link in texts[0] and "log in default" in texts[0]
    assert texts == telegram_texts(project)  # failure or off: no news of a success
    for text in texts:
        assert text.count(TP_KEY) == 1  # in the link, nowhere else
        for secret in browser_secrets(project):
            assert secret not in text
    pings = project.sim.requests("healthcheck")
    assert [p.path for p in pings] == [f"{ping}/start", f"{ping}/0"]
    body = pings[-1].body.decode()
    assert LINK_LINE not in body
    for secret in (*browser_secrets(project), TP_KEY):
        assert secret not in body


@pytest.mark.slow
def test_a_waiting_refreshs_deadline_is_extended_by_the_wait(
    project: Project, live: list[LiveRun]
) -> None:
    """XTS_DEADLINE=2 with XTS_LOGIN_WAIT=30s: the holder signs in after the 2 s a refresh
    alone may take, and the session is still exchanged, proven and saved (exit 0)."""
    browser_account(project, XTS_LOGIN_WAIT="30s", XTS_DEADLINE="2")
    live.append(LiveRun(project))
    link = live[0].link()
    started = time.monotonic()

    while time.monotonic() - started < 2.5:  # past the deadline without the wait
        time.sleep(0.1)
    answer = sign_in(link)
    run = live[0].finish()

    assert answer.status_code == 200 and run.code == 0, run.output
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]


def test_nobody_signs_in_in_time(project: Project) -> None:
    """`login --wait 1s` with nobody signing in: exit 1 saying so, the token file unchanged,
    nothing sent to XTS."""
    browser_account(project)
    before = previous_token(project)
    project.sim.clear()

    run = project.run("login", "--wait", "1s")

    assert run.code == 1, run.output
    assert "✗ Nobody signed in on the broker's page within 1s" in run.stdout
    assert project.token_file.read_bytes() == before
    assert project.sim.requests() == []


@pytest.mark.slow
def test_forged_callbacks_are_refused_and_save_nothing(
    project: Project, live: list[LiveRun]
) -> None:
    """Callbacks without the link's state, with another state, at another path, or with
    junk are refused (4xx) and save nothing; the wait goes on until nobody came."""
    return_url = browser_account(project)
    before = previous_token(project)
    project.sim.clear()
    live.append(LiveRun(project, "login", "--wait", "3s"))
    link = live[0].link()
    callback, session = hand_over(link)
    real_state = parse_qs(urlsplit(callback).query)["state"][0]
    forged = json.dumps({"token": "eyJforged.eyJforged.sig", "userID": TP_USER})

    answers = [
        requests.post(return_url, data={"session": forged}, timeout=10),
        requests.post(f"{return_url}?state=forged-state", data={"session": forged}, timeout=10),
        requests.get(return_url, params={"state": "x" * 43, "session": session}, timeout=10),
        requests.post(
            callback.replace("/xts/callback", "/elsewhere"), data={"session": session}, timeout=10
        ),
    ]
    run = live[0].finish()

    assert all(400 <= a.status_code < 500 for a in answers), [a.status_code for a in answers]
    assert all(real_state not in a.text and session not in a.text for a in answers)
    assert run.code == 1, run.output
    assert project.token_file.read_bytes() == before
    assert exchanges(project) == []


@pytest.mark.parametrize("tamper", ["forged-token", "junk"])
def test_a_callback_with_the_right_state_but_a_bad_session_saves_nothing(
    project: Project, live: list[LiveRun], tamper: str
) -> None:
    """Even with the link's state, a session that is not the page's saves nothing: a token
    XTS does not accept fails its proof (exit 3), junk is unusable (exit 1); the browser is
    not told it is logged in, and the token file is unchanged."""
    browser_account(project)
    project.sim.thirdparty.session_shape = "token"
    before = previous_token(project)
    live.append(LiveRun(project, "login", "--wait", "30s"))
    callback, session = hand_over(live[0].link())
    if tamper == "forged-token":
        forged = json.loads(session)
        forged["token"] = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VySUQiOiJUUDAxIn0.forged-signature"
        session = json.dumps(forged)
    else:
        session = "<html>not a session</html>"

    answer = deliver(callback, session)
    run = live[0].finish()

    assert answer.status_code >= 400 and "logged in as" not in answer.text
    assert run.code == (3 if tamper == "forged-token" else 1), run.output
    assert project.token_file.read_bytes() == before


def test_login_with_no_browser_account_selected_is_a_usage_error(project: Project) -> None:
    """`login` for an account that logs in with its key: exit 2, saying what login is for;
    nothing is sent."""
    run = project.run("login", "--wait", "1s")

    assert run.code == 2, run.output
    assert "No selected account signs in on the broker's page (XTS_LOGIN=browser)" in run.stdout
    assert project.sim.requests() == []


def test_two_browser_accounts_share_one_listener_and_a_replay_is_refused(
    project: Project, live: list[LiveRun]
) -> None:
    """Two browser accounts waiting on one listen address: each link's state says whose a
    callback is, each saves its own token, and replaying the first's callback is refused."""
    port = closed_port()
    sim = project.sim
    sim.thirdparty.add_account(TP_KEY, TP_SECRET, TP_USER)
    sim.thirdparty.add_account(TP_KEY_2, TP_SECRET_2, TP_USER_2)
    common = {"XTS_LOGIN": "browser", "XTS_RETURN_URL": f"http://127.0.0.1:{port}/xts/callback"}
    folder = project.with_accounts(
        "anu",
        "ravi",
        anu={**common, "XTS_INTERACTIVE_API_KEY": TP_KEY, "XTS_INTERACTIVE_API_SECRET": TP_SECRET,
             "XTS_USER_ID": TP_USER},
        ravi={**common, "XTS_INTERACTIVE_API_KEY": TP_KEY_2,
              "XTS_INTERACTIVE_API_SECRET": TP_SECRET_2, "XTS_USER_ID": TP_USER_2},
    )  # fmt: skip
    live.append(LiveRun(project, "login", "--wait", "30s"))
    links = {name: live[0].link(name) for name in sorted(("anu", "ravi"))}
    # Each account's lines are held until it is done, but not those its holder needs now.
    live[0].line("[anu] Waiting up to 30s")
    live[0].line("[ravi] Waiting up to 30s")

    first_callback, first_session = hand_over(links["anu"])
    first = deliver(first_callback, first_session)
    replay = deliver(first_callback, first_session)
    second = sign_in(links["ravi"], user=TP_USER_2)
    run = live[0].finish()

    assert first.status_code == 200 and "anu is logged in as TP01" in first.text
    assert 400 <= replay.status_code < 500
    assert second.status_code == 200 and "ravi is logged in as TP02" in second.text
    assert run.code == 0, run.output
    assert token_json(folder / "anu" / "xts_store_token.json")["userID"] == TP_USER
    assert token_json(folder / "ravi" / "xts_store_token.json")["userID"] == TP_USER_2
    assert len(exchanges(project)) == 2


def test_a_holder_signed_in_as_another_user_saves_nothing(
    project: Project, live: list[LiveRun]
) -> None:
    """XTS_USER_ID is checked exactly as for a key login: another user's session is refused
    (exit 1), the browser is not told it is logged in, and the token file is unchanged."""
    browser_account(project)
    project.sim.thirdparty.add_account(TP_KEY, TP_SECRET, TP_USER_2)  # the page's holder: TP02
    before = previous_token(project)
    live.append(LiveRun(project, "login", "--wait", "30s"))

    answer = sign_in(live[0].link(), user=TP_USER_2)
    run = live[0].finish()

    assert answer.status_code >= 400 and "logged in as" not in answer.text
    assert run.code == 1, run.output
    assert f"answered for user {TP_USER_2}, not XTS_USER_ID={TP_USER}" in run.stdout
    assert project.token_file.read_bytes() == before


def test_a_finished_session_claiming_the_holder_for_another_users_token_saves_nothing(
    project: Project, live: list[LiveRun]
) -> None:
    """A finished session is the page's claim: one carrying a real token XTS issued to another
    user, under this account's userID, is refused (the token's own userID says whose it is):
    exit 1, no proof call, the browser not told it is logged in, the token file unchanged."""
    browser_account(project)
    project.sim.thirdparty.session_shape = "token"
    before = previous_token(project)
    project.sim.add_account("evil-key-FAKE-0001", "evil-secret-FAKE-0001", "EVIL9", "interactive")
    answer = requests.post(
        f"{project.sim.url}/interactive/user/session",
        json={"appKey": "evil-key-FAKE-0001", "secretKey": "evil-secret-FAKE-0001",
              "source": "WEBAPI"},
        timeout=10,
    )  # fmt: skip
    others_token = answer.json()["result"]["token"]
    live.append(LiveRun(project, "login", "--wait", "30s"))
    callback, session = hand_over(live[0].link())
    forged = {**json.loads(session), "token": others_token, "userID": TP_USER}
    project.sim.clear()

    page = deliver(callback, json.dumps(forged))
    run = live[0].finish()

    assert page.status_code >= 400 and "logged in as" not in page.text
    assert run.code == 1, run.output
    assert "belongs to user EVIL9" in run.stdout
    assert others_token not in run.output + run.log
    assert project.sim.requests() == []
    assert project.token_file.read_bytes() == before


def test_market_data_logs_in_with_its_key_in_the_same_run(
    project: Project, live: list[LiveRun]
) -> None:
    """A browser account with market data: once the holder signed in, the market-data session
    logs in with its own key and secret, both tokens are saved, and then the post-refresh hook
    runs, told of both sessions, as after a refresh."""
    browser_account(project)
    project.with_marketdata()
    hook_saw = project.folder / "hook-saw.txt"
    project.settings["XTS_POST_REFRESH_HOOK"] = f'echo "$XTS_REFRESHED_SESSIONS" > {hook_saw}'

    project.sim.add_account(
        project.settings["XTS_MARKETDATA_API_KEY"],
        project.settings["XTS_MARKETDATA_API_SECRET"],
        TP_USER,
        "marketdata",
    )
    live.append(LiveRun(project, "login", "--wait", "30s"))

    answer = sign_in(live[0].link())
    run = live[0].finish()

    assert answer.status_code == 200 and run.code == 0, run.output
    assert token_json(project.token_file)["userID"] == TP_USER
    assert token_json(project.md_token_file)["session"] == "marketdata"
    routes = [r.route for r in project.sim.requests() if r.route != "unknown"]
    assert routes.index("marketdata_login") > routes.index("interactive_balance")
    assert hook_saw.read_text(encoding="utf-8").split() == ["interactive,marketdata"]


def test_a_key_account_is_not_delayed_by_a_browser_account_waiting(
    project: Project, live: list[LiveRun]
) -> None:
    """A key account and a browser account in one refresh: the key account's token is saved
    while the browser account still waits for its holder; the run ends when both are done."""
    port = closed_port()
    project.sim.thirdparty.add_account(TP_KEY, TP_SECRET, TP_USER)
    folder = project.with_accounts(
        "keyed",
        "holder",
        holder={"XTS_LOGIN": "browser", "XTS_LOGIN_WAIT": "30s", "XTS_USER_ID": TP_USER,
                "XTS_INTERACTIVE_API_KEY": TP_KEY, "XTS_INTERACTIVE_API_SECRET": TP_SECRET,
                "XTS_RETURN_URL": f"http://127.0.0.1:{port}/cb"},
    )  # fmt: skip
    live.append(LiveRun(project))
    link = live[0].link("holder")
    keyed_token = folder / "keyed" / "xts_store_token.json"
    deadline = time.monotonic() + 20
    while not keyed_token.exists() and time.monotonic() < deadline:
        time.sleep(0.05)

    assert keyed_token.exists() and live[0].process.poll() is None
    assert not (folder / "holder" / "xts_store_token.json").exists()
    answer = sign_in(link)
    run = live[0].finish()
    assert answer.status_code == 200 and run.code == 0, run.output
    assert "✓ All 2 accounts hold fresh tokens (exit code 0)." in run.stdout


# -- the token command -------------------------------------------------------------------------


TOKEN_COMMAND = """
import os, sys
from urllib.parse import urljoin
sys.path.insert(0, {app!r})
import requests
from xts_refresher.simulator import CODE_KEY_LOGIN_REFUSED, Fault, totp
from xts_refresher.simulator.thirdparty import page_forms
link = os.environ["XTS_LOGIN_LINK"]
_, action, fields = page_forms(requests.get(link, timeout=10).text)[0]
fields.update(userID={user!r}, password={password!r}, totp=totp({totp_secret!r}))
handover = requests.post(urljoin(link, action), data=fields, timeout=10).text
print(page_forms(handover)[0][2]["session"])
assert os.environ["XTS_ACCOUNT"] == "default"
assert link.startswith(os.environ["XTS_LOGIN_URL"] + "?appKey=")
assert os.environ["XTS_RETURN_URL"].startswith("http://127.0.0.1:")
assert not [n for n in os.environ if "SECRET" in n or n.endswith("_KEY")], "a secret"
"""


def token_command(project: Project, body: str) -> str:
    """A token command running the Python ``body`` with this interpreter; its shell line."""
    script = project.folder / "sign_in.py"
    script.write_text(body, encoding="utf-8")
    return f"{PYTHON} {script}"


def signing_in() -> str:
    """The Python of a token command that signs in on the simulator's page as TP_USER."""
    return TOKEN_COMMAND.format(
        app=str(SCRIPT.parent),
        user=TP_USER,
        password=THIRDPARTY_PASSWORD,
        totp_secret=THIRDPARTY_TOTP_SECRET,
    )


def test_the_token_command_signs_in_without_a_person(project: Project) -> None:
    """XTS_ACCESS_TOKEN_COMMAND's output is the session: exchanged, proven and saved; the
    command sees the account, the login page, the link and no secret of ours."""
    browser_account(project)
    project.settings["XTS_ACCESS_TOKEN_COMMAND"] = token_command(project, signing_in())

    run = project.run(env={"XTS_INTERACTIVE_API_SECRET": TP_SECRET})

    assert run.code == 0, run.output
    assert token_json(project.token_file)["userID"] == TP_USER
    assert len(exchanges(project)) == 1
    assert_browser_secrets_kept(project, run)


def test_the_token_command_gets_no_url_credentials_of_ours(project: Project) -> None:
    """A URL setting of ours holding a user and password (a health-check server behind basic
    authentication), set in the environment: it is a secret as much as a key is, so it is
    left out of the command's environment."""
    browser_account(project)
    prefix = with_healthcheck(project)
    del project.settings["HEALTHCHECK_URL"]
    password = "pw-FAKE-ping-basic-auth-77e1"
    ping_url = project.sim.url.replace("://", f"://pinger:{password}@") + prefix
    seen = project.folder / "command_env.json"
    body = f"import json, os\njson.dump(dict(os.environ), open({str(seen)!r}, 'w'))\n"
    project.settings["XTS_ACCESS_TOKEN_COMMAND"] = token_command(project, body + signing_in())

    run = project.run(env={"HEALTHCHECK_URL": ping_url})

    assert run.code == 0, run.output
    assert project.sim.requests("healthcheck"), "the ping URL was not the one set"
    environment = json.loads(seen.read_text())
    assert environment["XTS_ACCOUNT"] == "default"
    assert password not in json.dumps(environment)
    assert environment["XTS_LOG_FILE"] == str(project.log_file)  # the others of ours stay


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (
            "import sys; print('at-FAKE-0123456789abcdef'); "
            "sys.stderr.write('chrome crashed\\ntoken at-FAKE-0123456789abcdef refused\\n'); "
            "sys.exit(3)",
            "failed with exit code 3: token at-FAK… refused",
        ),
        ("print('Error: the page did not load')", "neither the session JSON"),
        ("print('   ')", "printed nothing on standard output"),
    ],
    ids=["failing", "junk", "nothing"],
)
def test_a_token_command_that_fails_or_prints_junk_is_exit_1(
    project: Project, body: str, said: str
) -> None:
    """A command that fails (its last error line shown, redacted), or prints nothing usable:
    exit 1, the advice to fix the command in the account's file that holds it (not to sign in
    on the broker's page again), nothing sent to XTS, the previous token intact."""
    browser_account(project)
    before = previous_token(project)
    project.sim.clear()
    project.settings["XTS_ACCESS_TOKEN_COMMAND"] = token_command(project, body)

    run = project.run()

    assert run.code == 1, run.output
    assert said in run.stdout
    advice = f"Fix XTS_ACCESS_TOKEN_COMMAND in {project.env_file} (run it by hand"
    assert run.stdout.count(advice) == 2, run.stdout  # its ✗ line and the closing line
    assert "Sign in on the broker's page again" not in run.stdout
    assert "at-FAKE-0123456789abcdef" not in run.output + run.log
    assert project.sim.requests() == []
    assert project.token_file.read_bytes() == before


@pytest.mark.slow
def test_a_hanging_token_command_is_stopped_with_its_children(project: Project) -> None:
    """A command that outlives its time (here the run's 3 s deadline) is killed with its
    whole process group: exit 1, nothing sent; its last error line is shown with what it
    printed on standard output (a token, before it hung) masked."""
    browser_account(project, XTS_DEADLINE="3")
    pid_file = project.folder / "child.pid"
    token = "at-FAKE-printed-then-hung-0123456789"
    project.settings["XTS_ACCESS_TOKEN_COMMAND"] = (
        f"echo {token}; echo 'handed over {token}, waiting for the browser' >&2; "
        f"sleep 60 & echo $! > {pid_file}; sleep 60"
    )
    project.sim.clear()

    started = time.monotonic()
    run = project.run()

    assert run.code == 1, run.output
    assert time.monotonic() - started < 15
    assert "XTS_ACCESS_TOKEN_COMMAND did not finish within 3 s and was stopped" in run.stdout
    assert "waiting for the browser" in run.stdout
    assert token not in run.output + run.log
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists()
    assert project.sim.requests() == []


def test_a_token_command_printing_without_end_is_stopped_at_once(project: Project) -> None:
    """A command that pours out more than a session could be (a debug loop printing to
    standard output): stopped with its process group as soon as its output passes 64 KiB,
    not when its time is up (what it printed fills a file meanwhile): exit 1, nothing sent."""
    browser_account(project, XTS_DEADLINE="20")
    before = previous_token(project)
    project.sim.clear()
    body = "import sys, time\nsys.stdout.write('x' * 8_000_000)\nsys.stdout.flush()\ntime.sleep(60)"
    project.settings["XTS_ACCESS_TOKEN_COMMAND"] = token_command(project, body)

    started = time.monotonic()
    run = project.run()

    assert run.code == 1, run.output
    assert time.monotonic() - started < 10
    assert "XTS_ACCESS_TOKEN_COMMAND printed more than 64 KiB on standard output" in run.stdout
    assert project.sim.requests() == []
    assert project.token_file.read_bytes() == before


def test_a_token_command_leaves_no_process_behind(project: Project) -> None:
    """A command that signs in but leaves a child running (a headless browser it did not
    close, holding its standard output): the session is saved and the child is stopped with
    the command's process group."""
    browser_account(project)
    pid_file = project.folder / "child.pid"
    body = (
        "import subprocess\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n" + signing_in()
    )
    project.settings["XTS_ACCESS_TOKEN_COMMAND"] = token_command(project, body)

    run = project.run()

    assert run.code == 0, run.output
    assert token_json(project.token_file)["userID"] == TP_USER
    assert wait_for_end(int(pid_file.read_text()))


def wait_for_end(pid: int, seconds: float = 5.0) -> bool:
    """Whether process ``pid`` is gone (or a zombie awaiting its reaper) within ``seconds``."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


# -- the exchange -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "exchanges_sent", "code"),
    [
        (Fault.xts_error("e-server-0500", "Internal error", status=500), 1, 3),
        (Fault.html(502), 1, 3),
        (Fault.rate_limited(), 2, 0),
    ],
    ids=["500", "502-page", "rate-limit"],
)
def test_an_exchange_is_retried_only_where_the_access_token_cannot_be_spent(
    project: Project, fault: Fault, exchanges_sent: int, code: int
) -> None:
    """An access token is good for one exchange: after a failure XTS may have acted on (a
    5xx, a proxy's page), the exchange is not tried again (exit 3, sign in again); after XTS's
    rate limit (it did not look at the request) it is."""
    browser_account(project)
    project.settings["XTS_ACCESS_TOKEN_COMMAND"] = token_command(project, signing_in())
    project.sim.add_fault("interactive_exchange", fault)

    run = project.run()

    assert run.code == code, run.output
    assert len(exchanges(project)) == exchanges_sent
    if code:
        assert "is not tried again: what it carries is good for one use" in run.stdout
        assert not project.token_file.exists()


def test_an_access_token_echoed_by_a_refusing_xts_is_masked_everywhere(project: Project) -> None:
    """XTS's refusal of the exchange quotes the access token it was given: the token is
    masked in the console, the log, Telegram, the ping, the run record and status."""
    echoed = "at-FAKE-echoed-by-xts-0123456789abcdef"
    browser_account(project)
    project.with_telegram()
    with_healthcheck(project)
    project.settings["XTS_ACCESS_TOKEN_COMMAND"] = f"echo {echoed}"
    project.sim.add_fault(
        "interactive_exchange",
        Fault.xts_error("e-session-0001", f"Invalid accessToken: {echoed}", status=400),
    )

    run = project.run()
    status = project.run("status", "--json")

    assert run.code == 1, run.output
    assert "Invalid accessToken" in run.stdout
    record = [p.read_text("utf-8") for p in project.folder.rglob("*.run")]
    pings = [p.body.decode("utf-8", "replace") for p in project.sim.requests("healthcheck")]
    texts = (run.output, run.log, status.output, *telegram_texts(project), *pings, *record)
    assert telegram_texts(project) and pings and "Invalid accessToken" in record[0]
    for text in texts:
        assert echoed not in text


def test_a_refused_access_token_is_exit_1_and_not_retried(project: Project) -> None:
    """An access token XTS refuses (spent, expired): exit 1 with XTS's reason, one exchange."""
    browser_account(project)
    project.settings["XTS_ACCESS_TOKEN_COMMAND"] = "echo at-FAKE-never-issued-0123456789"

    run = project.run()

    assert run.code == 1, run.output
    assert "XTS refused the access token" in run.stdout
    assert len(exchanges(project)) == 1


# -- login --paste, SSH -------------------------------------------------------------------------


def test_login_paste_reads_the_address_the_browser_ended_on(project: Project) -> None:
    """`login --paste`: the whole address the browser ended on (a GET handover) is read from
    standard input and saved; nothing listens."""
    browser_account(project)
    argv = [PYTHON, str(SCRIPT), "login", "--paste", "--wait", "30s"]
    paster = subprocess.Popen(
        [*argv, "--env-file", str(project.write_env())],
        env={"PATH": CRON_PATH, "XTS_LOG_FILE": str(project.log_file)},
        cwd="/",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert paster.stdout is not None and paster.stdin is not None and paster.stderr is not None
    seen = []
    for line in paster.stdout:
        seen.append(line)
        if LINK_LINE in line:
            break
    address, _ = hand_over(seen[-1].split("default: ", 1)[1].strip(), get=True)
    paster.stdin.write(address + "\n")
    paster.stdin.close()
    # Read on through the same buffered reader (communicate() would skip what it holds).
    out = "".join(seen) + paster.stdout.read()
    err = paster.stderr.read()
    paster.wait(timeout=30)

    assert paster.returncode == 0, out + err
    assert "Paste the address the browser ended on" in out
    assert token_json(project.token_file)["userID"] == TP_USER


def test_login_paste_refuses_an_address_of_another_link(project: Project) -> None:
    """`login --paste` with the address a browser ended on after another link (its state is
    not this run's): exit 1, nothing exchanged, nothing saved."""
    browser_account(project)
    stale, _ = hand_over(
        f"{project.sim.url}/interactive/thirdparty?appKey={TP_KEY}"
        f"&returnURL={quote(project.settings['XTS_RETURN_URL'] + '?state=old-link', safe='')}",
        get=True,
    )
    argv = [PYTHON, str(SCRIPT), "login", "--paste", "--wait", "30s"]
    done = subprocess.run(
        [*argv, "--env-file", str(project.write_env())],
        env={"PATH": CRON_PATH, "XTS_LOG_FILE": str(project.log_file)},
        cwd="/",
        input=stale + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1, done.stdout + done.stderr
    assert "belongs to another sign-in" in done.stdout
    assert exchanges(project) == []
    assert not project.token_file.exists()


def test_a_listen_address_in_use_is_exit_2(project: Project) -> None:
    """`login` when another program holds the listen address: exit 2 naming it; nothing is
    sent to XTS."""
    import socket

    browser_account(project)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        project.settings["XTS_RETURN_URL"] = f"http://127.0.0.1:{port}/xts/callback"
        run = project.run("login", "--wait", "5s")

    assert run.code == 2, run.output
    assert f"127.0.0.1:{port}" in run.stdout
    assert project.sim.requests() == []


def ipv6_loopback_or_skip() -> None:
    """Skip (fail under CI) when this machine has no IPv6 loopback address."""
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        skip_or_fail("this machine has no IPv6 loopback (::1)")


def test_a_localhost_return_url_is_served_on_both_loopback_addresses(
    project: Project, live: list[LiveRun]
) -> None:
    """A return URL at the name `localhost`: a browser may resolve it to ::1 as readily as to
    127.0.0.1, so the run listens on both. Another program holding [::1]:PORT (a neighbour
    waiting for the session the page would send it) is exit 2 naming it, before any link is
    shown (and a ✗ line of check-config); else a request to [::1]:PORT reaches the run's own
    listener."""
    import socket

    ipv6_loopback_or_skip()
    browser_account(project)
    port = closed_port()
    project.settings["XTS_RETURN_URL"] = f"http://localhost:{port}/xts/callback"
    with socket.socket(socket.AF_INET6) as neighbour:
        neighbour.bind(("::1", port))
        neighbour.listen()
        held = project.run("login", "--wait", "5s")
        checked = project.run("check-config")

    live.append(LiveRun(project, "login", "--wait", "30s"))
    link = live[0].link()
    with requests.Session() as browser:
        browser.trust_env = False
        other_address = browser.get(f"http://[::1]:{port}/xts/callback?state=x", timeout=5)
    answer = sign_in(link)
    run = live[0].finish()

    assert held.code == 2, held.output
    assert f"[::1]:{port}" in held.stdout and LINK_LINE not in held.stdout
    assert checked.code == 2, checked.output
    assert f"✓ The refresher can listen on 127.0.0.1:{port}" in checked.stdout
    assert f"✗ The refresher cannot listen on [::1]:{port}" in checked.stdout
    assert other_address.headers.get("Server", "").startswith("xts-token-refresher")
    assert answer.status_code == 200 and run.code == 0, run.output


def test_over_ssh_the_tunnel_command_is_printed(project: Project) -> None:
    """Reached over SSH with a loopback return URL: the `ssh -L` line to run on the laptop."""
    return_url = browser_account(project)
    port = urlsplit(return_url).port

    run = project.run(
        "login", "--wait", "1s", env={"SSH_CONNECTION": "10.9.8.7 51000 10.1.2.3 2222",
                                      "USER": "trader"}
    )  # fmt: skip

    assert run.code == 1
    assert f"ssh -p 2222 -L {port}:127.0.0.1:{port} trader@10.1.2.3" in run.stdout


# -- status, check-config, settings ---------------------------------------------------------------


def test_status_says_how_a_browser_account_logs_in(project: Project) -> None:
    """status: `login: browser` and, with no usable token, the command that signs in;
    `"login": "browser"` in --json."""
    browser_account(project)

    run = project.run("status")
    document = json.loads(project.run("status", "--json").stdout)

    assert run.code == 1
    assert "    login: browser\n" in run.stdout
    assert "    to log in: xts_token_refresh.py login --account default\n" in run.stdout
    assert run.stdout.endswith(
        "✗ Not ready: interactive token missing. Run `xts_token_refresh.py login --account "
        "default` to log in again.\n"
    )
    assert [e["login"] for e in document["sessions"]] == ["browser"]


def test_check_config_checks_the_browser_login_without_signing_in(project: Project) -> None:
    """check-config: the login page answers, the return URL is valid, the listen address can
    be bound; nothing signs in."""
    browser_account(project)
    project.sim.clear()

    run = project.run("check-config")

    assert run.code == 0, run.output
    assert "✓ The broker's login page " in run.stdout
    assert "✓ The return URL http://127.0.0.1:" in run.stdout
    assert "✓ The refresher can listen on 127.0.0.1:" in run.stdout
    assert "✓ Ready: run `xts_token_refresh.py login --account default` to log in" in run.stdout
    assert not [r for r in project.sim.requests() if r.method == "POST"]


def test_check_config_refuses_a_busy_listen_address_and_a_missing_command(
    project: Project,
) -> None:
    """check-config: a listen address another program holds, and a token command that does not
    exist, are each a ✗ line and exit 2; the command is not run."""
    import socket

    browser_account(project)
    project.settings["XTS_ACCESS_TOKEN_COMMAND"] = "/nonexistent/sign-in --fast"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        project.settings["XTS_CALLBACK_LISTEN"] = f"127.0.0.1:{port}"
        run = project.run("check-config")

    assert run.code == 2, run.output
    assert (
        f"✗ The refresher cannot listen on 127.0.0.1:{port} (XTS_CALLBACK_LISTEN in "
        f"{project.env_file}): " in run.stdout
    )
    assert (
        f"✗ XTS_ACCESS_TOKEN_COMMAND in {project.env_file}: /nonexistent/sign-in does not exist"
        in run.stdout
    )


def test_check_config_names_the_file_to_fix_when_the_login_page_refuses_the_apps_link(
    project: Project,
) -> None:
    """check-config for a browser account whose app key the broker's page does not know: a ✗
    line naming the page, its answer and the account's file that holds the settings to check;
    exit 2, nobody signed in."""
    browser_account(project)
    project.settings["XTS_INTERACTIVE_API_KEY"] = "tp-FAKE-unknown-app-key"

    run = project.run("check-config")

    assert run.code == 2, run.output
    assert (
        f"✗ The broker's login page {project.sim.url}/interactive/thirdparty answered HTTP 400 "
        "to this app's link: check XTS_LOGIN_URL and XTS_INTERACTIVE_API_KEY (in "
        f"{project.env_file}) with your broker." in run.stdout
    ), run.output
    assert not [r for r in project.sim.requests() if r.method == "POST"]


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (
            {"XTS_LOGIN": "browser", **NO_INTERACTIVE_KEY,
             "XTS_MARKETDATA_API_KEY": "mk", "XTS_MARKETDATA_API_SECRET": "ms"},
            "XTS_LOGIN=browser needs XTS_INTERACTIVE_API_KEY and XTS_INTERACTIVE_API_SECRET",
        ),
        ({"XTS_LOGIN": "web"}, "XTS_LOGIN must be one of key, browser, not 'web'."),
        ({"XTS_LOGIN_WAIT": "soon"}, "XTS_LOGIN_WAIT must be a duration such as 30m"),
        ({"XTS_LOGIN_WAIT": "25h"}, "XTS_LOGIN_WAIT must be at most 24h"),
        ({"XTS_RETURN_URL": "ftp://host/cb"}, "XTS_RETURN_URL must be an http(s) URL"),
        (
            {"XTS_RETURN_URL": "http://127.0.0.1:0/xts/callback"},
            "XTS_RETURN_URL is not a valid URL (check the brackets and the port)",
        ),
        ({"XTS_RETURN_URL": "https://u:p@host/cb"}, "XTS_RETURN_URL must not hold a user"),
        ({"XTS_CALLBACK_LISTEN": "8765"}, "XTS_CALLBACK_LISTEN must be host:port"),
        (
            {"XTS_LOGIN": "browser", "XTS_HOSTLOOKUP_URL": "https://lookup.example/hostlookup"},
            "XTS_HOSTLOOKUP_URL cannot be used with XTS_LOGIN=browser",
        ),
        ({"XTS_CALLBACK_LISTEN": "[::1]:99999"}, "XTS_CALLBACK_LISTEN must be host:port"),
        (
            {"XTS_CALLBACK_LISTEN": "user@127.0.0.1:8765"},
            "XTS_CALLBACK_LISTEN must be host:port",
        ),
        ({"XTS_CALLBACK_LISTEN": "127.0.0.1:8765/x"}, "XTS_CALLBACK_LISTEN must be host:port"),
        ({"XTS_CALLBACK_LISTEN": "[127.0.0.1]:8765"}, "XTS_CALLBACK_LISTEN must be host:port"),
    ],
)  # fmt: skip
def test_browser_login_settings_are_checked_before_anything_is_sent(
    project: Project, settings: dict[str, str], problem: str
) -> None:
    """A browser login's settings are validated with the others: exit 2 before any traffic."""
    project.settings.update(settings)

    run = project.run()

    assert run.code == 2, run.output
    assert problem in run.output
    assert project.sim.requests() == []


# -- what a key refresh pays -----------------------------------------------------------------------


def test_a_key_refresh_imports_nothing_of_browser_login(project: Project) -> None:
    """A refresh with no browser account imports none of the browser login's modules."""
    project.write_env()
    done = run_process(
        [PYTHON, "-X", "importtime", str(SCRIPT), "--env-file", str(project.env_file)],
        env={"XTS_LOG_FILE": str(project.log_file)},
    )

    assert done.returncode == 0, done.stdout + done.stderr
    imported = done.stderr
    assert "xts_refresher.account_refresh" in imported  # the list is what it seems
    for module in BROWSER_MODULES:
        assert module not in imported, module


def test_sigterm_ends_the_wait_for_the_holder(project: Project, live: list[LiveRun]) -> None:
    """SIGTERM while a refresh waits for the holder: the wait ends at once, exit 143, nothing
    saved."""
    browser_account(project, XTS_LOGIN_WAIT="60s")
    live.append(LiveRun(project))
    live[0].link()

    os.kill(live[0].process.pid, signal.SIGTERM)
    started = time.monotonic()
    run = live[0].finish(timeout=20)

    assert run.code == 143, run.output
    assert time.monotonic() - started < 10
    assert not project.token_file.exists()


def test_sigterm_stops_the_token_command_at_once(project: Project, live: list[LiveRun]) -> None:
    """SIGTERM while the token command runs: it is stopped with its process group at once
    (not when its 120 s are up, with the run's service manager killing the run meanwhile and
    the command left behind): exit 143, nothing sent, nothing saved."""
    browser_account(project, XTS_DEADLINE="60")
    pid_file = project.folder / "child.pid"
    project.settings["XTS_ACCESS_TOKEN_COMMAND"] = f"sleep 60 & echo $! > {pid_file}; sleep 60"
    project.sim.clear()
    live.append(LiveRun(project))
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the token command did not start"
        time.sleep(0.05)

    os.kill(live[0].process.pid, signal.SIGTERM)
    started = time.monotonic()
    run = live[0].finish(timeout=90)

    assert run.code == 143, run.output
    assert time.monotonic() - started < 10
    assert wait_for_end(int(pid_file.read_text()))
    assert project.sim.requests() == []
    assert not project.token_file.exists()


def test_a_key_account_at_a_broker_whose_holder_must_sign_in_is_refused_exit_1(
    project: Project,
) -> None:
    """An account left at XTS_LOGIN=key whose broker gives the session only through its login
    page: the key login is refused once (not retried), exit 1 with the broker's own words; no
    exchange, nothing saved, the previous token intact."""
    project.sim.thirdparty.add_account(TP_KEY, TP_SECRET, TP_USER)
    project.settings.update(
        XTS_INTERACTIVE_API_KEY=TP_KEY, XTS_INTERACTIVE_API_SECRET=TP_SECRET, XTS_USER_ID=TP_USER
    )
    project.account_secrets += [TP_KEY, TP_SECRET]
    before = previous_token(project)
    project.sim.clear()

    run = project.run()

    assert run.code == 1, run.output
    assert CODE_KEY_LOGIN_REFUSED in run.stdout
    assert "the user must log in on the broker's login page" in run.stdout
    assert run.stdout.rstrip().splitlines()[-1].startswith("✗")
    assert [r.route for r in project.sim.requests()] == ["interactive_login"]
    assert project.token_file.read_bytes() == before
