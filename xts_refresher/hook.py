"""The post-refresh hook: the operator's shell command, run after a refresh saved new tokens.

It runs in the program's folder through ``/bin/sh``, told where the tokens are (never the
tokens or the API secrets), bounded in time, with its output in the log.
"""

from __future__ import annotations

import os
from typing import IO, TYPE_CHECKING

from .errors import HookFailedError
from .locks import LOCK_HELD_VARIABLE, held_lock_mark
from .paths import APP_DIR
from .sessions import SESSIONS, Session
from .settings import SECRET_VARIABLES, Settings
from .timebox import Deadline

HOOK_MAX_SECONDS = 120.0
HOOK_MIN_SECONDS = 10.0

if TYPE_CHECKING:
    from .console import Log


def hook_time_limit(remaining: float) -> float:
    """Seconds the hook may run: what is left before XTS_DEADLINE, at least
    HOOK_MIN_SECONDS (a run near its deadline still restarts its bot) and at most
    HOOK_MAX_SECONDS."""
    return min(HOOK_MAX_SECONDS, max(HOOK_MIN_SECONDS, remaining))


def run_hook(
    command: str,
    settings: Settings,
    sessions: list[Session],
    deadline: Deadline,
    log: Log,
) -> None:
    """Run XTS_POST_REFRESH_HOOK; HookFailedError when it fails or outlives its time.

    The hook sees where the tokens are, never the tokens or the API secrets themselves.
    """
    import signal  # imported here: most runs have no hook, and every import costs start-up
    import subprocess
    import tempfile

    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
    env.update({s.path_variable: str(settings.token_path(s)) for s in SESSIONS.values()})
    env.update(
        XTS_REFRESHED_SESSIONS=",".join(s.name for s in sessions),
        XTS_ACCOUNT=settings.account,
    )
    env[LOCK_HELD_VARIABLE] = held_lock_mark(settings.lock_file)  # see started_by_running_hook
    limit = hook_time_limit(deadline.remaining())
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


def _log_hook_output(output: IO[bytes], log: Log) -> None:
    size = output.seek(0, os.SEEK_END)
    output.seek(max(0, size - 64_000))  # the tail is what says why a hook failed
    for line in output.read().decode("utf-8", "replace").splitlines()[-50:]:
        log.info("  hook: %s", line)
