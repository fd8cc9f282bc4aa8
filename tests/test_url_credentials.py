"""A user and password written into a configured URL are used, and never shown.

A self-hosted Bot API, a health check or a host lookup behind basic authentication has its
user and password in the URL (``https://user:password@host/``). The real script runs cron-style
against the simulator with such URLs, and no console line, log line, Telegram message or ping
body may contain the user or the password, whatever the command and whether it succeeds or
fails. XTS_API_ROOT may not hold them (they would replace the token in the Authorization
header): a configuration error, which does not show them either.
"""

from __future__ import annotations

import json

from conftest import Project, Run, with_healthcheck

from xts_refresher.simulator import Fault

# Each URL setting's user and password: distinctive, so any appearance is a leak.
CREDENTIALS = {
    "XTS_API_ROOT": ("rootuser", "root-FAKE-pw-7c1"),
    "XTS_HOSTLOOKUP_URL": ("lookupuser", "lookup-FAKE-pw-3e9"),
    "TELEGRAM_API_URL": ("tguser", "tg-FAKE-pw-51d"),
    "HEALTHCHECK_URL": ("hcuser", "hc-FAKE-pw-0aa"),
}


def with_credentials(project: Project, *names: str) -> None:
    """Write each named URL setting's user and password into it."""
    for name in names or tuple(CREDENTIALS):
        user, password = CREDENTIALS[name]
        scheme, rest = project.settings[name].split("://", 1)
        project.settings[name] = f"{scheme}://{user}:{password}@{rest}"


def assert_credentials_unseen(project: Project, *runs: Run) -> None:
    """No user or password of CREDENTIALS in any output, log, message or ping body."""
    texts = [text for run in runs for text in (run.output, run.log)]
    texts += [r.body.decode("utf-8", "replace") for r in project.sim.requests("telegram")]
    texts += [r.body.decode("utf-8", "replace") for r in project.sim.requests("healthcheck")]
    for user, password in CREDENTIALS.values():
        for text in texts:
            assert password not in text, f"the password of {user} was shown"
            assert f"{user}:" not in text and f"{user}@" not in text, f"{user} was shown"


def test_credentials_in_url_settings_are_used_and_never_shown(project: Project) -> None:
    """check-config, a refresh (with its message and pings), ``status --verify`` in text and
    JSON: all succeed with a user and password in XTS_HOSTLOOKUP_URL, TELEGRAM_API_URL and
    HEALTHCHECK_URL, and none shows them; the servers were asked at the URLs they name."""
    project.with_marketdata().with_telegram()
    with_healthcheck(project)
    project.settings["XTS_HOSTLOOKUP_URL"] = f"{project.sim.url}/hostlookup"
    with_credentials(project, "XTS_HOSTLOOKUP_URL", "TELEGRAM_API_URL", "HEALTHCHECK_URL")

    runs = [
        project.run("check-config"),
        project.run("refresh", "--verify"),
        project.run("status", "--verify"),
        project.run("status", "--verify", "--json"),
    ]

    assert [run.code for run in runs] == [0, 0, 0, 0], [run.output for run in runs]
    assert f"✓ {project.sim.url}/hostlookup is reachable" in runs[0].stdout  # shown without them
    assert project.sim.count("hostlookup") == 1
    assert len(project.sim.telegram_messages()) == 1
    assert project.sim.count("healthcheck") == 2
    assert_credentials_unseen(project, *runs)


def test_credentials_in_the_api_root_are_a_configuration_error_never_shown(
    project: Project,
) -> None:
    """XTS_API_ROOT with a user and password: exit 2 naming XTS_API_ROOT, for a refresh and for
    check-config, before anything is sent; the user and password are not shown."""
    with_credentials(project, "XTS_API_ROOT")

    runs = [project.run(), project.run("check-config"), project.run("status")]

    assert [run.code for run in runs] == [2, 2, 2], [run.output for run in runs]
    for run in runs:
        assert "XTS_API_ROOT must not hold a user or password" in run.stdout
    assert project.sim.requests() == []
    assert_credentials_unseen(project, *runs)


def test_failures_naming_a_url_never_show_its_credentials(project: Project) -> None:
    """Where a failure names a URL (a host lookup XTS refused, a stored token for another API
    root, a health check whose server fails), the URL is shown without its user and
    password."""
    project.with_marketdata().with_telegram()
    with_healthcheck(project)
    with_credentials(project, "TELEGRAM_API_URL", "HEALTHCHECK_URL")
    assert project.run().code == 0
    project.settings["XTS_HOSTLOOKUP_URL"] = f"{project.sim.url}/hostlookup"
    with_credentials(project, "XTS_HOSTLOOKUP_URL")
    project.sim.add_fault("hostlookup", Fault.xts_error("e-hostlookup-0001", "No host", 200))

    lookup = project.run()

    assert lookup.code == 3, lookup.output
    assert f"The host lookup at {project.sim.url}/hostlookup failed" in lookup.stdout
    del project.settings["XTS_HOSTLOOKUP_URL"]
    user, password = CREDENTIALS["XTS_API_ROOT"]
    host = project.sim.url.split("://", 1)[1]
    data = json.loads(project.md_token_file.read_text(encoding="utf-8"))
    data["api_root"] = f"http://{user}:{password}@{host}/old"  # written by an older version
    project.md_token_file.write_text(json.dumps(data), encoding="utf-8")

    moved = project.run("status", "--json")

    messages = [entry["message"] for entry in json.loads(moved.stdout)["sessions"]]
    assert moved.code == 1
    moved_root = f"stored token is for http://{host}/old, not XTS_API_ROOT={project.sim.url}"
    assert moved_root in messages[1]
    project.sim.add_fault("unknown", Fault.html(503), times=3)

    failing = project.run("check-config")

    assert failing.code == 3, failing.output
    assert_credentials_unseen(project, lookup, moved, failing)
