"""Benchmark of the XTS token refresher against its budgets (benchmarks/README.md).

Run it from the repository::

    .venv/bin/python benchmarks/bench.py [--runs N] [--warmup N] [--deadline-runs N]
                                         [--accounts-runs N] [--json]
    .venv/bin/python benchmarks/bench.py --instructions [--instruction-runs N] [--jobs N] [...]

On a 2-core machine the first form takes about 10 s (the never-answering server), 5.5 s (the
accounts' 5 rounds, about 1 s each, and their warm-up) and 0.6 s a round: 23 s with
``--runs 10``, 50 s with the default 50 rounds. ``--instructions`` adds about a minute with the
defaults (3 counts of each of the 7 processes under valgrind, 2 at a time; Python runs 10-50x
slower under it): 75-90 s in all with ``--runs 10``, 110 s with the defaults.

It starts the bundled XTS simulator on 127.0.0.1 in this process (no faults), writes a
temporary .env and folder (the token files, the log and the lock go there: nothing is written
into the repository), and times every program as a separate process started the way cron starts
it: a bare environment (``PATH=/usr/bin:/bin``), from ``/``, stdin from /dev/null, output to a
file. After the warm-up rounds, every round runs each process once, in a rotating order, so that
drift on a busy machine hits every measurement alike; each process is reaped with ``os.wait4``,
which gives its own peak RSS. Reported: median, min, p90 and max; ``ratio``, the median over the
baseline's median; ``paired``, the median of the per-round ratios (less sensitive to load that
comes and goes); the budget and its verdict. The budgets:

1. ``xts_token_refresh.py --env-file X`` (a full refresh) against a floor script that imports
   requests, POSTs the same interactive login and writes the JSON token file: <= 1.10x.
2. ``refresh_xts_token.sh --env-file X`` against the same direct call of the script: <= 1.15x.
3. ``load_token(path)`` in a fresh process against ``json.load(open(path))`` in a fresh process:
   <= 1.25x (and, as a secondary number without a budget, the in-process cost of each per call).
4. The peak RSS of a refresh process: at most 32 MiB (every round), with the floor's alongside.
5. A server that never answers (the simulator's ``Fault.hang`` on every interactive login,
   on a second simulator) with ``XTS_DEADLINE=3``: the whole refresh process, started to reaped,
   takes at most 3.5 s (every one of ``--deadline-runs`` runs; it must exit 3, XTS unreachable).
6. Many accounts, on a third simulator whose every login is answered only after 0.3 s
   (``XtsSimulator(login_delay=0.3)``): one refresh process of an install with 20 account files
   (``XTS_ACCOUNTS_DIR`` in the shared .env; each ``NAME.env`` with its own app key, registered
   on that simulator, and its own user ID) against one of an install with a single account
   file: <= 1.5x, on the wall-time medians of ``--accounts-runs`` rounds (5 by default, after
   one warm-up round each; the two alternate which goes first). Each run must exit 0 and
   write every account's token file anew (``NAME/xts_store_token.json`` in the accounts
   folder), else the benchmark fails (exit code 2).
7. The peak RSS of that 20-account refresh process: at most 45 MiB (every round), with the
   single-account one's alongside.

Budget 6 is about concurrency (20 logins' waits overlapping in one process), which instruction
counts cannot see: it is always judged on the wall-time medians, with or without
``--instructions``, and its processes never run under valgrind.

Without ``--instructions``, budgets 1-3 are judged on the ratio of the wall-time medians, which
move by 10 % and more on a shared machine. With ``--instructions``, the processes of budgets 1-3
(and the context rows) are also run ``--instruction-runs`` times each (3 by default) under
callgrind, the simulator still in this process and not under valgrind::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null --child-silent-after-fork=yes
             --trace-children=yes --log-file=PRIVATE_TMP/vg.%p CMD

and a process's count is the sum of the ``Collected :`` lines of every log file of its process
tree (the logs go to a private temporary folder, removed after each count). For the wrapper
that is bash, every program it starts and the Python it runs, which is intended: the ratio is
wrapper tree / direct script tree. ``--child-silent-after-fork=yes`` matters: callgrind's
counters survive a fork, so a bash subshell that forks and never execs (``$(script_dir)``)
would otherwise log its parent's whole count again (measured: a bash that had run 200.8 M
instructions forked a ``$(echo hi)`` subshell that logged 200.8 M too; the wrapper's six
subshells made its tree 635 M instead of 605 M, 5 % too much). With it, every log is one
program image counted from its exec to its exit; left out are only the few instructions of a
subshell between its fork and its exec or exit, and (a valgrind limit) a program image that
ends by exec'ing another (``exec python ...``), whose log the new image overwrites. Instruction
counts do not depend on the machine's load or on ``--jobs``: they repeat to within about 0.2 %
(the spread column, (max - min) / median, shows it; 0.05-0.13 % in practice), nearly all of it
from Python's random hash seed: ``--hash-seed N`` pins it, and the counts then repeat to a few
parts per million. Budgets 1-3 are then judged on the ratio of the instruction medians; the
times are still shown, without a verdict. Budgets 4-7 are always judged on the processes
run without valgrind.

Context rows (no budget): ``python -c pass`` and ``python -c "import requests"``. The machine,
its load average before and after, and the CPU pressure are printed with the table, since a busy
machine inflates every time. This is a benchmark, not a test: nothing here runs in CI. Exit
code: 0 when every budget is met, 1 when one is not, 2 when a measured program failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported for real in run_benchmark, once the repository is on sys.path
    from xts_refresher.simulator import Fault, XtsSimulator

APP_DIR = Path(__file__).resolve().parent.parent
SCRIPT = APP_DIR / "xts_token_refresh.py"
WRAPPER = APP_DIR / "refresh_xts_token.sh"
VENV_PYTHON = APP_DIR / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable))
CRON_ENV = {"PATH": "/usr/bin:/bin"}
COMMAND = ".venv/bin/python benchmarks/bench.py"
VALGRIND = "/usr/bin/valgrind" if Path("/usr/bin/valgrind").exists() else shutil.which("valgrind")

# Fake credentials, known only to the simulators this benchmark starts.
USER_ID = "BENCH1"
APP_KEY = "ik-BENCH-interactive-key"
APP_SECRET = "is-BENCH-interactive-secret"

DEFAULT_RUNS = 50
DEFAULT_WARMUP = 3
DEFAULT_INSTRUCTION_RUNS = 3
DEFAULT_JOBS = max(1, min(2, len(os.sched_getaffinity(0))))
DEFAULT_DEADLINE_RUNS = 3
DEFAULT_ACCOUNTS_RUNS = 5
IN_PROCESS_CALLS = 2000
IN_PROCESS_REPEATS = 9
MIB = 1024 * 1024

TARGET_REFRESH = 1.10
TARGET_WRAPPER = 1.15
TARGET_LOAD_TOKEN = 1.25
TARGET_RSS_MIB = 32.0
DEADLINE_SECONDS = 3  # XTS_DEADLINE of budget 5
TARGET_DEADLINE_SECONDS = 3.5
HANG_SECONDS = 60.0  # how long the never-answering server holds each login (well past 3 s)
HANG_FAULTS = 1000  # queued on the second simulator: more than all the runs' attempts
EXIT_UNREACHABLE = 3  # the contract's exit code for "XTS unreachable" (README, "Exit codes")
ACCOUNTS = 20  # account files of the many-account install of budgets 6 and 7
LOGIN_DELAY = 0.3  # seconds every login waits on the slow simulator of budgets 6 and 7
TARGET_ACCOUNTS = 1.5  # the 20-account refresh's wall time over the single-account one's
TARGET_ACCOUNTS_RSS_MIB = 45.0

COLLECTED = re.compile(r"^==\d+== Collected : (\d+)\s*$", re.MULTILINE)

FLOOR_SCRIPT = '''\
"""The floor of a refresh: import requests, log in once, write the JSON token file."""
import json
import sys

import requests

url, path = sys.argv[1], sys.argv[2]
payload = {{"appKey": {key!r}, "secretKey": {secret!r}, "source": "WEBAPI"}}
body = requests.post(url + "/interactive/user/session", json=payload, timeout=30).json()
if body.get("type") != "success":
    sys.exit(1)
with open(path, "w", encoding="utf-8") as file:
    json.dump(body["result"], file, indent=2)
'''

# Both processes of measurement 3 put the repository on sys.path the same way.
LOAD_TOKEN_CODE = (
    "import sys; sys.path.insert(0, {app!r}); "
    "from xts_token_refresh import load_token; load_token({path!r})"
)
JSON_LOAD_CODE = (
    "import sys; sys.path.insert(0, {app!r}); import json; json.load(open({path!r}, 'rb'))"
)

# What the refresher would write into the repository if its settings were not followed.
REPO_OUTPUTS = (
    "xts_store_token.json",
    "xts_marketdata_token.json",
    "xts_store_token.json.lock",
    "xts_token_refresh.log",
    ".env",
)


@dataclass(frozen=True)
class Workdir:
    """A folder with its own .env, token files, log, lock and output file.

    Processes that run at the same time (``--jobs``) each get one, so that two refreshes never
    wait for each other's lock.
    """

    folder: Path
    env_file: Path
    token_file: Path
    floor_token_file: Path
    output: Path

    @classmethod
    def create(cls, folder: Path, api_root: str, **extra: str) -> Workdir:
        """A workdir in the new folder ``folder``, its .env pointing at ``api_root``."""
        folder.mkdir(mode=0o700)
        work = cls(
            folder,
            folder / "bench.env",
            folder / "xts_store_token.json",
            folder / "floor_token.json",
            folder / "output.txt",
        )
        settings = {
            "XTS_API_ROOT": api_root,
            "XTS_INTERACTIVE_API_KEY": APP_KEY,
            "XTS_INTERACTIVE_API_SECRET": APP_SECRET,
            "XTS_USER_ID": USER_ID,
            "XTS_TOKEN_FILE": str(work.token_file),
            "XTS_MARKETDATA_TOKEN_FILE": str(folder / "xts_marketdata_token.json"),
            "XTS_LOG_FILE": str(folder / "xts_token_refresh.log"),
            **extra,
        }
        work.env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()), "utf-8")
        work.env_file.chmod(0o600)
        return work


@dataclass
class Install:
    """An install with account files: a shared .env naming the accounts folder, one
    ``NAME.env`` per account (its own app key, registered on the simulator, and its own user
    ID), and the wall seconds and peak RSS (bytes) of each timed refresh of all its accounts.
    """

    name: str
    folder: Path
    env_file: Path
    token_files: tuple[Path, ...]
    output: Path
    seconds: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)

    @classmethod
    def create(cls, name: str, folder: Path, sim: XtsSimulator, accounts: int) -> Install:
        """An install in the new folder ``folder`` with ``accounts`` accounts on ``sim``."""
        folder.mkdir(mode=0o700)
        accounts_dir = folder / "accounts"
        accounts_dir.mkdir(mode=0o700)
        tag = folder.name.upper()
        token_files = []
        for number in range(accounts):
            account = f"acct{number:02d}"
            key = f"ik-BENCH-{tag}-{account}"
            secret = f"is-BENCH-{tag}-{account}"
            user = f"BENCH{tag}{number:02d}"
            sim.add_account(key, secret, user, "interactive")
            settings = {
                "XTS_API_ROOT": sim.url,
                "XTS_INTERACTIVE_API_KEY": key,
                "XTS_INTERACTIVE_API_SECRET": secret,
                "XTS_USER_ID": user,
            }
            account_file = accounts_dir / f"{account}.env"
            account_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()), "utf-8")
            account_file.chmod(0o600)
            # Where a refresh writes the account's token (docs/accounts.md, "Files of an account").
            token_files.append(accounts_dir / account / "xts_store_token.json")
        env_file = folder / "bench.env"
        shared = {
            "XTS_ACCOUNTS_DIR": str(accounts_dir),
            "XTS_LOG_FILE": str(folder / "xts_token_refresh.log"),
        }
        env_file.write_text("".join(f"{k}={v}\n" for k, v in shared.items()), "utf-8")
        env_file.chmod(0o600)
        return cls(name, folder, env_file, tuple(token_files), folder / "output.txt")

    def refresh(self) -> tuple[float, int]:
        """Refresh every account in one process, as cron does: wall seconds and peak RSS.

        Raises BenchmarkError when it fails or leaves any account's token file as it was.
        """
        before = [file_bytes(path) for path in self.token_files]
        argv = [PYTHON, str(SCRIPT), "--env-file", str(self.env_file)]
        elapsed, rss, code = run_process(argv, self.output)
        stale = [
            path for path, old in zip(self.token_files, before) if file_bytes(path) in (None, old)
        ]
        if code != 0 or stale:
            text = self.output.read_text(encoding="utf-8", errors="replace")[-2000:]
            what = (
                f"exit code {code}"
                if code != 0
                else f"{len(stale)} of {len(self.token_files)} token files were not written "
                f"anew, the first {stale[0]}"
            )
            raise BenchmarkError(f"{self.name} failed ({what}):\n{text}")
        return elapsed, rss


# A measured program: its command line in a workdir, and the file it must write (or None).
Build = Callable[[Workdir], "tuple[list[str], Path | None]"]


@dataclass
class Series:
    """One process measurement: per round, wall seconds, peak RSS (bytes) and instructions."""

    name: str
    build: Build
    seconds: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    instructions: list[int] = field(default_factory=list)
    images: list[int] = field(default_factory=list)  # program images counted, per count


@dataclass(frozen=True)
class Stats:
    """Summary of a list of numbers."""

    median: float
    minimum: float
    p90: float
    maximum: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        """The summary of ``values`` (p90 by the nearest-rank method)."""
        ordered = sorted(values)
        rank = max(0, min(len(ordered) - 1, -(-9 * len(ordered) // 10) - 1))
        return cls(statistics.median(ordered), ordered[0], ordered[rank], ordered[-1])

    def scaled(self, factor: float) -> dict[str, float]:
        """The summary in another unit, rounded for reports."""
        return {
            "median": round(self.median * factor, 3),
            "min": round(self.minimum * factor, 3),
            "p90": round(self.p90 * factor, 3),
            "max": round(self.maximum * factor, 3),
        }


class BenchmarkError(Exception):
    """A measured program did not do its job: its numbers would mean nothing."""


def run_process(
    argv: Sequence[str], output: Path, env: Mapping[str, str] = CRON_ENV
) -> tuple[float, int, int]:
    """Wall seconds, peak RSS in bytes and exit code of ``argv`` run as cron would."""
    with output.open("wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv), env=dict(env), cwd="/", stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return elapsed, usage.ru_maxrss * 1024, process.returncode  # ru_maxrss is KiB on Linux


def file_bytes(path: Path | None) -> bytes | None:
    """The content of ``path``, or None when there is no such file (or no path)."""
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError:
        return None


def run_checked(
    item: Series, work: Workdir, env: Mapping[str, str] = CRON_ENV, wrap: Sequence[str] = ()
) -> tuple[float, int]:
    """Run ``item`` in ``work`` (under ``wrap``): wall seconds and peak RSS.

    Raises BenchmarkError when it fails, or does not write its file anew (every login
    hands out another token, so a refreshed file always differs from the previous one).
    """
    argv, check = item.build(work)
    before = file_bytes(check)
    elapsed, rss, code = run_process([*wrap, *argv], work.output, env)
    if code != 0 or (check is not None and file_bytes(check) in (None, before)):
        text = work.output.read_text(encoding="utf-8", errors="replace")[-2000:]
        what = f"exit code {code}" if code != 0 else f"{check} was not written anew"
        raise BenchmarkError(f"{item.name} failed ({what}):\n{text}")
    return elapsed, rss


def measure_round(series: Sequence[Series], work: Workdir, keep: bool) -> None:
    """Run every measurement once, in order; raise BenchmarkError when one fails."""
    for item in series:
        elapsed, rss = run_checked(item, work)
        if keep:
            item.seconds.append(elapsed)
            item.rss.append(rss)


def valgrind_version() -> str | None:
    """The version valgrind reports, or None without valgrind."""
    if VALGRIND is None:
        return None
    try:
        answer = subprocess.run([VALGRIND, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return answer.stdout.strip()


def count_instructions(item: Series, work: Workdir, env: Mapping[str, str]) -> tuple[int, int]:
    """Instructions of ``item``'s whole process tree under callgrind, and how many images.

    Raises BenchmarkError when the program fails or an image's log has no total.
    """
    assert VALGRIND is not None
    with tempfile.TemporaryDirectory(prefix="vg-", dir=work.folder) as logs:
        wrap = (
            VALGRIND,
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            "--child-silent-after-fork=yes",
            "--trace-children=yes",
            f"--log-file={logs}/vg.%p",
        )
        run_checked(item, work, env, wrap)
        total = images = 0
        for log in sorted(Path(logs).iterdir()):
            text = log.read_text(encoding="utf-8", errors="replace")
            found = COLLECTED.findall(text)
            if len(found) != 1:
                raise BenchmarkError(f"{item.name}: no single 'Collected :' in {log.name}:\n{text}")
            total += int(found[0])
            images += 1
    if images == 0:
        raise BenchmarkError(f"{item.name}: valgrind wrote no log")
    return total, images


def instruction_rounds(
    series: Sequence[Series],
    works: Sequence[Workdir],
    runs: int,
    env: Mapping[str, str],
    progress: Callable[[str], None],
) -> None:
    """Count every measurement ``runs`` times, ``len(works)`` processes at a time."""
    for item in series:
        item.instructions = [0] * runs
        item.images = [0] * runs
    free: queue.Queue[Workdir] = queue.Queue()
    for work in works:
        free.put(work)

    def task(item: Series, number: int) -> None:
        work = free.get()
        try:
            item.instructions[number], item.images[number] = count_instructions(item, work, env)
        finally:
            free.put(work)

    tasks = [
        (item, number)
        for number in range(runs)
        for item in [*series[number % len(series) :], *series[: number % len(series)]]
    ]
    with ThreadPoolExecutor(max_workers=len(works)) as pool:
        futures: list[Future[None]] = [pool.submit(task, *job) for job in tasks]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=15, return_when=FIRST_EXCEPTION)
            for future in done:
                if future.exception() is not None:
                    for other in pending:
                        other.cancel()
                    future.result()  # raises it
            progress(f"instructions: {len(futures) - len(pending)}/{len(futures)} counted")


def deadline_runs(
    hung: XtsSimulator, hang: Fault, folder: Path, runs: int, progress: Callable[[str], None]
) -> list[float]:
    """Wall seconds of ``runs`` refreshes against ``hung``, a server that never answers."""
    with hung:
        hung.add_account(APP_KEY, APP_SECRET, USER_ID, "interactive")
        hung.add_fault("interactive_login", hang, times=HANG_FAULTS)
        work = Workdir.create(folder, hung.url, XTS_DEADLINE=str(DEADLINE_SECONDS))
        argv = [PYTHON, str(SCRIPT), "--env-file", str(work.env_file)]
        seconds = []
        for number in range(runs):
            progress(
                f"never-answering server, XTS_DEADLINE={DEADLINE_SECONDS}: {number + 1}/{runs}"
            )
            logins = hung.count("interactive_login")
            elapsed, _, code = run_process(argv, work.output)
            if code != EXIT_UNREACHABLE or hung.count("interactive_login") == logins:
                text = work.output.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise BenchmarkError(
                    f"the refresh against a never-answering server exited {code} (expected "
                    f"{EXIT_UNREACHABLE}) after {hung.count('interactive_login') - logins} "
                    f"login attempt(s):\n{text}"
                )
            seconds.append(elapsed)
        if work.token_file.exists():
            raise BenchmarkError("a refresh against a never-answering server wrote a token file")
    return seconds


def accounts_rounds(
    slow: XtsSimulator, folder: Path, runs: int, progress: Callable[[str], None]
) -> tuple[Install, Install]:
    """A single-account and an ACCOUNTS-account install on ``slow``, each refreshed ``runs``
    times (after one warm-up refresh each, which creates the account folders and the first
    token files), the two alternating which goes first."""
    with slow:
        folder.mkdir(mode=0o700)
        single = Install.create(
            f"refresh, 1 account file, logins take {LOGIN_DELAY:g} s", folder / "one", slow, 1
        )
        many = Install.create(
            f"refresh, {ACCOUNTS} account files, logins take {LOGIN_DELAY:g} s",
            folder / "many",
            slow,
            ACCOUNTS,
        )
        progress(f"{ACCOUNTS} accounts, logins take {LOGIN_DELAY:g} s: warm-up")
        single.refresh()
        many.refresh()
        for number in range(runs):
            progress(f"{ACCOUNTS} accounts, logins take {LOGIN_DELAY:g} s: {number + 1}/{runs}")
            for install in (single, many) if number % 2 == 0 else (many, single):
                elapsed, rss = install.refresh()
                install.seconds.append(elapsed)
                install.rss.append(rss)
    return single, many


def in_process_seconds(actions: Sequence[Callable[[], object]]) -> list[list[float]]:
    """Seconds per call of each action, the actions alternating (IN_PROCESS_REPEATS blocks)."""
    samples: list[list[float]] = [[] for _ in actions]
    for _ in range(IN_PROCESS_REPEATS):
        for action, times in zip(actions, samples):
            started = time.perf_counter()
            for _ in range(IN_PROCESS_CALLS):
                action()
            times.append((time.perf_counter() - started) / IN_PROCESS_CALLS)
    return samples


def paired_ratio(values: Sequence[float], baseline: Sequence[float]) -> float:
    """The median of the per-round ratios of ``values`` to ``baseline``."""
    return statistics.median(a / b for a, b in zip(values, baseline))


def cpu_pressure() -> str | None:
    """The kernel's CPU pressure (share of time some task waited for a CPU), or None."""
    try:
        text = Path("/proc/pressure/cpu").read_text(encoding="utf-8")
    except OSError:
        return None
    fields = dict(part.split("=") for part in text.splitlines()[0].split()[1:])
    return f"{fields.get('avg10', '?')}% (10 s), {fields.get('avg60', '?')}% (60 s)"


