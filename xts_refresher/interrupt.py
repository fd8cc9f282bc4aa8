"""SIGINT and SIGTERM during a refresh: what still finishes, and what no longer starts.

XTS ends the previous market-data session of an app key as soon as it handles a new
market-data login, whether or not anyone reads the answer: a refresh that died with a login
under way would leave a dead token in the file. So during a refresh the two signals only ask
it to stop: a login already sent finishes (within XTS_DEADLINE) and its token is saved, no new
login starts, and the run exits 130 (SIGINT) or 143 (SIGTERM) saying which tokens are fresh.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, MappingProxyType

from .errors import InterruptedRunError, TerminatedRunError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; mypy honours the name
if TYPE_CHECKING:
    import signal as _signal
else:
    # The C module under ``signal``: signal.py adds only enums, whose creation would cost every
    # refresh about 3 M instructions (more than the rest of this package's start-up budget
    # allows); here the signals and handlers are the plain numbers the enums wrap.
    import _signal

STOP_ERRORS: MappingProxyType[int, type[InterruptedRunError]] = MappingProxyType(
    {_signal.SIGINT: InterruptedRunError, _signal.SIGTERM: TerminatedRunError}
)
SIGNAL_NAMES: MappingProxyType[int, str] = MappingProxyType(
    {_signal.SIGINT: "SIGINT", _signal.SIGTERM: "SIGTERM"}
)


class StopRequest:
    """Which of SIGINT and SIGTERM has asked the run to stop, if any (the first one counts).

    The signal handler only notes the signal: it runs between two bytecodes of the main
    thread, which may be halfway through writing a line or holding a lock, so it must neither
    print nor take a lock. The accounts' threads read the note before each login.
    """

    def __init__(self) -> None:
        self.signal_number: int | None = None

    @property
    def requested(self) -> bool:
        """True once a signal asked the run to stop."""
        return self.signal_number is not None

    @property
    def name(self) -> str:
        """The signal's name (``SIGINT``), or "" before one came."""
        number = self.signal_number
        return SIGNAL_NAMES[number] if number is not None else ""

    def error(self, message: str, hint: str | None = None) -> InterruptedRunError:
        """The failure of a run this signal stopped (exit 130 or 143), saying ``message``."""
        number = self.signal_number
        kind = STOP_ERRORS[number] if number is not None else InterruptedRunError
        return kind(message, hint)

    def lock_wait_error(self) -> InterruptedRunError | None:
        """What ends a wait for another run's lock once a signal came (None before): nothing
        was sent yet, so nothing needs finishing."""
        if not self.requested:
            return None
        return self.error(
            f"{self.name} stopped the refresh while it waited for another run's lock; "
            "no login was sent, so the token files are unchanged."
        )

    def _note(self, number: int, frame: FrameType | None) -> None:
        if self.signal_number is None:
            self.signal_number = number

    @contextmanager
    def handling(self) -> Iterator[StopRequest]:
        """Note SIGINT and SIGTERM instead of dying of them while the block runs, then put the
        previous handlers back. Only the main thread can set handlers (elsewhere nothing
        changes), and a signal the process was started ignoring (a job started in the
        background by a shell ignores SIGINT) stays ignored."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {}
        for number in STOP_ERRORS:
            handler = _signal.getsignal(number)
            if handler != _signal.SIG_IGN:
                previous[number] = _signal.SIG_DFL if handler is None else handler
                _signal.signal(number, self._note)
        try:
            yield self
        finally:
            for number, handler in previous.items():
                _signal.signal(number, handler)
