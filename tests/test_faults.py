"""The fault matrix: every failure an operator can meet at 9:00, driven through the real script.

Each case asserts the exit code, the message, how many login requests XTS saw, what became of
the previous token file (byte-identical, or replaced by a complete new one), that no traceback
was printed, and (through conftest) that no secret or token reached any output or the log.
RELIABILITY.md lists the same cases as a table, by test name.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    IN_CI,
    INTERACTIVE_KEY,
    INTERACTIVE_SECRET,
    PYTHON,
    SCRIPT,
    USER_ID,
    Project,
    Run,
    closed_port,
    run_on_a_full_tmpfs,
    skip_or_fail,
    token_json,
)

from xts_refresher.simulator import Fault, XtsSimulator

LOGIN = "interactive_login"
NOT_JWT = "opaque-session-token-without-dots-0123456789"


def success_body(token: str) -> dict[str, object]:
    """A successful interactive login answer carrying ``token``."""
    return {
        "type": "success",
        "code": "s-user-0001",
        "description": "Valid User.",
        "result": {"token": token, "userID": USER_ID, "isInvestorClient": True},
    }


@dataclass(frozen=True)
class FaultCase:
    """One row of the matrix: how to cause the fault and what the run must do about it."""

    arrange: Callable[[Project], None]
    code: int
    says: str
    logins: int | None
    keeps_previous: bool


def queue(fault: Fault, times: int = 10) -> Callable[[Project], None]:
    """Arrange: the next ``times`` interactive logins get ``fault``."""
    return lambda project: project.sim.add_fault(LOGIN, fault, times)


def settings(**values: str) -> Callable[[Project], None]:
    """Arrange: change settings."""
    return lambda project: project.settings.update(values)


def both(*steps: Callable[[Project], None]) -> Callable[[Project], None]:
    """Arrange: several steps in order."""

    def arrange(project: Project) -> None:
        for step in steps:
            step(project)

    return arrange


def root_on_closed_port(project: Project) -> None:
    """Arrange: XTS_API_ROOT on a port nobody listens on."""
    project.settings["XTS_API_ROOT"] = f"http://127.0.0.1:{closed_port()}"


def telegram_down(project: Project) -> None:
    """Arrange: Telegram configured, on a port nobody listens on."""
    project.with_telegram().settings["TELEGRAM_API_URL"] = f"http://127.0.0.1:{closed_port()}"


def healthcheck_down(project: Project) -> None:
    """Arrange: HEALTHCHECK_URL on a port nobody listens on."""
    project.settings["HEALTHCHECK_URL"] = f"http://127.0.0.1:{closed_port()}/ping/abc"


def healthcheck_hanging(project: Project) -> None:
    """Arrange: the health check's /start ping never answers."""
    project.settings["HEALTHCHECK_URL"] = project.sim.url + "/ping/abc"
    project.sim.add_fault("healthcheck", Fault.hang(30))


def other_user(project: Project) -> None:
    """Arrange: XTS answers the login for another user than XTS_USER_ID."""
    project.sim.interactive_user_override = "ZZ99"


TEN_MB = b'{"type": "success", "result": {"token": "' + b"x" * (10 * 1024 * 1024) + b'"}}'
RETRIES = 3  # conftest's XTS_RETRIES=2, plus the first attempt

