"""Token files and their locks: what a save leaves on disk, and who may log in when.

- A save is atomic and durable: the temporary file is written and fsynced, renamed over the
  token path, then the folder is fsynced; a refresh killed with SIGKILL at any moment never
  leaves a broken token file (a reader polling like a bot sees the old or the new token only),
  and the next run removes the leftovers. XTS_CRASH_RUNS sets the number of killed runs
  (default 50).
- Before any login a refresh proves each token file writable (an immutable file, an
  append-only folder): a market-data login ends the previous market-data session, so a token
  that cannot be saved must not be asked for; a full disk after that login says the previous
  token is dead.
- Every token file has its own exclusive lock: two runs never log in to one session at once, a
  run that waits says for whom, and a run that waited logs in only with time left.

The real script runs cron-style against the simulator; nothing is mocked.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    PYTHON,
    SCRIPT,
    USER_ID,
    Project,
    Run,
    assert_no_secrets,
    run_on_a_full_tmpfs,
    run_process,
    skip_or_fail,
    token_json,
)

LOGIN = "interactive_login"


LOGIN_DELAY = 0.5


KILLED_RUNS = int(os.environ.get("XTS_CRASH_RUNS", "50"))


# -- SIGKILL at any moment ----------------------------------------------------------------------


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


# -- locks --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_runs_sharing_a_market_data_file_never_log_in_to_it_at_once(
    project: Project,
) -> None:
    """Two runs with their own interactive token files (so their own run locks) but one
    market-data file, started together against a broker whose logins take LOGIN_DELAY: the
    second market-data login arrives only after the first was answered, and the file holds
    the token XTS issued last, the only one still alive."""
    project.with_marketdata()
    project.sim.login_delay = LOGIN_DELAY
    first, second = project.folder / "a.json", project.folder / "b.json"

    processes = [project.start("--token-file", str(path)) for path in (first, second)]
    runs = [project.finish(process) for process in processes]

    for run in runs:
        assert run.code == 0, run.output
    arrivals = sorted(request.at for request in project.sim.requests("marketdata_login"))
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= LOGIN_DELAY * 0.9, "two market-data logins overlapped"
    assert token_json(project.md_token_file)["token"] == project.sim.issued_tokens("marketdata")[-1]
    assert Path(f"{project.md_token_file}.lock").is_file()
    for path in (first, second):
        assert token_json(path)["userID"]


def run_while_locked(project: Project, holder_text: str, seconds: float) -> Run:
    """A refresh of ``project`` run while another process seems to hold its run lock (whose
    file says ``holder_text``) for ``seconds`` from the start."""
    with Path(f"{project.token_file}.lock").open("w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        holder.write(f"{holder_text}\n")
        holder.flush()
        release = threading.Timer(seconds, lambda: fcntl.flock(holder, fcntl.LOCK_UN))
        release.start()
        try:
            return project.run()
        finally:
            release.cancel()


@pytest.mark.slow
def test_a_run_that_waited_for_the_lock_sends_no_login_it_cannot_finish(project: Project) -> None:
    """Another run holds the run lock for 2 s; XTS_DEADLINE=3 then leaves about 1 s, less than
    one request (XTS_TIMEOUT=2) against a broker whose logins take 1.5 s. The run sends no
    login and exits 4, naming the lock and its holder's pid, not XTS; the market-data token in
    the file is the one XTS issued last, still alive, and the file is byte-identical."""
    for name in ("XTS_INTERACTIVE_API_KEY", "XTS_INTERACTIVE_API_SECRET"):
        del project.settings[name]
    project.with_marketdata()
    first = project.run()
    assert first.code == 0, first.output
    previous = project.md_token_file.read_bytes()
    project.sim.clear()
    project.sim.login_delay = 1.5
    project.settings.update(XTS_DEADLINE="3", XTS_TIMEOUT="2")
    run = run_while_locked(project, "pid 424242 since 2024-10-13 09:00:00", seconds=2.0)

    assert run.code == 4, run.output
    closing = run.stdout.rstrip().splitlines()[-1]
    assert closing.startswith("✗ Token refresh failed (exit code 4)"), closing
    assert "pid 424242" in closing
    assert "lock" in closing
    assert "no login was sent" in closing
    assert "XTS_TIMEOUT" in closing
    assert project.sim.count("marketdata_login") == 0
    assert project.md_token_file.read_bytes() == previous
    assert token_json(project.md_token_file)["token"] == project.sim.issued_tokens("marketdata")[-1]


def test_a_run_waiting_for_the_lock_says_so_and_names_the_holder(project: Project) -> None:
    """Another run holds the lock for a second: this run says it waits, for which pid and how
    long at most, then takes the lock and refreshes (exit 0)."""
    lock_path = Path(f"{project.token_file}.lock")
    run = run_while_locked(project, "pid 515151 since 2024-10-13 09:00:00", seconds=1.5)
    assert run.code == 0, run.output
    assert (
        f"Another refresh (pid 515151 since 2024-10-13 09:00:00) holds the lock {lock_path}; "
        "waiting up to 60 s for it to finish." in run.stdout
    )
    assert "waiting up to" in run.log
    assert project.sim.count("interactive_login") == 1


CONCURRENT_RUNS = 4


@pytest.mark.slow
def test_simultaneous_refreshes_of_one_token_file_never_have_two_logins_in_flight(
    project: Project,
) -> None:
    """Four refreshes of the same token file started at once, against a broker whose logins
    take LOGIN_DELAY: each login arrives at least LOGIN_DELAY after the previous one, so never
    more than one is in flight. It fails if the run lock is taken shared (LOCK_SH)."""
    project.sim.login_delay = LOGIN_DELAY
    started = [project.start() for _ in range(CONCURRENT_RUNS)]
    runs = [project.finish(process) for process in started]
    for run in runs:
        assert run.code == 0, run.output
    arrivals = sorted(request.at for request in project.sim.requests(LOGIN))
    assert len(arrivals) == CONCURRENT_RUNS
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:])]
    # A login is answered LOGIN_DELAY after it arrives, so the next can only start after that.
    assert min(gaps) >= LOGIN_DELAY * 0.9, f"logins overlapped: gaps {gaps}"
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]


PROBE_BLOCKED = 10


LOCK_PROBE = f"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit({PROBE_BLOCKED})
sys.exit(0)
"""


