"""Command-line parsing and ``main``: the one place where failures become exit codes."""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import TextIO

from . import SETUP_HINT, __version__, first_word
from .accounts import (
    Selection,
    collect_values,
    display_zone_name,
    find_install,
    load_selection,
    log_file_path,
)
from .console import (
    Redactor,
    add_log_file,
    close_logging,
    console_survives_closed_pipes,
    report_failure,
    setup_logging,
)
from .errors import (
    ConfigError,
    InterruptedRunError,
    UnexpectedError,
    XtsRefreshError,
    exit_code_meanings,
)
from .parsers import resolve_path
from .settings import DEFAULT_ENV_FILE, PathOverrides
from .shown_time import use_display_zone
from .store import DEFAULT_RENEW_BEFORE

UNITS = MappingProxyType({"s": 1, "m": 60, "h": 3600, "d": 86400})


def parse_duration(text: str) -> float:
    """Seconds in ``2h``, ``90m``, ``1h30m``, ``45s`` or ``3600`` (a bare number is seconds)."""
    cleaned = text.strip().lower()
    bad = argparse.ArgumentTypeError(f"{text!r} is not a duration such as 2h, 90m or 1h30m")
    if re.fullmatch(r"[0-9]{1,9}(?:\.[0-9]{1,9})?", cleaned):
        return float(cleaned)
    parts = re.findall(r"([0-9]{1,9}(?:\.[0-9]{1,9})?)([smhd])", cleaned)
    units = [unit for _, unit in parts]
    if not parts or "".join(n + u for n, u in parts) != cleaned or len(set(units)) < len(units):
        raise bad  # also 1h1h: each unit once
    return sum(float(number) * UNITS[unit] for number, unit in parts)


def _path_options(parser: argparse.ArgumentParser, default: object) -> None:
    group = parser.add_argument_group("files (relative paths start at the program's folder)")
    group.add_argument("--env-file", metavar="PATH", default=default, help="settings file (.env)")
    group.add_argument(
        "--token-file",
        metavar="PATH",
        default=default,
        help="interactive token file (xts_store_token.json)",
    )
    group.add_argument(
        "--log-file", metavar="PATH", default=default, help="detailed log (xts_token_refresh.log)"
    )
    # The option may come before the command name and after it: each place has its own list,
    # joined in `run`, since a subcommand's list would replace the main parser's.
    parser.add_argument(
        "--account",
        action="append",
        metavar="NAME",
        dest="account" if default is None else "account_after_command",
        default=default,
        help="work on this account only (accounts/NAME.env); repeat for several; default: all",
    )


