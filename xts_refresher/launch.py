"""Starting the command line: in the project's virtualenv when this Python lacks the packages.

``xts_token_refresh.py`` can be started by any ``python3`` (``./xts_token_refresh.py``, or a
hand-written cron line): when requests or python-dotenv is missing, the program continues,
once, in the virtualenv the cron wrapper would use (XTS_VENV, .venv, venv: the wrapper is
asked, so that order is said in one place). Kept out of the script itself, which Python
compiles afresh on every run, and light until the packages are known to be there.
"""

from __future__ import annotations

import os
import sys

from . import REQUIRED_MODULES, SETUP_HINT
from .paths import APP_DIR

WRAPPER = os.path.join(APP_DIR, "refresh_xts_token.sh")
# The allocations between two collections of the youngest generation (Python's default: 700).
GC_THRESHOLD = 20_000


def wrapper_venv() -> str:
    """The virtualenv folder the cron wrapper beside this package would use, or "" (none, or
    no wrapper to ask); its warnings go to standard error as they would in a wrapper run."""
    import subprocess

    try:
        found = subprocess.run(
            ["bash", WRAPPER, "--print-venv"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return found.stdout.strip() if found.returncode == 0 else ""


def main(script: str) -> int:
    """Run the command line of ``script`` (xts_token_refresh.py); the exit code."""
    import gc

    # The cyclic garbage collector looks at every young object each 700 allocations: during
    # start-up (requests and the program's modules) that is about 2 % of a refresh's
    # instructions, for cycles that are not there. Each 20,000 keeps it for long runs (a wait
    # for an account holder) and spares the start-up.
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    from importlib.util import find_spec

    missing = [name for name in REQUIRED_MODULES if find_spec(name) is None]
    if missing:
        # Once: a broken virtualenv must not loop.
        venv = "" if os.environ.get("XTS_REEXECUTED") else wrapper_venv()
        if venv and os.path.realpath(sys.prefix) != os.path.realpath(venv):
            os.environ["XTS_REEXECUTED"] = "1"
            # Started with the system python (e.g. `./xts_token_refresh.py` or a hand-written
            # cron line): continue in the project's virtualenv, which has the packages.
            venv_python = os.path.join(venv, "bin", "python")
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
