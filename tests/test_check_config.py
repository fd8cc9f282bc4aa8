"""``check-config``: the pre-market check of the settings and of every server they name.

It asks XTS (the API root, the host lookup, the market-data path) without logging in, asks
Telegram (``getMe``, ``getChat``) and the health check's server without sending a message or
a ping, and ends with ``✓ Ready`` or ``✗ Not ready (exit code N)``: 2 for settings, 3 for a
server out of reach. Every test runs the real script cron-style against the simulator over
real sockets and checks what the simulator received: never a login, a message or a ping.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from conftest import BOT_TOKEN, Project, closed_port, with_healthcheck

from xts_refresher.simulator import Fault, XtsSimulator

LOGIN_ROUTES = ("interactive_login", "marketdata_login", "hostlookup")


def logins(project: Project) -> int:
    """How many login (and host-lookup) requests the simulator received."""
    return sum(project.sim.count(route) for route in LOGIN_ROUTES)


# -- XTS ----------------------------------------------------------------------------------------


def test_check_config_passes_against_the_simulator_without_logging_in(project: Project) -> None:
    """With valid settings, writable folders and a reachable root, ``check-config`` exits 0,
    reaches the API root once, and sends no login; it writes no token file."""
    project.with_marketdata()

    run = project.run("check-config")

    assert run.code == 0, run.output
    assert "✓ Ready" in run.stdout
    assert f"✓ {project.sim.url} is reachable over http." in run.stdout
    # The root's 404 is reported without a tick beside it: it reads like an error code.
    assert not re.search(r"^✓.*HTTP 404", run.stdout, re.MULTILINE)
    assert "answered HTTP 404" in run.stdout
    md_api = f"{project.sim.url}/apimarketdata"
    assert f"✓ The market-data API answers at {md_api} (XTS_MARKETDATA_PATH)" in run.stdout
    assert logins(project) == 0
    (root, md_probe) = project.sim.requests()
    assert (root.method, root.path) == ("GET", "/")
    assert (md_probe.method, md_probe.route) == ("GET", "marketdata_config")
    assert "authorization" not in md_probe.headers  # no token, no login: XTS says e-token
    assert not project.token_file.exists()
    assert not project.md_token_file.exists()


@pytest.mark.parametrize("path", ["/apimarketdat", "/apibinarymarketdata"])
def test_check_config_reports_a_market_data_path_xts_does_not_serve(
    tmp_path: Path, path: str
) -> None:
    """A broker that serves the JSON feed only (``/apimarketdata``), asked at a misspelt path or
    at the binary feed's: check-config exits 3, its ✗ line names XTS_MARKETDATA_PATH and the
    two paths brokers use; nothing logs in."""
    from xts_refresher.simulator import XtsSimulator

    with XtsSimulator(marketdata_path="/apimarketdata") as broker:
        project = Project(broker, tmp_path).with_marketdata()
        project.settings["XTS_MARKETDATA_PATH"] = path

        run = project.run("check-config")

        assert run.code == 3, run.output
        (line,) = [text for text in run.stdout.splitlines() if "XTS_MARKETDATA_PATH" in text]
        assert line.startswith("✗")
        assert f"{broker.url}{path}" in line
        assert "/apibinarymarketdata" in line
        assert "/apimarketdata" in line
        assert broker.count("interactive_login") == broker.count("marketdata_login") == 0
        assert run.stdout.rstrip().splitlines()[-1].startswith("✗ Not ready (exit code 3)")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("XTS_VERIFY_SSL", "maybe"),
        ("XTS_TIMEOUT", "soon"),
        ("XTS_API_ROOT", "ttblaze.iifl.com"),
        ("TELEGRAM_NOTIFY", "sometimes"),
    ],
)
def test_check_config_exits_2_for_an_invalid_setting(
    project: Project, name: str, value: str
) -> None:
    """An invalid setting is exit 2, the message names the variable, and nothing is sent."""
    project.settings[name] = value

    run = project.run("check-config")

    assert run.code == 2
    assert name in run.stdout
    assert "✗" in run.stdout
    assert project.sim.requests() == []


def test_check_config_exits_2_when_the_token_folder_does_not_exist(
    project: Project, tmp_path: Path
) -> None:
    """A token file in a folder that does not exist cannot be saved: exit 2 before any
    network traffic (XTS, Telegram and the health check are not asked), the message names the
    folder and the ✗ line says to fix the paths."""
    missing = tmp_path / "no-such-folder"
    project.settings["XTS_TOKEN_FILE"] = str(missing / "xts_store_token.json")
    project.with_telegram()
    with_healthcheck(project)

    run = project.run("check-config")

    assert run.code == 2
    assert f"the folder {missing} does not exist" in run.stdout
    assert "✗ Fix the paths above" in run.stdout
    assert project.sim.requests() == []
    assert not missing.exists()


def test_check_config_exits_3_when_the_api_root_is_unreachable(project: Project) -> None:
    """A root nobody answers on (a closed loopback port) is exit 3, quickly, with a reason."""
    port = closed_port()
    project.settings["XTS_API_ROOT"] = f"http://127.0.0.1:{port}"

    started = time.monotonic()
    run = project.run("check-config")

    assert run.code == 3
    assert f"127.0.0.1:{port} cannot be reached: connection refused" in run.stdout
    assert time.monotonic() - started < 10
    assert project.sim.requests() == []


def test_check_config_reaches_the_host_lookup_too(project: Project) -> None:
    """With XTS_HOSTLOOKUP_URL, check-config reaches it as well as the API root: a host lookup
    nobody answers on is exit 3 naming it, though the root answers; nothing logs in."""
    port = closed_port()
    project.settings["XTS_HOSTLOOKUP_URL"] = f"http://127.0.0.1:{port}/hostlookup"

    run = project.run("check-config")

    assert run.code == 3, run.output
    assert (
        f"✗ http://127.0.0.1:{port}/hostlookup cannot be reached: connection refused" in run.stdout
    )
    assert f"✓ {project.sim.url} is reachable" in run.stdout
    assert run.stdout.rstrip().splitlines()[-1].startswith("✗ Not ready (exit code 3)")
    assert not any(project.sim.count(route) for route in LOGIN_ROUTES)


# -- Telegram and the health check --------------------------------------------------------------


def test_check_config_asks_telegram_and_the_health_check_and_sends_nothing(
    project: Project,
) -> None:
    """With Telegram and a health check, check-config asks getMe and getChat and reaches the
    check's server at its origin: no message, no ping, no login; exit 0."""
    project.with_telegram()
    prefix = with_healthcheck(project)

    run = project.run("check-config")

    assert run.code == 0, run.output
    (get_me,) = project.sim.requests("telegram_getme")
    assert get_me.path == f"/bot{BOT_TOKEN}/getMe"
    (get_chat,) = project.sim.requests("telegram_getchat")
    assert get_chat.json == {"chat_id": "4242"}
    assert project.sim.count("telegram") == 0
    assert project.sim.count("healthcheck") == 0
    assert project.sim.count("interactive_login") == 0
    heads = [r.path for r in project.sim.requests("unknown") if r.method == "HEAD"]
    assert heads == ["/"], "the health check's server is asked at its origin, once"
    assert (
        "✓ Telegram accepts the bot token (bot @xts_sim_bot) and knows chat 4242 (XTS alerts); "
        "no message was sent." in run.stdout
    )
    origin = project.sim.url + "/"
    assert f"✓ The health check's server {origin} answers over http" in run.stdout
    assert "no ping was sent" in run.stdout
    assert prefix not in run.stdout  # whoever knows a check's URL can ping it: not shown
    assert run.stdout.rstrip().splitlines()[-1].startswith("✓ Ready")


