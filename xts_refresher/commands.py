"""The commands that talk to XTS: ``refresh``, ``status`` and ``check-config``.

Each takes validated Settings and returns the process's exit code; failures inside a session
are collected so that one bad session does not hide another's result, and the run exits with
the highest code (README, "Exit codes").
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any
from urllib.parse import urlsplit

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
from .settings import APP_DIR, SECRET_VARIABLES, Settings, env_file_is_exposed
from .store import (
    SESSION_LABELS,
    RunLock,
    StoredToken,
    check_writable,
    expiry_from_token,
    jwt_claims,
    read_token_file,
    remove_stale_temporaries,
    save_token,
)

BANNER_RULE = "=" * 62
DEFAULT_RENEW_BEFORE = 2 * 3600.0
APP_KEY_WARNING_DAYS = 14
HOOK_MAX_SECONDS = 120.0
HOOK_MIN_SECONDS = 10.0
SESSION_TITLES = MappingProxyType(
    {"interactive": "XTS token", "marketdata": "XTS market-data token"}
)


@dataclass(frozen=True)
class RefreshOptions:
    """How ``refresh`` was asked to run."""

    if_needed: bool = False
    renew_before: float = DEFAULT_RENEW_BEFORE
    verify: bool = False


@dataclass(frozen=True)
class SessionOutcome:
    """What a run did with one session: saved a token, skipped it, or failed."""

    session: str
    saved: StoredToken | None = None
    kept: StoredToken | None = None
    error: XtsRefreshError | None = None

    @property
    def exit_code(self) -> int:
        """0 unless the session failed."""
        return self.error.exit_code if self.error else 0


# -- small helpers ------------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """``seconds`` in human units: ``23h 59m``, ``12m``, ``45s``, ``2d 3h``."""
    seconds = abs(int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def base_user(user_id: str) -> str:
    """The user part of an XTS userID (market data appends ``_<suffix>``), upper-cased."""
    return user_id.split("_", 1)[0].strip().upper()


def is_loopback_url(url: str) -> bool:
    """True when ``url`` names this machine."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_about_setup(settings: Settings, log: logging.Logger) -> None:
    """The warnings every run repeats until the operator fixes them."""
    if env_file_is_exposed(settings.env_file):
        log.warning(
            "⚠ %s can be read by other users: run `chmod 600 %s`.",
            settings.env_file,
            settings.env_file,
        )
    if not settings.verify_ssl and settings.ca_bundle is None:
        log.warning(
            "⚠ TLS certificate checks are OFF (XTS_VERIFY_SSL=false): anyone on the "
            "network path can read your API secret. Prefer XTS_CA_BUNDLE."
        )
    urls = {"XTS_API_ROOT": settings.api_root, "XTS_HOSTLOOKUP_URL": settings.hostlookup_url}
    if settings.telegram is not None:
        urls["TELEGRAM_API_URL"] = settings.telegram.api_url
    for name, url in urls.items():
        if url and url.lower().startswith("http://") and not is_loopback_url(url):
            log.warning(
                "⚠ %s uses plain http: secrets cross the network unencrypted. Use https.", name
            )


