"""What a run reads: token files, settings files and the lock, and the times a token file holds.

A token, settings or lock file is read without blocking and within a bound: a FIFO (which
blocks its reader until someone writes), a device (``/dev/zero`` never ends) or a file over
1 MiB is refused, and a token file so found is "corrupt". A settings file that anyone but
this user (and root) can change is refused with exit 2: it sets the hook, a command the job
runs as its user. A token file's absurd times are "corrupt", never a crash, and a token
without ``exp`` lives 24 h from its login in the zone it was written in.

Every test runs the real script (or a bot's fresh interpreter) against the simulator, with a
time limit: on a reader that blocks, the test fails instead of hanging. A process that could
read ``/dev/zero`` gets an address-space limit, so that a reader without a bound fails with
MemoryError instead of filling the machine.
"""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    PYTHON,
    SCRIPT,
    USER_ID,
    Project,
    Run,
    copy_program,
    run_process,
    skip_or_fail,
    token_json,
)

from xts_refresher.simulator import Fault

# A bounded reader finishes at once; one that blocks is killed and the test fails.
BLOCKING_LIMIT = 30
# Enough for the refresher (about 100 MB of address space), far too little for /dev/zero.
ADDRESS_SPACE = 1 << 30
MIB = 1 << 20
PREVIOUS = b'{"token": "previous-run-token", "userID": "CK68"}\n'
LOGIN_ROUTES = ("interactive_login", "marketdata_login", "hostlookup")

# Bots read tokens like this; the result (or the error's state and message) is printed.
LOAD_TOKEN = r"""
import json, sys
from xts_token_refresh import TokenUnavailableError, load_token
try:
    stored = load_token(sys.argv[1] if len(sys.argv) > 1 else None)
    print(json.dumps({"token": stored.token, "seconds_left": stored.seconds_left()}))
except TokenUnavailableError as exc:
    print(json.dumps({"state": exc.state, "error": str(exc)}))
"""


def limited_memory() -> None:
    """In the child: cap its address space (see the module docstring)."""
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def logins(project: Project) -> int:
    """How many login (and host-lookup) requests the simulator received."""
    return sum(project.sim.count(route) for route in LOGIN_ROUTES)


def run(project: Project, *args: str, **kwargs: Any) -> Run:
    """``project.run`` with the blocking limit and the memory cap."""
    return project.run(*args, timeout=BLOCKING_LIMIT, preexec=limited_memory, **kwargs)


def load_token_in_a_bot(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """What ``load_token(*args)`` gave in a fresh bot process, within the blocking limit."""
    done = run_process(
        [PYTHON, "-c", LOAD_TOKEN, *args],
        env={"PYTHONPATH": str(SCRIPT.parent), **(env or {})},
        timeout=BLOCKING_LIMIT,
        preexec=limited_memory,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def valid_token_json(project: Project, **changes: Any) -> dict[str, Any]:
    """A token file's content as a refresh saves it, against this project's simulator."""
    project.run()
    data = token_json(project.token_file)
    data.update(changes)
    return data


def unreadable_token_file(kind: str, path: Path, valid: bytes) -> str:
    """Put at ``path`` a token file no reader may read: a FIFO, a link to ``/dev/zero``, or
    ``valid`` padded past 1 MiB (valid JSON still); the words the refusal uses."""
    path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path, 0o600)
        return "FIFO"
    if kind == "device":
        path.symlink_to("/dev/zero")
        return "device"
    path.write_bytes(valid.rstrip() + b" " * (MIB + 1) + b"\n")
    path.chmod(0o600)
    return "larger than 1 MiB"


# -- token files --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
def test_status_and_load_token_call_a_fifo_device_or_huge_token_file_corrupt(
    project: Project, kind: str
) -> None:
    """A FIFO, a device or a file over 1 MiB (of valid JSON) at the token path: ``status``
    answers at once, state ``corrupt`` (exit 1) with a message saying what the file is, and
    sends nothing; a bot's ``load_token`` raises TokenUnavailableError ("corrupt") at once.
    The FIFO is still there afterwards: reading never replaces anything."""
    valid = json.dumps(valid_token_json(project)).encode()
    words = unreadable_token_file(kind, project.token_file, valid)
    sent = logins(project)

    done = run(project, "status", "--json")
    text = run(project, "status")

    assert done.code == 1, done.output
    (entry,) = json.loads(done.stdout)["sessions"]
    assert entry["state"] == "corrupt", entry
    assert words in entry["message"] and str(project.token_file) in entry["message"], entry
    assert text.code == 1 and "corrupt" in text.stdout and words in text.stdout, text.output
    assert logins(project) == sent
    bot = load_token_in_a_bot(str(project.token_file))
    assert bot["state"] == "corrupt", bot
    assert words in bot["error"] and str(project.token_file) in bot["error"], bot
    if kind == "fifo":
        assert project.token_file.is_fifo()


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
def test_refresh_if_needed_logs_in_over_an_unreadable_token_file(
    project: Project, tmp_path: Path, kind: str
) -> None:
    """``refresh --if-needed`` with a token file it may not read (a link to a FIFO or to
    ``/dev/zero``, or a file over 1 MiB holding a valid, unexpired token) treats it as
    unreadable: it logs in at once and saves a regular token file in its place, exit 0; the
    FIFO the link pointed to is left alone."""
    valid = json.dumps(valid_token_json(project)).encode()
    pipe = tmp_path / "pipe"
    if kind == "fifo":
        os.mkfifo(pipe, 0o600)
        project.token_file.unlink()
        project.token_file.symlink_to(pipe)
    else:
        unreadable_token_file(kind, project.token_file, valid)

    done = run(project, "refresh", "--if-needed")

    assert done.code == 0, done.output
    assert "the stored token is corrupt" in done.output, done.output
    assert project.sim.count("interactive_login") == 2  # the first refresh, and this one
    assert not project.token_file.is_symlink()
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]
    if kind == "fifo":
        assert pipe.is_fifo()


