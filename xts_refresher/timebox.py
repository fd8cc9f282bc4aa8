"""Bounding a blocking call in wall-clock time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


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
        raise TimeoutError(f"no answer within {seconds:g} s")
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result
