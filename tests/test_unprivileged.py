"""The refresher run by an ordinary user, as operators run it: root passes every permission
check, so these tests drop to an unprivileged account the setup creates.

The session's setup (as root; without root these tests skip, and fail under CI=true) creates
the user ``xtstest`` when it is missing and a virtualenv from Debian's ``/usr/bin/python3`` with
``requirements.txt`` in a folder that user can read (root's pyenv under /root is closed to it).
Each test copies the project's files into a folder the user owns and runs the real script as
that user with ``setpriv`` in cron's bare environment (``PATH=/usr/bin:/bin``, from ``/``),
against the simulator serving in this pytest process on 127.0.0.1. The last test has the real
cron daemon run the wrapper from the user's own crontab.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    APP_DIR,
    CRON_PATH,
    USER_ID,
    Project,
    Run,
    assert_no_secrets,
    run_process,
    skip_or_fail,
    token_json,
)

from xts_refresher.simulator import XtsSimulator

pytestmark = pytest.mark.system

USER_NAME = "xtstest"
USER_COMMENT = "XTS token refresher tests"  # marks the user as made by a test session
# Held shared by every pytest session that uses the user; the last one to end removes it.
USER_LOCK = Path(f"/tmp/xts-token-refresh-tests.{USER_NAME}-user.lock")
SYSTEM_PYTHON = Path("/usr/bin/python3")
TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Serialises the tests of every pytest session on this machine that change xtstest's crontab.
CRONTAB_LOCK = Path(f"/tmp/xts-token-refresh-tests.{USER_NAME}-crontab.lock")
JOB_WAIT_SECONDS = 130
PREVIOUS_TOKEN = b'{"token": "previous-run-token", "userID": "CK68"}\n'
# What a program without a git checkout still needs to run (see copy_project).
PROGRAM_FILES = ("xts_token_refresh.py", "refresh_xts_token.sh", "requirements.txt", ".env.example")


@dataclass(frozen=True)
class User:
    """The unprivileged account the tests run the refresher as."""

    name: str
    uid: int
    gid: int
    home: Path
    setpriv: str

    def command(self, argv: Sequence[str], groups: Sequence[int] = ()) -> list[str]:
        """``argv`` run as this user (its groups too, or its own and ``groups`` when given), the
        environment left as it is given."""
        ids = [f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups"]
        if groups:
            ids[2] = f"--groups={','.join(map(str, [self.gid, *groups]))}"
        return [self.setpriv, *ids, "--", *argv]

    def run(
        self, argv: Sequence[str], preexec: Callable[[], object] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as this user in cron's bare environment, from ``/``."""
        return run_process(self.command(argv), env=self.environment(), preexec=preexec)

    def environment(self) -> dict[str, str]:
        """What cron gives a job besides PATH."""
        return {"HOME": str(self.home), "LOGNAME": self.name, "USER": self.name}

    def own(self, *paths: Path) -> None:
        """Give ``paths`` (and everything under a folder among them) to this user."""
        for path in paths:
            os.chown(path, self.uid, self.gid, follow_symlinks=False)
            if path.is_dir() and not path.is_symlink():
                for folder, names, files in os.walk(path):
                    for name in names + files:
                        os.chown(Path(folder, name), self.uid, self.gid, follow_symlinks=False)


def tool(name: str) -> str:
    """The absolute path of a system program, or skip (fail under CI=true) when it is missing."""
    found = shutil.which(name, path=TOOL_PATH)
    if found is None:
        skip_or_fail(f"{name} is not installed (Debian: apt-get install util-linux passwd cron)")
    assert found is not None
    return found


def existing_user() -> User | None:
    """The test account, when it exists."""
    try:
        entry = pwd.getpwnam(USER_NAME)
    except KeyError:
        return None
    assert entry.pw_uid != 0, f"{USER_NAME} must be an ordinary user, not uid 0"
    return User(USER_NAME, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir), tool("setpriv"))


