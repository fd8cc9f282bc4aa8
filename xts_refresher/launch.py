"""Starting the command line: in the project's virtualenv when this Python lacks the packages.

``xts_token_refresh.py`` can be started by any ``python3`` (``./xts_token_refresh.py``, or a
hand-written cron line): when requests or python-dotenv is missing and a ``.venv`` exists
beside it, the program continues there, once. Kept out of the script itself, which Python
compiles afresh on every run, and light until the packages are known to be there.
"""

from __future__ import annotations

import os
import sys

from . import REQUIRED_MODULES, SETUP_HINT
from .paths import APP_DIR


def main(script: str) -> int:
    """Run the command line of ``script`` (xts_token_refresh.py); the exit code."""
    from importlib.util import find_spec

    missing = [name for name in REQUIRED_MODULES if find_spec(name) is None]
    if missing:
        venv = os.path.join(APP_DIR, ".venv")
        venv_python = os.path.join(venv, "bin", "python")
        if (
            os.path.exists(venv_python)
            and os.path.realpath(sys.prefix) != os.path.realpath(venv)
            and not os.environ.get("XTS_REEXECUTED")  # once: a broken .venv must not loop
        ):
            os.environ["XTS_REEXECUTED"] = "1"
            # Started with the system python (e.g. `./xts_token_refresh.py` or a hand-written
            # cron line): continue in the project's virtualenv, which has the packages.
            argv = [venv_python, script, *sys.argv[1:]]
            os.execv(venv_python, argv)  # noqa: S606 - the same program, in its virtualenv
        try:
            print(
                f"✗ Required packages are missing ({', '.join(missing)}). {SETUP_HINT}", flush=True
            )
        except BrokenPipeError:  # the reader went away (`| head`): the exit code still says it
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return 2
    from .cli import main as cli_main

    return cli_main()
