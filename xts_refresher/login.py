"""The ``login`` command, and the wait for a browser account's holder that it shares with
``refresh`` (XTS_LOGIN_WAIT).

The wait prints the link to the broker's login page (and sends it to Telegram when a chat is
configured), listens on the callback address, and ends when the page hands the session over,
when time is up, or when a signal asks the run to stop. The session is made a saved token in
the callback's own request (browser_login.accept_session), so the browser is told who is
logged in only once the token is saved. Several accounts that wait on one listen address
share one listener (the ``state`` of each link says whose a callback is).

The link carries the interactive app key: the broker's page needs it, and the holder must get
the link. So the link's own line on the console and the Telegram message that carries it are
the only places the app key appears; the log file, the health-check ping and every other line
have it masked. The link also carries a one-time ``state``: a callback without it is refused.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .account_refresh import LoginOptions, RefreshOptions, SessionOutcome
from .browser_login import MAX_SESSION_BYTES, accept_session, login_command_text
from .console import AccountLog
from .errors import ConfigError, HolderLoginError, UnexpectedError
from .interrupt import StopRequest
from .sessions import INTERACTIVE
from .settings import BROWSER_LOGIN, Settings
from .store import format_duration
from .timebox import Pacing
from .urls import is_loopback_url

if TYPE_CHECKING:
    import logging

    from .account_refresh import RefreshRun
    from .accounts import Selection
    from .callback import CallbackListener
    from .client import XtsClient
    from .console import Log, Redactor

DEFAULT_LOGIN_WAIT_SECONDS = 600.0
# How often a wait looks up to notice a signal.
WAIT_POLL_SECONDS = 0.2

# The listeners open in this process, by listen address, with how many waits use each.
_listeners: dict[tuple[str, int], tuple[CallbackListener, list[int]]] = {}
_listeners_lock = threading.Lock()


@contextlib.contextmanager
def shared_listener(host: str, port: int, log: Log) -> Iterator[CallbackListener]:
    """The callback listener on ``host:port``, opened by the first wait that needs it and
    closed when the last one ends. Binding fails with the listener's ConfigError (exit 2)."""
    from .callback import CallbackListener

    key = (host, port)
    with _listeners_lock:
        if key not in _listeners:
            listener = CallbackListener(host, port, log)
            listener.__enter__()
            _listeners[key] = (listener, [0])
        listener, users = _listeners[key]
        users[0] += 1
    try:
        yield listener
    finally:
        with _listeners_lock:
            users[0] -= 1
            if users[0] == 0:
                del _listeners[key]
                listener.__exit__(None, None, None)


