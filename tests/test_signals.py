"""SIGINT (Ctrl-C) and SIGTERM (systemd stopping the job, a shutdown) during a refresh.

A login already sent is let finish and its token saved: a market-data login ends the previous
market-data session whether or not its answer is read, so abandoning it would leave a dead
token in the file. No new login starts; the run then exits 130 (SIGINT) or 143 (SIGTERM) with
a ✗ line saying which tokens are fresh and which were not renewed. The real script runs
cron-style against a simulator whose logins are slow; the signal is sent once the simulator
has received the login it is meant to interrupt.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CRON_PATH, WRAPPER, Project, assert_no_secrets, token_json
from test_accounts import Fleet, jwt_user
from test_wrapper import venv_override

from xts_refresher.simulator import XtsSimulator

LOGIN_DELAY = 0.8
EXIT_CODES: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}


def signal_when(
    sim: XtsSimulator, route: str, count: int, process: subprocess.Popen[str], signum: int
) -> None:
    """Send ``signum`` to ``process`` once ``sim`` has received ``count`` requests on ``route``
    (polled, for at most 20 s)."""
    give_up = time.monotonic() + 20
    while sim.count(route) < count:
        assert process.poll() is None, "the run ended before the login it was meant to interrupt"
        assert time.monotonic() < give_up, f"{route} never arrived"
        time.sleep(0.01)
    process.send_signal(signum)


def closing_line(text: str) -> str:
    """The last line of ``text``."""
    return text.rstrip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_the_interactive_login_saves_it_and_starts_no_market_data_login(
    project: Project, signum: int
) -> None:
    """The signal arrives while the interactive login is under way: its token is saved, no
    market-data login is sent, the market-data file is byte-identical, and the ✗ line says
    the interactive token is fresh and the market-data one was not renewed."""
    project.with_marketdata()
    assert project.run().code == 0
    previous_md = project.md_token_file.read_bytes()
    project.sim.clear()
    project.sim.login_delay = LOGIN_DELAY

    process = project.start()
    signal_when(project.sim, "interactive_login", 1, process, signum)
    run = project.finish(process)

    assert run.code == EXIT_CODES[signum], run.output
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]
    assert project.sim.count("marketdata_login") == 0
    assert project.md_token_file.read_bytes() == previous_md
    closing = closing_line(run.stdout)
    assert closing.startswith(f"✗ Token refresh failed (exit code {EXIT_CODES[signum]})"), closing
    assert signal.Signals(signum).name in closing
    assert "the interactive token is fresh" in closing
    assert "the market-data token was not renewed" in closing
    assert "intact" not in run.stdout
    assert "Traceback" not in run.output + run.log


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_the_market_data_login_still_saves_its_token(
    project: Project, signum: int
) -> None:
    """The signal arrives while the market-data login is under way (which has already ended
    the previous market-data session): the run waits for the answer and saves the new token,
    the one XTS issued last, so the file never holds a dead token; exit 130 or 143."""
    project.with_marketdata()
    assert project.run().code == 0
    project.sim.clear()
    project.sim.login_delay = LOGIN_DELAY

    process = project.start()
    signal_when(project.sim, "marketdata_login", 1, process, signum)
    run = project.finish(process)

    assert run.code == EXIT_CODES[signum], run.output
    assert token_json(project.md_token_file)["token"] == project.sim.issued_tokens("marketdata")[-1]
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]
    closing = closing_line(run.stdout)
    assert closing.startswith(f"✗ Token refresh failed (exit code {EXIT_CODES[signum]})"), closing
    assert "the market-data token is fresh" in closing
    assert "not renewed" not in closing
    assert "intact" not in run.stdout
    assert "Traceback" not in run.output + run.log


def test_a_signal_during_a_run_of_several_accounts_lets_each_login_under_way_finish(
    sim: XtsSimulator, tmp_path: Path
) -> None:
    """Two accounts log in at once in their own threads; SIGINT reaches the main thread while
    both interactive logins are under way: both tokens are saved, neither account starts its
    market-data login, and the run exits 130 with a ✗ line for each account and the summary."""
    fleet = Fleet(tmp_path, sim)
    names = (("alice", "ALC101"), ("bob", "BOB202"))
    accounts = [fleet.add(name, sim, user, marketdata=True) for name, user in names]
    sim.login_delay = LOGIN_DELAY

    process = fleet.start()
    signal_when(sim, "interactive_login", 2, process, signal.SIGINT)
    run = fleet.finish(process)

    assert run.code == 130, run.output
    assert sim.count("marketdata_login") == 0
    for account in accounts:
        assert jwt_user(str(token_json(account.token_file)["token"])) == account.user_id
        assert not account.md_token_file.exists()
        own_line = next(
            line for line in run.stdout.splitlines() if line.startswith(f"{account.prefix}✗")
        )
        assert "the interactive token is fresh" in own_line
        assert "the market-data token was not renewed" in own_line
    assert closing_line(run.stdout).startswith("✗ 2 of 2 accounts failed (exit code 130)")
    assert "Traceback" not in run.output + run.log


def test_sigterm_to_the_wrapper_and_the_program_is_reported_by_the_wrapper_as_143(
    project: Project, tmp_path: Path
) -> None:
    """systemd stops a job by sending SIGTERM to every process of it: the cron wrapper and the
    program under it. The wrapper waits for the program to finish the login under way and
    ends with its own closing line for exit 143, instead of dying first without a word."""
    project.with_marketdata()
    project.sim.login_delay = LOGIN_DELAY
    process = subprocess.Popen(
        [str(WRAPPER), "--env-file", str(project.write_env())],
        env={
            "PATH": CRON_PATH,
            "HOME": str(tmp_path),
            "XTS_LOG_FILE": str(project.log_file),
            **venv_override(),
        },
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    give_up = time.monotonic() + 20
    while project.sim.count("interactive_login") < 1:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < give_up, "the login never arrived"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 143, stdout + stderr
    assert "✗ Token refresh failed (exit code: 143): stopped by SIGTERM" in stdout
    assert "the market-data token was not renewed" in stdout
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]
    assert project.sim.count("marketdata_login") == 0
    assert_no_secrets(project, stdout, stderr)


def test_a_signal_while_waiting_for_another_runs_lock_ends_the_wait_at_once(
    project: Project,
) -> None:
    """Another run holds the lock; this run waits (up to XTS_DEADLINE=60 s) until SIGTERM
    comes: it stops waiting at once, sends nothing, changes no file, and exits 143 saying no
    login was sent."""
    assert project.run().code == 0
    previous = project.token_file.read_bytes()
    project.sim.clear()
    lock_path = Path(f"{project.token_file}.lock")
    with lock_path.open("w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        process = project.start()
        give_up = time.monotonic() + 20
        while "holds the lock" not in (project.log_file.read_text(encoding="utf-8")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < give_up, "the run never said it waits"
            time.sleep(0.01)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        run = project.finish(process)
        stopped_after = time.monotonic() - started

    assert run.code == 143, run.output
    assert stopped_after < 5
    assert "no login was sent" in closing_line(run.stdout)
    assert project.sim.count("interactive_login") == 0
    assert project.token_file.read_bytes() == previous
    assert "Traceback" not in run.output + run.log
