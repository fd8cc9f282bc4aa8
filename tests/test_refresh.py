"""The ``refresh`` command end to end: the real script against the simulator over real sockets."""

from __future__ import annotations

import base64
import json
import os
import re
import resource
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from conftest import (
    APP_DIR,
    INTERACTIVE_KEY,
    INTERACTIVE_SECRET,
    MARKETDATA_KEY,
    MARKETDATA_SECRET,
    PYTHON,
    SCRIPT,
    USER_ID,
    Project,
    assert_no_secrets,
    child_today,
    closed_port,
    copy_program,
    run_process,
    skip_or_fail,
    telegram_texts,
    token_json,
)

from xts_refresher.simulator import CODE_BAD_CREDENTIALS_INTERACTIVE, Fault, XtsSimulator

KOLKATA = ZoneInfo("Asia/Kolkata")


def shown_in_ist(iso_time: str) -> str:
    """An ISO 8601 time as the program shows it to people (XTS_DISPLAY_TZ's default)."""
    return f"{datetime.fromisoformat(iso_time).astimezone(KOLKATA):%Y-%m-%d %H:%M:%S} IST"


STDOUT_LINES = (
    "=" * 62,
    "XTS Token Refresh Cron Job Started",
    "Starting XTS token refresh process...",
    "✓ XTS token refreshed successfully!",
)
# A log file line: its time, its level (padded to 7) and the console's line.
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ([A-Z ]{7}) (.*)")


def jwt_payload(token: str) -> dict[str, object]:
    """The unverified claims of a JWT."""
    part = token.split(".")[1]
    data = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    assert isinstance(data, dict)
    return data


def refreshed(project: Project) -> bytes:
    """Make a first successful refresh and return the token file's bytes."""
    run = project.run()
    assert run.code == 0, run.output
    project.sim.clear()
    return project.token_file.read_bytes()


def last_line(run_output: str) -> str:
    """The last non-empty line printed."""
    return [line for line in run_output.splitlines() if line.strip()][-1]


# -- success ------------------------------------------------------------------------------------


def test_refresh_writes_the_contract_token_file(project: Project) -> None:
    """One JSON login; the contract's stdout lines; the contract's token file, mode 0600."""
    run = project.run()
    assert run.code == 0, run.output
    for line in STDOUT_LINES:
        assert line in run.stdout
    assert re.search(r"^Execution Time: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d IST$", run.stdout, re.M)
    assert f"✓ Token saved to: {project.token_file}" in run.stdout
    logins = project.sim.requests("interactive_login")
    assert len(logins) == 1
    assert logins[0].headers["content-type"] == "application/json"
    assert logins[0].json == {
        "appKey": INTERACTIVE_KEY,
        "secretKey": INTERACTIVE_SECRET,
        "source": "WEBAPI",
    }
    data = token_json(project.token_file)
    token = str(data["token"])
    assert token == project.sim.issued_tokens("interactive")[0]
    assert list(data)[:7] == [
        "token",
        "userID",
        "timestamp",
        "refreshed_at",
        "expires_at",
        "session",
        "api_root",
    ]
    assert data["userID"] == USER_ID
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", str(data["timestamp"]))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", str(data["refreshed_at"]))
    assert str(data["timestamp"]).replace("T", " ").startswith(str(data["refreshed_at"]))
    exp = jwt_payload(token)["exp"]
    assert isinstance(exp, int)
    expires = datetime.fromisoformat(str(data["expires_at"]))
    assert expires.utcoffset() is not None
    assert expires == datetime.fromtimestamp(exp, timezone.utc)
    assert data["session"] == "interactive"
    assert data["api_root"] == project.sim.url
    assert data["isInvestorClient"] is True
    assert data["clientCodes"] == [USER_ID]
    assert stat.S_IMODE(project.token_file.stat().st_mode) == 0o600
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO .*refreshed", run.log, re.M)
    assert token[:6] + "…" in run.stdout  # only a masked prefix is ever shown


def test_a_refresh_prints_the_documented_lines_in_order_and_logs_the_same(
    project: Project,
) -> None:
    """stdout is exactly README's "What a run prints", line for line (the seed's banner,
    "Starting XTS token refresh process...", "✓ XTS token refreshed successfully!", "✓ Token
    saved to: <absolute path>", the user/masked token/expiry line, the closing ✓ line); the log
    file holds the same lines, each after a timestamp and a level."""
    run = project.run()

    assert run.code == 0, run.output
    token = str(token_json(project.token_file)["token"])
    expires = shown_in_ist(str(token_json(project.token_file)["expires_at"]))
    expected = [
        "=" * 62,
        "XTS Token Refresh Cron Job Started",
        r"Execution Time: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d IST",
        "=" * 62,
        re.escape("Starting XTS token refresh process..."),
        re.escape("✓ XTS token refreshed successfully!"),
        re.escape(f"✓ Token saved to: {project.token_file}"),
        re.escape(f"  user {USER_ID}, token {token[:6]}…, expires {expires}"),
        re.escape("✓ Every configured session holds a fresh token (exit code 0)."),
    ]
    lines = run.stdout.splitlines()
    assert len(lines) == len(expected), run.stdout
    for line, pattern in zip(lines, expected):
        assert re.fullmatch(pattern, line), (line, pattern)
    logged = [LOG_LINE.fullmatch(line) for line in run.log.splitlines()]
    assert all(logged), run.log
    assert [found.group(2) for found in logged if found] == lines
    assert {found.group(1) for found in logged if found} == {"INFO   "}


