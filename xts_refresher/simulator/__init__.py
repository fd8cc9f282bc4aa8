"""The bundled fake broker: not part of the product's run, but shipped for the ``demo`` command.

``server`` answers like an XTS broker (and a Telegram Bot API and healthchecks.io) on
127.0.0.1, its route table in ``routes``; ``thirdparty`` plays a broker whose holder signs in
on its login page (with ``totp`` and ``sign_in``); ``faults`` holds what it records and the
faults a test queues. The tests and the demo import what they need from here.
``python -m xts_refresher.simulator`` serves one in the foreground.
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
from .thirdparty import (
    CODE_BAD_ACCESS_TOKEN,
    CODE_KEY_LOGIN_REFUSED,
    THIRDPARTY_INTERACTIVE_KEY,
    THIRDPARTY_INTERACTIVE_SECRET,
    THIRDPARTY_MARKETDATA_KEY,
    THIRDPARTY_MARKETDATA_SECRET,
    THIRDPARTY_PASSWORD,
    THIRDPARTY_TOTP_SECRET,
    THIRDPARTY_USER_ID,
    ThirdpartyBroker,
    page_forms,
    sign_in,
    totp,
)

__all__ = [
    "BAD_CREDENTIALS_DESCRIPTION",
    "CODE_BAD_ACCESS_TOKEN",
    "CODE_BAD_CREDENTIALS_INTERACTIVE",
    "CODE_BAD_CREDENTIALS_MARKETDATA",
    "CODE_KEY_LOGIN_REFUSED",
    "DEMO_INTERACTIVE_KEY",
    "DEMO_INTERACTIVE_SECRET",
    "DEMO_MARKETDATA_KEY",
    "DEMO_MARKETDATA_SECRET",
    "DEMO_USER_ID",
    "ROUTES",
    "THIRDPARTY_INTERACTIVE_KEY",
    "THIRDPARTY_INTERACTIVE_SECRET",
    "THIRDPARTY_MARKETDATA_KEY",
    "THIRDPARTY_MARKETDATA_SECRET",
    "THIRDPARTY_PASSWORD",
    "THIRDPARTY_TOTP_SECRET",
    "THIRDPARTY_USER_ID",
    "Fault",
    "RecordedRequest",
    "ThirdpartyBroker",
    "XtsSimulator",
    "main",
    "page_forms",
    "sign_in",
    "totp",
]
