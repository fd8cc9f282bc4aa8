"""Operating the refresher: ``--if-needed``, ``--verify``, the app-key warning, Telegram, host
lookup and ``demo``.

Each test runs the real script as cron would (bare environment, from ``/``) against the bundled
simulator over real sockets, then checks the exit code, what was printed and logged, what the
simulator received, and the token files. Status, check-config, pings and hooks have their own
files (test_status.py, test_hooks.py).
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import (
    APP_DIR,
    INTERACTIVE_KEY,
    INTERACTIVE_SECRET,
    PYTHON,
    SCRIPT,
    USER_ID,
    Project,
    assert_no_secrets,
    copy_program,
    run_process,
    token_json,
)

from xts_refresher.simulator import (
    DEMO_INTERACTIVE_SECRET,
    DEMO_MARKETDATA_SECRET,
    Fault,
    XtsSimulator,
)

CONTRACT_LINES = (
    "XTS Token Refresh Cron Job Started",
    "Starting XTS token refresh process...",
    "✓ XTS token refreshed successfully!",
    "✓ Token saved to: ",
)
JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
CACHE_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


# -- helpers ------------------------------------------------------------------------------------


def edit_token_file(path: Path, **changes: object) -> None:
    """Change fields of a token file in place (keeping its mode)."""
    data = token_json(path)
    data.update(changes)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def newest_token(project: Project, session: str = "interactive") -> str:
    """The last token the simulator issued for ``session``."""
    return project.sim.issued_tokens(session)[-1]


def xts_routes(project: Project) -> list[str]:
    """The routes of the XTS requests the simulator received (no Telegram, no pings), in order."""
    skip = ("telegram", "healthcheck")
    return [r.route for r in project.sim.requests() if r.route not in skip]


def telegram_texts(project: Project) -> list[str]:
    """The texts of the Telegram messages sent so far; each is checked for secrets."""
    texts = []
    for request in project.sim.requests("telegram"):
        assert_no_secrets(project, request.body.decode("utf-8"))
        texts.append(str(request.json["text"]))
    return texts


def child_today() -> date:
    """Today's date as the script sees it (same bare environment, so the same time zone)."""
    done = run_process([PYTHON, "-c", "import datetime; print(datetime.date.today())"])
    return date.fromisoformat(done.stdout.strip())


