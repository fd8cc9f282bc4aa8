"""``refresh``'s options: ``--if-needed`` (and its window, ``--renew-before``) and ``--verify``,
alone and together.

``--if-needed`` keeps every stored token that will do for the day and logs in for the others;
``--verify`` puts each new token to XTS after the logins; together they also put each stored
token to XTS before keeping it, and renew one XTS rejects (a broker restart) without touching
one it accepts. Each test runs the real script as cron does against the simulator and checks
the exit code, the lines, the logins and checks XTS received, and the token files' bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    USER_ID,
    Project,
    newest_token,
    telegram_texts,
    token_json,
    xts_routes,
)

from xts_refresher.simulator import Fault


def edit_token_file(path: Path, **changes: object) -> None:
    """Change fields of a token file in place (keeping its mode)."""
    data = token_json(path)
    data.update(changes)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _missing(project: Project) -> None:
    pass


def _expiring(project: Project) -> None:
    project.sim.token_lifetime = 5400  # inside --if-needed's 2 h, past the 1 h of a wrong clock
    assert project.run().code == 0
    project.sim.token_lifetime = 86400


def _other_user(project: Project) -> None:
    assert project.run().code == 0
    edit_token_file(project.token_file, userID="ZZ99")


def _other_root(project: Project) -> None:
    assert project.run().code == 0
    edit_token_file(project.token_file, api_root="https://ttblaze.iifl.com")


def _corrupt(project: Project) -> None:
    project.token_file.write_text('{"token": ', encoding="utf-8")


# -- refresh --if-needed ------------------------------------------------------------------------


def test_if_needed_keeps_fresh_tokens_without_logging_in_or_notifying(project: Project) -> None:
    """With fresh tokens for the configured user and root, ``--if-needed`` sends no login,
    leaves both files byte-identical, exits 0 and sends no Telegram message."""
    project.with_marketdata().with_telegram()
    assert project.run().code == 0
    assert len(telegram_texts(project)) == 1
    files = (project.token_file, project.md_token_file)
    before = [path.read_bytes() for path in files]
    project.sim.clear()

    run = project.run("--if-needed")

    assert run.code == 0
    assert project.sim.requests() == []
    assert [path.read_bytes() for path in files] == before
    assert run.stdout.count("no login needed") == 2
    assert "✓ Every configured session holds a fresh token" in run.stdout
    assert "still valid until" in run.log


@pytest.mark.parametrize(
    ("prepare", "reason"),
    [
        (_missing, "the stored token is missing"),
        (_expiring, "the stored token expires in 1h 29m"),
        (_other_user, "the stored token is for user ZZ99"),
        (_other_root, "the stored token is for https://ttblaze.iifl.com"),
        (_corrupt, "the stored token is corrupt"),
    ],
    ids=["missing", "expiring", "other-user", "other-root", "corrupt"],
)
def test_if_needed_logs_in_when_the_stored_token_will_not_do(
    project: Project, prepare: Callable[[Project], None], reason: str
) -> None:
    """``--if-needed`` logs in exactly once, says why, and saves the new token when the stored
    one is missing, expires within the 2 h window, is for another user or another root, or is
    unreadable."""
    prepare(project)
    logins_before = project.sim.count("interactive_login")

    run = project.run("--if-needed")

    assert run.code == 0, run.output
    assert project.sim.count("interactive_login") == logins_before + 1
    assert f"Logging in to the interactive session: {reason}" in run.stdout
    stored = token_json(project.token_file)
    assert stored["token"] == newest_token(project)
    assert stored["userID"] == USER_ID
    assert stored["api_root"] == project.sim.url


def test_renew_before_sets_the_window(project: Project) -> None:
    """``--renew-before`` moves the window: a 24 h token is kept under ``23h`` but renewed
    under ``30h``, and the default command accepts the options without naming ``refresh``."""
    assert project.run().code == 0
    first = project.token_file.read_bytes()

    kept = project.run("--if-needed", "--renew-before", "23h")

    assert kept.code == 0
    assert project.sim.count("interactive_login") == 1
    assert project.token_file.read_bytes() == first

    renewed = project.run("refresh", "--if-needed", "--renew-before", "30h")

    assert renewed.code == 0
    assert project.sim.count("interactive_login") == 2
    assert token_json(project.token_file)["token"] == newest_token(project)
    assert "the stored token expires in 23h" in renewed.stdout


@pytest.mark.parametrize(("minutes", "renewed"), [(100, True), (140, False)])
def test_the_default_renewal_window_is_2_hours(
    project: Project, minutes: int, renewed: bool
) -> None:
    """Without ``--renew-before`` the window is 2 h (``--help``, README): ``--if-needed``
    renews a token with 100 minutes left and keeps one with 140; ``status`` calls the first
    ``expiring`` and the second ``fresh``."""
    project.sim.token_lifetime = minutes * 60
    assert project.run().code == 0
    before = project.token_file.read_bytes()

    status = project.run("status", "--json")
    run = project.run("--if-needed")

    assert run.code == 0, run.output
    state = json.loads(status.stdout)["sessions"][0]["state"]
    assert state == ("expiring" if renewed else "fresh")
    assert project.sim.count("interactive_login") == (2 if renewed else 1)
    assert (project.token_file.read_bytes() != before) is renewed


@pytest.mark.parametrize("value", ["2 hours", "abc", "h", ""])
def test_a_bad_renew_before_is_a_usage_error(project: Project, value: str) -> None:
    """An unreadable ``--renew-before`` is exit 2 with a message naming the option, before any
    request is sent; a previous token file stays byte-identical."""
    assert project.run().code == 0
    before = project.token_file.read_bytes()
    project.sim.clear()

    run = project.run("--if-needed", "--renew-before", value)

    assert run.code == 2
    assert "--renew-before" in run.stderr
    assert project.sim.requests() == []
    assert project.token_file.read_bytes() == before


@pytest.mark.parametrize("args", [["--renew-before", "3h"], ["refresh", "--renew-before", "3h"]])
def test_renew_before_without_if_needed_is_a_usage_error(project: Project, args: list[str]) -> None:
    """``--renew-before`` only sets the window of ``--if-needed``: without it the run would log
    in anyway, so it is exit 2 in argparse's words, saying to add ``--if-needed``, before any
    request; the previous token file stays byte-identical."""
    assert project.run().code == 0
    before = project.token_file.read_bytes()
    project.sim.clear()

    run = project.run(*args)

    assert run.code == 2, run.output
    assert "error: argument --renew-before: applies only with --if-needed" in run.stderr
    assert "add --if-needed" in run.stderr
    assert run.stderr.startswith("usage: ")
    assert project.sim.requests() == []
    assert project.token_file.read_bytes() == before


# -- refresh --verify ---------------------------------------------------------------------------


def test_verify_checks_each_new_token_after_the_logins(project: Project) -> None:
    """``refresh --verify`` logs in to both sessions, then checks the saved tokens in that
    order: a balance request with the new interactive token (clientID = the user), then a
    clientConfig request with the new market-data token; exit 0."""
    project.with_marketdata()

    run = project.run("refresh", "--verify")

    assert run.code == 0, run.output
    assert xts_routes(project) == [
        "interactive_login",
        "marketdata_login",
        "interactive_balance",
        "marketdata_config",
    ]
    (balance,) = project.sim.requests("interactive_balance")
    assert balance.headers["authorization"] == token_json(project.token_file)["token"]
    assert balance.headers["authorization"] == newest_token(project)
    assert balance.query == {"clientID": USER_ID}
    (config,) = project.sim.requests("marketdata_config")
    assert config.headers["authorization"] == newest_token(project, "marketdata")
    assert "✓ The new XTS token works: accepted." in run.stdout
    assert "✓ The new XTS market-data token works: accepted." in run.stdout


def test_verify_exits_3_and_notifies_when_xts_rejects_the_new_token(project: Project) -> None:
    """A new token that XTS answers "Invalid Token" (HTTP 400, e-session-0007) is exit 3 with a
    ✗ line and one Telegram failure message; the token file is still saved (the login did
    happen, and the old token died with it)."""
    project.with_telegram()
    invalid = Fault.xts_error("e-session-0007", "Invalid Token", status=400)
    project.sim.add_fault("interactive_balance", invalid, times=3)

    run = project.run("refresh", "--verify")

    assert run.code == 3
    assert "e-session-0007" in run.stdout
    assert run.stdout.rstrip().splitlines()[-1].startswith("✗")
    assert "XTS rejected the interactive token" in run.log
    assert token_json(project.token_file)["token"] == newest_token(project)
    assert project.sim.count("interactive_login") == 1
    assert project.sim.count("interactive_balance") >= 1
    (text,) = telegram_texts(project)
    assert "FAILED" in text
    assert "exit code 3" in text
    assert "Invalid Token" in text


# -- refresh --if-needed --verify ---------------------------------------------------------------


def logins(project: Project, session: str) -> int:
    """How many logins of ``session`` reached the simulator."""
    return project.sim.count(f"{session}_login")


def checks(project: Project, session: str) -> int:
    """How many token checks of ``session`` reached the simulator."""
    route = "interactive_balance" if session == "interactive" else "marketdata_config"
    return project.sim.count(route)


def both_refreshed(project: Project) -> tuple[bytes, bytes]:
    """Refresh both sessions; the two token files' bytes."""
    project.with_marketdata()
    run = project.run()
    assert run.code == 0, run.output
    project.sim.clear()
    return project.token_file.read_bytes(), project.md_token_file.read_bytes()