def probe_shared_lock(lock_file: Path) -> int:
    """The exit code of a separate process trying a non-blocking shared lock on ``lock_file``:
    PROBE_BLOCKED when someone holds it exclusively, 0 when it got the lock."""
    done = run_process([PYTHON, "-c", LOCK_PROBE, str(lock_file)], timeout=30)
    assert done.returncode in (0, PROBE_BLOCKED), done.stderr
    return done.returncode


@pytest.mark.slow
def test_a_refresh_holding_the_lock_blocks_even_a_shared_locker(project: Project) -> None:
    """While a refresh waits on a slow login (under the lock), another process cannot take
    even a shared lock on the lock file; once the refresh ended it can (it fails with a shared
    run lock)."""
    project.sim.login_delay = 2.0
    holder = project.start()
    give_up = time.monotonic() + 20
    while project.sim.count(LOGIN) == 0 and holder.poll() is None:
        assert time.monotonic() < give_up, "the refresh never sent its login"
        time.sleep(0.02)
    assert holder.poll() is None, project.finish(holder).output
    lock_file = Path(f"{project.token_file}.lock")
    assert probe_shared_lock(lock_file) == PROBE_BLOCKED, "a shared lock got in beside it"
    assert holder.poll() is None, "the refresh ended before the probe: no proof"
    run = project.finish(holder)
    assert run.code == 0, run.output
    assert probe_shared_lock(lock_file) == 0  # released with the run: the probe itself works


# -- writable before any login ------------------------------------------------------------------


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
    project.with_marketdata()
    assert project.run().code == 0
    project.sim.clear()
    interactive_before = project.token_file.read_bytes()
    marketdata_before = project.md_token_file.read_bytes()
    chattr("+i", project.md_token_file)
    attributes_cleared.append(project.md_token_file)

    run = project.run()

    assert run.code == 4, run.output
    assert project.sim.count("marketdata_login") == 0
    assert project.sim.count("interactive_login") == 1
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
    assert project.sim.count("interactive_login") == 0
    assert f"cannot remove a file from {folder}" in run.stdout
    assert run.stdout.splitlines()[-1].startswith("✗ Token refresh failed (exit code 4)")