class _Arrival:
    """The session of one waiting account: the callback's request begins it (once, and only
    while the wait is open) and finishes it with its outcome; the wait ends on that, or closes
    when time is up (a callback under way is let finish: its token may be saved already)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._open = True
        self._busy = False
        self.outcome: SessionOutcome | None = None

    def begin(self) -> bool:
        """True when a callback may go on to save its session (the wait is open, no other)."""
        with self._lock:
            if not self._open or self._busy:
                return False
            self._busy = True
            return True

    def finish(self, outcome: SessionOutcome) -> None:
        """What the callback came to; the wait ends."""
        self.outcome = outcome
        self._done.set()

    def wait(self, until: float, stop: StopRequest) -> SessionOutcome | None:
        """The outcome of the callback, or None when nobody came before ``until`` (the
        ``time.monotonic()`` at which the wait ends) or a signal stopped the run."""
        while not self._done.wait(max(0.0, min(WAIT_POLL_SECONDS, until - time.monotonic()))):
            if time.monotonic() < until and not stop.requested:
                continue
            with self._lock:
                if not self._busy:
                    self._open = False
                    return None
            self._done.wait()  # a callback is being saved: its outcome is the wait's
        return self.outcome


def console_line(run: RefreshRun, text: str) -> None:
    """Print ``text`` on the console as it is, under the account's prefix (no redaction: the
    caller made it safe), at once."""
    prefix = run.log.prefix if isinstance(run.log, AccountLog) else ""
    sys.stdout.write(f"{prefix}{text}\n")
    sys.stdout.flush()


def tell_now(run: RefreshRun, text: str) -> None:
    """Log ``text`` (no secret in it) under the account's prefix, shown at once: with several
    accounts their console lines are held until each is done, but the holder needs these
    lines while the run waits (the log file gets them as any other)."""
    if isinstance(run.log, AccountLog):
        run.log.logger.info("%s%s", run.log.prefix, text)
    else:
        run.log.info("%s", text)


def ssh_tunnel_line(settings: Settings, listen_port: int) -> str | None:
    """The ``ssh -L`` command to run on the computer whose browser opens the link, when this
    one is reached over SSH (SSH_CONNECTION) and the return URL is loopback; else None."""
    connection = os.environ.get("SSH_CONNECTION", "").split()
    if len(connection) != 4 or not is_loopback_url(settings.return_url):
        return None
    parts = urlsplit(settings.return_url)
    browser_port = parts.port or (443 if parts.scheme == "https" else 80)
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or "USER"
    host, ssh_port = connection[2], connection[3]
    port_option = "" if ssh_port == "22" else f" -p {ssh_port}"
    return f"ssh{port_option} -L {browser_port}:127.0.0.1:{listen_port} {user}@{host}"


def send_link(run: RefreshRun, link: str, wait: float) -> bool:
    """Send the link to the account's Telegram chat, if one is configured (whatever
    TELEGRAM_NOTIFY says: the holder must get it); True when a message was sent."""
    settings = run.settings
    chat = settings.link_telegram
    if chat is None:
        return False
    from .alerts import send_telegram_messages
    from .outcome import machine_label

    text = run.redactor.redact(
        f"🔑 XTS sign-in needed on {machine_label(settings)}: open this link within "
        f"{format_duration(wait)} to log in {settings.account} on the broker's page (it works "
        "while the refresher waits):"
    )
    messages = [(chat, chat_id, f"{text}\n{link}") for chat_id in chat.chat_ids]
    send_telegram_messages(messages, Pacing(settings.retry_backoff, run.deadline), run.log)
    return True


def nobody_came(run: RefreshRun, wait: float) -> SessionOutcome:
    """The outcome of a wait that ended with nobody signed in: a signal's, or exit 1."""
    if run.stop.requested:
        error = run.stop.error("The wait for the holder's sign-in was stopped; nothing was saved.")
        return SessionOutcome(INTERACTIVE, error=error)
    failure = HolderLoginError(
        f"Nobody signed in on the broker's page within {format_duration(wait)}; the "
        f"{INTERACTIVE.label} token file is unchanged.",
        f"Run {login_command_text(run.settings)} when the holder can sign in, and open the "
        "link it prints.",
    )
    run.log.error("✗ %s", failure)
    return SessionOutcome(INTERACTIVE, error=failure)


