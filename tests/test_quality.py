"""The code checks the project promises: ruff (lint and format) and mypy --strict."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import APP_DIR, skip_or_fail


def tool(name: str) -> str:
    """The path of a checker installed beside this Python (the dev requirements)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        skip_or_fail(f"{name} is not installed (pip install -r requirements-dev.txt)")
    assert found is not None
    return found


def check(*argv: str) -> None:
    """Run a checker in the project folder and fail with its output when it complains."""
    done = subprocess.run(argv, cwd=APP_DIR, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_lint_is_clean() -> None:
    """ruff finds nothing to complain about."""
    check(tool("ruff"), "check", ".")


def test_ruff_format_is_clean() -> None:
    """Every Python file is formatted as ruff formats it."""
    check(tool("ruff"), "format", "--check", ".")


@pytest.mark.slow
def test_mypy_strict_is_clean() -> None:
    """mypy --strict passes on the program and the tests."""
    check(tool("mypy"))
