"""What a new user's trial found: each defect, run through the real script as cron runs it.

- ``--if-needed --verify`` puts a stored token to XTS before keeping it, and renews a rejected
  one (a broker restart, a login elsewhere) without touching one XTS accepts.
- A refresh proves each token file writable before it sends any login: a market-data login
  ends the previous market-data session, so a token that cannot be saved must not be asked for.
- A run waiting for the lock says so, and names the holder.
- ``status`` warns about an exposed ``.env`` too; a missing ``.env`` is named with its absolute
  path and how to create it; ``load_token`` resolves a relative path beside the script.
- Messages say "market-data", never "marketdata".

The permission cases that root passes anyway (a read-only folder) run as an unprivileged user
in ``test_unprivileged.py``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    PYTHON,
    SCRIPT,
    USER_ID,
    Project,
    assert_no_secrets,
    copy_program,
    run_process,
    skip_or_fail,
    token_json,
)

from xts_refresher.simulator import Fault


def logins(project: Project, session: str) -> int:
    """How many logins of ``session`` reached the simulator."""
    return project.sim.count(f"{session}_login")


def checks(project: Project, session: str) -> int:
    """How many token checks of ``session`` reached the simulator."""
    route = "interactive_balance" if session == "interactive" else "marketdata_config"
    return project.sim.count(route)


def both_refreshed(project: Project) -> tuple[bytes, bytes]:
    """Refresh both sessions; the two token files' bytes."""
    project.with_marketdata()
    run = project.run()
    assert run.code == 0, run.output
    project.sim.clear()
    return project.token_file.read_bytes(), project.md_token_file.read_bytes()


# -- 1. --if-needed --verify -------------------------------------------------------------------


def test_if_needed_verify_renews_a_token_xts_rejects_and_keeps_the_one_it_accepts(
    project: Project,
) -> None:
    """The broker forgot the interactive token (a restart): ``--if-needed --verify`` checks both
    stored tokens, logs in to the interactive session only, saves and verifies the new token,
    and leaves the accepted market-data token (and the bot streaming with it) alone."""
    interactive_before, marketdata_before = both_refreshed(project)
    project.sim.invalidate_tokens("interactive")

    run = project.run("--if-needed", "--verify")

    assert run.code == 0, run.output
    assert logins(project, "interactive") == 1
    assert logins(project, "marketdata") == 0
    assert checks(project, "interactive") == 2  # the stored token, then the new one
    assert checks(project, "marketdata") == 1
    assert "Logging in to the interactive session: XTS rejected the interactive token" in (
        run.stdout
    )
    assert "e-session-0007" in run.stdout
    assert "XTS accepts it; no login needed" in run.stdout
    assert project.token_file.read_bytes() != interactive_before
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]
    assert project.md_token_file.read_bytes() == marketdata_before
    assert run.stdout.splitlines()[-1].startswith("✓ Every configured session holds a fresh")


def test_if_needed_verify_keeps_accepted_tokens_without_any_login(project: Project) -> None:
    """Tokens XTS accepts are kept: one check each, no login, the files byte for byte."""
    interactive_before, marketdata_before = both_refreshed(project)

    run = project.run("--if-needed", "--verify")

    assert run.code == 0, run.output
    assert logins(project, "interactive") + logins(project, "marketdata") == 0
    assert checks(project, "interactive") == checks(project, "marketdata") == 1
    assert project.token_file.read_bytes() == interactive_before
    assert project.md_token_file.read_bytes() == marketdata_before


def test_if_needed_verify_with_xts_unable_to_answer_keeps_the_token_and_exits_3(
    project: Project,
) -> None:
    """When XTS cannot answer the check (502 pages), the stored token is kept, no login is
    sent (it would likely fail too, and cut off a streaming bot), and the run exits 3."""
    before = project.run()
    assert before.code == 0
    previous = project.token_file.read_bytes()
    project.sim.clear()
    project.sim.add_fault("interactive_balance", Fault.html(502), 10)

    run = project.run("--if-needed", "--verify")

    assert run.code == 3, run.output
    assert logins(project, "interactive") == 0
    assert "could not be checked with XTS" in run.stdout
    assert "it was kept, and no login was sent" in run.stdout
    assert run.stdout.splitlines()[-1].startswith("✗ Token refresh failed (exit code 3)")
    assert project.token_file.read_bytes() == previous


# -- 2. writability before any login -----------------------------------------------------------


