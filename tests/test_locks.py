"""Locks: every token file has its own, and a run that waited for one logs in only with time left.

A market-data login ends the previous market-data session of its app key, so two runs that
share a token file must never log in to that session at the same time, and a run must never
send a login it has no time left to see answered (its token would be lost, and the one in the
file dead). The real script runs cron-style against the simulator; nothing is mocked.
"""

from __future__ import annotations

import fcntl
import threading
from pathlib import Path

import pytest
from conftest import Project, token_json

LOGIN_DELAY = 0.5


@pytest.mark.slow
def test_two_runs_sharing_a_market_data_file_never_log_in_to_it_at_once(
    project: Project,
) -> None:
    """Two runs with their own interactive token files (so their own run locks) but one
    market-data file, started together against a broker whose logins take LOGIN_DELAY: the
    second market-data login arrives only after the first was answered, and the file holds
    the token XTS issued last, the only one still alive."""
    project.with_marketdata()
    project.sim.login_delay = LOGIN_DELAY
    first, second = project.folder / "a.json", project.folder / "b.json"

    processes = [project.start("--token-file", str(path)) for path in (first, second)]
    runs = [project.finish(process) for process in processes]

    for run in runs:
        assert run.code == 0, run.output
    arrivals = sorted(request.at for request in project.sim.requests("marketdata_login"))
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= LOGIN_DELAY * 0.9, "two market-data logins overlapped"
    assert token_json(project.md_token_file)["token"] == project.sim.issued_tokens("marketdata")[-1]
    assert Path(f"{project.md_token_file}.lock").is_file()
    for path in (first, second):
        assert token_json(path)["userID"]


@pytest.mark.slow
def test_a_run_that_waited_for_the_lock_sends_no_login_it_cannot_finish(project: Project) -> None:
    """Another run holds the run lock for 2 s; XTS_DEADLINE=3 then leaves about 1 s, less than
    one request (XTS_TIMEOUT=2) against a broker whose logins take 1.5 s. The run sends no
    login and exits 4, naming the lock and its holder's pid, not XTS; the market-data token in
    the file is the one XTS issued last, still alive, and the file is byte-identical."""
    for name in ("XTS_INTERACTIVE_API_KEY", "XTS_INTERACTIVE_API_SECRET"):
        del project.settings[name]
    project.with_marketdata()
    first = project.run()
    assert first.code == 0, first.output
    previous = project.md_token_file.read_bytes()
    project.sim.clear()
    project.sim.login_delay = 1.5
    project.settings.update(XTS_DEADLINE="3", XTS_TIMEOUT="2")
    lock_path = Path(f"{project.token_file}.lock")
    with lock_path.open("w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        holder.write("pid 424242 since 2024-10-13 09:00:00\n")
        holder.flush()
        release = threading.Timer(2.0, lambda: fcntl.flock(holder, fcntl.LOCK_UN))
        release.start()
        try:
            run = project.run()
        finally:
            release.cancel()

    assert run.code == 4, run.output
    closing = run.stdout.rstrip().splitlines()[-1]
    assert closing.startswith("✗ Token refresh failed (exit code 4)"), closing
    assert "pid 424242" in closing
    assert "lock" in closing
    assert "no login was sent" in closing
    assert "XTS_TIMEOUT" in closing
    assert project.sim.count("marketdata_login") == 0
    assert project.md_token_file.read_bytes() == previous
    assert token_json(project.md_token_file)["token"] == project.sim.issued_tokens("marketdata")[-1]