def test_status_with_metrics_passes_a_fifo_where_the_last_run_is_recorded(
    project: Project,
) -> None:
    """With metrics on, ``status`` reads the record of the last refresh (``<lock>.run``,
    beside the token file): a FIFO there is taken as no record, never waited on; the
    metrics file is written all the same."""
    project.settings["XTS_METRICS_FILE"] = str(project.folder / "xts.prom")
    project.run()
    record = project.token_file.with_name(project.token_file.name + ".run")
    assert record.exists()  # the premise: the refresh recorded itself there
    record.unlink()
    os.mkfifo(record, 0o600)

    done = run(project, "status")

    assert done.code == 0, done.output
    metrics = (project.folder / "xts.prom").read_text(encoding="utf-8")
    assert "xts_token_usable" in metrics and "xts_refresh_last_exit_code{" not in metrics
    assert record.is_fifo()


def test_a_run_record_nested_past_the_json_parsers_depth_is_no_record(project: Project) -> None:
    """The last-run record holding ``[[[[…`` 200,000 deep (within the 1 MiB a file may hold)
    made Python's JSON parser raise RecursionError: ``status`` died "Unexpected error", exit 4.
    It is taken as no record: status exits 0, the metrics file is written without the
    last-run gauges, and the token file is untouched."""
    project.settings["XTS_METRICS_FILE"] = str(project.folder / "xts.prom")
    assert project.run().code == 0
    record = project.token_file.with_name(project.token_file.name + ".run")
    record.write_text("[" * 200_000)
    previous = project.token_file.read_bytes()

    done = run(project, "status")

    assert done.code == 0, done.output
    assert "Unexpected error" not in done.output + done.log
    metrics = (project.folder / "xts.prom").read_text(encoding="utf-8")
    assert "xts_token_usable" in metrics and "xts_refresh_last_exit_code{" not in metrics
    assert project.token_file.read_bytes() == previous


# -- settings files -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
def test_a_settings_file_that_is_a_fifo_device_or_huge_is_refused(
    project: Project, kind: str
) -> None:
    """``--env-file`` naming a FIFO, ``/dev/zero`` or a file over 1 MiB: exit 2 at once with
    a ✗ line naming the file and what it is; no login; the token file is untouched."""
    project.token_file.write_bytes(PREVIOUS)
    settings = project.write_env()
    text = settings.read_bytes()
    settings.unlink()
    if kind == "fifo":
        os.mkfifo(settings, 0o600)
        words = "FIFO"
    elif kind == "device":
        settings.symlink_to("/dev/zero")
        words = "device"
    else:
        settings.write_bytes(text + b"#" * MIB + b"\n")
        settings.chmod(0o600)
        words = "larger than 1 MiB"

    done = run(project, "--env-file", str(settings), use_env_file=False)

    assert done.code == 2, done.output
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("✗") and str(settings) in last and words in last, done.output
    assert logins(project) == 0
    assert project.token_file.read_bytes() == PREVIOUS


