"""The bundled fake broker: not part of the product's run, but shipped for the ``demo`` command.

``server`` answers like an XTS broker (and a Telegram Bot API and healthchecks.io) on
127.0.0.1; ``faults`` holds what it records and the faults a test queues. The tests and the
demo import what they need from here. ``python -m xts_refresher.simulator`` serves one in the
foreground.
"""

from __future__ import annotations

from .faults import Fault, RecordedRequest
from .server import (
    BAD_CREDENTIALS_DESCRIPTION,
    CODE_BAD_CREDENTIALS_INTERACTIVE,
    CODE_BAD_CREDENTIALS_MARKETDATA,
    DEMO_INTERACTIVE_KEY,
    DEMO_INTERACTIVE_SECRET,
    DEMO_MARKETDATA_KEY,
    DEMO_MARKETDATA_SECRET,
    DEMO_USER_ID,
    ROUTES,
    XtsSimulator,
    main,
)

__all__ = [
    "BAD_CREDENTIALS_DESCRIPTION",
    "CODE_BAD_CREDENTIALS_INTERACTIVE",
    "CODE_BAD_CREDENTIALS_MARKETDATA",
    "DEMO_INTERACTIVE_KEY",
    "DEMO_INTERACTIVE_SECRET",
    "DEMO_MARKETDATA_KEY",
    "DEMO_MARKETDATA_SECRET",
    "DEMO_USER_ID",
    "ROUTES",
    "Fault",
    "RecordedRequest",
    "XtsSimulator",
    "main",
]