def chattr(flag: str, path: Path) -> None:
    """Set (``+i``) or clear (``-i``) an attribute; skip (fail under CI) where that cannot be."""
    tool = shutil.which("chattr") or "/usr/bin/chattr"
    done = subprocess.run([tool, flag, str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        skip_or_fail(f"chattr {flag} does not work here: {done.stderr.strip()}")


@pytest.fixture
def attributes_cleared(project: Project) -> Iterator[list[Path]]:
    """Paths whose immutable/append-only flags the test sets; cleared afterwards."""
    flagged: list[Path] = []
    yield flagged
    for path in flagged:
        subprocess.run(["chattr", "-i", "-a", str(path)], capture_output=True, check=False)


@pytest.mark.system
def test_an_immutable_marketdata_file_gets_no_login_and_the_other_session_still_refreshes(
    project: Project, attributes_cleared: list[Path]
) -> None:
    """``chattr +i`` on the market-data token file: no market-data login goes out (the live
    market-data session stays alive), exit 4 with a message naming the file and saying the
    current token still works; the interactive session, whose file is fine, is refreshed."""
    interactive_before, marketdata_before = both_refreshed(project)
    chattr("+i", project.md_token_file)
    attributes_cleared.append(project.md_token_file)

    run = project.run()

    assert run.code == 4, run.output
    assert logins(project, "marketdata") == 0
    assert logins(project, "interactive") == 1
    assert f"Cannot write the token file {project.md_token_file}" in run.stdout
    assert "immutable" in run.stdout
    assert "No market-data login was sent, so the current market-data token still works" in (
        run.stdout
    )
    assert project.md_token_file.read_bytes() == marketdata_before
    assert project.token_file.read_bytes() != interactive_before
    assert [p.name for p in project.folder.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.system
def test_an_append_only_folder_is_found_before_any_login(
    project: Project, attributes_cleared: list[Path]
) -> None:
    """In an append-only folder (``chattr +a``) a file can be created but never renamed over:
    the probe file cannot be removed, so the run stops before the login, exit 4."""
    folder = project.folder / "tokens"
    folder.mkdir()
    project.settings["XTS_TOKEN_FILE"] = str(folder / "xts_store_token.json")
    project.settings["XTS_DEADLINE"] = "20"
    (folder / "xts_store_token.json.lock").touch()  # the lock file of an earlier run
    chattr("+a", folder)
    attributes_cleared.append(folder)

    run = project.run()

    assert run.code == 4, run.output
    assert logins(project, "interactive") == 0
    assert f"cannot remove a file from {folder}" in run.stdout
    assert run.stdout.splitlines()[-1].startswith("✗ Token refresh failed (exit code 4)")


@pytest.mark.system
def test_disk_full_after_a_marketdata_login_says_the_previous_token_is_dead(
    project: Project,
) -> None:
    """ENOSPC while saving the market-data token (the probe file fits, the token does not):
    exit 4, and the message says plainly that the previous market-data token no longer works,
    since the login that was just made ended its session."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        skip_or_fail("a full-disk test needs root and unshare (util-linux) to mount a tmpfs")
    assert unshare is not None
    project.with_marketdata()
    mount = project.folder / "small"
    mount.mkdir()
    project.settings["XTS_MARKETDATA_TOKEN_FILE"] = str(mount / "xts_marketdata_token.json")
    env_file = project.write_env()
    script = f"""
set -eu
mount -t tmpfs -o size=64k tmpfs {mount}
dd if=/dev/zero of={mount}/filler bs=1k count=1000 2>/dev/null || true
set +e
{PYTHON} {SCRIPT} --env-file {env_file}
echo "exit=$?"
"""
    done = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "sh", "-c", script],
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "mount: " in done.stderr and "permission denied" in done.stderr.lower():
        skip_or_fail(f"tmpfs cannot be mounted here: {done.stderr.strip()}")
    assert "exit=4" in done.stdout, done.stdout + done.stderr
    assert logins(project, "marketdata") == 1
    assert "No space left on device" in done.stdout
    assert "that token no longer works: this login ended its session" in done.stdout
    assert "the previous token is kept" not in done.stdout
    assert token_json(project.token_file)["userID"] == USER_ID  # interactive was saved
    assert_no_secrets(project, done.stdout, done.stderr)


# -- 6. waiting for the lock -------------------------------------------------------------------


def test_a_run_waiting_for_the_lock_says_so_and_names_the_holder(project: Project) -> None:
    """Another run holds the lock for a second: this run says it waits, for which pid and how
    long at most, then takes the lock and refreshes (exit 0)."""
    lock_path = Path(f"{project.token_file}.lock")
    with lock_path.open("w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        holder.write("pid 515151 since 2024-10-13 09:00:00\n")
        holder.flush()
        timer = threading.Timer(1.5, lambda: fcntl.flock(holder, fcntl.LOCK_UN))
        timer.start()
        try:
            run = project.run()
        finally:
            timer.cancel()
    assert run.code == 0, run.output
    assert (
        f"Another refresh (pid 515151 since 2024-10-13 09:00:00) holds the lock {lock_path}; "
        "waiting up to 60 s for it to finish." in run.stdout
    )
    assert "waiting up to" in run.log
    assert logins(project, "interactive") == 1


# -- 7. rough edges ----------------------------------------------------------------------------


def test_status_warns_about_an_exposed_env_file_on_stderr_with_json(project: Project) -> None:
    """``status`` repeats the warning every run gives while .env is readable by others; with
    ``--json`` the warning goes to stderr and stdout stays pure JSON."""
    assert project.run().code == 0
    env_file = project.write_env()
    env_file.chmod(0o644)
    argv = [PYTHON, str(SCRIPT), "status", "--env-file", str(env_file)]

    text = run_process(argv)
    document = run_process([*argv, "--json"])

    warning = f"⚠ {env_file} can be read by other users: run `chmod 600 {env_file}`."
    assert text.returncode == 0, text.stdout + text.stderr
    assert warning in text.stdout
    assert document.returncode == 0
    assert warning in document.stderr
    assert json.loads(document.stdout)["ok"] is True


@pytest.fixture
def copied_project(tmp_path: Path) -> Path:
    """A copy of the program (script and package) in a fresh folder with no .env in it."""
    return copy_program(tmp_path / "refresher")


def test_a_missing_env_file_is_named_with_its_absolute_path_and_how_to_create_it(
    copied_project: Path,
) -> None:
    """With no .env and nothing in the environment, the run says the settings file does not
    exist (its absolute path) and how to create it, not only "XTS_API_ROOT is not set"."""
    env_file = copied_project / ".env"
    log = copied_project / "xts_token_refresh.log"

    done = run_process([PYTHON, str(copied_project / SCRIPT.name)])

    assert done.returncode == 2, done.stdout + done.stderr
    assert f"The settings file {env_file} does not exist" in done.stdout
    assert f"{copied_project / 'refresh_xts_token.sh'} --setup" in done.stdout
    assert "copies .env.example" in done.stdout
    assert done.stdout.splitlines()[-1].startswith("✗")
    assert log.exists()  # a cron run's configuration error is in its log too


def test_load_token_resolves_a_relative_path_beside_the_script(
    project: Project, copied_project: Path
) -> None:
    """``load_token("name.json")`` reads the file beside the script whatever the current folder
    (cron starts in $HOME), as the refresher does; its errors show the absolute path."""
    assert project.run().code == 0
    shutil.copy2(project.token_file, copied_project / "bot_token.json")
    code = (
        "from xts_token_refresh import load_token, TokenUnavailableError\n"
        "print(load_token('bot_token.json').user_id)\n"
        "try:\n"
        "    load_token('no_such.json')\n"
        "except TokenUnavailableError as exc:\n"
        "    print(exc.path)\n"
        "    print(exc)\n"
    )
    done = run_process(
        [PYTHON, "-c", code], env={"PYTHONPATH": str(copied_project)}, cwd=str(Path.home())
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == USER_ID
    assert lines[1] == str(copied_project / "no_such.json")
    assert str(copied_project / "no_such.json") in lines[2]


def test_messages_say_market_data_not_marketdata(project: Project) -> None:
    """Console lines name the session "market-data" (file names and the JSON keep their
    identifiers): a refresh, a refused market-data login, and a rejected stored token."""
    project.with_marketdata()
    first = project.run()
    assert first.code == 0
    project.sim.invalidate_tokens("marketdata")
    renewed = project.run("--if-needed", "--verify")
    assert renewed.code == 0, renewed.output
    project.settings["XTS_MARKETDATA_API_SECRET"] = "ms-FAKE-wrong-secret-Kq71"
    refused = project.run()
    assert refused.code == 1
    assert "XTS refused the market-data login" in refused.stdout
    assert "Logging in to the market-data session: XTS rejected the market-data token" in (
        renewed.stdout
    )
    for run in (first, renewed, refused):
        text = run.stdout.replace(str(project.md_token_file), "FILE")
        text = text.replace("XTS_MARKETDATA", "VARIABLE")
        assert "marketdata" not in text, text


def test_status_does_not_call_a_stored_token_new(project: Project) -> None:
    """A stored token that XTS rejects is reported as such, with what to do, and is never
    "the new token" (which is what a refresh's --verify checks)."""
    assert project.run().code == 0
    project.sim.invalidate_tokens()
    run = project.run("status", "--verify")
    assert run.code == 1
    assert "new token" not in run.output
    assert "Run `xts_token_refresh.py` to log in again." in run.stdout
    assert "NOT accepted" in run.stdout
