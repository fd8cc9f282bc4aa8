"""What a refresh does around the logins: the health-check pings and the post-refresh hook.

``HEALTHCHECK_URL`` follows healthchecks.io's protocol (``/start``, then ``/<exit code>``), and
a ping that fails never changes the outcome. ``XTS_POST_REFRESH_HOOK`` runs after the new
token files exist, sees where they are but never a token or secret, is bounded in time, and
its failure is exit 5 with the tokens kept. The real script runs cron-style against the
simulator, which also plays the ping server and Telegram.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import (
    APP_DIR,
    SCRIPT,
    SECRETS,
    Project,
    assert_no_secrets,
    closed_port,
    ping_paths,
    token_json,
    with_healthcheck,
)

from xts_refresher.settings import SECRET_VARIABLES
from xts_refresher.simulator import Fault

# -- helpers ------------------------------------------------------------------------------------


def assert_pings_carry_no_secret(project: Project) -> None:
    """No ping's URL, query, headers or body holds a secret or a session token."""
    for request in project.sim.requests("healthcheck"):
        seen = [request.path, json.dumps(request.query), json.dumps(request.headers)]
        assert_no_secrets(project, *seen, request.body.decode("utf-8", "replace"))


def read_env_dump(path: Path) -> dict[str, str]:
    """The variables of an ``env`` dump (one NAME=value a line)."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep:
            values[name] = value
    return values


def pid_is_running(pid: int) -> bool:
    """True when ``pid`` is alive (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# -- health-check pings -------------------------------------------------------------------------


def test_success_pings_start_before_the_login_and_0_after_it(project: Project) -> None:
    """A successful run pings ``/start`` before its first XTS request and ``/0`` after its
    last one, exactly once each, and no ping carries a secret or token."""
    project.with_marketdata()
    prefix = with_healthcheck(project)

    run = project.run()

    assert run.code == 0
    assert ping_paths(project) == [f"{prefix}/start", f"{prefix}/0"]
    routes = [request.route for request in project.sim.requests()]
    assert routes == ["healthcheck", "interactive_login", "marketdata_login", "healthcheck"]
    start, end = project.sim.requests("healthcheck")
    assert start.method == "GET"
    assert end.method == "POST"  # its body is the run's output (runitor's way)
    assert start.query["rid"] == end.query["rid"]
    assert str(uuid.UUID(start.query["rid"])) == start.query["rid"]
    assert_pings_carry_no_secret(project)


def test_the_closing_ping_carries_the_runs_output_and_pairs_with_the_start(
    project: Project,
) -> None:
    """healthchecks.io pairs start and end by ``rid`` (a new one every run) and shows the end
    ping's body: the run's console output, redacted, with the closing ✗ line and what to do,
    at most 10,000 bytes."""
    prefix = with_healthcheck(project)
    assert project.run().code == 0
    first_rid = project.sim.requests("healthcheck")[0].query["rid"]
    project.sim.clear()
    project.settings["XTS_INTERACTIVE_API_SECRET"] = "is-FAKE-wrong-secret-Hc42"

    run = project.run()

    assert run.code == 1
    start, end = project.sim.requests("healthcheck")
    assert [start.path, end.path] == [f"{prefix}/start", f"{prefix}/1"]
    assert start.query["rid"] == end.query["rid"] != first_rid
    body = end.body.decode("utf-8")
    assert len(end.body) <= 10_000
    assert "XTS Token Refresh Cron Job Started" in body
    assert "e-user-0005" in body
    assert body.rstrip().splitlines()[-1].startswith("✗ Token refresh failed (exit code 1)")
    assert body.rstrip().splitlines()[-1] == run.stdout.rstrip().splitlines()[-1]
    assert_no_secrets(project, body, "is-FAKE-wrong-secret-Hc42")
    assert "is-FAKE-wrong-secret-Hc42" not in body
    assert_pings_carry_no_secret(project)


def test_a_closing_ping_of_a_long_output_carries_its_last_10000_bytes(project: Project) -> None:
    """An output over 10,000 bytes (XTS refuses with a 12,000-character description) is cut
    from the front: the closing ping's body is the console output's last 10,000 bytes, byte
    for byte, ending with the ✗ line and what to do; the banner and the description's start
    are what is left out."""
    prefix = with_healthcheck(project)
    description = "HEAD-OF-DESCRIPTION " + "x" * 12_000 + " END-OF-DESCRIPTION"
    project.sim.add_fault("interactive_login", Fault.xts_error("e-user-0005", description))

    run = project.run()

    assert run.code == 1, run.output[:500]
    assert len(run.stdout.encode("utf-8")) > 12_000
    (end,) = [r for r in project.sim.requests("healthcheck") if r.path == f"{prefix}/1"]
    assert end.body == run.stdout.encode("utf-8")[-10_000:]
    body = end.body.decode("utf-8")
    assert "END-OF-DESCRIPTION" in body
    assert body.rstrip().endswith("then run again.")
    assert "HEAD-OF-DESCRIPTION" not in body
    assert "XTS Token Refresh Cron Job Started" not in body
    assert_pings_carry_no_secret(project)


@pytest.mark.parametrize(
    ("route", "fault", "times", "code"),
    [
        ("interactive_login", Fault.xts_error("e-user-0005", "Invalid credentials."), 1, 1),
        ("interactive_login", Fault.html(503), 3, 3),
    ],
    ids=["login-refused", "xts-unreachable"],
)
def test_failure_pings_start_then_the_exit_code(
    project: Project, route: str, fault: Fault, times: int, code: int
) -> None:
    """A failed run still pings ``/start`` first and then ``/<exit code>`` (``/1`` for a
    refusal, ``/3`` for an unreachable XTS), and the previous token file stays byte-identical."""
    assert project.run().code == 0
    before = project.token_file.read_bytes()
    prefix = with_healthcheck(project)
    project.sim.clear()
    project.sim.add_fault(route, fault, times)

    run = project.run()

    assert run.code == code
    assert ping_paths(project) == [f"{prefix}/start", f"{prefix}/{code}"]
    routes = [request.route for request in project.sim.requests()]
    assert routes == ["healthcheck", *[route] * times, "healthcheck"]
    assert project.token_file.read_bytes() == before
    assert run.stdout.rstrip().splitlines()[-1].startswith("✗")
    assert_pings_carry_no_secret(project)


@pytest.mark.slow
def test_a_hanging_ping_endpoint_neither_changes_the_outcome_nor_stalls_the_run(
    project: Project,
) -> None:
    """A ping server that hangs for 30 s on ``/start`` costs a warning and a few seconds, not
    the run: the token is saved, the run exits 0, and ``/0`` is still sent at the end."""
    prefix = with_healthcheck(project)
    project.sim.add_fault("healthcheck", Fault.hang(30))

    started = time.monotonic()
    run = project.run()
    elapsed = time.monotonic() - started

    assert run.code == 0
    assert elapsed < 15, f"the run took {elapsed:.1f} s"
    assert "health-check ping /start failed" in run.stdout
    assert ping_paths(project) == [f"{prefix}/start", f"{prefix}/0"]
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]


