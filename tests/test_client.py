"""The XTS client: the host lookup, the logins it leads to, the retry loop's deadline, and
what its requests carry.

With ``XTS_HOSTLOOKUP_URL`` the client first asks the host lookup for a connection string,
then logs in there; a failing lookup is exit 3 with no login, and a connection string that
would carry the API secret somewhere unsafe gets none. The retries never wait past
``XTS_DEADLINE``. A token check carries the token, never a ``~/.netrc`` login. The real script
runs cron-style against the simulator; nothing is mocked.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    INTERACTIVE_KEY,
    INTERACTIVE_SECRET,
    Project,
    token_json,
    xts_routes,
)

from xts_refresher.simulator import Fault, XtsSimulator

LOGIN = "interactive_login"


# -- host lookup --------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["standard", "pascal"])
def test_hostlookup_comes_first_then_the_login_at_the_connection_string(
    project: Project, style: str
) -> None:
    """With XTS_HOSTLOOKUP_URL, one host lookup (the public access password) precedes the
    login, which goes to ``<connectionString>/user/session`` with the returned uniqueKey; the
    token file records the connection string as ``api_root``, and ``--verify`` checks the token
    there. Both key spellings (and a boolean ``type``) are understood."""
    project.sim.hostlookup_style = style
    project.settings["XTS_HOSTLOOKUP_URL"] = f"{project.sim.url}/hostlookup"

    run = project.run("refresh", "--verify")

    assert run.code == 0, run.output
    assert xts_routes(project) == ["hostlookup", "interactive_login", "interactive_balance"]
    (lookup,) = project.sim.requests("hostlookup")
    assert lookup.json == {"accesspassword": "2021HostLookUpAccess", "version": "interactive_1.0.1"}
    (login,) = project.sim.requests("interactive_login")
    assert login.path == "/interactive/user/session"
    assert login.json["uniqueKey"] == project.sim.last_unique_key
    assert login.json["appKey"] == INTERACTIVE_KEY
    connection = f"{project.sim.url}/interactive"
    assert token_json(project.token_file)["api_root"] == connection
    (balance,) = project.sim.requests("interactive_balance")
    assert balance.path == "/interactive/user/balance"


def test_hostlookup_tokens_are_kept_by_if_needed(project: Project) -> None:
    """A token saved through a host lookup (``api_root`` = the connection string) is not taken
    for "another root" by ``--if-needed``: no lookup and no login the second time."""
    project.settings["XTS_HOSTLOOKUP_URL"] = f"{project.sim.url}/hostlookup"
    assert project.run().code == 0
    project.sim.clear()

    run = project.run("--if-needed")

    assert run.code == 0
    assert project.sim.requests() == []


def test_a_failing_hostlookup_is_exit_3_with_no_login(project: Project) -> None:
    """A host lookup answering proxy 503 pages on every try is exit 3 after the retries, no
    login is attempted, and the previous token file stays byte-identical."""
    assert project.run().code == 0
    before = project.token_file.read_bytes()
    project.settings["XTS_HOSTLOOKUP_URL"] = f"{project.sim.url}/hostlookup"
    project.sim.clear()
    project.sim.add_fault("hostlookup", Fault.html(503), times=3)

    run = project.run()

    assert run.code == 3
    assert xts_routes(project) == ["hostlookup"] * 3
    assert "host lookup failed" in run.stdout
    assert run.stdout.rstrip().splitlines()[-1].startswith("✗")
    assert project.token_file.read_bytes() == before


@pytest.mark.parametrize(
    "connection",
    [
        "http://xtsuser:cs-FAKE-pass@{elsewhere}/interactive",
        "http://xts-cluster.invalid:3000/interactive",
        "ftp://{elsewhere}/interactive",
    ],
    ids=["user-and-password", "plain-http-to-another-host", "not-http"],
)
def test_a_hostlookup_handing_out_an_unsafe_connection_string_gets_no_login(
    project: Project, connection: str
) -> None:
    """A host lookup whose connection string carries a user and password, or is plain http to
    a host that is not this machine, or is not http(s) at all: exit 3 before any login, naming
    XTS_HOSTLOOKUP_URL; the host it named receives nothing, the secret is sent nowhere, the
    password is never shown, and the previous token file is kept."""
    assert project.run().code == 0
    before = project.token_file.read_bytes()
    project.settings["XTS_HOSTLOOKUP_URL"] = f"{project.sim.url}/hostlookup"
    project.sim.clear()
    with XtsSimulator() as elsewhere:
        project.sim.hostlookup_connection = connection.format(
            elsewhere=elsewhere.url.split("://", 1)[1]
        )

        run = project.run()

        assert elsewhere.requests() == []
    assert run.code == 3, run.output
    assert xts_routes(project) == ["hostlookup"]  # refused at once: no retry, no login
    last = run.stdout.rstrip().splitlines()[-1]
    assert last.startswith("✗")
    assert "connection string" in last
    assert "no login was sent" in last
    assert "XTS_HOSTLOOKUP_URL" in last
    for text in (run.output, run.log):
        assert INTERACTIVE_SECRET not in text
        assert "cs-FAKE-pass" not in text
        assert "xtsuser" not in text
    assert project.token_file.read_bytes() == before


# -- the deadline bounds the retry waits --------------------------------------------------------


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
    It fails with a retry loop that sleeps the wait without comparing it with the time left."""
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


# -- what a request carries ---------------------------------------------------------------------


def test_a_netrc_entry_for_the_broker_never_replaces_the_token_nor_travels(
    project: Project, tmp_path: Path
) -> None:
    """requests reads ~/.netrc for a host it is given no auth for: an entry for the broker's
    host would replace the token in Authorization with that login's Basic credentials (and
    send its password to XTS). The client gives requests an auth of its own, so ~/.netrc is
    never read."""
    home = tmp_path / "home"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text("machine 127.0.0.1 login netrc-user password NETRC-FAKE-pass-42\n")
    netrc.chmod(0o600)

    run = project.run("--verify", env={"HOME": str(home)})

    assert run.code == 0, run.output
    checks = project.sim.requests("interactive_balance")
    assert checks, "the --verify call never reached XTS"
    stored = json.loads(project.token_file.read_text())
    assert [r.headers.get("authorization") for r in checks] == [stored["token"]] * len(checks)
    for request in project.sim.requests():
        assert not request.headers.get("authorization", "").startswith("Basic"), request.route