def tree(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` (caches and virtualenv aside) with its size."""
    files: dict[str, int] = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in CACHE_DIRS]
        for name in names:
            path = Path(root, name)
            files[str(path.relative_to(folder))] = path.lstat().st_size
    return files


# -- refresh --if-needed ------------------------------------------------------------------------


def test_if_needed_keeps_fresh_tokens_without_logging_in_or_notifying(project: Project) -> None:
    """With fresh tokens for the configured user and root, ``--if-needed`` sends no login,
    leaves both files byte-identical, exits 0 and sends no Telegram message."""
    project.with_marketdata().with_telegram()
    assert project.run().code == 0
    assert len(telegram_texts(project)) == 1
    files = (project.token_file, project.md_token_file)
    before = [path.read_bytes() for path in files]
    project.sim.clear()

    run = project.run("--if-needed")

    assert run.code == 0
    assert project.sim.requests() == []
    assert [path.read_bytes() for path in files] == before
    assert run.stdout.count("no login needed") == 2
    assert "✓ Every configured session holds a fresh token" in run.stdout
    assert "still valid until" in run.log


def _missing(project: Project) -> None:
    pass


def _expiring(project: Project) -> None:
    project.sim.token_lifetime = 5400  # inside --if-needed's 2 h, past the 1 h of a wrong clock
    assert project.run().code == 0
    project.sim.token_lifetime = 86400


def _other_user(project: Project) -> None:
    assert project.run().code == 0
    edit_token_file(project.token_file, userID="ZZ99")


def _other_root(project: Project) -> None:
    assert project.run().code == 0
    edit_token_file(project.token_file, api_root="https://ttblaze.iifl.com")


def _corrupt(project: Project) -> None:
    project.token_file.write_text('{"token": ', encoding="utf-8")


@pytest.mark.parametrize(
    ("prepare", "reason"),
    [
        (_missing, "the stored token is missing"),
        (_expiring, "the stored token expires in 1h 29m"),
        (_other_user, "the stored token is for user ZZ99"),
        (_other_root, "the stored token is for https://ttblaze.iifl.com"),
        (_corrupt, "the stored token is corrupt"),
    ],
    ids=["missing", "expiring", "other-user", "other-root", "corrupt"],
)
def test_if_needed_logs_in_when_the_stored_token_will_not_do(
    project: Project, prepare: Callable[[Project], None], reason: str
) -> None:
    """``--if-needed`` logs in exactly once, says why, and saves the new token when the stored
    one is missing, expires within the 2 h window, is for another user or another root, or is
    unreadable."""
    prepare(project)
    logins_before = project.sim.count("interactive_login")

    run = project.run("--if-needed")

    assert run.code == 0, run.output
    assert project.sim.count("interactive_login") == logins_before + 1
    assert f"Logging in to the interactive session: {reason}" in run.stdout
    stored = token_json(project.token_file)
    assert stored["token"] == newest_token(project)
    assert stored["userID"] == USER_ID
    assert stored["api_root"] == project.sim.url


def test_renew_before_sets_the_window(project: Project) -> None:
    """``--renew-before`` moves the window: a 24 h token is kept under ``23h`` but renewed
    under ``30h``, and the default command accepts the options without naming ``refresh``."""
    assert project.run().code == 0
    first = project.token_file.read_bytes()

    kept = project.run("--if-needed", "--renew-before", "23h")

    assert kept.code == 0
    assert project.sim.count("interactive_login") == 1
    assert project.token_file.read_bytes() == first

    renewed = project.run("refresh", "--if-needed", "--renew-before", "30h")

    assert renewed.code == 0
    assert project.sim.count("interactive_login") == 2
    assert token_json(project.token_file)["token"] == newest_token(project)
    assert "the stored token expires in 23h" in renewed.stdout


@pytest.mark.parametrize(("minutes", "renewed"), [(100, True), (140, False)])
def test_the_default_renewal_window_is_2_hours(
    project: Project, minutes: int, renewed: bool
) -> None:
    """Without ``--renew-before`` the window is 2 h (``--help``, README): ``--if-needed``
    renews a token with 100 minutes left and keeps one with 140; ``status`` calls the first
    ``expiring`` and the second ``fresh``."""
    project.sim.token_lifetime = minutes * 60
    assert project.run().code == 0
    before = project.token_file.read_bytes()

    status = project.run("status", "--json")
    run = project.run("--if-needed")

    assert run.code == 0, run.output
    state = json.loads(status.stdout)["sessions"][0]["state"]
    assert state == ("expiring" if renewed else "fresh")
    assert project.sim.count("interactive_login") == (2 if renewed else 1)
    assert (project.token_file.read_bytes() != before) is renewed


@pytest.mark.parametrize("value", ["2 hours", "abc", "h", ""])
def test_a_bad_renew_before_is_a_usage_error(project: Project, value: str) -> None:
    """An unreadable ``--renew-before`` is exit 2 with a message naming the option, before any
    request is sent; a previous token file stays byte-identical."""
    assert project.run().code == 0
    before = project.token_file.read_bytes()
    project.sim.clear()

    run = project.run("--if-needed", "--renew-before", value)

    assert run.code == 2
    assert "--renew-before" in run.stderr
    assert project.sim.requests() == []
    assert project.token_file.read_bytes() == before


@pytest.mark.parametrize("args", [["--renew-before", "3h"], ["refresh", "--renew-before", "3h"]])
def test_renew_before_without_if_needed_is_a_usage_error(project: Project, args: list[str]) -> None:
    """``--renew-before`` only sets the window of ``--if-needed``: without it the run would log
    in anyway, so it is exit 2 in argparse's words, saying to add ``--if-needed``, before any
    request; the previous token file stays byte-identical."""
    assert project.run().code == 0
    before = project.token_file.read_bytes()
    project.sim.clear()

    run = project.run(*args)

    assert run.code == 2, run.output
    assert "error: argument --renew-before: applies only with --if-needed" in run.stderr
    assert "add --if-needed" in run.stderr
    assert run.stderr.startswith("usage: ")
    assert project.sim.requests() == []
    assert project.token_file.read_bytes() == before


# -- refresh --verify ---------------------------------------------------------------------------


def test_verify_checks_each_new_token_after_the_logins(project: Project) -> None:
    """``refresh --verify`` logs in to both sessions, then checks the saved tokens in that
    order: a balance request with the new interactive token (clientID = the user), then a
    clientConfig request with the new market-data token; exit 0."""
    project.with_marketdata()

    run = project.run("refresh", "--verify")

    assert run.code == 0, run.output
    assert xts_routes(project) == [
        "interactive_login",
        "marketdata_login",
        "interactive_balance",
        "marketdata_config",
    ]
    (balance,) = project.sim.requests("interactive_balance")
    assert balance.headers["authorization"] == token_json(project.token_file)["token"]
    assert balance.headers["authorization"] == newest_token(project)
    assert balance.query == {"clientID": USER_ID}
    (config,) = project.sim.requests("marketdata_config")
    assert config.headers["authorization"] == newest_token(project, "marketdata")
    assert "✓ The new XTS token works: accepted." in run.stdout
    assert "✓ The new XTS market-data token works: accepted." in run.stdout


def test_verify_exits_3_and_notifies_when_xts_rejects_the_new_token(project: Project) -> None:
    """A new token that XTS answers "Invalid Token" (HTTP 400, e-session-0007) is exit 3 with a
    ✗ line and one Telegram failure message; the token file is still saved (the login did
    happen, and the old token died with it)."""
    project.with_telegram()
    invalid = Fault.xts_error("e-session-0007", "Invalid Token", status=400)
    project.sim.add_fault("interactive_balance", invalid, times=3)

    run = project.run("refresh", "--verify")

    assert run.code == 3
    assert "e-session-0007" in run.stdout
    assert run.stdout.rstrip().splitlines()[-1].startswith("✗")
    assert "XTS rejected the interactive token" in run.log
    assert token_json(project.token_file)["token"] == newest_token(project)
    assert project.sim.count("interactive_login") == 1
    assert project.sim.count("interactive_balance") >= 1
    (text,) = telegram_texts(project)
    assert "FAILED" in text
    assert "exit code 3" in text
    assert "Invalid Token" in text


@pytest.mark.parametrize("status", [400, 200])
def test_if_needed_verify_renews_a_token_xts_answers_e_token(project: Project, status: int) -> None:
    """A stored token whose check XTS answers ``e-token-0002`` ("Please Provide token to
    Authenticate", with HTTP 400 or 200; no "Invalid Token" in the words) counts as rejected:
    ``--if-needed --verify`` logs in again and saves the new token, exit 0."""
    assert project.run().code == 0
    old = token_json(project.token_file)["token"]
    project.sim.clear()
    project.sim.add_fault(
        "interactive_balance",
        Fault.xts_error("e-token-0002", "Please Provide token to Authenticate", status=status),
    )

    run = project.run("refresh", "--if-needed", "--verify")

    assert run.code == 0, run.output
    checked_then_renewed = ["interactive_balance", "interactive_login", "interactive_balance"]
    assert xts_routes(project) == checked_then_renewed
    assert "e-token-0002" in run.stdout
    saved = token_json(project.token_file)["token"]
    assert saved == newest_token(project)
    assert saved != old


# -- the app key's own expiry -------------------------------------------------------------------


@pytest.mark.parametrize(("days", "warned"), [(5, True), (14, True), (15, False), (400, False)])
def test_app_key_expiry_within_14_days_is_warned_everywhere(
    project: Project, days: int, warned: bool
) -> None:
    """A market-data ``application_expiry_date`` within 14 days is a warning on stdout, in the
    log (WARNING level) and in the Telegram message; further away there is none. The date is
    stored as XTS sent it, and the run still exits 0."""
    project.with_marketdata().with_telegram()
    expiry = child_today() + timedelta(days=days)
    project.sim.application_expiry_date = f"{expiry:%d-%m-%Y}"

    run = project.run()

    assert run.code == 0
    assert token_json(project.md_token_file)["application_expiry_date"] == f"{expiry:%d-%m-%Y}"
    warning = f"The market-data app key expires in {days} day(s) ({expiry:%d-%m-%Y})"
    (text,) = telegram_texts(project)
    if warned:
        assert f"⚠ {warning}" in run.stdout
        assert re.search(rf"WARNING\s+⚠ {re.escape(warning)}", run.log)
        assert warning in text
    else:
        assert "app key expires" not in run.stdout + run.log + text


# -- Telegram -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "expected"), [("all", 1), ("failure", 0)])
def test_telegram_on_success_follows_telegram_notify(
    project: Project, mode: str, expected: int
) -> None:
    """A successful refresh sends one message (user, expiry, no secret or token) with
    ``TELEGRAM_NOTIFY=all`` and none with ``failure``."""
    project.with_marketdata().with_telegram(mode)

    run = project.run()

    assert run.code == 0
    texts = telegram_texts(project)
    assert len(texts) == expected
    for request in project.sim.requests("telegram"):
        assert request.json["chat_id"] == "4242"
    if texts:
        assert texts[0].startswith("✅ XTS token refreshed")
        assert f"interactive: user {USER_ID}, expires " in texts[0]
        assert f"market-data: user {USER_ID}, expires " in texts[0]
        assert not JWT_SHAPE.search(texts[0])


def test_telegram_notify_off_sends_nothing_whatever_the_outcome(project: Project) -> None:
    """``TELEGRAM_NOTIFY=off`` with a bot token and chat set: no request reaches the Bot API
    after a success, after a refused login (exit 1, the token kept) or from check-config
    (which says nothing of Telegram); the exit codes are the runs' own."""
    project.with_telegram(notify="off")
    first = project.run()
    assert first.code == 0, first.output
    previous = token_json(project.token_file)["token"]
    project.sim.add_fault("interactive_login", Fault.xts_error("e-user-0005", "Invalid."))
    refused = project.run()
    check = project.run("check-config")

    bot_api = [r.path for r in project.sim.requests() if r.path.startswith("/bot")]
    assert bot_api == [], "TELEGRAM_NOTIFY=off must keep every run off the Bot API"
    assert refused.code == 1, refused.output
    assert token_json(project.token_file)["token"] == previous
    assert check.code == 0, check.output
    assert "Telegram" not in check.stdout


def test_telegram_notify_failure_still_sends_a_success_that_warns(project: Project) -> None:
    """``TELEGRAM_NOTIFY=failure`` means failures and warnings: a successful refresh whose
    market-data app key expires in 3 days sends one message, holding the warning."""
    project.with_marketdata().with_telegram("failure")
    expiry = child_today() + timedelta(days=3)
    project.sim.application_expiry_date = f"{expiry:%d-%m-%Y}"

    run = project.run()

    assert run.code == 0, run.output
    (text,) = telegram_texts(project)
    assert "The market-data app key expires in 3 day(s)" in text


def test_telegram_messages_name_the_host_without_a_label(project: Project) -> None:
    """Without XTS_NOTIFY_LABEL, a message names the machine by its host name."""
    project.with_telegram("all")

    assert project.run().code == 0

    (text,) = telegram_texts(project)
    assert text.startswith(f"✅ XTS token refreshed on {socket.gethostname()}")


@pytest.mark.parametrize("mode", ["all", "failure"])
def test_telegram_reports_a_refused_login_once(project: Project, mode: str) -> None:
    """A refused login is exit 1 and one Telegram message under either mode, quoting XTS's code
    and description (never the secret); the previous token file stays byte-identical."""
    assert project.run().code == 0
    before = project.token_file.read_bytes()
    project.with_telegram(mode)
    refusal = Fault.xts_error("e-user-0005", "Invalid credentials. Please check your App Key.")
    project.sim.add_fault("interactive_login", refusal)

    run = project.run()

    assert run.code == 1
    assert "e-user-0005" in run.stdout
    assert project.sim.count("interactive_login") == 2
    assert project.token_file.read_bytes() == before
    (text,) = telegram_texts(project)
    assert "FAILED" in text
    assert "exit code 1" in text
    assert "e-user-0005" in text
    assert INTERACTIVE_SECRET not in text


# -- host lookup --------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["standard", "pascal"])
def test_hostlookup_comes_first_then_the_login_at_the_connection_string(
    project: Project, style: str
) -> None:
    """With XTS_HOSTLOOKUP_URL, one host lookup (the public access password) precedes the
    login, which goes to ``<connectionString>/user/session`` with the returned uniqueKey; the
    token file records the connection string as ``api_root``, and ``--verify`` checks the token
    there. Both key spellings (and a boolean ``type``) are understood."""
    project.sim.hostlookup_style = style
    project.settings["XTS_HOSTLOOKUP_URL"] = f"{project.sim.url}/hostlookup"

    run = project.run("refresh", "--verify")

    assert run.code == 0, run.output
    assert xts_routes(project) == ["hostlookup", "interactive_login", "interactive_balance"]
    (lookup,) = project.sim.requests("hostlookup")
    assert lookup.json == {"accesspassword": "2021HostLookUpAccess", "version": "interactive_1.0.1"}
    (login,) = project.sim.requests("interactive_login")
    assert login.path == "/interactive/user/session"
    assert login.json["uniqueKey"] == project.sim.last_unique_key
    assert login.json["appKey"] == INTERACTIVE_KEY
    connection = f"{project.sim.url}/interactive"
    assert token_json(project.token_file)["api_root"] == connection
    (balance,) = project.sim.requests("interactive_balance")
    assert balance.path == "/interactive/user/balance"


def test_hostlookup_tokens_are_kept_by_if_needed(project: Project) -> None:
    """A token saved through a host lookup (``api_root`` = the connection string) is not taken
    for "another root" by ``--if-needed``: no lookup and no login the second time."""
    project.settings["XTS_HOSTLOOKUP_URL"] = f"{project.sim.url}/hostlookup"
    assert project.run().code == 0
    project.sim.clear()

    run = project.run("--if-needed")

    assert run.code == 0
    assert project.sim.requests() == []


def test_a_failing_hostlookup_is_exit_3_with_no_login(project: Project) -> None:
    """A host lookup answering proxy 503 pages on every try is exit 3 after the retries, no
    login is attempted, and the previous token file stays byte-identical."""
    assert project.run().code == 0
    before = project.token_file.read_bytes()
    project.settings["XTS_HOSTLOOKUP_URL"] = f"{project.sim.url}/hostlookup"
    project.sim.clear()
    project.sim.add_fault("hostlookup", Fault.html(503), times=3)

    run = project.run()

    assert run.code == 3
    assert xts_routes(project) == ["hostlookup"] * 3
    assert "host lookup failed" in run.stdout
    assert run.stdout.rstrip().splitlines()[-1].startswith("✗")
    assert project.token_file.read_bytes() == before


@pytest.mark.parametrize(
    "connection",
    [
        "http://xtsuser:cs-FAKE-pass@{elsewhere}/interactive",
        "http://xts-cluster.invalid:3000/interactive",
        "ftp://{elsewhere}/interactive",
    ],
    ids=["user-and-password", "plain-http-to-another-host", "not-http"],
)
def test_a_hostlookup_handing_out_an_unsafe_connection_string_gets_no_login(
    project: Project, connection: str
) -> None:
    """A host lookup whose connection string carries a user and password, or is plain http to
    a host that is not this machine, or is not http(s) at all: exit 3 before any login, naming
    XTS_HOSTLOOKUP_URL; the host it named receives nothing, the secret is sent nowhere, the
    password is never shown, and the previous token file is kept."""
    assert project.run().code == 0
    before = project.token_file.read_bytes()
    project.settings["XTS_HOSTLOOKUP_URL"] = f"{project.sim.url}/hostlookup"
    project.sim.clear()
    with XtsSimulator() as elsewhere:
        project.sim.hostlookup_connection = connection.format(
            elsewhere=elsewhere.url.split("://", 1)[1]
        )

        run = project.run()

        assert elsewhere.requests() == []
    assert run.code == 3, run.output
    assert xts_routes(project) == ["hostlookup"]  # refused at once: no retry, no login
    last = run.stdout.rstrip().splitlines()[-1]
    assert last.startswith("✗")
    assert "connection string" in last
    assert "no login was sent" in last
    assert "XTS_HOSTLOOKUP_URL" in last
    for text in (run.output, run.log):
        assert INTERACTIVE_SECRET not in text
        assert "cs-FAKE-pass" not in text
        assert "xtsuser" not in text
    assert project.token_file.read_bytes() == before


# -- demo ---------------------------------------------------------------------------------------


def test_demo_runs_in_a_bare_environment_and_leaves_nothing_behind() -> None:
    """``demo`` under ``env -i PATH=/usr/bin:/bin`` from ``/`` exits 0, prints the contract's
    lines, shows no demo secret or whole token, and leaves no file in the program's folder
    (its temporary folder is gone too)."""
    before = tree(APP_DIR)

    done = run_process([PYTHON, str(SCRIPT), "demo"], timeout=60)

    assert done.returncode == 0, done.stdout + done.stderr
    for line in CONTRACT_LINES:
        assert line in done.stdout
    assert "✓ Demo complete" in done.stdout
    assert "✓ interactive  fresh" in done.stdout
    saved = re.search(r"✓ Token saved to: (\S+)", done.stdout)
    assert saved is not None
    assert Path(saved.group(1)).is_absolute()
    assert not Path(saved.group(1)).parent.exists()
    output = done.stdout + done.stderr
    for secret in (DEMO_INTERACTIVE_SECRET, DEMO_MARKETDATA_SECRET):
        assert secret not in output
    assert not JWT_SHAPE.search(output)
    # Names only: other test runs on this machine may append to files here meanwhile.
    assert set(tree(APP_DIR)) == set(before)


def test_demo_never_reads_a_env_file_and_ignores_proxies(tmp_path: Path) -> None:
    """A copy of the program with a broken ``.env`` beside it (which any normal command would
    refuse) still runs ``demo`` to exit 0, even with an HTTP proxy set that cannot be reached:
    the demo uses neither, and the copy's folder is left as it was."""
    app = copy_program(tmp_path / "app")
    (app / ".env").write_text("XTS_VERIFY_SSL=maybe\nXTS_API_ROOT=not-a-url\n", encoding="utf-8")
    before = tree(app)
    proxy = {"http_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}

    done = run_process([PYTHON, str(app / SCRIPT.name), "demo"], env=proxy, timeout=60)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓ XTS token refreshed successfully!" in done.stdout
    assert tree(app) == before
    broken = run_process([PYTHON, str(app / SCRIPT.name), "check-config"], timeout=60)
    assert broken.returncode == 2


def test_telegram_messages_name_the_machine_by_its_label(project: Project) -> None:
    """XTS_NOTIFY_LABEL names the machine in every message (default: the host name), so an
    alert in a group of many VPSes says where it comes from."""
    project.with_telegram("all").settings["XTS_NOTIFY_LABEL"] = "vps-mumbai-2"
    assert project.run().code == 0
    project.settings["XTS_INTERACTIVE_API_SECRET"] = "is-FAKE-wrong-secret-Lb11"
    assert project.run().code == 1

    success, failure = telegram_texts(project)
    assert success.startswith("✅ XTS token refreshed on vps-mumbai-2")
    assert failure.startswith("❌ XTS token refresh FAILED on vps-mumbai-2 (exit code 1)")
    assert "Fix XTS_INTERACTIVE_API_KEY" in failure  # what failed, then what to do
