"""The ``status`` command: what each token file holds, reported without logging in.

``status`` reads each token file once into a SessionStatus, asks XTS about it with
``--verify`` (quickly: people and monitors wait for the answer), and prints lines or the JSON
document of docs/monitoring.md. ``check_config.py`` holds the other command that never logs in.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Collection, Sequence
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
from .run_record import RunRecord, load_run
from .sessions import INTERACTIVE, SESSIONS, Session
from .settings import BROWSER_LOGIN, KEY_LOGIN, Settings, foreign_token, warn_about_setup
from .shown_time import shown_time
from .store import DEFAULT_RENEW_BEFORE, StoredToken, format_duration, read_token_file
from .timebox import Deadline
from .values import plural

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
# How the closing line names a token's state when it is not usable.
STATE_WORDS = {"wrong-user": "for another user", "wrong-root": "for another API root"}

if TYPE_CHECKING:
    from pathlib import Path

    from .console import Log
    from .outputs import WrittenPath


class SessionStatus(NamedTuple):
    """What ``status`` knows of one session's stored token (docs/monitoring.md).

    ``usable`` is the local view (present, unexpired, these settings'); ``verified`` is what XTS
    said under ``--verify``: True, False (rejected), or None (not asked, or could not be asked).
    ``previous``: the token is older than the account's last refresh, which failed.
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
    previous: bool = False
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


def previous_marked(report: SessionStatus, run: RunRecord | None) -> SessionStatus:
    """``report`` marked as the previous token, when the account's last refresh failed and the
    token is older than that refresh (a token it saved before failing is its own)."""
    stored = report.stored
    if run is None or not run.failed or stored is None:
        return report
    if stored.logged_in_at.timestamp() >= run.started_at:
        return report
    note = (
        f"This is the previous token: the last refresh failed "
        f"({shown_time(run.ended_at, seconds=False)}, exit code {run.exit_code}) and did not "
        "renew it."
    )
    return report._replace(previous=True, message=f"{note} {report.message or ''}".strip())


def last_run_json(run: RunRecord | None) -> dict[str, Any] | None:
    """The ``last_run`` object of ``status --json``: when the last refresh ended (ISO 8601,
    this machine's offset), its exit code and its reason ("" on success); None for none."""
    if run is None:
        return None
    ended = datetime.fromtimestamp(run.ended_at).astimezone()
    return {
        "at": ended.isoformat(timespec="seconds"),
        "exit_code": run.exit_code,
        "reason": run.reason,
    }


def last_run_line(run: RunRecord | None) -> str:
    """The account's line about its last refresh."""
    if run is None:
        return "- last refresh: none recorded"
    when = f"{shown_time(run.ended_at)}, exit code {run.exit_code}"
    if run.failed:
        return f"✗ last refresh failed: {when}: {run.reason}"
    return f"✓ last refresh: {when}"


def not_ready_reasons(
    reports: Sequence[SessionStatus], run: RunRecord | None, verify: bool
) -> list[str]:
    """Why one account is not ready ([] when it is): its last refresh failed, a token is not
    usable, or, with ``verify``, XTS could not be asked about one."""
    reasons = []
    if run is not None and run.failed:
        when = shown_time(run.ended_at, seconds=False, today=True)
        reasons.append(f"last refresh failed at {when}, exit code {run.exit_code}")
    for r in reports:
        label = SESSIONS[r.session].label
        if not r.usable:
            reasons.append(f"{label} token {STATE_WORDS.get(r.state, r.state)}")
        elif verify and r.verified is None:
            reasons.append(f"{label} token not checked (XTS could not be asked)")
    return reasons


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
    """The ``status`` command: 0 when every configured session is usable and no account's
    last refresh failed, else 1 (2 when an account's settings are broken).

    With ``verify``, every usable token must also be accepted by XTS; one that XTS could not be
    asked about is "not checked" (``verified`` null), which is not 0 either. With ``as_json``
    the standard output holds the JSON document alone (``cli`` sends the console's log lines,
    warnings included, to standard error). With ``labelled`` (account files), each line of an
    account starts ``[NAME]``. It ends with one line for all accounts (closing_status_text).
    """

    def show(text: str, account: str | None = None) -> None:
        # XTS wrote some of these messages: mask anything shaped like a token before printing.
        prefix = account_prefix(account) if labelled and account else ""
        print(redactor.redact("\n".join(prefix + line for line in text.split("\n"))))

    for warning in warnings:
        log.warning("⚠ %s", warning)
    runs = {settings.account: load_run(settings) for settings in accounts}
    reports = [
        previous_marked(r, runs[r.account])
        for r in _all_reports(accounts, verify, labelled, log, redactor)
    ]
    reasons = {
        settings.account: not_ready_reasons(
            [r for r in reports if r.account == settings.account], runs[settings.account], verify
        )
        for settings in accounts
    }
    ok = not any(reasons.values()) and not broken
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
            "accounts": [
                {
                    "account": name,
                    "ready": not reasons[name],
                    "last_run": last_run_json(runs[name]),
                }
                for name in runs
            ],
        }
        if broken:
            document["errors"] = [{"account": n, "message": str(e)} for n, e in broken]
        show(json.dumps(document, indent=2))
        return code
    for name, problem in broken:
        show(f"✗ {problem}", name)
    for settings in accounts:
        for r in (r for r in reports if r.account == settings.account):
            _show_session(show, r, verify)
        show(last_run_line(runs[settings.account]), settings.account)
    usable = sum(1 for r in reports if r.usable and not (verify and r.verified is None))
    browser = {r.account for r in reports if r.login == BROWSER_LOGIN}
    show(closing_status_text(reasons, [n for n, _ in broken], usable, labelled, browser))
    return code