def test_if_needed_verify_renews_a_token_xts_rejects_and_keeps_the_one_it_accepts(
    project: Project,
) -> None:
    """The broker forgot the interactive token (a restart): ``--if-needed --verify`` checks both
    stored tokens, logs in to the interactive session only, saves and verifies the new token,
    and leaves the accepted market-data token (and the bot streaming with it) alone."""
    interactive_before, marketdata_before = both_refreshed(project)
    project.sim.invalidate_tokens("interactive")

    run = project.run("--if-needed", "--verify")

    assert run.code == 0, run.output
    assert logins(project, "interactive") == 1
    assert logins(project, "marketdata") == 0
    assert checks(project, "interactive") == 2  # the stored token, then the new one
    assert checks(project, "marketdata") == 1
    assert "Logging in to the interactive session: XTS rejected the interactive token" in (
        run.stdout
    )
    assert "e-session-0007" in run.stdout
    assert "XTS accepts it; no login needed" in run.stdout
    assert project.token_file.read_bytes() != interactive_before
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]
    assert project.md_token_file.read_bytes() == marketdata_before
    assert run.stdout.splitlines()[-1].startswith("✓ Every configured session holds a fresh")


def test_if_needed_verify_keeps_accepted_tokens_without_any_login(project: Project) -> None:
    """Tokens XTS accepts are kept: one check each, no login, the files byte for byte."""
    interactive_before, marketdata_before = both_refreshed(project)

    run = project.run("--if-needed", "--verify")

    assert run.code == 0, run.output
    assert logins(project, "interactive") + logins(project, "marketdata") == 0
    assert checks(project, "interactive") == checks(project, "marketdata") == 1
    assert project.token_file.read_bytes() == interactive_before
    assert project.md_token_file.read_bytes() == marketdata_before