def test_git_ignores_every_file_that_holds_a_secret_or_a_token() -> None:
    """docs/operations.md, Security: ``.gitignore`` covers the settings files (``.env``, and each
    account's ``accounts/NAME.env``), the token files (an account's too), their locks, run
    records and temporary files, and the logs."""
    written = [
        ".env",
        "accounts/alice.env",
        "accounts/alice/xts_store_token.json",
        "accounts/alice/xts_marketdata_token.json",
        "xts_store_token.json",
        "xts_marketdata_token.json",
        "xts_store_token.json.lock",
        "xts_store_token.json.run",
        ".xts_store_token.json.4242.1.tmp",
        "xts_token_refresh.log",
        "cron_output.log",
        "cron_output.log.1",
    ]
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", "--verbose", "--non-matching", *written],
        cwd=APP_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 128:
        skip_or_fail(f"not a git checkout: {done.stderr.strip()}")
    not_ignored = [
        line.split("\t")[-1] for line in done.stdout.splitlines() if line.startswith("::")
    ]
    assert not_ignored == [], f"git would offer to commit {not_ignored}"


def test_token_file_is_0600_even_under_umask_000(project: Project) -> None:
    """The token file is owner-only from the moment it exists, whatever the umask."""
    run = project.run(preexec=lambda: os.umask(0))
    assert run.code == 0, run.output
    assert stat.S_IMODE(project.token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(project.log_file.stat().st_mode) == 0o600


def test_marketdata_session_is_saved_with_its_own_fields(project: Project) -> None:
    """With market-data keys set, both sessions log in and the market-data file carries its date."""
    run = project.with_marketdata().run()
    assert run.code == 0, run.output
    assert run.stdout.count("✓ Token saved to: ") == 2
    (login,) = project.sim.requests("marketdata_login")
    assert login.path == "/apimarketdata/auth/login"
    data = token_json(project.md_token_file)
    assert data["session"] == "marketdata"
    assert data["application_expiry_date"] == project.sim.application_expiry_date
    assert "clientCodes" not in data
    assert stat.S_IMODE(project.md_token_file.stat().st_mode) == 0o600


def test_root_prefix_trailing_slash_and_binary_marketdata_path(project: Project) -> None:
    """A root's path prefix is kept, its trailing slash tolerated; XTS_MARKETDATA_PATH is used."""
    project.sim.api_prefix = "/xts"
    project.with_marketdata().settings.update(
        XTS_API_ROOT=project.sim.url + "/xts/", XTS_MARKETDATA_PATH="/apibinarymarketdata"
    )
    run = project.run()
    assert run.code == 0, run.output
    assert project.sim.requests("interactive_login")[0].path == "/xts/interactive/user/session"
    assert project.sim.requests("marketdata_login")[0].path == "/xts/apibinarymarketdata/auth/login"
    assert token_json(project.token_file)["api_root"] == project.sim.url + "/xts"


def test_a_typo_in_the_marketdata_path_is_a_404_not_a_login(project: Project) -> None:
    """The simulator serves only the paths a broker serves: a misspelt XTS_MARKETDATA_PATH gets
    XTS's "Route not found" (HTTP 404), which is exit 3 with a hint about the path (not about
    the key and secret), not retried; the interactive session is still refreshed."""
    project.with_marketdata().settings["XTS_MARKETDATA_PATH"] = "/apimarketdat"
    run = project.run()
    assert run.code == 3, run.output
    assert project.sim.count("marketdata_login") == 0
    (sent,) = project.sim.requests("unknown")
    assert sent.path == "/apimarketdat/auth/login"
    assert "e-route-0404" in run.stdout
    last = last_line(run.stdout)
    assert "XTS_MARKETDATA_PATH" in last
    assert "/apibinarymarketdata" in last
    assert "XTS_MARKETDATA_API_SECRET" not in last
    assert project.sim.count("interactive_login") == 1
    assert not project.md_token_file.exists()


def test_a_binary_feed_broker_asked_at_the_json_feed_path_says_which_path(
    tmp_path: Path,
) -> None:
    """A binary-feed broker (it serves /apibinarymarketdata only) with XTS_MARKETDATA_PATH left
    at /apimarketdata: exit 3, the ✗ line names XTS_MARKETDATA_PATH and /apibinarymarketdata;
    set right, the same broker logs in."""
    with XtsSimulator(marketdata_path="/apibinarymarketdata") as broker:
        broker.add_account(INTERACTIVE_KEY, INTERACTIVE_SECRET, USER_ID)
        broker.add_account(MARKETDATA_KEY, MARKETDATA_SECRET, USER_ID, "marketdata")
        project = Project(broker, tmp_path).with_marketdata()

        run = project.run()

        assert run.code == 3, run.output
        assert broker.count("marketdata_login") == 0
        assert [r.path for r in broker.requests("unknown")] == ["/apimarketdata/auth/login"]
        last = last_line(run.stdout)
        assert "XTS_MARKETDATA_PATH" in last
        assert "/apibinarymarketdata" in last
        assert not project.md_token_file.exists()
        project.settings["XTS_MARKETDATA_PATH"] = "/apibinarymarketdata"
        assert project.run().code == 0
        assert token_json(project.md_token_file)["session"] == "marketdata"


@pytest.mark.slow
def test_flag_beats_environment_beats_env_file(project: Project, tmp_path: Path) -> None:
    """Precedence is --token-file > process environment > .env."""
    from_env_file = tmp_path / "from-env-file.json"
    from_environment = tmp_path / "from-environment.json"
    from_flag = tmp_path / "from-flag.json"
    project.settings["XTS_TOKEN_FILE"] = str(from_env_file)
    assert project.run().code == 0
    assert from_env_file.exists()
    assert project.run(env={"XTS_TOKEN_FILE": str(from_environment)}).code == 0
    assert from_environment.exists()
    run = project.run("--token-file", str(from_flag), env={"XTS_TOKEN_FILE": str(from_environment)})
    assert run.code == 0
    assert f"✓ Token saved to: {from_flag}" in run.stdout


def test_relative_paths_start_at_the_script_folder(project: Project) -> None:
    """A relative XTS_TOKEN_FILE resolves against the script's folder, not the cwd (/)."""
    relative = os.path.relpath(project.folder / "relative.json", APP_DIR)
    project.settings["XTS_TOKEN_FILE"] = relative
    run = project.run()
    assert run.code == 0, run.output
    assert (project.folder / "relative.json").exists()


def test_env_file_with_bom_crlf_export_and_quotes(project: Project) -> None:
    """A .env saved by a Windows editor, with export prefixes and quotes, still works."""
    lines = [f'export {k}="{v}"' for k, v in project.settings.items()]
    raw = "\ufeff" + "\r\n".join(lines) + "\r\n"
    env_file = project.folder / "windows.env"
    env_file.write_bytes(raw.encode("utf-8"))
    env_file.chmod(0o600)
    run = project.run("--env-file", str(env_file), use_env_file=False)
    assert run.code == 0, run.output
    assert project.sim.requests("interactive_login")[0].json["secretKey"] == INTERACTIVE_SECRET


def test_env_file_readable_by_others_is_warned_about(project: Project) -> None:
    """Every run warns while .env can be read by group or others."""
    env_file = project.write_env()
    env_file.chmod(0o644)
    run = project.run("--env-file", str(env_file), use_env_file=False)
    assert run.code == 0
    assert f"chmod 600 {env_file}" in run.stdout


def test_options_without_a_command_mean_refresh(project: Project) -> None:
    """`xts_token_refresh.py --if-needed` is `refresh --if-needed`."""
    assert project.run().code == 0
    run = project.run("--if-needed")
    assert run.code == 0, run.output
    assert project.sim.count("interactive_login") == 1
    assert "no login needed" in run.stdout


# -- refusals (exit 1) and settings (exit 2) ----------------------------------------------------


def test_refused_credentials_exit_1_without_retry(project: Project) -> None:
    """A refused login: exit 1, XTS's code and description, no retry, the old file kept."""
    before = refreshed(project)
    project.settings["XTS_INTERACTIVE_API_SECRET"] = "is-FAKE-wrong-secret-Zt55"
    run = project.run()
    assert run.code == 1
    assert CODE_BAD_CREDENTIALS_INTERACTIVE in run.stdout
    assert "Invalid credentials" in run.stdout
    assert last_line(run.stdout).startswith("✗")
    assert "Fix XTS_INTERACTIVE_API_KEY and XTS_INTERACTIVE_API_SECRET" in last_line(run.stdout)
    assert last_line(run.stdout).lower().count("check your") <= 1  # XTS's words, once
    assert "is-FAKE-wrong-secret-Zt55" not in run.output + run.log
    assert project.sim.count("interactive_login") == 1
    assert project.token_file.read_bytes() == before


@pytest.mark.parametrize("answered", ["CK68_EVIL", "CK68_", "CK6"])
def test_an_interactive_login_for_a_suffixed_or_other_user_is_refused(
    project: Project, answered: str
) -> None:
    """The interactive login's userID must be XTS_USER_ID itself (any case): the ``_suffix``
    that market-data userIDs carry does not make ``CK68_EVIL`` CK68. Exit 1, nothing saved."""
    before = refreshed(project)
    project.sim.interactive_user_override = answered

    run = project.run()

    assert run.code == 1, run.output
    assert f"answered for user {answered}," in run.stdout
    assert project.token_file.read_bytes() == before


def test_user_ids_match_in_any_case_and_market_data_may_carry_a_suffix(project: Project) -> None:
    """An interactive userID differing only in case from XTS_USER_ID, and a market-data
    userID ``CK68_<suffix>``, are the configured user: both saved, exit 0."""
    project.with_marketdata()
    project.sim.interactive_user_override = USER_ID.lower()
    project.sim.marketdata_user_override = f"{USER_ID}_BEBAFFDB51B1A9A1B1D140"

    run = project.run()

    assert run.code == 0, run.output
    assert token_json(project.token_file)["userID"] == USER_ID.lower()
    assert token_json(project.md_token_file)["userID"] == f"{USER_ID}_BEBAFFDB51B1A9A1B1D140"
    assert project.run("status").code == 0


def test_login_for_another_user_is_refused_and_not_saved(project: Project) -> None:
    """With XTS_USER_ID set, an answer for another user is exit 1 and nothing is saved."""
    before = refreshed(project)
    project.sim.interactive_user_override = "ZZ99"
    run = project.run()
    assert run.code == 1
    assert "ZZ99" in run.stdout
    assert f"XTS_USER_ID={USER_ID}" in run.stdout
    assert project.token_file.read_bytes() == before


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"XTS_API_ROOT": ""}, "XTS_API_ROOT"),
        ({"XTS_API_ROOT": "ttblaze.iifl.com"}, "XTS_API_ROOT"),
        ({"XTS_API_ROOT": "https://ttblaze.iifl.com/?user=CK68"}, "XTS_API_ROOT"),
        ({"XTS_API_ROOT": "https://ttblaze.iifl.com/#interactive"}, "XTS_API_ROOT"),
        ({"XTS_API_ROOT": "https://ttblaze.iifl.com?"}, "XTS_API_ROOT"),
        ({"XTS_VERIFY_SSL": "maybe"}, "XTS_VERIFY_SSL"),
        ({"XTS_TIMEOUT": "thirty"}, "XTS_TIMEOUT"),
        ({"XTS_RETRIES": "-1"}, "XTS_RETRIES"),
        ({"XTS_DEADLINE": "0"}, "XTS_DEADLINE"),
        ({"XTS_INTERACTIVE_API_SECRET": ""}, "XTS_INTERACTIVE_API_SECRET"),
        ({"XTS_INTERACTIVE_API_KEY": "your_interactive_api_key"}, "XTS_INTERACTIVE_API_KEY"),
        ({"TELEGRAM_TOKEN": "987654321:AAFakeBotTokenZZtestonly_x9y8w7v6u5t4"}, "TELEGRAM_CHAT_ID"),
        ({"TELEGRAM_NOTIFY": "sometimes"}, "TELEGRAM_NOTIFY"),
        ({"XTS_CA_BUNDLE": "/nonexistent/ca.pem"}, "XTS_CA_BUNDLE"),
    ],
)
def test_bad_settings_exit_2_before_any_traffic(
    project: Project, change: dict[str, str], named: str
) -> None:
    """A missing or malformed setting is exit 2 naming the variable; nothing is sent to XTS."""
    project.settings.update(change)
    run = project.run()
    assert run.code == 2, run.output
    assert named in run.stdout
    assert last_line(run.stdout).startswith("✗ Fix them")
    assert project.sim.requests() == []
    assert not project.token_file.exists()
    assert named in run.log  # a cron run's configuration error reaches its log too


