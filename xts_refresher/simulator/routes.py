"""The simulator's route table: which function answers which method and path.

Every route the simulator serves is named once, in ``ROUTE_TABLE``: its methods, how its path
is matched and which function answers it. A request takes the first route that serves it; any
other request takes the "unknown" route, answered 404 as a real server would, so a typo in a
configured path fails a test as it fails against a broker. The answers of the XTS logins and
token checks are the simulator's (server.py), those of a broker's login page thirdparty.py's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from . import thirdparty
from .faults import RecordedRequest, error_body

if TYPE_CHECKING:
    from .server import XtsSimulator

MD_PREFIXES = ("/apimarketdata", "/apibinarymarketdata")

Answer = tuple[int, Any]
"""An answer: the HTTP status and a JSON object, bytes sent as plain text, or a Fault (a page
with its own content type and headers) sent as it says."""

_PathMatch = Callable[[str, Any, str], bool]
"""Whether a path (with the request's parsed JSON body, and the API prefix) is a route's."""


def _under_api(*paths: str) -> _PathMatch:
    """Return a matcher for exactly one of ``paths`` under the API prefix (``/xts``)."""

    def match(path: str, body: Any, prefix: str) -> bool:
        return any(path == prefix + candidate for candidate in paths)

    return match


def _market_data(path: str) -> tuple[str, ...]:
    """Return ``path`` under each market-data prefix (the JSON and the binary feed)."""
    return tuple(md_prefix + path for md_prefix in MD_PREFIXES)


def _any_case(expected: str) -> _PathMatch:
    """Return a matcher for exactly ``expected`` in any letter case, without the API prefix."""

    def match(path: str, body: Any, prefix: str) -> bool:
        return path.lower() == expected.lower()

    return match


def _clustered_login(path: str, body: Any, prefix: str) -> bool:
    """Return whether this is a clustered login: a body with a ``uniqueKey``, sent to
    {connectionString}/user/session, which the simulator's host lookup hands out as
    {url}/interactive (without the API prefix)."""
    return path == "/interactive/user/session" and isinstance(body, dict) and "uniqueKey" in body


def _exchange(path: str, body: Any, prefix: str) -> bool:
    """Return whether this is the exchange of a login page's access token for a session: a
    login (under the API prefix) whose body carries an ``accessToken``."""
    return (
        path == prefix + "/interactive/user/session"
        and isinstance(body, dict)
        and ("accessToken" in body)
    )


def _whole(pattern: str) -> _PathMatch:
    """Return a matcher for paths that ``pattern`` matches whole, without the API prefix."""
    compiled = re.compile(pattern)

    def match(path: str, body: Any, prefix: str) -> bool:
        return compiled.fullmatch(path) is not None

    return match


def _starting(start: str) -> _PathMatch:
    """Return a matcher for paths starting with ``start``, without the API prefix."""

    def match(path: str, body: Any, prefix: str) -> bool:
        return path.startswith(start)

    return match


@dataclass(frozen=True)
class _Route:
    """One route: its name (for faults and recorded requests), the methods it serves, its
    path matchers (any one matching will do) and the function that answers it."""

    name: str
    methods: tuple[str, ...]
    paths: tuple[_PathMatch, ...]
    answer: Callable[[XtsSimulator, RecordedRequest], Answer]

    def serves(self, method: str, path: str, body: Any, prefix: str) -> bool:
        """Return whether a request with this method, path and JSON body takes this route."""
        return method in self.methods and any(match(path, body, prefix) for match in self.paths)


def _answer_interactive_login(sim: XtsSimulator, request: RecordedRequest) -> Answer:
    """Return the interactive login's answer: a session token, or why not."""
    return sim._login(request, "interactive")


def _answer_interactive_logout(sim: XtsSimulator, request: RecordedRequest) -> Answer:
    """Return the logout's answer, ending the session of the token it carries."""
    return sim._authorized(request, "interactive", logout=True)


def _answer_interactive_balance(sim: XtsSimulator, request: RecordedRequest) -> Answer:
    """Return the balance (the interactive token check), or why the token is refused."""
    return sim._authorized(request, "interactive")


def _answer_marketdata_login(sim: XtsSimulator, request: RecordedRequest) -> Answer:
    """Return the market-data login's answer: a session token, or why not."""
    return sim._login(request, "marketdata")


def _answer_marketdata_config(sim: XtsSimulator, request: RecordedRequest) -> Answer:
    """Return the client config (the market-data token check), or why the token is refused."""
    return sim._authorized(request, "marketdata")


def _answer_hostlookup(sim: XtsSimulator, request: RecordedRequest) -> Answer:
    """Return a host lookup: a fresh uniqueKey and the connection string to log in at."""
    return 200, sim._hostlookup()


def _answer_telegram(sim: XtsSimulator, request: RecordedRequest) -> Answer:
    """Return Telegram's answer to sendMessage (the next message ID), or its refusal."""
    refusal = sim._telegram_refusal(request, needs_chat=True)
    if refusal is not None:
        return refusal
    return 200, {"ok": True, "result": {"message_id": sim._deliver_message(request)}}


def _answer_telegram_getme(sim: XtsSimulator, request: RecordedRequest) -> Answer:
    """Return Telegram's answer to getMe (who the bot is), or its refusal."""
    refusal = sim._telegram_refusal(request, needs_chat=False)
    if refusal is not None:
        return refusal
    bot = {"id": 987654321, "is_bot": True, "first_name": "XTS sim", "username": "xts_sim_bot"}
    return 200, {"ok": True, "result": bot}


def _answer_telegram_getchat(sim: XtsSimulator, request: RecordedRequest) -> Answer:
    """Return Telegram's answer to getChat (the chat's type and title), or its refusal."""
    refusal = sim._telegram_refusal(request, needs_chat=True)
    if refusal is not None:
        return refusal
    chat_id = str(telegram_fields(request).get("chat_id"))
    return 200, {"ok": True, "result": {"id": chat_id, "type": "group", "title": "XTS alerts"}}


def _answer_healthcheck(sim: XtsSimulator, request: RecordedRequest) -> Answer:
    """Return healthchecks.io's answer to a ping."""
    return 200, b"OK"


def _answer_unknown(sim: XtsSimulator, request: RecordedRequest) -> Answer:
    """Return a 404 with an XTS error body naming the method and path."""
    description = f"Route not found: {request.method} {request.path}"
    return 404, error_body("e-route-0404", description)


ROUTE_TABLE: tuple[_Route, ...] = (
    _Route(
        "interactive_exchange",
        ("POST",),
        (_exchange,),
        thirdparty.answer_exchange,
    ),
    _Route(
        "interactive_login",
        ("POST",),
        (_under_api("/interactive/user/session"), _clustered_login),
        _answer_interactive_login,
    ),
    _Route(
        "interactive_logout",
        ("DELETE",),
        (_under_api("/interactive/user/session"),),
        _answer_interactive_logout,
    ),
    _Route(
        "interactive_balance",
        ("GET",),
        (_under_api("/interactive/user/balance"),),
        _answer_interactive_balance,
    ),
    _Route(
        "marketdata_login",
        ("POST",),
        (_under_api(*_market_data("/auth/login")),),
        _answer_marketdata_login,
    ),
    _Route(
        "marketdata_config",
        ("GET",),
        (_under_api(*_market_data("/config/clientConfig")),),
        _answer_marketdata_config,
    ),
    _Route(
        "thirdparty_page", ("GET",), (_under_api(thirdparty.PAGE_PATH),), thirdparty.answer_page
    ),
    _Route(
        "thirdparty_sign_in",
        ("POST",),
        (_under_api(thirdparty.PAGE_PATH),),
        thirdparty.answer_sign_in,
    ),
    _Route("hostlookup", ("POST",), (_any_case("/hostlookup"),), _answer_hostlookup),
    _Route("telegram", ("GET", "POST"), (_whole(r"/bot[^/]+/sendMessage"),), _answer_telegram),
    _Route(
        "telegram_getme", ("GET", "POST"), (_whole(r"/bot[^/]+/getMe"),), _answer_telegram_getme
    ),
    _Route(
        "telegram_getchat",
        ("GET", "POST"),
        (_whole(r"/bot[^/]+/getChat"),),
        _answer_telegram_getchat,
    ),
    _Route("healthcheck", ("GET", "POST", "HEAD"), (_starting("/ping/"),), _answer_healthcheck),
)
UNKNOWN = _Route("unknown", (), (), _answer_unknown)

# The routes whose every answer waits for the simulator's login_delay first.
LOGIN_ROUTES = frozenset(("interactive_exchange", "interactive_login", "marketdata_login"))
MARKETDATA_ROUTES = frozenset(("marketdata_login", "marketdata_config"))

# The route names add_fault() accepts and requests() records, "unknown" last.
ROUTES: tuple[str, ...] = (*(route.name for route in ROUTE_TABLE), UNKNOWN.name)


def find_route(method: str, path: str, body: Any, prefix: str) -> _Route:
    """Return the first route in the table serving this request, else the "unknown" route.

    ``body`` is the parsed JSON body (None if there is none); ``prefix`` is the path prefix
    of the simulated API root (``/xts`` for ``https://host/xts``).
    """
    return next((r for r in ROUTE_TABLE if r.serves(method, path, body, prefix)), UNKNOWN)


def required_field(name: str) -> dict[str, Any]:
    messages = [f'"{name}" is required']
    return {"field": [name], "location": "body", "messages": messages, "types": ["any.required"]}


def login_fields(request: RecordedRequest) -> dict[str, Any]:
    if isinstance(request.json, dict):
        return request.json
    form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in form.items()}


def telegram_fields(request: RecordedRequest) -> dict[str, Any]:
    """A Bot API request's parameters: its JSON body, else its query string."""
    return request.json if isinstance(request.json, dict) else dict(request.query)
