"""What the cron wrapper (``refresh_xts_token.sh``) asks of the Python side, so that it keeps
no copy of the program's facts.

Every run of the wrapper starts :func:`probe` once, before the program, with the Python it
found: the version, the missing packages, the command its arguments name. Only a run that
failed starts ``python -m xts_refresher.wrapper CODE COMMAND -- ARGUMENTS...`` as well, for
the meaning of the exit code on the closing line, naming the broker and the settings file of
the account concerned (closing_meaning): a successful run pays for no second Python start-up.
Light: nothing is imported here that the probe does not use.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


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


def closing_meaning(code: int, command: str, args: Sequence[str]) -> str:
    """What exit code ``code`` of ``command`` means, for the wrapper's closing line, naming
    the broker (``broker HOST[:PORT]``) and the settings file to fix of the account concerned,
    as far as ``args`` (the program's arguments) and its settings say: the single account's
    ``.env`` (or --env-file path). With account files, the failed accounts are told by their
    own ✗ lines above; settings that cannot be read: the bare meaning."""
    import os

    from .errors import XtsRefreshError, broker_concerned, exit_meaning

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
    if selection.labelled or not selection.accounts:
        from .settings import shown_path

        each = shown_path(selection.install.accounts_dir / "NAME.env")
        return exit_meaning(code, command, f"{each} of each failed account (named above)")
    (settings,) = selection.accounts
    meaning = exit_meaning(code, command, settings.shown_env_file)
    return f"broker {settings.broker}: {meaning}" if broker_concerned(code, command) else meaning


def main(argv: Sequence[str]) -> int:
    """Print what exit code ``argv[0]`` of the command ``argv[1]`` means (with ``--`` and the
    program's arguments after them: naming the account's broker and file, closing_meaning);
    0, or 2 for arguments that are not a code and a command."""
    from .errors import exit_meaning

    if len(argv) < 2 or not argv[0].isdigit() or (len(argv) > 2 and argv[2] != "--"):
        print(
            "usage: python -m xts_refresher.wrapper EXIT_CODE COMMAND [-- ARGUMENTS...]",
            file=sys.stderr,
        )
        return 2
    code, command = int(argv[0]), argv[1]
    if len(argv) == 2:
        print(exit_meaning(code, command))
    else:
        print(closing_meaning(code, command, argv[3:]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
