"""The core: what must work on every supported Python (CI runs it on 3.9 and 3.13 too).

Self-contained (it needs only ``conftest.py``, the simulator, ``requests``, ``python-dotenv``,
pytest, pytest-timeout and pytest-xdist), so ``python -m pytest -m core tests/test_core.py`` runs
in a virtualenv made from any Python 3.9 or newer. Every test runs the real script (or the wrapper)
with the Python running pytest, cron-style, against the simulator over loopback.
"""

from __future__ import annotations

import json
import re
import shlex
import stat
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    APP_DIR,
    PYTHON,
    SCRIPT,
    USER_ID,
    WRAPPER,
    Project,
    Run,
    assert_no_secrets,
    run_process,
    token_json,
)

from xts_refresher.simulator import CODE_BAD_CREDENTIALS_INTERACTIVE

pytestmark = pytest.mark.core

WRONG_SECRET = "is-FAKE-c0reWrongSecret-Hn42"
SESSIONS = ("interactive", "marketdata")
PYTHON_VERSION = sys.version.split()[0]

# Run in a fresh interpreter that cannot import requests or python-dotenv at all (-I -S: no
# site-packages, no PYTHON* variables, no user site): load_token must need neither.
LOAD_TOKEN_PROBE = """
import importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
from xts_token_refresh import TokenUnavailableError, load_token
found = {}
for session in ("interactive", "marketdata"):
    stored = load_token(session=session)
    found[session] = {"token": stored.token, "user_id": stored.user_id,
                      "seconds_left": stored.seconds_left()}
explicit = load_token(sys.argv[2])
try:
    load_token(sys.argv[3])
    missing = None
except TokenUnavailableError as exc:
    missing = exc.state
print(json.dumps({
    "found": found,
    "explicit": explicit.token,
    "missing": missing,
    "importable": [m for m in ("requests", "dotenv") if importlib.util.find_spec(m)],
    "imported": sorted(m for m in ("requests", "dotenv", "urllib3") if m in sys.modules),
}))
"""


def last_line(text: str) -> str:
    """The last non-empty line of ``text``."""
    return [line for line in text.splitlines() if line.strip()][-1]


def refresh_both(project: Project) -> Run:
    """A successful refresh of both sessions."""
    run = project.with_marketdata().run()
    assert run.code == 0, run.output
    return run


def test_full_refresh_saves_both_sessions(project: Project) -> None:
    """One login per session; both token files hold the issued tokens, mode 0600, with the
    contract's fields; stdout has the contract's lines."""
    run = refresh_both(project)

    assert "XTS Token Refresh Cron Job Started" in run.stdout
    assert "✓ XTS token refreshed successfully!" in run.stdout
    assert f"✓ Token saved to: {project.token_file}" in run.stdout
    assert f"✓ Token saved to: {project.md_token_file}" in run.stdout
    assert "(exit code 0)" in last_line(run.stdout)
    assert project.sim.count("interactive_login") == 1
    assert project.sim.count("marketdata_login") == 1
    for session, path in zip(SESSIONS, (project.token_file, project.md_token_file)):
        data = token_json(path)
        assert data["token"] == project.sim.issued_tokens(session)[-1]
        assert data["userID"] == USER_ID
        assert data["session"] == session
        assert data["api_root"] == project.sim.url
        expires = datetime.fromisoformat(str(data["expires_at"]))
        assert expires > datetime.now(timezone.utc)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token_json(project.token_file)["clientCodes"] == [USER_ID]
    expiry = token_json(project.md_token_file)["application_expiry_date"]
    assert expiry == project.sim.application_expiry_date


