"""``refresh_xts_token.sh``, the cron wrapper, run the way cron runs it.

Every run has cron's bare environment (``env -i PATH=/usr/bin:/bin HOME=<tmp>``, started from
``/``), sometimes through a chain of symlinks, with LANG unset or ``LC_ALL=C``. The wrapper
must find its folder and virtualenv by itself, print the banner users grep for, pass every
argument on and exit with the program's exact code. Tests that break the installation
(no virtualenv, no packages, ``--setup``) work on a copy of the project in ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import (
    APP_DIR,
    PYTHON,
    SECRETS,
    USER_ID,
    WRAPPER,
    Project,
    assert_no_secrets,
    closed_port,
    copy_program,
    run_process,
    token_json,
)

from xts_refresher.simulator import Fault

LOCALES: dict[str, dict[str, str]] = {"LANG-unset": {}, "LC_ALL=C": {"LC_ALL": "C"}}
BANNER = (
    "==================================================",
    "XTS Token Refresh - ",
    "✓ Virtual environment activated",
    "Python version: Python 3.",
    "✓ Required packages found",
    "Running XTS token refresh script...",
)
SUCCESS_LINE = "✓ Token refresh completed successfully (exit code: 0)"
RULE = "=" * 50
THIN_RULE = "-" * 50
# What users read on the closing line of a failed run, written out (the program says it).
# {broker} is the simulator's host and port, {file} the settings file the run was given.
CLOSING_MEANINGS = {
    1: "broker {broker}: XTS refused the login: check the API key, secret and XTS_USER_ID in "
    "{file}",
    2: "usage, settings or a missing dependency: see the message above",
    3: "broker {broker}: XTS unreachable or failing after the retries: check the network and "
    "the broker (XTS_API_ROOT in {file})",
    5: "tokens saved, but the post-refresh hook failed",
}
WRONG_SECRET = "is-FAKE-Wr0ngS3cret-not-the-real-one"
PREVIOUS_TOKEN = b'{"token": "previous-run-token", "userID": "CK68"}\n'
PROJECT_FILES = ("xts_token_refresh.py", "refresh_xts_token.sh", "requirements.txt", ".env.example")
# The network settings an operator's shell would have; --setup's pip needs them to reach PyPI.
PASSED_THROUGH = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")


def venv_override() -> dict[str, str]:
    """XTS_VENV for a checkout without .venv/venv (tests then run with pytest's virtualenv)."""
    if any((APP_DIR / name / "bin" / "python").exists() for name in (".venv", "venv")):
        return {}
    return {"XTS_VENV": sys.prefix}


def run_wrapper(
    wrapper: Path | str,
    *args: str,
    home: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``wrapper`` with ``args`` under ``env -i PATH=/usr/bin:/bin HOME=home`` from ``/``."""
    return run_process(
        [str(wrapper), *args],
        env={"HOME": str(home), **venv_override(), **(env or {})},
        timeout=timeout,
    )


def output_of(done: subprocess.CompletedProcess[str]) -> str:
    """stdout and stderr together."""
    return done.stdout + done.stderr


def assert_clean(project: Project, done: subprocess.CompletedProcess[str]) -> None:
    """No fake secret, wrong secret or issued token appears in the run's output or log."""
    log = project.log_file.read_text(encoding="utf-8") if project.log_file.exists() else ""
    assert_no_secrets(project, output_of(done), log)
    assert WRONG_SECRET not in output_of(done) + log


def symlink_chain(folder: Path) -> Path:
    """``folder/bin/xts-refresh`` -> ``refresh`` (relative) -> the real wrapper (absolute)."""
    links = folder / "bin"
    links.mkdir()
    (links / "refresh").symlink_to(WRAPPER)
    (links / "xts-refresh").symlink_to("refresh")
    return links / "xts-refresh"


def env_file_with_space(project: Project) -> Path:
    """The project's settings, written to a path with a space in it (mode 600)."""
    folder = project.folder / "my settings"
    folder.mkdir(exist_ok=True)
    path = folder / "broker settings.env"
    shutil.copyfile(project.write_env(), path)
    path.chmod(0o600)
    return path


def copy_project(destination: Path) -> Path:
    """A copy of the project's program files (no virtualenv, no .env) in ``destination``."""
    return copy_program(destination, *PROJECT_FILES)


def empty_venv(folder: Path) -> Path:
    """A virtualenv with no packages at all (not even pip)."""
    done = subprocess.run(
        [PYTHON, "-m", "venv", "--without-pip", str(folder)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return folder


def arrange(project: Project, scenario: str) -> tuple[int, int]:
    """Set the simulator and settings up for ``scenario``; (exit code, logins XTS should see)."""
    if scenario == "refused":
        project.settings["XTS_INTERACTIVE_API_SECRET"] = WRONG_SECRET
        return 1, 1
    if scenario == "bad-setting":
        project.settings["XTS_VERIFY_SSL"] = "maybe"
        return 2, 0
    if scenario == "xts-failing":
        project.settings["XTS_RETRIES"] = "1"
        project.sim.add_fault("interactive_login", Fault.html(503), times=10)
        return 3, 2
    if scenario == "hook-fails":
        project.settings["XTS_POST_REFRESH_HOOK"] = "exit 9"
        return 5, 1
    return 0, 1


def test_the_closing_line_names_each_failed_accounts_broker_and_file(
    project: Project, tmp_path: Path
) -> None:
    """Three account files: alice fresh, bob's key refused, carol's broker down. The wrapper's
    closing line names bob and carol, each with the broker and the account's own file to fix
    (never ".env"), and not alice; the exit code is the highest."""
    down = f"127.0.0.1:{closed_port()}"
    accounts = project.with_accounts(
        "alice",
        "bob",
        "carol",
        bob={"XTS_INTERACTIVE_API_SECRET": WRONG_SECRET},
        carol={"XTS_API_ROOT": f"http://{down}"},
    )
    project.settings.update(XTS_RETRIES="0")
    env_file = project.write_env()

    done = run_wrapper(WRAPPER, "--env-file", str(env_file), home=tmp_path)

    out = output_of(done)
    assert done.returncode == 3, out
    assert_clean(project, done)
    broker = urlsplit(project.sim.url).netloc
    closing = done.stdout.splitlines()[-2]
    assert closing == (
        "✗ Token refresh failed (exit code: 3): "
        f"bob: broker {broker}: XTS refused the login: check the API key, secret and "
        f"XTS_USER_ID in {accounts / 'bob.env'}; "
        f"carol: broker {down}: XTS unreachable or failing after the retries: check the network "
        f"and the broker (XTS_API_ROOT in {accounts / 'carol.env'})"
    ), out
    assert "alice" not in closing


def test_the_closing_line_tells_a_browser_account_to_sign_in_not_to_check_its_key(
    project: Project, tmp_path: Path
) -> None:
    """Two account files: alice fresh, dora a browser account (XTS_LOGIN=browser) with no way
    to its session in a refresh. The program exits 1 at once; the wrapper's closing line names
    dora's broker and the login command her holder runs, not a refused key; nothing of dora's
    was sent to XTS."""
    accounts = project.with_accounts("alice", "dora", dora={"XTS_LOGIN": "browser"})
    env_file = project.write_env()

    done = run_wrapper(WRAPPER, "--env-file", str(env_file), home=tmp_path)

    out = output_of(done)
    assert done.returncode == 1, out
    assert_clean(project, done)
    broker = urlsplit(project.sim.url).netloc
    closing = done.stdout.splitlines()[-2]
    assert closing == (
        "✗ Token refresh failed (exit code: 1): "
        f"dora: broker {broker}: its holder must sign in on the broker's page: run "
        "xts_token_refresh.py login --account dora (a refused key or user: check them in "
        f"{accounts / 'dora.env'})"
    ), out
    assert not (accounts / "dora" / "xts_store_token.json").exists()
    assert len(project.sim.requests()) == 1  # alice's login alone


@pytest.mark.parametrize("locale", LOCALES.values(), ids=list(LOCALES))
@pytest.mark.parametrize("how", ["direct", "symlink"])
@pytest.mark.parametrize(
    "scenario", ["success", "refused", "bad-setting", "xts-failing", "hook-fails"]
)
def test_exit_code_propagates(
    project: Project, tmp_path: Path, scenario: str, how: str, locale: dict[str, str]
) -> None:
    """The wrapper exits with the program's exact code (0, 1, 2, 3, 5) and its closing line
    says what that code means (the program's own words for it, from errors.py).

    Run under cron's bare environment from ``/``, directly or through a relative-then-absolute
    symlink chain, with LANG unset or LC_ALL=C; ``--env-file`` (a path with spaces) is passed
    on intact. A failure leaves the previous token file as it was.
    """
    expected, logins = arrange(project, scenario)
    env_file = env_file_with_space(project)
    project.token_file.write_bytes(PREVIOUS_TOKEN)
    project.token_file.chmod(0o600)
    wrapper = symlink_chain(tmp_path) if how == "symlink" else WRAPPER

    done = run_wrapper(wrapper, "--env-file", str(env_file), home=tmp_path, env=locale)

    out = output_of(done)
    assert done.returncode == expected, out
    assert_clean(project, done)
    for line in BANNER:
        assert line in done.stdout, f"{line!r} missing from:\n{out}"
    assert f"Working Directory: {APP_DIR}\n" in done.stdout
    assert "\\u" not in out and "\\x" not in out, "a ✓ or ✗ was mangled by the C locale"
    assert project.sim.count("interactive_login") == logins
    if expected == 0:
        assert SUCCESS_LINE in done.stdout
        assert "✓ XTS token refreshed successfully!" in done.stdout
        assert f"✓ Token saved to: {project.token_file}" in done.stdout
        saved = token_json(project.token_file)
        assert saved["token"] == project.sim.issued_tokens("interactive")[-1]
        assert saved["userID"] == USER_ID
        assert stat.S_IMODE(project.token_file.stat().st_mode) == 0o600
        return
    meaning = CLOSING_MEANINGS[expected].format(
        broker=urlsplit(project.sim.url).netloc, file=env_file
    )
    closing = f"✗ Token refresh failed (exit code: {expected}): {meaning}\n"
    assert done.stdout.endswith(f"{THIN_RULE}\n{closing}{RULE}\n"), out
    assert "completed successfully" not in done.stdout
    if scenario == "hook-fails":  # the tokens are saved all the same
        assert (
            token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]
        )
    else:
        assert project.token_file.read_bytes() == PREVIOUS_TOKEN
    if scenario == "bad-setting":
        assert "XTS_VERIFY_SSL must be true or false" in out
    if scenario == "refused":
        assert "XTS refused the login" in done.stdout


@pytest.mark.slow
def test_arguments_are_passed_on(project: Project, tmp_path: Path) -> None:
    """Commands and options reach the program: ``status`` (1, then 0), ``status --json``, ``-h``.

    ``status`` before any refresh exits 1 through the wrapper; after a refresh it exits 0 and
    reports the user; ``--json`` gives the JSON document; ``status`` never logs in. The closing
    line names the command that ran, so a status check is not mistaken for a failed login.
    """
    env_file = str(project.write_env())

    before = run_wrapper(WRAPPER, "status", "--env-file", env_file, home=tmp_path)
    assert before.returncode == 1, output_of(before)
    assert (
        "\n✗ xts_token_refresh.py status failed (exit code: 1): a token is missing, expired or "
        "not accepted: run a refresh\n" in before.stdout
    )
    assert "XTS refused the login" not in before.stdout
    assert "missing" in before.stdout

    refresh = run_wrapper(WRAPPER, "--env-file", env_file, home=tmp_path)
    assert refresh.returncode == 0, output_of(refresh)

    after = run_wrapper(WRAPPER, "status", "--json", "--env-file", env_file, home=tmp_path)
    assert after.returncode == 0, output_of(after)
    report = json.loads(after.stdout)  # with --json, stdout is the JSON alone
    assert report["ok"] is True
    assert report["sessions"][0]["user_id"] == USER_ID
    assert "✓ xts_token_refresh.py status completed successfully (exit code: 0)" in after.stderr
    assert project.sim.count("interactive_login") == 1

    usage = run_wrapper(WRAPPER, "cron", "--help", home=tmp_path)
    assert usage.returncode == 0
    assert "--days" in usage.stdout
    assert "✓ xts_token_refresh.py cron completed successfully (exit code: 0)" in usage.stdout
    for done in (before, refresh, after, usage):
        assert_clean(project, done)


def test_the_header_names_the_zone_of_its_time(project: Project, tmp_path: Path) -> None:
    """The wrapper's header shows the machine's time with its zone's abbreviation, so that in
    cron_output.log it is not taken for a time of XTS_DISPLAY_TZ like the banner's below it."""
    env_file = project.write_env()

    done = run_wrapper(
        WRAPPER, "status", "--env-file", str(env_file), home=tmp_path, env={"TZ": "Asia/Tokyo"}
    )

    header = next(line for line in done.stdout.splitlines() if line.startswith(BANNER[1]))
    assert re.fullmatch(r"XTS Token Refresh - \d{4}-\d\d-\d\d \d\d:\d\d:\d\d JST", header), (
        output_of(done)
    )


def test_a_program_killed_by_a_signal_is_an_unexpected_failure(
    project: Project, tmp_path: Path
) -> None:
    """A program killed with SIGKILL (the kernel's out-of-memory killer, say) exits with a
    code no failure of the program carries: the wrapper exits 137 too and says where to look."""
    project.settings["XTS_POST_REFRESH_HOOK"] = "kill -KILL $PPID"  # the hook's parent: Python

    done = run_wrapper(WRAPPER, "--env-file", str(project.write_env()), home=tmp_path)

    assert done.returncode == 137, output_of(done)
    assert done.stdout.endswith(
        f"{THIN_RULE}\n✗ Token refresh failed (exit code: 137): unexpected failure: see the "
        f"messages above and xts_token_refresh.log\n{RULE}\n"
    ), output_of(done)
    assert project.sim.count("interactive_login") == 1
    assert_clean(project, done)


def test_readable_env_file_is_warned_about(project: Project, tmp_path: Path) -> None:
    """A .env that group or others can read still works, but every run says ``chmod 600``."""
    env_file = project.write_env()
    env_file.chmod(0o644)

    done = run_wrapper(WRAPPER, "--env-file", str(env_file), home=tmp_path)

    assert done.returncode == 0, output_of(done)
    assert f"chmod 600 {env_file}" in done.stdout
    assert_clean(project, done)


def test_missing_packages_exit_2_with_setup_hint(project: Project, tmp_path: Path) -> None:
    """A virtualenv without requests and python-dotenv: exit 2, the ``--setup`` hint, no login."""
    copy = copy_project(tmp_path / "copy")
    venv = empty_venv(tmp_path / "empty-venv")
    env_file = str(project.write_env())

    done = run_wrapper(
        copy / "refresh_xts_token.sh",
        "--env-file",
        env_file,
        home=tmp_path,
        env={"XTS_VENV": str(venv)},
    )

    out = output_of(done)
    assert done.returncode == 2, out
    assert f"✓ Virtual environment activated ({venv})" in done.stdout
    assert "✗ Required packages missing: requests dotenv" in done.stdout
    assert "✗ Token refresh failed (exit code: 2): run ./refresh_xts_token.sh --setup" in out
    assert "Running XTS token refresh script" not in out
    assert project.sim.count("interactive_login") == 0
    assert not project.token_file.exists()
    assert_clean(project, done)


def test_missing_virtualenv_exit_2_with_setup_hint(project: Project, tmp_path: Path) -> None:
    """No XTS_VENV (a wrong one), no .venv, no venv: python3 from PATH with a warning, then exit 2.

    The python3 found first on PATH has no packages, so the outcome does not depend on what
    the machine's own python3 happens to have installed.
    """
    copy = copy_project(tmp_path / "copy")
    venv = empty_venv(tmp_path / "empty-venv")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python3 = bin_dir / "python3"
    python3.write_text(f'#!/bin/sh\nexec "{venv}/bin/python" "$@"\n', encoding="utf-8")
    python3.chmod(0o755)
    env_file = str(project.write_env())

    done = run_wrapper(
        copy / "refresh_xts_token.sh",
        "--env-file",
        env_file,
        home=tmp_path,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "XTS_VENV": str(tmp_path / "no-such-venv")},
    )

    out = output_of(done)
    assert done.returncode == 2, out
    assert f"XTS_VENV={tmp_path / 'no-such-venv'} has no bin/python" in done.stderr
    assert f"⚠ No virtualenv found (XTS_VENV, .venv or venv): using {python3}" in done.stdout
    assert "Virtual environment activated" not in out
    assert "✗ Required packages missing: requests dotenv" in done.stdout
    assert "✗ Token refresh failed (exit code: 2): run ./refresh_xts_token.sh --setup" in out
    assert project.sim.count("interactive_login") == 0
    assert not project.token_file.exists()
    assert_clean(project, done)


@pytest.mark.slow
def test_setup_twice_on_a_fresh_copy(project: Project, tmp_path: Path) -> None:
    """``--setup`` builds a working installation and is safe to run again.

    First run (scripts not yet executable, started with ``bash``): .venv created with the
    requirements, .env copied from .env.example with mode 600, scripts made executable. Second
    run: exit 0, .env left as the user edited it. Then the new installation refreshes a token
    against the simulator through its own .venv.
    """
    copy = copy_project(tmp_path / "copy")
    for name in ("refresh_xts_token.sh", "xts_token_refresh.py"):
        (copy / name).chmod(0o644)
    passed = {k: v for k, v in os.environ.items() if k.startswith("PIP_") or k in PASSED_THROUGH}
    # --setup is typed by a person, whose PATH has /usr/local/bin (where some images keep
    # python3) in front of cron's two folders.
    env = {"HOME": str(tmp_path), "PATH": "/usr/local/bin:/usr/bin:/bin", **passed}

    first = run_process(
        ["/bin/bash", str(copy / "refresh_xts_token.sh"), "--setup"], env=env, timeout=280
    )
    assert first.returncode == 0, output_of(first)
    assert "✓ Created .venv" in first.stdout
    assert "✓ Installed requirements.txt into .venv" in first.stdout
    assert "✓ Created .env from .env.example (mode 600)" in first.stdout
    env_path = copy / ".env"
    assert env_path.read_bytes() == (copy / ".env.example").read_bytes()
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    for name in ("refresh_xts_token.sh", "xts_token_refresh.py"):
        assert (copy / name).stat().st_mode & 0o111 == 0o111, name
    imports = run_process([str(copy / ".venv/bin/python"), "-c", "import requests, dotenv"])
    assert imports.returncode == 0, imports.stderr

    with env_path.open("a", encoding="utf-8") as handle:
        handle.write("# edited by the operator: keep me\n")
    edited = env_path.read_bytes()
    second = run_process([str(copy / "refresh_xts_token.sh"), "--setup"], env=env, timeout=280)
    assert second.returncode == 0, output_of(second)
    assert "✓ .venv already exists" in second.stdout
    assert "✓ .env already exists: left as it is" in second.stdout
    assert env_path.read_bytes() == edited
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600

    run = run_process(
        [str(copy / "refresh_xts_token.sh"), "--env-file", str(project.write_env())],
        env={"HOME": str(tmp_path)},
    )
    assert run.returncode == 0, output_of(run)
    assert f"✓ Virtual environment activated ({copy / '.venv'})" in run.stdout
    assert SUCCESS_LINE in run.stdout
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]
    for done in (first, second, run):
        for secret in SECRETS:
            assert secret not in output_of(done)
    assert_clean(project, run)


def borrowing_venv(folder: Path) -> Path:
    """A virtualenv of its own (nothing can be installed into the tests' one through it) that
    sees the tests' packages, pip included, through a .pth file: --setup then finds
    requirements.txt satisfied and needs no network."""
    import site
    import sysconfig

    empty_venv(folder)
    own = subprocess.run(
        [
            str(folder / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    borrowed = (
        site.getsitepackages()[0] if site.getsitepackages() else sysconfig.get_path("purelib")
    )
    Path(own, "borrowed.pth").write_text(borrowed + "\n", encoding="utf-8")
    return folder


@pytest.mark.slow
def test_setup_locks_down_the_accounts_and_leaves_an_existing_env_alone(
    tmp_path: Path,
) -> None:
    """``--setup`` in an install with account files that others can read (accounts/ 0755,
    accounts/*.env 0644), under umask 000: accounts/ becomes 0700 and each account file 0600;
    a missing .env is created 0600 from .env.example; a .env that exists is never touched."""
    copy = copy_project(tmp_path / "copy")
    borrowing_venv(copy / ".venv")
    accounts = copy / "accounts"
    accounts.mkdir(mode=0o755)
    for name in ("alice", "bob"):
        (accounts / f"{name}.env").write_text("XTS_API_ROOT=https://x.example\n", encoding="utf-8")
        (accounts / f"{name}.env").chmod(0o644)
    accounts.chmod(0o755)
    env = {"HOME": str(tmp_path)}

    done = run_process(
        [str(copy / "refresh_xts_token.sh"), "--setup"], env=env, preexec=lambda: os.umask(0)
    )

    assert done.returncode == 0, output_of(done)
    assert (
        "✓ accounts/ is mode 700 and its 2 account file(s) accounts/*.env mode 600" in done.stdout
    )
    assert stat.S_IMODE(accounts.stat().st_mode) == 0o700
    for name in ("alice", "bob"):
        assert stat.S_IMODE((accounts / f"{name}.env").stat().st_mode) == 0o600
    env_file = copy / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert env_file.read_bytes() == (copy / ".env.example").read_bytes()
    env_file.write_text("XTS_API_ROOT=https://mine.example\n", encoding="utf-8")
    env_file.chmod(0o640)  # the operator's choice: warned about by every run, not changed

    again = run_process([str(copy / "refresh_xts_token.sh"), "--setup"], env=env)

    assert again.returncode == 0, output_of(again)
    assert "✓ .env already exists: left as it is" in again.stdout
    assert env_file.read_text(encoding="utf-8") == "XTS_API_ROOT=https://mine.example\n"


def test_setup_keeps_an_accounts_folder_its_group_may_enter(tmp_path: Path) -> None:
    """accounts/ at mode 750 (the operator let the token group's bots through, for
    XTS_TOKEN_GROUP): ``--setup`` keeps it so, and still makes each account file 0600."""
    copy = copy_project(tmp_path / "copy")
    borrowing_venv(copy / ".venv")
    accounts = copy / "accounts"
    accounts.mkdir()
    accounts.chmod(0o750)
    (accounts / "alice.env").write_text("XTS_API_ROOT=https://x.example\n", encoding="utf-8")
    (accounts / "alice.env").chmod(0o640)

    done = run_process([str(copy / "refresh_xts_token.sh"), "--setup"], env={"HOME": str(tmp_path)})

    assert done.returncode == 0, output_of(done)
    assert "✓ accounts/ is mode 750 and its 1 account file(s) accounts/*.env mode 600" in (
        done.stdout
    )
    assert stat.S_IMODE(accounts.stat().st_mode) == 0o750
    assert stat.S_IMODE((accounts / "alice.env").stat().st_mode) == 0o600


def marked_venv(folder: Path, started: Path) -> Path:
    """A borrowing virtualenv whose ``bin/python`` adds a line with the virtualenv's name to
    the file ``started``, then runs the real one (kept as ``bin/python-real``, still inside
    the virtualenv)."""
    borrowing_venv(folder)
    python = folder / "bin" / "python"
    python.rename(folder / "bin" / "python-real")
    python.write_text(
        f"#!/bin/sh\necho '{folder.name}' >> '{started}'\nexec '{folder}/bin/python-real' \"$@\"\n",
        encoding="utf-8",
    )
    python.chmod(0o755)
    return folder


@pytest.mark.slow
def test_the_wrapper_and_the_script_look_for_xts_venv_then_dot_venv_then_venv(
    tmp_path: Path,
) -> None:
    """XTS_VENV (relative to the project folder, though started from /) comes first, then
    .venv, then venv: each wrapper run names the virtualenv it activated and runs the program
    in it, and the script started by a Python without the packages continues in that same one.
    With none of them, the wrapper warns about XTS_VENV and the script says what is missing."""
    copy = copy_project(tmp_path / "copy")
    started = tmp_path / "pythons-started"
    for name in ("custom-env", ".venv", "venv"):
        marked_venv(copy / name, started)
    wrapper = str(copy / "refresh_xts_token.sh")
    script = [PYTHON, "-S", str(copy / "xts_token_refresh.py"), "--version"]
    env = {"HOME": str(tmp_path)}

    def check(chosen: str, extra: Mapping[str, str]) -> None:
        done = run_process([wrapper, "--version"], env={**env, **extra})
        assert done.returncode == 0, output_of(done)
        assert f"✓ Virtual environment activated ({copy / chosen})" in done.stdout
        assert set(started.read_text(encoding="utf-8").split()) == {chosen}
        started.unlink()
        direct = run_process(script, env={**env, **extra})
        assert direct.returncode == 0, output_of(direct)
        assert direct.stdout == "xts_token_refresh.py 1.0.0\n"
        assert started.read_text(encoding="utf-8") == f"{chosen}\n"
        started.unlink()

    check("custom-env", {"XTS_VENV": "custom-env"})
    check(".venv", {})
    shutil.rmtree(copy / ".venv")
    check("venv", {})
    check("venv", {"XTS_VENV": str(tmp_path / "no-such-venv")})
    shutil.rmtree(copy / "venv")

    direct = run_process(script, env={**env, "XTS_VENV": "no-such-venv"})
    assert direct.returncode == 2, output_of(direct)
    assert "✗ Required packages are missing (requests, dotenv)" in direct.stdout
    assert "⚠ XTS_VENV=no-such-venv has no bin/python" in direct.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_tells_of_setup_too(tmp_path: Path, flag: str) -> None:
    """``refresh_xts_token.sh --help`` shows the wrapper's own usage (``--setup`` is the
    wrapper's, the program knows nothing of it) above the program's help, and exits 0;
    a command's help (``cron --help``) is the program's alone."""
    done = run_wrapper(WRAPPER, flag, home=tmp_path)

    assert done.returncode == 0, output_of(done)
    assert "refresh_xts_token.sh --setup" in done.stdout
    assert "Usage: refresh_xts_token.sh [COMMAND] [OPTIONS]" in done.stdout
    wrapper_usage = done.stdout.index("refresh_xts_token.sh --setup")
    assert wrapper_usage < done.stdout.index("usage: xts_token_refresh.py")
    for command in ("refresh", "status", "check-config", "cron", "demo"):
        assert f"\n    {command} " in done.stdout, command
    assert done.stderr == ""

    command_help = run_wrapper(WRAPPER, "cron", flag, home=tmp_path)
    assert command_help.returncode == 0, output_of(command_help)
    assert "--setup" not in command_help.stdout