@pytest.fixture(scope="session")
def unprivileged_user() -> Iterator[User]:
    """The user ``xtstest``, created (with a home folder, which cron needs) when missing, and
    removed (with its home) when the session ends.

    Every session that uses the user holds a shared lock on USER_LOCK meanwhile; at its end a
    session removes the user only when no other session holds that lock and the account is one
    a test session made (its comment is USER_COMMENT): a user of that name made by someone else
    is never touched.
    """
    if os.geteuid() != 0:
        skip_or_fail("only root can create the unprivileged user these tests run as")
    with USER_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        try:
            yield made_user()
        finally:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # another session still runs as the user: the last one removes it
            else:
                remove_test_user()


def made_user() -> User:
    """The test user, made first when missing."""
    user = existing_user()
    if user is None:
        done = subprocess.run(
            [tool("useradd"), "--create-home", "--user-group", "--shell", "/bin/sh",
             "--comment", USER_COMMENT, USER_NAME],
            capture_output=True, text=True, check=False, env={"PATH": TOOL_PATH},
        )  # fmt: skip
        user = existing_user()  # exit 9: another test session created it meanwhile
        assert user is not None, f"useradd {USER_NAME} failed ({done.returncode}): {done.stderr}"
    if not user.home.is_dir():
        user.home.mkdir(mode=0o750, parents=True)
        user.own(user.home)
    return user


def remove_test_user() -> None:
    """Delete the test user, its group and its home, when a test session made it."""
    try:
        entry = pwd.getpwnam(USER_NAME)
    except KeyError:
        return
    if entry.pw_gecos != USER_COMMENT or entry.pw_uid == 0:
        return  # not ours
    done = subprocess.run(
        [tool("userdel"), "--remove", USER_NAME],
        capture_output=True, text=True, check=False, env={"PATH": TOOL_PATH},
    )  # fmt: skip
    # userdel warns (exit 12) when the user had no mail spool: the user is gone all the same.
    assert existing_user() is None, f"userdel {USER_NAME} failed ({done.returncode}): {done.stderr}"


@pytest.fixture(scope="session")
def user_venv(unprivileged_user: User) -> Iterator[Path]:
    """A virtualenv with requirements.txt that the user can run, from Debian's python3."""
    if not SYSTEM_PYTHON.exists():
        skip_or_fail(f"{SYSTEM_PYTHON} is missing (Debian: apt-get install python3 python3-venv)")
    folder = Path(tempfile.mkdtemp(prefix="xts-unpriv-venv-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        made = subprocess.run(
            [str(SYSTEM_PYTHON), "-m", "venv", str(folder)],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        if made.returncode != 0:
            skip_or_fail(f"python3 -m venv failed (apt-get install python3-venv): {made.stderr}")
        python = folder / "bin" / "python"
        installed = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(APP_DIR / "requirements.txt")],
            capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
        assert installed.returncode == 0, installed.stdout + installed.stderr
        probe = unprivileged_user.run([str(python), "-c", "import requests, dotenv"])
        assert probe.returncode == 0, f"{USER_NAME} cannot use {folder}: {probe.stderr}"
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def project_files() -> list[str]:
    """The project's files, relative: tracked (and new, not ignored) ones in a git checkout."""
    done = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=APP_DIR, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        package = APP_DIR / "xts_refresher"
        modules = [str(path.relative_to(APP_DIR)) for path in package.glob("*.py")]
        return [*PROGRAM_FILES, *modules]
    return [name for name in done.stdout.splitlines() if (APP_DIR / name).is_file()]


def copy_project(destination: Path) -> None:
    """Copy the project's files (modes kept) into ``destination``."""
    for name in project_files():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(APP_DIR / name, target)


class UserProject(Project):
    """A Project whose files live in the user's copy of the project, run as that user."""

    def __init__(self, sim: XtsSimulator, user: User, venv: Path, folder: Path) -> None:
        super().__init__(sim, folder)
        self.user = user
        self.venv = venv
        self.script = folder / "xts_token_refresh.py"
        self.wrapper = folder / "refresh_xts_token.sh"
        self.groups: tuple[int, ...] = ()  # further groups the user's runs are in

    def write_env(self) -> Path:
        """The settings file, mode 600, owned by the user."""
        path = super().write_env()
        self.user.own(path)
        return path

    def move_tokens(self, folder: Path, *, interactive: bool, marketdata: bool) -> None:
        """Save the chosen sessions' token files in ``folder`` instead."""
        if interactive:
            self.token_file = folder / self.token_file.name
            self.settings["XTS_TOKEN_FILE"] = str(self.token_file)
        if marketdata:
            self.md_token_file = folder / self.md_token_file.name
            self.settings["XTS_MARKETDATA_TOKEN_FILE"] = str(self.md_token_file)

    def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        use_env_file: bool = True,
        preexec: Callable[[], object] | None = None,
    ) -> Run:
        """Run the user's copy of the script as the user, cron-style; the finished Run."""
        argv = [str(self.venv / "bin" / "python"), str(self.script), *args]
        if use_env_file:
            argv += ["--env-file", str(self.write_env())]
        full_env = {**self.user.environment(), "XTS_LOG_FILE": str(self.log_file), **(env or {})}
        command = self.user.command(argv, self.groups)
        done = run_process(command, env=full_env, timeout=timeout, preexec=preexec)
        return self._finish(done)


