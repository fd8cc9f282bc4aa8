"""The run lock: one refresh of a token file at a time, and who holds it.

A lock file sits beside each token file; ``RunLock`` takes it, ``lock_holder`` names its
holder for a waiting run or ``status``, and a post-refresh hook's environment tells a refresh
the hook started that its parent still holds the lock.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time

from .errors import LockTimeoutError, TokenSaveError, XtsRefreshError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; mypy honours the name
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

# Owner-only, even with XTS_TOKEN_GROUP: only refreshes (run as the owner) take the lock, while
# bots of the group read the token file without it (each save is an atomic rename), so the group
# gains nothing from the lock file but the refresher's pid.
LOCK_FILE_MODE = 0o600
# How much of a lock file names its holder ("pid N since YYYY-MM-DD HH:MM:SS IST").
HOLDER_BYTES = 200
# Tells a refresh that a post-refresh hook started it: "<pid of the hook's refresh>:<its lock>".
LOCK_HELD_VARIABLE = "XTS_REFRESH_LOCK_HELD"


class RunLock:
    """An exclusive lock file beside a token file: one refresh of that file at a time.

    Two refreshes racing (cron plus a person at the keyboard, or a slow run overtaken by the
    next) would both log in, and the second market-data login silently kills the first one's
    token after it was saved. ``fcntl.flock`` closes that race on Linux and macOS; the kernel
    drops the lock when its holder dies, so a crashed run never blocks the next. The holder
    writes its pid and start time into the file so a waiting run can name it.
    """

    POLL_SECONDS = 0.1

    def __init__(
        self,
        path: Path,
        wait_seconds: float = 0.0,
        on_wait: Callable[[str], object] | None = None,
        interrupted: Callable[[], XtsRefreshError | None] | None = None,
    ) -> None:
        """A lock on ``path``; used as a context manager it is taken (waiting at most
        ``wait_seconds``, telling ``on_wait`` once, giving up with the error ``interrupted``
        returns once it returns one) on entry and released on exit."""
        self.path = path
        self.wait_seconds = wait_seconds
        self.on_wait = on_wait
        self.interrupted = interrupted
        # Who held the lock when this run had to wait for it ("pid 123 since …"); None when
        # it was free at once.
        self.waited_for: str | None = None
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire(self.wait_seconds, self.on_wait)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def acquire(self, wait_seconds: float, on_wait: Callable[[str], object] | None = None) -> None:
        """Take the lock, waiting at most ``wait_seconds``; LockTimeoutError names the holder.

        When another run holds it, ``on_wait`` is called once with a line saying who holds it
        and how long this run waits, so a waiting run is never silent.
        """
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, LOCK_FILE_MODE)
        except OSError as exc:
            raise TokenSaveError(
                f"Cannot open the lock file {self.path}: {exc.strerror}.",
                f"No login was sent, so the current tokens still work. Let the user running the "
                f"job write to {self.path.parent} (or point the token file elsewhere), then run "
                "again.",
            ) from None
        give_up = time.monotonic() + max(wait_seconds, 0.0)
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    self.waited_for = self._holder(fd)
                    if on_wait is not None:
                        on_wait(
                            f"Another refresh ({self.waited_for}) holds the lock {self.path}; "
                            f"waiting up to {wait_seconds:.0f} s for it to finish."
                        )
                announced = True
                stop = self.interrupted() if self.interrupted is not None else None
                if stop is not None:
                    os.close(fd)
                    raise stop from None
                if time.monotonic() >= give_up:
                    holder = self._holder(fd)
                    os.close(fd)
                    raise LockTimeoutError(
                        f"Another refresh ({holder}) held the lock {self.path} "
                        f"for more than {wait_seconds:.0f} s."
                    ) from None
                time.sleep(self.POLL_SECONDS)
        self._fd = fd
        from .shown_time import shown_time  # loaded by then: the banner showed the run's start

        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} since {shown_time(time.time())}\n".encode())
        except OSError:
            pass  # naming the holder is a courtesy; a full disk must not stop the run here

    @staticmethod
    def _holder(fd: int) -> str:
        """What the lock file ``fd`` says of its holder (``pid N since ...``), one line of
        printable text; "holder unknown" when it says nothing readable. Only a regular file is
        read (a device could block or never end), and only its first 200 bytes."""
        try:
            readable = stat.S_ISREG(os.fstat(fd).st_mode)
            raw = os.pread(fd, HOLDER_BYTES, 0) if readable else b""
        except OSError:
            raw = b""
        line = raw.decode("utf-8", "replace").strip().split("\n", 1)[0]
        text = "".join(char if char.isprintable() else "?" for char in line).strip()
        return text or "holder unknown"

    def release(self) -> None:
        """Let the next run in; the lock file itself stays (removing it would reopen the race)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lock_holder(path: Path) -> str | None:
    """What the lock file at ``path`` says of its holder ("pid 123 since …") while another
    process holds the lock; None when nobody holds it (or there is no lock file).

    A probe: it takes the lock shared without waiting and lets go at once.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return RunLock._holder(fd)
        except OSError:
            return None
        return None
    finally:
        os.close(fd)


def held_lock_mark(lock_file: Path) -> str:
    """The value of LOCK_HELD_VARIABLE in a post-refresh hook's environment: this process
    holds ``lock_file`` until the hook returns."""
    return f"{os.getpid()}:{lock_file}"


def started_by_running_hook(lock_files: Sequence[Path]) -> bool:
    """True when this refresh was started by a post-refresh hook whose refresh still holds
    one of ``lock_files``: it would wait for that lock until the hook gives up, so it must stop.

    A process the hook left running (a bot that runs the refresher an hour later) inherits the
    variable too, but by then that refresh has ended and its lock is free (or held by another
    process), so it runs as any other.
    """
    from pathlib import Path  # loaded by then: store's importers that read tokens never call this

    pid, _, path = os.environ.get(LOCK_HELD_VARIABLE, "").partition(":")
    if not (pid.isdigit() and path) or Path(path) not in lock_files:
        return False
    holder = lock_holder(Path(path))
    return holder is not None and holder.split()[:2] == ["pid", pid]