class _TableFormatter(argparse.HelpFormatter):
    """Wraps help text as usual, except indented lines (a table's rows), kept as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        fill = super()._fill_text
        lines = text.splitlines()
        return "\n".join(
            indent + line if line.startswith(" ") else fill(line, width, indent) for line in lines
        )


def exit_codes_text() -> str:
    """The exit codes and their meanings in one line, from the error classes that carry them."""
    return "; ".join(f"{code} {meaning}" for code, meaning in exit_code_meanings().items())


def _refresh_arguments(refresh: argparse.ArgumentParser) -> None:
    refresh.add_argument(
        "--if-needed", action="store_true", help="log in only where the stored token will not do"
    )
    refresh.add_argument(
        "--renew-before",
        type=parse_duration,
        metavar="DURATION",
        help="with --if-needed: renew tokens expiring within this "
        f"(default {DEFAULT_RENEW_BEFORE / 3600:g}h)",
    )
    refresh.add_argument(
        "--verify",
        action="store_true",
        help="after saving, prove each new token works with one call; with --if-needed, check "
        "each stored token first and renew the ones XTS rejects",
    )


def _status_arguments(status: argparse.ArgumentParser) -> None:
    status.add_argument("--verify", action="store_true", help="ask XTS whether each is accepted")
    status.add_argument("--json", action="store_true", help="machine-readable output")


def _schedule_arguments(parser: argparse.ArgumentParser, action_help: str) -> None:
    """What ``cron`` and ``systemd`` both take: the action, and when the job runs."""
    parser.add_argument("action", choices=("print", "install", "uninstall"), help=action_help)
    parser.add_argument("--at", default="09:00", metavar="HH:MM", help="time of day (09:00)")
    parser.add_argument(
        "--tz", default="Asia/Kolkata", metavar="ZONE", help="zone of --at (Asia/Kolkata)"
    )
    parser.add_argument(
        "--days",
        default="daily",
        choices=("daily", "weekdays"),
        help="daily, or weekdays: Monday to Friday in --tz (daily)",
    )


def _cron_arguments(cron: argparse.ArgumentParser) -> None:
    _schedule_arguments(
        cron,
        "print: show the line (stdout); install: put it in the crontab, replacing only its own "
        "marked line; uninstall: remove it",
    )


def _systemd_arguments(systemd: argparse.ArgumentParser) -> None:
    _schedule_arguments(
        systemd,
        "print: show both units (stdout); install: write them and enable the timer "
        "(systemctl daemon-reload, enable --now) when systemd can be reached; uninstall: "
        "disable the timer and remove both",
    )
    systemd.add_argument(
        "--dir",
        metavar="DIR",
        help="write the units into DIR only (relative: from the program's folder); systemd is "
        "not told",
    )


def _login_arguments(login: argparse.ArgumentParser) -> None:
    login.add_argument(
        "--wait",
        type=parse_duration,
        default=None,
        metavar="DURATION",
        help="how long to wait for the holder to sign in (default 10m)",
    )
    login.add_argument(
        "--paste",
        action="store_true",
        help="read the session JSON, or the whole address the browser ended on, from standard "
        "input instead of listening",
    )


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """check-config takes only the path options."""


def _demo_arguments(demo: argparse.ArgumentParser) -> None:
    demo.add_argument(
        "--browser",
        action="store_true",
        help="an account whose holder signs in on the broker's login page (XTS_LOGIN=browser), "
        "signed in by a script",
    )


# Each command: its one-line help, its description, and what adds its own options.
COMMAND_TABLE: tuple[tuple[str, str, str, Callable[[argparse.ArgumentParser], None]], ...] = (
    (
        "refresh",
        "log in and save the tokens (the default)",
        "Log in to every configured XTS session and save the new tokens atomically, mode 0600, "
        "where the trading bots read them.",
        _refresh_arguments,
    ),
    (
        "status",
        "report the stored tokens; never logs in",
        "Report each stored token (user, refreshed at, expires at, time left); never logs in. "
        "Exit 0 when every configured session's token is usable (and, with --verify, accepted "
        "by XTS), 1 otherwise.",
        _status_arguments,
    ),
    (
        "check-config",
        "validate settings and paths, reach the API root",
        "Validate the settings and the token and log paths, and reach the API root (and the "
        "host lookup, when configured) without logging in. Exit 0 ready, 2 a setting or path "
        "is wrong, 3 XTS cannot be reached.",
        _no_arguments,
    ),
    (
        "login",
        "sign a browser account in on the broker's page",
        "For each selected account with XTS_LOGIN=browser: print the link to the broker's login "
        "page (and send it to Telegram when configured), wait for the holder to sign in, then "
        "save the session as a refresh does (user checked, token proven with one call), log "
        "in to market data with its key and run the hook. Exit codes as for refresh; nobody "
        "signed in within --wait: 1.",
        _login_arguments,
    ),
    (
        "cron",
        "print, install or remove the crontab line",
        "The crontab line that runs refresh_xts_token.sh at --at in --tz (daily or on "
        "weekdays), converted to this machine's time zone, with absolute paths; path flags "
        "given here are passed on to the job. Notes and warnings go to stderr.",
        _cron_arguments,
    ),
    (
        "systemd",
        "print, install or remove the systemd timer",
        "A systemd service and timer unit that run refresh_xts_token.sh at --at in --tz "
        "(daily or on weekdays; systemd reads the zone itself), with absolute paths; path "
        "flags given here are passed on to the job. As root: system units in "
        "/etc/systemd/system; otherwise user units in ~/.config/systemd/user. Notes and "
        "warnings go to stderr.",
        _systemd_arguments,
    ),
    (
        "demo",
        "a complete refresh against the bundled simulator",
        "A complete refresh --verify and status against the bundled XTS simulator on "
        "127.0.0.1, in a temporary folder that is removed when the demo ends. Needs no .env "
        "and no credentials; nothing leaves this machine. With --browser, the account's "
        "holder signs in on the simulator's login page (a script plays the holder).",
        _demo_arguments,
    ),
)
COMMANDS = tuple(name for name, *_ in COMMAND_TABLE)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command and option (README.md, "Commands").

    With ``command`` named, only that command's parser is built: a cron run pays for the
    refresh's options, not for every command's.
    """
    parser = argparse.ArgumentParser(
        prog="xts_token_refresh.py",
        description="Log in to XTS and save fresh session tokens where trading bots read them.",
        epilog=f"With no command, refresh is meant. Exit codes: {exit_codes_text()}.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _path_options(parser, None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary, description, add_arguments in COMMAND_TABLE:
        if command is not None and name != command:
            continue
        codes = f" Exit codes: {exit_codes_text()}." if name == "refresh" else ""
        sub = commands.add_parser(name, help=summary, description=description + codes)
        if name == "check-config":
            from .settings import settings_help

            sub.epilog, sub.formatter_class = settings_help(), _TableFormatter
        add_arguments(sub)
        _path_options(sub, argparse.SUPPRESS)
    return parser


def command_named(args: Sequence[str]) -> str | None:
    """The command ``args`` name (None for none, --help, --version or an unknown word)."""
    word = first_word(list(args))
    return word if word in COMMANDS else None


def with_default_command(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``refresh`` inserted when no command is named (an unknown word counts as
    named: argparse then says so)."""
    args = list(argv)
    return args if first_word(args) is not None else ["refresh", *args]


def _log_to_fallback_file(
    overrides: PathOverrides, log: logging.Logger, redactor: Redactor
) -> None:
    """Send the rest of the run's lines to the log file too, as far as it can be known, unless
    it is a settings file or a token file, as far as the settings can still be read (the log
    handler itself refuses what is not a regular file)."""
    from .accounts import install_of
    from .outputs import LOG_ROLE, WrittenPath, collisions, settings_files, unchecked_token_files

    try:
        env_file, values = collect_values(overrides, os.environ)
    except ConfigError:
        # The .env itself is unreadable: the environment may still say.
        env_file, values = resolve_path(overrides.env_file or DEFAULT_ENV_FILE), dict(os.environ)
    install = install_of(env_file, values)
    log_file = log_file_path(overrides, values)
    written = [
        WrittenPath(log_file, LOG_ROLE, False),
        *unchecked_token_files(install, install.names, overrides.token_file),
    ]
    problems = collisions(written, settings_files(install))
    if not any(log_file in problem.paths for problem in problems):
        add_log_file(log, log_file)


def selected_accounts(args: argparse.Namespace) -> list[str]:
    """The accounts ``--account`` named, before and after the command name."""
    return [*(args.account or ()), *(getattr(args, "account_after_command", None) or ())]


def _job_arguments(
    args: argparse.Namespace, overrides: PathOverrides
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What a scheduled job (a crontab line, a systemd service) passes on: the path flags
    given, as absolute paths, and the accounts named (checked to exist)."""
    flags = (
        ("--env-file", args.env_file),
        ("--token-file", args.token_file),
        ("--log-file", args.log_file),
    )
    arguments = tuple(
        part for flag, value in flags if value for part in (flag, str(resolve_path(value)))
    )
    named = selected_accounts(args)
    accounts = find_install(overrides, os.environ).select(named) if named else ()
    return arguments, accounts


def run(args: argparse.Namespace, log: logging.Logger, redactor: Redactor) -> int:
    """Dispatch the parsed command; exceptions of the hierarchy propagate to ``main``."""
    if args.command in ("cron", "systemd"):
        overrides = PathOverrides(args.env_file, args.token_file, args.log_file)
        arguments, accounts = _job_arguments(args, overrides)
        from .schedule import unattended_browser_accounts

        holders = unattended_browser_accounts(overrides, os.environ, accounts)
        if args.command == "cron":
            from .cron import cron_command

            return cron_command(
                args.action,
                args.at,
                args.tz,
                args.days,
                environ=os.environ,
                arguments=arguments,
                accounts=accounts,
                holders=holders,
            )
        from .systemd import systemd_command

        return systemd_command(
            args.action,
            args.at,
            args.tz,
            args.days,
            environ=os.environ,
            arguments=arguments,
            accounts=accounts,
            unit_dir=args.dir,
            holders=holders,
        )
    if args.command == "demo":
        from .demo import demo

        return demo(browser=args.browser)
    overrides = PathOverrides(args.env_file, args.token_file, args.log_file)
    try:
        selection = load_selection(overrides, os.environ, selected_accounts(args))
        use_display_zone(display_zone_name(selection.install.values))
    except ConfigError:
        if args.command in ("refresh", "login"):
            # A cron run's configuration error belongs in its log too.
            _log_to_fallback_file(overrides, log, redactor)
        raise
    for secret in selection.secrets():
        redactor.add(secret)
    if args.command in ("refresh", "login"):
        return _refresh_or_login(args, selection, overrides, log, redactor)
    if args.command == "status":
        from .outputs import broken_token_files, settings_files
        from .status import status

        return status(
            selection.accounts,
            verify=args.verify,
            as_json=args.json,
            log=log,
            redactor=redactor,
            labelled=selection.labelled,
            broken=selection.broken,
            warnings=selection.warnings,
            also=selection.unselected,
            settings_files=settings_files(selection.install),
            accounts_dir=selection.install.accounts_dir,
            broken_token_files=broken_token_files(selection),
        )
    from .check_config import check_config
    from .outputs import path_problems

    return check_config(
        selection.accounts,
        log,
        labelled=selection.labelled,
        broken=selection.broken,
        warnings=selection.warnings,
        path_problems=path_problems(selection, log_file_path(overrides, selection.install.values)),
    )


def _refresh_or_login(
    args: argparse.Namespace,
    selection: Selection,
    overrides: PathOverrides,
    log: logging.Logger,
    redactor: Redactor,
) -> int:
    """``refresh``, or ``login`` (a refresh of the browser accounts with their holder at hand),
    once the paths they write are checked and the log file is open."""
    from .refresh import check_paths_and_open_log

    check_paths_and_open_log(selection, log, log_file_path(overrides, selection.install.values))
    if args.command == "login":
        from .account_refresh import LoginOptions
        from .login import DEFAULT_LOGIN_WAIT_SECONDS, login

        wait = DEFAULT_LOGIN_WAIT_SECONDS if args.wait is None else args.wait
        named = bool(selected_accounts(args))
        return login(selection, LoginOptions(wait, args.paste), log, redactor, named)
    from .account_refresh import RefreshOptions
    from .refresh import refresh

    window = {} if args.renew_before is None else {"renew_before": args.renew_before}
    options = RefreshOptions(args.if_needed, verify=args.verify, **window)
    return refresh(selection, options, log, redactor)


def console_stream(args: argparse.Namespace) -> TextIO:
    """Where the console lines go: stderr when stdout carries JSON (``status --json``)."""
    return sys.stderr if getattr(args, "json", False) else sys.stdout


def main(argv: Sequence[str] | None = None) -> int:
    """Run the program; the process's exit code (README.md, "Exit codes")."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        # A bare cron environment may have no UTF-8 locale: never die printing a ✓.
        sys.stdout.reconfigure(errors="backslashreplace")
    # A reader that goes away (`| head -1`) costs nothing: not the refresh, not its exit code.
    with console_survives_closed_pipes():
        return _main(sys.argv[1:] if argv is None else argv)


def _main(argv: Sequence[str]) -> int:
    full = with_default_command(argv)
    parser = build_parser(command_named(full))
    args = parser.parse_args(full)
    if getattr(args, "renew_before", None) is not None and not args.if_needed:
        # Without --if-needed every session is logged in to, whatever the window says.
        parser.error("argument --renew-before: applies only with --if-needed; add --if-needed")
    redactor = Redactor()
    log = setup_logging(redactor, console_stream(args))
    try:
        return run(args, log, redactor)
    except XtsRefreshError as exc:
        report_failure(log, exc)
        return exc.exit_code
    except ImportError as exc:  # requests or python-dotenv installed but broken
        broken = ConfigError(f"A required package cannot be imported ({exc}).", SETUP_HINT)
        report_failure(log, broken)
        return broken.exit_code
    except KeyboardInterrupt:
        # Ctrl-C outside a refresh's logins (which note it and finish first, see interrupt.py).
        interrupted = InterruptedRunError(
            "Interrupted (SIGINT) while no login was under way.", "Run the command again."
        )
        report_failure(log, interrupted)
        return interrupted.exit_code
    except Exception as exc:
        # The traceback goes to the log file only; the console gets the one-line reason.
        failure = UnexpectedError(f"Unexpected error ({type(exc).__name__}: {exc}).")
        log.exception("✗ %s", failure)
        return failure.exit_code
    finally:
        close_logging(log)
