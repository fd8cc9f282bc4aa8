"""Alerts and pings that arrive: Telegram and the closing health-check ping, retried.

A failed refresh at 09:00 is announced by one Telegram message and one closing ping; these
tests make the simulator's fake Bot API and healthchecks.io fail the first attempts (a reset
connection, a 502, a 429 asking to wait), refuse (a revoked bot token, an unknown chat, an
unknown check) or never answer, and check that the message still arrives exactly once, that a
refusal is said once with the setting to fix, that no delivery holds the run longer than its
budget or starts a retry after XTS_DEADLINE, and that none changes the exit code. The real
script runs cron-style against the simulator; nothing is mocked. Every run is scanned for the
fake secrets (conftest), and every message and ping body here too.
"""

from __future__ import annotations

import json
import re
import socket
import time
from datetime import timedelta

import pytest
from conftest import (
    BOT_TOKEN,
    INTERACTIVE_SECRET,
    USER_ID,
    Project,
    Run,
    child_today,
    ping_paths,
    telegram_texts,
    token_json,
    with_healthcheck,
)

from xts_refresher.alerts import PING_BUDGET_SECONDS, TELEGRAM_BUDGET_SECONDS
from xts_refresher.simulator import Fault, XtsSimulator

JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


REFUSED_LOGIN = Fault.xts_error(
    "e-user-0005", "Invalid credentials. Please check your App Key and Secret Key."
)


def assert_nothing_secret_left(project: Project) -> None:
    """No secret or issued token in any Telegram message or ping (path, query, body)."""
    texts = [r.body.decode("utf-8", "replace") for r in project.sim.requests("telegram")]
    for ping in project.sim.requests("healthcheck"):
        texts += [ping.path, json.dumps(ping.query), ping.body.decode("utf-8", "replace")]
    for secret in project.secrets():
        for text in texts:
            assert secret not in text, f"a secret left the machine: {secret[:8]}..."


def refresh_once(project: Project) -> str:
    """A first, successful refresh; the token it saved (a later failure must keep it)."""
    first = project.run()
    assert first.code == 0, first.output
    project.sim.clear()
    token = token_json(project.token_file)["token"]
    assert isinstance(token, str)
    return token


def warnings_about(run: Run, what: str) -> list[str]:
    """The console's ⚠ lines about ``what``."""
    return [line for line in run.stdout.splitlines() if line.startswith("⚠") and what in line]


# -- Telegram -------------------------------------------------------------------------------------


def test_a_failure_message_whose_first_attempts_fail_arrives_once(project: Project) -> None:
    """A failed refresh's message meets a reset connection, a 502 and a 429 asking to wait 1 s:
    it is sent four times and reaches the chat once, after waiting what Telegram asked; the
    run's exit code is the refresh's, and the previous token file is kept."""
    project.with_telegram(notify="failure")
    previous = refresh_once(project)
    project.sim.add_fault("interactive_login", REFUSED_LOGIN)
    project.sim.add_fault("telegram", Fault.connection_reset())
    project.sim.add_fault("telegram", Fault.html(502))
    project.sim.add_fault("telegram", Fault.telegram_flood(retry_after=1))

    run = project.run()

    assert run.code == 1, run.output
    assert token_json(project.token_file)["token"] == previous
    assert project.sim.count("interactive_login") == 1  # a refusal is not retried either
    attempts = project.sim.requests("telegram")
    assert len(attempts) == 4
    assert len({a.body for a in attempts}) == 1, "every attempt sends the same message"
    (delivered,) = project.sim.telegram_messages()
    assert delivered.json["chat_id"] == "4242"
    assert "XTS token refresh FAILED" in delivered.json["text"]
    assert "App Key" in delivered.json["text"]
    assert attempts[3].at - attempts[2].at >= 1.0, "Telegram's retry_after was not waited"
    retries = warnings_about(run, "Telegram notification to chat 4242 failed")
    assert [line.split("), ")[1].split(";")[0] for line in retries] == [
        "attempt 1 of 4",
        "attempt 2 of 4",
        "attempt 3 of 4",
    ]
    assert "(the connection was reset)" in retries[0]
    assert "(HTTP 502)" in retries[1]
    assert "(HTTP 429: Too Many Requests: retry after 1)" in retries[2]
    assert "was not delivered" not in run.output
    assert "✓ The Telegram notification to chat 4242 got through on attempt 4 of 4." in run.stdout
    assert run.stdout.rstrip().splitlines()[-1].startswith("✗")
    assert_nothing_secret_left(project)


