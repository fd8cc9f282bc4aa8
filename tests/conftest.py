"""Shared test fixtures: the simulator, distinctive fake secrets, and running the real script.

Every test drives ``xts_token_refresh.py`` as a subprocess the way cron does: a bare
environment (``PATH=/usr/bin:/bin`` and nothing else unless the test adds it), started from
``/``, against the bundled XTS simulator on 127.0.0.1. Nothing is mocked.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from xts_refresher.simulator import XtsSimulator

APP_DIR = Path(__file__).resolve().parent.parent
SCRIPT = APP_DIR / "xts_token_refresh.py"
WRAPPER = APP_DIR / "refresh_xts_token.sh"
PYTHON = sys.executable
CRON_PATH = "/usr/bin:/bin"
IN_CI = os.environ.get("CI", "").lower() == "true"

# Distinctive fake secrets: any of them appearing in an output is a leak.
USER_ID = "CK68"
INTERACTIVE_KEY = "ik-FAKE-7f3a9c-interactive-key"
INTERACTIVE_SECRET = "is-FAKE-Qx81Zr-interactive-secret"
MARKETDATA_KEY = "mk-FAKE-2b6e4d-marketdata-key"
MARKETDATA_SECRET = "ms-FAKE-Lp05Wn-marketdata-secret"
BOT_TOKEN = "987654321:AAFakeBotTokenZZtestonly_x9y8w7v6u5t4"
SECRETS = (INTERACTIVE_KEY, INTERACTIVE_SECRET, MARKETDATA_KEY, MARKETDATA_SECRET, BOT_TOKEN)


def skip_or_fail(reason: str) -> None:
    """Skip locally when a tool is missing; under CI=true a missing tool is a failure."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@dataclass
class Run:
    """A finished run of the script: its exit code and everything it wrote."""

    code: int
    stdout: str
    stderr: str
    log: str

    @property
    def output(self) -> str:
        """stdout and stderr together."""
        return self.stdout + self.stderr