@pytest.mark.system
def test_disk_full_after_a_marketdata_login_says_the_previous_token_is_dead(
    project: Project,
) -> None:
    """ENOSPC while saving the market-data token (the probe file fits, the token does not):
    exit 4, and the message says plainly that the previous market-data token no longer works,
    since the login that was just made ended its session."""
    project.with_marketdata()
    mount = project.folder / "small"
    mount.mkdir()
    project.settings["XTS_MARKETDATA_TOKEN_FILE"] = str(mount / "xts_marketdata_token.json")
    env_file = project.write_env()
    done = run_on_a_full_tmpfs(mount, "", f"{PYTHON} {SCRIPT} --env-file {env_file}")
    assert "exit=4" in done.stdout, done.stdout + done.stderr
    assert project.sim.count("marketdata_login") == 1
    assert "No space left on device" in done.stdout
    assert "that token no longer works: this login ended its session" in done.stdout
    assert "the previous token is kept" not in done.stdout
    assert token_json(project.token_file)["userID"] == USER_ID  # interactive was saved
    assert_no_secrets(project, done.stdout, done.stderr)


# -- a save: write, fsync, rename, fsync the folder ---------------------------------------------


TRACED_CALLS = "openat,open,write,fsync,fdatasync,rename,renameat,renameat2,close"


# `1234 fsync(5</tmp/x/.xts_store_token.json.1.2.tmp>) = 0` (-y decodes each fd to its path).
SYSCALL_LINE = re.compile(r"^(?P<pid>\d+)\s+(?P<call>\w+)\((?P<args>.*)\)\s+=\s+(?P<ret>-?\d+)")


FD_WITH_PATH = re.compile(r"^(?P<fd>\d+)<(?P<path>[^>]*)>")


QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Syscall:
    """One finished system call of the trace, in the order the calls finished."""

    index: int
    pid: int
    call: str
    args: str
    ret: int
    ret_path: str | None  # what a returned fd refers to (openat), from -y

    @property
    def fd_path(self) -> str | None:
        """The path of the fd in the first argument (fsync, write, close), from -y."""
        found = FD_WITH_PATH.match(self.args)
        return found["path"] if found else None

    @property
    def strings(self) -> list[str]:
        """The quoted (path) arguments: openat's file, rename's old and new names."""
        return QUOTED.findall(self.args)


def parse_strace(text: str) -> list[Syscall]:
    """The finished system calls of an ``strace -f -y`` log; interrupted calls are joined."""
    pending: dict[str, str] = {}
    calls: list[Syscall] = []
    for raw in text.splitlines():
        pid, _, rest = raw.partition(" ")
        rest = rest.lstrip()
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len("<unfinished ...>")].rstrip()
            continue
        resumed = re.match(r"<\.\.\. \w+ resumed>(.*)", rest)
        if resumed:
            rest = pending.pop(pid, "") + resumed[1]
        found = SYSCALL_LINE.match(f"{pid} {rest}")
        if not found:
            continue  # signals, exits
        ret_path = re.search(r"=\s+-?\d+<([^>]*)>", rest)
        calls.append(
            Syscall(
                len(calls),
                int(found["pid"]),
                found["call"],
                found["args"],
                int(found["ret"]),
                ret_path[1] if ret_path else None,
            )
        )
    return calls