def env_file_with_a_bad_line(project: Project, bad_line: str, *, last: bool) -> Path:
    """The project's settings in a file of their own, opened by a comment and a blank line,
    ``XTS_INTERACTIVE_API_SECRET``'s line replaced by ``bad_line`` (moved to the end when
    ``last``; otherwise line 5, followed by a quoted value); its path."""
    lines = ["# my broker", ""]
    for name, value in project.settings.items():
        if name == "XTS_INTERACTIVE_API_SECRET":
            lines.append(bad_line if not last else f"# {name} is set below")
            lines.append(f'XTS_USER_ID="{USER_ID}"')
        elif name != "XTS_USER_ID":
            lines.append(f"{name}={value}")
    if last:
        lines.append(bad_line)
    path = project.folder / "broken.env"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("quote", ['"', "'"])
@pytest.mark.parametrize("last", [False, True], ids=["a-later-quote-closes-it", "never-closed"])
def test_an_unterminated_quote_in_the_env_file_is_exit_2_naming_its_line(
    project: Project, quote: str, last: bool
) -> None:
    """``XTS_INTERACTIVE_API_SECRET="abc`` (the quote never closed on its line; a later line's
    quote would otherwise close it, swallowing the lines between): exit 2 with one message
    naming the file and the line, said once and never showing the value; nothing is sent and
    the token file is kept."""
    before = refreshed(project)
    env_file = env_file_with_a_bad_line(
        project, f"XTS_INTERACTIVE_API_SECRET={quote}{INTERACTIVE_SECRET}", last=last
    )
    line = len(env_file.read_text(encoding="utf-8").splitlines()) if last else 5

    run = project.run("--env-file", str(env_file), use_env_file=False)

    assert run.code == 2, run.output
    expected = (
        f"✗ The settings file {env_file} cannot be read: line {line}: the value of "
        f"XTS_INTERACTIVE_API_SECRET opens a quote ({quote}) that its line does not close."
    )
    assert last_line(run.stdout).startswith(expected + " Close each quote on its line"), run.output
    assert run.output.count(f"line {line}") == 1, run.output
    assert "python-dotenv" not in run.output
    assert expected.removeprefix("✗ ") in run.log
    assert project.sim.requests() == []
    assert project.token_file.read_bytes() == before


