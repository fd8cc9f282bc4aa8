"""``status``: the read-only report of what the token files hold, and with ``--verify``
whether XTS accepts them.

Every test runs the real script cron-style against the simulator over real sockets. Status may
never log in, so each test also checks what the simulator received. (``check-config``, the
other pre-market check, has its own file.)
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import (
    INTERACTIVE_SECRET,
    USER_ID,
    Project,
    Run,
    assert_no_secrets,
    skip_or_fail,
    token_json,
)

from xts_refresher.simulator import Fault

TOP_KEYS = {"ok", "checked_at", "verified", "sessions", "accounts"}
ACCOUNT_KEYS = {"account", "ready", "last_run"}
LAST_RUN_KEYS = {"at", "exit_code", "reason"}
SESSION_KEYS = {
    "account",
    "session",
    "login",
    "state",
    "usable",
    "path",
    "user_id",
    "refreshed_at",
    "expires_at",
    "seconds_left",
    "time_left",
    "verified",
    "message",
}
LOGIN_ROUTES = ("interactive_login", "marketdata_login", "hostlookup")
KOLKATA = ZoneInfo("Asia/Kolkata")


# -- helpers ------------------------------------------------------------------------------------


def b64url(data: dict[str, Any]) -> str:
    """``data`` as JSON in unpadded base64url, as a JWT part."""
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def forge_jwt(user_id: str, exp: float) -> str:
    """A JWT shaped like XTS's, for ``user_id``, expiring at epoch ``exp`` (unsigned)."""
    claims = {"userID": f"{user_id}_ABCDEF0123", "iat": int(exp) - 86400, "exp": int(exp)}
    return ".".join((b64url({"alg": "HS256", "typ": "JWT"}), b64url(claims), "c2lnbmF0dXJl"))


def write_token_file(
    path: Path, *, user_id: str, exp: float, api_root: str, session: str = "interactive"
) -> str:
    """Write a token file in the contract's shape holding a forged token; the token."""
    token = forge_jwt(user_id, exp)
    now = datetime.now()
    data = {
        "token": token,
        "userID": user_id,
        "timestamp": now.isoformat(),
        "refreshed_at": f"{now:%Y-%m-%d %H:%M:%S}",
        "expires_at": datetime.fromtimestamp(exp, timezone.utc).astimezone().isoformat(),
        "session": session,
        "api_root": api_root,
    }
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return token


def status_json(project: Project, *args: str) -> tuple[Run, dict[str, Any]]:
    """Run ``status --json`` (plus ``args``); the run and its document, whose shape is checked."""
    run = project.run("status", "--json", *args)
    document = json.loads(run.stdout)  # stdout holds the JSON document and nothing else
    assert isinstance(document, dict)
    assert set(document) == TOP_KEYS
    assert isinstance(document["ok"], bool)
    assert isinstance(document["verified"], bool)
    checked_at = datetime.fromisoformat(document["checked_at"])
    assert checked_at.tzinfo is not None
    assert abs((datetime.now(timezone.utc) - checked_at).total_seconds()) < 60
    for entry in document["sessions"]:
        assert set(entry) == SESSION_KEYS, entry
        assert entry["account"] == "default"  # the single account of .env
    (account,) = document["accounts"]
    assert set(account) == ACCOUNT_KEYS
    assert account["account"] == "default"
    assert account["ready"] is document["ok"]
    if account["last_run"] is not None:
        assert set(account["last_run"]) == LAST_RUN_KEYS
        assert datetime.fromisoformat(account["last_run"]["at"]).tzinfo is not None
    assert run.code == (0 if document["ok"] else 1)
    return run, document


