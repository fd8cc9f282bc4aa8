"""Time: the run's deadline, the waits between retries, the retry loop, and bounding a
blocking call."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from .values import Frozen

if TYPE_CHECKING:
    from .console import Log

T = TypeVar("T")

MAX_BACKOFF_SECONDS = 60.0


class Deadline:
    """A time budget that started when it was made: no request outlives it, and no retry
    starts after it. The run has one (``XTS_DEADLINE``); a notification has a smaller one."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._end - time.monotonic())


class Pacing(Frozen):
    """When a run's messages and pings may be retried: after waits that start at
    ``first_wait`` (XTS_RETRY_BACKOFF), and only before the run's ``deadline``."""

    __slots__ = ("deadline", "first_wait")
    first_wait: float
    deadline: Deadline

    def __init__(self, first_wait: float, deadline: Deadline) -> None:
        self._set(first_wait=first_wait, deadline=deadline)


def backoff_seconds(first_wait: float, attempt: int, retry_after: float | None = None) -> float:
    """The wait after failed attempt number ``attempt`` (1, 2, …): ``first_wait`` doubling per
    attempt up to MAX_BACKOFF_SECONDS, with jitter, and at least what the server asked for."""
    exponential = min(MAX_BACKOFF_SECONDS, first_wait * 2.0 ** (attempt - 1))
    wait = exponential * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security
    if retry_after is not None:
        wait = max(wait, min(retry_after, MAX_BACKOFF_SECONDS))
    return wait


def retry_after_seconds(value: object) -> float | None:
    """The seconds a server asked to wait (a ``Retry-After`` header, Telegram's
    ``retry_after``), or None when there is no such number (the HTTP-date form included: the
    caller's own backoff then decides)."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        seconds = float(str(value))
    except ValueError:
        return None
    return seconds if seconds >= 0 else 0.0


class Failure(Frozen):
    """An attempt's failure worth another try: what went wrong, and the wait the server asked
    for (seconds), if it said."""

    __slots__ = ("reason", "retry_after")
    reason: str
    retry_after: float | None

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        self._set(reason=reason, retry_after=retry_after)


class RetriesSpent(Exception):  # noqa: N818 - not an error of its own: the caller words it
    """No attempt succeeded: the last ``failure``, after ``attempts`` attempts. ``limit`` is
    the Deadline that left no time for another try, None when the attempts ran out."""

    def __init__(self, failure: Failure, attempts: int, limit: Deadline | None) -> None:
        super().__init__(failure.reason)
        self.failure = failure
        self.attempts = attempts
        self.limit = limit


def with_retries(
    what: str,
    attempt: Callable[[int], T],
    log: Log,
    *,
    transient: Callable[[Exception], Failure | None],
    attempts: int,
    first_wait: float,
    limits: Sequence[Deadline],
    spare: float = 0.0,
    say_recovery: bool = False,
) -> T:
    """``attempt(number)``'s result (number 1, 2, …), tried again after a failure that
    ``transient`` turns into a Failure; anything else it raises goes to the caller at once.

    Up to ``attempts`` tries, with backoff_seconds from ``first_wait`` between them; a retry
    starts only when its wait and ``spare`` more seconds fit before every Deadline of
    ``limits``. Each retry is announced with a ⚠ line starting with ``what`` ("The
    interactive login"), and with ``say_recovery`` a success after a failure with a ✓ line.
    Raises RetriesSpent when no attempt succeeded.
    """
    number = 0
    while True:
        number += 1
        try:
            result = attempt(number)
        except Exception as exc:
            failure = transient(exc)
            if failure is None:
                raise
        else:
            if say_recovery and number > 1:  # the lines above said it failed
                log.info("✓ %s got through on attempt %d of %d.", what, number, attempts)
            return result
        if number >= attempts:
            raise RetriesSpent(failure, number, None)
        wait = backoff_seconds(first_wait, number, failure.retry_after)
        nearest = min(limits, key=Deadline.remaining)  # the first of equals: the caller's order
        if wait + spare >= nearest.remaining():
            raise RetriesSpent(failure, number, nearest)
        log.warning(
            "⚠ %s failed (%s), attempt %d of %d; retrying in %.1f s.",
            what,
            failure.reason,
            number,
            attempts,
            wait,
        )
        time.sleep(wait)


def run_within(seconds: float, action: Callable[[], T]) -> T:
    """``action()``'s result, or TimeoutError when it takes longer than ``seconds``.

    The action runs in a daemon thread that is abandoned on time-out, so a server that
    trickles its answer cannot hold the run longer than promised.
    """
    outcome: list[T | BaseException] = []

    def work() -> None:
        try:
            outcome.append(action())
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=work, name="xts-timebox", daemon=True)
    worker.start()
    worker.join(seconds)
    if not outcome:
        raise TimeoutError(f"no answer within {seconds_text(seconds)} s")
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def seconds_text(seconds: float) -> str:
    """A duration in seconds as people read it: whole seconds from 10 s up (``30``), tenths
    below (``3.3``, never ``3.30782``); never ``0`` for a wait that was not nothing."""
    if seconds >= 10:
        return f"{round(seconds):d}"
    shown = round(seconds, 1)
    return f"{shown:g}" if shown or not seconds else "0.1"
