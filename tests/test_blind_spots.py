"""Five bugs a mutation campaign planted that no other test noticed, each killed here.

1. Durability: the fsync of the temporary token file, or of its folder after the rename,
   dropped. The real script runs under ``strace`` and the order of its system calls is read
   from the trace: write, fsync of the temporary file, rename over the token path, fsync of an
   fd opened on the folder.
2. The run lock turned into a shared lock (``LOCK_SH``). Several refreshes of one token file
   against a slow broker never have two logins in flight; a probe process cannot even take a
   shared lock while a refresh holds the lock.
3. The retry loop sleeping past ``XTS_DEADLINE`` (a backoff or a ``Retry-After`` far longer
   than the deadline): the run still ends within the deadline, exit 3, saying why.
4. The built-in Asia/Kolkata offset (used where the machine has no zoneinfo data) wrong in
   sign: ``cron print`` without zoneinfo data still gives the right crontab hours.
5. Tokens the redactor was never told about (a JWT, a Telegram bot token) masked in any text,
   in-process and end to end (an XTS error description echoing one, a hook printing one).

mutation/README.md ("Blind spots an earlier run found") lists the same five, one row each.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    INTERACTIVE_KEY,
    INTERACTIVE_SECRET,
    MARKETDATA_KEY,
    MARKETDATA_SECRET,
    PYTHON,
    SCRIPT,
    USER_ID,
    Project,
    Run,
    assert_no_secrets,
    run_process,
    skip_or_fail,
    token_json,
)

from xts_refresher.console import Redactor
from xts_refresher.simulator import Fault, XtsSimulator
from xts_refresher.store import mask

LOGIN = "interactive_login"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unregistered_jwt() -> str:
    """A fresh JWT-shaped token (``eyJ…``) that no simulator issued and nobody registered."""
    header = {"alg": "HS256", "typ": "JWT", "kid": secrets.token_hex(6)}
    claims = {"sub": secrets.token_hex(8), "exp": int(time.time()) + 86400}
    parts = (
        json.dumps(header).encode(),
        json.dumps(claims).encode(),
        secrets.token_bytes(32),
    )
    return ".".join(_b64url(part) for part in parts)


def unregistered_bot_token() -> str:
    """A fresh Telegram-bot-token-shaped string (``<digits>:<35+ url-safe chars>``)."""
    bot_id = 1_000_000_000 + secrets.randbelow(8_999_999_999)
    return f"{bot_id}:AA{secrets.token_urlsafe(30)}Z"


LEAK_WINDOW = 10  # no 10 characters of an unregistered token may appear together


def assert_masked(token: str, *texts: str) -> None:
    """``token`` appears in none of ``texts``, not even in part: at most a 6-character prefix.

    Every run of LEAK_WINDOW characters of the token is looked for, so a redactor that masked
    only the first part of a JWT (its standard header) would be caught too.
    """
    # pytest.fail, not assert: pytest's report of a failed `assert x not in text` would print
    # the text, token and all.
    for text in texts:
        if token in text:
            pytest.fail(f"an unregistered token leaked whole: {mask(token)}")
        for start in range(len(token) - LEAK_WINDOW + 1):
            if token[start : start + LEAK_WINDOW] in text:
                pytest.fail(f"{LEAK_WINDOW} characters of a token leaked, from offset {start}")
        prefix_run = re.escape(token[:3]) + r"[A-Za-z0-9_.:-]*"
        for found in re.finditer(prefix_run, text):
            if token.startswith(found[0]) and len(found[0]) > 6:
                pytest.fail(f"more than a 6-character prefix of a token shown: {len(found[0])}")


@dataclass
class Started:
    """A refresh started in the background (cron-style), to be finished with finish()."""

    project: Project
    process: subprocess.Popen[str]

    def finish(self, timeout: float = 60) -> Run:
        """Wait for the run; its Run (secrets checked as conftest's Project.run does)."""
        stdout, stderr = self.process.communicate(timeout=timeout)
        log = self.project.log_file.read_text("utf-8") if self.project.log_file.exists() else ""
        run = Run(self.process.returncode, stdout, stderr, log)
        assert_no_secrets(self.project, run.output, run.log)
        return run


def start_refresh(project: Project, env_file: Path) -> Started:
    """Start ``xts_token_refresh.py --env-file ENV`` as cron would, without waiting for it."""
    process = subprocess.Popen(
        [PYTHON, str(SCRIPT), "--env-file", str(env_file)],
        env={"PATH": "/usr/bin:/bin", "XTS_LOG_FILE": str(project.log_file)},
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Started(project, process)


@contextmanager
def slow_simulator(login_delay: float) -> Iterator[XtsSimulator]:
    """A simulator with the tests' fake accounts whose every login answers after a wait."""
    with XtsSimulator(login_delay=login_delay) as simulator:
        simulator.add_account(INTERACTIVE_KEY, INTERACTIVE_SECRET, USER_ID, "interactive")
        simulator.add_account(MARKETDATA_KEY, MARKETDATA_SECRET, USER_ID, "marketdata")
        yield simulator


# -- 1. durability: the order of write, fsync, rename, folder fsync ------------------------------

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

    Kills: dropping ``os.fsync(fd)`` in write_atomically, dropping ``_fsync_folder(folder)``,
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


# -- 2. the run lock is exclusive ---------------------------------------------------------------

LOGIN_DELAY = 0.5
CONCURRENT_RUNS = 4


@pytest.mark.slow
def test_simultaneous_refreshes_of_one_token_file_never_have_two_logins_in_flight(
    tmp_path: Path,
) -> None:
    """Four refreshes of the same token file started at once, against a broker whose logins
    take LOGIN_DELAY: each login arrives at least LOGIN_DELAY after the previous one, so never
    more than one is in flight. Kills: the run lock taken with LOCK_SH instead of LOCK_EX."""
    with slow_simulator(LOGIN_DELAY) as sim:
        project = Project(sim, tmp_path)
        env_file = project.write_env()
        started = [start_refresh(project, env_file) for _ in range(CONCURRENT_RUNS)]
        runs = [run.finish() for run in started]
        for run in runs:
            assert run.code == 0, run.output
        arrivals = sorted(request.at for request in sim.requests(LOGIN))
    assert len(arrivals) == CONCURRENT_RUNS
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:])]
    # A login is answered LOGIN_DELAY after it arrives, so the next can only start after that.
    assert min(gaps) >= LOGIN_DELAY * 0.9, f"logins overlapped: gaps {gaps}"
    assert token_json(project.token_file)["token"] == sim.issued_tokens("interactive")[-1]


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
def test_a_refresh_holding_the_lock_blocks_even_a_shared_locker(tmp_path: Path) -> None:
    """While a refresh waits on a slow login (under the lock), another process cannot take
    even a shared lock on the lock file; once the refresh ended it can. Kills: LOCK_SH."""
    with slow_simulator(2.0) as sim:
        project = Project(sim, tmp_path)
        holder = start_refresh(project, project.write_env())
        give_up = time.monotonic() + 20
        while sim.count(LOGIN) == 0 and holder.process.poll() is None:
            assert time.monotonic() < give_up, "the refresh never sent its login"
            time.sleep(0.02)
        assert holder.process.poll() is None, holder.finish().output
        lock_file = Path(f"{project.token_file}.lock")
        assert probe_shared_lock(lock_file) == PROBE_BLOCKED, "a shared lock got in beside it"
        assert holder.process.poll() is None, "the refresh ended before the probe: no proof"
        run = holder.finish()
    assert run.code == 0, run.output
    assert probe_shared_lock(lock_file) == 0  # released with the run: the probe itself works