def by_session(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``sessions`` entries of a status document, by session name."""
    return {entry["session"]: entry for entry in document["sessions"]}


def logins(project: Project) -> int:
    """How many login (and host-lookup) requests the simulator received."""
    return sum(project.sim.count(route) for route in LOGIN_ROUTES)


# -- status -------------------------------------------------------------------------------------


def test_status_json_reports_fresh_tokens_without_logging_in(project: Project) -> None:
    """After a refresh, ``status --json`` reports both sessions fresh with the file's own values,
    in the documented shape, exits 0, and sends no request at all to XTS."""
    project.with_marketdata()
    assert project.run().code == 0
    files = {"interactive": project.token_file, "marketdata": project.md_token_file}
    before = {name: path.read_bytes() for name, path in files.items()}
    project.sim.clear()

    run, document = status_json(project)

    assert run.code == 0
    assert document["ok"] is True
    assert document["verified"] is False
    assert [entry["session"] for entry in document["sessions"]] == ["interactive", "marketdata"]
    for name, entry in by_session(document).items():
        stored = token_json(files[name])
        assert entry["state"] == "fresh"
        assert entry["usable"] is True
        assert entry["path"] == str(files[name])
        assert entry["user_id"] == USER_ID
        assert entry["refreshed_at"] == stored["refreshed_at"]
        assert entry["expires_at"] == stored["expires_at"]
        assert isinstance(entry["seconds_left"], int)
        assert 86400 - 120 < entry["seconds_left"] <= 86400
        assert re.fullmatch(r"23h \d\dm", entry["time_left"])
        assert entry["verified"] is None
        assert entry["message"] is None
    assert project.sim.requests() == []
    assert {name: path.read_bytes() for name, path in files.items()} == before


def test_status_text_names_state_user_and_time_left(project: Project) -> None:
    """Plain ``status`` prints, per session, a ✓, the state, the user, the expiry, the time left
    in human units and the file; it exits 0 and logs nothing in."""
    assert project.run().code == 0
    logins_before = logins(project)

    run = project.run("status")

    assert run.code == 0
    assert re.search(r"^✓ interactive\s+fresh\s+user CK68$", run.stdout, re.MULTILINE)
    assert re.search(r"\(23h \d\dm left\)", run.stdout)
    assert f"file {project.token_file}" in run.stdout
    expires = datetime.fromisoformat(str(token_json(project.token_file)["expires_at"]))
    assert f"expires at {expires.astimezone(KOLKATA):%Y-%m-%d %H:%M:%S} IST" in run.stdout
    assert "✗" not in run.stdout
    assert run.stdout.splitlines()[-1] == "✓ 1 account, 1 token usable."
    assert logins(project) == logins_before


def test_status_reports_a_token_inside_the_renewal_window_as_expiring_but_usable(
    project: Project,
) -> None:
    """A 90-minute token (inside the 2 h window) is ``expiring``: still usable, so exit 0."""
    project.sim.token_lifetime = 5400  # inside --if-needed's 2 h, past the 1 h of a wrong clock
    assert project.run().code == 0
    logins_before = logins(project)

    run, document = status_json(project)

    entry = by_session(document)["interactive"]
    assert run.code == 0
    assert document["ok"] is True
    assert entry["state"] == "expiring"
    assert entry["usable"] is True
    assert 5400 - 120 < entry["seconds_left"] <= 5400
    assert re.fullmatch(r"1h \d\dm", entry["time_left"])
    assert logins(project) == logins_before


def _expired(project: Project) -> None:
    write_token_file(
        project.token_file, user_id=USER_ID, exp=time.time() - 600, api_root=project.sim.url
    )


def _missing(project: Project) -> None:
    assert not project.token_file.exists()


def _corrupt(project: Project) -> None:
    project.token_file.write_bytes(b"\x00\xffnot json at all{")


def _wrong_user(project: Project) -> None:
    write_token_file(
        project.token_file, user_id="ZZ99", exp=time.time() + 86400, api_root=project.sim.url
    )


def _wrong_root(project: Project) -> None:
    write_token_file(
        project.token_file,
        user_id=USER_ID,
        exp=time.time() + 86400,
        api_root="https://other.example",
    )


@pytest.mark.parametrize(
    ("make", "state", "words"),
    [
        (_expired, "expired", "Expired 10m ago"),
        (_missing, "missing", "No token file at"),
        (_corrupt, "corrupt", "not valid JSON"),
        (_wrong_user, "wrong-user", "not XTS_USER_ID=CK68"),
        (_wrong_root, "wrong-root", "is for https://other.example, not XTS_API_ROOT="),
    ],
    ids=["expired", "missing", "corrupt", "wrong-user", "wrong-root"],
)
def test_status_reports_an_unusable_token_and_exits_1(
    project: Project, make: Callable[[Project], None], state: str, words: str
) -> None:
    """An expired, missing, corrupt or other user's token file is reported with its one-word
    state and a message, makes ``status`` exit 1, is left untouched, and causes no login."""
    make(project)
    before = project.token_file.read_bytes() if project.token_file.exists() else None

    run, document = status_json(project)

    entry = by_session(document)["interactive"]
    assert run.code == 1
    assert document["ok"] is False
    assert entry["state"] == state
    assert entry["usable"] is False
    assert words in entry["message"]
    text = project.run("status")
    assert text.code == 1
    assert re.search(rf"^✗ interactive\s+{re.escape(state)}\b", text.stdout, re.MULTILINE)
    last = text.stdout.splitlines()[-1]
    assert last.startswith("✗ Not ready: interactive token "), last
    assert last.endswith("Run `xts_token_refresh.py` to log in again.")
    after = project.token_file.read_bytes() if project.token_file.exists() else None
    assert after == before
    assert project.sim.requests() == []


def test_status_exits_1_when_only_one_of_two_sessions_is_usable(project: Project) -> None:
    """Exit 0 needs every configured session: a fresh interactive token with no market-data
    token is exit 1, and the interactive entry still says it is usable."""
    assert project.run().code == 0
    project.with_marketdata()

    run, document = status_json(project)

    sessions = by_session(document)
    assert run.code == 1
    assert sessions["interactive"]["state"] == "fresh"
    assert sessions["interactive"]["usable"] is True
    assert sessions["marketdata"]["state"] == "missing"
    assert sessions["marketdata"]["path"] == str(project.md_token_file)
    assert project.sim.count("marketdata_login") == 0


def test_status_verify_asks_xts_once_per_session_with_the_stored_token(project: Project) -> None:
    """``status --verify`` sends one balance request (Authorization = the stored interactive
    token, clientID = the user) and one market-data clientConfig request (Authorization = the
    stored market-data token), marks both verified, exits 0, and never logs in."""
    project.with_marketdata()
    assert project.run().code == 0
    project.sim.clear()

    run, document = status_json(project, "--verify")

    assert run.code == 0
    assert document["verified"] is True
    assert [r.route for r in project.sim.requests()] == ["interactive_balance", "marketdata_config"]
    (balance,) = project.sim.requests("interactive_balance")
    assert balance.headers["authorization"] == token_json(project.token_file)["token"]
    assert balance.query == {"clientID": USER_ID}
    assert balance.path == "/interactive/user/balance"
    (config,) = project.sim.requests("marketdata_config")
    assert config.headers["authorization"] == token_json(project.md_token_file)["token"]
    assert config.path == "/apimarketdata/config/clientConfig"
    for entry in document["sessions"]:
        assert entry["verified"] is True
        assert entry["usable"] is True
        assert entry["message"] is None  # "accepted" is said once, by verified


def test_status_verify_reports_a_token_xts_no_longer_accepts_as_rejected(
    project: Project,
) -> None:
    """A token that is unexpired locally but invalidated at XTS (a login elsewhere) is
    ``rejected`` under ``--verify``: not usable, exit 1, XTS's code in the message, file kept."""
    assert project.run().code == 0
    before = project.token_file.read_bytes()
    project.sim.invalidate_tokens()
    project.sim.clear()

    run, document = status_json(project, "--verify")

    entry = by_session(document)["interactive"]
    assert run.code == 1
    assert document["ok"] is False
    assert entry["state"] == "rejected"
    assert entry["usable"] is False
    assert entry["verified"] is False
    assert "e-session-0007" in entry["message"]
    assert "Invalid Token" in entry["message"]
    assert project.sim.count("interactive_balance") >= 1
    assert logins(project) == 0
    assert project.token_file.read_bytes() == before
    text = project.run("status", "--verify")
    assert text.code == 1
    assert "NOT accepted" in text.stdout
    assert re.search(r"^✗ interactive\s+rejected\b", text.stdout, re.MULTILINE)


def test_status_does_not_call_a_stored_token_new(project: Project) -> None:
    """A stored token that XTS rejects is reported as such, with what to do, and is never
    "the new token" (which is what a refresh's --verify checks)."""
    assert project.run().code == 0
    project.sim.invalidate_tokens()
    run = project.run("status", "--verify")
    assert run.code == 1
    assert "new token" not in run.output
    assert "Run `xts_token_refresh.py` to log in again." in run.stdout
    assert "NOT accepted" in run.stdout


@pytest.mark.parametrize("session", ["interactive", "marketdata"])
def test_status_verify_counts_an_e_token_answer_as_rejected(project: Project, session: str) -> None:
    """XTS answering a token check with ``e-token-0002`` ("Please Provide token to
    Authenticate": no "Invalid Token" in it) rejects the token: ``rejected``, exit 1, the code
    in the message, and nothing logs in."""
    project.with_marketdata()
    assert project.run().code == 0
    project.sim.clear()
    route = "interactive_balance" if session == "interactive" else "marketdata_config"
    project.sim.add_fault(
        route, Fault.xts_error("e-token-0002", "Please Provide token to Authenticate", 400)
    )

    run, document = status_json(project, "--verify")

    entry = by_session(document)[session]
    assert run.code == 1
    assert entry["state"] == "rejected"
    assert entry["verified"] is False
    assert "e-token-0002" in entry["message"]
    assert logins(project) == 0


def test_status_verify_counts_a_rate_limit_body_as_accepted(project: Project) -> None:
    """XTS's rate-limit answer (``e-apirl-0004`` in an HTTP 200 body) proves the token was
    recognised: verified, exit 0, after exactly one balance request."""
    assert project.run().code == 0
    project.sim.clear()
    project.sim.add_fault(
        "interactive_balance", Fault.xts_error("e-apirl-0004", "Rate Limit reached", status=200), 3
    )

    run, document = status_json(project, "--verify")

    entry = by_session(document)["interactive"]
    assert run.code == 0
    assert entry["verified"] is True
    assert entry["state"] == "fresh"
    assert "rate-limited" in entry["message"]
    assert project.sim.count("interactive_balance") == 1


def test_status_verify_counts_an_http_429_rate_limit_as_accepted(project: Project) -> None:
    """The rate-limit answer XTS also sends as HTTP 429 (``Fault.rate_limited()``) counts as
    accepted too: verified, exit 0, one balance request (no retry needed)."""
    assert project.run().code == 0
    project.sim.clear()
    project.sim.add_fault("interactive_balance", Fault.rate_limited(), 3)

    run, document = status_json(project, "--verify")

    entry = by_session(document)["interactive"]
    assert entry["verified"] is True
    assert run.code == 0
    assert project.sim.count("interactive_balance") == 1


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["5xx", "down", "time-out"])
def test_status_verify_when_xts_cannot_be_asked_says_not_checked_quickly(
    project: Project, fault: str
) -> None:
    """When XTS cannot be asked (proxy 503 pages, nothing listening, no answer), a token is
    "not checked": ``verified`` null, never ``rejected`` or "NOT accepted", a hint about the
    network, exit 1, the file untouched; and the answer comes quickly (one retry at most, short
    time-outs) although the settings allow a long retry ladder. The JSON stays pure on stdout."""
    assert project.run().code == 0
    before = project.token_file.read_bytes()
    project.settings.update(XTS_TIMEOUT="30", XTS_RETRIES="10", XTS_DEADLINE="300")
    project.settings["XTS_RETRY_BACKOFF"] = "5"
    project.sim.clear()
    if fault == "5xx":
        project.sim.add_fault("interactive_balance", Fault.html(503), 20)
    elif fault == "time-out":
        project.sim.add_fault("interactive_balance", Fault.hang(60), 20)
    else:
        project.sim.stop()

    started = time.monotonic()
    run, document = status_json(project, "--verify")
    elapsed = time.monotonic() - started

    entry = by_session(document)["interactive"]
    assert run.code == 1
    assert document["ok"] is False
    assert entry["verified"] is None
    assert entry["state"] == "fresh"
    assert entry["message"].startswith("Not checked: XTS could not be asked")
    assert "network" in entry["message"]
    assert "rejected" not in run.stdout.lower()
    assert elapsed < 20, f"status --verify took {elapsed:.1f} s"
    if fault != "down":
        assert 1 <= project.sim.count("interactive_balance") <= 2
    assert logins(project) == 0
    assert project.token_file.read_bytes() == before

    text = project.run("status", "--verify")
    assert text.code == 1
    assert "not checked" in text.stdout
    assert "NOT accepted" not in text.stdout
    assert "log in again" not in text.stdout
    assert "check the network" in text.stdout.splitlines()[-1].lower()
    assert project.token_file.read_bytes() == before