def test_a_line_that_is_not_a_setting_is_exit_2_naming_its_line(project: Project) -> None:
    """A line python-dotenv cannot read (``NAME value``, no ``=``) is exit 2 naming the file and
    the line, not a warning after which the setting is silently missing; the value (here the
    secret) is never shown."""
    env_file = env_file_with_a_bad_line(
        project, f"XTS_INTERACTIVE_API_SECRET {INTERACTIVE_SECRET} # pasted", last=False
    )

    run = project.run("check-config", "--env-file", str(env_file), use_env_file=False)

    assert run.code == 2, run.output
    assert last_line(run.stdout).startswith(
        f"✗ The settings file {env_file} cannot be read: line 5 is not NAME=value. Write "
    ), run.output
    assert "python-dotenv" not in run.output
    assert project.sim.requests() == []


def test_missing_env_file_flag_exit_2(project: Project) -> None:
    """--env-file naming a missing file is exit 2 with the path."""
    run = project.run("--env-file", "/nonexistent/xts.env", use_env_file=False)
    assert run.code == 2
    assert "/nonexistent/xts.env" in run.stdout
    assert project.sim.requests() == []


def test_usage_errors_exit_2_and_version_exit_0(project: Project) -> None:
    """An unknown command or option is exit 2; --version and --help are exit 0."""
    assert project.run("frobnicate").code == 2
    assert project.run("--no-such-option").code == 2
    version = project.run("--version", use_env_file=False)
    assert version.code == 0
    assert "1.0.0" in version.stdout
    assert project.run("--help", use_env_file=False).code == 0