# -- 3. the deadline bounds the retry waits -----------------------------------------------------

DEADLINE = 3.0
DEADLINE_MARGIN = 1.5


@pytest.mark.parametrize(
    ("fault", "settings"),
    [
        pytest.param(Fault.html(503), {"XTS_RETRY_BACKOFF": "60"}, id="503-backoff-60"),
        pytest.param(Fault.rate_limited(retry_after=120), {}, id="429-retry-after-120"),
    ],
)
def test_a_wait_longer_than_the_deadline_ends_the_run_at_once(
    project: Project, fault: Fault, settings: dict[str, str]
) -> None:
    """A retry wait (backoff 60 s, or Retry-After: 120) far past XTS_DEADLINE=3 is not slept:
    the run ends within the deadline plus a margin, exit 3, saying XTS_DEADLINE leaves no time.
    Kills: a retry loop that sleeps the wait without comparing it with the time left."""
    project.settings.update(XTS_DEADLINE=f"{DEADLINE:g}", XTS_RETRIES="20", **settings)
    project.sim.add_fault(LOGIN, fault, times=50)
    started = time.monotonic()
    try:
        run = project.run(timeout=DEADLINE + 20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the run slept past XTS_DEADLINE={DEADLINE:g} s and had to be killed")
    elapsed = time.monotonic() - started
    assert run.code == 3, run.output
    assert elapsed <= DEADLINE + DEADLINE_MARGIN, f"the run took {elapsed:.1f} s"
    assert "XTS_DEADLINE" in run.stdout
    assert "leaves no time" in run.stdout
    assert project.sim.count(LOGIN) == 1  # no retry was started
    assert not project.token_file.exists()


# -- 4. the built-in zone offsets, on a machine without zoneinfo data ---------------------------

HIDDEN_TZDATA = 'raise ImportError("the tzdata package is hidden by tests/test_blind_spots.py")\n'


def no_zoneinfo_environment(tmp_path: Path, machine_zone: str) -> dict[str, str]:
    """An environment in which Python finds no zoneinfo data at all: PYTHONTZPATH names an
    empty folder, and a ``tzdata`` package that cannot be imported shadows any installed one."""
    empty = tmp_path / "empty-zoneinfo"
    empty.mkdir(exist_ok=True)
    shadow = tmp_path / "no-tzdata" / "tzdata"
    shadow.mkdir(parents=True, exist_ok=True)
    (shadow / "__init__.py").write_text(HIDDEN_TZDATA, encoding="utf-8")
    return {
        "TZ": machine_zone,
        "PYTHONTZPATH": str(empty),
        "PYTHONPATH": str(shadow.parent),
    }


ZONE_CHECK = """
import sys, zoneinfo
for name in sys.argv[1:]:
    try:
        zoneinfo.ZoneInfo(name)
    except zoneinfo.ZoneInfoNotFoundError:
        continue
    sys.exit(f"{name} was found: the fallback would not be used")
"""


@pytest.mark.parametrize(
    ("machine_zone", "zone", "at", "hours"),
    [
        pytest.param("UTC", "Asia/Kolkata", "09:00", "30 3", id="ist-on-a-utc-machine"),
        pytest.param("Asia/Kolkata", "Asia/Kolkata", "09:00", "0 9", id="ist-on-an-ist-machine"),
        pytest.param("Asia/Kolkata", "UTC", "03:30", "0 9", id="utc-on-an-ist-machine"),
    ],
)
def test_cron_print_without_zoneinfo_data_uses_correct_built_in_offsets(
    tmp_path: Path, machine_zone: str, zone: str, at: str, hours: str
) -> None:
    """With no zoneinfo database and no tzdata package, ``cron print`` converts with its
    built-in offsets, and they are right: 09:00 IST is 03:30 UTC, and 09:00 on an IST machine.
    Kills: the fallback Asia/Kolkata offset wrong in sign (-05:30) or missing."""
    env = no_zoneinfo_environment(tmp_path, machine_zone)
    check = run_process([PYTHON, "-c", ZONE_CHECK, zone, machine_zone], env=env, timeout=30)
    assert check.returncode == 0, check.stderr  # the zones really are missing in there
    done = run_process(
        [PYTHON, str(SCRIPT), "cron", "print", "--tz", zone, "--at", at], env=env, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1, done.stdout
    assert lines[0].startswith(f"{hours} * * * "), lines[0]
    assert "Traceback" not in done.stderr


# -- 5. tokens nobody registered are masked by their shape --------------------------------------


def test_the_redactor_masks_jwt_and_bot_token_shapes_it_was_never_told_about() -> None:
    """A Redactor with no secrets masks a JWT (``eyJ….….…``) and a Telegram bot token in any
    text, down to a prefix of at most six characters. Kills: SECRET_SHAPES emptied or broken."""
    redactor = Redactor()
    jwt, bot = unregistered_jwt(), unregistered_bot_token()
    for token in (jwt, bot):
        for text in (
            f"Invalid Token {token}",
            f"token={token}.",
            f'{{"token": "{token}", "userID": "CK68"}}',
            f"Authorization: {token}\nnext line",
            f"({token})",
        ):
            masked = redactor.redact(text)
            assert_masked(token, masked)
            assert mask(token) in masked  # the text keeps its shape: a masked prefix
    record = redactor.redact(f"two at once: {jwt} and {bot}")
    assert_masked(jwt, record)
    assert_masked(bot, record)


def test_an_xts_error_echoing_an_unregistered_token_is_masked_everywhere(
    project: Project,
) -> None:
    """A refused login whose description echoes a token the run never saw (an XTS
    "Invalid Token <jwt>"): exit 1, XTS's code shown, the token only as a masked prefix in
    stdout, stderr and the log file. Kills: SECRET_SHAPES emptied or broken."""
    jwt, bot = unregistered_jwt(), unregistered_bot_token()
    project.sim.add_fault(LOGIN, Fault.xts_error("e-session-0007", f"Invalid Token {jwt}"))
    run = project.run()
    assert run.code == 1, run.output
    assert "e-session-0007" in run.stdout
    assert "Invalid Token" in run.stdout
    assert_masked(jwt, run.stdout, run.stderr, run.log)
    assert mask(jwt) in run.stdout
    assert mask(jwt) in run.log

    project.sim.add_fault(LOGIN, Fault.xts_error("e-session-0007", f"Invalid bot {bot}"))
    run = project.run()
    assert run.code == 1, run.output
    assert_masked(bot, run.stdout, run.stderr, run.log)
    assert mask(bot) in run.stdout


def test_a_hook_printing_an_unregistered_token_is_masked_in_the_output_and_log(
    project: Project,
) -> None:
    """XTS_POST_REFRESH_HOOK output is logged; a JWT or bot token it prints (never registered)
    shows only as a masked prefix. Kills: SECRET_SHAPES emptied or broken."""
    jwt, bot = unregistered_jwt(), unregistered_bot_token()
    project.settings["XTS_POST_REFRESH_HOOK"] = f"echo {jwt}; echo bot={bot}"
    run = project.run()
    assert run.code == 0, run.output
    assert "hook:" in run.log
    for token in (jwt, bot):
        assert_masked(token, run.stdout, run.stderr, run.log)
        assert mask(token) in run.log
