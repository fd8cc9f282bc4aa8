"""The ``status`` command: what each token file holds, reported without logging in.

``status`` reads each token file once into a SessionStatus, asks XTS about it with
``--verify`` (quickly: people and monitors wait for the answer), and prints lines or the JSON
document of docs/monitoring.md. ``check_config.py`` holds the other command that never logs in.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from .client import XtsClient
from .console import AccountLog, Redactor, account_prefix
from .errors import (
    ConfigError,
    TokenRejectedError,
    TokenUnavailableError,
    XtsRefreshError,
)
from .sessions import INTERACTIVE, Session
from .settings import BROWSER_LOGIN, KEY_LOGIN, Settings, foreign_token, warn_about_setup
from .store import DEFAULT_RENEW_BEFORE, StoredToken, format_duration, read_token_file
from .timebox import Deadline

STATUS_QUICK_SECONDS = 5.0
# The keys of one `sessions` entry of `status --json`, in the documented order.
JSON_KEYS = (
    "account",
    "session",
    "login",
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
    from pathlib import Path

    from .console import Log
    from .outputs import WrittenPath


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
    # How the session logs in: "key", or "browser" (the holder signs in on the broker's page).
    login: str = KEY_LOGIN

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


def login_of(settings: Settings, session: Session) -> str:
    """How ``session`` of ``settings``' account logs in: "browser" for the interactive session
    of a browser account, else "key" (market data always logs in with its key)."""
    return settings.login if session is INTERACTIVE else KEY_LOGIN


def _verification_words(report: SessionStatus) -> str:
    """How the console names the outcome of asking XTS about a token."""
    if report.verified is None:
        return "not checked (XTS could not be asked)"
    return "accepted" if report.verified else "NOT accepted"


def _account_reports(
    settings: Settings, verify: bool, log: Log, redactor: Redactor
) -> list[SessionStatus]:
    """One account's session statuses, asked of XTS with ``verify``."""
    reports = [
        session_status(settings, s, DEFAULT_RENEW_BEFORE)._replace(login=login_of(settings, s))
        for s in settings.sessions
    ]
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
    settings_files: Sequence[Path] = (),
    accounts_dir: Path | None = None,
    broken_token_files: Sequence[WrittenPath] = (),
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
        prefix = account_prefix(account) if labelled and account else ""
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

        # `also`: accounts not selected, kept in it; `settings_files`: broken accounts' too
        write_metrics([*accounts, *also], log, settings_files, accounts_dir, broken_token_files)
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
        if r.login == BROWSER_LOGIN:
            show("    login: browser", r.account)
            if not r.usable:
                show(f"    to log in: xts_token_refresh.py login --account {r.account}", r.account)
        if verify and (r.usable or r.state == "rejected"):
            show(f"    checked with XTS: {_verification_words(r)}", r.account)
        if r.message:
            show(f"    {r.message}", r.account)
    browser = {r.account for r in reports if not r.usable and r.login == BROWSER_LOGIN}
    _closing_status_line(show, labelled, not_ready, unchecked, browser)
    return code


def _log_in_commands(not_ready: list[str], browser: set[str], labelled: bool) -> str:
    """The commands that log the accounts ``not_ready`` in again: a refresh for those that log
    in with their key, ``login`` for those whose holder signs in on the broker's page."""
    keyed = [name for name in not_ready if name not in browser]
    signing = [name for name in not_ready if name in browser]
    commands = []
    if keyed:
        selected = "".join(f" --account {name}" for name in keyed) if labelled else ""
        commands.append(f"`xts_token_refresh.py{selected}`")
    if signing:
        selected = "".join(f" --account {name}" for name in signing)
        commands.append(f"`xts_token_refresh.py login{selected}`")
    return " and ".join(commands)


def _closing_status_line(
    show: Callable[[str], None],
    labelled: bool,
    not_ready: list[str],
    unchecked: list[str],
    browser: set[str],
) -> None:
    """What to do, when anything is not ready: naming the accounts, with accounts."""
    commands = _log_in_commands(not_ready, browser, labelled)
    if not_ready and labelled:
        show(f"✗ Not ready to trade: {', '.join(not_ready)}: run {commands} to log in again.")
    elif not_ready:
        show(f"✗ At least one session cannot trade: run {commands} to log in again.")
    elif unchecked:
        whose = f" ({', '.join(unchecked)})" if labelled else ""
        show(
            f"✗ XTS could not be asked about at least one token{whose} (not checked): check the "
            "network and the broker's status, then run `xts_token_refresh.py status --verify` "
            "again."
        )