def test_an_unreachable_ping_endpoint_does_not_change_the_outcome(project: Project) -> None:
    """A ping URL nobody listens on is a warning only: the run still refreshes and exits 0."""
    project.settings["HEALTHCHECK_URL"] = f"http://127.0.0.1:{closed_port()}/ping/abc"

    run = project.run()

    assert run.code == 0
    assert "health-check ping /start failed (connection refused): it was not" in run.stdout
    assert "health-check ping /0 failed (connection refused) after 4 attempts" in run.stdout
    assert project.sim.count("interactive_login") == 1
    assert project.token_file.exists()


# -- post-refresh hook --------------------------------------------------------------------------


def test_hook_runs_after_the_new_token_file_exists_and_sees_paths_but_no_secret(
    project: Project, tmp_path: Path
) -> None:
    """The hook runs in the script's folder once the new token files are in place (it copies
    the interactive file and finds the token issued by this run), gets XTS_TOKEN_FILE,
    XTS_MARKETDATA_TOKEN_FILE and XTS_REFRESHED_SESSIONS, and none of the secret variables or
    tokens."""
    project.with_marketdata()
    assert project.run().code == 0  # an older token file, which the hook must not see
    snapshot, dump = tmp_path / "snapshot.json", tmp_path / "hook-env.txt"
    folder = tmp_path / "hook-cwd.txt"
    project.settings["XTS_POST_REFRESH_HOOK"] = (
        f'test -s "$XTS_TOKEN_FILE" || exit 7; cp "$XTS_TOKEN_FILE" {shlex.quote(str(snapshot))}; '
        f"env > {shlex.quote(str(dump))}; pwd -P > {shlex.quote(str(folder))}"
    )

    run = project.run()

    assert run.code == 0, run.output
    assert "✓ Post-refresh hook finished." in run.stdout
    newest = project.sim.issued_tokens("interactive")[-1]
    assert json.loads(snapshot.read_text(encoding="utf-8"))["token"] == newest
    seen = read_env_dump(dump)
    assert seen["XTS_TOKEN_FILE"] == str(project.token_file)
    assert seen["XTS_MARKETDATA_TOKEN_FILE"] == str(project.md_token_file)
    assert seen["XTS_REFRESHED_SESSIONS"] == "interactive,marketdata"
    assert folder.read_text(encoding="utf-8").strip() == str(APP_DIR)  # the script's, not /
    assert not set(SECRET_VARIABLES) & set(seen)
    assert_no_secrets(project, dump.read_text(encoding="utf-8"))
    log = run.log
    assert log.index("Token saved to") < log.index("Running the post-refresh hook")