def test_status_verify_does_not_ask_about_unusable_tokens(project: Project) -> None:
    """``--verify`` only checks tokens worth checking: a missing file is reported as missing
    and no request is sent."""
    run, document = status_json(project, "--verify")

    entry = by_session(document)["interactive"]
    assert run.code == 1
    assert entry["state"] == "missing"
    assert entry["verified"] is None
    assert project.sim.requests() == []


# -- invalid settings -------------------------------------------------------------------------


def test_status_json_with_bad_settings_keeps_stdout_empty(project: Project) -> None:
    """``status --json`` with invalid settings: exit 2, the ✗ lines on stderr, stdout empty
    (a script parsing the JSON gets nothing rather than prose)."""
    project.settings["XTS_VERIFY_SSL"] = "maybe"
    run = project.run("status", "--json")
    assert run.code == 2
    assert run.stdout == ""
    assert "✗" in run.stderr
    assert "XTS_VERIFY_SSL" in run.stderr


def test_status_json_lists_an_account_with_invalid_settings_under_errors(
    project: Project,
) -> None:
    """With account files, an account whose own settings are invalid (bob: XTS_VERIFY_SSL
    "maybe") is listed under a top-level ``errors`` entry naming the account and the setting,
    ``ok`` is false and the exit code 2; alice is reported as usual, as ``account`` "alice"."""
    project.with_accounts("alice", "bob", bob={"XTS_VERIFY_SSL": "maybe"})
    assert project.run("--account", "alice").code == 0

    run = project.run("status", "--json")

    assert run.code == 2, run.output
    document = json.loads(run.stdout)
    assert document["ok"] is False
    (error,) = document["errors"]
    assert error["account"] == "bob"
    assert "XTS_VERIFY_SSL" in error["message"]
    (entry,) = document["sessions"]
    assert (entry["account"], entry["state"], entry["usable"]) == ("alice", "fresh", True)
    assert set(entry) == SESSION_KEYS
    assert project.sim.count("interactive_login") == 1