def test_a_python_without_the_packages_continues_in_the_venv_beside_the_script(
    project: Project, tmp_path: Path
) -> None:
    """Started by a Python that lacks requests (``-S``: no site-packages), a copy of the
    script with a ``.venv`` beside it continues in that virtualenv and refreshes; without the
    ``.venv`` it says what is missing and how to set it up (exit 2, nothing sent)."""
    # The cron wrapper beside the script is the one that knows where virtualenvs are.
    copy = copy_program(tmp_path / "refresher", SCRIPT.name, "refresh_xts_token.sh")
    argv = [PYTHON, "-S", str(copy / SCRIPT.name), "--env-file", str(project.write_env())]

    without = run_process(argv)
    (copy / ".venv").symlink_to(Path(sys.prefix).resolve())
    within = run_process(argv)

    assert without.returncode == 2, without.stdout + without.stderr
    assert "✗ Required packages are missing (requests, dotenv)" in without.stdout
    assert "--setup" in without.stdout
    assert within.returncode == 0, within.stdout + within.stderr
    assert "✓ XTS token refreshed successfully!" in within.stdout
    assert project.sim.count("interactive_login") == 1


def test_strict_booleans_accept_any_case_and_warn_when_off(project: Project) -> None:
    """XTS_VERIFY_SSL=False (any case) is valid: verification is off and said so loudly."""
    project.settings["XTS_VERIFY_SSL"] = "False"
    run = project.run()
    assert run.code == 0, run.output
    assert "TLS certificate checks are OFF" in run.stdout


# -- XTS unreachable or failing (exit 3) --------------------------------------------------------