def test_hook_is_skipped_when_if_needed_keeps_every_token(project: Project, tmp_path: Path) -> None:
    """``--if-needed`` that keeps every stored token runs no hook (a live quote stream is not
    disturbed for nothing); once one session is renewed, the hook runs and is told which."""
    project.with_marketdata()
    marker = tmp_path / "hook-ran.txt"
    project.settings["XTS_POST_REFRESH_HOOK"] = (
        f'echo "$XTS_REFRESHED_SESSIONS" > {shlex.quote(str(marker))}'
    )
    assert project.run().code == 0
    assert marker.read_text(encoding="utf-8").strip() == "interactive,marketdata"
    marker.unlink()

    skipped = project.run("--if-needed")

    assert skipped.code == 0
    assert not marker.exists()
    assert "post-refresh hook" not in skipped.stdout
    assert project.sim.count("interactive_login") == 1

    project.md_token_file.unlink()
    renewed = project.run("--if-needed")

    assert renewed.code == 0
    assert marker.read_text(encoding="utf-8").strip() == "marketdata"
    assert project.sim.count("interactive_login") == 1
    assert project.sim.count("marketdata_login") == 2


def test_a_failing_hook_is_exit_5_with_the_tokens_saved_and_notified(project: Project) -> None:
    """A hook exiting 9 makes the run exit 5 (pinged as ``/5``): the new tokens are saved, the
    hook's output and the failure are logged, and Telegram is told."""
    project.with_marketdata().with_telegram()
    prefix = with_healthcheck(project)
    project.settings["XTS_POST_REFRESH_HOOK"] = "echo bot-restart-refused; exit 9"

    run = project.run()

    assert run.code == 5
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]
    assert token_json(project.md_token_file)["token"] == project.sim.issued_tokens("marketdata")[-1]
    for text in (run.stdout, run.log):
        assert "post-refresh hook failed with exit code 9" in text
        assert "hook: bot-restart-refused" in text
    assert run.stdout.rstrip().splitlines()[-1].startswith("✗")
    (message,) = project.sim.requests("telegram")
    text = message.json["text"]
    assert "FAILED" in text
    assert "exit code 5" in text
    assert "hook failed with exit code 9" in text
    assert ping_paths(project) == [f"{prefix}/start", f"{prefix}/5"]


@pytest.mark.slow
def test_a_hanging_hook_is_stopped_at_its_time_limit(project: Project, tmp_path: Path) -> None:
    """A hook that would sleep for a minute is stopped after the 10 s floor (XTS_DEADLINE=5
    leaves less than that), with its whole process group: the run exits 5 in bounded time, the
    token stays saved, and the hook's child process is gone."""
    pid_file = tmp_path / "sleeper.pid"
    project.settings["XTS_DEADLINE"] = "5"
    project.settings["XTS_POST_REFRESH_HOOK"] = (
        f"sleep 60 & echo $! > {shlex.quote(str(pid_file))}; wait"
    )

    started = time.monotonic()
    run = project.run(timeout=60)
    elapsed = time.monotonic() - started

    assert run.code == 5
    assert 9 < elapsed < 20, f"the run took {elapsed:.1f} s"
    assert "did not finish within 10 s and was stopped" in run.stdout
    assert project.sim.count("interactive_login") == 1
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]
    sleeper = int(pid_file.read_text(encoding="utf-8"))
    deadline = time.monotonic() + 2
    while pid_is_running(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_is_running(sleeper)


def test_the_hook_does_not_inherit_secret_variables_from_the_process(
    project: Project, tmp_path: Path
) -> None:
    """Secrets exported in cron's environment (not only in .env) are removed from the hook's
    environment while ordinary variables pass through."""
    dump = tmp_path / "hook-env.txt"
    project.with_telegram()
    project.settings["XTS_POST_REFRESH_HOOK"] = f"env > {shlex.quote(str(dump))}"
    exported = {
        name: project.settings[name] for name in SECRET_VARIABLES if name in project.settings
    }
    assert set(exported) == {
        "XTS_INTERACTIVE_API_KEY",
        "XTS_INTERACTIVE_API_SECRET",
        "TELEGRAM_TOKEN",
    }

    run = project.run(env={**exported, "MY_BOT_HOME": "/srv/bot"})

    assert run.code == 0
    seen = read_env_dump(dump)
    assert seen["MY_BOT_HOME"] == "/srv/bot"
    assert seen["XTS_REFRESHED_SESSIONS"] == "interactive"
    assert not set(SECRET_VARIABLES) & set(seen)
    text = dump.read_text(encoding="utf-8")
    for secret in SECRETS:
        assert secret not in text
    assert os.path.isabs(seen["XTS_TOKEN_FILE"])


def test_a_hook_that_starts_the_bot_in_the_background_returns_at_once(
    project: Project, tmp_path: Path
) -> None:
    """A hook that starts a long-running process in the background (the bot) and exits: the
    run finishes at once with exit 0 and the background process keeps running."""
    pid_file = tmp_path / "bot.pid"
    project.settings["XTS_POST_REFRESH_HOOK"] = (
        f"sleep 60 & echo $! > {shlex.quote(str(pid_file))}; echo bot restarted"
    )
    started = time.monotonic()
    run = project.run()
    elapsed = time.monotonic() - started
    bot = int(pid_file.read_text())
    try:
        assert run.code == 0, run.output
        assert "hook: bot restarted" in run.stdout
        assert elapsed < 8  # not the hook's 10 s floor, nor the bot's 60 s
        assert pid_is_running(bot)
    finally:
        os.kill(bot, 9)


def test_a_hook_that_runs_the_refresher_fails_at_once_instead_of_deadlocking(
    project: Project,
) -> None:
    """The hook runs under the run lock: a refresh it starts stops at once (exit 4) with a
    clear reason, the hook fails (exit 5), and the tokens stay saved."""
    env_file = project.write_env()
    project.settings["XTS_POST_REFRESH_HOOK"] = (
        f"{shlex.quote(sys.executable)} {shlex.quote(str(SCRIPT))} --if-needed "
        f"--env-file {shlex.quote(str(env_file))}"
    )
    project.settings["XTS_DEADLINE"] = "60"
    started = time.monotonic()
    run = project.run()
    assert run.code == 5, run.output
    assert time.monotonic() - started < 8
    assert "A hook must not run the refresher" in run.stdout
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]
    assert "post-refresh hook failed with exit code 4" in run.stdout
    assert project.sim.count("interactive_login") == 1


