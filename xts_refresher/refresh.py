"""The ``refresh`` command: lock, decide, prove the files writable, log in, save, verify, hook.

Failures inside a session are collected so that one bad session does not hide another's
result; the run exits with the highest code (README, "Exit codes"), then notifies Telegram,
pings the health check and prints its closing line, in that order.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .accounts import Selection
from .client import LoginResult, XtsClient
from .console import AccountLog, ConsoleCapture, Redactor, add_log_file, report_failure
from .errors import (
    ClockSkewError,
    ConfigError,
    HookFailedError,
    InterruptedRunError,
    LocalError,
    LockTimeoutError,
    LoginRefusedError,
    TokenRejectedError,
    TokenSaveError,
    TokenUnavailableError,
    UnexpectedError,
    XtsRefreshError,
    XtsUnavailableError,
)
from .hook import run_hook, started_by_running_hook
from .interrupt import StopRequest
from .outputs import WrittenPathError, check_written_paths
from .paths import account_file
from .sessions import SESSIONS, Session
from .settings import (
    DEFAULT_DEADLINE_SECONDS,
    DEFAULT_RETRY_BACKOFF_SECONDS,
    Settings,
    TelegramSettings,
    foreign_token,
    read_env_file,
    warn_about_setup,
)
from .store import (
    DEFAULT_RENEW_BEFORE,
    RunLock,
    StoredToken,
    check_writable,
    expiry_from_token,
    format_duration,
    is_user,
    jwt_claims,
    read_token_file,
    remove_stale_temporaries,
    save_token,
)
from .timebox import Deadline, Pacing
from .values import Frozen

BANNER_RULE = "=" * 62

APP_KEY_WARNING_DAYS = 14
MESSAGE_ITEM_CHARACTERS = 500
# A new token that dies sooner than this by this machine's clock is not called fresh: XTS
# tokens live about a day, so the clock (this machine's, or the broker's) is wrong.
SHORT_LIFE_SECONDS = 3600.0
# How often the main thread looks up from waiting for the accounts, to tell of a signal.
JOIN_POLL_SECONDS = 0.1

if TYPE_CHECKING:
    from .alerts import HealthCheck
    from .console import Log


def hook_recursion_error() -> LocalError:
    """The failure of a refresh that XTS_POST_REFRESH_HOOK started (exit 4)."""
    return LocalError(
        "This refresh was started by XTS_POST_REFRESH_HOOK, while the refresh that runs the "
        "hook holds the lock.",
        "A hook must not run the refresher: the tokens are already fresh when it runs.",
    )


class RefreshOptions(Frozen):
    """How ``refresh`` was asked to run."""

    __slots__ = ("if_needed", "renew_before", "verify")
    if_needed: bool
    renew_before: float
    verify: bool

    def __init__(
        self,
        if_needed: bool = False,
        renew_before: float = DEFAULT_RENEW_BEFORE,
        verify: bool = False,
    ) -> None:
        self._set(if_needed=if_needed, renew_before=renew_before, verify=verify)


class SessionOutcome(Frozen):
    """What a run did with one session: saved a token, kept one, or failed."""

    __slots__ = ("error", "kept", "saved", "session")
    session: Session
    saved: StoredToken | None
    kept: StoredToken | None
    error: XtsRefreshError | None

    def __init__(
        self,
        session: Session,
        *,
        saved: StoredToken | None = None,
        kept: StoredToken | None = None,
        error: XtsRefreshError | None = None,
    ) -> None:
        self._set(session=session, saved=saved, kept=kept, error=error)

    @property
    def exit_code(self) -> int:
        """0 unless the session failed."""
        return self.error.exit_code if self.error else 0


def renewal_reason(
    settings: Settings, session: Session, renew_before: float
) -> tuple[StoredToken | None, str | None]:
    """The stored token of ``session`` (None when unreadable), and why ``--if-needed`` must
    log in; the reason is None when the stored token will do. The file is read once."""
    try:
        stored = read_token_file(settings.token_path(session), session.name)
    except TokenUnavailableError as exc:
        return None, f"the stored token is {exc.state}"
    foreign = foreign_token(settings, stored)
    if foreign is not None:
        return stored, foreign[1]
    if stored.expires_at is None:
        return stored, "the stored token's expiry cannot be read"
    left = stored.seconds_left()
    if left <= renew_before:
        reason = f"the stored token expires in {format_duration(left)}" if left > 0 else "expired"
        return stored, reason
    return stored, None


def app_key_expiry(value: Any) -> datetime | None:
    """XTS's ``application_expiry_date`` (``30-12-2028``) as a date, or None."""
    for shape in ("%d-%m-%Y", "%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(str(value).strip(), shape)
        except ValueError:
            continue
    return None


def stored_from_login(result: LoginResult) -> StoredToken:
    """The token file's content for a successful login: the token, its user and expiry, and the
    answer's fields that the session's file keeps."""
    session = SESSIONS[result.session]
    extra = {name: result.result.get(name) for name, _ in session.extra_fields}
    extra.update({name: default for name, default in session.extra_fields if extra[name] is None})
    user_id = result.user_id or str(jwt_claims(result.token).get("userID") or "")
    return StoredToken.logged_in_now(
        token=result.token,
        user_id=user_id,
        session=result.session,
        api_root=result.api_root,
        expires_at=expiry_from_token(result.token),
        extra=extra,
    )


def short_life_error(session: Session, stored: StoredToken) -> ClockSkewError | None:
    """The failure of a new token that is expired, or dies within SHORT_LIFE_SECONDS, by this
    machine's clock (None for one that lives longer, or whose expiry cannot be read)."""
    if stored.expires_at is None:
        return None
    now = datetime.now().astimezone()
    left = stored.seconds_left(now)
    if left >= SHORT_LIFE_SECONDS:
        return None
    life = "is already expired" if left <= 0 else f"expires in {format_duration(left)}"
    return ClockSkewError(
        f"The new {session.label} token was saved, but by this machine's clock it {life} "
        f"(exp {stored.expires_at.isoformat()}, this machine's time "
        f"{now.isoformat(timespec='seconds')}). XTS tokens live about a day, so a wrong clock "
        "is the likely cause; bots may find the token dead."
    )


def make_account_folder(settings: Settings) -> None:
    """Create the account's own folder (``accounts/NAME``, mode 0700), where its token files
    go unless its file says otherwise; a folder that cannot be made is reported by the
    writability check that follows."""
    folder = settings.env_file.parent / settings.account
    if any(path.parent == folder for path in settings.token_files.values()):
        with contextlib.suppress(OSError):
            folder.mkdir(mode=0o700)


class RefreshRun:
    """One account's ``refresh``: lock, decide, log in, save, verify, hook (the caller
    notifies, pings and prints the closing lines)."""

    def __init__(
        self,
        settings: Settings,
        options: RefreshOptions,
        log: Log,
        redactor: Redactor,
        stop: StopRequest | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.log = log
        self.redactor = redactor
        self.stop = stop or StopRequest()
        self.deadline = Deadline(settings.deadline)
        self.warnings: list[str] = []
        # The first lock this run had to wait for (None: every lock was free at once).
        self.waited: RunLock | None = None
        self.hook_skipped = False

    def start(self) -> None:
        """The opening lines of the run (the seed's banner), and the setup warnings."""
        started = datetime.now()
        for line in (
            BANNER_RULE,
            "XTS Token Refresh Cron Job Started",
            f"Execution Time: {started:%Y-%m-%d %H:%M:%S}",
            BANNER_RULE,
        ):
            self.log.info("%s", line)
        self.log.info("Starting XTS token refresh process...")
        warn_about_setup(self.settings, self.log)

    def execute(self) -> AccountResult:
        """Refresh every configured session of this account; what came of it."""
        hook_error: HookFailedError | None = None
        try:
            outcomes, hook_error = self._refresh_locked()
        except (LocalError, InterruptedRunError) as exc:
            outcomes = [SessionOutcome(s, error=exc) for s in self.settings.sessions]
        except Exception as exc:  # a bug: the operator and the monitor must still hear of it
            self.log.exception("Unexpected error during the refresh:")
            failure = UnexpectedError(f"Unexpected error ({type(exc).__name__}: {exc}).")
            outcomes = [SessionOutcome(s, error=failure) for s in self.settings.sessions]
        errors: list[XtsRefreshError] = [
            o.error for o in outcomes if o.error and not isinstance(o.error, InterruptedRunError)
        ]
        errors += [hook_error] if hook_error else []
        if self.stop.requested:
            errors.append(self._interruption(outcomes))
        saved = [o.saved for o in outcomes if o.saved is not None]
        return AccountResult(self.settings.account, errors, saved, self.warnings)

    def _interruption(self, outcomes: Sequence[SessionOutcome]) -> InterruptedRunError:
        """The failure of a run a signal stopped: which tokens are fresh, which not renewed."""
        states = []
        for outcome in outcomes:
            label, error = outcome.session.label, outcome.error
            if error is None and outcome.saved is not None:
                states.append(f"the {label} token is fresh (renewed and saved)")
            elif error is None and outcome.kept is not None:
                states.append(f"the {label} token is fresh (the stored one is still valid)")
            elif outcome.saved is not None:
                states.append(f"the new {label} token was saved but failed (see above)")
            elif isinstance(error, InterruptedRunError):
                states.append(
                    f"the {label} token was not renewed (no login was sent; its file is unchanged)"
                )
            else:
                states.append(f"the {label} token was not renewed (see above)")
        if self.hook_skipped:
            states.append("the post-refresh hook was not run (restart the bot yourself)")
        renewed_all = all(o.error is None for o in outcomes)
        return self.stop.error(
            f"{self.stop.name} stopped the refresh after the logins under way: "
            + "; ".join(states)
            + ".",
            "Nothing else needs doing." if renewed_all and not self.hook_skipped else None,
        )

    def _refresh_locked(self) -> tuple[list[SessionOutcome], HookFailedError | None]:
        """Log in, save, verify and run the hook, all under the locks of the token files.

        The hook runs under the locks too, so a second run cannot log in again (and cut off the
        market-data stream) while the hook is restarting the bot.
        """
        if started_by_running_hook(self.settings.lock_files):
            # Waiting would deadlock: the parent holds the lock until this hook returns.
            raise hook_recursion_error()
        announce = lambda text: self.log.info("%s", text)  # noqa: E731 - a one-line callback
        if self.settings.shared_env_file is not None:
            make_account_folder(self.settings)
        with contextlib.ExitStack() as held:
            # One lock per token file, taken in sorted order, so that runs sharing some of
            # their files never each hold a lock the other waits for.
            for path in self.settings.lock_files:
                lock = RunLock(path, self.deadline.remaining(), announce, self.stop.lock_wait_error)
                held.enter_context(lock)
                if lock.waited_for is not None and self.waited is None:
                    self.waited = lock
            for session in self.settings.sessions:
                remove_stale_temporaries(self.settings.token_path(session))
            with XtsClient(self.settings, self.deadline, self.log) as client:
                outcomes = self._refresh_sessions(client)
            # A token that --verify saw rejected is nothing to restart a bot for.
            fresh = [o.session for o in outcomes if o.saved is not None and o.error is None]
            if not (fresh and self.settings.post_refresh_hook):
                return outcomes, None
            if self.stop.requested:
                self.hook_skipped = True
                self.log.warning(
                    "⚠ The post-refresh hook was not run: %s asked the run to stop.",
                    self.stop.name,
                )
                return outcomes, None
            try:
                run_hook(
                    self.settings.post_refresh_hook, self.settings, fresh, self.deadline, self.log
                )
            except HookFailedError as exc:
                return outcomes, exc
            return outcomes, None

    def _refresh_sessions(self, client: XtsClient) -> list[SessionOutcome]:
        """Decide which sessions need a login, prove their files writable, then log in.

        Every check comes before the first login: a market-data login ends the previous
        market-data session, so a token that cannot be saved must not be asked for.
        """
        decided = {s: self._keep_or_renew(client, s) for s in self.settings.sessions}
        for session in [s for s, outcome in decided.items() if outcome is None]:
            try:
                check_writable(self.settings.token_path(session), session)
            except TokenSaveError as exc:
                self.log.error("✗ %s: %s", session.title, exc.message)
                decided[session] = SessionOutcome(session, error=exc)
        outcomes = []
        for session, decision in decided.items():
            outcome = decision or self._refusal_to_log_in(session)
            if outcome is None:
                outcome = self._log_in_and_save(client, session)
            outcomes.append(outcome)
        if self.options.verify:
            outcomes = [o if self.stop.requested else self._verify(client, o) for o in outcomes]
        return outcomes

    def _refusal_to_log_in(self, session: Session) -> SessionOutcome | None:
        """The outcome of a login that must not be sent now, or None to send it.

        A login is not sent once a signal asked the run to stop, nor when this run waited for
        another run's lock and the time left cannot hold a whole request: a login whose answer
        is never read still ends the previous market-data session, and its token is lost.
        """
        label = session.label
        if self.stop.requested:
            return SessionOutcome(session, error=self.stop.error(f"No {label} login was sent."))
        left = self.deadline.remaining()
        if self.waited is None or left >= self.settings.timeout:
            return None
        failure = LockTimeoutError(
            f"Another refresh ({self.waited.waited_for}) held the lock {self.waited.path}, and "
            f"the {left:.1f} s it left before XTS_DEADLINE ({self.settings.deadline:g} s) cannot "
            f"hold a whole request (XTS_TIMEOUT={self.settings.timeout:g} s): no login was sent, "
            f"so the {label} token file is unchanged. XTS did not fail.",
        )
        self.log.error("✗ %s: %s", session.title, failure.message)
        return SessionOutcome(session, error=failure)

    def _keep_or_renew(self, client: XtsClient, session: Session) -> SessionOutcome | None:
        """The outcome of keeping the stored token under ``--if-needed``; None to log in.

        With ``--verify`` a token that passes the local checks is also put to XTS: one that XTS
        rejects (a broker restart, a login elsewhere) is renewed, one it accepts is kept, since
        a needless market-data login would cut off a streaming bot.
        """
        if not self.options.if_needed:
            return None
        kept, reason = renewal_reason(self.settings, session, self.options.renew_before)
        if reason is None and kept is not None and self.options.verify:
            self.redactor.add(kept.token)
            try:
                client.verify(kept)
            except TokenRejectedError as exc:
                reason = exc.message.rstrip(".")
            except XtsRefreshError as exc:
                self.log.error("✗ %s check: %s", session.title, exc.message)
                failure = XtsUnavailableError(
                    f"The stored {session.label} token could not be checked with XTS "
                    f"({exc.message}); it was kept, and no login was sent.",
                )
                return SessionOutcome(session, kept=kept, error=failure)
        if reason is None and kept is not None:
            checked = " and XTS accepts it" if self.options.verify else ""
            self.log.info(
                "✓ The %s is still valid until %s (%s left)%s; no login needed.",
                session.title,
                kept.expires_at.isoformat() if kept.expires_at else "?",
                format_duration(kept.seconds_left()),
                checked,
            )
            return SessionOutcome(session, kept=kept)
        self.log.info("Logging in to the %s session: %s.", session.label, reason)
        return None

    def _log_in_and_save(self, client: XtsClient, session: Session) -> SessionOutcome:
        path = self.settings.token_path(session)
        try:
            result = client.login(session)
            self.redactor.add(result.token)
            stored = stored_from_login(result)
            self._check_user(session, stored)
            save_token(path, stored)
        except XtsRefreshError as exc:
            self.log.error("✗ %s: %s", session.title, exc.message)
            return SessionOutcome(session, error=exc)
        short_lived = short_life_error(session, stored)
        if short_lived is None:
            self.log.info("✓ %s refreshed successfully!", session.title)
        self.log.info("✓ Token saved to: %s", path)
        expires = stored.expires_at.isoformat() if stored.expires_at else "unknown"
        self.log.info("  user %s, token %s, expires %s", stored.user_id, stored.masked(), expires)
        if short_lived is not None:
            self.log.error("✗ %s: %s", session.title, short_lived.message)
            return SessionOutcome(session, saved=stored, error=short_lived)
        if stored.expires_at is None:
            self._warn(
                f"The {session.label} token carries no readable expiry (exp claim); "
                "expires_at is null."
            )
        if "application_expiry_date" in stored.extra:
            self._check_app_key(session, stored.extra["application_expiry_date"])
        return SessionOutcome(session, saved=stored)

    def _check_user(self, session: Session, stored: StoredToken) -> None:
        wanted = self.settings.user_id
        if wanted and not is_user(session, stored.user_id, wanted):
            raise LoginRefusedError(
                f"The {session.label} login answered for user {stored.user_id or 'unknown'}, "
                f"not XTS_USER_ID={wanted}; nothing was saved.",
                "Check that the API key belongs to XTS_USER_ID.",
            )

    def _check_app_key(self, session: Session, value: Any) -> None:
        expiry = app_key_expiry(value)
        if expiry is None:
            return
        days = (expiry.date() - datetime.now().date()).days
        if days <= APP_KEY_WARNING_DAYS:
            when = f"in {days} day(s)" if days >= 0 else f"{-days} day(s) ago"
            self._warn(
                f"The {session.label} app key expires {when} ({value}): renew it with "
                "your broker before it stops working."
            )

    def _warn(self, text: str) -> None:
        self.log.warning("⚠ %s", text)
        self.warnings.append(text)

    def _verify(self, client: XtsClient, outcome: SessionOutcome) -> SessionOutcome:
        if outcome.saved is None or outcome.error is not None:
            return outcome
        try:
            note = client.verify(outcome.saved)
        except XtsRefreshError as exc:
            self.log.error("✗ %s check: %s", outcome.session.title, exc)
            return outcome.replaced(error=exc)
        self.log.info("✓ The new %s works: %s.", outcome.session.title, note)
        return outcome


class AccountResult(Frozen):
    """What one account's refresh came to: its failures, the tokens it saved, its warnings."""

    __slots__ = ("account", "errors", "saved", "warnings")
    account: str
    errors: tuple[XtsRefreshError, ...]
    saved: tuple[StoredToken, ...]
    warnings: tuple[str, ...]

    def __init__(
        self,
        account: str,
        errors: Sequence[XtsRefreshError],
        saved: Sequence[StoredToken],
        warnings: Sequence[str] = (),
    ) -> None:
        self._set(
            account=account, errors=tuple(errors), saved=tuple(saved), warnings=tuple(warnings)
        )

    @property
    def code(self) -> int:
        """The account's exit code: the highest of its failures, 0 without any."""
        return max((e.exit_code for e in self.errors), default=0)

    @property
    def worst(self) -> XtsRefreshError | None:
        """The failure that sets the exit code (the first of the highest), or None."""
        return max(self.errors, key=lambda e: e.exit_code) if self.errors else None

    def token_lines(self) -> list[str]:
        """One line per saved token: session, user, expiry (nothing secret)."""
        lines = []
        for stored in self.saved:
            expires = f"{stored.expires_at:%Y-%m-%d %H:%M %z}" if stored.expires_at else "unknown"
            label = SESSIONS[stored.session].label
            lines.append(f"{label}: user {stored.user_id}, expires {expires}")
        return lines


def closing_text(result: AccountResult) -> str:
    """The account's ✓ or ✗ line, with the exit code and, on failure, what to do."""
    if result.worst is not None:
        return f"✗ Token refresh failed (exit code {result.code}): {result.worst}"
    return "✓ Every configured session holds a fresh token (exit code 0)."


def _closing_line(log: Log, result: AccountResult) -> None:
    """Print the account's closing line (closing_text) at its level."""
    log.log(logging.ERROR if result.worst else logging.INFO, "%s", closing_text(result))


def _worth_a_message(telegram: TelegramSettings, results: Sequence[AccountResult]) -> bool:
    """Whether these results call for a Telegram message under TELEGRAM_NOTIFY."""
    trouble = any(r.errors or r.warnings for r in results)
    if telegram.notify == "failure":
        return trouble
    return trouble or any(r.saved for r in results)  # --if-needed that kept all: nothing new


def machine_label(settings: Settings | None) -> str:
    """How notifications name this machine: XTS_NOTIFY_LABEL, else the host name."""
    return (settings.notify_label if settings else None) or socket.gethostname()


def message_item(failure: XtsRefreshError) -> str:
    """``failure`` as a Telegram message tells it: its text cut to MESSAGE_ITEM_CHARACTERS (an
    XTS description can be pages long, and Telegram takes 4,096 characters in all), its hint
    (what to do) always whole."""
    text = failure.message
    if len(text) > MESSAGE_ITEM_CHARACTERS:
        text = text[:MESSAGE_ITEM_CHARACTERS].rstrip() + "… (cut; the log has it whole)"
    separator = "\n" if "\n" in text else " "
    return f"{text}{separator}{failure.hint}".strip()


def _single_message(result: AccountResult, label: str) -> str:
    """The Telegram message of a run of the single account (.env alone)."""
    host = label
    if result.errors:
        lines = [f"❌ XTS token refresh FAILED on {host} (exit code {result.code})"]
        lines += [f"• {message_item(e)}" for e in result.errors]
    else:
        lines = [f"✅ XTS token refreshed on {host}"]
    lines += [f"• {line}" for line in result.token_lines()]
    lines += [f"⚠ {w}" for w in result.warnings]
    return "\n".join(lines)


def _accounts_message(results: Sequence[AccountResult], label: str) -> str:
    """The Telegram message of a run of several accounts: one block per account, failures
    first, each naming the account."""
    host = label
    failed = [r for r in results if r.errors]
    code = max((r.code for r in results), default=0)
    if failed:
        lines = [
            f"❌ XTS token refresh on {host}: {len(failed)} of {len(results)} accounts FAILED "
            f"(exit code {code})"
        ]
    else:
        lines = [f"✅ XTS tokens refreshed on {host}: all {len(results)} accounts"]
    for result in sorted(results, key=lambda r: (-r.code, r.account)):
        mark = "✗" if result.errors else "✓"
        lines.append(f"{mark} {result.account}")
        lines += [f"  • {message_item(e)}" for e in result.errors]
        lines += [f"  • {line}" for line in result.token_lines()]
        if not result.errors and not result.saved:
            lines.append("  • still valid, no login needed")
        lines += [f"  ⚠ {w}" for w in result.warnings]
    return "\n".join(lines)


def refresh_account(
    settings: Settings,
    options: RefreshOptions,
    log: Log,
    redactor: Redactor,
    stop: StopRequest | None = None,
) -> int:
    """One account on its own (the single account of .env, or the demo's): the lines, the
    message and the pings as they were before accounts existed."""
    started = time.time()
    capture = ConsoleCapture()
    base = log.logger if isinstance(log, logging.LoggerAdapter) else log
    base.addHandler(capture)
    try:
        run = RefreshRun(settings, options, log, redactor, stop)
        run.start()
        pacing = Pacing(settings.retry_backoff, run.deadline)
        check = None
        if settings.healthcheck_url:
            from .alerts import HealthCheck

            check = HealthCheck(settings.healthcheck_url, pacing)
            check.start(log)
        result = _execute_in_thread(run, log)
        if settings.telegram is not None and _worth_a_message(settings.telegram, [result]):
            from .alerts import send_telegram

            message = _single_message(result, machine_label(settings))
            send_telegram(settings.telegram, redactor.redact(message), pacing, log)
        if check is not None:
            # The closing line goes into the ping's body too, though it is printed after it.
            output = capture.text() + redactor.redact(closing_text(result)) + "\n"
            check.finish(result.code, output, log)
    finally:
        base.removeHandler(capture)
    if settings.metrics_file is not None:
        from .metrics import record_runs, write_metrics

        record_runs([(settings, result.code)], started, log)
        write_metrics([settings], log)
    _closing_line(log, result)  # last, so operators can tail for it
    return result.code


def _execute_in_thread(run: RefreshRun, log: Log) -> AccountResult:
    """``run.execute()``, run in a thread of its own while the main thread waits for it (see
    _join_all), as each account of a run of several is."""
    results: list[AccountResult] = []
    worker = threading.Thread(target=lambda: results.append(run.execute()), name="xts-refresh")
    worker.start()
    _join_all([worker], run.stop, log)
    if not results:  # execute() reports every Exception itself: only a BaseException gets here
        failure = UnexpectedError("The refresh ended without a result.")
        return AccountResult(run.settings.account, [failure], [])
    return results[0]


def _refresh_many(
    selection: Selection,
    options: RefreshOptions,
    log: logging.Logger,
    redactor: Redactor,
    stop: StopRequest,
) -> int:
    """Every selected account at once, each in its own thread under its own lock: no account
    waits for another's broker, and each is bounded by the run's deadline."""
    started = time.time()
    capture = ConsoleCapture()
    log.addHandler(capture)
    pacing = run_pacing(selection.accounts)
    checks = _health_checks(selection, pacing)
    if checks:
        from .alerts import start_checks

        start_checks([check for check, _ in checks.values()], log)
    results: dict[str, AccountResult] = {}

    def refresh_in_thread(settings: Settings) -> None:
        account_log = AccountLog(log, settings.account)
        try:
            run = RefreshRun(settings, options, account_log, redactor, stop)
            run.start()
            result = run.execute()
        except Exception as exc:  # a bug: this account fails, and the others carry on
            account_log.exception("Unexpected error during the refresh:")
            failure = UnexpectedError(f"Unexpected error ({type(exc).__name__}: {exc}).")
            result = AccountResult(settings.account, [failure], [])
        results[settings.account] = result
        _closing_line(account_log, result)

    for warning in selection.warnings:
        log.warning("⚠ %s", warning)
    every_lock = tuple(path for s in selection.accounts for path in s.lock_files)
    started_by_hook = list(selection.accounts) if started_by_running_hook(every_lock) else []
    for settings in started_by_hook:
        # A refresh started by a hook: logging in again would cut off the accounts' bots.
        results[settings.account] = AccountResult(settings.account, [hook_recursion_error()], [])
        _closing_line(AccountLog(log, settings.account), results[settings.account])
    threads = [
        threading.Thread(target=refresh_in_thread, args=(s,), name=f"xts-account-{s.account}")
        for s in selection.accounts
        if s not in started_by_hook
    ]
    for thread in threads:
        thread.start()
    for name, problem in selection.broken:
        account_log = AccountLog(log, name)
        report_failure(account_log, problem)
        results[name] = AccountResult(name, [problem], [])
    _join_all(threads, stop, log)
    ordered = [results[name] for name in selection.install.select(()) if name in results]
    messages = _chat_messages(selection, ordered, redactor)
    if messages:
        from .alerts import send_telegram_messages

        send_telegram_messages(messages, pacing, log)
    summary = redactor.redact(_summary_text(ordered)) + "\n"
    log.removeHandler(capture)
    if checks:
        from .alerts import finish_checks

        finishes = [
            # Each check hears its own accounts' lines, and the run's own (the summary too).
            (check, max(results[n].code for n in names), capture.text(_prefixes(names)) + summary)
            for check, names in checks.values()
        ]
        finish_checks(finishes, log)
    if any(s.metrics_file for s in selection.accounts):
        from .metrics import record_runs, write_metrics

        record_runs([(s, results[s.account].code) for s in selection.accounts], started, log)
        write_metrics([*selection.accounts, *selection.unselected], log)
    _summary_line(log, ordered)
    return max((r.code for r in ordered), default=0)


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

    return {url: (HealthCheck(url, pacing, names), names) for url, names in names_by_url.items()}


def _prefixes(names: Sequence[str]) -> tuple[str, ...]:
    """The line prefixes of the accounts ``names`` (``[NAME] ``)."""
    return tuple(f"[{name}] " for name in names)


def _chat_messages(
    selection: Selection, ordered: Sequence[AccountResult], redactor: Redactor
) -> list[tuple[TelegramSettings, str]]:
    """The run's Telegram messages: one per chat that wants one, naming its accounts (and
    every broken one), redacted."""
    messages = []
    broken = dict(selection.broken)
    for telegram, accounts in _chats(selection):
        chat_results = [r for r in ordered if r.account in accounts or r.account in broken]
        if _worth_a_message(telegram, chat_results):
            first = next((s for s in selection.accounts if s.account in accounts), None)
            message = _accounts_message(chat_results, machine_label(first))
            messages.append((telegram, redactor.redact(message)))
    return messages


def run_pacing(accounts: Sequence[Settings]) -> Pacing:
    """When the messages and closing pings of a run of ``accounts`` may retry: with their
    shortest XTS_RETRY_BACKOFF, before the latest of their XTS_DEADLINEs, counted from now."""
    first_wait = min((s.retry_backoff for s in accounts), default=DEFAULT_RETRY_BACKOFF_SECONDS)
    seconds = max((s.deadline for s in accounts), default=DEFAULT_DEADLINE_SECONDS)
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
        url = selection.install.values.get("HEALTHCHECK_URL")
        with contextlib.suppress(ConfigError):
            own = read_env_file(Path(account_file(str(selection.install.accounts_dir), name)))
            url = own.get("HEALTHCHECK_URL") or url
        if url:
            found.append((name, url.rstrip("/")))
    return found


def _chats(selection: Selection) -> list[tuple[TelegramSettings, set[str]]]:
    """Each Telegram chat of the selected accounts, with the accounts that notify it; with
    broken accounts, the chat of ``.env`` too, so it hears of them even if no account works."""
    chats: dict[tuple[str, str, str], tuple[TelegramSettings, set[str]]] = {}
    shared = selection.shared_telegram
    if selection.broken and shared is not None:
        chats[(shared.api_url, shared.bot_token, shared.chat_id)] = (shared, set())
    for settings in selection.accounts:
        if settings.telegram is not None:
            chat = settings.telegram
            key = (chat.api_url, chat.bot_token, chat.chat_id)
            chats.setdefault(key, (chat, set()))[1].add(settings.account)
    return list(chats.values())


def one_line_reason(failure: XtsRefreshError) -> str:
    """``failure`` on one line: a message of several lines (every problem of a settings file)
    is shown above in full, so the summary keeps its first line and the hint."""
    if "\n" not in failure.message:
        return str(failure)
    first = failure.message.split("\n", 1)[0].rstrip(":")
    return f"{first} (listed above). {failure.hint}".strip()


def _summary_text(results: Sequence[AccountResult]) -> str:
    """The run's last line: every account fresh, or which failed and what to do."""
    code = max((r.code for r in results), default=0)
    failed = [r for r in results if r.worst is not None]
    if not failed:
        if len(results) == 1:
            return f"✓ Account {results[0].account} holds fresh tokens (exit code 0)."
        return f"✓ All {len(results)} accounts hold fresh tokens (exit code 0)."
    reasons = "; ".join(f"{r.account}: {one_line_reason(r.worst)}" for r in failed if r.worst)
    return f"✗ {len(failed)} of {len(results)} accounts failed (exit code {code}): {reasons}"


def _summary_line(log: logging.Logger, results: Sequence[AccountResult]) -> None:
    """Print the run's last line (_summary_text) at its level."""
    failed = any(r.worst is not None for r in results)
    log.log(logging.ERROR if failed else logging.INFO, "%s", _summary_text(results))


def check_paths_and_open_log(selection: Selection, log: logging.Logger, log_file: Path) -> None:
    """The start of a refresh: check every path it writes (WrittenPathError, exit 2, before any
    login), and only then add ``log_file`` to ``log``: a log aimed at the settings or a token
    file is never appended to (a refusal is logged there unless the log is why)."""
    try:
        check_written_paths(selection, log_file)
    except WrittenPathError as exc:
        if log_file not in exc.paths:
            add_log_file(log, log_file)
        raise
    add_log_file(log, log_file)


def refresh(
    selection: Selection, options: RefreshOptions, log: logging.Logger, redactor: Redactor
) -> int:
    """The ``refresh`` command over the selected accounts (after check_paths_and_open_log);
    the highest of their exit codes.

    SIGINT and SIGTERM stop it gently (see interrupt.py): exit 130 or 143.
    """
    with StopRequest().handling() as stop:
        if not selection.labelled:
            return refresh_account(selection.accounts[0], options, log, redactor, stop)
        return _refresh_many(selection, options, log, redactor, stop)
