"""Text a server wrote is shown with its control characters replaced.

XTS descriptions and codes, Bot API descriptions, host-lookup answers: a server writes them, and
the refresher shows them on a terminal, in the log and in Telegram. An ANSI escape in them
could clear the operator's screen, recolour it, or rewrite a line (a carriage return, then
"✓ ... successfully"). Each test makes the simulator send such text from one place, runs the
real script cron-style, and checks that no control character (C0 but the line feed, DEL, C1)
reaches the console, the log or a Telegram message, while the words themselves still do.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from conftest import Project, Run, with_healthcheck

from xts_refresher.simulator import Fault

# Clear the screen, turn red, ring the bell, go back to the line's start and print a fake
# success; then a C1 CSI (0x9b) and DEL.
HOSTILE = "\x1b[2J\x1b[31mAccount blocked\x07\r✓ XTS token refreshed successfully!\x9b31m\x7f"
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def xts_login_error(project: Project) -> str:
    """XTS refuses the login with the hostile text in its code, description and field errors."""
    errors = [{"field": ["appKey"], "messages": [HOSTILE], "types": ["any.invalid"]}]
    project.sim.add_fault(
        "interactive_login",
        Fault.xts_error("e-user-\x1b[0m0005", HOSTILE, 400, {"errors": errors}),
    )
    return "refresh"


def hostlookup_error(project: Project) -> str:
    """The host lookup answers an XTS error with the hostile text."""
    project.settings["XTS_HOSTLOOKUP_URL"] = f"{project.sim.url}/hostlookup"
    project.sim.add_fault("hostlookup", Fault.xts_error("e-hostlookup-0001", HOSTILE, 200))
    return "refresh"


def token_check_error(project: Project) -> str:
    """XTS rejects the stored token under ``status --verify`` with the hostile text."""
    assert project.run().code == 0
    project.sim.add_fault("interactive_balance", Fault.xts_error("e-session-0007", HOSTILE))
    return "status --verify"


def telegram_refusal(project: Project) -> str:
    """The Bot API refuses the run's message with the hostile text as its description."""
    project.with_telegram()
    project.sim.add_fault("telegram", Fault.telegram_error(400, HOSTILE))
    return "refresh"


def telegram_names(project: Project) -> str:
    """check-config's getChat: the Bot API refuses with the hostile text."""
    project.with_telegram()
    project.sim.add_fault("telegram_getchat", Fault.telegram_error(403, HOSTILE))
    return "check-config"


SOURCES: dict[str, Callable[[Project], str]] = {
    "xts-login-error": xts_login_error,
    "hostlookup-error": hostlookup_error,
    "token-check-error": token_check_error,
    "telegram-refusal": telegram_refusal,
    "telegram-check": telegram_names,
}


def shown_texts(project: Project, run: Run) -> list[str]:
    """Everything the run showed: console, log, and the Telegram messages it sent."""
    sent = [str(r.json.get("text", "")) for r in project.sim.requests("telegram") if r.json]
    return [run.stdout, run.stderr, run.log, *sent]


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_control_characters_from_servers_never_reach_a_reader(
    project: Project, source: str
) -> None:
    """The hostile text arrives from ``source``: the run fails as it should, shows the words
    ("Account blocked"), and shows no control character; the fake success never starts a
    line."""
    command = SOURCES[source](project)
    project.sim.clear()
    if source != "telegram-refusal":
        project.with_telegram()  # the failure's message carries the text too

    run = project.run(*command.split())

    assert run.code != 0 or source == "telegram-refusal", run.output
    assert "Account blocked" in run.stdout
    for text in shown_texts(project, run):
        assert not CONTROL.search(text), repr(CONTROL.search(text))
    refreshed = 1 if source == "telegram-refusal" else 0  # that run did refresh, and says so
    assert run.stdout.splitlines().count("✓ XTS token refreshed successfully!") == refreshed
    hostile = [line for line in run.stdout.splitlines() if "Account blocked" in line]
    assert hostile and all(not line.startswith("✓") for line in hostile)


# A Location that is not UTF-8 (a C1 CSI byte, 0x9b) with escapes: requests, working out where
# the redirect leads even when told not to follow it, died on it (UnicodeDecodeError).
LOCATION = "http://elsewhere.invalid/\x1b[2J\x9b31mAccount blocked"


@pytest.mark.parametrize(
    ("route", "command", "code", "setting"),
    [
        ("interactive_login", "refresh", 3, "XTS_API_ROOT"),
        ("interactive_balance", "status --verify", 1, ""),
        ("telegram", "refresh", 0, "TELEGRAM_API_URL"),
        ("healthcheck", "refresh", 0, "HEALTHCHECK_URL"),
    ],
    ids=["xts-login", "token-check", "telegram", "health-check"],
)
def test_a_redirect_to_a_location_that_is_not_utf8_is_refused_as_any_redirect(
    project: Project, route: str, command: str, code: int, setting: str
) -> None:
    """Each server answers with a redirect whose Location holds a byte that is not UTF-8 and
    escape sequences: the redirect is refused as any other (no "Unexpected error", no exit 4),
    the setting to fix is named, and no control character reaches the console or the log."""
    project.with_telegram()
    if route == "healthcheck":
        with_healthcheck(project)
    if route == "interactive_balance":
        assert project.run().code == 0
    project.sim.add_fault(route, Fault.redirect(LOCATION, 302), times=5)

    run = project.run(*command.split())

    assert run.code == code, run.output
    assert "Unexpected error" not in run.output + run.log
    assert "UnicodeDecodeError" not in run.output + run.log
    assert "a redirect" in run.stdout, run.stdout
    assert setting in run.stdout
    for text in (run.stdout, run.stderr, run.log):
        assert not CONTROL.search(text), repr(CONTROL.search(text))
