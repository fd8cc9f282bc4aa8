"""The ``check-config`` command: everything a refresh needs, checked without logging in.

It validates the paths a refresh writes, reaches the API root (and the host lookup, and the
market-data path), and asks Telegram and the health check's server whether they can be reached,
sending no message and no ping.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .client import MARKETDATA_PATH_HINT, XtsClient
from .console import AccountLog, report_failure
from .errors import (
    ConfigError,
    NotificationRefusedError,
    NotificationUnavailableError,
    UnexpectedError,
    XtsRefreshError,
    XtsUnavailableError,
)
from .outputs import PathProblem, written_paths
from .paths import APP_DIR
from .sessions import INTERACTIVE, MARKETDATA, SESSIONS
from .settings import BROWSER_LOGIN, Settings, warn_about_setup
from .timebox import Deadline, run_within
from .urls import without_credentials
from .values import plural

if TYPE_CHECKING:
    from .console import Log


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
                "✗ %d of %s not ready (exit code %d): %s. Fix what is marked ✗ under "
                "their names, then run check-config again.",
                len(not_ready),
                plural(len(codes), "account"),
                code,
                ", ".join(not_ready),
            )
        elif len(names) == 1:
            log.info("✓ Account %s is ready.", names[0])
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
    with XtsClient(settings, Deadline(settings.deadline), log) as client:
        code = reach_xts(settings, client, log)
    code = max(code, check_notifications(settings, log, answers))
    if code == 0:
        command = "xts_token_refresh.py"
        if settings.login == BROWSER_LOGIN:
            from .browser_login import login_command_text

            command = login_command_text(settings)
        log.info("✓ Ready: run `%s` to log in (check-config never logs in).", command)
    else:
        log.error(
            "✗ Not ready (exit code %d): fix what is marked ✗ above, then run check-config again.",
            code,
        )
    return code


def reach_xts(settings: Settings, client: XtsClient, log: Log) -> int:
    """Reach the API root, the host lookup, the market-data path and, for a browser account,
    what its login needs, without logging in: 0, or the exit code of what failed."""
    code = 0
    try:
        for url in filter(None, (settings.api_root, settings.hostlookup_url)):
            _report_probe(url, client.probe(url), log)
        if MARKETDATA.name in settings.credentials:
            check_marketdata_path(settings, client, log)
    except XtsRefreshError as exc:
        # The URL it names is the broker's; its advice names the account's file.
        exc.place(settings.broker, settings.shown_env_file)
        log.error("✗ %s", exc)
        code = exc.exit_code
    if settings.login == BROWSER_LOGIN:
        code = max(code, check_browser_login(settings, client, log))
    return code


def check_browser_login(settings: Settings, client: XtsClient, log: Log) -> int:
    """What a browser account's login needs, checked without signing in: the login page
    answers a GET, the return URL is an http(s) URL, the refresher can listen on the callback
    address (bound and closed at once), and the token command, when set, is a program that
    exists and may be run (it is not run). 0, 2 (a setting) or 3 (the page cannot be reached)."""
    from .callback import CallbackListener, listen_addresses, login_link

    code = 0
    page = settings.login_url or ""
    app_key = settings.credentials[INTERACTIVE.name].app_key
    try:
        # The page as the holder's browser opens it (for this app and return URL): no login.
        status = client.probe(login_link(page, app_key, settings.return_url))
    except XtsRefreshError as exc:
        log.error("✗ The broker's login page: %s", exc)
        code = exc.exit_code
    else:
        if status < 400:
            log.info(
                "✓ The broker's login page %s answers (HTTP %d; nobody was signed in).",
                without_credentials(page),
                status,
            )
        else:
            log.error(
                "✗ The broker's login page %s answered HTTP %d to this app's link: check "
                "XTS_LOGIN_URL and XTS_INTERACTIVE_API_KEY (in %s) with your broker.",
                without_credentials(page),
                status,
                settings.shown_env_file,
            )
            code = 2
    log.info(
        "✓ The return URL %s is a valid %s URL: the broker's page sends the browser there.",
        settings.return_url,
        urlsplit(settings.return_url).scheme,
    )
    for host, port in listen_addresses(settings.callback_listen, settings.return_url):
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            with CallbackListener(host, port, log):
                pass
        except XtsRefreshError as exc:
            log.error(
                "✗ The refresher cannot listen on %s (XTS_CALLBACK_LISTEN in %s): %s",
                shown,
                settings.shown_env_file,
                exc,
            )
            code = max(code, 2)
        else:
            log.info("✓ The refresher can listen on %s for the callback (bound and closed).", shown)
    if settings.access_token_command:
        problem = command_problem(settings.access_token_command)
        if problem:
            log.error(
                "✗ XTS_ACCESS_TOKEN_COMMAND in %s: %s (it was not run).",
                settings.shown_env_file,
                problem,
            )
            code = max(code, 2)
        else:
            log.info("✓ XTS_ACCESS_TOKEN_COMMAND names a program that may be run (not run).")
    return code


def command_problem(command: str) -> str | None:
    """Why the program that shell ``command`` starts cannot be run (its first word: a path,
    from the program's folder when relative, or a name found on PATH), or None."""
    import shlex
    import shutil

    try:
        words = shlex.split(command)
    except ValueError as exc:
        return f"the command cannot be read as a shell command ({exc})"
    if not words:
        return "the command is empty"
    program = words[0]
    if "/" not in program:
        return None if shutil.which(program) else f"{program} is not found on PATH"
    path = Path(APP_DIR, program)
    if not path.is_file():
        return f"{path} does not exist or is not a file"
    return None if os.access(path, os.X_OK) else f"{path} is not executable (chmod +x)"


def check_notifications(
    settings: Settings, log: Log, answers: dict[tuple[str, ...], str | XtsRefreshError]
) -> int:
    """Ask Telegram (``getMe`` once per bot, ``getChat`` once per chat) and the health check's
    server whether they can be reached, sending no message and no ping: 0 when they can, 2 when
    one refused (a setting to fix), 3 when one cannot be reached. ``answers`` keeps what each
    bot, chat and server said, so accounts that share them ask once."""
    if settings.telegram is None and not settings.healthcheck_url:
        return 0
    from .alerts import check_health_check, check_telegram_bot, check_telegram_chat

    code = 0
    if settings.telegram is not None:
        telegram = settings.telegram
        bot_key = ("telegram-bot", telegram.api_url, telegram.bot_token)
        bot = _ask(answers, bot_key, "Telegram", functools.partial(check_telegram_bot, telegram))
        if not isinstance(bot, str):
            code = max(code, _report_refusal("Telegram", bot, log))
        else:
            for chat_id in telegram.chat_ids:
                chat = _ask(
                    answers,
                    (*bot_key, chat_id),
                    "Telegram",
                    functools.partial(check_telegram_chat, telegram, chat_id),
                )
                if isinstance(chat, str):
                    log.info(
                        "✓ Telegram accepts the bot token (%s) and knows %s; no message was sent.",
                        bot,
                        chat,
                    )
                else:
                    code = max(code, _report_refusal("Telegram", chat, log))
    if settings.healthcheck_url:
        url = settings.healthcheck_url
        key = ("healthcheck", urlsplit(url).scheme, urlsplit(url).netloc)  # what is asked
        answer = _ask(answers, key, "the health check", functools.partial(check_health_check, url))
        if isinstance(answer, str):
            log.info("✓ %s", answer)
        else:
            code = max(code, _report_refusal("The health check", answer, log))
    return code


def _ask(
    answers: dict[tuple[str, ...], str | XtsRefreshError],
    key: tuple[str, ...],
    name: str,
    question: Callable[[], str],
) -> str | XtsRefreshError:
    """What ``question`` (about ``name``) answered, asked once per ``key`` and kept in
    ``answers``: its text, or the failure it met."""
    from .alerts import CHECK_SECONDS

    if key not in answers:
        try:
            answers[key] = run_within(3 * CHECK_SECONDS, question)
        except XtsRefreshError as exc:
            answers[key] = exc
        except TimeoutError:
            answers[key] = NotificationUnavailableError(f"no answer within {3 * CHECK_SECONDS:g} s")
        except Exception as exc:  # a bug: a ✗ line and exit 4, not a traceback
            answers[key] = UnexpectedError(
                f"Unexpected error ({type(exc).__name__}) while checking {name}."
            )
    return answers[key]


def _report_refusal(name: str, answer: XtsRefreshError, log: Log) -> int:
    """Log the ✗ line of a check of ``name`` that failed with ``answer``; its exit code."""
    if isinstance(answer, UnexpectedError):
        log.error("✗ %s", answer)
        return answer.exit_code
    if isinstance(answer, NotificationRefusedError):
        log.error("✗ %s refused the check (%s). %s", name, answer.message, answer.hint)
        return answer.exit_code
    log.error(
        "✗ %s cannot be reached (%s): its notifications would not arrive. Check the "
        "network, a proxy or a firewall in the way.",
        name,
        answer.message,
    )
    return 3
