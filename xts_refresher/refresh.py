"""The ``refresh`` command: every selected account at once, then the news of the run.

Each account is refreshed in a thread of its own (account_refresh.py: lock, decide, log in,
save, verify, hook), so that no account waits for another's broker; the single account of
``.env`` is a selection of one, run the same way and told without ``[NAME]`` prefixes. The run
exits with the highest code (README, "Exit codes"), after it has notified Telegram, pinged the
health checks and written the metrics, and prints its last line last (outcome.py has the words).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .account_refresh import RefreshOptions, RefreshRun, holder_seconds, print_banner
from .accounts import Selection
from .console import (
    AccountLog,
    ConsoleCapture,
    Redactor,
    add_log_file,
    hold_account_lines,
    report_failure,
)
from .errors import TokenSaveError, UnexpectedError
from .interrupt import StopRequest
from .locks import started_by_running_hook
from .outcome import (
    AccountResult,
    closing_text,
    failures_text,
    hook_recursion_error,
    last_text,
    machine_label,
    print_line,
    telegram_text,
    worth_a_message,
)
from .outputs import WrittenPathError, check_written_paths
from .run_record import RunRecord, run_record_path, save_run
from .settings import (
    DEFAULT_DEADLINE_SECONDS,
    DEFAULT_RETRY_BACKOFF_SECONDS,
    Settings,
    TelegramSettings,
    shown_path,
)
from .timebox import Deadline, Pacing

# How often the main thread looks up from waiting for the accounts, to tell of a signal.
JOIN_POLL_SECONDS = 0.1

if TYPE_CHECKING:
    from .alerts import HealthCheck
    from .console import AccountLines, Log


def refresh_selection(
    selection: Selection,
    options: RefreshOptions,
    log: logging.Logger,
    redactor: Redactor,
    stop: StopRequest,
) -> int:
    """Refresh every selected account at once, each in its own thread under its own locks (no
    account waits for another's broker, and each is bounded by the run's deadline); then send
    the Telegram messages and the closing pings, write the metrics and print the run's last
    line. The highest of the accounts' exit codes.

    The single account of ``.env`` is a selection of one, run the same way and told without
    ``[NAME]`` prefixes (``selection.labelled`` is False; outcome.py has the wording).
    """
    started = time.time()
    labelled = selection.labelled
    capture = ConsoleCapture()
    log.addHandler(capture)
    pacing = run_pacing(selection.accounts, options)

    def account_log(name: str) -> Log:
        return AccountLog(log, name) if labelled else log

    def open_run(settings: Settings) -> RefreshRun:
        run = RefreshRun(settings, options, account_log(settings.account), redactor, stop)
        run.start(banner=not labelled)
        return run

    # The single account's opening lines open the run, before its pings (as they always have);
    # with several accounts the banner opens the run once, and each account opens in its own
    # thread, its console lines held until it is done (AccountLines: one block per account).
    opened = {} if labelled else {s.account: open_run(s) for s in selection.accounts}
    held, checks = _open_run(selection, pacing, log)
    results: dict[str, AccountResult] = {}
    finished = _AccountEnd(selection, results, account_log, held, (started, redactor))

    def refresh_in_thread(settings: Settings) -> None:
        try:
            result = (opened.get(settings.account) or open_run(settings)).execute()
        except Exception as exc:  # a bug: this account fails, and the others carry on
            account_log(settings.account).exception("Unexpected error during the refresh:")
            failure = UnexpectedError(f"Unexpected error ({type(exc).__name__}: {exc}).")
            result = AccountResult(settings.account, [failure], [])
        finished(result)

    threads = []
    if started_by_running_hook([path for s in selection.accounts for path in s.lock_files]):
        # A hook's refresh holds a lock until the hook returns, so waiting would deadlock; and
        # logging in again would cut off the bots the hook is restarting.
        for settings in selection.accounts:
            finished(AccountResult(settings.account, [hook_recursion_error()], []))
    else:
        threads = [
            threading.Thread(target=refresh_in_thread, args=(s,), name=f"xts-account-{s.account}")
            for s in selection.accounts
        ]
    for thread in threads:
        thread.start()
    for name, problem in selection.broken:
        finished(AccountResult(name, [problem], []))
    try:
        _join_all(threads, stop, log)
    finally:
        if held is not None:
            held.close()
    for settings in selection.accounts:
        if settings.account not in results:  # only a BaseException ends a thread without one
            failure = UnexpectedError("The refresh ended without a result.")
            finished(AccountResult(settings.account, [failure], []))
    ordered = [results[name] for name in selection.install.names if name in results]
    last = last_text(ordered, selection.labelled)
    _send_news(
        selection,
        ordered,
        last=last,
        checks=checks,
        capture=capture,
        pacing=pacing,
        redactor=redactor,
        log=log,
    )
    if any(s.metrics_file for s in selection.accounts):
        from .metrics import write_metrics

        write_metrics([*selection.accounts, *selection.unselected], log)
    print_line(log, last)  # last, so operators can tail for it
    return max((r.code for r in ordered), default=0)


def _open_run(
    selection: Selection, pacing: Pacing, log: logging.Logger
) -> tuple[AccountLines | None, dict[str, tuple[HealthCheck, list[str]]]]:
    """The run's own opening: with account files the banner, once, and from then on each
    account's console lines held until it is done; the health checks' /start pings; the
    selection's warnings. The holder of account lines (None for the single account) and the
    health checks."""
    held = None
    if selection.labelled:
        print_banner(log)
        held = hold_account_lines(log)
    checks = _health_checks(selection, pacing)
    if checks:
        from .alerts import start_checks

        start_checks([check for check, _ in checks.values()], log)
    for warning in selection.warnings:
        log.warning("⚠ %s", warning)
    return held, checks


class _AccountEnd:
    """What is done when an account's refresh has come to a result: its failures are placed
    (the broker they concern, the file to fix), its run recorded (``recording``: when the run
    started, and the redactor of the reason), its closing lines printed (a broken account's
    every problem; with account files, the account's closing line), and its held console
    lines released as one block."""

    def __init__(
        self,
        selection: Selection,
        results: dict[str, AccountResult],
        account_log: Callable[[str], Log],
        held: AccountLines | None,
        recording: tuple[float, Redactor],
    ) -> None:
        self.selection = selection
        self.results = results
        self.account_log = account_log
        self.held = held
        self.started, self.redactor = recording
        self.by_name = {s.account: s for s in selection.accounts}

    def __call__(self, result: AccountResult) -> None:
        settings = self.by_name.get(result.account)
        for failure in result.errors:
            if settings is not None:
                failure.place(settings.broker, settings.shown_env_file)
            else:  # a broken account: its file is known, its broker may not be
                failure.place(None, shown_path(self.selection.install.file_of(result.account)))
        self.results[result.account] = result
        log = self.account_log(result.account)
        if settings is not None:
            record_run(settings, result, self.started, self.redactor, log)
        if settings is None:  # a broken account: its failure, every problem listed
            report_failure(log, result.errors[0])
        elif self.selection.labelled:  # the single account's closing line is the run's last
            print_line(log, closing_text(result))
        if self.held is not None:
            self.held.release(result.account)


def record_run(
    settings: Settings, result: AccountResult, started: float, redactor: Redactor, log: Log
) -> None:
    """Record how the account's refresh ended (run_record.py): now, its exit code, the time
    since ``started``, and its failure as its closing line tells it, redacted. A record that
    cannot be written costs a warning, never the run's outcome."""
    ended = time.time()
    reason = redactor.redact(failures_text(result, whole=False)) if result.errors else ""
    try:
        save_run(settings, RunRecord(ended, result.code, max(ended - started, 0.0), reason))
    except TokenSaveError as exc:
        log.warning("⚠ The run record was not written: %s", exc.message)


def _lstat_mode(path: Path) -> int:
    """The ``st_mode`` of what is at ``path`` (a symlink itself), 0 when nothing is."""
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0


def _send_news(
    selection: Selection,
    ordered: Sequence[AccountResult],
    *,
    last: str,
    checks: dict[str, tuple[HealthCheck, list[str]]],
    capture: ConsoleCapture,
    pacing: Pacing,
    redactor: Redactor,
    log: logging.Logger,
) -> None:
    """Send the run's Telegram messages, then its closing pings: each check hears its own
    accounts' lines and the run's own (``capture``), with ``last``, the run's last line, though
    that is printed after the ping."""
    messages = _chat_messages(selection, ordered, redactor)
    if messages:
        from .alerts import send_telegram_messages

        send_telegram_messages(messages, pacing, log)
    log.removeHandler(capture)
    if checks:
        from .alerts import finish_checks

        codes = {r.account: r.code for r in ordered}
        shown_last = redactor.redact(last) + "\n"
        finish_checks(
            [
                (check, max(codes[n] for n in names), capture.text(names) + shown_last)
                for check, names in checks.values()
            ],
            log,
        )


def _health_checks(
    selection: Selection, pacing: Pacing
) -> dict[str, tuple[HealthCheck, list[str]]]:
    """Each health-check URL of the run, with the accounts it hears of: a URL that several
    accounts share is pinged once for all of them, and a broken account's URL too."""
    names_by_url: dict[str, list[str]] = {}
    for settings in selection.accounts:
        if settings.healthcheck_url:
            names_by_url.setdefault(settings.healthcheck_url, []).append(settings.account)
    for name, url in broken_accounts_checks(selection):
        names_by_url.setdefault(url, []).append(name)
    if not names_by_url:
        return {}
    from .alerts import HealthCheck

    return {
        # A check's lines name its accounts when there are account files.
        url: (HealthCheck(url, pacing, names if selection.labelled else ()), names)
        for url, names in names_by_url.items()
    }


def _chat_messages(
    selection: Selection, ordered: Sequence[AccountResult], redactor: Redactor
) -> list[tuple[TelegramSettings, str, str]]:
    """The run's Telegram messages ``(bot, chat ID, text)``: one per chat that wants one,
    naming the accounts that name that chat (and every broken one), redacted."""
    messages = []
    broken = dict(selection.broken)
    for (telegram, chat_id), accounts in _chats(selection):
        chat_results = [r for r in ordered if r.account in accounts or r.account in broken]
        if worth_a_message(telegram, chat_results):
            first = next((s for s in selection.accounts if s.account in accounts), None)
            text = telegram_text(chat_results, machine_label(first), selection.labelled)
            messages.append((telegram, chat_id, redactor.redact(text)))
    return messages


def run_pacing(accounts: Sequence[Settings], options: RefreshOptions | None = None) -> Pacing:
    """When the messages and closing pings of a run of ``accounts`` may retry: with their
    shortest XTS_RETRY_BACKOFF, before the latest of their XTS_DEADLINEs (a browser account's
    extended by its wait for the holder), counted from now."""
    first_wait = min((s.retry_backoff for s in accounts), default=DEFAULT_RETRY_BACKOFF_SECONDS)
    chosen = options or RefreshOptions()
    seconds = max(
        (s.deadline + holder_seconds(s, chosen) for s in accounts),
        default=DEFAULT_DEADLINE_SECONDS,
    )
    return Pacing(first_wait, Deadline(seconds))


def _join_all(threads: Sequence[threading.Thread], stop: StopRequest, log: Log) -> None:
    """Wait for every account's thread. SIGINT or SIGTERM does not abandon accounts that are
    logging in (a market-data session would end with no token saved): their logins finish,
    bounded by the deadline, and no new one starts; this says so once, at once."""
    told = False
    for thread in threads:
        while thread.is_alive():
            thread.join(JOIN_POLL_SECONDS)
            if stop.requested and not told:
                told = True
                log.warning(
                    "⚠ %s received: the logins under way finish first (within XTS_DEADLINE) "
                    "and their tokens are saved; no new login starts.",
                    stop.name,
                )


def broken_accounts_checks(selection: Selection) -> list[tuple[str, str]]:
    """The health-check URL each broken account would ping (its own file's, else the shared
    one), as far as its settings can still be read: its monitor must hear of the failure."""
    found = []
    for name, _ in selection.broken:
        own = selection.install.readable_values(name)
        url = own.get("HEALTHCHECK_URL") or selection.install.values.get("HEALTHCHECK_URL")
        if url:
            found.append((name, url.rstrip("/")))
    return found


def _chats(selection: Selection) -> list[tuple[tuple[TelegramSettings, str], set[str]]]:
    """Each Telegram chat of the selected accounts (its bot and its ID: every ID of an
    account's TELEGRAM_CHAT_ID), with the accounts that name it; with broken accounts, the
    chats of ``.env`` too, so they hear of them even if no account works. A chat is one bot
    and one ID: accounts that name it through different settings files share its message."""
    chats: dict[tuple[str, str, str], tuple[tuple[TelegramSettings, str], set[str]]] = {}

    def add(telegram: TelegramSettings, account: str | None) -> None:
        for chat_id in telegram.chat_ids:
            key = (telegram.api_url, telegram.bot_token, chat_id)
            named = chats.setdefault(key, ((telegram, chat_id), set()))[1]
            if account is not None:
                named.add(account)

    shared = selection.shared_telegram
    if selection.broken and shared is not None:
        add(shared, None)
    for settings in selection.accounts:
        if settings.telegram is not None:
            add(settings.telegram, settings.account)
    return list(chats.values())


def check_paths_and_open_log(selection: Selection, log: logging.Logger, log_file: Path) -> None:
    """The start of a refresh: check every path it writes (WrittenPathError, exit 2, before any
    login), and only then add ``log_file`` to ``log``: a log aimed at the settings or a token
    file is never appended to (a refusal is logged there unless the log is why)."""
    try:
        check_written_paths(selection, log_file)
    except WrittenPathError as exc:
        if log_file not in exc.paths:
            add_log_file(log, log_file)
        record_refusal(selection, exc, log)
        raise
    add_log_file(log, log_file)


def record_refusal(selection: Selection, refusal: WrittenPathError, log: Log) -> None:
    """Record the refusal of unsafe paths (exit 2, no login) as each account's last refresh,
    so that ``status`` does not take yesterday's token for this morning's; only over a record
    an earlier refresh left (a regular file none of the refused paths names): a refused run
    makes no new file."""
    now = time.time()
    for settings in selection.accounts:
        path = run_record_path(settings)
        if path in refusal.paths or not stat.S_ISREG(_lstat_mode(path)):
            continue
        try:
            reason = failures_text(AccountResult(settings.account, [refusal], []), whole=False)
            save_run(settings, RunRecord(now, refusal.exit_code, 0.0, reason))
        except TokenSaveError as exc:
            log.warning("⚠ The run record was not written: %s", exc.message)


def refresh(
    selection: Selection, options: RefreshOptions, log: logging.Logger, redactor: Redactor
) -> int:
    """The ``refresh`` command over the selected accounts (after check_paths_and_open_log);
    the highest of their exit codes.

    SIGINT and SIGTERM stop it gently (see interrupt.py): exit 130 or 143.
    """
    with StopRequest().handling() as stop:
        return refresh_selection(selection, options, log, redactor, stop)