def test_a_429_asking_longer_than_the_budget_is_not_waited_for(project: Project) -> None:
    """Flood control asking for 30 s, more than the 20 s budget (and less than the 60 s
    XTS_DEADLINE): one request, a warning that says why it was not retried, and the run is
    not held."""
    project.with_telegram().sim.add_fault("telegram", Fault.telegram_flood(retry_after=30))

    started = time.monotonic()
    run = project.run()
    elapsed = time.monotonic() - started

    assert run.code == 0, run.output
    assert elapsed < 10, f"the run took {elapsed:.1f} s"
    assert project.sim.count("telegram") == 1
    assert project.sim.telegram_messages() == []
    (warning,) = warnings_about(run, "Telegram notification")
    assert "(asked to wait 30 s)" in warning
    assert f"its {TELEGRAM_BUDGET_SECONDS:g} s budget leaves no time for another try" in warning
    assert warning.endswith("it was not delivered.")
    assert "Telegram notification" in run.log


def test_a_refused_bot_token_is_not_retried_and_named_in_the_log(project: Project) -> None:
    """A bot token Telegram does not know (401) is asked once, and the line names
    TELEGRAM_TOKEN, in the console and the log, without the token itself (conftest scans)."""
    project.with_telegram().sim.refuse_bot_token(BOT_TOKEN)

    run = project.run()

    assert run.code == 0, run.output
    assert project.sim.count("telegram") == 1
    assert project.sim.telegram_messages() == []
    (warning,) = warnings_about(run, "Telegram notification")
    assert "was refused (HTTP 401: Unauthorized): it was not delivered." in warning
    assert "Check TELEGRAM_TOKEN" in warning
    assert "Check TELEGRAM_TOKEN" in run.log
    assert "retrying" not in run.output
    assert BOT_TOKEN.split(":")[1] not in run.output + run.log


def test_an_unknown_chat_is_not_retried_and_names_telegram_chat_id(project: Project) -> None:
    """A chat Telegram cannot find (400) is asked once; the line names TELEGRAM_CHAT_ID."""
    project.with_telegram().sim.forget_chat("4242")

    run = project.run()

    assert run.code == 0, run.output
    assert project.sim.count("telegram") == 1
    assert project.sim.telegram_messages() == []
    (warning,) = warnings_about(run, "Telegram notification")
    assert "(HTTP 400: Bad Request: chat not found)" in warning
    assert "Check TELEGRAM_CHAT_ID" in warning
    assert "retrying" not in run.output


def test_several_chats_each_get_the_message_once(project: Project) -> None:
    """TELEGRAM_CHAT_ID lists chats separated by commas, with spaces, an empty item and a
    repeated ID: each chat gets the run's message once, the same text, and none names a secret;
    a chat Telegram cannot find is said once and costs the other chat nothing."""
    project.with_telegram().settings["TELEGRAM_CHAT_ID"] = " 4242 , -1001234567890,,4242 ,"

    run = project.run()

    assert run.code == 0, run.output
    messages = project.sim.telegram_messages()
    assert sorted(m.json["chat_id"] for m in messages) == ["-1001234567890", "4242"]
    assert len({m.json["text"] for m in messages}) == 1
    assert messages[0].json["text"].startswith("✅ XTS token refreshed on ")
    assert project.sim.count("telegram") == 2
    assert_nothing_secret_left(project)

    project.sim.clear()
    project.sim.forget_chat("-1001234567890")

    refused = project.run()

    assert refused.code == 0, refused.output
    (delivered,) = project.sim.telegram_messages()[len(messages) :]
    assert delivered.json["chat_id"] == "4242"
    assert project.sim.count("telegram") == 2  # the refusal is not retried
    (warning,) = warnings_about(refused, "Telegram notification")
    assert warning.startswith("⚠ The Telegram notification to chat -1001234567890 was refused")
    assert_nothing_secret_left(project)