@pytest.fixture
def user_project(
    sim: XtsSimulator, unprivileged_user: User, user_venv: Path
) -> Iterator[UserProject]:
    """A copy of the project in a folder the user owns (mode 700), on the running simulator."""
    folder = Path(tempfile.mkdtemp(prefix="xts-unpriv-project-", dir="/tmp"))
    try:
        copy_project(folder)
        unprivileged_user.own(folder)
        yield UserProject(sim, unprivileged_user, user_venv, folder)
    finally:
        for path in folder.rglob("*"):  # a test may leave a folder read-only
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o700)
        shutil.rmtree(folder, ignore_errors=True)


def logins(project: Project) -> int:
    """How many login (and host-lookup) requests the simulator received."""
    routes = ("interactive_login", "marketdata_login", "hostlookup")
    return sum(project.sim.count(route) for route in routes)


def mode_of(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


# -- permissions --------------------------------------------------------------------------------


@pytest.mark.parametrize("locked_sessions", ["both", "marketdata"])
def test_read_only_token_folder_stops_before_any_login(
    user_project: UserProject, locked_sessions: str
) -> None:
    """A token folder the user cannot write: the refresh checks each token file before it sends
    any login, so no login reaches XTS for a session whose token could not be saved (a
    market-data login would end the bot's current session for nothing): with both files there,
    no login at all; with only the market-data file there, the interactive session is still
    refreshed. Exit 4; the ✗ line names the folder and says what to do; the previous
    token files stay byte for byte, and no temporary file is left behind."""
    project = user_project
    project.with_marketdata()
    locked = project.folder / "locked"
    locked.mkdir()
    project.move_tokens(locked, interactive=locked_sessions == "both", marketdata=True)
    previous = [project.md_token_file]
    if locked_sessions == "both":
        previous.append(project.token_file)
    for path in previous:
        path.write_bytes(PREVIOUS_TOKEN)
        path.chmod(0o600)
    project.user.own(locked)
    locked.chmod(0o555)
    assert project.user.run(["/usr/bin/test", "-w", str(locked)]).returncode == 1  # the premise

    run = project.run()

    assert run.code == 4, run.output
    failure = [line for line in run.stdout.splitlines() if line.startswith("✗")]
    assert failure, run.output
    assert failure[-1].startswith("✗ Token refresh failed (exit code 4): "), failure[-1]
    assert str(locked) in failure[-1], failure[-1]
    what_to_do = re.compile(r"\b(chmod|chown|write to|writable by|permissions?)\b", re.IGNORECASE)
    assert what_to_do.search(failure[-1]), failure[-1]
    assert "run again" in failure[-1], failure[-1]
    routes = [request.route for request in project.sim.requests()]
    assert "marketdata_login" not in routes, routes
    if locked_sessions == "both":
        assert logins(project) == 0, routes
    else:  # the session whose file can be written is still refreshed (README)
        assert routes.count("interactive_login") == 1, routes
        saved = token_json(project.token_file)
        assert saved["token"] == project.sim.issued_tokens("interactive")[-1]
    for path in previous:
        assert path.read_bytes() == PREVIOUS_TOKEN
    assert sorted(os.listdir(locked)) == sorted(path.name for path in previous)


def test_files_are_owner_only_even_under_umask_000(user_project: UserProject) -> None:
    """Started with umask 000, the user's refresh still creates both token files and the log
    with mode 0600, owned by the user."""

    def no_umask() -> int:
        return os.umask(0)

    umask = user_project.user.run(["/bin/sh", "-c", "umask"], preexec=no_umask)
    assert umask.stdout.strip() == "0000", umask  # the premise: the user's process gets it

    run = user_project.with_marketdata().run(preexec=no_umask)

    assert run.code == 0, run.output
    for path in (user_project.token_file, user_project.md_token_file, user_project.log_file):
        info = path.stat()
        assert stat.S_IMODE(info.st_mode) == 0o600, f"{path}: {oct(info.st_mode)}"
        assert (info.st_uid, info.st_gid) == (user_project.user.uid, user_project.user.gid), path
    saved = token_json(user_project.token_file)
    assert saved["token"] == user_project.sim.issued_tokens("interactive")[-1]
    assert saved["userID"] == USER_ID


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600])
def test_env_file_readable_by_others_is_warned_about(user_project: UserProject, mode: int) -> None:
    """The user's .env readable by group or others: the refresh works and warns, naming the
    file and the chmod that fixes it; an owner-only .env gets no warning."""
    env_file = user_project.write_env()
    env_file.chmod(mode)

    run = user_project.run("--env-file", str(env_file), use_env_file=False)

    assert run.code == 0, run.output
    name = re.escape(str(env_file))
    warning = re.compile(rf"^⚠ .*{name}.* can be read by other users: run `?chmod 600 {name}`?")
    warnings = [line for line in run.output.splitlines() if warning.search(line)]
    if mode & 0o077:
        assert warnings, run.output
    else:
        assert warnings == [], warnings
        assert "can be read by other users" not in run.output


