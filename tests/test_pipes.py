"""What the commands print, for a reader: a pipe whose reader went away, help texts, the demo.

``xts_token_refresh.py | head -1`` and friends: the reader closes the pipe after one line (or
before the first), so every later write fails with EPIPE. The run must not notice: no
traceback, no ``--- Logging error ---``, no ``Exception ignored ... BrokenPipeError`` at
shutdown, the same exit code as without the pipe, the tokens saved and the log file complete.
Each run is the real script (or the cron wrapper) as a subprocess in cron's bare environment,
started from ``/``, against the bundled simulator. The last tests read the help of every
command and the demo's transcript.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    APP_DIR,
    CRON_PATH,
    PYTHON,
    SCRIPT,
    USER_ID,
    WRAPPER,
    Project,
    assert_no_secrets,
    token_json,
)

from xts_refresher.cli import COMMANDS

NOISE = (
    "Traceback",
    "Logging error",
    "Exception ignored",
    "BrokenPipe",
    "Broken pipe",
    "write error",
    "Unexpected error",
)
CLOSING_LINE = "✓ Every configured session holds a fresh token"
WRONG_SECRET = "is-FAKE-Wr0ngS3cret-not-the-real-one"
# When the reader goes away: before the first line, or after reading one line.
READERS = {"closed-at-once": 0, "after-one-line": 1}


@dataclass
class PipedRun:
    """A finished run whose standard output went into a pipe the reader closed early."""

    code: int
    first_lines: list[str]
    stderr: str


def run_into_closed_pipe(
    argv: Sequence[str],
    *,
    lines: int,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> PipedRun:
    """Run ``argv`` cron-style with stdout a pipe whose read end is closed after ``lines``
    lines (0: before the program writes anything), and wait for it to finish."""
    read_end, write_end = os.pipe()
    with subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=write_end,
        stderr=subprocess.PIPE,
        env={"PATH": CRON_PATH, **(env or {})},
        cwd="/",
    ) as process:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as reader:
            first = [reader.readline().decode("utf-8", "replace") for _ in range(lines)]
        # The read end is closed now: every later write of the program gets EPIPE.
        _, stderr = process.communicate(timeout=timeout)
    return PipedRun(process.returncode, first, stderr.decode("utf-8", "replace"))


def through_head(command: Sequence[str], *, env: Mapping[str, str]) -> tuple[int, str, str]:
    """``command | head -1`` in bash: the command's own exit code, head's line, and stderr."""
    quoted = " ".join(shlex.quote(word) for word in command)
    done = subprocess.run(
        ["/bin/bash", "-c", f'{quoted} | head -1; echo "exit=${{PIPESTATUS[0]}}"'],
        env={"PATH": CRON_PATH, **env},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    head, _, code = done.stdout.rpartition("exit=")
    return int(code), head, done.stderr


def assert_quiet(stderr: str, *, empty: bool = True) -> None:
    """No traceback or pipe error on stderr (and, where nothing else belongs there, nothing)."""
    for noise in NOISE:
        assert noise not in stderr, f"{noise!r} on stderr:\n{stderr}"
    if empty:
        assert stderr == "", stderr


def assert_refreshed(project: Project) -> None:
    """The token file holds the simulator's newest token (mode 0600), and the log is complete."""
    saved = token_json(project.token_file)
    assert saved["token"] == project.sim.issued_tokens("interactive")[-1]
    assert saved["userID"] == USER_ID
    assert stat.S_IMODE(project.token_file.stat().st_mode) == 0o600
    log = project.log_file.read_text(encoding="utf-8")
    assert f"{CLOSING_LINE} (exit code 0)." in log
    assert "Traceback" not in log


def script(project: Project, *args: str) -> list[str]:
    """The argv that runs the script with ``args`` and the project's settings file."""
    return [PYTHON, str(SCRIPT), *args, "--env-file", str(project.write_env())]


def venv_override() -> dict[str, str]:
    """XTS_VENV for a checkout without .venv/venv (tests then run with pytest's virtualenv)."""
    if any((APP_DIR / name / "bin" / "python").exists() for name in (".venv", "venv")):
        return {}
    return {"XTS_VENV": sys.prefix}


# -- refresh ------------------------------------------------------------------------------------