def test_chat_ids_separated_by_spaces_are_a_setting_to_fix(project: Project) -> None:
    """Chat IDs separated by spaces instead of commas: exit 2 before any login, naming
    TELEGRAM_CHAT_ID and the separator; nothing is sent to Telegram."""
    project.with_telegram().settings["TELEGRAM_CHAT_ID"] = "4242 777"

    run = project.run()

    assert run.code == 2, run.output
    assert "TELEGRAM_CHAT_ID must be chat IDs separated by commas" in run.stdout
    assert project.sim.count("interactive_login") == 0
    assert project.sim.count("telegram") == 0


@pytest.mark.slow
def test_a_telegram_that_never_answers_costs_the_run_at_most_its_budget(
    project: Project,
) -> None:
    """Telegram accepts the connection and never answers: the second attempt gets what is
    left of the 20 s budget, and no third one starts; the run exits 0 soon after."""
    project.with_telegram().sim.add_fault("telegram", Fault.hang(60), times=5)

    started = time.monotonic()
    run = project.run()
    elapsed = time.monotonic() - started

    assert run.code == 0, run.output
    assert elapsed < TELEGRAM_BUDGET_SECONDS + 5, f"the run took {elapsed:.1f} s"
    assert project.sim.count("telegram") == 2
    assert project.sim.telegram_messages() == []
    warnings = warnings_about(run, "Telegram notification")
    assert "(no answer within 10 s), attempt 1 of 4; retrying" in warnings[0]
    assert "leaves no time for another try: it was not delivered." in warnings[-1]
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]


@pytest.mark.slow
def test_no_retry_starts_after_the_runs_deadline(project: Project) -> None:
    """A broker that hangs uses up XTS_DEADLINE=2: the failure is still announced (a first
    attempt always goes), but the 502 it meets is not retried, and the line says why."""
    project.with_telegram()
    project.settings.update(XTS_DEADLINE="2", XTS_RETRIES="0")
    project.sim.add_fault("interactive_login", Fault.hang(30))
    project.sim.add_fault("telegram", Fault.html(502), times=3)

    started = time.monotonic()
    run = project.run()
    elapsed = time.monotonic() - started

    assert run.code == 3, run.output
    assert elapsed < 8, f"the run took {elapsed:.1f} s"
    assert not project.token_file.exists()
    assert project.sim.count("telegram") == 1
    (warning,) = warnings_about(run, "Telegram notification")
    assert "(HTTP 502)" in warning
    assert "XTS_DEADLINE (2 s) leaves no time for another try" in warning


def test_an_answer_nested_too_deep_for_the_parser_is_retried_not_a_crash(
    project: Project,
) -> None:
    """A 200 whose body is JSON nested 200,000 deep (the parser gives up with a RecursionError)
    is not a Bot API answer: retried, delivered once, and the run's exit code and closing ping
    are its own."""
    project.with_telegram()
    prefix = with_healthcheck(project)
    project.sim.add_fault("telegram", Fault.raw(b"[" * 200_000, 200))

    run = project.run()

    assert run.code == 0, run.output
    assert project.sim.count("telegram") == 2
    assert len(project.sim.telegram_messages()) == 1
    (retry,) = warnings_about(run, "retrying")
    assert "(HTTP 200, but not a Bot API answer), attempt 1 of 4" in retry
    assert ping_paths(project) == [f"{prefix}/start", f"{prefix}/0"]
    assert "Unexpected" not in run.output
    assert "Traceback" not in run.output + run.log