@pytest.mark.parametrize(
    ("owner", "mode", "refusal"),
    [
        ("user", 0o660, "can be written by its group"),
        ("user", 0o606, "can be written by other users"),
        ("nobody", 0o644, "belongs to the user nobody"),
        ("root", 0o644, None),
    ],
    ids=["group-writable", "world-writable", "another-users", "roots"],
)
def test_env_file_others_can_change_is_refused(
    user_project: UserProject, owner: str, mode: int, refusal: str | None
) -> None:
    """The user's settings file set the hook, a command run as the user: one that its group or
    other users can write, or that another user (not root) owns, is refused with exit 2 before
    any login and the hook never runs; one root owns is taken (root can do anything anyway)."""
    project = user_project
    marker = project.folder / "hook-ran"
    project.settings["XTS_POST_REFRESH_HOOK"] = f"touch {marker}"
    env_file = project.write_env()
    uid = {"user": project.user.uid, "nobody": pwd.getpwnam("nobody").pw_uid, "root": 0}[owner]
    os.chown(env_file, uid, -1)
    env_file.chmod(mode)

    run = project.run("--env-file", str(env_file), use_env_file=False)

    if refusal is None:
        assert run.code == 0, run.output
        assert marker.exists()
        return
    assert run.code == 2, run.output
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("✗") and f"{env_file} {refusal}" in last, last
    assert logins(project) == 0
    assert not marker.exists()


# -- XTS_TOKEN_GROUP: bots running as another user of a group ---------------------------------

BOT_GROUP = "nogroup"  # the bots' group; the user's runs are put in it as a supplementary group
# A bot reading the token as load_token does, without the refresher's packages (system Python).
BOT_READS = """
import hashlib, sys
sys.path.insert(0, sys.argv[1])
from xts_token_refresh import load_token
stored = load_token(account="alice")
print(stored.user_id, hashlib.sha256(stored.token.encode()).hexdigest())
"""


def bot_group_id() -> int:
    """The ID of BOT_GROUP (skip, or fail under CI=true, where the machine lacks it)."""
    import grp

    try:
        return grp.getgrnam(BOT_GROUP).gr_gid
    except KeyError:
        skip_or_fail(f"the group {BOT_GROUP} is missing")
        raise


