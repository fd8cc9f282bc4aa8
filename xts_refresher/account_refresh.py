"""One account's ``refresh``: lock, decide, prove the files writable, log in, save, verify, hook.

Failures inside a session are collected so that one bad session does not hide another's
result; what the account's run came to is an AccountResult (outcome.py tells it), and
refresh.py runs every selected account this way, each in a thread of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .answers import LoginResult
from .client import XtsClient
from .errors import (
    SETTINGS_FILE,
    ClockSkewError,
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
from .interrupt import StopRequest
from .locks import RunLock
from .outcome import (
    HOOK_NOT_RUN_STATE,
    NOTHING_TO_DO_HINT,
    AccountResult,
    interruption_text,
    session_failure_line,
    session_state,
)
from .sessions import INTERACTIVE, SESSIONS, Session
from .settings import (
    BROWSER_LOGIN,
    Settings,
    foreign_token,
    lock_beside,
    warn_about_setup,
)
from .shown_time import shown_time
from .store import (
    DEFAULT_RENEW_BEFORE,
    GROUP_TOKEN_FILE_MODE,
    StoredToken,
    app_key_expiry,
    check_writable,
    expiry_from_token,
    format_duration,
    give_to_group,
    is_user,
    jwt_claims,
    read_token_file,
    remove_stale_temporaries,
    save_token,
)
from .timebox import Deadline
from .values import Frozen, plural

BANNER_RULE = "=" * 62

APP_KEY_WARNING_DAYS = 14
# A new token that dies sooner than this by this machine's clock is not called fresh: XTS
# tokens live about a day, so the clock (this machine's, or the broker's) is wrong.
SHORT_LIFE_SECONDS = 3600.0

if TYPE_CHECKING:
    from .console import Log, Redactor


def print_banner(log: Log) -> None:
    """The seed's banner, which opens a run (once, whatever the number of accounts)."""
    for line in (
        BANNER_RULE,
        "XTS Token Refresh Cron Job Started",
        f"Execution Time: {shown_time(datetime.now())}",
        BANNER_RULE,
    ):
        log.info("%s", line)


class LoginOptions(Frozen):
    """How ``login`` was asked to run: how long to wait for the holder, and whether the session
    is pasted on standard input instead of received by the callback."""

    __slots__ = ("paste", "wait")
    wait: float
    paste: bool

    def __init__(self, wait: float, paste: bool = False) -> None:
        self._set(wait=wait, paste=paste)


class RefreshOptions(Frozen):
    """How ``refresh`` was asked to run; ``login`` is set for the ``login`` command, which
    runs a browser account's refresh with its holder at hand."""

    __slots__ = ("if_needed", "login", "renew_before", "verify")
    if_needed: bool
    renew_before: float
    verify: bool
    login: LoginOptions | None

    def __init__(
        self,
        if_needed: bool = False,
        renew_before: float = DEFAULT_RENEW_BEFORE,
        verify: bool = False,
        login: LoginOptions | None = None,
    ) -> None:
        self._set(if_needed=if_needed, renew_before=renew_before, verify=verify, login=login)


def holder_seconds(settings: Settings, options: RefreshOptions) -> float:
    """The seconds a browser account's run may wait for its holder beyond XTS_DEADLINE (a
    token command runs within the deadline); 0 for a key account."""
    if settings.login != BROWSER_LOGIN:
        return 0.0
    if options.login is not None:
        return options.login.wait
    return 0.0 if settings.access_token_command else settings.login_wait


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
        f"(exp {shown_time(stored.expires_at)}, this machine's time "
        f"{shown_time(now)}). XTS tokens live about a day, so a wrong clock "
        "is the likely cause; bots may find the token dead."
    )


GROUP_FOLDER_MODE = 0o750  # XTS_TOKEN_GROUP: the group's members may reach the token files


