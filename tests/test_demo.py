"""``demo``: a refresh against the bundled simulator, for a first look without a broker.

It needs no settings file (and never reads one), ignores proxies, runs in cron's bare
environment and leaves nothing behind in the program's folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from conftest import APP_DIR, PYTHON, SCRIPT, copy_program, run_process

from xts_refresher.simulator import (
    DEMO_INTERACTIVE_SECRET,
    DEMO_MARKETDATA_SECRET,
    THIRDPARTY_INTERACTIVE_SECRET,
    THIRDPARTY_MARKETDATA_SECRET,
    THIRDPARTY_PASSWORD,
    THIRDPARTY_TOTP_SECRET,
    THIRDPARTY_USER_ID,
)

JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# The simulator's login page hands over access tokens of 40 hexadecimal digits.
ACCESS_TOKEN_SHAPE = re.compile(r"(?<![0-9a-f])[0-9a-f]{40}(?![0-9a-f])")


CONTRACT_LINES = (
    "XTS Token Refresh Cron Job Started",
    "Starting XTS token refresh process...",
    "✓ XTS token refreshed successfully!",
    "✓ Token saved to: ",
)


CACHE_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def tree(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` (caches and virtualenv aside) with its size."""
    files: dict[str, int] = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in CACHE_DIRS]
        for name in names:
            path = Path(root, name)
            files[str(path.relative_to(folder))] = path.lstat().st_size
    return files


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


def test_demo_browser_signs_the_holder_in_through_the_page_and_saves_the_token() -> None:
    """``demo --browser`` under cron's bare environment: the refresh of an account whose holder
    signs in on the broker's page prints the login link and waits; the scripted holder signs
    in on the simulator's page (password and TOTP) and the page hands the session to the return
    URL; the token is saved for the holder's user and the run exits 0. No secret, password,
    TOTP secret, access token or whole token is shown, and nothing is left behind."""
    before = tree(APP_DIR)

    done = run_process([PYTHON, str(SCRIPT), "demo", "--browser"], timeout=90)

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    link = re.search(r"Open this link to log in \S+: (\S+)", done.stdout)
    assert link is not None, output
    assert "/interactive/thirdparty?appKey=" in link[1]
    assert "returnURL=http%3A%2F%2F127.0.0.1%3A" in link[1]
    assert f"is logged in as {THIRDPARTY_USER_ID}" in done.stdout
    assert "✓ interactive  fresh" in done.stdout
    assert "✓ Demo complete" in done.stdout
    assert f'"userID": "{THIRDPARTY_USER_ID}"' in done.stdout
    for secret in (
        THIRDPARTY_INTERACTIVE_SECRET,
        THIRDPARTY_MARKETDATA_SECRET,
        THIRDPARTY_PASSWORD,
        THIRDPARTY_TOTP_SECRET,
    ):
        assert secret not in output
    assert not JWT_SHAPE.search(output)
    assert not ACCESS_TOKEN_SHAPE.search(output)
    assert set(tree(APP_DIR)) == set(before)