TRANSIENT_FAULTS: dict[str, Callable[[], Fault]] = {
    "html-503": lambda: Fault.html(503),
    "html-502": lambda: Fault.html(502),
    "xts-500": lambda: Fault.json({"type": "error", "code": "e-x", "description": "x"}, 500),
    "rate-limit-429": Fault.rate_limited,
    "rate-limit-code-200": lambda: Fault.json(
        {"type": "error", "code": "e-apirl-0004", "description": "Rate Limit reached"}
    ),
    "empty-body": lambda: Fault.raw(b""),
    "truncated-json": lambda: Fault.raw(b'{"type": "success", "result": {"tok'),
    "json-list": lambda: Fault.raw(b"[1, 2, 3]"),
    "success-without-token": lambda: Fault.json({"type": "success", "result": {"userID": "CK68"}}),
    "connection-reset": Fault.connection_reset,
}


@pytest.mark.parametrize("fault", sorted(TRANSIENT_FAULTS))
def test_transient_failures_are_retried_then_exit_3(project: Project, fault: str) -> None:
    """Each transient failure is retried XTS_RETRIES times, then exit 3; the old file is kept."""
    before = refreshed(project)
    project.sim.add_fault("interactive_login", TRANSIENT_FAULTS[fault](), times=10)
    run = project.run()
    assert run.code == 3, run.output
    assert project.sim.count("interactive_login") == 3  # 1 + XTS_RETRIES=2
    assert run.stdout.count("retrying in") == 2
    assert last_line(run.stdout).startswith("✗ Token refresh failed (exit code 3)")
    assert "Traceback" not in run.output
    assert project.token_file.read_bytes() == before


def test_a_transient_failure_then_success_is_exit_0(project: Project) -> None:
    """Two proxy errors, then a good answer: the run succeeds on the third attempt."""
    project.sim.add_fault("interactive_login", Fault.html(502), times=2)
    run = project.run()
    assert run.code == 0, run.output
    assert project.sim.count("interactive_login") == 3
    assert project.token_file.exists()


def test_retry_after_is_respected(project: Project) -> None:
    """A 429 with Retry-After: 1 delays the next attempt by at least a second."""
    project.sim.add_fault("interactive_login", Fault.rate_limited(retry_after=1))
    run = project.run()
    assert run.code == 0, run.output
    first, second = project.sim.requests("interactive_login")
    assert second.at - first.at >= 0.95


def test_connection_refused_exit_3(project: Project) -> None:
    """A closed port is exit 3 after the retries, with a plain reason."""
    project.settings["XTS_API_ROOT"] = f"http://127.0.0.1:{closed_port()}"
    run = project.run()
    assert run.code == 3
    assert "connection refused" in run.stdout


def test_a_failure_names_the_broker_and_the_settings_file_it_was_given(project: Project) -> None:
    """The single account's broker is down: each ✗ line (console and log) names it by host and
    port, and the Telegram message too, while the Telegram server's own address appears in no
    failure; the advice names the --env-file path, not ".env"; the old token file is kept."""
    before = refreshed(project)
    project.with_telegram()
    project.sim.clear()
    down = f"127.0.0.1:{closed_port()}"
    project.settings["XTS_API_ROOT"] = f"http://{down}"

    run = project.run()

    assert run.code == 3, run.output
    assert project.token_file.read_bytes() == before
    assert project.sim.requests("interactive_login") == []
    telegram_server = urlsplit(project.sim.url).netloc
    logged = [line for line in run.log.splitlines() if "✗" in line]
    shown = [line for line in run.stdout.splitlines() if "✗" in line]
    assert shown and logged
    for line in shown + logged:
        assert f"broker {down}" in line, line
        assert telegram_server not in line, line
    closing = last_line(run.stdout)
    assert closing.startswith(f"✗ Token refresh failed (exit code 3): broker {down}: "), closing
    assert f"XTS_API_ROOT in {project.env_file})" in closing, closing
    assert "in .env" not in run.stdout
    (text,) = telegram_texts(project)
    assert text.startswith("❌ XTS token refresh FAILED on ") and f"broker {down}" in text, text
    assert f"XTS_API_ROOT in {project.env_file}" in text, text
    assert telegram_server not in text, text


def test_a_wait_cut_short_by_the_deadline_is_told_in_rounded_seconds(project: Project) -> None:
    """A hung broker whose request the deadline cuts to an odd length (1.5 s less the time the
    run took to start): the reason says "within 1.4 s", never "within 1.43219 s"."""
    project.settings.update(XTS_DEADLINE="1.5", XTS_TIMEOUT="5", XTS_RETRIES="0")
    project.sim.add_fault("interactive_login", Fault.hang(10))

    run = project.run()

    assert run.code == 3, run.output
    told = re.findall(r"no complete answer within (\S+) s", run.stdout)
    assert told, run.stdout
    for seconds in told:
        assert re.fullmatch(r"\d+(\.\d)?", seconds), seconds
        assert 0 < float(seconds) <= 1.5