@pytest.mark.parametrize(
    ("refusal", "setting", "get_chats"),
    [("bot-token", "TELEGRAM_TOKEN", 0), ("chat", "TELEGRAM_CHAT_ID", 1)],
)
def test_check_config_names_a_refused_bot_token_or_unknown_chat(
    project: Project, refusal: str, setting: str, get_chats: int
) -> None:
    """A bot token Telegram refuses, or a chat it cannot find, is exit 2 naming the setting;
    nothing is sent, and the rest (XTS, the health check) is still checked."""
    project.with_telegram()
    with_healthcheck(project)
    if refusal == "bot-token":
        project.sim.refuse_bot_token(BOT_TOKEN)
    else:
        project.sim.forget_chat("4242")

    run = project.run("check-config")

    assert run.code == 2, run.output
    assert project.sim.count("telegram_getme") == 1
    assert project.sim.count("telegram_getchat") == get_chats
    assert project.sim.count("telegram") == 0
    (line,) = [text for text in run.stdout.splitlines() if text.startswith("✗ Telegram")]
    assert line.startswith("✗ Telegram refused the check (HTTP 40")
    assert f"Check {setting}" in line
    assert "✓ The health check's server" in run.stdout
    assert "is reachable over http" in run.stdout  # the API root
    assert run.stdout.rstrip().splitlines()[-1] == (
        "✗ Not ready (exit code 2): fix what is marked ✗ above, then run check-config again."
    )


