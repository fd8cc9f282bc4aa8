"""Telling people: the console and the log file (alerts.py sends Telegram and the pings).

Every line passes through a Redactor first, so no secret, bot token or session token (nor a
URL's password, nor a control character a server slipped in) reaches stdout, the log, Telegram
or a ping; ConsoleCapture keeps the redacted lines a closing ping
carries.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import re
import stat
import sys
import threading
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .errors import XtsRefreshError
from .store import mask

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

    # What the run logs through: its logger, or an account's prefixing adapter of it.
    Log = logging.Logger | logging.LoggerAdapter[logging.Logger]

LOGGER_NAME = "xts_token_refresh"
CONSOLE_HANDLER_NAME = "console"
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"
PING_BODY_BYTES = 10_000  # what healthchecks.io keeps of a ping's body
ACCOUNT_ATTRIBUTE = "xts_account"  # the log record's attribute naming an AccountLog's account

# Shapes of secrets that were never registered (a JWT, a Telegram bot token) are masked too.
SECRET_SHAPES = (
    re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
    # A bot token, also inside a Bot API URL (/bot<id>:<secret>/), where no \b precedes it.
    re.compile(r"(?:\b|(?<=bot))\d{6,12}:[A-Za-z0-9_-]{30,}\b"),
)
# The ``user:password@`` of a URL quoted in any text (an error message of requests, say).
URL_CREDENTIALS = re.compile(r"(?<=://)[^/?#@\s]+@")
# Control characters (C0, DEL, C1) written as \xNN: a server's ESC sequence, carriage return or
# bell would otherwise move the cursor, clear the screen or rewrite a line of the reader's
# terminal. The line feed and the tab are kept here (our own messages use them); text from a
# server is also folded onto one line first (answers.one_line).
CONTROL_ESCAPES = {
    code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0)) if code not in (9, 10)
}


def without_controls(text: str) -> str:
    """``text`` with every control character but the line feed and the tab written as
    ``\\xNN``, so that showing it cannot steer a terminal."""
    return text.translate(CONTROL_ESCAPES)


class Redactor(logging.Filter):
    """Masks known secrets in every log record and in any text it is given.

    The secrets of the settings are known from the start; session tokens are added the moment
    XTS hands them over, before anything could print them.
    """

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()  # longest first: a secret inside another stays hidden
        self._adding = threading.Lock()  # accounts' threads add their tokens at the same time
        for secret in secrets or []:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Mask ``secret`` from now on (values under four characters would mask ordinary text)."""
        with self._adding:
            if len(secret) >= 4 and secret not in self._secrets:
                self._secrets = tuple(sorted((*self._secrets, secret), key=len, reverse=True))

    def redact(self, text: str) -> str:
        """``text`` with every known secret, and anything shaped like one, masked, a URL's
        user and password cut out, and control characters written out (without_controls)."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, mask(secret))
        for shape in SECRET_SHAPES:
            text = shape.sub(lambda found: mask(found.group(0)), text)
        if "://" in text:
            text = URL_CREDENTIALS.sub("", text)
        return without_controls(text)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message in place; never drop a record."""
        record.msg = self.redact(record.getMessage())
        record.args = ()
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def account_prefix(account: str) -> str:
    """How each line of ``account`` starts in a run with account files: ``[NAME] ``."""
    return f"[{account}] "


class AccountLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The run's logger for one account: each of its lines starts with account_prefix.

    With several accounts refreshed at once, the prefix is what tells their lines apart in
    the console and in the log file. Each record also carries the account's name (as
    ``xts_account``), which ConsoleCapture sorts the lines of health checks by.
    """

    def __init__(self, log: logging.Logger, account: str) -> None:
        super().__init__(log, {})
        self.account = account
        self.prefix = account_prefix(account)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        """Log ``msg % args`` with the account's prefix on each of its lines."""
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            prefixed = "\n".join(self.prefix + line for line in text.split("\n"))
            kwargs["extra"] = {ACCOUNT_ATTRIBUTE: self.account}
            self.logger.log(level, "%s", prefixed, **kwargs)


class _ReaderMayLeave(io.FileIO):
    """A console descriptor whose reader may go away (``xts_token_refresh.py | head -1``).

    The first write that meets a closed pipe (EPIPE) points the descriptor at os.devnull, as
    the signal module's "Note on SIGPIPE" advises, and counts as written: the run goes on as if
    the lines had been read, with no BrokenPipeError in a log handler, a print() or Python's
    flush at exit. SIGPIPE stays ignored (Python's default), so the refresh is never killed
    before it saves; the log file, a file of its own, misses nothing.
    """

    def write(self, data: ReadableBuffer, /) -> int:
        try:
            return super().write(data)
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self.fileno())
            finally:
                os.close(devnull)
            return memoryview(data).nbytes