def test_if_needed_verify_with_xts_unable_to_answer_keeps_the_token_and_exits_3(
    project: Project,
) -> None:
    """When XTS cannot answer the check (502 pages), the stored token is kept, no login is
    sent (it would likely fail too, and cut off a streaming bot), and the run exits 3."""
    before = project.run()
    assert before.code == 0
    previous = project.token_file.read_bytes()
    project.sim.clear()
    project.sim.add_fault("interactive_balance", Fault.html(502), 10)

    run = project.run("--if-needed", "--verify")

    assert run.code == 3, run.output
    assert logins(project, "interactive") == 0
    assert "could not be checked with XTS" in run.stdout
    assert "it was kept, and no login was sent" in run.stdout
    assert run.stdout.splitlines()[-1].startswith("✗ Token refresh failed (exit code 3)")
    assert project.token_file.read_bytes() == previous


@pytest.mark.parametrize("status", [400, 200])
def test_if_needed_verify_renews_a_token_xts_answers_e_token(project: Project, status: int) -> None:
    """A stored token whose check XTS answers ``e-token-0002`` ("Please Provide token to
    Authenticate", with HTTP 400 or 200; no "Invalid Token" in the words) counts as rejected:
    ``--if-needed --verify`` logs in again and saves the new token, exit 0."""
    assert project.run().code == 0
    old = token_json(project.token_file)["token"]
    project.sim.clear()
    project.sim.add_fault(
        "interactive_balance",
        Fault.xts_error("e-token-0002", "Please Provide token to Authenticate", status=status),
    )

    run = project.run("refresh", "--if-needed", "--verify")

    assert run.code == 0, run.output
    checked_then_renewed = ["interactive_balance", "interactive_login", "interactive_balance"]
    assert xts_routes(project) == checked_then_renewed
    assert "e-token-0002" in run.stdout
    saved = token_json(project.token_file)["token"]
    assert saved == newest_token(project)
    assert saved != old


def test_messages_say_market_data_not_marketdata(project: Project) -> None:
    """Console lines name the session "market-data" (file names and the JSON keep their
    identifiers): a refresh, a refused market-data login, and a rejected stored token."""
    project.with_marketdata()
    first = project.run()
    assert first.code == 0
    project.sim.invalidate_tokens("marketdata")
    renewed = project.run("--if-needed", "--verify")
    assert renewed.code == 0, renewed.output
    project.settings["XTS_MARKETDATA_API_SECRET"] = "ms-FAKE-wrong-secret-Kq71"
    refused = project.run()
    assert refused.code == 1
    assert "XTS refused the market-data login" in refused.stdout
    assert "Logging in to the market-data session: XTS rejected the market-data token" in (
        renewed.stdout
    )
    for run in (first, renewed, refused):
        text = run.stdout.replace(str(project.md_token_file), "FILE")
        text = text.replace("XTS_MARKETDATA", "VARIABLE")
        assert "marketdata" not in text, text