def _show_session(show: Callable[[str, str], None], r: SessionStatus, verify: bool) -> None:
    """The lines of one session's token: state and user, times, file, what XTS said."""
    mark = "✓" if r.usable and not (verify and r.verified is None) else "✗"
    show(f"{mark} {r.session:<12} {r.state:<10} user {r.user_id or '-'}", r.account)
    if r.stored is not None:
        left = f" ({r.time_left} left)" if (r.seconds_left or 0) > 0 else ""
        expires = shown_time(r.stored.expires_at) if r.stored.expires_at else "-"
        refreshed = shown_time(r.stored.logged_in_at)
        show(f"    refreshed at {refreshed}, expires at {expires}{left}", r.account)
    show(f"    file {r.path}", r.account)
    if r.login == BROWSER_LOGIN:
        show("    login: browser", r.account)
        if not r.usable:
            show(f"    to log in: xts_token_refresh.py login --account {r.account}", r.account)
    if verify and (r.usable or r.state == "rejected"):
        show(f"    checked with XTS: {_verification_words(r)}", r.account)
    if r.message:
        show(f"    {r.message}", r.account)


def _log_in_commands(not_ready: list[str], browser: Collection[str], labelled: bool) -> str:
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


def closing_status_text(
    reasons: dict[str, list[str]],
    broken: Sequence[str],
    usable: int,
    labelled: bool,
    browser: Collection[str] = (),
) -> str:
    """The last line of ``status``: every account ready, with how many tokens are usable; or
    which accounts are not, why (``reasons``, by account; ``broken``: accounts whose settings
    are not valid), and what to do (``browser``: accounts whose holder signs in, with
    ``login``)."""
    total = len(reasons) + len(broken)
    why = {**{name: ["settings not valid"] for name in broken}, **reasons}
    not_ready = [name for name, found in why.items() if found]
    if not not_ready:
        return f"✓ {plural(total, 'account')}, {plural(usable, 'token')} usable."
    unchecked_only = all(
        all(reason.endswith("(XTS could not be asked)") for reason in why[name])
        for name in not_ready
    )
    commands = _log_in_commands([n for n in not_ready if n not in broken], browser, labelled)
    if unchecked_only:
        advice = (
            "Check the network and the broker's status, then run `xts_token_refresh.py status "
            "--verify` again."
        )
    elif broken or any(r.startswith("last refresh failed") for n in not_ready for r in why[n]):
        advice = f"Fix what the lines above say, then run {commands}."
    else:
        advice = f"Run {commands} to log in again."
    if not labelled:
        return f"✗ Not ready: {'; '.join(why[not_ready[0]])}. {advice}"
    listed = "; ".join(f"{name} ({', '.join(why[name])})" for name in not_ready)
    return f"✗ {len(not_ready)} of {plural(total, 'account')} not ready: {listed}. {advice}"