# -- the last refresh (the run record) ----------------------------------------------------------


def run_record(project: Project) -> Path:
    """Where a refresh records how it ended: ``<interactive token file>.run``."""
    return project.token_file.with_name(project.token_file.name + ".run")


def test_a_failed_refresh_makes_status_exit_1_naming_the_previous_token_until_a_good_one(
    project: Project,
) -> None:
    """A refresh XTS refuses (exit 1) leaves the previous, still unexpired token: ``status``
    and ``status --verify`` exit 1 anyway, say that the token shown is the previous one, show
    the failure's reason and end with one ✗ line naming the failure's time (in IST) and exit
    code. ``status`` neither logs in nor touches the record or the token file. The next good
    refresh clears it all: exit 0 and the ✓ line."""
    assert project.run().code == 0
    project.settings["XTS_INTERACTIVE_API_SECRET"] = "is-FAKE-wrong-secret-Mt33"
    failed = project.run()
    assert failed.code == 1, failed.output
    refusal = failed.stdout.splitlines()[-1]
    assert refusal.startswith("✗ Token refresh failed (exit code 1): ")
    token_before, record_before = project.token_file.read_bytes(), run_record(project).read_bytes()
    logins_before = logins(project)

    text = project.run("status")

    assert text.code == 1, text.output
    assert re.search(r"^✓ interactive\s+fresh\s+user CK68$", text.stdout, re.MULTILINE)
    assert re.search(
        r"^    This is the previous token: the last refresh failed "
        r"\(\d{4}-\d\d-\d\d \d\d:\d\d IST, exit code 1\) and did not renew it\.$",
        text.stdout,
        re.MULTILINE,
    ), text.stdout
    reason = refusal.removeprefix("✗ Token refresh failed (exit code 1): ")
    assert re.search(
        rf"^✗ last refresh failed: \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d IST, exit code 1: "
        rf"{re.escape(reason)}$",
        text.stdout,
        re.MULTILINE,
    ), text.stdout
    ended = datetime.now(KOLKATA)
    closing = text.stdout.splitlines()[-1]
    assert re.fullmatch(
        r"✗ Not ready: last refresh failed at \d\d:\d\d IST, exit code 1\. Fix what the lines "
        r"above say, then run `xts_token_refresh\.py`\.",
        closing,
    ), closing
    shown = datetime.strptime(closing.split(" at ")[1][:5], "%H:%M").time()
    assert abs(ended.hour * 60 + ended.minute - (shown.hour * 60 + shown.minute)) <= 1

    verify, document = status_json(project, "--verify")
    assert verify.code == 1
    assert document["ok"] is False
    entry = by_session(document)["interactive"]
    assert (entry["state"], entry["usable"], entry["verified"]) == ("fresh", True, True)
    assert entry["message"].startswith("This is the previous token: the last refresh failed")
    (account,) = document["accounts"]
    assert account["ready"] is False
    assert account["last_run"]["exit_code"] == 1
    assert account["last_run"]["reason"] == reason
    at = datetime.fromisoformat(account["last_run"]["at"])
    assert abs((datetime.now(timezone.utc) - at).total_seconds()) < 60
    assert project.run("status", "--verify").code == 1
    assert logins(project) == logins_before
    assert project.token_file.read_bytes() == token_before
    assert run_record(project).read_bytes() == record_before  # status never writes it

    project.settings["XTS_INTERACTIVE_API_SECRET"] = INTERACTIVE_SECRET
    assert project.run().code == 0
    cleared = project.run("status")
    assert cleared.code == 0, cleared.output
    assert "previous token" not in cleared.stdout
    assert re.search(
        r"^✓ last refresh: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d IST, exit code 0$",
        cleared.stdout,
        re.MULTILINE,
    )
    assert cleared.stdout.splitlines()[-1] == "✓ 1 account, 1 token usable."
    _, document = status_json(project, "--verify")
    assert document["accounts"][0]["last_run"]["exit_code"] == 0
    assert document["accounts"][0]["last_run"]["reason"] == ""