@pytest.mark.parametrize("unreachable", ["telegram", "healthcheck"])
def test_check_config_says_when_telegram_or_the_health_check_cannot_be_reached(
    project: Project, unreachable: str
) -> None:
    """Telegram or the health check's server on a closed port is exit 3, named; the other is
    still checked."""
    project.with_telegram()
    with_healthcheck(project)
    dead = f"http://127.0.0.1:{closed_port()}"
    if unreachable == "telegram":
        project.settings["TELEGRAM_API_URL"] = dead
    else:
        project.settings["HEALTHCHECK_URL"] = dead + "/ping/abc"

    run = project.run("check-config")

    assert run.code == 3, run.output
    name = "Telegram" if unreachable == "telegram" else "The health check"
    assert (
        f"✗ {name} cannot be reached (connection refused): its notifications would not arrive."
        in run.stdout
    )
    reached = "✓ The health check's server" if unreachable == "telegram" else "✓ Telegram accepts"
    assert reached in run.stdout
    assert project.sim.count("telegram") == 0
    assert project.sim.count("healthcheck") == 0
    assert run.stdout.rstrip().splitlines()[-1].startswith("✗ Not ready (exit code 3)")


def test_check_config_never_shows_the_health_checks_password(project: Project) -> None:
    """A self-hosted check behind basic authentication: its server is named without the user
    and password, whether it answers or fails (503)."""
    host = project.sim.url.split("://", 1)[1]
    project.settings["HEALTHCHECK_URL"] = f"http://hcuser:hunter2-FAKE-pass@{host}/ping/abc"

    run = project.run("check-config")

    assert run.code == 0, run.output
    assert f"✓ The health check's server http://{host}/ answers over http" in run.stdout
    project.sim.add_fault("unknown", Fault.html(503), times=2)  # the API root's GET, the HEAD

    failing = project.run("check-config")

    assert failing.code == 3, failing.output
    assert f"its server http://{host}/ answered HTTP 503" in failing.stdout
    for done in (run, failing):
        assert "hunter2" not in done.output + done.log
        assert "hcuser" not in done.output + done.log


@pytest.mark.parametrize("method", ["getMe", "getChat"])
def test_check_config_refuses_a_redirecting_bot_api(project: Project, method: str) -> None:
    """check-config's getMe or getChat answered with a redirect: not followed (the server it
    names receives nothing), exit 2 naming TELEGRAM_API_URL; no message is sent."""
    project.with_telegram()
    route = "telegram_getme" if method == "getMe" else "telegram_getchat"
    with XtsSimulator() as elsewhere:
        project.sim.add_fault(route, Fault.redirect(f"{elsewhere.url}/bot{BOT_TOKEN}/{method}"))

        run = project.run("check-config")

        assert elsewhere.requests() == []
    assert run.code == 2, run.output
    assert project.sim.count(route) == 1
    assert project.sim.count("telegram") == 0
    (line,) = [text for text in run.stdout.splitlines() if text.startswith("✗ Telegram")]
    assert "a redirect to" in line
    assert "Check TELEGRAM_API_URL" in line


def test_check_config_refuses_a_health_check_server_redirecting_elsewhere(
    project: Project,
) -> None:
    """The health check's server answers check-config's HEAD with a redirect to another
    server: not followed, exit 2 naming HEALTHCHECK_URL (its pings would be refused)."""
    with XtsSimulator() as checks, XtsSimulator() as elsewhere:
        project.settings["HEALTHCHECK_URL"] = f"{checks.url}/ping/abc"
        checks.add_fault("unknown", Fault.redirect(f"{elsewhere.url}/"))

        run = project.run("check-config")

        assert elsewhere.requests() == []
        assert [r.method for r in checks.requests()] == ["HEAD"]
    assert run.code == 2, run.output
    (line,) = [text for text in run.stdout.splitlines() if text.startswith("✗ The health check")]
    assert f"a redirect to {elsewhere.url}/" in line
    assert "Check HEALTHCHECK_URL" in line