def make_account_folder(settings: Settings) -> str | None:
    """Create the account's own folder (``accounts/NAME``), where its token files go unless its
    file says otherwise: mode 0700, or with XTS_TOKEN_GROUP 0750 and owned by that group (an
    existing folder of this user's is given them too, so that setting the group later lets the
    bots in). A folder that cannot be made is reported by the writability check that follows;
    returns a warning when the group cannot be given to it, else None."""
    folder = settings.env_file.parent / settings.account
    if not any(path.parent == folder for path in settings.token_files.values()):
        return None
    with contextlib.suppress(OSError):
        folder.mkdir(mode=0o700)
    group = settings.token_group
    if group is None:
        return None
    try:
        give_to_group(folder, group.gid, GROUP_FOLDER_MODE)
    except FileNotFoundError:
        return None  # not made: the writability check says why
    except OSError as exc:
        return (
            f"The folder {folder} could not be given to the group {group.name} "
            f"(XTS_TOKEN_GROUP): {exc.strerror}; the group's bots may not reach its token files."
        )
    return None


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
        self.deadline = Deadline(settings.deadline + holder_seconds(settings, options))
        self.warnings: list[str] = []
        # The first lock this run had to wait for (None: every lock was free at once).
        self.waited: RunLock | None = None
        # Sessions whose own lock could not be made (its folder not writable): no login.
        self.unlocked: dict[Session, TokenSaveError] = {}
        self.hook_skipped = False

    def start(self, banner: bool = True) -> None:
        """The account's opening lines: the seed's banner (unless the run printed it once for
        all its accounts), the seed's opening line, and the setup warnings."""
        if banner:
            print_banner(self.log)
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
        states = [
            session_state(
                o.session.label,
                fresh=o.error is None and (o.saved is not None or o.kept is not None),
                saved=o.saved is not None,
                interrupted=isinstance(o.error, InterruptedRunError),
            )
            for o in outcomes
        ]
        if self.hook_skipped:
            states.append(HOOK_NOT_RUN_STATE)
        renewed_all = all(o.error is None for o in outcomes)
        return self.stop.error(
            interruption_text(self.stop.name, states),
            NOTHING_TO_DO_HINT if renewed_all and not self.hook_skipped else None,
        )

    def _refresh_locked(self) -> tuple[list[SessionOutcome], HookFailedError | None]:
        """Log in, save, verify and run the hook, all under the locks of the token files.

        The hook runs under the locks too, so a second run cannot log in again (and cut off the
        market-data stream) while the hook is restarting the bot.
        """
        announce = lambda text: self.log.info("%s", text)  # noqa: E731 - a one-line callback
        if self.settings.shared_env_file is not None:
            problem = make_account_folder(self.settings)
            if problem is not None:
                self._warn(problem)
        with contextlib.ExitStack() as held:
            # One lock per token file, taken in sorted order, so that runs sharing some of
            # their files never each hold a lock the other waits for.
            for path in self.settings.lock_files:
                lock = RunLock(path, self.deadline.remaining(), announce, self.stop.lock_wait_error)
                try:
                    held.enter_context(lock)
                except TokenSaveError as exc:
                    if path == self.settings.lock_file:
                        raise  # the run lock: no session may go on without it
                    # A session whose folder cannot be written gets no login, as the
                    # writability check would decide; the other session is still refreshed.
                    for session in self.settings.sessions:
                        if lock_beside(self.settings.token_path(session)) == path:
                            self.unlocked[session] = exc
                    continue
                if lock.waited_for is not None and self.waited is None:
                    self.waited = lock
            for session in self.settings.sessions:
                remove_stale_temporaries(self.settings.token_path(session))
                self._share_kept_token(session)
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
            from .hook import run_hook  # most runs have no hook: only theirs import it

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
                if session in self.unlocked:
                    raise self.unlocked[session]
            except TokenSaveError as exc:
                self.report(session.title, exc)
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
        self.report(session.title, failure)
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
                self.report(f"{session.title} check", exc)
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
                shown_time(kept.expires_at) if kept.expires_at else "?",
                format_duration(kept.seconds_left()),
                checked,
            )
            return SessionOutcome(session, kept=kept)
        self.log.info("Logging in to the %s session: %s.", session.label, reason)
        return None

    def _log_in_and_save(self, client: XtsClient, session: Session) -> SessionOutcome:
        if session is INTERACTIVE and self.settings.login == BROWSER_LOGIN:
            from .browser_login import holder_session  # browser accounts' runs only

            return holder_session(self, client)
        try:
            result = client.login(session)
        except XtsRefreshError as exc:
            self.report(session.title, exc)
            return SessionOutcome(session, error=exc)
        return self.save_login(session, result)

    def save_login(
        self,
        session: Session,
        result: LoginResult,
        prove: Callable[[StoredToken], object] | None = None,
    ) -> SessionOutcome:
        """Check the user of a successful login, ``prove`` its token (when given: a token that
        came from a browser is put to XTS first), save it, and tell it; the outcome."""
        path = self.settings.token_path(session)
        try:
            self.redactor.add(result.token)
            stored = stored_from_login(result)
            self._check_user(session, stored)
            if prove is not None:
                prove(stored)
            group = self.settings.token_group
            save_token(path, stored, group.gid if group else None)
        except XtsRefreshError as exc:
            self.report(session.title, exc)
            return SessionOutcome(session, error=exc)
        short_lived = short_life_error(session, stored)
        if short_lived is None:
            self.log.info("✓ %s refreshed successfully!", session.title)
        self.log.info("✓ Token saved to: %s", path)
        expires = shown_time(stored.expires_at) if stored.expires_at else "unknown"
        self.log.info("  user %s, token %s, expires %s", stored.user_id, stored.masked(), expires)
        if short_lived is not None:
            self.report(session.title, short_lived)
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
            browser = session is INTERACTIVE and self.settings.login == BROWSER_LOGIN
            raise LoginRefusedError(
                f"The {session.label} login answered for user {stored.user_id or 'unknown'}, "
                f"not XTS_USER_ID={wanted}; nothing was saved.",
                f"Sign in on the broker's page as {wanted} (or fix XTS_USER_ID in {SETTINGS_FILE})."
                if browser
                else f"Check that the API key belongs to XTS_USER_ID (in {SETTINGS_FILE}).",
            )

    def _check_app_key(self, session: Session, value: Any) -> None:
        expiry = app_key_expiry(value)
        if expiry is None:
            return
        days = (expiry.date() - datetime.now().date()).days
        if days <= APP_KEY_WARNING_DAYS:
            when = f"in {plural(days, 'day')}" if days >= 0 else f"{plural(-days, 'day')} ago"
            self._warn(
                f"The {session.label} app key expires {when} ({value}): renew it with "
                "your broker before it stops working."
            )

    def report(self, what: str, failure: XtsRefreshError, whole: bool = False) -> None:
        """Log the ✗ line of ``what`` (a session) failing: its message (``whole``: and its
        hint), naming the account's broker when the failure concerns it; its hint names the
        account's own settings file, as the closing line's will."""
        failure.place(self.settings.broker, self.settings.shown_env_file)
        broker = self.settings.broker if failure.concerns_broker else None
        text = str(failure) if whole else failure.message
        self.log.error("%s", session_failure_line(what, broker, text))

    def _share_kept_token(self, session: Session) -> None:
        """With XTS_TOKEN_GROUP, give the token file already there to the group (mode 0640),
        so that a token kept by ``--if-needed`` is readable by the group's bots at once."""
        group = self.settings.token_group
        if group is None or session in self.unlocked:
            return
        path = self.settings.token_path(session)
        try:
            give_to_group(path, group.gid, GROUP_TOKEN_FILE_MODE)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._warn(
                f"The token file {path} could not be given to the group {group.name} "
                f"(XTS_TOKEN_GROUP): {exc.strerror}; its next save gives it."
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
            self.report(f"{outcome.session.title} check", exc, whole=True)
            return outcome.replaced(error=exc)
        self.log.info("✓ The new %s works: %s.", outcome.session.title, note)
        return outcome