def run_bot(user: User, uid: int, gid: int, folder: Path) -> subprocess.CompletedProcess[str]:
    """BOT_READS run by the user ``uid`` whose only group is ``gid``, on the install ``folder``."""
    ids = [f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    argv = [user.setpriv, *ids, "--", str(SYSTEM_PYTHON), "-c", BOT_READS, str(folder)]
    return run_process(argv, env={"HOME": "/nonexistent"})


def test_a_bot_of_the_token_group_reads_the_token_others_cannot(user_project: UserProject) -> None:
    """The user's refresh, in the group BOT_GROUP too, with XTS_TOKEN_GROUP=BOT_GROUP, under
    umask 000: alice's token file is 0640 and the group's, her folder 0750 and the group's, the
    lock 0600. The install's folder and accounts/ let the group through (as the docs say): a bot
    running as another user (nobody) in that group reads the token with load_token; the same bot
    in another group cannot, and learns nothing of the token."""
    project = user_project
    gid = bot_group_id()
    accounts = project.with_accounts("alice")
    project.settings["XTS_TOKEN_GROUP"] = BOT_GROUP
    project.user.own(accounts)
    for folder in (project.folder, accounts):
        os.chown(folder, project.user.uid, gid)
        folder.chmod(0o750)
    project.groups = (gid,)

    run = project.run(preexec=lambda: os.umask(0))

    assert run.code == 0, run.output
    token_file = accounts / "alice" / "xts_store_token.json"
    for path, mode in ((accounts / "alice", 0o750), (token_file, 0o640)):
        info = path.stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (
            project.user.uid,
            gid,
            mode,
        ), path
    assert mode_of(accounts / "alice" / "xts_store_token.json.lock") == 0o600
    token = str(token_json(token_file)["token"])
    nobody = pwd.getpwnam("nobody").pw_uid

    reader = run_bot(project.user, nobody, gid, project.folder)

    assert reader.returncode == 0, reader.stderr
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert reader.stdout.split() == [USER_ID, digest]
    outsider = [f"--reuid={nobody}", f"--regid={project.user.gid + 1}", "--clear-groups"]
    stranger = run_process(
        [project.user.setpriv, *outsider, "--", "/bin/cat", str(token_file)],
    )
    assert stranger.returncode == 1, "a user outside the group read the token"
    assert "Permission denied" in stranger.stderr
    assert token not in stranger.stdout + stranger.stderr


def test_a_token_group_the_user_is_not_in_is_exit_2_before_any_login(
    user_project: UserProject,
) -> None:
    """XTS_TOKEN_GROUP naming a group the user is not a member of (root): exit 2 before any
    login, naming the setting, the group and the user, and how to join it; the previous token
    file is left byte for byte."""
    project = user_project
    project.token_file.write_bytes(PREVIOUS_TOKEN)
    project.user.own(project.token_file)
    project.settings["XTS_TOKEN_GROUP"] = "root"

    run = project.run()

    assert run.code == 2, run.output
    assert (
        "XTS_TOKEN_GROUP names the group root, but this user (xtstest) is not a member of it"
        in run.stdout
    )
    assert "usermod -aG root xtstest" in run.stdout
    assert run.stdout.rstrip().splitlines()[-1].startswith("✗")
    assert logins(project) == 0
    assert project.token_file.read_bytes() == PREVIOUS_TOKEN


# -- the real cron daemon, the user's own crontab -----------------------------------------------


class CronDaemon:
    """Keeps a cron daemon running: the machine's own, or one started (and later stopped) here."""

    def __init__(self, program: str) -> None:
        self.program = program
        self.started: list[subprocess.Popen[bytes]] = []

    @staticmethod
    def running() -> bool:
        """True when a process called ``cron`` runs (``pgrep -x cron`` without procps)."""
        for comm in Path("/proc").glob("[0-9]*/comm"):
            try:
                if comm.read_text(encoding="utf-8").strip() == "cron":
                    return True
            except OSError:
                continue  # the process ended meanwhile
        return False

    def ensure(self) -> None:
        """Start ``cron -f`` when none runs (another test session may have stopped its own)."""
        if self.running():
            return
        daemon = subprocess.Popen(
            [self.program, "-f"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.started.append(daemon)
        time.sleep(0.5)
        assert daemon.poll() is None, f"cron -f exited at once with {daemon.returncode}"

    def stop(self) -> None:
        """Stop the daemons started here, never anyone else's."""
        for daemon in self.started:
            daemon.terminate()
            try:
                daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(timeout=10)


class UserCrontab:
    """The test user's real crontab, through ``crontab -u``."""

    def __init__(self, user: User, program: str) -> None:
        self.user = user
        self.program = program

    def read(self) -> str | None:
        """Its text; None when the user has no crontab."""
        done = run_process([self.program, "-u", self.user.name, "-l"])
        if done.returncode != 0:
            assert "no crontab" in done.stderr.lower(), done.stderr
            return None
        return done.stdout

    def write(self, text: str) -> None:
        """Replace it with ``text``."""
        done = subprocess.run(
            [self.program, "-u", self.user.name, "-"],
            input=text, capture_output=True, text=True, check=False, env={"PATH": CRON_PATH},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    def remove(self) -> None:
        """Delete it (as if the user never had one)."""
        run_process([self.program, "-u", self.user.name, "-r"])


@pytest.fixture
def user_crontab(unprivileged_user: User) -> Iterator[UserCrontab]:
    """The user's crontab, saved first and restored (or removed) afterwards, under a lock."""
    table = UserCrontab(unprivileged_user, tool("crontab"))
    with CRONTAB_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        saved = table.read()
        try:
            yield table
        finally:
            if saved is None:
                table.remove()
            else:
                table.write(saved)


@pytest.fixture
def cron_daemon(unprivileged_user: User) -> Iterator[CronDaemon]:
    """A cron daemon that runs (this test is root: it may start one)."""
    daemon = CronDaemon(tool("cron"))
    try:
        daemon.ensure()
        yield daemon
    finally:
        daemon.stop()


def wait_for(condition: Callable[[], bool], seconds: float, daemon: CronDaemon) -> bool:
    """Poll ``condition()`` twice a second for up to ``seconds``, keeping cron running."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        daemon.ensure()
        time.sleep(0.5)
    return bool(condition())


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_cron_runs_the_wrapper_as_the_user(
    user_project: UserProject, user_crontab: UserCrontab, cron_daemon: CronDaemon
) -> None:
    """A per-minute line in the user's own crontab: the real cron daemon runs the user's copy of
    the wrapper as the user, which logs in to the simulator and saves a token owned by the user,
    mode 0600; the cron output has the success line and no secret."""
    project = user_project
    env_file = project.write_env()
    output = project.folder / "cron_output.log"
    marker = f"# xts-token-refresh-test:{project.folder}"
    command = (
        f"XTS_VENV={shlex.quote(str(project.venv))} {shlex.quote(str(project.wrapper))}"
        f" --env-file {shlex.quote(str(env_file))} >> {shlex.quote(str(output))} 2>&1"
    ).replace("%", "\\%")
    before = user_crontab.read() or ""
    table = f"{before}* * * * * {command} {marker}\n"
    # cron notices a changed table by the spool folder's mtime, in whole seconds.
    time.sleep(1.1)
    user_crontab.write(table)

    try:
        appeared = wait_for(project.token_file.exists, JOB_WAIT_SECONDS / 2, cron_daemon)
        if not appeared:  # write it again, in a later second, in case cron missed the change
            user_crontab.write(table)
            appeared = wait_for(project.token_file.exists, JOB_WAIT_SECONDS / 2, cron_daemon)

        def finished() -> bool:
            text = output.read_text(encoding="utf-8") if output.exists() else ""
            return "(exit code: " in text

        done = wait_for(finished, 30, cron_daemon) if appeared else False
    finally:
        user_crontab.write(before)
    log = output.read_text(encoding="utf-8") if output.exists() else "(no cron output)"
    assert appeared, f"cron did not run the job within {JOB_WAIT_SECONDS} s; output:\n{log}"
    assert done, log

    first_run = log.split("XTS Token Refresh - ")[1]
    for line in (
        f"Working Directory: {project.folder}",
        f"✓ Virtual environment activated ({project.venv})",
        "✓ Required packages found",
        f"✓ Token saved to: {project.token_file}",
        "✓ Token refresh completed successfully (exit code: 0)",
    ):
        assert line in first_run, f"{line!r} missing from the cron output:\n{log}"
    info = project.token_file.stat()
    assert info.st_uid == project.user.uid, "the job did not run as the user"
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert output.stat().st_uid == project.user.uid
    saved = token_json(project.token_file)
    assert saved["token"] in project.sim.issued_tokens("interactive")
    assert saved["userID"] == USER_ID
    assert_no_secrets(project, log, project.log_file.read_text(encoding="utf-8"))