def test_a_runaway_answer_is_not_read_past_a_mebibyte(project: Project) -> None:
    """A 200 of 5 MiB (a misrouted download instead of the Bot API) is read to 1 MiB only,
    then given up as a transient failure: retried, delivered once."""
    project.with_telegram().sim.add_fault("telegram", Fault.raw(b"x" * (5 * 1024 * 1024), 200))

    run = project.run()

    assert run.code == 0, run.output
    assert len(project.sim.telegram_messages()) == 1
    (retry,) = warnings_about(run, "retrying")
    assert "(an answer larger than 1048576 bytes), attempt 1 of 4" in retry


def test_a_pages_long_xts_description_is_cut_in_the_message_but_not_its_hint(
    project: Project,
) -> None:
    """A failure whose XTS description is 9,000 characters long: the message keeps its first
    500 characters, says it was cut, and still ends with what to do; the log has it whole."""
    project.with_telegram()
    project.sim.add_fault("interactive_login", Fault.xts_error("e-user-0005", "Invalid. " * 1000))

    run = project.run()

    assert run.code == 1, run.output
    (message,) = project.sim.telegram_messages()
    text = message.json["text"]
    assert 600 < len(text) < 1500
    assert text.startswith("❌ XTS token refresh FAILED")
    assert "… (cut; the log has it whole) Fix XTS_INTERACTIVE_API_KEY and" in text
    assert text.endswith("then run again.")
    assert "Invalid. " * 900 in run.log
    assert project.sim.count("telegram") == 1


# -- the closing health-check ping ---------------------------------------------------------------


def test_the_closing_ping_is_retried_and_arrives_once(project: Project) -> None:
    """The start ping meets a reset (one try, a warning); the closing ``/1`` meets a 502 and a
    reset and gets through on the third attempt, each attempt with the same rid and body; the
    exit code is the refresh's."""
    prefix = with_healthcheck(project)
    project.sim.add_fault("interactive_login", REFUSED_LOGIN)
    project.sim.add_fault("healthcheck", Fault.connection_reset())
    project.sim.add_fault("healthcheck", Fault.html(502))
    project.sim.add_fault("healthcheck", Fault.connection_reset())

    run = project.run()

    assert run.code == 1, run.output
    assert ping_paths(project) == [f"{prefix}/start", *[f"{prefix}/1"] * 3]
    start, *closing = project.sim.requests("healthcheck")
    assert {ping.query["rid"] for ping in closing} == {start.query["rid"]}
    assert len({ping.body for ping in closing}) == 1
    assert closing[0].method == "POST"
    assert "App Key" in closing[0].body.decode("utf-8")
    assert "The health-check ping /start failed (the connection was reset): it was not " in (
        run.stdout
    )
    retries = warnings_about(run, "health-check ping /1 failed")
    assert len(retries) == 2
    assert "(HTTP 502), attempt 1 of 4; retrying" in retries[0]
    assert "(the connection was reset), attempt 2 of 4; retrying" in retries[1]
    assert "✓ The health-check ping /1 got through on attempt 3 of 4." in run.stdout
    assert_nothing_secret_left(project)


def test_a_closing_ping_that_keeps_failing_is_logged_and_changes_nothing(
    project: Project,
) -> None:
    """A check that answers 503 every time: four closing attempts, then a warning in the console
    and the log; the run still exits 0 with its token saved."""
    prefix = with_healthcheck(project)
    project.sim.add_fault("healthcheck", Fault.html(503), times=10)

    started = time.monotonic()
    run = project.run()
    elapsed = time.monotonic() - started

    assert run.code == 0, run.output
    assert elapsed < PING_BUDGET_SECONDS, f"the run took {elapsed:.1f} s"
    assert ping_paths(project) == [f"{prefix}/start", *[f"{prefix}/0"] * 4]
    final = "The health-check ping /0 failed (HTTP 503) after 4 attempts: it was not delivered."
    assert final in run.stdout
    assert final in run.log
    assert run.stdout.rstrip().splitlines()[-1].startswith("✓")
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]


