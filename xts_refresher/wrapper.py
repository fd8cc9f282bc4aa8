"""What the cron wrapper (``refresh_xts_token.sh``) asks of the Python side, so that it keeps
no copy of the program's facts.

Every run of the wrapper starts :func:`probe` once, before the program, with the Python it
found: the version, the missing packages, the command its arguments name. Only a run that
failed starts ``python -m xts_refresher.wrapper CODE COMMAND`` as well, for the meaning of
the exit code on the closing line: a successful run pays for no second Python start-up.
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


def main(argv: Sequence[str]) -> int:
    """Print what exit code ``argv[0]`` of the command ``argv[1]`` means; 0, or 2 for
    arguments that are not a code and a command."""
    from .errors import exit_meaning

    if len(argv) != 2 or not argv[0].isdigit():
        print("usage: python -m xts_refresher.wrapper EXIT_CODE COMMAND", file=sys.stderr)
        return 2
    print(exit_meaning(int(argv[0]), argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