def test_a_token_a_failed_refresh_saved_is_not_called_the_previous_one(project: Project) -> None:
    """Interactive renewed, market data refused (exit 1): status exits 1 for the failed
    refresh, calls the market-data token the previous one, and not the interactive token the
    failed refresh saved itself."""
    project.with_marketdata()
    assert project.run().code == 0
    project.settings["XTS_MARKETDATA_API_SECRET"] = "ms-FAKE-wrong-secret-Qq21"
    assert project.run().code == 1

    run, document = status_json(project)

    assert run.code == 1
    sessions = by_session(document)
    assert sessions["interactive"]["message"] is None
    assert sessions["marketdata"]["message"].startswith("This is the previous token")
    assert document["accounts"][0]["last_run"]["exit_code"] == 1


def test_the_run_record_is_written_atomically_with_the_token_files_mode_and_no_secret(
    project: Project,
) -> None:
    """Under umask 000 the record is still mode 0600 (as the token files), no temporary file is
    left beside it, and it holds the time, the exit code, the duration and the reason on one
    line, with no secret or token and a server's control characters written out (``\\x1b``)."""
    assert project.run(preexec=lambda: os.umask(0)).code == 0
    project.sim.add_fault(
        "interactive_login",
        Fault.xts_error("e-user-0005", "Invalid credentials\n\x1b[2J\x1b[31mlocked\x07", 400),
    )

    failed = project.run(preexec=lambda: os.umask(0))

    assert failed.code == 1, failed.output
    record = run_record(project)
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert stat.S_IMODE(project.token_file.stat().st_mode) == 0o600
    assert sorted(p.name for p in project.folder.iterdir() if p.name.startswith(".")) == []
    text = record.read_text(encoding="utf-8")
    assert text.count("\n") == 1 and text.endswith("\n")
    data = json.loads(text)
    assert set(data) == {"ended_at", "exit_code", "duration", "reason"}
    assert data["exit_code"] == 1
    assert abs(data["ended_at"] - time.time()) < 60
    assert 0 <= data["duration"] < 60
    assert "e-user-0005" in data["reason"]
    assert "\\x1b[2J\\x1b[31mlocked\\x07" in data["reason"]
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in data["reason"])
    assert_no_secrets(project, text)
    assert str(token_json(project.token_file)["token"]) not in text

    shown = project.run("status")
    assert shown.code == 1
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert "\\x1b[2J\\x1b[31mlocked\\x07" in shown.stdout