def test_a_refused_ping_is_not_retried_and_names_healthcheck_url(project: Project) -> None:
    """A check that does not exist (404) is pinged once at the start and once at the end, and
    the line names HEALTHCHECK_URL."""
    prefix = with_healthcheck(project)
    project.sim.add_fault("healthcheck", Fault.raw(b"not found", 404, "text/plain"), times=5)

    run = project.run()

    assert run.code == 0, run.output
    assert ping_paths(project) == [f"{prefix}/start", f"{prefix}/0"]
    refused = warnings_about(run, "was refused (HTTP 404)")
    assert len(refused) == 2
    assert all("Check HEALTHCHECK_URL" in line for line in refused)
    assert "retrying" not in run.output


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirected_telegram_message_is_refused_not_followed(
    project: Project, status: int
) -> None:
    """The Bot API answers sendMessage with a redirect to another server: it is not followed
    (the server it names receives nothing: not the bot token, not the message), not retried,
    and the ⚠ line names TELEGRAM_API_URL; the exit code is the refresh's."""
    project.with_telegram(notify="failure")
    refresh_once(project)
    project.sim.add_fault("interactive_login", REFUSED_LOGIN)
    with XtsSimulator() as elsewhere:
        location = f"{elsewhere.url}/bot{BOT_TOKEN}/sendMessage"
        project.sim.add_fault("telegram", Fault.redirect(location, status), times=4)

        run = project.run()

        assert elsewhere.requests() == []
    assert run.code == 1, run.output
    assert project.sim.count("telegram") == 1
    assert project.sim.telegram_messages() == []
    (line,) = warnings_about(run, "Telegram notification")
    assert f"was refused (HTTP {status}: a redirect to {elsewhere.url}/" in line
    assert "Check TELEGRAM_API_URL" in line
    assert "retrying" not in run.output
    assert_nothing_secret_left(project)


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirected_ping_is_refused_not_followed(project: Project, status: int) -> None:
    """The health check answers its pings with a redirect: neither ping is followed (the
    server it names receives nothing, not the run's output), nor retried; each ⚠ line names
    HEALTHCHECK_URL; the run still exits 0."""
    prefix = with_healthcheck(project)
    with XtsSimulator() as elsewhere:
        project.sim.add_fault("healthcheck", Fault.redirect(f"{elsewhere.url}/ping/x", status), 5)

        run = project.run()

        assert elsewhere.requests() == []
    assert run.code == 0, run.output
    assert ping_paths(project) == [f"{prefix}/start", f"{prefix}/0"]
    refused = warnings_about(run, f"was refused (HTTP {status}: a redirect to")
    assert len(refused) == 2
    assert all("Check HEALTHCHECK_URL" in line for line in refused)
    assert "retrying" not in run.output


# -- which runs send a message, and what it says ------------------------------------------------


@pytest.mark.parametrize(("mode", "expected"), [("all", 1), ("failure", 0)])
def test_telegram_on_success_follows_telegram_notify(
    project: Project, mode: str, expected: int
) -> None:
    """A successful refresh sends one message (user, expiry, no secret or token) with
    ``TELEGRAM_NOTIFY=all`` and none with ``failure``."""
    project.with_marketdata().with_telegram(mode)

    run = project.run()

    assert run.code == 0
    texts = telegram_texts(project)
    assert len(texts) == expected
    for request in project.sim.requests("telegram"):
        assert request.json["chat_id"] == "4242"
    if texts:
        assert texts[0].startswith("✅ XTS token refreshed")
        assert f"interactive: user {USER_ID}, expires " in texts[0]
        assert f"market-data: user {USER_ID}, expires " in texts[0]
        assert not JWT_SHAPE.search(texts[0])


