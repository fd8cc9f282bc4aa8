"""XTS_ACCESS_TOKEN_COMMAND: the operator's own automation that signs a browser account in
without a person (typically a headless browser and a TOTP generator) and prints the session.

It runs as the post-refresh hook does (hook.py): through ``/bin/sh`` in the program's folder,
in a process group of its own that is killed when it outlives TOKEN_COMMAND_SECONDS, when it
prints more than a session could be, and once it has exited (nothing it started outlives it),
with no secret of ours in its environment. What it prints on standard output is a secret: it
is never logged, and is added to the redactor before anything could show it. On failure the
last line of its standard error is shown, redacted.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from typing import IO, TYPE_CHECKING

from .browser_login import MAX_SESSION_BYTES, login_command_text, parse_session
from .errors import SETTINGS_FILE, HolderLoginError
from .paths import APP_DIR
from .settings import ROWS, SECRET_VARIABLES, TOKEN_COMMAND_SECONDS, Settings

if TYPE_CHECKING:
    from .console import Log, Redactor
    from .interrupt import StopRequest
    from .timebox import Deadline

# How much of the command's standard error is read for its last line.
STDERR_TAIL_BYTES = 8192
# How much standard error a command may write (a browser's own messages can be many): beyond
# that it is a runaway, stopped before it fills the disk.
MAX_STDERR_BYTES = 16 * 2**20
# How often the command's output is measured while it runs.
OUTPUT_POLL_SECONDS = 0.05


def command_environment(settings: Settings) -> dict[str, str]:
    """The command's environment: ours without any secret, with the account, the login page,
    the return URL and the link to open (which carries the app key, as every link to the
    broker's page must) set."""
    from .callback import login_link

    credentials = settings.credentials["interactive"]
    # By name (keys, secrets, the bot token), and by value: a URL setting of ours holding a
    # user and password (a server behind basic authentication) is as secret.
    hidden = [secret for secret in settings.secrets() if secret]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SECRET_VARIABLES and not (k in ROWS and any(s in v for s in hidden))
    }
    env.update(
        XTS_ACCOUNT=settings.account,
        XTS_LOGIN_URL=settings.login_url or "",
        XTS_RETURN_URL=settings.return_url,
        XTS_LOGIN_LINK=login_link(
            settings.login_url or "", credentials.app_key, settings.return_url
        ),
    )
    return env


def run_token_command(
    settings: Settings, deadline: Deadline, redactor: Redactor, log: Log, stop: StopRequest
) -> str:
    """What XTS_ACCESS_TOKEN_COMMAND printed on standard output (a secret, already added to
    ``redactor``); HolderLoginError (exit 1) when it could not start, failed, printed nothing
    or nothing a session can be read from, or outlived its time (its process group is then
    killed): TOKEN_COMMAND_SECONDS, and no more than the run's deadline leaves (the session
    must still be exchanged). A signal that
    asks the run to stop stops the command at once (the signal's InterruptedRunError)."""
    import signal
    import tempfile

    command = settings.access_token_command or ""
    hint = (
        f"Fix XTS_ACCESS_TOKEN_COMMAND in {SETTINGS_FILE} (run it by hand to see what it "
        f"prints), or let the holder sign in: {login_command_text(settings)}"
    )
    limit = min(TOKEN_COMMAND_SECONDS, deadline.remaining())
    log.info("Running XTS_ACCESS_TOKEN_COMMAND to sign in on the broker's page...")
    # Files, not pipes: a command that leaves a browser running in the background would keep
    # a pipe open, and waiting for it to close would wait for the browser.
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        try:
            process = subprocess.Popen(  # noqa: S602 - the operator's own shell command
                command,
                shell=True,
                env=command_environment(settings),
                cwd=APP_DIR,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        except OSError as exc:
            raise HolderLoginError(
                f"XTS_ACCESS_TOKEN_COMMAND could not start: {exc.strerror}.", hint
            ) from None
        try:
            stopped = _stopped_or_finished(process, limit, stdout, stderr, stop)
        finally:
            # Whatever it left running (a headless browser holding its output files, writing
            # on) goes with it: nothing of a sign-in outlives it.
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # Hidden before any failure is told: its standard error may quote it.
        output = _read_output(stdout)
        _hide(output, redactor)
        if stop.requested:
            raise stop.error(
                "XTS_ACCESS_TOKEN_COMMAND was stopped with the run; nothing was saved."
            )
        if stopped is not None:
            raise HolderLoginError(
                f"XTS_ACCESS_TOKEN_COMMAND {stopped} and was stopped"
                f"{_last_line(stderr, redactor)}.",
                hint,
            )
        if process.returncode != 0:
            raise HolderLoginError(
                f"XTS_ACCESS_TOKEN_COMMAND failed with exit code {process.returncode}"
                f"{_last_line(stderr, redactor)}.",
                hint,
            )
        if not output.strip():
            raise HolderLoginError(
                f"XTS_ACCESS_TOKEN_COMMAND printed nothing on standard output"
                f"{_last_line(stderr, redactor)}.",
                hint,
            )
    try:
        parse_session(output)  # junk it printed is the command's to fix, not the holder's
    except HolderLoginError as exc:
        raise HolderLoginError(exc.message, hint) from None
    log.info("✓ XTS_ACCESS_TOKEN_COMMAND handed over a session.")
    return output


def _stopped_or_finished(
    process: subprocess.Popen[bytes],
    limit: float,
    stdout: IO[bytes],
    stderr: IO[bytes],
    stop: StopRequest,
) -> str | None:
    """None once the command has exited within ``limit`` seconds; else why it must be
    stopped: a signal asked the run to stop, its time is up, or it printed more than a session
    could be (checked as it goes: a command pouring out output would otherwise fill the disk
    until its time is up)."""
    end = time.monotonic() + limit
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, min(OUTPUT_POLL_SECONDS, end - time.monotonic())))
            return None
        if stop.requested:
            return "was stopped with the run"  # told by the caller as the signal's failure
        if os.fstat(stdout.fileno()).st_size > MAX_SESSION_BYTES:
            return f"printed more than {MAX_SESSION_BYTES // 1024} KiB on standard output"
        if os.fstat(stderr.fileno()).st_size > MAX_STDERR_BYTES:
            return f"printed more than {MAX_STDERR_BYTES // 2**20} MiB on standard error"
        if time.monotonic() >= end:
            return f"did not finish within {limit:.0f} s"


def _hide(output: str, redactor: Redactor) -> None:
    """Add what the command printed to ``redactor``: each line, and the tokens in it (its
    standard error may quote them, and is shown on failure)."""
    for line in (output.strip(), *output.splitlines()):
        redactor.add(line.strip())
    try:
        handed = parse_session(output)
    except HolderLoginError:
        return
    for secret in handed.secrets():
        redactor.add(secret)


def _read_output(stdout: IO[bytes]) -> str:
    """The command's standard output, at most MAX_SESSION_BYTES and one byte more (so that
    more than that is refused as too large, not cut)."""
    stdout.seek(0)
    return stdout.read(MAX_SESSION_BYTES + 1).decode("utf-8", "replace")


def _last_line(stderr: IO[bytes], redactor: Redactor) -> str:
    """``: <the last line of standard error>``, redacted and on one line, or "" for none."""
    from .answers import one_line

    size = stderr.seek(0, os.SEEK_END)
    stderr.seek(max(0, size - STDERR_TAIL_BYTES))
    lines = [line for line in stderr.read().decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return ""
    return f": {redactor.redact(one_line(lines[-1]))[:300]}"