def app_key_expiry(value: Any) -> datetime | None:
    """XTS's ``application_expiry_date`` (``30-12-2028``) as a date, or None."""
    for shape in ("%d-%m-%Y", "%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(str(value).strip(), shape)
        except ValueError:
            continue
    return None


def foreign_token(settings: Settings, stored: StoredToken) -> tuple[str, str] | None:
    """The state and reason when ``stored`` belongs to another user or API root, else None.

    With host lookup the interactive root is whatever the lookup assigned, so it is not compared.
    """
    if settings.user_id and base_user(stored.user_id) != base_user(settings.user_id):
        return "wrong-user", (
            f"the stored token is for user {stored.user_id or 'unknown'}, "
            f"not XTS_USER_ID={settings.user_id}"
        )
    checks_root = stored.session == "marketdata" or not settings.hostlookup_url
    if checks_root and stored.api_root.rstrip("/") != settings.api_root:
        return "wrong-root", (
            f"the stored token is for {stored.api_root or 'an unknown API root'}, "
            f"not XTS_API_ROOT={settings.api_root}"
        )
    return None


def renewal_reason(
    settings: Settings, session: str, renew_before: float
) -> tuple[StoredToken | None, str | None]:
    """The stored token of ``session`` (None when unreadable), and why ``--if-needed`` must
    log in; the reason is None when the stored token will do. The file is read once."""
    try:
        stored = read_token_file(settings.token_path(session), session)
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
    """The token file's content for a successful login."""
    if result.session == "interactive":
        extra = {
            "isInvestorClient": result.result.get("isInvestorClient"),
            "clientCodes": result.result.get("clientCodes") or [],
        }
    else:
        extra = {"application_expiry_date": result.result.get("application_expiry_date")}
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


def run_hook(
    command: str, settings: Settings, sessions: list[str], deadline: Deadline, log: logging.Logger
) -> None:
    """Run XTS_POST_REFRESH_HOOK; HookFailedError when it fails or outlives its time.

    The hook sees where the tokens are, never the tokens or the API secrets themselves.
    """
    import signal  # imported here: most runs have no hook, and every import costs start-up
    import subprocess
    import tempfile

    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
    env.update(
        XTS_TOKEN_FILE=str(settings.token_file),
        XTS_MARKETDATA_TOKEN_FILE=str(settings.marketdata_token_file),
        XTS_REFRESHED_SESSIONS=",".join(sessions),
        XTS_REFRESH_LOCK_HELD=str(settings.lock_file),
    )
    limit = min(HOOK_MAX_SECONDS, max(HOOK_MIN_SECONDS, deadline.remaining()))
    log.info("Running the post-refresh hook...")
    # Output goes to a file, not a pipe: a hook that starts the bot in the background leaves
    # the bot holding its output, and waiting for a pipe to close would wait for the bot.
    with tempfile.TemporaryFile() as output:
        try:
            hook = subprocess.Popen(  # noqa: S602 - the operator's own shell command, by design
                command,
                shell=True,
                env=env,
                cwd=APP_DIR,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise HookFailedError(f"The hook could not start: {exc.strerror}.") from None
        try:
            hook.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(hook.pid, signal.SIGKILL)
            hook.wait()
            _log_hook_output(output, log)
            raise HookFailedError(
                f"The post-refresh hook did not finish within {limit:.0f} s and was stopped."
            ) from None
        _log_hook_output(output, log)
    if hook.returncode != 0:
        raise HookFailedError(f"The post-refresh hook failed with exit code {hook.returncode}.")
    log.info("✓ Post-refresh hook finished.")


def _log_hook_output(output: IO[bytes], log: logging.Logger) -> None:
    size = output.seek(0, os.SEEK_END)
    output.seek(max(0, size - 64_000))  # the tail is what says why a hook failed
    for line in output.read().decode("utf-8", "replace").splitlines()[-50:]:
        log.info("  hook: %s", line)


# -- refresh ------------------------------------------------------------------------------------


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
        outcomes: list[SessionOutcome] = []
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
        lock = RunLock(self.settings.lock_file)
        lock.acquire(self.deadline.remaining(), on_wait=lambda text: self.log.info("%s", text))
        try:
            for session in self.settings.sessions:
                remove_stale_temporaries(self.settings.token_path(session))
            client = XtsClient(self.settings, self.deadline, self.log)
            try:
                outcomes = self._refresh_sessions(client)
            finally:
                client.close()
            # A token that --verify saw rejected is nothing to restart a bot for.
            fresh = [o.session for o in outcomes if o.saved is not None and o.error is None]
            if not (fresh and self.settings.post_refresh_hook):
                return outcomes, None
            try:
                run_hook(
                    self.settings.post_refresh_hook, self.settings, fresh, self.deadline, self.log
                )
            except HookFailedError as exc:
                return outcomes, exc
            return outcomes, None
        finally:
            lock.release()

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
                self.log.error("✗ %s: %s", SESSION_TITLES[session], exc.message)
                decided[session] = SessionOutcome(session, error=exc)
        outcomes = [
            outcome if outcome is not None else self._log_in_and_save(client, session)
            for session, outcome in decided.items()
        ]
        if self.options.verify:
            outcomes = [self._verify(client, o) for o in outcomes]
        return outcomes

    def _keep_or_renew(self, client: XtsClient, session: str) -> SessionOutcome | None:
        """The outcome of keeping the stored token under ``--if-needed``; None to log in.

        With ``--verify`` a token that passes the local checks is also put to XTS: one that XTS
        rejects (a broker restart, a login elsewhere) is renewed, one it accepts is kept, since
        a needless market-data login would cut off a streaming bot.
        """
        if not self.options.if_needed:
            return None
        title = SESSION_TITLES[session]
        kept, reason = renewal_reason(self.settings, session, self.options.renew_before)
        if reason is None and kept is not None and self.options.verify:
            self.redactor.add(kept.token)
            try:
                client.verify(kept)
            except TokenRejectedError as exc:
                reason = exc.message.rstrip(".")
            except XtsRefreshError as exc:
                self.log.error("✗ %s check: %s", title, exc.message)
                failure = XtsUnavailableError(
                    f"The stored {SESSION_LABELS[session]} token could not be checked with "
                    f"XTS ({exc.message}); it was kept, and no login was sent.",
                )
                return SessionOutcome(session, kept=kept, error=failure)
        if reason is None and kept is not None:
            checked = " and XTS accepts it" if self.options.verify else ""
            self.log.info(
                "✓ The %s is still valid until %s (%s left)%s; no login needed.",
                title,
                kept.expires_at.isoformat() if kept.expires_at else "?",
                format_duration(kept.seconds_left()),
                checked,
            )
            return SessionOutcome(session, kept=kept)
        self.log.info("Logging in to the %s session: %s.", SESSION_LABELS[session], reason)
        return None

    def _log_in_and_save(self, client: XtsClient, session: str) -> SessionOutcome:
        title = SESSION_TITLES[session]
        path = self.settings.token_path(session)
        try:
            result = client.login(session)
            self.redactor.add(result.token)
            stored = stored_from_login(result)
            self._check_user(stored)
        except XtsRefreshError as exc:
            self.log.error("✗ %s: %s", title, exc.message)
            return SessionOutcome(session, error=exc)
        try:
            save_token(path, stored)
        except TokenSaveError as exc:
            self.log.error("✗ %s: %s", title, exc.message)
            return SessionOutcome(session, error=exc)
        self.log.info("✓ %s refreshed successfully!", title)
        self.log.info("✓ Token saved to: %s", path)
        expires = stored.expires_at.isoformat() if stored.expires_at else "unknown"
        self.log.info("  user %s, token %s, expires %s", stored.user_id, stored.masked(), expires)
        if stored.expires_at is None:
            self._warn(
                f"The {SESSION_LABELS[session]} token carries no readable expiry (exp claim); "
                "expires_at is null."
            )
        if session == "marketdata":
            self._check_app_key(stored.extra.get("application_expiry_date"))
        return SessionOutcome(session, saved=stored)

    def _check_user(self, stored: StoredToken) -> None:
        wanted = self.settings.user_id
        if wanted and base_user(stored.user_id) != base_user(wanted):
            raise LoginRefusedError(
                f"The {stored.session} login answered for user {stored.user_id or 'unknown'}, "
                f"not XTS_USER_ID={wanted}; nothing was saved.",
                "Check that the API key belongs to XTS_USER_ID.",
            )

    def _check_app_key(self, value: Any) -> None:
        expiry = app_key_expiry(value)
        if expiry is None:
            return
        days = (expiry.date() - datetime.now().date()).days
        if days <= APP_KEY_WARNING_DAYS:
            when = f"in {days} day(s)" if days >= 0 else f"{-days} day(s) ago"
            self._warn(
                f"The market-data app key expires {when} ({value}): renew it with "
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
            self.log.error("✗ %s check: %s", SESSION_TITLES[outcome.session], exc)
            return SessionOutcome(outcome.session, saved=outcome.saved, error=exc)
        self.log.info("✓ The new %s works: %s.", SESSION_TITLES[outcome.session], note)
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
        saved = [o for o in outcomes if o.saved is not None]
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
        for stored in (o.saved for o in saved if o.saved is not None):
            expires = f"{stored.expires_at:%Y-%m-%d %H:%M %z}" if stored.expires_at else "unknown"
            lines.append(f"• {stored.session}: user {stored.user_id}, expires {expires}")
        lines += [f"⚠ {w}" for w in self.warnings]
        send_telegram(telegram, self.redactor.redact("\n".join(lines)), self.log)


def refresh(
    settings: Settings, options: RefreshOptions, log: logging.Logger, redactor: Redactor
) -> int:
    """The ``refresh`` command; its exit code."""
    return RefreshRun(settings, options, log, redactor).run()


# -- status -------------------------------------------------------------------------------------


def session_report(settings: Settings, session: str, renew_before: float) -> dict[str, Any]:
    """One session's entry of ``status --json`` (see README, "status --json")."""
    path = settings.token_path(session)
    report: dict[str, Any] = {
        "session": session,
        "state": "missing",
        "usable": False,
        "path": str(path),
        "user_id": None,
        "refreshed_at": None,
        "expires_at": None,
        "seconds_left": None,
        "time_left": None,
        "verified": None,
        "message": None,
    }
    try:
        stored = read_token_file(path, session)
    except TokenUnavailableError as exc:
        report.update(state=exc.state, message=exc.message)
        return report
    left = stored.seconds_left()
    report.update(
        user_id=stored.user_id,
        refreshed_at=f"{stored.refreshed_at:%Y-%m-%d %H:%M:%S}",
        expires_at=stored.expires_at.isoformat() if stored.expires_at else None,
        seconds_left=int(left),
        time_left=format_duration(left),
    )
    foreign = foreign_token(settings, stored)
    if left <= 0:
        report.update(state="expired", message=f"Expired {format_duration(left)} ago.")
    elif foreign is not None:
        report.update(state=foreign[0], message=f"{foreign[1][0].upper()}{foreign[1][1:]}.")
    elif left <= renew_before:
        report.update(state="expiring", usable=True)
    else:
        report.update(state="fresh", usable=True)
    if stored.expires_at is None and report["message"] is None:
        report["message"] = "The token carries no readable expiry: assumed 24 h after the login."
    return report


STATUS_QUICK_SECONDS = 5.0


def status(
    settings: Settings, *, verify: bool, as_json: bool, log: logging.Logger, redactor: Redactor
) -> int:
    """The ``status`` command: 0 when every configured session is usable, else 1.

    With ``verify``, every usable token must also be accepted by XTS; one that XTS could not be
    asked about is "not checked" (``verified`` null), which is not 0 either. With ``as_json``
    the standard output holds the JSON document alone (``cli`` sends the console's log lines,
    warnings included, to standard error).
    """

    def show(text: str) -> None:
        # XTS wrote some of these messages: mask anything shaped like a token before printing.
        print(redactor.redact(text))

    warn_about_setup(settings, log)
    reports = [session_report(settings, s, DEFAULT_RENEW_BEFORE) for s in settings.sessions]
    if verify:
        _verify_reports(settings, reports, log, redactor)
    usable = all(r["usable"] for r in reports)
    unchecked = verify and any(r["usable"] and r["verified"] is None for r in reports)
    ok = usable and not unchecked
    if as_json:
        document = {
            "ok": ok,
            "checked_at": datetime.now().astimezone().isoformat(),
            "verified": verify,
            "sessions": reports,
        }
        show(json.dumps(document, indent=2))
        return 0 if ok else 1
    for r in reports:
        mark = "✓" if r["usable"] and not (verify and r["verified"] is None) else "✗"
        show(f"{mark} {r['session']:<12} {r['state']:<10} user {r['user_id'] or '-'}")
        left = f" ({r['time_left']} left)" if (r["seconds_left"] or 0) > 0 else ""
        when = f"refreshed at {r['refreshed_at'] or '-'}, expires at {r['expires_at'] or '-'}"
        show(f"    {when}{left}")
        show(f"    file {r['path']}")
        if verify and r["usable"]:
            show(f"    checked with XTS: {_verification_words(r['verified'])}")
        elif verify and r["state"] == "rejected":
            show(f"    checked with XTS: {_verification_words(False)}")
        if r["message"]:
            show(f"    {r['message']}")
    if not usable:
        show("✗ At least one session cannot trade: run `xts_token_refresh.py` to log in again.")
    elif unchecked:
        show(
            "✗ XTS could not be asked about at least one token (not checked): check the network "
            "and the broker's status, then run `xts_token_refresh.py status --verify` again."
        )
    return 0 if ok else 1


def _verification_words(verified: bool | None) -> str:
    """How the console names the outcome of asking XTS about a token."""
    if verified is None:
        return "not checked (XTS could not be asked)"
    return "accepted" if verified else "NOT accepted"


def _verify_reports(
    settings: Settings, reports: list[dict[str, Any]], log: logging.Logger, redactor: Redactor
) -> None:
    """Ask XTS about every usable token, quickly: people and monitors wait for the answer.

    One retry at most, each request at most STATUS_QUICK_SECONDS; a token XTS could not be
    asked about keeps ``verified`` None and gets a message about the network, never
    ``rejected``.
    """
    quick = replace(
        settings,
        retries=min(settings.retries, 1),
        timeout=min(settings.timeout, STATUS_QUICK_SECONDS),
        retry_backoff=min(settings.retry_backoff, 1.0),
    )
    client = XtsClient(quick, Deadline(min(settings.deadline, 3 * STATUS_QUICK_SECONDS)), log)
    try:
        for report in reports:
            if not report["usable"]:
                continue
            stored = read_token_file(Path(report["path"]), report["session"])
            redactor.add(stored.token)
            try:
                note = client.verify(stored)
            except TokenRejectedError as exc:
                report.update(
                    state="rejected",
                    usable=False,
                    verified=False,
                    message=f"{exc.message} Run `xts_token_refresh.py` to log in again.",
                )
            except XtsRefreshError as exc:
                report["message"] = (
                    f"Not checked: XTS could not be asked ({exc.message.rstrip('.')}). "
                    "Check the network and the broker's status."
                )
            else:
                report["verified"] = True
                if note != "accepted":
                    report["message"] = f"{note[0].upper()}{note[1:]}."
    finally:
        client.close()


# -- check-config -------------------------------------------------------------------------------


def _folder_problem(path: Path) -> str | None:
    folder = path.parent
    if not folder.is_dir():
        return f"the folder {folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable by this user"
    if path.is_dir():
        return f"{path} is a folder"
    return None


def _report_probe(url: str, status: int, log: logging.Logger) -> None:
    """Say that ``url`` was reached; an error status is shown without a tick beside it.

    An API root commonly answers 404 (only its API paths exist), so reaching it is what counts;
    a 5xx says the server behind it is failing.
    """
    scheme = urlsplit(url).scheme
    if status < 400:
        log.info("✓ %s is reachable over %s (HTTP %d).", url, scheme, status)
    elif status < 500:
        log.info("✓ %s is reachable over %s.", url, scheme)
        log.info("  (It answered HTTP %d, as an API root may: only its API paths exist.)", status)
    else:
        log.warning(
            "⚠ %s is reachable over %s, but answered HTTP %d: the broker's server may be "
            "failing; check its status before the next refresh.",
            url,
            scheme,
            status,
        )


def check_config(settings: Settings, log: logging.Logger) -> int:
    """The ``check-config`` command: 0 when ready, 2 for settings or paths, 3 for the network."""
    log.info(
        "✓ Settings are valid (%s). Sessions: %s.", settings.env_file, ", ".join(settings.sessions)
    )
    warn_about_setup(settings, log)
    paths = [("token file", settings.token_file), ("log file", settings.log_file)]
    if settings.marketdata is not None:
        paths.insert(1, ("market-data token file", settings.marketdata_token_file))
    problems = 0
    for label, path in paths:
        problem = _folder_problem(path)
        if problem:
            log.error("✗ The %s %s cannot be written: %s.", label, path, problem)
            problems += 1
        else:
            log.info("✓ The %s %s can be written.", label, path)
    if problems:
        log.error(
            "✗ Fix the paths above (XTS_TOKEN_FILE, XTS_MARKETDATA_TOKEN_FILE, XTS_LOG_FILE)."
        )
        return 2
    client = XtsClient(settings, Deadline(settings.deadline), log)
    try:
        for url in filter(None, (settings.api_root, settings.hostlookup_url)):
            _report_probe(url, client.probe(url), log)
    except XtsRefreshError as exc:
        log.error("✗ %s", exc)
        return exc.exit_code
    finally:
        client.close()
    log.info("✓ Ready: run `xts_token_refresh.py` to log in (check-config never logs in).")
    return 0