@pytest.mark.parametrize(
    "content",
    [
        None,
        b"\x00\xffnot json at all{",
        b"[1, 2, 3]",
        b'{"ended_at": 1, "exit_code": "1", "duration": 0, "reason": ""}',
        b'{"ended_at": NaN, "exit_code": 1, "duration": 0, "reason": ""}',
        b'{"ended_at": 1e300, "exit_code": 1, "duration": 0, "reason": ""}',
        b'{"ended_at": 1700000000, "exit_code": 1, "duration": -5, "reason": ""}',
        b'{"ended_at": 1700000000, "exit_code": 1, "duration": 0, "reason": 7}',
        b"[" * 100_000,
    ],
    ids=[
        "missing",
        "garbage",
        "list",
        "code-text",
        "nan",
        "far-future",
        "negative",
        "reason",
        "deep",
    ],
)
def test_a_missing_or_corrupt_run_record_is_no_run_recorded(
    project: Project, content: bytes | None
) -> None:
    """A record that is missing or makes no sense is "no run recorded": status reports the
    tokens as usual (exit 0), says so on the account's line, gives ``last_run`` null, and
    neither fails nor rewrites the record."""
    assert project.run().code == 0
    record = run_record(project)
    if content is None:
        record.unlink()
    else:
        record.write_bytes(content)

    run, document = status_json(project)

    assert run.code == 0, run.output
    assert document["accounts"][0]["last_run"] is None
    text = project.run("status")
    assert text.code == 0, text.output
    assert "- last refresh: none recorded" in text.stdout.splitlines()
    assert text.stdout.splitlines()[-1] == "✓ 1 account, 1 token usable."
    assert "Unexpected error" not in text.output + text.log
    assert (record.read_bytes() if record.exists() else None) == content


