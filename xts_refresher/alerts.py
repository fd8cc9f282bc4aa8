"""Delivering the run's news: Telegram messages and health-check pings, retried within budgets.

A failed refresh at 09:00 is announced by one Telegram message and one closing ping; a glitch at
that moment (a reset connection, a 5xx, Telegram's 429 when a group hears from many bots at
market open) must not silence it. So a delivery that failed transiently is tried again, with the
run's backoff (``XTS_RETRY_BACKOFF``, doubling, with jitter, at least the ``retry_after`` Telegram
asks for), within a budget of its own, and no retry starts after the run's deadline: a Telegram
outage cannot hold a cron run. A refusal (a bad bot token, an unknown chat or check) is never
retried; it is logged once, with the setting to fix. Nothing here changes a run's exit code, and
no line names the bot token (it is part of every Bot API URL, and no URL of it is logged).

Only runs with Telegram or a health check import this module.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urljoin, urlsplit

import requests

from .answers import one_line
from .client import explain_transport_failure, read_capped, request_once
from .console import PING_BODY_BYTES
from .errors import NotificationRefusedError, NotificationUnavailableError
from .settings import TelegramSettings
from .timebox import (
    Deadline,
    Failure,
    Pacing,
    RetriesSpent,
    retry_after_seconds,
    run_within,
    seconds_text,
    with_retries,
)
from .urls import userinfo, without_credentials

if TYPE_CHECKING:
    from .console import Log

ATTEMPTS = 4  # the first try and three retries, each within the budget
TELEGRAM_ATTEMPT_SECONDS = 10.0
TELEGRAM_BUDGET_SECONDS = 20.0  # all of a run's messages, which go out side by side
PING_ATTEMPT_SECONDS = 5.0
PING_BUDGET_SECONDS = 15.0  # all of a run's closing pings, side by side
MIN_ATTEMPT_SECONDS = 1.0  # a retry starts only with at least this much time left after its wait
CHECK_SECONDS = 5.0  # check-config's questions: one try each
TLS_HINT = "see REQUESTS_CA_BUNDLE"  # these requests trust certifi's bundle, not XTS_CA_BUNDLE
TELEGRAM_MAX_CHARACTERS = 4096  # Telegram refuses a longer text ("message is too long")
CUT_NOTE = "\n… (cut here to fit Telegram: the log has every line)"
MAX_ANSWER_BYTES = 1024 * 1024  # a Bot API answer is a few hundred bytes


def deliver(
    what: str,
    attempt: Callable[[float], object],
    pacing: Pacing,
    log: Log,
    *,
    attempt_seconds: float,
    budget: Deadline,
    attempts: int = ATTEMPTS,
) -> bool:
    """Call ``attempt(timeout)`` until it returns; True when it did.

    It is tried again after a NotificationUnavailableError (or no answer within ``timeout``),
    up to ``attempts`` times, while a retry and its wait fit both in ``budget`` and before the
    run's deadline; after a NotificationRefusedError it is not. The first attempt always
    happens: a run that used up its deadline still announces why. ``what`` ("The Telegram
    notification to chat 42") starts each line this logs.
    """

    def attempt_once(number: int) -> object:
        timeout = min(attempt_seconds, budget.remaining())
        if number > 1:
            timeout = min(timeout, pacing.deadline.remaining())
        try:
            # run_within bounds the whole exchange: requests' timeout bounds each read only.
            # requests gets a second more, so that a server that does not answer is always
            # told by this bound ("no answer within N s"), never by whichever fired first.
            return run_within(timeout, functools.partial(attempt, timeout + 1))
        except TimeoutError:
            raise NotificationUnavailableError(
                f"no answer within {seconds_text(timeout)} s"
            ) from None

    try:
        with_retries(
            what,
            attempt_once,
            log,
            transient=unavailable,
            attempts=attempts,
            first_wait=pacing.first_wait,
            limits=(budget, pacing.deadline),
            spare=MIN_ATTEMPT_SECONDS,
            say_recovery=True,
        )
    except NotificationRefusedError as refusal:
        log.warning(
            "⚠ %s was refused (%s): it was not delivered. %s", what, refusal.message, refusal.hint
        )
        return False
    except RetriesSpent as spent:
        reason, retry_after = spent.failure.reason, spent.failure.retry_after
        if spent.limit is None:
            after = f" after {attempts} attempts" if attempts > 1 else ""
            log.warning("⚠ %s failed (%s)%s: it was not delivered.", what, reason, after)
        else:
            limit = (
                f"its {seconds_text(budget.seconds)} s budget"
                if spent.limit is budget
                else f"XTS_DEADLINE ({pacing.deadline.seconds:g} s)"
            )
            asked = (
                f" (asked to wait {seconds_text(retry_after)} s)" if retry_after is not None else ""
            )
            log.warning(
                "⚠ %s failed (%s)%s, and %s leaves no time for another try: it was not delivered.",
                what,
                reason,
                asked,
                limit,
            )
        return False
    except Exception as exc:  # a bug or an answer nothing foresaw: never the run's outcome
        log.warning("⚠ %s failed (unexpected %s): it was not delivered.", what, type(exc).__name__)
        return False
    return True


def unavailable(exc: Exception) -> Failure | None:
    """What the retry loop needs of ``exc`` when another attempt may mend it, else None."""
    if isinstance(exc, NotificationUnavailableError):
        return Failure(exc.message, exc.retry_after)
    return None


def side_by_side(actions: Sequence[Callable[[], object]]) -> None:
    """Run ``actions`` at once, each in its own thread, and wait for all: one chat or check
    that hangs costs the others nothing, and the run at most one budget."""
    if len(actions) == 1:
        actions[0]()
        return
    threads = [threading.Thread(target=action, name="xts-delivery") for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# -- Telegram -----------------------------------------------------------------------------------


def telegram_result(status: int, headers: Mapping[str, str], body: bytes) -> Any:
    """The ``result`` of a Bot API answer that says ``"ok": true``.

    Raises NotificationUnavailableError for a 429 (with its ``retry_after``), a 5xx or a 2xx
    that is not a Bot API answer (a proxy's page); NotificationRefusedError for any other
    answer, its hint the setting to fix.
    """
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
        answer = None
    if not isinstance(answer, dict):
        answer = {}
    if 300 <= status < 400:
        raise NotificationRefusedError(
            redirect_reason(status, headers),
            "Check TELEGRAM_API_URL: redirects are not followed (they would take the bot token "
            "and the message elsewhere); set the address the Bot API answers at.",
        )
    description = one_line(str(answer.get("description") or ""))[:200]
    reason = f"HTTP {status}: {description}" if description else f"HTTP {status}"
    parameters = answer.get("parameters")
    parameters = parameters if isinstance(parameters, dict) else {}
    if status == 429 or status >= 500:
        retry_after = retry_after_seconds(parameters.get("retry_after"))
        if retry_after is None:
            retry_after = retry_after_seconds(headers.get("Retry-After"))
        raise NotificationUnavailableError(reason, retry_after)
    if 200 <= status < 300:
        if answer.get("ok") is True:
            return answer.get("result")
        raise NotificationUnavailableError(f"HTTP {status}, but not a Bot API answer")
    raise NotificationRefusedError(reason, telegram_fix(status, description, parameters))


def telegram_fix(status: int, description: str, parameters: Mapping[str, Any]) -> str:
    """What to change when the Bot API refused a request."""
    if status == 401:
        return (
            "Check TELEGRAM_TOKEN: Telegram knows no bot by this token (copy it whole from "
            "@BotFather; it looks like 123456789:AA…)."
        )
    if status == 404:
        return (
            "Check TELEGRAM_TOKEN (copy it whole from @BotFather; it looks like "
            "123456789:AA…), and TELEGRAM_API_URL if you set it: Telegram answers 404 to a "
            "malformed token, and so does a server that is not a Bot API."
        )
    moved = parameters.get("migrate_to_chat_id")
    if isinstance(moved, int) and not isinstance(moved, bool):
        return (
            f"Put {moved} in TELEGRAM_CHAT_ID in place of this chat's ID: the group became a "
            "supergroup with this new ID."
        )
    if status == 403 or (status == 400 and "chat" in description.lower()):
        return (
            "Check TELEGRAM_CHAT_ID, and that the bot may write there (added to the group or "
            "channel; for a private chat, someone has sent it /start)."
        )
    return "Check TELEGRAM_TOKEN, TELEGRAM_CHAT_ID and TELEGRAM_API_URL."


def telegram_call(
    telegram: TelegramSettings, method: str, fields: Mapping[str, Any], timeout: float
) -> Any:
    """The ``result`` of one Bot API request (``sendMessage``, ``getMe``…); raises as
    telegram_result does, and NotificationUnavailableError when no answer came."""
    url = f"{telegram.api_url}/bot{telegram.bot_token}/{method}"
    try:
        with request_once(
            "POST", url, json=dict(fields), timeout=timeout, stream=True, allow_redirects=False
        ) as answer:
            return telegram_result(answer.status_code, answer.headers, capped_body(answer))
    except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as exc:
        raise NotificationRefusedError(type(exc).__name__, "Check TELEGRAM_API_URL.") from None
    except requests.RequestException as exc:
        # The bot token is in the URL, which some of requests' messages quote.
        reason = explain_transport_failure(exc, TLS_HINT, hide=telegram.bot_token)
        raise NotificationUnavailableError(reason) from None


def capped_body(answer: requests.Response) -> bytes:
    """The answer's body; NotificationUnavailableError past MAX_ANSWER_BYTES (a runaway
    answer cannot fill the memory)."""
    body = read_capped(answer, MAX_ANSWER_BYTES)
    if body is None:
        raise NotificationUnavailableError(f"an answer larger than {MAX_ANSWER_BYTES} bytes")
    return body


def send_telegram(
    telegram: TelegramSettings, chat_id: str, text: str, pacing: Pacing, log: Log
) -> bool:
    """Send ``text`` to the chat ``chat_id`` through ``telegram``'s bot, retried as ``deliver``
    says; True when Telegram accepted it."""
    if len(text) > TELEGRAM_MAX_CHARACTERS:  # a run where many accounts failed
        text = text[: TELEGRAM_MAX_CHARACTERS - len(CUT_NOTE)] + CUT_NOTE
    fields = {"chat_id": chat_id, "text": text, "disable_web_page_preview": True}
    return deliver(
        f"The Telegram notification to chat {chat_id}",
        lambda timeout: telegram_call(telegram, "sendMessage", fields, timeout),
        pacing,
        log,
        attempt_seconds=TELEGRAM_ATTEMPT_SECONDS,
        budget=Deadline(TELEGRAM_BUDGET_SECONDS),
    )


def send_telegram_messages(
    messages: Sequence[tuple[TelegramSettings, str, str]], pacing: Pacing, log: Log
) -> None:
    """Send each ``(bot, chat ID, text)`` side by side: one chat that hangs or refuses costs
    the others nothing, and the run waits at most one budget for all."""
    side_by_side([functools.partial(send_telegram, *message, pacing, log) for message in messages])


def check_telegram_bot(telegram: TelegramSettings) -> str:
    """Who the bot is (``bot @name``, else ``the bot``), as the Bot API's ``getMe`` says, which
    proves the bot token; nothing is sent.

    Raises NotificationUnavailableError when Telegram cannot be asked, NotificationRefusedError
    when it said no.
    """
    bot = telegram_call(telegram, "getMe", {}, CHECK_SECONDS)
    name = bot.get("username") if isinstance(bot, dict) else None
    return f"bot @{one_line(str(name))}" if name else "the bot"


def check_telegram_chat(telegram: TelegramSettings, chat_id: str) -> str:
    """The chat as the Bot API's ``getChat`` knows it (``chat 4242 (its title)``); nothing is
    sent. Raises as check_telegram_bot does."""
    chat = telegram_call(telegram, "getChat", {"chat_id": chat_id}, CHECK_SECONDS)
    title = chat.get("title") or chat.get("username") if isinstance(chat, dict) else None
    return f"chat {chat_id}" + (f" ({one_line(str(title))})" if title else "")


# -- health checks ------------------------------------------------------------------------------


PING_REDIRECT_HINT = (
    "Check HEALTHCHECK_URL: redirects are not followed (they would take the run's output "
    "elsewhere); set the check's ping URL as its page shows it."
)


def redirect_reason(status: int, headers: Mapping[str, str]) -> str:
    """What a redirect answer says, naming where it points by its origin only (a ping URL or
    a Bot API URL in it is as secret as ours)."""
    location = headers.get("Location") or ""
    try:
        parts = urlsplit(location)
        where = shown_origin(parts) if parts.netloc else "another path of the same server"
    except ValueError:
        where = "an address that is not a valid URL"
    return f"HTTP {status}: a redirect to {one_line(where)}"


def ping_result(status: int, headers: Mapping[str, str]) -> None:
    """Nothing for a 2xx answer to a ping; NotificationUnavailableError for a 429 or a 5xx
    (worth another try), NotificationRefusedError for any other answer (a redirect too: it is
    never followed)."""
    if 200 <= status < 300:
        return
    if 300 <= status < 400:
        raise NotificationRefusedError(redirect_reason(status, headers), PING_REDIRECT_HINT)
    if status == 429 or status >= 500:
        raise NotificationUnavailableError(
            f"HTTP {status}", retry_after_seconds(headers.get("Retry-After"))
        )
    raise NotificationRefusedError(
        f"HTTP {status}", "Check HEALTHCHECK_URL: the check's ping URL, as its page shows it."
    )


class HealthCheck:
    """One run's pings of one health check, the way runitor does them.

    Both pings carry the same ``rid`` (a UUID), so healthchecks.io pairs the start with the
    end and measures the run; the closing ping is a POST whose body is the run's console
    output (already redacted, at most the last PING_BODY_BYTES), so the check's page says why a
    run failed. The start ping is tried once (a run that starts is no news); the closing ping,
    which carries the exit code, is retried as ``deliver`` says. A ping that fails is logged
    and never changes the outcome.
    """

    def __init__(self, base_url: str, pacing: Pacing, accounts: Sequence[str] = ()) -> None:
        import uuid  # only runs with a health check pay for it

        self.base_url = base_url
        self.pacing = pacing
        self.rid = str(uuid.uuid4())
        # Whose check it is, in its lines, when several accounts' checks are pinged at once.
        self.accounts = tuple(accounts)
        self.hide = hidden_userinfo(base_url)  # never in a line of the log

    def start(self, log: Log) -> bool:
        """``GET <url>/start?rid=…``, once; True on a 2xx answer."""
        return self._ping("start", None, log, attempts=1)

    def finish(self, code: int, output: str, log: Log) -> bool:
        """``POST <url>/<code>?rid=…`` with the tail of ``output``; True on a 2xx answer."""
        body = output.encode("utf-8", "backslashreplace")[-PING_BODY_BYTES:]
        return self._ping(str(code), body, log, attempts=ATTEMPTS)

    def _ping(self, suffix: str, body: bytes | None, log: Log, *, attempts: int) -> bool:
        url = f"{self.base_url}/{suffix}"
        params = {"rid": self.rid}

        # The start ping is a GET; the closing one POSTs the run's output.
        method, content = "GET", {}
        if body is not None:
            method = "POST"
            content = {"data": body, "headers": {"Content-Type": "text/plain; charset=utf-8"}}

        def send(timeout: float) -> None:
            try:
                answer = request_once(
                    method,
                    url,
                    params=params,
                    timeout=timeout,
                    stream=True,
                    allow_redirects=False,
                    **content,
                )
            except requests.RequestException as exc:
                reason = explain_transport_failure(exc, TLS_HINT, hide=self.hide)
                raise NotificationUnavailableError(reason) from None
            with answer:  # streamed, and closed unread: only the status counts
                ping_result(answer.status_code, answer.headers)

        whose = f" for {', '.join(self.accounts)}" if self.accounts else ""
        return deliver(
            f"The health-check ping /{suffix}{whose}",
            send,
            self.pacing,
            log,
            attempt_seconds=PING_ATTEMPT_SECONDS,
            budget=Deadline(PING_BUDGET_SECONDS),
            attempts=attempts,
        )


def start_checks(checks: Sequence[HealthCheck], log: Log) -> None:
    """Send each check's start ping, side by side: several checks cost one ping's time."""
    side_by_side([functools.partial(check.start, log) for check in checks])


def finish_checks(finishes: Sequence[tuple[HealthCheck, int, str]], log: Log) -> None:
    """Send each check's closing ping ``(check, exit code, output)``, side by side."""
    side_by_side(
        [functools.partial(check.finish, code, output, log) for check, code, output in finishes]
    )


def redirects_elsewhere(origin: str, location: str) -> bool:
    """Whether a redirect from ``origin`` to ``location`` leaves its scheme, host or port (a
    server's root sending a browser to its login page stays)."""
    try:
        target = urlsplit(urljoin(origin, location))
        source = urlsplit(origin)
        return (target.scheme, target.hostname, target.port) != (
            source.scheme,
            source.hostname,
            source.port,
        )
    except ValueError:
        return True


def hidden_userinfo(url: str) -> str:
    """What to cut out of a message that may quote ``url``: its ``user:password@`` part (the
    password alone may be too short to replace safely), or "" when it has none."""
    info = userinfo(url)
    return "" if info is None else f"{info}@"


def shown_origin(parts: SplitResult) -> str:
    """``scheme://host[:port]/`` of a URL, without its user and password (a self-hosted check
    behind basic authentication has them in HEALTHCHECK_URL)."""
    return without_credentials(f"{parts.scheme}://{parts.netloc}/")


def check_health_check(url: str) -> str:
    """What check-config says of the health check, having reached the server of ``url`` (its
    origin, ``scheme://host/``: a request to the ping URL itself would be a ping).

    Raises NotificationUnavailableError when it cannot be reached or answers 5xx,
    NotificationRefusedError when it redirects to another server (a ping would be refused).
    """
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}/"
    shown = shown_origin(parts)
    try:
        with request_once("HEAD", origin, timeout=CHECK_SECONDS, allow_redirects=False) as answer:
            status, headers = answer.status_code, answer.headers
    except requests.RequestException as exc:
        reason = explain_transport_failure(exc, TLS_HINT, hide=hidden_userinfo(url))
        raise NotificationUnavailableError(reason) from None
    if 300 <= status < 400 and redirects_elsewhere(origin, headers.get("Location") or ""):
        raise NotificationRefusedError(redirect_reason(status, headers), PING_REDIRECT_HINT)
    if status >= 500:
        raise NotificationUnavailableError(f"its server {shown} answered HTTP {status}")
    return (
        f"The health check's server {shown} answers over {parts.scheme} (HTTP {status}); "
        "no ping was sent."
    )