def test_load_token_finds_its_file_past_a_fifo_env_and_account_file(tmp_path: Path) -> None:
    """A bot's ``load_token`` reads ``.env`` beside the program (and an account file) to find
    the token file: a FIFO there is taken as a file that sets nothing, never waited on."""
    folder = copy_program(tmp_path / "app")
    os.mkfifo(folder / ".env", 0o600)
    token = {"token": "tok-beside", "userID": USER_ID, "timestamp": "2099-01-01T09:00:00"}
    (folder / "xts_store_token.json").write_text(json.dumps(token), encoding="utf-8")
    env = {"PYTHONPATH": str(folder)}

    beside = run_process([PYTHON, "-c", LOAD_TOKEN], env=env, timeout=BLOCKING_LIMIT)
    (folder / "accounts").mkdir()
    os.mkfifo(folder / "accounts" / "alice.env", 0o600)
    account = run_process([PYTHON, "-c", LOAD_TOKEN], env=env, timeout=BLOCKING_LIMIT)

    assert beside.returncode == 0, beside.stderr
    assert json.loads(beside.stdout)["token"] == "tok-beside", beside.stdout
    assert account.returncode == 0, account.stderr
    missing = json.loads(account.stdout)  # alice's file sets no token file: her own folder's
    assert missing["state"] == "missing", missing
    assert str(folder / "accounts" / "alice" / "xts_store_token.json") in missing["error"]


HOOK = "XTS_POST_REFRESH_HOOK"


def hook_marker(project: Project) -> Path:
    """Set the hook to a command that leaves a file; the file's path."""
    marker = project.folder / "hook-ran"
    project.settings[HOOK] = f"touch {marker}"
    return marker


@pytest.mark.parametrize("mode", [0o666, 0o602, 0o620, 0o660], ids="{:04o}".format)
def test_a_settings_file_others_can_write_is_refused_before_anything_runs(
    project: Project, mode: int
) -> None:
    """A settings file that its group or other users can write (it sets the hook, a command
    run as this user): exit 2 with a ✗ line naming the file, who can write it and the chmod
    that fixes it; no login, no hook, the token file untouched."""
    marker = hook_marker(project)
    project.token_file.write_bytes(PREVIOUS)
    settings = project.write_env()
    settings.chmod(mode)

    done = run(project, "--env-file", str(settings), use_env_file=False)

    assert done.code == 2, done.output
    last = done.stdout.strip().splitlines()[-1]
    who = "other users" if mode & 0o002 else "its group"
    assert last.startswith("✗") and f"{settings} can be written by {who}" in last, last
    assert f"chmod 600 {settings}" in last and HOOK in last, last
    assert logins(project) == 0
    assert not marker.exists()
    assert project.token_file.read_bytes() == PREVIOUS


@pytest.mark.parametrize("mode", [0o644, 0o640], ids="{:04o}".format)
def test_a_settings_file_others_can_only_read_is_a_warning(project: Project, mode: int) -> None:
    """A settings file others can read but not write: the refresh runs (hook included) and
    warns, as before."""
    marker = hook_marker(project)
    settings = project.write_env()
    settings.chmod(mode)

    done = run(project, "--env-file", str(settings), use_env_file=False)

    assert done.code == 0, done.output
    assert f"⚠ {settings} can be read by other users" in done.output, done.output
    assert marker.exists()


@pytest.mark.system
def test_a_settings_file_of_another_user_is_refused(project: Project) -> None:
    """A settings file owned by another user (not root, not the user running the job): its
    owner can change it at will, so it is refused like a writable one: exit 2 naming the
    owner, no login, no hook."""
    marker = hook_marker(project)
    settings = project.write_env()
    os.chown(settings, 65534, 65534)  # nobody

    done = run(project, "--env-file", str(settings), use_env_file=False)

    assert done.code == 2, done.output
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("✗") and f"{settings} belongs to the user" in last, last
    assert logins(project) == 0
    assert not marker.exists()