def test_telegram_notify_off_sends_nothing_whatever_the_outcome(project: Project) -> None:
    """``TELEGRAM_NOTIFY=off`` with a bot token and chat set: no request reaches the Bot API
    after a success, after a refused login (exit 1, the token kept) or from check-config
    (which says nothing of Telegram); the exit codes are the runs' own."""
    project.with_telegram(notify="off")
    first = project.run()
    assert first.code == 0, first.output
    previous = token_json(project.token_file)["token"]
    project.sim.add_fault("interactive_login", Fault.xts_error("e-user-0005", "Invalid."))
    refused = project.run()
    check = project.run("check-config")

    bot_api = [r.path for r in project.sim.requests() if r.path.startswith("/bot")]
    assert bot_api == [], "TELEGRAM_NOTIFY=off must keep every run off the Bot API"
    assert refused.code == 1, refused.output
    assert token_json(project.token_file)["token"] == previous
    assert check.code == 0, check.output
    assert "Telegram" not in check.stdout


def test_telegram_notify_failure_still_sends_a_success_that_warns(project: Project) -> None:
    """``TELEGRAM_NOTIFY=failure`` means failures and warnings: a successful refresh whose
    market-data app key expires in 3 days sends one message, holding the warning."""
    project.with_marketdata().with_telegram("failure")
    expiry = child_today() + timedelta(days=3)
    project.sim.application_expiry_date = f"{expiry:%d-%m-%Y}"

    run = project.run()

    assert run.code == 0, run.output
    (text,) = telegram_texts(project)
    assert "The market-data app key expires in 3 days" in text


def test_telegram_messages_name_the_host_without_a_label(project: Project) -> None:
    """Without XTS_NOTIFY_LABEL, a message names the machine by its host name."""
    project.with_telegram("all")

    assert project.run().code == 0

    (text,) = telegram_texts(project)
    assert text.startswith(f"✅ XTS token refreshed on {socket.gethostname()}")


@pytest.mark.parametrize("mode", ["all", "failure"])
def test_telegram_reports_a_refused_login_once(project: Project, mode: str) -> None:
    """A refused login is exit 1 and one Telegram message under either mode, quoting XTS's code
    and description (never the secret); the previous token file stays byte-identical."""
    assert project.run().code == 0
    before = project.token_file.read_bytes()
    project.with_telegram(mode)
    refusal = Fault.xts_error("e-user-0005", "Invalid credentials. Please check your App Key.")
    project.sim.add_fault("interactive_login", refusal)

    run = project.run()

    assert run.code == 1
    assert "e-user-0005" in run.stdout
    assert project.sim.count("interactive_login") == 2
    assert project.token_file.read_bytes() == before
    (text,) = telegram_texts(project)
    assert "FAILED" in text
    assert "exit code 1" in text
    assert "e-user-0005" in text
    assert INTERACTIVE_SECRET not in text


def test_telegram_messages_name_the_machine_by_its_label(project: Project) -> None:
    """XTS_NOTIFY_LABEL names the machine in every message (default: the host name), so an
    alert in a group of many VPSes says where it comes from."""
    project.with_telegram("all").settings["XTS_NOTIFY_LABEL"] = "vps-mumbai-2"
    assert project.run().code == 0
    project.settings["XTS_INTERACTIVE_API_SECRET"] = "is-FAKE-wrong-secret-Lb11"
    assert project.run().code == 1

    success, failure = telegram_texts(project)
    assert success.startswith("✅ XTS token refreshed on vps-mumbai-2")
    assert failure.startswith("❌ XTS token refresh FAILED on vps-mumbai-2 (exit code 1)")
    assert "Fix XTS_INTERACTIVE_API_KEY" in failure  # what failed, then what to do