def test_wrapper_runs_a_refresh_with_this_python(project: Project, tmp_path: Path) -> None:
    """``refresh_xts_token.sh`` with XTS_VENV naming this Python's virtualenv, in cron's bare
    environment: it reports this very Python, runs the refresh and exits 0."""
    env_file = project.write_env()

    done = run_process(
        [str(WRAPPER), "--env-file", str(env_file)],
        env={"HOME": str(tmp_path), "XTS_VENV": sys.prefix, "XTS_LOG_FILE": str(project.log_file)},
        timeout=60,
    )

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert f"✓ Virtual environment activated ({Path(sys.prefix).resolve()})" in done.stdout
    assert f"Python version: Python {PYTHON_VERSION}\n" in done.stdout
    assert "✓ Required packages found" in done.stdout
    assert f"✓ Token saved to: {project.token_file}" in done.stdout
    assert "✓ Token refresh completed successfully (exit code: 0)" in done.stdout
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]
    assert project.sim.count("interactive_login") == 1
    assert_no_secrets(project, output, project.log_file.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_status_verify_json(project: Project) -> None:
    """``status --verify --json`` after a refresh: stdout is one JSON document saying both
    sessions are fresh, usable and accepted by XTS; it asks XTS once per session, no login."""
    refresh_both(project)
    project.sim.clear()

    run = project.run("status", "--verify", "--json")

    assert run.code == 0, run.output
    document: dict[str, Any] = json.loads(run.stdout)
    assert document["ok"] is True
    assert document["verified"] is True
    checked_at = datetime.fromisoformat(document["checked_at"])
    assert abs((datetime.now(timezone.utc) - checked_at).total_seconds()) < 60
    entries = {entry["session"]: entry for entry in document["sessions"]}
    assert list(entries) == list(SESSIONS)
    for session, path in zip(SESSIONS, (project.token_file, project.md_token_file)):
        entry = entries[session]
        assert entry["state"] == "fresh", entry
        assert entry["usable"] is True
        assert entry["verified"] is True
        assert entry["path"] == str(path)
        assert entry["user_id"] == USER_ID
        assert entry["expires_at"] == token_json(path)["expires_at"]
        assert 0 < entry["seconds_left"] <= 86400
    routes = sorted(request.route for request in project.sim.requests())
    assert routes == ["interactive_balance", "marketdata_config"]


def test_load_token_needs_neither_requests_nor_dotenv(project: Project, tmp_path: Path) -> None:
    """``load_token`` in a fresh interpreter where requests and python-dotenv cannot even be
    imported: it finds both sessions' files (XTS_TOKEN_FILE, XTS_MARKETDATA_TOKEN_FILE), reads
    an explicit path, reports a missing file as ``missing``, and imports no HTTP stack."""
    refresh_both(project)
    env = {
        "XTS_TOKEN_FILE": str(project.token_file),
        "XTS_MARKETDATA_TOKEN_FILE": str(project.md_token_file),
    }
    probe = [PYTHON, "-I", "-S", "-c", LOAD_TOKEN_PROBE, str(APP_DIR)]
    argv = [*probe, str(project.token_file), str(tmp_path / "absent.json")]

    done = run_process(argv, env=env, timeout=30)

    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["importable"] == []  # the probe really had no site-packages
    assert report["imported"] == []
    assert report["missing"] == "missing"
    assert report["explicit"] == token_json(project.token_file)["token"]
    for session in SESSIONS:
        found = report["found"][session]
        assert found["token"] == project.sim.issued_tokens(session)[-1]
        assert found["user_id"] == USER_ID
        assert 0 < found["seconds_left"] <= 86400


def test_cron_print_converts_ist_to_utc() -> None:
    """``cron print --tz Asia/Kolkata`` on a UTC machine: 09:00 IST is 03:30 UTC, and the line
    runs this checkout's wrapper into its cron_output.log."""
    done = run_process(
        [PYTHON, str(SCRIPT), "cron", "print", "--tz", "Asia/Kolkata"],
        env={"TZ": "UTC", "HOME": "/"},
        timeout=30,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    wrapper = shlex.quote(str(WRAPPER))
    log = shlex.quote(str(APP_DIR / "cron_output.log"))
    marker = f"# xts-token-refresh:{APP_DIR}"
    assert done.stdout == f"30 3 * * * {wrapper} >> {log} 2>&1 {marker}\n"


def test_refused_login_keeps_the_previous_token(project: Project) -> None:
    """A wrong secret: XTS receives the login once and refuses it; exit 1 with a ✗ line that says
    what to check; the previous token file is intact byte for byte; the secret is never shown."""
    first = project.run()
    assert first.code == 0, first.output
    before = project.token_file.read_bytes()
    project.sim.clear()
    project.settings["XTS_INTERACTIVE_API_SECRET"] = WRONG_SECRET

    run = project.run()

    assert run.code == 1, run.output
    final = last_line(run.stdout)
    assert final.startswith("✗ Token refresh failed (exit code 1): "), final
    assert "XTS refused the interactive login" in final
    assert CODE_BAD_CREDENTIALS_INTERACTIVE in final
    assert re.search(r"api[ _]key", final, re.IGNORECASE), final  # says what to fix
    assert final.endswith("then run again."), final
    (login,) = project.sim.requests("interactive_login")
    assert login.json is not None and login.json["secretKey"] == WRONG_SECRET
    assert project.token_file.read_bytes() == before
    assert WRONG_SECRET not in run.output + run.log