CASES: dict[str, FaultCase] = {
    "dns-failure": FaultCase(
        settings(XTS_API_ROOT="https://xts-broker.invalid"), 3, "does not resolve (DNS)", 0, True
    ),
    "connection-refused": FaultCase(root_on_closed_port, 3, "connection refused", 0, True),
    "reset-before-answer": FaultCase(
        queue(Fault.connection_reset()), 3, "the connection was reset", RETRIES, True
    ),
    "reset-mid-response": FaultCase(
        queue(Fault.cut_off(json.dumps(success_body("t" * 400)).encode(), 60)),
        3,
        "failed after 3 attempts",
        RETRIES,
        True,
    ),
    "slow-headers": FaultCase(
        both(settings(XTS_TIMEOUT="1"), queue(Fault.hang(30))),
        3,
        "no complete answer within 1 s",
        RETRIES,
        True,
    ),
    "body-trickles-past-timeout": FaultCase(
        both(settings(XTS_TIMEOUT="1"), queue(Fault.slow_body(b"{" + b" " * 100 + b"}", 0.05))),
        3,
        "no complete answer within 1 s",
        RETRIES,
        True,
    ),
    "http-500-xts-json": FaultCase(
        queue(Fault.xts_error("e-server-0001", "Internal error", status=500)),
        3,
        "HTTP 500: e-server-0001",
        RETRIES,
        True,
    ),
    "http-502-html": FaultCase(queue(Fault.html(502)), 3, "HTTP 502", RETRIES, True),
    "http-503-html": FaultCase(queue(Fault.html(503)), 3, "HTTP 503", RETRIES, True),
    "http-504-html": FaultCase(queue(Fault.html(504)), 3, "text/html", RETRIES, True),
    "html-page-with-200": FaultCase(
        queue(Fault.raw(b"<html><body>Maintenance</body></html>", 200, "text/html")),
        3,
        "not XTS JSON",
        RETRIES,
        True,
    ),
    "429-without-retry-after": FaultCase(
        queue(Fault.rate_limited()), 3, "HTTP 429: e-apirl-0004", RETRIES, True
    ),
    "429-with-retry-after": FaultCase(
        queue(Fault.rate_limited(retry_after=0.2)), 3, "HTTP 429", RETRIES, True
    ),
    "empty-body": FaultCase(queue(Fault.raw(b"")), 3, "0 bytes", RETRIES, True),
    "truncated-json": FaultCase(
        queue(Fault.raw(b'{"type": "success", "result": {"to')), 3, "not XTS JSON", RETRIES, True
    ),
    "json-not-an-object": FaultCase(
        queue(Fault.raw(b'["success"]')), 3, "not XTS JSON", RETRIES, True
    ),
    "number-out-of-range": FaultCase(
        queue(Fault.raw(json.dumps(success_body("a.b.c")).replace("true", "1e999").encode())),
        3,
        "not XTS JSON",
        RETRIES,
        True,
    ),
    "success-without-token": FaultCase(
        queue(Fault.json({"type": "success", "result": {"userID": USER_ID}})),
        3,
        "success without a token",
        RETRIES,
        True,
    ),
    "ten-megabyte-body": FaultCase(queue(Fault.raw(TEN_MB)), 3, "larger than 4 MiB", RETRIES, True),
    "token-not-a-jwt": FaultCase(
        queue(Fault.json(success_body(NOT_JWT)), 1), 0, "no readable expiry", 1, False
    ),
    "wrong-content-type": FaultCase(
        queue(Fault.raw(json.dumps(success_body("a.b.c")).encode(), 200, "text/plain"), 1),
        0,
        "✓ XTS token refreshed successfully!",
        1,
        False,
    ),
    "refused-credentials": FaultCase(
        settings(XTS_INTERACTIVE_API_SECRET="is-FAKE-not-the-secret-00"),
        1,
        "e-user-0005",
        1,
        True,
    ),
    "other-user": FaultCase(
        other_user,
        1,
        "not XTS_USER_ID=CK68",
        1,
        True,
    ),
    "telegram-down": FaultCase(
        telegram_down,
        0,
        "Telegram notification to chat 4242 failed (connection refused) after 4 attempts",
        1,
        False,
    ),
    "healthcheck-down": FaultCase(
        healthcheck_down,
        0,
        "health-check ping /start failed",
        1,
        False,
    ),
    "healthcheck-hanging": FaultCase(
        healthcheck_hanging,
        0,
        "health-check ping /start failed",
        1,
        False,
    ),
}


@pytest.fixture
def previous(project: Project) -> bytes:
    """A token file from an earlier successful run; its bytes."""
    run = project.run()
    assert run.code == 0, run.output
    project.sim.clear()
    return project.token_file.read_bytes()


def check_outcome(project: Project, run: Run, case: FaultCase, before: bytes) -> None:
    """The assertions every row shares."""
    assert run.code == case.code, run.output
    assert case.says in run.stdout, run.stdout
    assert "Traceback" not in run.output + run.log
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    assert lines[-1].startswith("✓" if case.code == 0 else "✗")
    if case.logins is not None:
        assert project.sim.count(LOGIN) == case.logins
    if case.keeps_previous:
        assert project.token_file.read_bytes() == before
    else:
        data = token_json(project.token_file)
        assert data["token"] != json.loads(before)["token"]
        assert data["userID"] == USER_ID
    assert not list(project.folder.glob(".*.tmp"))


