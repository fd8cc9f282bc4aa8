"""The commands that report and never log in: ``status`` and ``check-config``.

``status`` reads each token file once into a SessionStatus, asks XTS about it with
``--verify`` (quickly: people and monitors wait for the answer), and prints lines or the JSON
document of docs/monitoring.md. ``check-config`` validates paths, reaches the API root, and
asks Telegram and the health check's server whether they can be reached (sending nothing).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from .checks import DEFAULT_RENEW_BEFORE, foreign_token, format_duration, warn_about_setup
from .client import MARKETDATA_PATH_HINT, XtsClient
from .errors import (
    ConfigError,
    NotificationRefusedError,
    NotificationUnavailableError,
    TokenRejectedError,
    TokenUnavailableError,
    UnexpectedError,
    XtsRefreshError,
    XtsUnavailableError,
)
from .notify import AccountLog, Redactor, report_failure
from .outputs import PathProblem, written_paths
from .sessions import MARKETDATA, SESSIONS, Session
from .settings import Settings, without_credentials
from .store import StoredToken, read_token_file
from .timebox import Deadline, run_within

STATUS_QUICK_SECONDS = 5.0
# The keys of one `sessions` entry of `status --json`, in the documented order.
JSON_KEYS = (
    "account",
    "session",
    "state",
    "usable",
    "path",
    "user_id",
    "refreshed_at",
    "expires_at",
    "seconds_left",
    "time_left",
    "verified",
    "message",
)

if TYPE_CHECKING:
    from .notify import Log


class SessionStatus(NamedTuple):
    """What ``status`` knows of one session's stored token (docs/monitoring.md).

    ``usable`` is the local view (present, unexpired, these settings'); ``verified`` is what XTS
    said under ``--verify``: True, False (rejected), or None (not asked, or could not be asked).
    ``stored`` is the token read, kept for the check and never shown.
    """

    account: str
    session: str
    state: str
    usable: bool
    path: str
    user_id: str | None = None
    refreshed_at: str | None = None
    expires_at: str | None = None
    seconds_left: int | None = None
    time_left: str | None = None
    verified: bool | None = None
    message: str | None = None
    stored: StoredToken | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry of ``status --json``, in the documented key order."""
        return {key: getattr(self, key) for key in JSON_KEYS}


def session_status(settings: Settings, session: Session, renew_before: float) -> SessionStatus:
    """One session's status from one read of its token file."""
    path = settings.token_path(session)
    try:
        stored = read_token_file(path, session.name)
    except TokenUnavailableError as exc:
        return SessionStatus(
            settings.account, session.name, exc.state, False, str(path), message=exc.message
        )
    left = stored.seconds_left()
    foreign = foreign_token(settings, stored)
    usable, message = False, None
    if left <= 0:
        state, message = "expired", f"Expired {format_duration(left)} ago."
    elif foreign is not None:
        state, message = foreign[0], f"{foreign[1][0].upper()}{foreign[1][1:]}."
    else:
        state, usable = ("expiring" if left <= renew_before else "fresh"), True
    if stored.expires_at is None and message is None:
        message = "The token carries no readable expiry: assumed 24 h after the login."
    return SessionStatus(
        account=settings.account,
        session=session.name,
        state=state,
        usable=usable,
        path=str(path),
        user_id=stored.user_id,
        refreshed_at=f"{stored.refreshed_at:%Y-%m-%d %H:%M:%S}",
        expires_at=stored.expires_at.isoformat() if stored.expires_at else None,
        seconds_left=int(left),
        time_left=format_duration(left),
        message=message,
        stored=stored,
    )


def verified_status(client: XtsClient, report: SessionStatus) -> SessionStatus:
    """``report`` with what XTS says of its token; unchanged for a token not worth asking about.

    A token XTS could not be asked about keeps ``verified`` None and gets a message about the
    network: it is "not checked", never "rejected".
    """
    if not report.usable or report.stored is None:
        return report
    try:
        note = client.verify(report.stored)
    except TokenRejectedError as exc:
        return report._replace(
            state="rejected",
            usable=False,
            verified=False,
            message=f"{exc.message} Run `xts_token_refresh.py` to log in again.",
        )
    except XtsRefreshError as exc:
        return report._replace(
            message=f"Not checked: XTS could not be asked ({exc.message.rstrip('.')}). "
            "Check the network and the broker's status."
        )
    if note == "accepted":
        return report._replace(verified=True)
    return report._replace(verified=True, message=f"{note[0].upper()}{note[1:]}.")


def quick_client(settings: Settings, log: Log) -> XtsClient:
    """A client for questions people wait for: one retry at most, short time-outs."""
    quick = settings.replaced(
        retries=min(settings.retries, 1),
        timeout=min(settings.timeout, STATUS_QUICK_SECONDS),
        retry_backoff=min(settings.retry_backoff, 1.0),
    )
    return XtsClient(quick, Deadline(min(settings.deadline, 3 * STATUS_QUICK_SECONDS)), log)


def _verification_words(report: SessionStatus) -> str:
    """How the console names the outcome of asking XTS about a token."""
    if report.verified is None:
        return "not checked (XTS could not be asked)"
    return "accepted" if report.verified else "NOT accepted"


def _account_reports(
    settings: Settings, verify: bool, log: Log, redactor: Redactor
) -> list[SessionStatus]:
    """One account's session statuses, asked of XTS with ``verify``."""
    reports = [session_status(settings, s, DEFAULT_RENEW_BEFORE) for s in settings.sessions]
    for report in reports:
        if report.stored is not None:
            redactor.add(report.stored.token)
    if verify:
        with quick_client(settings, log) as client:
            reports = [verified_status(client, report) for report in reports]
    return reports


def _all_reports(
    accounts: Sequence[Settings],
    verify: bool,
    labelled: bool,
    log: logging.Logger,
    redactor: Redactor,
) -> list[SessionStatus]:
    """Every account's session statuses; accounts are asked about at once, so one broker
    that does not answer delays the answer by its own time-out only."""
    found: dict[str, list[SessionStatus]] = {}
    crashed: list[BaseException] = []

    def report(settings: Settings) -> None:
        account_log = AccountLog(log, settings.account) if labelled else log
        try:
            warn_about_setup(settings, account_log)
            found[settings.account] = _account_reports(settings, verify, account_log, redactor)
        except Exception as exc:  # a bug must not pass for "every token is fine"
            crashed.append(exc)

    threads = [threading.Thread(target=report, args=(s,)) for s in accounts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if crashed:
        raise crashed[0]  # main reports it as the unexpected error it is (exit 4)
    return [r for settings in accounts for r in found.get(settings.account, [])]


def status(
    accounts: Sequence[Settings],
    *,
    verify: bool,
    as_json: bool,
    log: logging.Logger,
    redactor: Redactor,
    labelled: bool = False,
    broken: Sequence[tuple[str, ConfigError]] = (),
    warnings: Sequence[str] = (),
    also: Sequence[Settings] = (),
) -> int:
    """The ``status`` command: 0 when every configured session is usable, else 1 (2 when an
    account's settings are broken).

    With ``verify``, every usable token must also be accepted by XTS; one that XTS could not be
    asked about is "not checked" (``verified`` null), which is not 0 either. With ``as_json``
    the standard output holds the JSON document alone (``cli`` sends the console's log lines,
    warnings included, to standard error). With ``labelled`` (account files), each line of an
    account starts ``[NAME]``.
    """

    def show(text: str, account: str | None = None) -> None:
        # XTS wrote some of these messages: mask anything shaped like a token before printing.
        prefix = f"[{account}] " if labelled and account else ""
        print(redactor.redact("\n".join(prefix + line for line in text.split("\n"))))

    for warning in warnings:
        log.warning("⚠ %s", warning)
    reports = _all_reports(accounts, verify, labelled, log, redactor)
    not_ready = sorted({r.account for r in reports if not r.usable})
    unchecked = sorted({r.account for r in reports if verify and r.usable and r.verified is None})
    ok = not not_ready and not unchecked and not broken
    code = 2 if broken else (0 if ok else 1)
    if any(s.metrics_file for s in accounts):
        from .metrics import write_metrics

        write_metrics([*accounts, *also], log)  # `also`: accounts not selected, kept in it
    if as_json:
        document: dict[str, Any] = {
            "ok": ok,
            "checked_at": datetime.now().astimezone().isoformat(),
            "verified": verify,
            "sessions": [r.to_json() for r in reports],
        }
        if broken:
            document["errors"] = [{"account": n, "message": str(e)} for n, e in broken]
        show(json.dumps(document, indent=2))
        return code
    for name, problem in broken:
        show(f"✗ {problem}", name)
    for r in reports:
        mark = "✓" if r.usable and not (verify and r.verified is None) else "✗"
        show(f"{mark} {r.session:<12} {r.state:<10} user {r.user_id or '-'}", r.account)
        left = f" ({r.time_left} left)" if (r.seconds_left or 0) > 0 else ""
        when = f"refreshed at {r.refreshed_at or '-'}, expires at {r.expires_at or '-'}{left}"
        show(f"    {when}", r.account)
        show(f"    file {r.path}", r.account)
        if verify and (r.usable or r.state == "rejected"):
            show(f"    checked with XTS: {_verification_words(r)}", r.account)
        if r.message:
            show(f"    {r.message}", r.account)
    _closing_status_line(show, labelled, not_ready, unchecked)
    return code


def _closing_status_line(
    show: Callable[[str], None], labelled: bool, not_ready: list[str], unchecked: list[str]
) -> None:
    """What to do, when anything is not ready: naming the accounts, with accounts."""
    selected = "".join(f" --account {name}" for name in not_ready)
    if not_ready and labelled:
        show(
            f"✗ Not ready to trade: {', '.join(not_ready)}: run "
            f"`xts_token_refresh.py{selected}` to log in again."
        )
    elif not_ready:
        show("✗ At least one session cannot trade: run `xts_token_refresh.py` to log in again.")
    elif unchecked:
        whose = f" ({', '.join(unchecked)})" if labelled else ""
        show(
            f"✗ XTS could not be asked about at least one token{whose} (not checked): check the "
            "network and the broker's status, then run `xts_token_refresh.py status --verify` "
            "again."
        )


# -- check-config -------------------------------------------------------------------------------


def _folder_problem(path: Path, created_by_refresh: Path | None = None) -> str | None:
    """Why ``path`` cannot be written, or None; ``created_by_refresh`` is a folder that a
    refresh makes itself (an account's own), which is fine missing if it can be made."""
    folder = path.parent
    if folder == created_by_refresh and not folder.exists():
        folder = folder.parent  # the refresh creates it here
    if not folder.is_dir():
        return f"the folder {folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable by this user"
    if path.is_dir():
        return f"{path} is a folder"
    return None


def _report_probe(url: str, status: int, log: Log) -> None:
    """Say that ``url`` was reached; an error status is shown without a tick beside it.

    An API root commonly answers 404 (only its API paths exist), so reaching it is what counts;
    a 5xx says the server behind it is failing.
    """
    scheme = urlsplit(url).scheme
    shown = without_credentials(url)
    if status < 400:
        log.info("✓ %s is reachable over %s (HTTP %d).", shown, scheme, status)
    elif status < 500:
        log.info("✓ %s is reachable over %s.", shown, scheme)
        log.info("  (It answered HTTP %d, as an API root may: only its API paths exist.)", status)
    else:
        log.warning(
            "⚠ %s is reachable over %s, but answered HTTP %d: the broker's server may be "
            "failing; check its status before the next refresh.",
            shown,
            scheme,
            status,
        )


def check_marketdata_path(settings: Settings, client: XtsClient, log: Log) -> None:
    """Ask XTS for the market-data token check's path without a token (XTS answers that a
    token is missing; nothing logs in): XtsUnavailableError when it has no such path (HTTP 404),
    the path is wrong."""
    base = f"{settings.api_root}{settings.base_path(MARKETDATA)}"
    status = client.probe(f"{base}{MARKETDATA.check_path}")
    if status == 404:
        raise XtsUnavailableError(
            f"XTS has no market-data API at {without_credentials(base)} (HTTP 404 for "
            f"{MARKETDATA.check_path}).",
            MARKETDATA_PATH_HINT,
        )
    log.info(
        "✓ The market-data API answers at %s (XTS_MARKETDATA_PATH) (HTTP %d without a token).",
        without_credentials(base),
        status,
    )


def check_config(
    accounts: Sequence[Settings],
    log: logging.Logger,
    *,
    labelled: bool = False,
    broken: Sequence[tuple[str, ConfigError]] = (),
    warnings: Sequence[str] = (),
    path_problems: Sequence[PathProblem] = (),
) -> int:
    """The ``check-config`` command over the accounts: the highest of their codes (0 ready, 2
    settings or paths, 3 the network); each account's lines start ``[NAME]`` with accounts.
    ``path_problems`` are what a refresh would refuse about the paths it writes; each is shown
    under every account whose paths it names."""
    for warning in warnings:
        log.warning("⚠ %s", warning)
    codes = [2 for _ in broken]
    for name, problem in broken:
        report_failure(AccountLog(log, name), problem)
    answers: dict[tuple[str, ...], str | XtsRefreshError] = {}  # each chat and server asked once
    names = [name for name, _ in broken]
    for settings in accounts:
        account_log = AccountLog(log, settings.account) if labelled else log
        codes.append(check_account(settings, account_log, answers, path_problems))
        names.append(settings.account)
    code = max(codes, default=0)
    if labelled:  # the last line speaks for every account, as a refresh's does
        not_ready = [name for name, c in zip(names, codes) if c]
        if not_ready:
            log.error(
                "✗ %d of %d accounts not ready (exit code %d): %s. Fix what is marked ✗ under "
                "their names, then run check-config again.",
                len(not_ready),
                len(codes),
                code,
                ", ".join(not_ready),
            )
        else:
            log.info("✓ All %d accounts are ready.", len(codes))
    return code


def check_account(
    settings: Settings,
    log: Log,
    answers: dict[tuple[str, ...], str | XtsRefreshError],
    path_problems: Sequence[PathProblem] = (),
) -> int:
    """The ``check-config`` command: 0 when ready, 2 for settings or paths, 3 for the network."""
    names = ", ".join(s.name for s in settings.sessions)
    log.info("✓ Settings are valid (%s). Sessions: %s.", settings.env_file, names)
    warn_about_setup(settings, log)
    paths = [(f"{s.label} token file", settings.token_path(s)) for s in settings.sessions]
    paths.append(("log file", settings.log_file))
    written = {w.path for w in written_paths(settings)}
    refused: set[Path] = set()
    for refusal in path_problems:
        if written.intersection(refusal.paths):
            log.error("✗ %s", refusal.text)
            refused.update(refusal.paths)
    problems = len(refused)
    for label, path in paths:
        if path in refused:
            continue  # said above
        own_folder = settings.env_file.parent / settings.account
        problem = _folder_problem(path, own_folder if settings.shared_env_file else None)
        if problem:
            log.error("✗ The %s %s cannot be written: %s.", label, path, problem)
            problems += 1
        else:
            log.info("✓ The %s %s can be written.", label, path)
    if problems:
        variables = ", ".join(s.path_variable for s in SESSIONS.values())
        log.error("✗ Fix the paths above (%s, XTS_LOG_FILE, XTS_METRICS_FILE).", variables)
        return 2
    code = 0
    with XtsClient(settings, Deadline(settings.deadline), log) as client:
        try:
            for url in filter(None, (settings.api_root, settings.hostlookup_url)):
                _report_probe(url, client.probe(url), log)
            if MARKETDATA.name in settings.credentials:
                check_marketdata_path(settings, client, log)
        except XtsRefreshError as exc:
            log.error("✗ %s", exc)
            code = exc.exit_code
    code = max(code, check_notifications(settings, log, answers))
    if code == 0:
        log.info("✓ Ready: run `xts_token_refresh.py` to log in (check-config never logs in).")
    else:
        log.error(
            "✗ Not ready (exit code %d): fix what is marked ✗ above, then run check-config again.",
            code,
        )
    return code


def check_notifications(
    settings: Settings, log: Log, answers: dict[tuple[str, ...], str | XtsRefreshError]
) -> int:
    """Ask Telegram (``getMe``, ``getChat``) and the health check's server whether they can
    be reached, sending no message and no ping: 0 when they can, 2 when one refused (a setting
    to fix), 3 when one cannot be reached. ``answers`` keeps what each chat and server said,
    so accounts that share them ask once."""
    if settings.telegram is None and not settings.healthcheck_url:
        return 0
    from .delivery import CHECK_SECONDS, check_health_check, check_telegram

    questions: list[tuple[str, tuple[str, ...], Callable[[], str]]] = []
    if settings.telegram is not None:
        chat = settings.telegram
        key: tuple[str, ...] = ("telegram", chat.api_url, chat.bot_token, chat.chat_id)
        questions.append(("Telegram", key, functools.partial(check_telegram, chat)))
    if settings.healthcheck_url:
        url = settings.healthcheck_url
        key = ("healthcheck", urlsplit(url).scheme, urlsplit(url).netloc)  # what is asked
        questions.append(("The health check", key, functools.partial(check_health_check, url)))
    code = 0
    for name, key, question in questions:
        if key not in answers:
            try:
                answers[key] = run_within(3 * CHECK_SECONDS, question)
            except XtsRefreshError as exc:
                answers[key] = exc
            except TimeoutError:
                answers[key] = NotificationUnavailableError(
                    f"no answer within {3 * CHECK_SECONDS:g} s"
                )
            except Exception as exc:  # a bug: a ✗ line and exit 4, not a traceback
                answers[key] = UnexpectedError(
                    f"Unexpected error ({type(exc).__name__}) while checking {name}."
                )
        answer = answers[key]
        if isinstance(answer, str):
            log.info("✓ %s", answer)
        elif isinstance(answer, UnexpectedError):
            log.error("✗ %s", answer)
            code = max(code, answer.exit_code)
        elif isinstance(answer, NotificationRefusedError):
            log.error("✗ %s refused the check (%s). %s", name, answer.message, answer.hint)
            code = max(code, answer.exit_code)
        else:
            log.error(
                "✗ %s cannot be reached (%s): its notifications would not arrive. Check the "
                "network, a proxy or a firewall in the way.",
                name,
                answer.message,
            )
            code = max(code, 3)
    return code