def test_an_account_file_others_can_write_fails_that_account_only(project: Project) -> None:
    """With accounts, one account file others can write: that account ends with exit 2 (the
    run's code) naming the file, never logs in nor runs the hook; the other account refreshes
    and its hook runs."""
    accounts = project.folder / "accounts"
    accounts.mkdir()
    shared = hook_marker(project)
    project.settings[HOOK] = f'touch {shared}."$XTS_ACCOUNT"'
    for name in ("alice", "bob"):
        (accounts / f"{name}.env").write_text(
            f"XTS_TOKEN_FILE={accounts / name / 'token.json'}\n", encoding="utf-8"
        )
        (accounts / f"{name}.env").chmod(0o600)
    (accounts / "bob.env").chmod(0o646)
    project.settings["XTS_ACCOUNTS_DIR"] = str(accounts)

    done = run(project)

    assert done.code == 2, done.output
    assert f"{accounts / 'bob.env'} can be written by other users" in done.output, done.output
    assert project.sim.count("interactive_login") == 1
    assert (accounts / "alice" / "token.json").exists()
    assert not (accounts / "bob" / "token.json").exists()
    assert Path(f"{shared}.alice").exists() and not Path(f"{shared}.bob").exists()


# -- the times in a token file ------------------------------------------------------------------

ABSURD_TIMES = {
    "login-in-year-1": {"timestamp": "0001-01-01T00:00:00"},
    "login-in-year-9999": {"timestamp": "9999-12-31T23:59:59.999999"},
    "expiry-in-year-9999": {"expires_at": "9999-12-31T23:59:59-14:00"},
    "expiry-in-year-1": {"expires_at": "0001-01-01T00:00:00+14:00"},
}


@pytest.mark.parametrize("case", sorted(ABSURD_TIMES))
def test_a_token_file_with_absurd_times_is_corrupt(project: Project, case: str) -> None:
    """A token file whose login time or expiry lies at the ends of the calendar (years 1 and
    9999): ``status`` (with metrics on, which convert the times) reports it ``corrupt``, exit
    1, no traceback; ``load_token`` raises "corrupt"; ``refresh --if-needed`` logs in anew."""
    data = valid_token_json(project, **ABSURD_TIMES[case])
    project.token_file.write_text(json.dumps(data), encoding="utf-8")
    project.settings["XTS_METRICS_FILE"] = str(project.folder / "xts.prom")

    done = run(project, "status", "--json")
    bot = load_token_in_a_bot(str(project.token_file))
    again = run(project, "refresh", "--if-needed")

    assert done.code == 1, done.output
    (entry,) = json.loads(done.stdout)["sessions"]
    assert entry["state"] == "corrupt", entry
    assert "Traceback" not in done.output + done.log
    assert bot["state"] == "corrupt", bot
    assert again.code == 0, again.output
    assert "the stored token is corrupt" in again.output
    assert project.sim.count("interactive_login") == 2


def test_a_token_without_exp_lives_24_hours_in_the_zone_it_was_written_in(
    project: Project,
) -> None:
    """A token without a readable ``exp`` is assumed to live 24 h from its login. Saved by a
    run in India (TZ=Asia/Kolkata), read by ``status`` and a bot in New York: 24 h left, not
    24 h plus the 10.5 h between the zones. The file keeps its contract shape and gains
    ``utc_offset``."""
    for name in ("Asia/Kolkata", "America/New_York"):
        if not Path("/usr/share/zoneinfo", name).exists():
            skip_or_fail(f"the time zone {name} is missing (apt-get install tzdata)")
    opaque = "opaque-session-token-without-dots-0123456789"
    answer = {"type": "success", "code": "s-user-0001", "description": "Valid User.",
              "result": {"token": opaque, "userID": USER_ID, "isInvestorClient": True}}  # fmt: skip
    project.sim.add_fault("interactive_login", Fault.json(answer), 1)

    saved = run(project, env={"TZ": "Asia/Kolkata"})
    data = token_json(project.token_file)
    done = run(project, "status", "--json", env={"TZ": "America/New_York"})
    bot = load_token_in_a_bot(str(project.token_file), env={"TZ": "America/New_York"})

    assert saved.code == 0, saved.output
    assert data["token"] == opaque and data["expires_at"] is None
    assert data["utc_offset"] == "+05:30", data
    assert list(data)[:4] == ["token", "userID", "timestamp", "refreshed_at"]
    (entry,) = json.loads(done.stdout)["sessions"]
    assert 86400 - 120 < entry["seconds_left"] <= 86400, entry
    assert 86400 - 120 < bot["seconds_left"] <= 86400, bot
