"""The ``refresh`` command: lock, decide, prove the files writable, log in, save, verify, hook.

Failures inside a session are collected so that one bad session does not hide another's
result; the run exits with the highest code (README, "Exit codes"), then notifies Telegram,
pings the health check and prints its closing line, in that order.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime
from typing import Any

from .checks import (
    DEFAULT_RENEW_BEFORE,
    base_user,
    foreign_token,
    format_duration,
    warn_about_setup,
)
from .client import Deadline, LoginResult, XtsClient
from .errors import (
    HookFailedError,
    LocalError,
    LoginRefusedError,
    TokenRejectedError,
    TokenSaveError,
    TokenUnavailableError,
    UnexpectedError,
    XtsRefreshError,
    XtsUnavailableError,
)
from .notify import Redactor, ping_healthcheck, send_telegram
from .sessions import SESSIONS, Session
from .settings import Settings
from .store import (
    RunLock,
    StoredToken,
    check_writable,
    expiry_from_token,
    jwt_claims,
    read_token_file,
    remove_stale_temporaries,
    save_token,
)
from .values import Frozen

BANNER_RULE = "=" * 62
APP_KEY_WARNING_DAYS = 14


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
    return StoredToken(
        token=result.token,
        user_id=user_id,
        session=result.session,
        api_root=result.api_root,
        timestamp=datetime.now(),
        expires_at=expiry_from_token(result.token),
        extra=extra,
    )


class RefreshRun:
    """One ``refresh``: lock, log in, save, verify, hook, notify, ping."""

    def __init__(
        self, settings: Settings, options: RefreshOptions, log: logging.Logger, redactor: Redactor
    ) -> None:
        self.settings = settings
        self.options = options
        self.log = log
        self.redactor = redactor
        self.deadline = Deadline(settings.deadline)
        self.warnings: list[str] = []

    def run(self) -> int:
        """Refresh every configured session; the contract's exit code."""
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
        ping_healthcheck(self.settings.healthcheck_url, "start", self.log)
        hook_error: HookFailedError | None = None
        try:
            outcomes, hook_error = self._refresh_locked()
        except LocalError as exc:
            outcomes = [SessionOutcome(s, error=exc) for s in self.settings.sessions]
        except Exception as exc:  # a bug: the operator and the monitor must still hear of it
            self.log.exception("Unexpected error during the refresh:")
            failure = UnexpectedError(f"Unexpected error ({type(exc).__name__}: {exc}).")
            outcomes = [SessionOutcome(s, error=failure) for s in self.settings.sessions]
        code = max([o.exit_code for o in outcomes] + [hook_error.exit_code if hook_error else 0])
        self._report(outcomes, hook_error, code)
        return code

    def _refresh_locked(self) -> tuple[list[SessionOutcome], HookFailedError | None]:
        """Log in, save, verify and run the hook, all under the run lock.

        The hook runs under the lock too, so a second run cannot log in again (and cut off the
        market-data stream) while the hook is restarting the bot.
        """
        if os.environ.get("XTS_REFRESH_LOCK_HELD") == str(self.settings.lock_file):
            # Waiting would deadlock: the parent holds the lock until this hook returns.
            raise LocalError(
                "This refresh was started by XTS_POST_REFRESH_HOOK, while the refresh that "
                "runs the hook holds the lock.",
                "A hook must not run the refresher: the tokens are already fresh when it runs.",
            )
        announce = lambda text: self.log.info("%s", text)  # noqa: E731 - a one-line callback
        with RunLock(self.settings.lock_file, self.deadline.remaining(), announce):
            for session in self.settings.sessions:
                remove_stale_temporaries(self.settings.token_path(session))
            with XtsClient(self.settings, self.deadline, self.log) as client:
                outcomes = self._refresh_sessions(client)
            # A token that --verify saw rejected is nothing to restart a bot for.
            fresh = [o.session for o in outcomes if o.saved is not None and o.error is None]
            if not (fresh and self.settings.post_refresh_hook):
                return outcomes, None
            from .hook import run_hook  # most runs have no hook: its imports wait until one does

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
        outcomes = [
            outcome if outcome is not None else self._log_in_and_save(client, session)
            for session, outcome in decided.items()
        ]
        if self.options.verify:
            outcomes = [self._verify(client, o) for o in outcomes]
        return outcomes

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
        self.log.info("✓ %s refreshed successfully!", session.title)
        self.log.info("✓ Token saved to: %s", path)
        expires = stored.expires_at.isoformat() if stored.expires_at else "unknown"
        self.log.info("  user %s, token %s, expires %s", stored.user_id, stored.masked(), expires)
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
        if wanted and base_user(stored.user_id) != base_user(wanted):
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
        if outcome.saved is None:
            return outcome
        try:
            note = client.verify(outcome.saved)
        except XtsRefreshError as exc:
            self.log.error("✗ %s check: %s", outcome.session.title, exc)
            return outcome.replaced(error=exc)
        self.log.info("✓ The new %s works: %s.", outcome.session.title, note)
        return outcome

    def _report(
        self, outcomes: list[SessionOutcome], hook_error: HookFailedError | None, code: int
    ) -> None:
        """Notify, ping, then print the closing line (last, so operators can tail for it)."""
        errors = [o.error for o in outcomes if o.error] + ([hook_error] if hook_error else [])
        self._notify(outcomes, errors, code)
        ping_healthcheck(self.settings.healthcheck_url, str(code), self.log)
        if errors:
            worst = max(errors, key=lambda e: e.exit_code)
            self.log.error("✗ Token refresh failed (exit code %d): %s", code, worst)
        else:
            self.log.info("✓ Every configured session holds a fresh token (exit code 0).")

    def _notify(
        self, outcomes: list[SessionOutcome], errors: list[XtsRefreshError], code: int
    ) -> None:
        telegram = self.settings.telegram
        saved = [o.saved for o in outcomes if o.saved is not None]
        if telegram is None or not (errors or self.warnings or saved):
            return  # (--if-needed that kept every token has nothing worth a message)
        if not errors and not self.warnings and telegram.notify == "failure":
            return
        host = socket.gethostname()
        if errors:
            lines = [f"❌ XTS token refresh FAILED on {host} (exit code {code})"]
            lines += [f"• {e}" for e in errors]
        else:
            lines = [f"✅ XTS token refreshed on {host}"]
        for stored in saved:
            expires = f"{stored.expires_at:%Y-%m-%d %H:%M %z}" if stored.expires_at else "unknown"
            label = SESSIONS[stored.session].label
            lines.append(f"• {label}: user {stored.user_id}, expires {expires}")
        lines += [f"⚠ {w}" for w in self.warnings]
        send_telegram(telegram, self.redactor.redact("\n".join(lines)), self.log)


def refresh(
    settings: Settings, options: RefreshOptions, log: logging.Logger, redactor: Redactor
) -> int:
    """The ``refresh`` command; its exit code."""
    return RefreshRun(settings, options, log, redactor).run()
