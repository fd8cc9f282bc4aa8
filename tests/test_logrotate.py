"""``logrotate.conf.example`` with the real ``logrotate``: rotation never loses or mixes runs.

The example's placeholders are replaced by a temporary folder and the current user and group,
and logrotate keeps its state in a private file (``-s``), so the machine's own rotation is
untouched. Runs go through the wrapper exactly as the crontab line runs it
(``refresh_xts_token.sh ... >> cron_output.log 2>&1``), so both logs of the example are real.
"""

from __future__ import annotations

import grp
import gzip
import os
import pwd
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import (
    APP_DIR,
    INTERACTIVE_SECRET,
    WRAPPER,
    Project,
    assert_no_secrets,
    run_process,
    skip_or_fail,
)

pytestmark = pytest.mark.system

EXAMPLE = APP_DIR / "logrotate.conf.example"
PLACEHOLDER = "/path/to/xts-token-refresher"
TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WRONG_SECRET = "is-FAKE-Wr0ngS3cret-for-logrotate"
# What each run leaves in the detailed log and in the cron output.
RUN_A = ("✗ Token refresh failed (exit code 1)", "✗ Token refresh failed (exit code: 1)")
RUN_B = ("✓ XTS token refreshed successfully!", "✓ Token refresh completed successfully")


def logrotate_program() -> str:
    """The logrotate executable; skip (locally) or fail (CI) without it."""
    found = shutil.which("logrotate", path=TOOL_PATH)
    if found is None:
        skip_or_fail("logrotate is not installed (Debian: apt-get install logrotate)")
        raise AssertionError("unreachable")
    return found


def example_config(folder: Path) -> Path:
    """The example, made true for ``folder`` and the current user and group (mode 644)."""
    text = EXAMPLE.read_text(encoding="utf-8")
    assert PLACEHOLDER in text and "your_user" in text and "your_group" in text
    text = (
        text.replace(PLACEHOLDER, str(folder))
        .replace("your_user", pwd.getpwuid(os.getuid()).pw_name)
        .replace("your_group", grp.getgrgid(os.getgid()).gr_name)
    )
    config = folder.parent / "xts-token-refresh.logrotate"
    config.write_text(text, encoding="utf-8")
    config.chmod(0o644)
    return config


def cron_style_run(project: Project, cron_log: Path) -> subprocess.CompletedProcess[str]:
    """The wrapper as the crontab line runs it: everything appended to ``cron_log``."""
    command = (
        f"{shlex.quote(str(WRAPPER))} --env-file {shlex.quote(str(project.write_env()))}"
        f" >> {shlex.quote(str(cron_log))} 2>&1"
    )
    return run_process(["/bin/sh", "-c", command], env={"HOME": str(project.folder)})


def rotate(program: str, config: Path, state: Path) -> None:
    """``logrotate -f`` with a private state file; it must succeed without a complaint."""
    done = run_process([program, "-s", str(state), "-f", str(config)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "error" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr


def owner_only(path: Path) -> bool:
    """True when group and others have no access to ``path``."""
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def test_example_config_rotates_both_logs(project: Project, tmp_path: Path) -> None:
    """Run A, ``logrotate -f``, run B: the fresh logs hold B only (owner-only), the ``.1``
    files (not compressed yet: delaycompress) hold A only; a second rotation compresses A.
    """
    program = logrotate_program()
    logs = tmp_path / "logs"
    logs.mkdir()
    project.log_file = logs / "xts_token_refresh.log"
    project.settings["XTS_LOG_FILE"] = str(project.log_file)
    cron_log = logs / "cron_output.log"
    config = example_config(logs)
    state = tmp_path / "logrotate.state"

    dry = run_process([program, "-d", "-s", str(state), str(config)])
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "error" not in (dry.stdout + dry.stderr).lower(), dry.stderr

    project.settings["XTS_INTERACTIVE_API_SECRET"] = WRONG_SECRET
    run_a = cron_style_run(project, cron_log)
    assert run_a.returncode == 1, cron_log.read_text(encoding="utf-8")
    assert RUN_A[0] in project.log_file.read_text(encoding="utf-8")
    assert RUN_A[1] in cron_log.read_text(encoding="utf-8")

    rotate(program, config, state)

    for log in (project.log_file, cron_log):
        rotated = log.with_name(log.name + ".1")
        assert rotated.exists(), f"{log.name} was not rotated"
        assert not log.with_name(log.name + ".1.gz").exists(), "delaycompress was ignored"
        assert log.exists() and log.stat().st_size == 0, f"{log.name} was not created afresh"
        assert owner_only(log), oct(log.stat().st_mode)

    project.settings["XTS_INTERACTIVE_API_SECRET"] = INTERACTIVE_SECRET
    run_b = cron_style_run(project, cron_log)
    assert run_b.returncode == 0, cron_log.read_text(encoding="utf-8")

    for log, (event_a, event_b) in zip((project.log_file, cron_log), zip(RUN_A, RUN_B)):
        fresh = log.read_text(encoding="utf-8")
        old = log.with_name(log.name + ".1").read_text(encoding="utf-8")
        assert event_b in fresh and event_a not in fresh, fresh
        assert event_a in old and event_b not in old, old
        assert owner_only(log), oct(log.stat().st_mode)
        assert WRONG_SECRET not in fresh + old
        assert_no_secrets(project, fresh, old)

    rotate(program, config, state)

    for log, (event_a, event_b) in zip((project.log_file, cron_log), zip(RUN_A, RUN_B)):
        assert event_b in log.with_name(log.name + ".1").read_text(encoding="utf-8")
        with gzip.open(log.with_name(log.name + ".2.gz"), "rt", encoding="utf-8") as archived:
            assert event_a in archived.read()


def test_a_log_rotated_during_a_run_is_reopened(project: Project) -> None:
    """logrotate moves the log away while a run is under way (here its hook does, after the
    token is saved): the run's later lines go to a new file at the log's path, mode 0600, and
    none to the moved one after the move."""
    moved = project.log_file.with_name(project.log_file.name + ".1")
    project.settings["XTS_POST_REFRESH_HOOK"] = (
        f"mv {shlex.quote(str(project.log_file))} {shlex.quote(str(moved))}"
    )

    run = project.run()

    assert run.code == 0, run.output
    old, new = moved.read_text(encoding="utf-8"), project.log_file.read_text(encoding="utf-8")
    assert "✓ Token saved to:" in old and "✓ Token saved to:" not in new
    assert "✓ Post-refresh hook finished." in new
    assert "✓ Every configured session holds a fresh token (exit code 0)." in new
    assert "Post-refresh hook finished" not in old
    assert owner_only(project.log_file)