def machine() -> dict[str, Any]:
    """The machine the numbers were taken on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    try:
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                system = f"{line.split('=', 1)[1].strip(chr(34))} ({system})"
                break
    except OSError:
        pass
    version = subprocess.run(
        [PYTHON, "-c", "import platform; print(platform.python_version())"],
        env=CRON_ENV,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "python": version,
        "python_path": PYTHON,
        "os": system,
        "architecture": platform.machine(),
    }


def revision() -> str | None:
    """The repository's commit and how many files differ from it (git, without writing)."""
    git = ["git", "--no-optional-locks", "-C", str(APP_DIR)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changes = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head} + {len(changes)} uncommitted file(s)" if changes else head


def repo_outputs_snapshot() -> dict[str, tuple[int, int] | None]:
    """Size and mtime of each file a misdirected run would write into the repository."""
    snapshot: dict[str, tuple[int, int] | None] = {}
    for name in REPO_OUTPUTS:
        try:
            info = (APP_DIR / name).stat()
        except OSError:
            snapshot[name] = None
        else:
            snapshot[name] = (info.st_size, info.st_mtime_ns)
    return snapshot


UNITS = {"ms": 1000.0, "us": 1e6, "s": 1.0, "MiB": 1.0 / MIB, "Minstr": 1e-6}


