"""The paths a run writes (token files, locks, the log, the metrics file) are checked before any
login: no settings file among them, no two of them one file, nothing but a regular file where one
exists, and no symlink followed at the log, the metrics file or a lock. The log file itself is
mode 0600, and a log that cannot be written costs one warning, never the run.

Every test runs the real script against the simulator, cron-style, and checks the exit code, the
message, that no login was sent, and that what was at the path is untouched.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import (
    PYTHON,
    SCRIPT,
    Project,
    assert_no_secrets,
    run_on_a_full_tmpfs,
    skip_or_fail,
    token_json,
)

LOGIN = "interactive_login"
VICTIM_TEXT = "precious content: must survive\n"


def logins(project: Project) -> int:
    """How many logins (either session) the simulator received."""
    return project.sim.count(LOGIN) + project.sim.count("marketdata_login")


def first_token(project: Project) -> bytes:
    """Run one good refresh; the token file it wrote."""
    run = project.run()
    assert run.code == 0, run.output
    return project.token_file.read_bytes()


def assert_refused(project: Project, run_code: int, stdout: str, *named: object) -> None:
    """Exit 2, naming every path in ``named``, ending with a ✗ line, and no login sent."""
    assert run_code == 2, stdout
    for path in named:
        assert str(path) in stdout, (path, stdout)
    assert stdout.splitlines()[-1].startswith("✗"), stdout
    assert logins(project) == 0


def victim(project: Project) -> Path:
    """A file with content that a run must never touch."""
    path = project.folder / "victim.txt"
    path.write_text(VICTIM_TEXT)
    return path


# -- none of them is a settings file -------------------------------------------------------------


def test_token_file_flag_naming_the_settings_file_is_exit_2_and_the_settings_survive(
    project: Project,
) -> None:
    """``--token-file .env`` would replace the settings (API secrets) with token JSON."""
    env_file = project.write_env()
    before = env_file.read_bytes()
    run = project.run("--token-file", str(env_file))
    assert_refused(project, run.code, run.stdout, env_file)
    assert "settings file" in run.stdout
    assert env_file.read_bytes() == before


@pytest.mark.parametrize("how", ["--log-file", "XTS_METRICS_FILE"])
def test_log_or_metrics_file_at_the_settings_file_is_exit_2(project: Project, how: str) -> None:
    """The log and the metrics file pointed at the settings file: nothing is appended to it."""
    env_file = project.write_env()
    if how == "--log-file":
        args: tuple[str, ...] = ("--log-file", str(env_file))
    else:
        project.settings["XTS_METRICS_FILE"] = str(env_file)
        args = ()
    before = project.write_env().read_bytes()
    run = project.run(*args)
    assert_refused(project, run.code, run.stdout, env_file)
    assert env_file.read_bytes() == before


def test_a_settings_error_is_not_logged_into_a_log_file_that_is_the_settings_file(
    project: Project,
) -> None:
    """Broken settings are logged to the log file too, but never when it is the settings file."""
    project.settings["XTS_TIMEOUT"] = "soon"
    env_file = project.write_env()
    before = env_file.read_bytes()
    run = project.run("--log-file", str(env_file))
    assert run.code == 2, run.output
    assert "XTS_TIMEOUT" in run.stdout
    assert env_file.read_bytes() == before


def test_a_settings_error_is_not_logged_into_the_token_file(project: Project) -> None:
    """Broken settings and the log aimed at the token file: the ✗ lines were appended to the
    token JSON the bots read. The settings cannot say where the tokens go, as far as they
    can still be read they are kept, and the token stays byte-identical."""
    previous = first_token(project)
    before = logins(project)
    project.settings["XTS_TIMEOUT"] = "soon"
    run = project.run("--log-file", str(project.token_file))
    assert run.code == 2, run.output
    assert "XTS_TIMEOUT" in run.stdout
    assert run.stdout.splitlines()[-1].startswith("✗")
    assert logins(project) == before
    assert project.token_file.read_bytes() == previous


def test_the_log_at_a_broken_accounts_token_file_is_exit_2_and_the_token_survives(
    project: Project,
) -> None:
    """An account whose file has a bad setting is not refreshed, but its bot still reads its
    token file: the run's log aimed at it appended every line of the run to that JSON."""
    folder = project.with_accounts("a", "c")
    assert project.run().code == 0
    token_file = folder / "c" / "xts_store_token.json"
    previous = token_file.read_bytes()
    before = logins(project)
    broken = folder / "c.env"
    broken.write_text(broken.read_text() + "XTS_TIMEOUT=banana\n")
    run = project.run("--log-file", str(token_file))
    assert run.code == 2, run.output
    assert "account c's interactive token file" in run.stdout.lower()
    assert str(token_file) in run.stdout
    assert run.stdout.splitlines()[-1].startswith("✗")
    assert logins(project) == before
    assert token_file.read_bytes() == previous