def test_the_run_record_is_kept_beside_the_token_file_with_metrics_or_without(
    project: Project,
) -> None:
    """Without XTS_METRICS_FILE a refresh writes its run record all the same: the folder holds
    the token, its lock, the record ``<token file>.run`` and the log, and no metrics file."""
    assert "XTS_METRICS_FILE" not in project.settings

    assert project.run().code == 0

    names = {path.name for path in project.folder.iterdir()} - {project.env_file.name}
    assert names == {
        "xts_store_token.json",
        "xts_store_token.json.lock",
        "xts_store_token.json.run",
        "xts_token_refresh.log",
    }
    assert json.loads(run_record(project).read_text(encoding="utf-8"))["exit_code"] == 0


def test_a_run_record_that_cannot_be_written_is_a_warning(project: Project) -> None:
    """The run record's place is taken by a folder: the refresh still saves its token and
    exits 0, and the one ⚠ line speaks of the run record, not of a token (whose saving went
    fine)."""
    record = run_record(project)
    record.mkdir()

    run = project.run()

    assert run.code == 0, run.output
    assert token_json(project.token_file)["token"]
    warnings = [line for line in run.stdout.splitlines() if line.startswith("⚠")]
    assert warnings == [
        f"⚠ The run record was not written: Cannot save the run record to {record}: it is a "
        "folder; the previous record is kept."
    ], run.stdout
    assert record.is_dir()


def test_a_refresh_refused_for_an_unsafe_path_is_a_failed_last_refresh(project: Project) -> None:
    """A refresh refused before any login (its log aimed at the settings file: exit 2) renews
    nothing: ``status`` exits 1 while yesterday's token is still valid, giving exit code 2 and
    the refusal's reason; the settings file is untouched."""
    assert project.run().code == 0
    settings_before = project.write_env().read_bytes()
    refused = project.run("--log-file", str(project.env_file))
    assert refused.code == 2, refused.output
    assert project.env_file.read_bytes() == settings_before

    run, document = status_json(project)

    assert run.code == 1
    last_run = document["accounts"][0]["last_run"]
    assert last_run["exit_code"] == 2
    assert str(project.env_file) in last_run["reason"]
    text = project.run("status")
    assert re.fullmatch(
        r"✗ Not ready: last refresh failed at \d\d:\d\d IST, exit code 2\. Fix what the lines "
        r"above say, then run `xts_token_refresh\.py`\.",
        text.stdout.splitlines()[-1],
    )


def test_the_run_record_has_the_token_files_group_and_mode(project: Project) -> None:
    """With XTS_TOKEN_GROUP (here ``nogroup``) the token file is 0640 and the group's, and so
    is the run record beside it (a bot of the group running ``status`` reads both)."""
    import grp

    if os.geteuid() != 0:
        skip_or_fail("giving files to a group this user is not in needs root")
    try:
        gid = grp.getgrnam("nogroup").gr_gid
    except KeyError:
        skip_or_fail("the group nogroup is missing")
        raise
    project.settings["XTS_TOKEN_GROUP"] = "nogroup"

    assert project.run(preexec=lambda: os.umask(0)).code == 0

    for path in (project.token_file, run_record(project)):
        info = path.stat()
        assert (info.st_gid, stat.S_IMODE(info.st_mode)) == (gid, 0o640), path