# The faults that wait out a time-out on purpose (a few seconds each): left out of quick runs.
SLOW_CASES = {"body-trickles-past-timeout", "healthcheck-hanging", "slow-headers"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.slow) if name in SLOW_CASES else name
        for name in sorted(CASES)
    ],
)
def test_fault(project: Project, previous: bytes, name: str) -> None:
    """Each fault of the matrix ends as RELIABILITY.md says (see the module docstring)."""
    case = CASES[name]
    case.arrange(project)
    run = project.run()
    check_outcome(project, run, case, previous)
    if name == "token-not-a-jwt":
        assert token_json(project.token_file)["expires_at"] is None


# -- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate (and key, in the same PEM) for 127.0.0.1."""
    openssl = shutil.which("openssl")
    if openssl is None:
        skip_or_fail("openssl is not installed (Debian: apt-get install openssl)")
    assert openssl is not None
    folder = tmp_path_factory.mktemp("tls")
    pem = folder / "selfsigned.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=xts-simulator",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(folder / "key.pem"),
            "-out",
            str(pem),
        ],
        check=True,
        capture_output=True,
    )
    return pem


@pytest.fixture
def tls_project(certificate: Path, tmp_path: Path) -> Iterator[Project]:
    """A Project whose simulator speaks HTTPS with the self-signed certificate."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, certificate.parent / "key.pem")
    with XtsSimulator(tls=context) as simulator:
        simulator.add_account(INTERACTIVE_KEY, INTERACTIVE_SECRET, USER_ID)
        yield Project(simulator, tmp_path)


def test_fault_tls_untrusted_certificate(tls_project: Project) -> None:
    """A certificate the system does not trust is exit 3 with a pointer to XTS_CA_BUNDLE."""
    assert tls_project.sim.url.startswith("https://127.0.0.1:")
    run = tls_project.run()
    assert run.code == 3, run.output
    assert "TLS failed" in run.stdout
    assert "XTS_CA_BUNDLE" in run.stdout
    assert tls_project.sim.count(LOGIN) == 0  # the handshake failed before any request
    assert not tls_project.token_file.exists()


def test_fault_tls_trusted_through_ca_bundle(tls_project: Project, certificate: Path) -> None:
    """The same server with XTS_CA_BUNDLE pointing at its certificate: a normal refresh."""
    tls_project.settings["XTS_CA_BUNDLE"] = str(certificate)
    run = tls_project.run()
    assert run.code == 0, run.output
    assert tls_project.sim.count(LOGIN) == 1
    assert token_json(tls_project.token_file)["api_root"] == tls_project.sim.url


def test_fault_tls_ca_bundle_beats_requests_ca_bundle(
    tls_project: Project, certificate: Path
) -> None:
    """REQUESTS_CA_BUNDLE in the environment (another program's setting) does not override
    XTS_CA_BUNDLE, nor XTS_VERIFY_SSL."""
    other_bundle = certificate.parent / "key.pem"  # any file that does not trust the server
    tls_project.settings["XTS_CA_BUNDLE"] = str(certificate)
    run = tls_project.run(env={"REQUESTS_CA_BUNDLE": str(other_bundle)})
    assert run.code == 0, run.output
    del tls_project.settings["XTS_CA_BUNDLE"]
    tls_project.settings["XTS_VERIFY_SSL"] = "false"
    run = tls_project.run(env={"CURL_CA_BUNDLE": str(other_bundle)})
    assert run.code == 0, run.output


def test_fault_telegram_trusts_requests_ca_bundle_not_xts_ca_bundle(
    tls_project: Project, certificate: Path
) -> None:
    """Telegram on a server with a private certificate: XTS_CA_BUNDLE (XTS's setting) does
    not make Telegram trusted, so the message is not delivered (a ⚠ line, exit 0 all the
    same); REQUESTS_CA_BUNDLE in the process's environment does."""
    tls_project.settings["XTS_CA_BUNDLE"] = str(certificate)
    tls_project.with_telegram()

    untrusted = tls_project.run()

    assert untrusted.code == 0, untrusted.output
    assert tls_project.sim.count("telegram") == 0  # no TLS handshake got through
    assert any(
        line.startswith("⚠ The Telegram notification") and "not delivered" in line
        for line in untrusted.stdout.splitlines()
    ), untrusted.stdout

    trusted = tls_project.run(env={"REQUESTS_CA_BUNDLE": str(certificate)})

    assert trusted.code == 0, trusted.output
    assert tls_project.sim.count("telegram") == 1


def test_fault_tls_verification_off_warns(tls_project: Project) -> None:
    """XTS_VERIFY_SSL=false reaches the untrusted server, and every run says it is unsafe."""
    tls_project.settings["XTS_VERIFY_SSL"] = "false"
    run = tls_project.run()
    assert run.code == 0, run.output
    assert "TLS certificate checks are OFF" in run.stdout
    assert "InsecureRequestWarning" not in run.output


def test_a_hostlookup_sending_an_https_root_to_plain_http_gets_no_login(
    tls_project: Project, certificate: Path
) -> None:
    """The API root and its host lookup speak https, and the lookup hands out a plain-http
    connection string on another server: exit 3 before any login, naming the connection string;
    the other server receives nothing (the secret would cross the network in clear text)."""
    tls_project.settings["XTS_CA_BUNDLE"] = str(certificate)
    tls_project.settings["XTS_HOSTLOOKUP_URL"] = f"{tls_project.sim.url}/hostlookup"
    assert tls_project.run().code == 0
    before = tls_project.token_file.read_bytes()
    tls_project.sim.clear()
    with XtsSimulator() as elsewhere:
        elsewhere.add_account(INTERACTIVE_KEY, INTERACTIVE_SECRET, USER_ID)
        tls_project.sim.hostlookup_connection = f"{elsewhere.url}/interactive"

        run = tls_project.run()

        assert elsewhere.requests() == []
    assert run.code == 3, run.output
    assert [r.route for r in tls_project.sim.requests()] == ["hostlookup"]
    assert f"{elsewhere.url}/interactive" in run.stdout
    assert "not https" in run.stdout
    assert run.stdout.rstrip().splitlines()[-1].startswith("✗")
    assert tls_project.token_file.read_bytes() == before


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_login_answered_with_a_redirect_is_not_followed_nor_retried(
    project: Project, previous: bytes, status: int
) -> None:
    """XTS answers the login with a redirect to another server: it is not followed (a 307
    would send the secret again, to that server), not retried (the next answer would say the
    same), exit 3 naming XTS_API_ROOT and where the redirect pointed; the token file is kept."""
    with XtsSimulator() as elsewhere:
        elsewhere.add_account(INTERACTIVE_KEY, INTERACTIVE_SECRET, USER_ID)
        target = f"{elsewhere.url}/interactive/user/session"
        project.sim.add_fault(LOGIN, Fault.redirect(target, status), times=3)

        run = project.run()

        assert elsewhere.requests() == []
    assert run.code == 3, run.output
    assert project.sim.count(LOGIN) == 1
    assert "retrying" not in run.output
    last = run.stdout.rstrip().splitlines()[-1]
    assert last.startswith("✗")
    assert f"redirect (HTTP {status}) to {target}" in last
    assert "XTS_API_ROOT" in last
    assert project.token_file.read_bytes() == previous


# -- local faults -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "state"),
    [(b"", "corrupt"), (b"{not json", "corrupt"), (b'{"token": 5}', "corrupt"), (None, "missing")],
    ids=["empty", "garbage", "no-token", "missing"],
)
def test_fault_bad_previous_token_file_is_replaced_under_if_needed(
    project: Project, content: bytes | None, state: str
) -> None:
    """An empty, corrupt or missing token file: --if-needed logs in and writes a good one."""
    if content is not None:
        project.token_file.write_bytes(content)
    run = project.run("--if-needed")
    assert run.code == 0, run.output
    assert f"the stored token is {state}" in run.stdout
    assert project.sim.count(LOGIN) == 1
    assert token_json(project.token_file)["userID"] == USER_ID


def test_fault_unreadable_token_file_is_replaced_under_if_needed(project: Project) -> None:
    """A token path that cannot be read (a symlink loop: ELOOP, even for root) is logged in
    again under --if-needed, and the link is replaced by a real file, not followed."""
    project.token_file.symlink_to(project.token_file)
    run = project.run("--if-needed")
    assert run.code == 0, run.output
    assert "the stored token is corrupt" in run.stdout
    assert project.sim.count(LOGIN) == 1
    assert not project.token_file.is_symlink()
    assert token_json(project.token_file)["userID"] == USER_ID


def test_fault_folder_at_token_path(project: Project) -> None:
    """A folder where the token file should be: exit 2 (a path to fix), the folder untouched,
    no login sent (every written path is checked before any login)."""
    project.token_file.mkdir()
    run = project.run()
    assert run.code == 2, run.output
    assert f"{project.token_file} is a folder" in run.stdout
    assert project.token_file.is_dir()
    assert project.sim.count(LOGIN) == 0


@pytest.mark.system
def test_fault_disk_full(project: Project, previous: bytes) -> None:
    """ENOSPC while writing the token: exit 4, the previous token intact, no temporary file left.

    The token folder is a 64 KiB tmpfs, filled up, in a private mount namespace (root only).
    """
    mount = project.folder / "small"
    mount.mkdir()
    token = mount / "xts_store_token.json"
    env_file = project.write_env()
    done = run_on_a_full_tmpfs(
        mount,
        f"printf '%s' \"$PREVIOUS\" > {token}\nchmod 600 {token}",
        f"{PYTHON} {SCRIPT} --env-file {env_file} --token-file {token}\n"
        f"code=$?\nsha256sum {token}\necho LISTING\nls -a {mount}\n(exit $code)",
        env={"PREVIOUS": previous.decode()},
    )
    assert "exit=4" in done.stdout, done.stdout + done.stderr
    assert "No space left on device" in done.stdout
    assert "the previous token is kept" in done.stdout
    assert hashlib.sha256(previous).hexdigest() in done.stdout
    listing = done.stdout.split("LISTING", 1)[1].split()
    assert [name for name in listing if name.endswith(".tmp")] == []
    for secret in project.secrets():
        assert secret not in done.stdout + done.stderr


@pytest.mark.slow
def test_fault_lock_held_by_a_stuck_process(project: Project, previous: bytes) -> None:
    """A stuck process holding the run lock: the run waits until XTS_DEADLINE, then exit 4."""
    lock = f"{project.token_file}.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"f = open({lock!r}, 'w'); fcntl.flock(f, fcntl.LOCK_EX)\n"
            "f.write(f'pid {os.getpid()} stuck\\n'); f.flush(); print('held', flush=True)\n"
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        project.settings["XTS_DEADLINE"] = "2"
        started = time.monotonic()
        run = project.run()
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert run.code == 4, run.output
    assert f"pid {holder.pid} stuck" in run.stdout
    assert 1.5 < waited < 10  # it waited for the lock until XTS_DEADLINE, not for ever
    assert project.sim.count(LOGIN) == 0
    assert project.token_file.read_bytes() == previous


def test_fault_env_file_with_bom_crlf_quotes_and_export(project: Project) -> None:
    """A .env with a byte-order mark, CRLF line ends, both quote styles and export works."""
    lines = []
    for index, (name, value) in enumerate(project.settings.items()):
        quote = ("'", '"', "")[index % 3]
        lines.append(f"export {name}={quote}{value}{quote}")
    env_file = project.folder / "crlf.env"
    env_file.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode())
    env_file.chmod(0o600)
    run = project.run("--env-file", str(env_file), use_env_file=False)
    assert run.code == 0, run.output
    (login,) = project.sim.requests(LOGIN)
    assert login.json == {
        "appKey": INTERACTIVE_KEY,
        "secretKey": INTERACTIVE_SECRET,
        "source": "WEBAPI",
    }