def usable_strace() -> str:
    """The strace program, proven able to trace here; skip (fail under CI=true) otherwise."""
    found = shutil.which("strace", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if found is None:
        skip_or_fail("strace is not installed (apt-get install strace)")
    assert found is not None
    probe = subprocess.run(
        [found, "-f", "-o", os.devnull, "/bin/true"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        skip_or_fail(f"strace cannot trace here (ptrace refused?): {probe.stderr.strip()}")
    return found


@pytest.mark.system
def test_a_token_save_writes_fsyncs_renames_then_fsyncs_the_folder(
    project: Project, tmp_path: Path
) -> None:
    """Under strace, the real script's save: the temporary file is written and fsynced before
    it is renamed over the token path, and the folder is opened and fsynced after the rename.

    It fails on dropping ``os.fsync(fd)`` in write_atomically, dropping ``_fsync_folder(folder)``,
    or fsyncing the folder before the rename."""
    strace = usable_strace()
    trace = tmp_path / "strace.log"
    argv = [
        strace,
        "-f",
        "-y",
        "-s",
        "0",  # no written bytes in the trace: they hold the token
        "-e",
        f"trace={TRACED_CALLS}",
        "-o",
        str(trace),
        PYTHON,
        str(SCRIPT),
        "--env-file",
        str(project.write_env()),
    ]
    done = run_process(argv, env={"XTS_LOG_FILE": str(project.log_file)}, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_no_secrets(project, done.stdout, done.stderr)
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[0]

    calls = parse_strace(trace.read_text("utf-8", "replace"))
    folder = os.path.realpath(project.folder)
    target = os.path.realpath(project.token_file)
    temporary = re.compile(re.escape(folder) + r"/\.xts_store_token\.json\.\d+\.\d+\.tmp")
    renames = [
        c
        for c in calls
        if c.call in ("rename", "renameat", "renameat2")
        and c.ret == 0
        and len(c.strings) >= 2
        and c.strings[1] == target
        and temporary.fullmatch(c.strings[0])
    ]
    assert len(renames) == 1, f"expected one rename of a temporary file onto {target}: {renames}"
    rename = renames[0]
    tmp = rename.strings[0]

    writes = [c for c in calls if c.call == "write" and c.fd_path == tmp and c.ret > 0]
    assert writes, f"no write to {tmp} before the rename"
    assert writes[-1].index < rename.index
    file_syncs = [
        c
        for c in calls
        if c.call in ("fsync", "fdatasync")
        and c.fd_path == tmp
        and c.ret == 0
        and writes[-1].index < c.index < rename.index
    ]
    assert file_syncs, "the temporary token file was not fsynced between its write and rename"

    folder_opens = [
        c
        for c in calls
        if c.call in ("openat", "open")
        and c.index > rename.index
        and c.strings[:1] == [folder]
        and re.search(r"O_RDONLY|O_DIRECTORY", c.args)
        and c.ret >= 0
    ]
    assert folder_opens, f"the folder {folder} was not opened after the rename"
    folder_syncs = [
        c
        for c in calls
        if c.call in ("fsync", "fdatasync")
        and c.fd_path == folder
        and c.index > folder_opens[0].index
    ]
    assert folder_syncs, f"the folder {folder} was not fsynced after the rename"


# -- XTS_TOKEN_GROUP: token files a group's bots can read ---------------------------------------


TOKEN_GROUP = "nogroup"  # a group every Debian machine has; root may give files to any group


def token_group_id() -> int:
    """The ID of TOKEN_GROUP; skip (fail under CI=true) where the machine lacks it, or where
    this process is not root (only root may give files to a group it is not in)."""
    import grp

    if os.geteuid() != 0:
        skip_or_fail("giving files to a group this user is not in needs root")
    try:
        return grp.getgrnam(TOKEN_GROUP).gr_gid
    except KeyError:
        skip_or_fail(f"the group {TOKEN_GROUP} is missing")
        raise


def owner_and_mode(path: Path) -> tuple[int, int]:
    """The group and the permission bits of ``path`` (not followed)."""
    info = path.lstat()
    return info.st_gid, stat.S_IMODE(info.st_mode)


@pytest.mark.parametrize("group", ["no-such-group-xts", "4294967294"])
def test_an_unknown_token_group_is_exit_2_before_any_login(project: Project, group: str) -> None:
    """XTS_TOKEN_GROUP naming a group the machine does not have (by name or by ID): exit 2
    before any login, the line naming the setting and the group; the previous token file is
    left byte for byte."""
    previous = b'{"token": "previous-run-token", "userID": "CK68"}\n'
    project.token_file.write_bytes(previous)
    project.settings["XTS_TOKEN_GROUP"] = group

    run = project.run()

    assert run.code == 2, run.output
    assert f"XTS_TOKEN_GROUP names the group '{group}', which this machine does not have" in (
        run.stdout
    )
    assert run.stdout.rstrip().splitlines()[-1].startswith("✗")
    assert project.sim.count(LOGIN) == 0
    assert project.token_file.read_bytes() == previous


def test_a_token_group_owns_the_token_files_and_account_folders_even_under_umask_000(
    project: Project,
) -> None:
    """With XTS_TOKEN_GROUP in .env, under umask 000: each token file is 0640 and owned by the
    group, each account folder 0750 and the group's (one made before the setting too), the lock
    files stay 0600; an account whose own file sets no group while .env does still gets it;
    without the setting, a new account's folder is 0700 and its file 0600, as always."""
    gid = token_group_id()
    accounts = project.with_marketdata().with_accounts("alice", "bob")
    (accounts / "bob").mkdir(mode=0o700)  # made by a refresh before the group was set
    project.settings["XTS_TOKEN_GROUP"] = TOKEN_GROUP

    run = project.run(preexec=lambda: os.umask(0))

    assert run.code == 0, run.output
    for name in ("alice", "bob"):
        folder = accounts / name
        assert owner_and_mode(folder) == (gid, 0o750), name
        token = folder / "xts_store_token.json"
        assert owner_and_mode(token) == (gid, 0o640), name
        assert owner_and_mode(folder / "xts_store_token.json.lock")[1] == 0o600, name
        assert token_json(token)["userID"] == USER_ID
    del project.settings["XTS_TOKEN_GROUP"]
    (accounts / "carol.env").write_text((accounts / "alice.env").read_text(), "utf-8")
    (accounts / "carol.env").chmod(0o600)

    plain = project.run("--account", "carol", preexec=lambda: os.umask(0))

    assert plain.code == 0, plain.output
    assert stat.S_IMODE((accounts / "carol").stat().st_mode) == 0o700
    assert stat.S_IMODE((accounts / "carol" / "xts_store_token.json").stat().st_mode) == 0o600


def test_a_kept_token_is_given_to_the_group_without_a_login(project: Project) -> None:
    """A token file saved before XTS_TOKEN_GROUP was set, still valid: `--if-needed` keeps it
    without a login, and gives it to the group (0640) at once, so the bots need not wait for the
    next login."""
    gid = token_group_id()
    first = project.run()
    assert first.code == 0, first.output
    assert stat.S_IMODE(project.token_file.stat().st_mode) == 0o600
    before = project.token_file.read_bytes()
    project.settings["XTS_TOKEN_GROUP"] = str(gid)  # a group ID works as well as its name

    kept = project.run("--if-needed")

    assert kept.code == 0, kept.output
    assert project.sim.count(LOGIN) == 1
    assert owner_and_mode(project.token_file) == (gid, 0o640)
    assert project.token_file.read_bytes() == before


@pytest.mark.system
def test_a_token_for_a_group_has_its_group_and_mode_before_its_first_byte(
    project: Project, tmp_path: Path
) -> None:
    """Under strace: the temporary token file is created owner-only, given the group and mode
    0640 before anything is written to it, and only then renamed over the token path, so the
    token file has its final group and mode from the moment it exists."""
    gid = token_group_id()
    project.settings["XTS_TOKEN_GROUP"] = TOKEN_GROUP
    strace = usable_strace()
    trace = tmp_path / "strace.log"
    argv = [strace, "-f", "-y", "-s", "0", "-e", f"trace={TRACED_CALLS},fchown,fchmod", "-o",
            str(trace), PYTHON, str(SCRIPT), "--env-file", str(project.write_env())]  # fmt: skip
    done = run_process(argv, env={"XTS_LOG_FILE": str(project.log_file)}, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert owner_and_mode(project.token_file) == (gid, 0o640)

    calls = parse_strace(trace.read_text("utf-8", "replace"))
    target = os.path.realpath(project.token_file)
    (rename,) = [
        c for c in calls if c.call.startswith("rename") and c.ret == 0 and target in c.strings[1:]
    ]
    tmp = rename.strings[0]
    (created,) = [c for c in calls if c.call in ("openat", "open") and c.ret_path == tmp]
    assert "O_CREAT" in created.args and created.args.rstrip().endswith("0600"), created.args
    on_tmp = [c for c in calls if c.fd_path == tmp and created.index < c.index < rename.index]
    order = [c.call for c in on_tmp if c.call in ("fchown", "fchmod", "write")]
    assert order[:2] == ["fchown", "fchmod"] and "write" in order, order
    chown, chmod = (next(c for c in on_tmp if c.call == call) for call in ("fchown", "fchmod"))
    assert chown.args.endswith(f", -1, {gid}"), chown.args
    assert chmod.args.endswith(", 0640"), chmod.args