@pytest.mark.slow
def test_hung_server_is_bounded_by_the_timeout(project: Project) -> None:
    """A server that never answers costs XTS_TIMEOUT per attempt, not forever."""
    project.settings.update(XTS_TIMEOUT="1", XTS_RETRIES="1")
    project.sim.add_fault("interactive_login", Fault.hang(60), times=2)
    started = time.monotonic()
    run = project.run()
    assert run.code == 3
    assert time.monotonic() - started < 15
    assert project.sim.count("interactive_login") == 2


def test_a_trickling_body_is_bounded_by_the_timeout(project: Project) -> None:
    """A body sent one byte at a time cannot stretch a request past XTS_TIMEOUT."""
    project.settings.update(XTS_TIMEOUT="1", XTS_RETRIES="0")
    body = json.dumps({"type": "success", "result": {"token": "x" * 200}}).encode()
    project.sim.add_fault("interactive_login", Fault.slow_body(body, per_byte=0.1))
    started = time.monotonic()
    run = project.run()
    assert run.code == 3
    assert time.monotonic() - started < 10
    assert "no complete answer within 1 s" in run.stdout


@pytest.mark.slow
def test_deadline_stops_the_retries(project: Project) -> None:
    """No retry starts after XTS_DEADLINE, however many retries are allowed."""
    project.settings.update(XTS_DEADLINE="2", XTS_RETRIES="20", XTS_RETRY_BACKOFF="0.4")
    project.sim.add_fault("interactive_login", Fault.html(503), times=100)
    started = time.monotonic()
    run = project.run()
    assert run.code == 3
    assert time.monotonic() - started < 10
    assert "XTS_DEADLINE" in run.stdout
    assert 1 < project.sim.count("interactive_login") < 21


# -- local failures (exit 4) --------------------------------------------------------------------


# A bug planted at run time (the program itself has none to offer): its exception's text holds
# the new session token and the API secret, as a bug's message might.
PLANTED_BUGS = {
    "in-a-session": (
        "import xts_refresher.account_refresh as target\n"
        "def broken(result):\n"
        "    raise RuntimeError(f'cannot store {result.token} for {SECRET}')\n"
        "target.stored_from_login = broken\n"
    ),
    "in-the-command": (
        "import xts_refresher.refresh as target\n"
        "def broken(*args, **kwargs):\n"
        "    raise RuntimeError(f'cannot refresh with {SECRET}')\n"
        "target.refresh = broken\n"
    ),
}


@pytest.mark.parametrize("where", sorted(PLANTED_BUGS))
def test_an_unexpected_error_is_exit_4_with_a_redacted_traceback_in_the_log(
    project: Project, where: str
) -> None:
    """A bug that escapes every check is exit 4, a closing ``✗ Unexpected error (…)`` line that
    asks for the log, and its traceback in the log file only; the exception's text, which holds
    the API secret (and the new token), is masked in the traceback as everywhere; the previous
    token file is kept byte for byte."""
    before = refreshed(project)
    launcher = (
        f"import runpy, sys\nsys.path.insert(0, {str(APP_DIR)!r})\n"
        f"SECRET = {INTERACTIVE_SECRET!r}\n{PLANTED_BUGS[where]}"
        f"sys.argv = [{str(SCRIPT)!r}, '--env-file', {str(project.write_env())!r}]\n"
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
    )

    done = run_process([PYTHON, "-c", launcher], env={"XTS_LOG_FILE": str(project.log_file)})

    assert done.returncode == 4, done.stdout + done.stderr
    last = done.stdout.rstrip().splitlines()[-1]
    assert last.startswith("✗ ") and "Unexpected error (RuntimeError: cannot " in last
    assert last.endswith("Please report it, with the log file (xts_token_refresh.log).")
    assert "Traceback" not in done.stdout + done.stderr
    log = project.log_file.read_text(encoding="utf-8")
    traceback = log[log.index("Traceback (most recent call last)") :]
    assert "RuntimeError: cannot " in traceback
    assert INTERACTIVE_SECRET not in traceback
    assert_no_secrets(project, done.stdout, done.stderr, log)
    assert project.token_file.read_bytes() == before


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (12000, 12000))


def test_a_failed_save_is_exit_4_and_keeps_the_previous_file(project: Project) -> None:
    """A token file that cannot be written (file size limit) is exit 4; the old file is intact."""
    before = refreshed(project)
    big = {"type": "success", "result": {"token": "t" * 20000, "userID": USER_ID}}
    project.sim.add_fault("interactive_login", Fault.json(big))
    run = project.run(preexec=_limit_file_size)
    assert run.code == 4, run.output
    assert "the previous token is kept" in run.stdout
    assert project.token_file.read_bytes() == before
    assert [p.name for p in project.folder.iterdir() if p.name.endswith(".tmp")] == []