# -- the deadline ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_deadline_bounds_the_whole_run_whatever_the_server_does(project: Project) -> None:
    """A server that never answers, generous timeouts and retries: the run ends by XTS_DEADLINE."""
    deadline = 3.0
    project.settings.update(XTS_DEADLINE=f"{deadline:g}", XTS_TIMEOUT="30", XTS_RETRIES="20")
    project.sim.add_fault(LOGIN, Fault.hang(120), 50)
    started = time.monotonic()
    run = project.run()
    elapsed = time.monotonic() - started
    assert run.code == 3, run.output
    assert "XTS_DEADLINE" in run.stdout or "within 3 s" in run.stdout
    # The run's own start-up (an interpreter and its imports) comes on top of the deadline.
    assert deadline <= elapsed < deadline + (4.0 if IN_CI else 3.0)
    assert project.sim.count(LOGIN) == 1


def test_temporary_files_of_a_killed_run_are_removed_by_the_next_run(project: Project) -> None:
    """A temporary file left by a run killed mid-write is removed by the next run, under lock."""
    leftover = project.folder / ".xts_store_token.json.99999.123456789.tmp"
    leftover.write_text('{"token": "half')
    unrelated = project.folder / ".other.tmp"
    unrelated.write_text("not ours")
    run = project.run()
    assert run.code == 0, run.output
    assert not leftover.exists()
    assert unrelated.exists()
