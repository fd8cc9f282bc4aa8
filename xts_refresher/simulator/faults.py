"""What the bundled simulator records, and the faults a test queues to make it misbehave.

The answer shapes (``{"type": "error", "code": …, "description": …}``) are XTS's, as
PROTOCOL.md describes them; the faults are what brokers and the proxies in front of them have
been seen to do: error bodies, HTML pages, rate limits, hangs, resets, trickled bodies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode("utf-8")


def error_body(code: str, description: str, result: Any = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "description": description, "result": result or {}}


def success_body(code: str, description: str, result: Any, kind: Any = "success") -> dict[str, Any]:
    return {"type": kind, "code": code, "description": description, "result": result}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the simulator received it."""

    route: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any
    at: float


@dataclass(frozen=True)
class Fault:
    """What to answer instead of the normal behaviour, for one request.

    ``delay`` waits before answering (a hung server) and ends early, without answering, when
    the simulator stops. ``trickle`` sends the headers, then the body one byte per ``trickle``
    seconds (which defeats per-read client timeouts). ``reset`` answers nothing and resets
    the TCP connection; with ``cut_after`` >= 0 it first sends the headers (announcing the
    whole body) and that many bytes of the body. Build faults with the factory class methods.
    """

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    trickle: float = 0.0
    reset: bool = False
    cut_after: int = -1

    @classmethod
    def json(cls, obj: Any, status: int = 200) -> Fault:
        """Return a fault answering ``obj`` as JSON."""
        return cls.raw(json_bytes(obj), status=status)

    @classmethod
    def xts_error(cls, code: str, description: str, status: int = 400, result: Any = None) -> Fault:
        """Return a fault answering an XTS error body."""
        return cls.raw(json_bytes(error_body(code, description, result)), status=status)

    @classmethod
    def html(cls, status: int = 502) -> Fault:
        """Return a fault answering an nginx-style HTML error page."""
        title = f"{status} {HTTPStatus(status).phrase}"
        page = (
            f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
            f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
            "</body>\r\n</html>\r\n"
        )
        return cls.raw(page.encode("ascii"), status=status, content_type="text/html")

    @classmethod
    def rate_limited(cls, retry_after: float | None = None) -> Fault:
        """Return a fault answering HTTP 429 with the XTS rate-limit error."""
        base = cls.xts_error("e-apirl-0004", "Rate Limit reached", status=429)
        if retry_after is None:
            return base
        return cls(
            status=429, body=base.body, headers=(*base.headers, ("Retry-After", f"{retry_after:g}"))
        )

    @classmethod
    def telegram_error(
        cls, status: int, description: str, parameters: dict[str, Any] | None = None
    ) -> Fault:
        """Return a fault answering a Bot API error (``{"ok": false, ...}``) with ``status``."""
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return cls.json(body, status=status)

    @classmethod
    def telegram_flood(cls, retry_after: int) -> Fault:
        """Return a fault answering Telegram's 429 flood control, asking to wait ``retry_after``
        seconds in ``parameters.retry_after`` (and, as Telegram does, in the description)."""
        return cls.telegram_error(
            429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
        )

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Fault:
        """Return a fault answering a redirect (``status`` 301/302/303/307/308) to ``location``,
        as a proxy or a moved server does."""
        return cls(
            status=status,
            body=b"",
            headers=(("Location", location), ("Content-Type", "text/html")),
        )

    @classmethod
    def raw(cls, body: bytes, status: int = 200, content_type: str = "application/json") -> Fault:
        """Return a fault answering arbitrary bytes."""
        return cls(status=status, body=body, headers=(("Content-Type", content_type),))

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """Return a fault that waits ``seconds`` and then answers a 504 HTML page."""
        page = cls.html(504)
        return cls(status=504, body=page.body, headers=page.headers, delay=seconds)

    @classmethod
    def connection_reset(cls) -> Fault:
        """Return a fault that resets the connection without answering."""
        return cls(reset=True)

    @classmethod
    def cut_off(cls, body: bytes, after: int, status: int = 200) -> Fault:
        """Return a fault that resets the connection after ``after`` bytes of ``body``."""
        return replace(cls.raw(body, status=status), reset=True, cut_after=after)

    @classmethod
    def slow_body(cls, body: bytes, per_byte: float, status: int = 200) -> Fault:
        """Return a fault that sends ``body`` one byte every ``per_byte`` seconds."""
        return replace(cls.raw(body, status=status), trickle=per_byte)
