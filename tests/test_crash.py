"""Crash safety: a refresh killed with SIGKILL at any moment never leaves a broken token file.

A reader polls the token file throughout, the way a trading bot would, and must only ever see
a complete token: the previous one or a new one. After the next successful run no temporary
file is left. XTS_CRASH_RUNS sets the number of killed runs (default 50).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time

import pytest
from conftest import PYTHON, SCRIPT, Project, token_json

KILLED_RUNS = int(os.environ.get("XTS_CRASH_RUNS", "50"))


@pytest.mark.slow
def test_sigkill_at_random_moments_never_exposes_a_partial_token(project: Project) -> None:
    """Refreshes killed at random moments: readers see only whole tokens XTS issued."""
    project.with_marketdata()
    started = time.monotonic()
    assert project.run().code == 0
    # Kill moments spread over a whole run (a little past its end, so some runs save).
    run_seconds = time.monotonic() - started
    env_file = project.write_env()
    files = (project.token_file, project.md_token_file)
    bad_reads: list[str] = []
    seen: set[str] = set()
    reads = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            for path in files:
                try:
                    data = json.loads(path.read_bytes())
                    seen.add(data["token"])
                    reads += 1
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    bad_reads.append(f"{path.name}: {exc!r}")
            time.sleep(0.001)  # poll hard, but leave the runs their share of the CPU

    rng = random.Random(20241013)  # reproducible kill moments
    outcomes: list[int] = []
    polling = threading.Thread(target=reader)
    polling.start()
    try:
        for _ in range(KILLED_RUNS):
            run = subprocess.Popen(
                [PYTHON, str(SCRIPT), "--env-file", str(env_file)],
                env={"PATH": "/usr/bin:/bin"},
                cwd="/",
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(0.0, 1.1 * run_seconds))
            run.send_signal(signal.SIGKILL)
            outcomes.append(run.wait(timeout=30))
    finally:
        stop.set()
        polling.join()

    assert bad_reads == []
    assert reads > KILLED_RUNS
    issued = set(project.sim.issued_tokens("interactive") + project.sim.issued_tokens("marketdata"))
    assert seen <= issued  # every token read was one XTS really issued, whole
    assert len(seen) > 2  # some killed runs got as far as saving a new token
    assert outcomes.count(-signal.SIGKILL) > KILLED_RUNS // 3  # many runs really were killed

    final = project.run()
    assert final.code == 0, final.output
    assert sorted(p.name for p in project.folder.iterdir() if p.name.endswith(".tmp")) == []
    latest = {project.sim.issued_tokens(kind)[-1] for kind in ("interactive", "marketdata")}
    assert {token_json(path)["token"] for path in files} == latest