@pytest.mark.parametrize("lines", READERS.values(), ids=list(READERS))
def test_refresh_into_a_closed_pipe_saves_and_exits_0(project: Project, lines: int) -> None:
    """``xts_token_refresh.py | head -1``: the refresh logs in, saves the token, writes its
    whole log (the closing ✓ line), exits 0, and says nothing about the pipe on stderr."""
    done = run_into_closed_pipe(script(project), lines=lines)

    assert done.code == 0, done.stderr
    assert_quiet(done.stderr)
    assert project.sim.count("interactive_login") == 1
    assert_refreshed(project)
    if lines:
        assert done.first_lines[0].startswith("=====")
    assert_no_secrets(project, done.stderr, *done.first_lines, project.log_file.read_text())


@pytest.mark.parametrize("lines", READERS.values(), ids=list(READERS))
def test_refused_login_into_a_closed_pipe_keeps_exit_1(project: Project, lines: int) -> None:
    """A refused login exits 1 into a closed pipe, as it does without one, and the log file
    still gets the ✗ line."""
    project.settings["XTS_INTERACTIVE_API_SECRET"] = WRONG_SECRET
    without_pipe = project.run()
    assert without_pipe.code == 1, without_pipe.output
    project.log_file.unlink()

    done = run_into_closed_pipe(script(project), lines=lines)

    assert done.code == without_pipe.code
    assert_quiet(done.stderr)
    log = project.log_file.read_text(encoding="utf-8")
    assert "✗ Token refresh failed (exit code 1)" in log
    assert not project.token_file.exists()
    assert_no_secrets(project, done.stderr, log)
    assert WRONG_SECRET not in done.stderr + log


def test_refresh_piped_into_head(project: Project) -> None:
    """The real thing, ``bash -c 'xts_token_refresh.py | head -1'``: head shows the first
    line, the refresh still exits 0 (``PIPESTATUS``) and saves, stderr stays empty."""
    code, head, stderr = through_head(script(project), env={})

    assert code == 0, stderr
    assert head.startswith("=====")
    assert_quiet(stderr)
    assert_refreshed(project)
    assert_no_secrets(project, head, stderr)


# -- the other commands -------------------------------------------------------------------------


@pytest.mark.parametrize("lines", READERS.values(), ids=list(READERS))
def test_check_config_into_a_closed_pipe(project: Project, lines: int) -> None:
    """``check-config | head -1`` exits 0 and is quiet."""
    done = run_into_closed_pipe(script(project, "check-config"), lines=lines)

    assert done.code == 0, done.stderr
    assert_quiet(done.stderr)
    if lines:
        assert done.first_lines[0].startswith("✓ Settings are valid")
    assert project.sim.count("interactive_login") == 0


@pytest.mark.parametrize("lines", READERS.values(), ids=list(READERS))
def test_status_into_a_closed_pipe(project: Project, lines: int) -> None:
    """``status | head -1`` (status prints with print()) keeps its exit code: 1 before any
    refresh, 0 after one; ``status --json`` into a closed pipe exits 0 too."""
    missing = run_into_closed_pipe(script(project, "status"), lines=lines)
    assert missing.code == 1, missing.stderr
    assert_quiet(missing.stderr)

    assert project.run().code == 0

    fresh = run_into_closed_pipe(script(project, "status"), lines=lines)
    assert fresh.code == 0, fresh.stderr
    assert_quiet(fresh.stderr)
    if lines:
        assert fresh.first_lines[0].startswith("✓ interactive")
    as_json = run_into_closed_pipe(script(project, "status", "--json"), lines=lines)
    assert as_json.code == 0, as_json.stderr
    assert_quiet(as_json.stderr, empty=False)  # the console lines go to stderr with --json
    assert_no_secrets(project, missing.stderr, fresh.stderr, as_json.stderr, *fresh.first_lines)


@pytest.mark.parametrize("lines", READERS.values(), ids=list(READERS))
def test_demo_into_a_closed_pipe_exits_0(lines: int) -> None:
    """``demo | head -1`` is a complete demo still: exit 0, not 4 ("a bug"), and quiet."""
    done = run_into_closed_pipe([PYTHON, str(SCRIPT), "demo"], lines=lines, timeout=60)

    assert done.code == 0, done.stderr
    assert_quiet(done.stderr)
    if lines:
        assert done.first_lines[0].startswith("Demo: the bundled XTS simulator")


