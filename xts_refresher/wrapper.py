"""What the cron wrapper (``refresh_xts_token.sh``) asks of the Python side, so that it keeps
no copy of the program's facts.

Every run of the wrapper starts :func:`probe` once, before the program, with the Python it
found: the version, the missing packages, the command its arguments name. Only a run that
failed starts ``python -m xts_refresher.wrapper CODE COMMAND STARTED -- ARGUMENTS...`` as
well, for the meaning of the exit code on the closing line, naming the broker and the
settings file of each account concerned (closing_meaning): a successful run pays for no
second Python start-up.
Light: nothing is imported here that the probe does not use.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; mypy honours the name
if TYPE_CHECKING:
    from .settings import Settings


def command_word(args: Sequence[str]) -> str:
    """The command ``args`` name, as the wrapper's closing line names it: the first word that
    is neither an option nor an option's value (an unknown one too), or -h, --help or
    --version when one of them comes first; "refresh" when they name none."""
    from . import first_word

    return first_word(list(args)) or "refresh"


def probe(args: Sequence[str]) -> None:
    """Print this Python's version; the required modules it cannot find (space-separated, an
    empty line when none is missing), without importing them; the command ``args`` (the
    wrapper's arguments) name."""
    from importlib.util import find_spec

    from . import REQUIRED_MODULES

    print(sys.version.split()[0])
    print(" ".join(name for name in REQUIRED_MODULES if find_spec(name) is None))
    print(command_word(args))


def closing_meaning(code: int, command: str, since: float, args: Sequence[str]) -> str:
    """What exit code ``code`` of ``command`` means, for the wrapper's closing line, naming
    the broker (``broker HOST[:PORT]``, for a refused login or XTS failing) and the settings
    file to fix of each account concerned, as far as ``args`` (the program's arguments) and
    the settings say: the single account's ``.env`` (or --env-file path); with account files,
    each account whose refresh ended at ``since`` (Unix time) or later and failed, as its run
    record tells. Settings that cannot be read: the bare meaning."""
    import os

    from .errors import XtsRefreshError, exit_meaning

    try:
        from .accounts import load_selection
        from .cli import build_parser, command_named, selected_accounts, with_default_command
        from .settings import PathOverrides

        full = with_default_command(args)
        parsed = build_parser(command_named(full)).parse_args(full)
        overrides = PathOverrides(parsed.env_file, parsed.token_file, parsed.log_file)
        selection = load_selection(overrides, os.environ, selected_accounts(parsed))
    except (XtsRefreshError, ImportError, SystemExit):  # argparse exits on what it refuses
        return exit_meaning(code, command)
    if not selection.labelled and selection.accounts:
        (settings,) = selection.accounts
        return account_meaning(code, command, settings)
    failed = failed_accounts(selection.accounts, since) if command == "refresh" else []
    if failed:
        return "; ".join(f"{s.account}: {account_meaning(c, command, s)}" for s, c in failed)
    from .settings import shown_path

    each = shown_path(selection.install.accounts_dir / "NAME.env")
    return exit_meaning(code, command, f"{each} of each failed account (named above)")


def account_meaning(code: int, command: str, settings: Settings) -> str:
    """What ``code`` means for the account of ``settings``: its broker first when the failure
    concerns it, its own settings file in the advice."""
    from .errors import LoginRefusedError, broker_concerned, exit_meaning
    from .settings import BROWSER_LOGIN

    meaning = exit_meaning(code, command, settings.shown_env_file)
    holder_signs_in = settings.login == BROWSER_LOGIN and command in ("refresh", "login")
    if holder_signs_in and code == LoginRefusedError.exit_code:
        from .browser_login import login_command_text

        # Most often nobody signed in; a refused market-data key or user is the rarer case.
        meaning = (
            f"its holder must sign in on the broker's page: run {login_command_text(settings)} "
            f"(a refused key or user: check them in {settings.shown_env_file})"
        )
    return f"broker {settings.broker}: {meaning}" if broker_concerned(code, command) else meaning


def failed_accounts(accounts: Sequence[Settings], since: float) -> list[tuple[Settings, int]]:
    """The accounts whose last refresh, as their run records tell, ended at ``since`` or later
    (this run's, not an older one's) and failed, each with its exit code."""
    from .run_record import load_run

    found = []
    for settings in accounts:
        record = load_run(settings)
        if record is not None and record.failed and record.ended_at >= since:
            found.append((settings, record.exit_code))
    return found


def main(argv: Sequence[str]) -> int:
    """Print what exit code ``argv[0]`` of the command ``argv[1]`` means; with the run's start
    (Unix time), ``--`` and the program's arguments after them, naming the broker and the
    settings file of each account concerned (closing_meaning). 0, or 2 for arguments that
    are not a code and a command."""
    from .errors import exit_meaning

    plain = len(argv) == 2
    full = len(argv) >= 4 and argv[2].isdigit() and argv[3] == "--"
    if not (plain or full) or not argv[0].isdigit():
        print(
            "usage: python -m xts_refresher.wrapper EXIT_CODE COMMAND [STARTED -- ARGUMENTS...]",
            file=sys.stderr,
        )
        return 2
    code, command = int(argv[0]), argv[1]
    if plain:
        print(exit_meaning(code, command))
    else:
        print(closing_meaning(code, command, float(argv[2]), argv[4:]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