def wait_for_holder(
    run: RefreshRun, client: XtsClient, wait: float, *, paste: bool = False
) -> SessionOutcome:
    """Show the link to the broker's page and wait up to ``wait`` seconds for the session it
    hands over: at the callback (every account on one listen address shares a listener) or,
    with ``paste``, on standard input. The outcome of the account's interactive session."""
    from . import callback

    settings = run.settings
    state = callback.new_state()
    return_url = callback.return_url_with_state(settings.return_url, state)
    link = callback.login_link(
        settings.login_url or "", settings.credentials[INTERACTIVE.name].app_key, return_url
    )
    until = time.monotonic() + wait
    if paste:
        console_line(run, f"Open this link to log in {settings.account}: {link}")
        send_link(run, link, wait)
        tell_now(
            run,
            "Paste the address the browser ended on (or the session JSON), then press Enter "
            f"(waiting up to {format_duration(wait)}).",
        )
        text = read_paste(until, run.stop)
        if text is None:
            return nobody_came(run, wait)
        return accept_session(run, client, text, expected_state=state)
    addresses = callback.listen_addresses(settings.callback_listen, settings.return_url)
    path = urlsplit(settings.return_url).path or "/"
    arrival = _Arrival()

    def handle(session_text: str) -> str:
        if not arrival.begin():
            raise HolderLoginError(
                "A sign-in arrived after the wait ended; nothing was saved.",
                f"Run {login_command_text(settings)} again.",
            )
        outcome = SessionOutcome(INTERACTIVE, error=UnexpectedError("The sign-in failed."))
        try:
            outcome = accept_session(run, client, session_text)
        finally:
            arrival.finish(outcome)
        if outcome.error is not None or outcome.saved is None:
            raise outcome.error or UnexpectedError("The sign-in saved nothing.")
        return (
            f"{settings.account} is logged in as {outcome.saved.user_id}. You can close this page."
        )

    base_log = run.log.logger if isinstance(run.log, AccountLog) else run.log
    with contextlib.ExitStack() as listening:
        listeners = [
            listening.enter_context(shared_listener(host, port, base_log))
            for host, port in addresses
        ]
        for listener in listeners:
            listener.expect(settings.account, state, path, handle)
        console_line(run, f"Open this link to log in {settings.account}: {link}")
        tunnel = ssh_tunnel_line(settings, listeners[0].port)
        if tunnel is not None:
            tell_now(
                run,
                "This machine is reached over SSH: on the computer whose browser opens the "
                f"link, first run: {tunnel}",
            )
        told = " and to Telegram" if send_link(run, link, wait) else ""
        tell_now(
            run,
            f"Waiting up to {format_duration(wait)} for the holder of {settings.account} to sign "
            f"in on the broker's page (the link was printed above{told}).",
        )
        outcome = arrival.wait(until, run.stop)
    return outcome or nobody_came(run, wait)


def read_paste(until: float, stop: StopRequest) -> str | None:
    """The first line of standard input that is not blank (at most MAX_SESSION_BYTES and a
    byte more), or what came before its end; None when nothing came before ``until`` (the
    ``time.monotonic()`` at which the wait ends) or a signal stopped the run."""
    import select

    fd = sys.stdin.fileno()
    received = b""
    while True:
        left = until - time.monotonic()
        if left <= 0 or stop.requested:
            return None
        ready, _, _ = select.select([fd], [], [], min(WAIT_POLL_SECONDS, left))
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        received += chunk
        text = received.decode("utf-8", "replace")
        complete = "\n" in text and text.strip()
        if not chunk or complete or len(received) > MAX_SESSION_BYTES:
            return text


def login(
    selection: Selection,
    options: LoginOptions,
    log: logging.Logger,
    redactor: Redactor,
    named: bool = False,
) -> int:
    """The ``login`` command: a refresh of the selected browser accounts, each session
    coming from its holder (the callback, or a paste); the highest exit code, as refresh's."""
    from .refresh import refresh_selection

    browser = tuple(s for s in selection.accounts if s.login == BROWSER_LOGIN)
    others = tuple(s for s in selection.accounts if s.login != BROWSER_LOGIN)
    if not browser and not selection.broken:
        raise ConfigError(
            "No selected account signs in on the broker's page (XTS_LOGIN=browser): `login` "
            "has nothing to do.",
            "Name a browser account with --account NAME; accounts with XTS_LOGIN=key log in "
            "with `xts_token_refresh.py` alone.",
        )
    if options.paste and len(browser) != 1:
        raise ConfigError(
            f"--paste reads one session, but {len(browser)} browser accounts are selected.",
            "Select one of them with --account NAME.",
        )
    if named:
        for settings in others:
            log.warning(
                "⚠ %s logs in with its key (XTS_LOGIN=key): `login` leaves it alone; "
                "`xts_token_refresh.py --account %s` refreshes it.",
                settings.account,
                settings.account,
            )
    chosen = selection.replaced(accounts=browser, unselected=(*selection.unselected, *others))
    with StopRequest().handling() as stop:
        return refresh_selection(chosen, RefreshOptions(login=options), log, redactor, stop)