@pytest.mark.parametrize(
    "args", [["cron", "print"], ["--help"], ["status", "--help"]], ids=["cron", "help", "status-h"]
)
def test_printing_commands_into_a_closed_pipe(args: list[str]) -> None:
    """``cron print`` and ``--help`` print with print() and argparse: exit 0 into a closed
    pipe, and only cron's own ``#`` notes on stderr."""
    done = run_into_closed_pipe([PYTHON, str(SCRIPT), *args], lines=0, env={"TZ": "UTC"})

    assert done.code == 0, done.stderr
    assert_quiet(done.stderr, empty=args[0] != "cron")
    if args[0] == "cron":
        assert all(line.startswith("# ") for line in done.stderr.splitlines()), done.stderr


def test_missing_packages_into_a_closed_pipe_keep_exit_2() -> None:
    """Started by a Python without requests (``-S``: no site-packages) and no virtualenv to
    continue in, the script says so and exits 2, into a closed pipe too, without a traceback."""
    done = run_into_closed_pipe([PYTHON, "-S", str(SCRIPT)], lines=0, env={"XTS_REEXECUTED": "1"})

    assert done.code == 2, done.stderr
    assert_quiet(done.stderr)


# -- the cron wrapper ---------------------------------------------------------------------------


@pytest.mark.parametrize("lines", READERS.values(), ids=list(READERS))
def test_wrapper_into_a_closed_pipe_still_refreshes(
    project: Project, tmp_path: Path, lines: int
) -> None:
    """``refresh_xts_token.sh | head -1``: the wrapper's own echo lines fail with EPIPE, yet it
    neither dies of SIGPIPE nor stops under ``set -e``: it runs the refresh and exits 0."""
    argv = [str(WRAPPER), "--env-file", str(project.write_env())]
    env = {"HOME": str(tmp_path), **venv_override()}

    done = run_into_closed_pipe(argv, lines=lines, env=env)

    assert done.code == 0, done.stderr
    assert_quiet(done.stderr)
    assert project.sim.count("interactive_login") == 1
    assert_refreshed(project)
    if lines:
        assert done.first_lines[0].startswith("=====")


def test_wrapper_piped_into_head_keeps_the_failure_code(project: Project, tmp_path: Path) -> None:
    """``bash -c 'refresh_xts_token.sh | head -1'`` with a refused login: the wrapper exits 1,
    as it does without the pipe, quietly; with good settings it exits 0 and saves."""
    env = {"HOME": str(tmp_path), **venv_override()}
    good_env = project.folder / "good.env"
    shutil.copy2(project.write_env(), good_env)
    good = [str(WRAPPER), "--env-file", str(good_env)]
    project.settings["XTS_INTERACTIVE_API_SECRET"] = WRONG_SECRET
    refused = [str(WRAPPER), "--env-file", str(project.write_env())]

    code, head, stderr = through_head(refused, env=env)
    assert code == 1, stderr
    assert head.startswith("=====")
    assert_quiet(stderr)
    assert not project.token_file.exists()

    code, head, stderr = through_head(good, env=env)
    assert code == 0, stderr
    assert_quiet(stderr)
    assert_refreshed(project)
    assert_no_secrets(project, head, stderr)


# -- help texts ---------------------------------------------------------------------------------

DESCRIBED = {
    "refresh": "save",
    "status": "never logs in",
    "check-config": "without logging in",
    "login": "broker's login page",
    "cron": "crontab",
    "systemd": "timer",
    "demo": "simulator",
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_description(command: str) -> None:
    """``xts_token_refresh.py <command> --help`` explains the command under its usage line,
    before the list of arguments."""
    done = subprocess.run(
        [PYTHON, str(SCRIPT), command, "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": CRON_PATH, "COLUMNS": "100"},
        cwd="/",
    )

    assert done.returncode == 0, done.stderr
    description = done.stdout.split("\n\n")[1]
    assert not re.match(r"(positional arguments|options|optional arguments|files)", description)
    assert DESCRIBED[command] in " ".join(description.split()), done.stdout


# -- the demo's transcript ----------------------------------------------------------------------


def test_demo_shows_what_the_user_can_repeat() -> None:
    """The demo says its folder goes away when it ends (and it has), and shows the token file
    as what the file holds, not as a ``$ cat`` the user could not repeat; exit 0."""
    done = subprocess.run(
        [PYTHON, str(SCRIPT), "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": CRON_PATH},
        cwd="/",
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "$ cat" not in done.stdout
    found = re.search(r"temporary folder (\S+?),? which is removed when the demo ends", done.stdout)
    assert found is not None, done.stdout
    folder = Path(found.group(1))
    assert folder.is_absolute()
    assert not folder.exists()
    assert f"The token file {folder / 'xts_store_token.json'} holds" in done.stdout
    assert '"token": "' in done.stdout