def test_a_folder_at_the_token_path_is_exit_2(project: Project) -> None:
    """A folder where the token file should be is exit 2 (a path to fix, found before any
    login), and the folder is left alone."""
    project.token_file.mkdir()
    run = project.run()
    assert run.code == 2
    assert project.sim.count("interactive_login") == 0
    assert str(project.token_file) in run.stdout
    assert project.token_file.is_dir()


def test_a_symlink_at_the_token_path_is_replaced_not_followed(project: Project) -> None:
    """The token is never written through a symbolic link."""
    victim = project.folder / "victim.txt"
    victim.write_text("do not touch\n")
    project.token_file.symlink_to(victim)
    run = project.run()
    assert run.code == 0, run.output
    assert not project.token_file.is_symlink()
    assert victim.read_text() == "do not touch\n"
    assert token_json(project.token_file)["userID"] == USER_ID


@pytest.mark.parametrize("lifetime", [-120, 1800], ids=["already-expired", "expires-in-30-min"])
def test_a_new_token_that_is_expired_by_this_machines_clock_is_saved_but_exit_3(
    project: Project, lifetime: int
) -> None:
    """XTS hands out a token whose ``exp`` is already past, or within the hour, by this
    machine's clock (a clock that is wrong, most likely): the token is saved, but the run is not
    called fresh: exit 3, and the closing line names the token's exp, the machine's time and
    the clock."""
    project.sim.token_lifetime = lifetime

    run = project.run()

    assert run.code == 3, run.output
    issued = project.sim.issued_tokens("interactive")[-1]
    saved = token_json(project.token_file)
    assert saved["token"] == issued
    closing = run.stdout.rstrip().splitlines()[-1]
    assert closing.startswith("✗ Token refresh failed (exit code 3)"), closing
    assert f"exp {shown_in_ist(str(saved['expires_at']))}" in closing
    assert f"{datetime.now(KOLKATA):%Y-%m-%d}" in closing
    assert "clock" in closing
    assert "fresh token" not in run.stdout


@pytest.mark.slow
def test_concurrent_runs_take_turns_and_readers_never_see_a_partial_file(project: Project) -> None:
    """Four simultaneous runs all succeed one after the other; a reader only sees whole files."""
    assert project.run().code == 0
    env_file = project.write_env()
    seen_bad: list[str] = []
    reads = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                data = json.loads(project.token_file.read_bytes())
                assert data["token"]
                reads += 1
            except FileNotFoundError:
                seen_bad.append("missing")
            except (ValueError, KeyError, AssertionError) as exc:
                seen_bad.append(repr(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        runs = [
            subprocess.Popen(
                [PYTHON, str(SCRIPT), "--env-file", str(env_file)],
                env={"PATH": "/usr/bin:/bin"},
                cwd="/",
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(4)
        ]
        codes = [run.wait(timeout=60) for run in runs]
        for run in runs:
            assert run.stdout is not None
            run.stdout.close()
    finally:
        stop.set()
        thread.join()
    assert codes == [0, 0, 0, 0]
    assert seen_bad == []
    assert reads > 0
    assert project.sim.count("interactive_login") == 5
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]
    assert [p.name for p in project.folder.iterdir() if p.name.endswith(".tmp")] == []


# -- notifications -------------------------------------------------------------------------------


def test_telegram_down_never_changes_the_outcome_nor_leaks_the_bot_token(project: Project) -> None:
    """Telegram on a closed port costs a warning, not the run, and the bot token is not shown."""
    project.with_telegram().settings["TELEGRAM_API_URL"] = f"http://127.0.0.1:{closed_port()}"
    run = project.run()
    assert run.code == 0, run.output
    assert "The Telegram notification to chat 4242 failed (connection refused)" in run.stdout
    assert "it was not delivered" in run.stdout


# -- sessions ending differently -------------------------------------------------------------


def test_a_refused_login_and_an_unwritable_marketdata_file_exit_with_the_highest_code(
    project: Project,
) -> None:
    """Sessions ending differently: a refused interactive login (1) and a market-data token
    file in a folder that does not exist (4) make the run exit 4, the highest."""
    project.with_marketdata()
    project.settings["XTS_INTERACTIVE_API_SECRET"] = "is-FAKE-wrong-secret-Hi44"
    project.settings["XTS_MARKETDATA_TOKEN_FILE"] = str(project.folder / "gone" / "md.json")
    run = project.run()
    assert run.code == 4, run.output
    assert project.sim.count("marketdata_login") == 0


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
    warning = f"The market-data app key expires in {days} days ({expiry:%d-%m-%Y})"
    (text,) = telegram_texts(project)
    if warned:
        assert f"⚠ {warning}" in run.stdout
        assert re.search(rf"WARNING\s+⚠ {re.escape(warning)}", run.log)
        assert warning in text
    else:
        assert "app key expires" not in run.stdout + run.log + text