class Project:
    """One test's world: a simulator with the fake accounts, a folder, a .env, and a runner."""

    def __init__(self, sim: XtsSimulator, folder: Path) -> None:
        self.sim = sim
        self.folder = folder
        self.env_file = folder / "test.env"
        self.token_file = folder / "xts_store_token.json"
        self.md_token_file = folder / "xts_marketdata_token.json"
        self.log_file = folder / "xts_token_refresh.log"
        self.settings: dict[str, str] = {
            "XTS_API_ROOT": sim.url,
            "XTS_INTERACTIVE_API_KEY": INTERACTIVE_KEY,
            "XTS_INTERACTIVE_API_SECRET": INTERACTIVE_SECRET,
            "XTS_USER_ID": USER_ID,
            "XTS_TOKEN_FILE": str(self.token_file),
            "XTS_MARKETDATA_TOKEN_FILE": str(self.md_token_file),
            "XTS_LOG_FILE": str(self.log_file),
            "XTS_TIMEOUT": "5",
            "XTS_RETRIES": "2",
            "XTS_DEADLINE": "60",
            "XTS_RETRY_BACKOFF": "0.05",
        }
        self.runs: list[Run] = []
        self.account_secrets: list[str] = []  # the keys with_accounts makes

    def with_marketdata(self) -> Project:
        """Configure the market-data session too."""
        self.settings["XTS_MARKETDATA_API_KEY"] = MARKETDATA_KEY
        self.settings["XTS_MARKETDATA_API_SECRET"] = MARKETDATA_SECRET
        return self

    def with_telegram(self, notify: str = "all") -> Project:
        """Send Telegram notifications to the simulator."""
        self.settings.update(
            TELEGRAM_TOKEN=BOT_TOKEN,
            TELEGRAM_CHAT_ID="4242",
            TELEGRAM_NOTIFY=notify,
            TELEGRAM_API_URL=self.sim.url,
        )
        return self

    def with_accounts(self, *names: str, **own: dict[str, str]) -> Path:
        """Make this project an install of account files: ``accounts/NAME.env`` for each name,
        with its own API keys (accepted by the simulator) and the settings ``own[NAME]`` adds;
        the project's settings become the shared ``.env`` (no keys, no token file). Returns
        the accounts folder; each account's tokens go to ``accounts/NAME/``."""
        folder = self.folder / "accounts"
        folder.mkdir()
        for name in names:
            key, secret = f"ik-FAKE-{name}-Ac7-key", f"is-FAKE-{name}-Ac7-secret"
            self.sim.add_account(key, secret, USER_ID, "interactive")
            self.account_secrets += [key, secret]
            values = {
                "XTS_API_ROOT": self.sim.url,
                "XTS_INTERACTIVE_API_KEY": key,
                "XTS_INTERACTIVE_API_SECRET": secret,
                **own.get(name, {}),
            }
            account_file = folder / f"{name}.env"
            account_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()), "utf-8")
            account_file.chmod(0o600)
        for shared_only in (
            "XTS_INTERACTIVE_API_KEY",
            "XTS_INTERACTIVE_API_SECRET",
            "XTS_TOKEN_FILE",
        ):
            self.settings.pop(shared_only, None)
        self.settings["XTS_ACCOUNTS_DIR"] = str(folder)
        return folder

    def write_env(self) -> Path:
        """Write the settings to this project's .env file (mode 600); its path."""
        lines = [f"{name}={value}" for name, value in self.settings.items()]
        self.env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.env_file.chmod(0o600)
        return self.env_file

    def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        use_env_file: bool = True,
        preexec: Callable[[], object] | None = None,
    ) -> Run:
        """Run the script with ``args`` (plus --env-file) as cron would; the finished Run."""
        argv: list[str] = [PYTHON, str(SCRIPT), *args]
        if use_env_file:
            argv += ["--env-file", str(self.write_env())]
        # Even a run whose settings file is missing logs here, not beside the script.
        full_env = {"XTS_LOG_FILE": str(self.log_file), **(env or {})}
        return self._finish(run_process(argv, env=full_env, timeout=timeout, preexec=preexec))

    def start(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        """Start the script with ``args`` (plus --env-file) as cron would, without waiting for it;
        finish it with ``finish``."""
        argv = [PYTHON, str(SCRIPT), *args, "--env-file", str(self.write_env())]
        return start_process(argv, env={"XTS_LOG_FILE": str(self.log_file), **(env or {})})

    def finish(self, process: subprocess.Popen[str], timeout: float = 60) -> Run:
        """Wait for a run ``start`` began; the Run, checked for secrets as ``run`` does."""
        stdout, stderr = process.communicate(timeout=timeout)
        return self._finish(
            subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        )

    def _finish(self, done: subprocess.CompletedProcess[str]) -> Run:
        log = self.log_file.read_text(encoding="utf-8") if self.log_file.exists() else ""
        run = Run(done.returncode, done.stdout, done.stderr, log)
        self.runs.append(run)
        assert_no_secrets(self, run.output, run.log)
        return run

    def secrets(self) -> list[str]:
        """Every secret this project knows: the fake keys and every token the simulator issued."""
        tokens = self.sim.issued_tokens("interactive") + self.sim.issued_tokens("marketdata")
        return [*SECRETS, *self.account_secrets, *tokens]


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    cwd: str = "/",
    preexec: Callable[[], object] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with cron's bare environment (plus ``env``), from ``/``."""
    full_env = {"PATH": CRON_PATH, **(env or {})}
    return subprocess.run(
        list(argv),
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
        preexec_fn=preexec,
    )


def start_process(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start ``argv`` as ``run_process`` runs it (cron's bare environment plus ``env``, from
    ``/``), without waiting: the process, its output piped."""
    return subprocess.Popen(
        list(argv),
        env={"PATH": CRON_PATH, **(env or {})},
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def copy_program(folder: Path, *files: str) -> Path:
    """``folder`` (made) holding a copy of the package and of the project's top-level
    ``files`` (the script unless others are named), without bytecode; ``folder``."""
    import shutil

    folder.mkdir(parents=True)
    for name in files or (SCRIPT.name,):
        shutil.copy2(APP_DIR / name, folder / name)
    shutil.copytree(
        APP_DIR / "xts_refresher",
        folder / "xts_refresher",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return folder


def run_on_a_full_tmpfs(
    mount: Path, prepare: str, command: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """In a private mount namespace (root and unshare only; else skip_or_fail): mount a
    64 KiB tmpfs on the folder ``mount``, run the shell lines ``prepare``, fill the tmpfs up,
    then run ``command`` and print ``exit=<its code>``; the finished shell, from ``/`` with a
    bare PATH (plus ``env``)."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        skip_or_fail("a full-disk test needs root and unshare (util-linux) to mount a tmpfs")
    assert unshare is not None
    script = f"""
set -eu
mount -t tmpfs -o size=64k tmpfs {mount}
{prepare}
dd if=/dev/zero of={mount}/filler bs=1k count=1000 2>/dev/null || true
set +e
{command}
echo "exit=$?"
"""
    done = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "sh", "-c", script],
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", **(env or {})},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "mount: " in done.stderr and "permission denied" in done.stderr.lower():
        skip_or_fail(f"tmpfs cannot be mounted here: {done.stderr.strip()}")
    return done


def closed_port() -> int:
    """A loopback port nobody listens on (bound, noted, closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def with_healthcheck(project: Project) -> str:
    """Point HEALTHCHECK_URL at the simulator's ping endpoint, a fresh check; its path."""
    import uuid

    prefix = f"/ping/{uuid.uuid4()}"
    project.settings["HEALTHCHECK_URL"] = project.sim.url + prefix
    return prefix


def ping_paths(project: Project) -> list[str]:
    """The paths of the pings the simulator received, in order."""
    return [request.path for request in project.sim.requests("healthcheck")]


def assert_no_secrets(project: Project, *texts: str) -> None:
    """Fail when any secret or session token appears in ``texts``."""
    for secret in project.secrets():
        for text in texts:
            assert secret not in text, f"a secret leaked: {secret[:8]}..."


def token_json(path: Path) -> dict[str, object]:
    """The decoded token file."""
    import json

    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def newest_token(project: Project, session: str = "interactive") -> str:
    """The last token the simulator issued for ``session``."""
    return project.sim.issued_tokens(session)[-1]


def xts_routes(project: Project) -> list[str]:
    """The routes of the XTS requests the simulator received (no Telegram, no pings), in order."""
    skip = ("telegram", "healthcheck")
    return [r.route for r in project.sim.requests() if r.route not in skip]


def telegram_texts(project: Project) -> list[str]:
    """The texts of the Telegram messages sent so far; each is checked for secrets."""
    texts = []
    for request in project.sim.requests("telegram"):
        assert_no_secrets(project, request.body.decode("utf-8"))
        texts.append(str(request.json["text"]))
    return texts


def child_today() -> date:
    """Today's date as the script sees it (same bare environment, so the same time zone)."""
    done = run_process([PYTHON, "-c", "import datetime; print(datetime.date.today())"])
    return date.fromisoformat(done.stdout.strip())


IGNORED_LEFTOVERS = (".venv/", "venv/", ".pytest_cache/", ".mypy_cache/", ".ruff_cache/",
                     ".hypothesis/", "__pycache__/")  # fmt: skip


def project_folder_files() -> set[str] | None:
    """Untracked and ignored files in the project folder (None outside a git checkout)."""
    done = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
        cwd=APP_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return None
    paths = {line[3:] for line in done.stdout.splitlines() if line[:2] in ("??", "!!")}
    return {p for p in paths if not any(part in p for part in IGNORED_LEFTOVERS)}


SYSTEM_LOCK = Path("/tmp/xts-token-refresh-tests.system.lock")
# The files whose tests use root's crontab, the cron daemon or the user xtstest.
MACHINE_WIDE_FILES = frozenset(
    f"tests/{name}" for name in ("test_cron.py", "test_systemd.py", "test_unprivileged.py")
)
WORKERS_PER_CORE = 2  # a test waits on its subprocesses and the simulator about half its time


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """The workers ``-n auto`` (in addopts) starts: two per usable core for a run of a whole
    folder (the README's command, ``tests``, a marker's subset); none (the run stays in one
    process) for a run of named files or tests, where starting and collecting in each worker
    would cost more than it saves. PYTEST_XDIST_AUTO_NUM_WORKERS still decides when set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    started_in = config.invocation_params.dir
    if not any((started_in / arg.split("::")[0]).is_dir() for arg in config.args):
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return WORKERS_PER_CORE * (cores or 1)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """For pytest-xdist's default ``--dist load``: each test a unit of work of its own, except
    that the tests of MACHINE_WIDE_FILES are one unit, handed out first, that one worker runs
    from start to end (one user xtstest and its virtualenv, no worker idle on the system lock)
    while the others share the rest. None (pytest-xdist decides) for any other ``--dist``."""
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class MachineWideTogether(LoadScopeScheduling):  # type: ignore[misc]  # xdist has no types
        def _split_scope(self, nodeid: str) -> str:
            in_file = nodeid.partition("::")[0]
            return "machine-wide" if in_file in MACHINE_WIDE_FILES else nodeid

    return MachineWideTogether(config, log)


@pytest.fixture(autouse=True)
def one_system_test_at_a_time(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test marked ``system`` holds SYSTEM_LOCK from before its own fixtures are set up until
    after they are torn down: those tests share machine-wide things (root's crontab, the cron
    daemon, the user xtstest), so no two run at once, in two pytest-xdist workers or in two
    test sessions on this machine."""
    if request.node.get_closest_marker("system") is None:
        yield
        return
    with SYSTEM_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session", autouse=True)
def project_folder_stays_clean() -> Iterator[None]:
    """No test may leave a token, log or lock file beside the real script."""
    before = project_folder_files()
    yield
    # Another pytest-xdist worker may be in a system test that makes a file here and removes it
    # again (cron_output.log): look once none runs.
    with SYSTEM_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        after = project_folder_files()
    if before is not None and after is not None:
        assert after <= before, f"tests left files in {APP_DIR}: {sorted(after - before)}"


@pytest.fixture
def sim() -> Iterator[XtsSimulator]:
    """A running XTS simulator with the tests' fake accounts."""
    with XtsSimulator() as simulator:
        simulator.add_account(INTERACTIVE_KEY, INTERACTIVE_SECRET, USER_ID, "interactive")
        simulator.add_account(MARKETDATA_KEY, MARKETDATA_SECRET, USER_ID, "marketdata")
        yield simulator


@pytest.fixture
def project(sim: XtsSimulator, tmp_path: Path) -> Project:
    """A Project on the running simulator, its files in a fresh folder."""
    return Project(sim, tmp_path)
