"""The XTS token refresher's parts: settings, XTS client, token store, notifications, commands.

``xts_token_refresh.py`` beside this package is the program's entry point and the home of
``load_token``; importing this package imports nothing heavy. The facts below are read by
the entry point, the command line, the settings and the cron wrapper alike, so they are said
here once.
"""

from __future__ import annotations

__version__ = "1.0.0"

# The run-time dependencies, by the module names they are imported as (requirements.txt).
REQUIRED_MODULES = ("requests", "dotenv")
# What to do when one of them is missing or broken.
SETUP_HINT = "Run `./refresh_xts_token.sh --setup` (or pip install -r requirements.txt)."
# The options that take a value: the word after one is never the command's name.
OPTIONS_WITH_VALUES = ("--env-file", "--token-file", "--log-file", "--account", "--renew-before")


def first_word(args: list[str]) -> str | None:
    """The first of ``args`` that is neither an option nor an option's value (the command's
    name, or an unknown word), or -h, --help or --version when one of them comes first; None
    when there is none."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in OPTIONS_WITH_VALUES:
            skip = True
        elif arg in ("-h", "--help", "--version") or not arg.startswith("-"):
            return arg
    return None