def row(
    name: str,
    values: Sequence[float],
    unit: str,
    *,
    baseline: str | None = None,
    baseline_values: Sequence[float] | None = None,
    target: float | None = None,
    target_text: str | None = None,
    met: bool | None = None,
    judged: bool = True,
) -> dict[str, Any]:
    """One line of the report.

    ``met`` is judged on the ratio of medians against ``target`` unless given; with
    ``judged`` false the target is shown and not judged.
    """
    stats = Stats.of(values)
    ratio = paired = None
    if baseline_values is not None:
        ratio = stats.median / Stats.of(baseline_values).median
        paired = paired_ratio(values, baseline_values)
        if target is not None and met is None and judged:
            met = ratio <= target
    if target is not None and target_text is None:
        target_text = f"<= {target:.2f}x" + ("" if judged else " (on instructions)")
    document: dict[str, Any] = {
        "measurement": name,
        "unit": unit,
        **stats.scaled(UNITS[unit]),
        "baseline": baseline,
        "ratio": None if ratio is None else round(ratio, 4),
        "paired_ratio": None if paired is None else round(paired, 4),
        "spread": None,
        "target": target_text,
        "met": met,
    }
    if unit == "Minstr":
        document["spread"] = round((stats.maximum - stats.minimum) / stats.median, 5)
        document["counts"] = [int(value) for value in values]
    return document