def _tolerant(stream: TextIO) -> TextIO:
    """``stream`` (stdout or stderr) rebuilt on a _ReaderMayLeave, or as it is when it is not a
    plain file descriptor (e.g. pytest's capture)."""
    if not isinstance(stream, io.TextIOWrapper):
        return stream
    try:
        descriptor = stream.fileno()
        stream.flush()
    except (OSError, ValueError):
        return stream
    raw = _ReaderMayLeave(descriptor, "w", closefd=False)
    return io.TextIOWrapper(
        io.BufferedWriter(raw),
        encoding=stream.encoding,
        errors=stream.errors,
        line_buffering=stream.line_buffering,
        write_through=stream.write_through,
    )


@contextlib.contextmanager
def console_survives_closed_pipes() -> Iterator[None]:
    """Within it, sys.stdout and sys.stderr never raise because their reader went away."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _tolerant(sys.stdout), _tolerant(sys.stderr)
    try:
        yield
    finally:
        for replaced in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                replaced.flush()
        sys.stdout, sys.stderr = saved


class _ConsoleFormatter(logging.Formatter):
    """The console shows messages as written; the ✓/✗/⚠ symbols carry the level."""

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


def setup_logging(redactor: Redactor, console_stream: TextIO | None = None) -> logging.Logger:
    """The run's logger, printing plain lines on ``console_stream`` (stdout unless given).

    Set up once per run, before anything is known; ``add_log_file`` adds the log file as soon
    as its path is known.
    """
    log = logging.getLogger(LOGGER_NAME)
    close_logging(log)
    log.setLevel(logging.INFO)
    log.propagate = False
    # On the logger, not on each handler: every record is masked once, before any handler.
    log.addFilter(redactor)
    console = logging.StreamHandler(console_stream or sys.stdout)
    console.set_name(CONSOLE_HANDLER_NAME)
    console.setFormatter(_ConsoleFormatter())
    log.addHandler(console)
    return log


LOG_FILE_MODE = 0o600


class ReopeningFileHandler(logging.FileHandler):
    """A log file handler that reopens the file when logrotate has moved it away.

    This is what ``logging.handlers.WatchedFileHandler`` does; that module also imports
    pickle, queue and the socket handlers, which would cost every run about as many
    instructions as the rest of logging. A run that spans a rotation (a long hook) keeps
    writing to the new file, not to the renamed one.

    The file is never opened through a symlink nor as anything but a regular file, and is
    kept mode 0600 (``narrowed_from`` is the wider mode it had, if any). A file that cannot be
    written any more (a full disk, its folder removed) silences the handler after one call of
    ``on_failure`` with the reason: the run goes on, on the console alone, with no traceback.
    """

    def __init__(self, path: Path, on_failure: Callable[[str], object] | None = None) -> None:
        self.narrowed_from: int | None = None
        self.failed = False
        self._on_failure = on_failure
        super().__init__(path, encoding="utf-8", errors="backslashreplace")
        self._identity = self._file_identity()

    def _open(self) -> io.TextIOWrapper:
        """The log file opened for appending, created with mode 0600 whatever the umask.

        O_NOFOLLOW: a symlink there is refused (ELOOP); O_NONBLOCK: a FIFO does not hang the
        open, and is then refused with the rest of what is not a regular file.
        """
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK
        fd = os.open(self.baseFilename, flags, LOG_FILE_MODE)
        try:
            found = os.fstat(fd)
            if not stat.S_ISREG(found.st_mode):
                raise OSError(errno.EINVAL, "it is not a regular file")
            if found.st_mode & 0o077:
                os.fchmod(fd, LOG_FILE_MODE)
                self.narrowed_from = stat.S_IMODE(found.st_mode)
        except OSError:
            os.close(fd)
            raise
        return open(fd, "a", encoding=self.encoding, errors=self.errors)

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self.baseFilename)
        except OSError:
            return None
        return found.st_dev, found.st_ino

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record``, first reopening the file if it is no longer the one at the path."""
        if self.failed:
            return
        try:
            identity = self._file_identity()
            stream = self.stream
            if stream is None or identity != self._identity:
                if stream is not None:
                    with contextlib.suppress(OSError, ValueError):
                        stream.close()
                stream = self.stream = self._open()
                self._identity = self._file_identity()
            stream.write(self.format(record) + self.terminator)
            stream.flush()
        except Exception as exc:
            self._give_up(exc)

    def _give_up(self, exc: Exception) -> None:
        """Stop writing the file, and say why once (through ``on_failure``)."""
        self.failed = True
        stream, self.stream = self.stream, None
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.close()  # unflushed lines are dropped with it: the disk is full
        if self._on_failure is not None:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._on_failure(reason)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        """A write that failed inside logging's own code: as in emit, one warning, then quiet."""
        self._give_up(OSError(errno.EIO, "the log file could not be written"))

    def close(self) -> None:
        """Close the file; a last flush that fails (a full disk) is not the run's failure."""
        with contextlib.suppress(OSError, ValueError):
            super().close()