def wait_for_file(path: Path, seconds: float = 20) -> str:
    """The text of ``path`` once it exists with a whole line in it (bounded poll)."""
    give_up = time.monotonic() + seconds
    while not (path.exists() and path.read_text(encoding="utf-8").endswith("\n")):
        assert time.monotonic() < give_up, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text(encoding="utf-8")


def test_a_bot_the_hook_left_running_may_run_the_refresher_after_the_run_ended(
    project: Project, tmp_path: Path
) -> None:
    """A hook that starts a background process (a bot) and returns: once the refresh that ran
    the hook has ended, the bot runs the refresher (with the hook's environment) and that
    refresh logs in and exits 0; the guard only stops a refresh while its hook's run holds
    the lock."""
    go, started, out, code = (tmp_path / n for n in ("go", "started", "bot.out", "bot.code"))
    env_file = project.write_env()
    later = (
        f"i=0; while [ ! -e {shlex.quote(str(go))} ] && [ $i -lt 400 ]; do sleep 0.05; "
        f"i=$((i+1)); done; {shlex.quote(sys.executable)} {shlex.quote(str(SCRIPT))} "
        f"--env-file {shlex.quote(str(env_file))} > {shlex.quote(str(out))} 2>&1; "
        f"echo $? > {shlex.quote(str(code))}"
    )
    project.settings["XTS_POST_REFRESH_HOOK"] = (
        f"[ -e {shlex.quote(str(started))} ] && exit 0; touch {shlex.quote(str(started))}; "
        f"( {later} ) > /dev/null 2>&1 &"
    )

    run = project.run()
    assert run.code == 0, run.output
    assert project.sim.count("interactive_login") == 1
    go.touch()
    exit_code = wait_for_file(code).strip()

    bot_output = out.read_text(encoding="utf-8")
    assert exit_code == "0", bot_output
    assert "A hook must not run the refresher" not in bot_output
    assert project.sim.count("interactive_login") == 2
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]
    assert_no_secrets(project, bot_output)


def test_the_hook_does_not_run_for_a_token_verify_saw_rejected(
    project: Project, tmp_path: Path
) -> None:
    """``--verify`` puts the new token to XTS, which rejects it ("Invalid Token"): the token is
    saved, the run exits 3, and the hook (which would restart the bot on a dead token) does
    not run."""
    marker = tmp_path / "hook-ran.txt"
    project.settings["XTS_POST_REFRESH_HOOK"] = f"touch {shlex.quote(str(marker))}"
    project.sim.add_fault("interactive_balance", Fault.xts_error("e-session-0007", "Invalid Token"))

    run = project.run("--verify")

    assert run.code == 3, run.output
    assert "XTS rejected the interactive token" in run.stdout
    assert project.sim.count("interactive_balance") == 1
    assert not marker.exists(), "the hook ran for a token XTS rejected"
    assert "post-refresh hook" not in run.stdout
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]