def timed(
    item: Series, base: Series, target: float | None = None, *, judged: bool = True
) -> dict[str, Any]:
    """The wall-time row of process ``item`` against process ``base``."""
    return row(
        item.name,
        item.seconds,
        "ms",
        baseline=base.name,
        baseline_values=base.seconds,
        target=target,
        judged=judged,
    )


def counted(
    item: Series, base: Series | None = None, target: float | None = None
) -> dict[str, Any]:
    """The instruction row of process ``item`` (against process ``base``)."""
    document = row(
        item.name,
        item.instructions,
        "Minstr",
        baseline=None if base is None else base.name,
        baseline_values=None if base is None else base.instructions,
        target=target,
    )
    document["images"] = statistics.median(item.images)
    return document


def run_benchmark(
    *,
    runs: int,
    warmup: int,
    instruction_runs: int,
    jobs: int,
    deadline_count: int,
    accounts_count: int,
    hash_seed: int | None,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Start the simulator, run every measurement, and return the report document.

    ``instruction_runs`` 0 measures without valgrind (the ratios judged on times).
    """
    sys.path.insert(0, str(APP_DIR))
    from xts_refresher.simulator import Fault, XtsSimulator
    from xts_token_refresh import load_token

    load_before = os.getloadavg()
    before = repo_outputs_snapshot()
    started = time.perf_counter()
    sim = XtsSimulator(host="127.0.0.1")
    with sim, tempfile.TemporaryDirectory(prefix="xts-bench-") as tmp:
        sim.add_account(APP_KEY, APP_SECRET, USER_ID, "interactive")
        folder = Path(tmp)
        main = Workdir.create(folder / "main", sim.url)
        load_file = folder / "load_token.json"
        floor_script = folder / "floor_refresh.py"
        floor_script.write_text(FLOOR_SCRIPT.format(key=APP_KEY, secret=APP_SECRET), "utf-8")

        # One refresh first, so load_token has a real token file (a copy: it never changes).
        argv = [PYTHON, str(SCRIPT), "--env-file", str(main.env_file)]
        _, _, code = run_process(argv, main.output)
        if code != 0 or not main.token_file.exists():
            text = main.output.read_text(encoding="utf-8", errors="replace")
            raise BenchmarkError(f"the first refresh failed (exit code {code}):\n{text}")
        load_file.write_bytes(main.token_file.read_bytes())
        load_token(load_file)

        app, path = str(APP_DIR), str(load_file)
        plain_code = JSON_LOAD_CODE.format(app=app, path=path)
        load_code = LOAD_TOKEN_CODE.format(app=app, path=path)
        floor = Series(
            "floor: requests login + write",
            lambda w: (
                [PYTHON, str(floor_script), sim.url, str(w.floor_token_file)],
                w.floor_token_file,
            ),
        )
        refresh = Series(
            "refresh: xts_token_refresh.py",
            lambda w: ([PYTHON, str(SCRIPT), "--env-file", str(w.env_file)], w.token_file),
        )
        wrapper = Series(
            "wrapper: refresh_xts_token.sh",
            lambda w: ([str(WRAPPER), "--env-file", str(w.env_file)], w.token_file),
        )
        plain = Series("json.load() process", lambda w: ([PYTHON, "-c", plain_code], None))
        load = Series("load_token() process", lambda w: ([PYTHON, "-c", load_code], None))
        bare = Series("context: python -c pass", lambda w: ([PYTHON, "-c", "pass"], None))
        imports = Series(
            "context: python -c 'import requests'",
            lambda w: ([PYTHON, "-c", "import requests"], None),
        )
        series = [floor, refresh, wrapper, plain, load, bare, imports]

        for number in range(warmup):
            progress(f"warm-up round {number + 1}/{warmup}")
            measure_round(series, main, keep=False)
        for number in range(runs):
            if number % 10 == 0:
                progress(f"round {number + 1}/{runs}")
            shift = number % len(series)  # no measurement always follows the same one
            measure_round(series[shift:] + series[:shift], main, keep=True)
        progress("in-process load_token() and json.load()")

        def plain_load() -> object:
            with load_file.open("rb") as file:
                return json.load(file)

        in_load, in_json = in_process_seconds([lambda: load_token(load_file), plain_load])
        hung = XtsSimulator(host="127.0.0.1")
        hang = Fault.hang(HANG_SECONDS)
        hung_seconds = deadline_runs(hung, hang, folder / "hung", deadline_count, progress)
        accounts_started = time.perf_counter()
        slow = XtsSimulator(host="127.0.0.1", login_delay=LOGIN_DELAY)
        single, many = accounts_rounds(slow, folder / "slow", accounts_count, progress)
        instruction_started = time.perf_counter()
        if instruction_runs:
            works = [Workdir.create(folder / f"slot{n}", sim.url) for n in range(jobs)]
            for work in works:  # each starts as the main one: with a token file to replace
                work.token_file.write_bytes(main.token_file.read_bytes())
            env = dict(CRON_ENV)
            if hash_seed is not None:
                env["PYTHONHASHSEED"] = str(hash_seed)
            instruction_rounds(series, works, instruction_runs, env, progress)
        ended = time.perf_counter()

    after = repo_outputs_snapshot()
    written_here = [n for n, state in after.items() if state is not None and state != before[n]]
    if written_here:  # (a file someone else deleted meanwhile is no concern of ours)
        raise BenchmarkError(
            f"files in the repository were written during the run: {written_here} "
            "(by this benchmark, or by another process working in the repository meanwhile)"
        )

    on_time = not instruction_runs
    rss_max = max(refresh.rss)
    rows = [
        row(floor.name, floor.seconds, "ms"),
        timed(refresh, floor, TARGET_REFRESH, judged=on_time),
        timed(wrapper, refresh, TARGET_WRAPPER, judged=on_time),
        row(plain.name, plain.seconds, "ms"),
        timed(load, plain, TARGET_LOAD_TOKEN, judged=on_time),
        row("json.load() in-process, per call", in_json, "us"),
        row(
            "load_token() in-process, per call",
            in_load,
            "us",
            baseline="json.load() in-process, per call",
            baseline_values=in_json,
        ),
        row("peak RSS: floor process", floor.rss, "MiB"),
        row(
            "peak RSS: refresh process",
            refresh.rss,
            "MiB",
            baseline="peak RSS: floor process",
            baseline_values=floor.rss,
            target_text=f"<= {TARGET_RSS_MIB:g} MiB (max)",
            met=rss_max <= TARGET_RSS_MIB * MIB,
        ),
        row(
            f"refresh, server never answers, XTS_DEADLINE={DEADLINE_SECONDS}",
            hung_seconds,
            "s",
            target_text=f"<= {TARGET_DEADLINE_SECONDS:g} s (max)",
            met=max(hung_seconds) <= TARGET_DEADLINE_SECONDS,
        ),
        row(single.name, single.seconds, "ms"),
        row(
            many.name,
            many.seconds,
            "ms",
            baseline=single.name,
            baseline_values=single.seconds,
            target=TARGET_ACCOUNTS,
            target_text=f"<= {TARGET_ACCOUNTS:.2f}x (on times)",
        ),
        row("peak RSS: 1-account refresh", single.rss, "MiB"),
        row(
            f"peak RSS: {ACCOUNTS}-account refresh",
            many.rss,
            "MiB",
            baseline="peak RSS: 1-account refresh",
            baseline_values=single.rss,
            target_text=f"<= {TARGET_ACCOUNTS_RSS_MIB:g} MiB (max)",
            met=max(many.rss) <= TARGET_ACCOUNTS_RSS_MIB * MIB,
        ),
        timed(bare, floor),
        timed(imports, floor),
    ]
    if instruction_runs:
        rows += [
            counted(floor),
            counted(refresh, floor, TARGET_REFRESH),
            counted(wrapper, refresh, TARGET_WRAPPER),
            counted(plain),
            counted(load, plain, TARGET_LOAD_TOKEN),
            counted(bare, floor),
            counted(imports, floor),
        ]
    return {
        "mode": "time" if on_time else "instructions",
        "machine": machine(),
        "valgrind": valgrind_version() if instruction_runs else None,
        "revision": revision(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_pressure_after": cpu_pressure(),
        "runs": runs,
        "warmup": warmup,
        "in_process_calls": IN_PROCESS_CALLS * IN_PROCESS_REPEATS,
        "deadline_runs": deadline_count,
        "accounts": ACCOUNTS,
        "login_delay": LOGIN_DELAY,
        "accounts_runs": accounts_count,
        "instruction_runs": instruction_runs,
        "jobs": jobs if instruction_runs else None,
        "hash_seed": hash_seed,
        "seconds": round(ended - started, 1),
        "accounts_seconds": round(instruction_started - accounts_started, 1),
        "instruction_seconds": round(ended - instruction_started, 1) if instruction_runs else None,
        "command": f"cd {APP_DIR} && {COMMAND}",
        "rows": rows,
    }


def format_table(document: dict[str, Any]) -> str:
    """The report as a plain-text table, then the machine and how to rerun."""
    header = (
        "measurement",
        "median",
        "min",
        "p90",
        "max",
        "ratio",
        "paired",
        "spread",
        "target",
        "met",
    )
    lines: list[tuple[str, ...]] = [header]
    digits = {"ms": 1, "us": 1, "s": 2, "MiB": 1, "Minstr": 2}
    for item in document["rows"]:
        unit = item["unit"]
        values = [f"{item[key]:.{digits[unit]}f} {unit}" for key in ("median", "min", "p90", "max")]
        ratios = [
            "" if item[key] is None else f"{item[key]:.3f}x" for key in ("ratio", "paired_ratio")
        ]
        spread = "" if item["spread"] is None else f"{100 * item['spread']:.2f}%"
        met = "" if item["met"] is None else ("met" if item["met"] else "NOT MET")
        name = item["measurement"] + (" [instr]" if unit == "Minstr" else "")
        lines.append((name, *values, *ratios, spread, item["target"] or "", met))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines
    ]
    text.insert(1, "  ".join("-" * width for width in widths))
    info = document["machine"]
    load_before = " ".join(f"{x:.2f}" for x in document["load_average_before"])
    load_after = " ".join(f"{x:.2f}" for x in document["load_average_after"])
    judged = "instruction counts" if document["mode"] == "instructions" else "wall-time medians"
    text += [
        "",
        "ratio: median / the baseline's median (refresh / floor, wrapper / refresh, "
        f"load_token / json.load, {document['accounts']} accounts / 1 account; context rows / "
        "floor); paired: median of the per-round ratios.",
        f"The ratio budgets are judged on {judged}"
        + (
            f", except the {document['accounts']}-account one"
            if document["mode"] == "instructions"
            else ""
        )
        + f"; the {document['accounts']}-account ratio always on the wall-time medians, since "
        "it is about concurrency (the logins' waits overlapping), which instruction counts do "
        "not see; peak RSS and the never-answering server on the max of processes run without "
        "valgrind.",
        f"Processes run as cron runs them (env PATH=/usr/bin:/bin, cwd /). {document['runs']} "
        f"timed rounds after {document['warmup']} warm-up rounds; in-process: "
        f"{document['in_process_calls']} calls each; never-answering server: "
        f"{document['deadline_runs']} runs; {document['seconds']} s in all.",
        "Accounts: on a simulator of their own whose every login waits "
        f"{document['login_delay']:g} s, an install with 1 account file and one with "
        f"{document['accounts']} (each its own app key and user ID), "
        f"{document['accounts_runs']} alternating rounds after one warm-up round; every run "
        "exits 0 and writes every account's token file anew; "
        f"{document['accounts_seconds']} s of the total.",
    ]
    if document["mode"] == "instructions":
        seed = document["hash_seed"]
        text.append(
            f"[instr]: instructions (millions) of the whole process tree under callgrind "
            f"({document['valgrind']}), {document['instruction_runs']} counts each, "
            f"{document['jobs']} at a time, PYTHONHASHSEED "
            f"{'random' if seed is None else seed}; spread: (max - min) / median; "
            f"{document['instruction_seconds']} s of the total."
        )
    text += [
        f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
        f"Python {info['python']}, {info['os']}, {info['architecture']}",
        f"load average before: {load_before}; after: {load_after}; "
        f"CPU pressure after: {document['cpu_pressure_after'] or 'unknown'}",
        f"measured: {document['revision'] or 'unknown revision'}",
        f"rerun: {document['command']} [--runs N] [--warmup N] [--deadline-runs N] "
        "[--accounts-runs N] [--instructions [--instruction-runs N] [--jobs N] [--hash-seed N]] "
        "[--json]",
    ]
    return "\n".join(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table (or JSON); 0 when every budget is met, else 1."""
    parser = argparse.ArgumentParser(
        description=(
            "Benchmark the XTS token refresher against its budgets (benchmarks/README.md): "
            f"refresh / floor <= {TARGET_REFRESH:.2f}x, wrapper / script <= "
            f"{TARGET_WRAPPER:.2f}x, load_token / json.load process <= {TARGET_LOAD_TOKEN:.2f}x, "
            f"refresh peak RSS <= {TARGET_RSS_MIB:g} MiB, and a refresh against a server that "
            f"never answers with XTS_DEADLINE={DEADLINE_SECONDS} <= "
            f"{TARGET_DEADLINE_SECONDS:g} s; with logins that take {LOGIN_DELAY:g} s, a "
            f"{ACCOUNTS}-account refresh / a single-account refresh <= {TARGET_ACCOUNTS:.2f}x "
            f"(wall time) and its peak RSS <= {TARGET_ACCOUNTS_RSS_MIB:g} MiB. Exit code 0 when "
            "every budget is met, 1 when one is not, 2 when a measured program failed."
        )
    )
    parser.add_argument(
        "--runs", type=int, default=DEFAULT_RUNS, help=f"timed rounds ({DEFAULT_RUNS})"
    )
    parser.add_argument(
        "--warmup", type=int, default=DEFAULT_WARMUP, help=f"warm-up rounds ({DEFAULT_WARMUP})"
    )
    parser.add_argument(
        "--deadline-runs",
        type=int,
        default=DEFAULT_DEADLINE_RUNS,
        help=f"refreshes against the never-answering server, ~3.2 s each ({DEFAULT_DEADLINE_RUNS})",
    )
    parser.add_argument(
        "--accounts-runs",
        type=int,
        default=DEFAULT_ACCOUNTS_RUNS,
        help=f"rounds of the 1-account and the {ACCOUNTS}-account refresh with logins that take "
        f"{LOGIN_DELAY:g} s, ~1 s a round ({DEFAULT_ACCOUNTS_RUNS})",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions under valgrind's callgrind (whole process trees) and "
        "judge the ratio budgets on them, not on times: repeatable on a busy machine "
        "(adds about a minute with the defaults)",
    )
    parser.add_argument(
        "--instruction-runs",
        type=int,
        default=DEFAULT_INSTRUCTION_RUNS,
        help=f"with --instructions: counts of each process, median reported "
        f"({DEFAULT_INSTRUCTION_RUNS})",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        help=f"with --instructions: processes counted at a time ({DEFAULT_JOBS}); "
        "counts do not depend on it",
    )
    parser.add_argument(
        "--hash-seed",
        type=int,
        default=None,
        help="with --instructions: PYTHONHASHSEED for the counted processes, so counts repeat "
        "to a few parts per million (default: random, as cron runs them; counts then move by "
        "up to ~0.2 %%)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON document instead")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.deadline_runs < 1 or args.accounts_runs < 1:
        parser.error(
            "--runs, --deadline-runs and --accounts-runs must be at least 1, --warmup at least 0"
        )
    if args.instruction_runs < 1 or args.jobs < 1:
        parser.error("--instruction-runs and --jobs must be at least 1")
    if args.instructions and VALGRIND is None:
        parser.error("--instructions needs valgrind (/usr/bin/valgrind or on PATH)")
    if args.hash_seed is not None and not 0 <= args.hash_seed <= 4294967295:
        parser.error("--hash-seed must be in 0..4294967295")
    sys.dont_write_bytecode = True  # this process writes nothing into the repository

    def progress(text: str) -> None:
        print(f"... {text}", file=sys.stderr, flush=True)

    try:
        document = run_benchmark(
            runs=args.runs,
            warmup=args.warmup,
            instruction_runs=args.instruction_runs if args.instructions else 0,
            jobs=args.jobs,
            deadline_count=args.deadline_runs,
            accounts_count=args.accounts_runs,
            hash_seed=args.hash_seed,
            progress=progress,
        )
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(document, indent=2) if args.json else format_table(document))
    return 0 if all(item["met"] is not False for item in document["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