def add_log_file(log: logging.Logger, log_file: Path) -> None:
    """From now on, write ``log``'s lines to ``log_file`` too, each with a time and a level.

    The file is created with mode 0600 (a wider one is narrowed, with a warning) and written
    through a ReopeningFileHandler, which reopens it after logrotate renames it. A log file
    that cannot be opened, or stops being writable, costs one warning, not the run.
    """

    def warn(reason: str) -> None:
        log.warning(
            "⚠ Cannot write the log file %s (%s); the rest of this run is on the console only.",
            log_file,
            reason,
        )

    try:
        handler = ReopeningFileHandler(log_file, warn)
    except OSError as exc:
        log.warning(
            "⚠ Cannot write the log file %s (%s); logging to the console only.",
            log_file,
            exc.strerror,
        )
        return
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    log.addHandler(handler)
    if handler.narrowed_from is not None:
        log.warning(
            "⚠ The log file %s was mode %03o (others could read it); it is now 0600.",
            log_file,
            handler.narrowed_from,
        )


def close_logging(log: logging.Logger) -> None:
    """Flush and close the run's handlers (the demo runs several commands in one process)."""
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    for old_filter in list(log.filters):
        log.removeFilter(old_filter)


def report_failure(log: Log, failure: XtsRefreshError) -> None:
    """The failure's ✗ lines; the hint (what to do) always comes on the last line."""
    if "\n" in failure.message:
        log.error("✗ %s", failure.message)
        log.error("✗ %s", failure.hint)
    else:
        log.error("✗ %s", failure)


class AccountLines(logging.Filter):
    """Holds each account's console lines until ``release`` prints them together.

    Several accounts refresh at once, so their lines would interleave on the console; held
    back, each account's lines come as one block when it is done. Only the console waits:
    the log file (another handler) gets every line as it happens, with its time. Lines of no
    account (the run's own) pass at once.
    """

    def __init__(self, console: logging.Handler) -> None:
        super().__init__()
        self._console = console
        self._held: dict[str, list[logging.LogRecord]] = {}
        self._holding = threading.Lock()
        # Two accounts done at the same moment print one block after the other, never mixed.
        self._printing = threading.Lock()
        console.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass a line of no account, or one being released; hold any other."""
        account = getattr(record, ACCOUNT_ATTRIBUTE, None)
        if account is None or getattr(record, "xts_released", False):
            return True
        with self._holding:
            self._held.setdefault(account, []).append(record)
        return False

    def release(self, account: str) -> None:
        """Print the held lines of ``account``, in the order they came."""
        with self._printing:
            with self._holding:
                held = self._held.pop(account, [])
            for record in held:
                record.xts_released = True
                self._console.handle(record)

    def close(self) -> None:
        """Print every line still held (an account that never finished), then stop holding."""
        for account in list(self._held):
            self.release(account)
        self._console.removeFilter(self)


def hold_account_lines(log: logging.Logger) -> AccountLines | None:
    """From now on, hold each account's console lines until released (AccountLines); None
    when ``log`` has no console."""
    for handler in log.handlers:
        if handler.get_name() == CONSOLE_HANDLER_NAME:
            return AccountLines(handler)
    return None


class ConsoleCapture(logging.Handler):
    """Keeps the run's console lines (redacted: the logger's filter ran first), for the
    closing health-check pings; only the newest lines, enough for PING_BODY_BYTES."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(_ConsoleFormatter())
        self._lines: list[tuple[str | None, str]] = []  # (account or None, line)
        self._size = 0

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        self._lines.append((getattr(record, ACCOUNT_ATTRIBUTE, None), line))
        self._size += len(line) + 1
        while self._size > 4 * PING_BODY_BYTES and len(self._lines) > 1:
            self._size -= len(self._lines.pop(0)[1]) + 1

    def text(self, accounts: Collection[str] | None = None) -> str:
        """The captured lines; with ``accounts``, only the lines of those accounts (AccountLog)
        and the lines of no account (the run's own)."""
        kept = [
            line
            for account, line in self._lines
            if accounts is None or account is None or account in accounts
        ]
        return "\n".join(kept) + "\n"