def test_a_hard_link_of_the_settings_file_as_the_log_is_exit_2(project: Project) -> None:
    """Another name for the settings file (a hard link) is the settings file all the same."""
    env_file = project.write_env()
    before = env_file.read_bytes()
    alias = project.folder / "alias.log"
    os.link(env_file, alias)
    run = project.run("--log-file", str(alias))
    assert_refused(project, run.code, run.stdout, alias, env_file)
    assert env_file.read_bytes() == before


@pytest.mark.parametrize("how", ["--token-file", "--log-file"])
def test_a_written_path_that_would_become_an_account_file_is_exit_2(
    project: Project, how: str
) -> None:
    """``accounts/xts.env`` does not exist yet, but once written it is an account file: the
    next run would take the token JSON (or log lines) as account ``xts``'s settings, and the
    install, with account files now, would stop being the single account of ``.env`` (every
    run exit 2, every bot's ``load_token()`` refused). Refused before any login, nothing made."""
    accounts = project.folder / "accounts"
    accounts.mkdir()
    project.settings["XTS_ACCOUNTS_DIR"] = str(accounts)
    would_be = accounts / "xts.env"
    run = project.run(how, str(would_be))
    assert_refused(project, run.code, run.stdout, would_be)
    assert "would be an account file" in run.stdout
    assert list(accounts.iterdir()) == []
    checked = project.run("check-config", how, str(would_be))
    assert checked.code == 2 and "would be an account file" in checked.stdout, checked.stdout


def test_status_never_writes_its_metrics_where_they_would_become_an_account_file(
    project: Project,
) -> None:
    """``status`` rewrites the metrics file without a refresh's checks: aimed at
    ``accounts/m.env``, it made account ``m`` (the next status: exit 2). One ⚠ line, no file."""
    accounts = project.folder / "accounts"
    accounts.mkdir()
    project.settings["XTS_ACCOUNTS_DIR"] = str(accounts)
    first_token(project)
    project.settings["XTS_METRICS_FILE"] = str(accounts / "m.env")
    run = project.run("status")
    assert run.code == 0, run.output
    warnings = [line for line in run.stdout.splitlines() if line.startswith("⚠")]
    assert len(warnings) == 1 and "would be an account file" in warnings[0], run.stdout
    assert list(accounts.iterdir()) == []


# -- no two of them are one file -----------------------------------------------------------------


@pytest.mark.parametrize("how", ["--log-file", "XTS_METRICS_FILE"])
def test_log_or_metrics_file_at_the_token_file_is_exit_2_and_the_token_survives(
    project: Project, how: str
) -> None:
    """The log or the metrics file aimed at the token file corrupted it while the run said ✓."""
    previous = first_token(project)
    before = logins(project)
    if how == "--log-file":
        args: tuple[str, ...] = ("--log-file", str(project.token_file))
    else:
        project.settings["XTS_METRICS_FILE"] = str(project.token_file)
        args = ()
    run = project.run(*args)
    assert run.code == 2, run.output
    assert str(project.token_file) in run.stdout
    assert "interactive token file" in run.stdout
    assert run.stdout.splitlines()[-1].startswith("✗")
    assert logins(project) == before
    assert project.token_file.read_bytes() == previous


def test_two_token_files_one_file_through_a_symlinked_folder_is_exit_2(project: Project) -> None:
    """The market-data file named through a symlink to the token folder is the interactive one."""
    project.with_marketdata()
    alias = project.folder / "alias"
    alias.symlink_to(project.folder)
    project.settings["XTS_MARKETDATA_TOKEN_FILE"] = str(alias / project.token_file.name)
    run = project.run()
    assert_refused(project, run.code, run.stdout, project.token_file)
    assert not project.token_file.exists()


def test_the_marketdata_token_file_at_the_lock_is_exit_2(project: Project) -> None:
    """A token file where the run lock lives: the lock would be renamed away under the run."""
    project.with_marketdata()
    lock = Path(f"{project.token_file}.lock")
    project.settings["XTS_MARKETDATA_TOKEN_FILE"] = str(lock)
    run = project.run()
    assert_refused(project, run.code, run.stdout, lock)
    assert "lock" in run.stdout


@pytest.mark.parametrize("how", ["", "XTS_METRICS_FILE"], ids=["without-metrics", "with-metrics"])
def test_the_marketdata_token_file_at_the_run_record_is_exit_2(project: Project, how: str) -> None:
    """A token file where the run record goes (``<interactive token file>.run``), with metrics
    or without (every refresh records itself): the record would replace the market-data
    token at the end of the run. Refused before any login, naming the record; the file there
    is untouched."""
    project.with_marketdata()
    if how:
        project.settings[how] = str(project.folder / "xts.prom")
    record = Path(f"{project.token_file}.run")
    record.write_text(VICTIM_TEXT)
    project.settings["XTS_MARKETDATA_TOKEN_FILE"] = str(record)
    run = project.run()
    assert_refused(project, run.code, run.stdout, record)
    assert "run record" in run.stdout.lower()
    assert record.read_text() == VICTIM_TEXT


# -- what exists at a path is a regular file -----------------------------------------------------


def test_a_folder_at_the_token_path_is_exit_2(project: Project) -> None:
    """A folder where the token file should be: exit 2 naming it, the folder left alone."""
    project.token_file.mkdir()
    run = project.run()
    assert_refused(project, run.code, run.stdout, project.token_file)
    assert "folder" in run.stdout
    assert project.token_file.is_dir()


@pytest.mark.system
def test_a_device_at_the_token_path_is_exit_2_and_stays_a_device(
    project: Project, tmp_path: Path
) -> None:
    """As root, ``--token-file /dev/null`` turned the device into a regular file. The test uses
    a character device of its own (null's numbers), made in tmp."""
    if os.geteuid() != 0:
        skip_or_fail("making a device node needs root")
    device = tmp_path / "null-device"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    run = project.run("--token-file", str(device))
    assert_refused(project, run.code, run.stdout, device)
    assert stat.S_ISCHR(os.lstat(device).st_mode)
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


@pytest.mark.parametrize("where", ["token", "log"])
def test_a_fifo_at_the_token_or_log_path_is_exit_2_without_hanging(
    project: Project, where: str
) -> None:
    """A FIFO there hung the run (holding the lock): refused before anything opens it."""
    fifo = project.token_file if where == "token" else project.folder / "fifo.log"
    os.mkfifo(fifo)
    try:  # (the project's own log file stays a file: the test reads it)
        run = project.run(
            "--if-needed",
            timeout=20,
            env={"XTS_LOG_FILE": str(fifo if where == "log" else project.log_file)},
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the run hung on the FIFO at the {where} path")
    assert_refused(project, run.code, run.stdout, fifo)
    assert "FIFO" in run.stdout
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


# -- symlinks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["log", "metrics", "lock"])
def test_a_symlink_at_the_log_metrics_or_lock_path_is_exit_2_and_its_target_untouched(
    project: Project, where: str
) -> None:
    """The log, the metrics file and the lock are never written through a symlink: the run
    refuses, names the symlink and says to remove it; the target keeps its content."""
    target = victim(project)
    link = {
        "log": project.log_file,
        "metrics": project.folder / "xts.prom",
        "lock": Path(f"{project.token_file}.lock"),
    }[where]
    if where == "metrics":
        project.settings["XTS_METRICS_FILE"] = str(link)
    link.symlink_to(target)
    run = project.run()
    assert_refused(project, run.code, run.stdout, link)
    assert "symbolic link" in run.stdout
    assert "remove" in run.stdout.lower()
    assert target.read_text() == VICTIM_TEXT
    assert link.is_symlink()


def test_check_config_reports_the_same_path_problems(project: Project) -> None:
    """check-config says what a refresh would refuse, and exits 2."""
    env_file = project.write_env()
    before = env_file.read_bytes()
    log_folder = project.folder / "folder.log"
    log_folder.mkdir()
    run = project.run("check-config", "--token-file", str(env_file), "--log-file", str(log_folder))
    assert run.code == 2, run.output
    assert str(env_file) in run.stdout
    assert f"{log_folder} is a folder" in run.stdout
    assert "settings file" in run.stdout
    assert run.stdout.splitlines()[-1].startswith("✗")
    assert logins(project) == 0
    assert env_file.read_bytes() == before


def test_the_metrics_writer_of_status_never_writes_through_a_symlink(project: Project) -> None:
    """``status`` rewrites the metrics file too: a symlink there is reported, not written."""
    first_token(project)
    target = victim(project)
    link = project.folder / "xts.prom"
    link.symlink_to(target)
    project.settings["XTS_METRICS_FILE"] = str(link)
    run = project.run("status")
    assert "⚠" in run.stdout
    assert str(link) in run.stdout
    assert target.read_text() == VICTIM_TEXT
    assert link.is_symlink()


def test_status_never_writes_its_metrics_over_a_token_file(project: Project) -> None:
    """``status`` rewrites the metrics file without a refresh's checks: aimed at the token
    file, it leaves the token alone and says so in one ⚠ line."""
    previous = first_token(project)
    project.settings["XTS_METRICS_FILE"] = str(project.token_file)
    run = project.run("status")
    assert run.code == 0, run.output
    assert project.token_file.read_bytes() == previous
    warnings = [line for line in run.stdout.splitlines() if line.startswith("⚠")]
    assert len(warnings) == 1, run.stdout
    assert "interactive token file" in warnings[0]


def test_status_never_writes_its_metrics_over_a_broken_accounts_settings_file(
    project: Project,
) -> None:
    """An account file with a bad setting has no settings to load, so ``status`` knew nothing
    of it: with the metrics file aimed at it, status replaced the operator's file (API keys
    and all) with gauges. Every settings file of the install is kept, one ⚠ line says so."""
    folder = project.with_accounts("a", "c")
    assert project.run().code == 0
    broken = folder / "c.env"
    broken.write_text(broken.read_text() + "XTS_TIMEOUT=banana\n")
    before = broken.read_bytes()
    project.settings["XTS_METRICS_FILE"] = str(broken)
    run = project.run("status")
    assert run.code == 2, run.output
    assert broken.read_bytes() == before
    warnings = [line for line in run.stdout.splitlines() if line.startswith("⚠")]
    assert len(warnings) == 1 and "is the settings file" in warnings[0], run.stdout


def test_status_never_writes_its_metrics_over_a_broken_accounts_token_file(
    project: Project,
) -> None:
    """An account with a bad setting is not read, but its bot still reads its token file:
    status's metrics file aimed at it replaced the token JSON with gauges."""
    folder = project.with_accounts("a", "c")
    assert project.run().code == 0
    token_file = folder / "c" / "xts_store_token.json"
    previous = token_file.read_bytes()
    broken = folder / "c.env"
    broken.write_text(broken.read_text() + "XTS_TIMEOUT=banana\n")
    project.settings["XTS_METRICS_FILE"] = str(token_file)
    run = project.run("status")
    assert run.code == 2, run.output
    assert token_file.read_bytes() == previous
    warnings = [line for line in run.stdout.splitlines() if line.startswith("⚠")]
    assert len(warnings) == 1 and str(token_file) in warnings[0], run.stdout


# -- the log file --------------------------------------------------------------------------------


def test_a_log_file_readable_by_others_is_narrowed_to_0600_with_a_warning(
    project: Project,
) -> None:
    """Log lines name accounts and paths: the file is the user's alone."""
    project.log_file.write_text("earlier lines\n")
    project.log_file.chmod(0o644)
    run = project.run()
    assert run.code == 0, run.output
    assert stat.S_IMODE(project.log_file.stat().st_mode) == 0o600
    assert any(
        line.startswith("⚠") and str(project.log_file) in line for line in run.stdout.splitlines()
    ), run.stdout
    assert project.log_file.read_text().startswith("earlier lines\n")


def test_a_new_log_file_is_0600_under_umask_000(project: Project) -> None:
    """Created by the run with mode 0600, whatever the umask."""
    run = project.run(preexec=lambda: os.umask(0))
    assert run.code == 0, run.output
    assert stat.S_IMODE(project.log_file.stat().st_mode) == 0o600


def test_a_log_folder_removed_mid_run_costs_one_warning_not_the_run(project: Project) -> None:
    """The hook removes the log's folder: the lines after it cannot be written; the run still
    exits 0 with its ✓ line, one ⚠ line says so, and nothing prints a traceback."""
    folder = project.folder / "logs"
    folder.mkdir()
    log = folder / "refresh.log"
    project.settings["XTS_POST_REFRESH_HOOK"] = f"rm -rf {folder}"
    run = project.run(env={"XTS_LOG_FILE": str(log)})
    assert run.code == 0, run.output
    assert "Traceback" not in run.output
    warnings = [line for line in run.stdout.splitlines() if str(log) in line and "⚠" in line]
    assert len(warnings) == 1, run.stdout
    assert run.stdout.splitlines()[-1].startswith("✓")
    assert token_json(project.token_file)["userID"]


@pytest.mark.system
def test_a_full_disk_under_the_log_costs_one_warning_not_the_run(project: Project) -> None:
    """The log on a full 64 KiB tmpfs (a private mount namespace, root only): the token is
    saved, exit 0, one ⚠ line, no traceback (the trial saw exit 1 and hundreds of lines)."""
    mount = project.folder / "small"
    mount.mkdir()
    log = mount / "xts_token_refresh.log"
    env_file = project.write_env()
    done = run_on_a_full_tmpfs(
        mount,
        f": > {log}\nchmod 600 {log}",
        f"{PYTHON} {SCRIPT} --env-file {env_file} --log-file {log}",
    )
    assert "exit=0" in done.stdout, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    warnings = [line for line in done.stdout.splitlines() if str(log) in line and "⚠" in line]
    assert len(warnings) == 1, done.stdout
    assert "No space left on device" in warnings[0]
    assert token_json(project.token_file)["userID"]
    assert_no_secrets(project, done.stdout, done.stderr)
