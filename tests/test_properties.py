"""Property-based tests (hypothesis): whatever XTS answers and whatever the settings hold, the
program ends in a contract exit code (README, "Exit codes"), never in a stray exception.

Three groups:

* in-process properties on the pure parsers: XTS answers (``decode_answer``, ``require_token``,
  ``login_result``, ``describe_xts_error``), login results (``stored_from_login``, the token file
  written from them), token files (``jwt_claims``, ``expiry_from_token``, ``parse_token_json``,
  ``read_token_file``, ``load_token``) and settings (``load_settings``, ``.env`` files);
* end to end, a few generated answers queued on the simulator and the real script run on them
  (``XTS_RETRIES=1``);
* regressions: the inputs that once broke the program (deep nesting, lone surrogates, NaN,
  line breaks in XTS text, odd digits, URLs and paths, huge timeouts, odd tokens under
  ``--verify``), each as an explicit example.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
import tempfile
import time
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest
from conftest import IN_CI, INTERACTIVE_KEY, INTERACTIVE_SECRET, USER_ID, Project
from hypothesis import assume, event, example, given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from xts_refresher import account_refresh, store
from xts_refresher.accounts import load_settings
from xts_refresher.answers import (
    LoginResult,
    RedirectedError,
    RetryableError,
    RouteNotFoundError,
    decode_answer,
    describe_xts_error,
    login_result,
    one_line,
    require_token,
)
from xts_refresher.errors import (
    ConfigError,
    LoginRefusedError,
    TokenUnavailableError,
    XtsRefreshError,
)
from xts_refresher.parsers import TRUE_WORDS
from xts_refresher.sessions import INTERACTIVE
from xts_refresher.sessions import SESSIONS as SESSION_TABLE
from xts_refresher.settings import (
    KNOWN_VARIABLES,
    MAX_RETRIES,
    TELEGRAM_MODES,
    PathOverrides,
    Settings,
)
from xts_refresher.simulator import Fault, XtsSimulator
from xts_refresher.timebox import run_within
from xts_token_refresh import load_token

# -- hypothesis settings --------------------------------------------------------------------------
# No deadline: the machine is small and shared, and a slow example is not a failure. No example
# database: every run starts from the same explicit examples plus fresh random ones.
# Under CI the examples are derived from the tests themselves: the same run every time.
FAST = settings(deadline=None, database=None, max_examples=200, derandomize=IN_CI)
E2E = settings(FAST, max_examples=5)  # each example is a real subprocess run (~0.3 s)
BUG = settings(FAST, max_examples=25)  # the regression tests: mostly their explicit examples

SESSIONS = tuple(SESSION_TABLE)
ROOTS = ("https://ttblaze.iifl.com", "http://127.0.0.1:8080/xts")
SUCCESS_LINE = "✓ XTS token refreshed successfully!"
FUTURE_EXP = 4_102_444_800  # 2100-01-01
NOW = int(time.time())
DAY = 86_400

# -- strategies: JSON -----------------------------------------------------------------------------


def _itself(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy


def _weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Draw from the strategies in proportion to their weights (one_of draws them evenly)."""
    return st.sampled_from([s for weight, s in choices for _ in range(weight)]).flatmap(_itself)


JSON_SCALARS: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)
)


def _json_children(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=10), children, max_size=4),
    )


JSON_VALUES: st.SearchStrategy[Any] = st.recursive(JSON_SCALARS, _json_children, max_leaves=10)
JSON_OBJECTS: st.SearchStrategy[dict[str, Any]] = st.dictionaries(
    st.text(max_size=10), JSON_VALUES, max_size=5
)


def _json_bytes(value: Any) -> bytes:
    """``value`` as Python's json module writes it (NaN and Infinity included)."""
    return json.dumps(value).encode("utf-8")


def _encoded(value: Any, ascii_only: bool, encoding: str) -> bytes:
    """``value`` serialized as a body in one of the encodings JSON readers detect."""
    return json.dumps(value, ensure_ascii=ascii_only).encode(encoding)


def _merged(base: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    return {**base, **fields}


def _truncated(data: bytes, at: int) -> bytes:
    return data[: at % (len(data) + 1)]


def _inserted(data: bytes, junk: bytes, at: int) -> bytes:
    where = at % (len(data) + 1)
    return data[:where] + junk + data[where:]


def _no_json_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON (RFC 8259)")


def _strict_json(text: str) -> Any:
    """``text`` decoded as RFC 8259 JSON: NaN and Infinity are refused, as other languages do."""
    return json.loads(text, parse_constant=_no_json_constant)


# -- strategies: tokens and XTS answers -----------------------------------------------------------
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _b64url(data: bytes, padded: bool = False) -> str:
    text = base64.urlsafe_b64encode(data).decode("ascii")
    return text if padded else text.rstrip("=")


JWT_HEADER = _b64url(b'{"alg":"HS256","typ":"JWT"}')


def _jwt(payload: bytes, padded: bool = False, signature: str = "c2ln") -> str:
    return f"{JWT_HEADER}.{_b64url(payload, padded)}.{signature}"


def _jwt_of(claims: Any) -> str:
    return _jwt(_json_bytes(claims))


EXP_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.integers(min_value=0, max_value=FUTURE_EXP),
    st.integers(),
    st.floats(),  # NaN, infinities, -0.0, 1e308, subnormals
    st.sampled_from([253_402_300_800, -62_135_596_801, 2**63, -(2**63), 10**30, 1e20]),
    JSON_VALUES,
)
USER_IDS: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(["CK68", "ck68", "CK68_BEBAFFDB51B1A9A1B1D140", "DVJ8588", "", " "]),
    st.text(max_size=12),
    JSON_VALUES,
)
CLAIMS: st.SearchStrategy[dict[str, Any]] = st.builds(
    _merged,
    JSON_OBJECTS,
    st.fixed_dictionaries({}, optional={"exp": EXP_VALUES, "iat": EXP_VALUES, "userID": USER_IDS}),
)
JWT_PAYLOADS: st.SearchStrategy[bytes] = st.one_of(
    CLAIMS.map(_json_bytes), JSON_VALUES.map(_json_bytes), st.binary(max_size=48)
)
NEAR_JWTS: st.SearchStrategy[str] = st.one_of(
    st.builds(_jwt, JWT_PAYLOADS, st.booleans(), st.text(B64URL, max_size=12)),
    # three parts, the middle one anything (bad base64, bad padding, not ASCII)
    st.builds("{}.{}.{}".format, st.text(B64URL, max_size=8), st.text(), st.text(max_size=8)),
    # any number of parts
    st.lists(st.text(B64URL + "=", max_size=12), max_size=5).map(".".join),
)


def _jwt_for(user: str, exp: int) -> str:
    return _jwt_of({"userID": user, "publicKey": "...", "iat": exp - DAY, "exp": exp})


# Tokens as XTS issues them, expired a few days ago to valid for a few more.
GOOD_JWTS: st.SearchStrategy[str] = st.builds(
    _jwt_for,
    st.one_of(st.sampled_from([USER_ID, "CK68_BEBAFFDB51B1A9A1B1D140"]), st.text(max_size=8)),
    st.integers(min_value=NOW - 3 * DAY, max_value=NOW + 3 * DAY),
)
TOKENS: st.SearchStrategy[Any] = _weighted(
    (2, GOOD_JWTS),
    (2, NEAR_JWTS),
    (1, NEAR_JWTS.map(" {}\n".format)),
    (1, st.text()),
    (1, st.sampled_from(["", " ", "\t\n", "null"])),
)
INVESTOR_FLAGS: st.SearchStrategy[Any] = st.one_of(
    st.booleans(), st.sampled_from(["true", "False", "", 0, 1]), JSON_VALUES
)
CLIENT_CODES: st.SearchStrategy[Any] = st.one_of(
    st.lists(st.text(max_size=8), max_size=3), st.text(max_size=8), JSON_VALUES
)
DATE_SHAPES = ("%d-%m-%Y", "%Y-%m-%d", "%d/%m/%Y", "%m-%d-%Y", "%d.%m.%Y")
APP_EXPIRY_DATES: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(["30-12-2028", " 30-12-2028 ", "2028-12-30", "31-02-2028", "00-00-0000", ""]),
    st.builds(date.strftime, st.dates(), st.sampled_from(DATE_SHAPES)),
    st.text(max_size=12),
    JSON_VALUES,
)
FIELD_ERRORS: st.SearchStrategy[Any] = st.one_of(
    st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "field": JSON_VALUES,
                    "location": JSON_VALUES,
                    "messages": st.one_of(st.lists(JSON_VALUES, max_size=3), JSON_VALUES),
                    "types": JSON_VALUES,
                },
            ),
            JSON_VALUES,
        ),
        max_size=3,
    ),
    JSON_VALUES,
)
RESULT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "userID": USER_IDS,
    "isInvestorClient": INVESTOR_FLAGS,
    "clientCodes": CLIENT_CODES,
    "application_expiry_date": APP_EXPIRY_DATES,
    "appVersion": st.text(max_size=8),
    "enums": JSON_VALUES,
    "errors": FIELD_ERRORS,
}
RESULTS: st.SearchStrategy[Any] = _weighted(
    (3, st.fixed_dictionaries({"token": TOKENS}, optional=RESULT_FIELDS)),
    (
        1,
        st.fixed_dictionaries(
            {}, optional={"token": st.one_of(TOKENS, JSON_VALUES), **RESULT_FIELDS}
        ),
    ),
    (1, JSON_VALUES),  # a result that is not an object
)
ANSWER_TYPES: st.SearchStrategy[Any] = _weighted(
    (3, st.just("success")), (1, st.just("error")), (1, JSON_VALUES)
)
CODES: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(["s-user-0001", "e-user-0005", "e-apirl-0004", "e-session-0007", ""]),
    st.text(max_size=12),
    JSON_VALUES,
)
DESCRIPTIONS: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(["Valid User.", "Invalid credentials.", "Rate Limit reached", ""]),
    st.text(max_size=30),
    JSON_VALUES,
)
# Answers shaped like real XTS ones, with every field fuzzed: most reach login_result's branches.
XTS_ANSWERS: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.fixed_dictionaries(
        {"type": ANSWER_TYPES, "result": RESULTS},
        optional={"code": CODES, "description": DESCRIPTIONS},
    ),
    st.fixed_dictionaries(
        {"type": ANSWER_TYPES},
        optional={"code": CODES, "description": DESCRIPTIONS, "result": RESULTS},
    ),
)
ANY_BODIES: st.SearchStrategy[Any] = st.one_of(
    XTS_ANSWERS,
    JSON_VALUES,
    st.builds(_merged, JSON_OBJECTS, st.fixed_dictionaries({"type": JSON_VALUES})),
)
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32"])
ANY_BYTES: st.SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=256),
    st.builds(_truncated, XTS_ANSWERS.map(_json_bytes), st.integers(min_value=0)),
    st.sampled_from([b"", b"null", b"{}", b"[]", b'{"type"', b"\xef\xbb\xbf{}", b"<html></html>"]),
)
HEADER_VALUES: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(["0", "5", "-1", "nan", "inf", "1e400", "Wed, 21 Oct 2015 07:28:00 GMT", ""]),
    st.floats().map(repr),
    st.text(max_size=20),
)
HEADERS: st.SearchStrategy[CaseInsensitiveDict[str]] = st.dictionaries(
    st.sampled_from(["Retry-After", "Content-Type", "Location", "X-Other"]),
    HEADER_VALUES,
    max_size=4,
).map(CaseInsensitiveDict)
STATUSES = st.integers(min_value=100, max_value=599)

# -- strategies: token files ----------------------------------------------------------------------
OFFSETS: st.SearchStrategy[timezone] = st.timedeltas(
    min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)
).map(timezone)
DATETIMES: st.SearchStrategy[datetime] = st.datetimes(
    timezones=st.one_of(st.none(), st.just(timezone.utc), OFFSETS)
)


def _iso_seconds(moment: datetime) -> str:
    return moment.isoformat(sep=" ", timespec="seconds")


def _local_iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp).isoformat(timespec="microseconds")


RECENT_TIMES: st.SearchStrategy[str] = st.integers(
    min_value=NOW - 3 * DAY, max_value=NOW + 3 * DAY
).map(_local_iso)
ISO_TIMES: st.SearchStrategy[Any] = st.one_of(
    RECENT_TIMES,
    DATETIMES.map(datetime.isoformat),
    DATETIMES.map(_iso_seconds),
    st.text(max_size=30),
)
TOKEN_FILE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "userID": USER_IDS,
    "refreshed_at": st.one_of(ISO_TIMES, JSON_VALUES),
    "expires_at": st.one_of(st.none(), ISO_TIMES, JSON_VALUES),
    "session": st.one_of(st.sampled_from(SESSIONS), JSON_VALUES),
    "api_root": st.one_of(st.sampled_from(ROOTS), JSON_VALUES),
    "isInvestorClient": INVESTOR_FLAGS,
    "clientCodes": CLIENT_CODES,
    "application_expiry_date": APP_EXPIRY_DATES,
    "utc_offset": st.one_of(
        st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(
            lambda minutes: store.format_utc_offset(timedelta(minutes=minutes))
        ),
        st.text(max_size=8),
        JSON_VALUES,
    ),
}
NEAR_VALID_TOKEN_FILES: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {"token": TOKENS, "timestamp": ISO_TIMES}, optional=TOKEN_FILE_FIELDS
)
TOKEN_FILES: st.SearchStrategy[Any] = _weighted(
    (3, NEAR_VALID_TOKEN_FILES),
    (
        1,
        st.fixed_dictionaries(
            {},
            optional={
                "token": st.one_of(TOKENS, JSON_VALUES),
                "timestamp": st.one_of(ISO_TIMES, JSON_VALUES),
                **TOKEN_FILE_FIELDS,
            },
        ),
    ),
    (1, JSON_VALUES),
)
TOKEN_FILE_BYTES: st.SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=256),
    st.builds(_encoded, TOKEN_FILES, st.booleans(), ENCODINGS),
    st.builds(_truncated, TOKEN_FILES.map(_json_bytes), st.integers(min_value=0)),
)

# -- strategies: settings -------------------------------------------------------------------------
URL_VARIABLES = ("XTS_API_ROOT", "XTS_HOSTLOOKUP_URL", "HEALTHCHECK_URL", "TELEGRAM_API_URL")
PATH_VARIABLES = ("XTS_CA_BUNDLE", "XTS_TOKEN_FILE", "XTS_MARKETDATA_TOKEN_FILE", "XTS_LOG_FILE")
NUMBER_FIELDS = {
    "XTS_TIMEOUT": "timeout",
    "XTS_DEADLINE": "deadline",
    "XTS_RETRY_BACKOFF": "retry_backoff",
}
# Where a problem with one variable is reported under its partner's name (or both).
PARTNERS = {
    "XTS_INTERACTIVE_API_KEY": "XTS_INTERACTIVE_API_SECRET",
    "XTS_MARKETDATA_API_KEY": "XTS_MARKETDATA_API_SECRET",
    "TELEGRAM_TOKEN": "TELEGRAM_CHAT_ID",
    "XTS_TOKEN_FILE": "XTS_MARKETDATA_TOKEN_FILE",
}
PARTNERS.update({partner: name for name, partner in PARTNERS.items()})
BASE_ENVIRON = {
    "XTS_API_ROOT": "https://ttblaze.iifl.com",
    "XTS_INTERACTIVE_API_KEY": INTERACTIVE_KEY,
    "XTS_INTERACTIVE_API_SECRET": INTERACTIVE_SECRET,
    "XTS_USER_ID": USER_ID,
}
TRICKY_VALUES = (
    *("", " ", "\t", "\n", "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e400", "-1e400"),
    *("-0", "+0", "0", "-0.0", "0.0009", "0.001", "20", "21", "-1", "1_000", "0x10", "1e-3"),
    *(" 30 ", "30s", "٣٠", "9" * 400, "1" + "0" * 310, "true", "TRUE", "Yes", "no", "on", "y"),
    *("http://", "https://", "https://host", "https://host:", "https://host:0", "http:///path"),
    *("https://host:65536", "https://user@", "https://[::1]:8080/xts/", "ftp://host", "//host"),
    *("file:///etc/passwd", "host", "your_api_root", "<your key>", "all", "failure", "OFF"),
    *(" Failure ", "~", "~/x", "/", ".", "..", "\x00", "\x7f", "\u202e", "😀", "a\x00b"),
)
SPACES = st.sampled_from(["", "", " ", "  ", "\t", "\n", "\r", "\u00a0", "\u3000"])
SETTING_CORES: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(TRICKY_VALUES),
    st.text(max_size=20),
    st.builds(
        str.__add__, st.sampled_from(["http://", "https://", "HTTPS://", ""]), st.text(max_size=20)
    ),
    st.floats().map(repr),
    st.integers().map(str),
    st.text("0123456789.eE+-_ nainfNAIF", max_size=10),
)


def _padded(lead: str, core: str, trail: str) -> str:
    return lead + core + trail


SETTING_VALUES: st.SearchStrategy[str] = st.builds(_padded, SPACES, SETTING_CORES, SPACES)


def _env_line(*, export: bool, key: str, sep: str, quote: str, value: str, comment: str) -> str:
    return f"{'export ' if export else ''}{key}{sep}{quote}{value}{quote}{comment}"


ENV_LINES: st.SearchStrategy[str] = st.one_of(
    st.builds(
        _env_line,
        export=st.booleans(),
        key=st.one_of(st.sampled_from(KNOWN_VARIABLES), st.text(max_size=10)),
        sep=st.sampled_from(["=", " = ", "=\t", ": "]),
        quote=st.sampled_from(["", "", "'", '"']),
        value=SETTING_VALUES,
        comment=st.sampled_from(["", "", " # note", "#x"]),
    ),
    st.text(max_size=30),
    st.sampled_from(["", "# comment", "export", "=", "KEY", "'", '"unterminated', "\\"]),
)
BASE_ENV_LINES = [f"{name}={value}" for name, value in BASE_ENVIRON.items()]


def _env_text(base: bool, lines: list[str], newline: str, bom: bool) -> str:
    body = newline.join([*(BASE_ENV_LINES if base else []), *lines]) + newline
    return ("\ufeff" if bom else "") + body


ENV_TEXTS: st.SearchStrategy[str] = st.builds(
    _env_text,
    st.booleans(),
    st.lists(ENV_LINES, max_size=6),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.booleans(),
)
ENV_BYTES: st.SearchStrategy[bytes] = st.one_of(
    ENV_TEXTS.map(str.encode),
    st.builds(
        _inserted,
        ENV_TEXTS.map(str.encode),
        st.sampled_from([b"\x00", b"\xff", b"\xc3(", b"\xef\xbb\xbf", b"\r", b"\xed\xa0\x80"]),
        st.integers(min_value=0),
    ),
    st.binary(max_size=200),
)

# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the files the properties write, with an empty settings file in it."""
    folder = tmp_path_factory.mktemp("properties")
    (folder / "empty.env").write_text("", encoding="utf-8")
    for sub in ("login", "files", "envs"):
        (folder / sub).mkdir()
    return folder


def _load(environ: Mapping[str, str], env_file: Path) -> Settings:
    return load_settings(PathOverrides(env_file=str(env_file)), environ)


def _is_http_url(url: str) -> bool:
    """An http(s) URL with a host (the scheme is case-insensitive: HTTPS://host is one)."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _assert_valid_settings(loaded: Settings) -> None:
    """Settings that load are typed and inside their documented ranges."""
    assert _is_http_url(loaded.api_root)
    assert not loaded.api_root.endswith("/")
    for url in (loaded.hostlookup_url, loaded.healthcheck_url):
        assert url is None or _is_http_url(url)
    for number, minimum in ((loaded.timeout, 0.001), (loaded.deadline, 0.001)):
        assert math.isfinite(number)
        assert number >= minimum
    assert math.isfinite(loaded.retry_backoff)
    assert loaded.retry_backoff >= 0
    assert type(loaded.retries) is int
    assert 0 <= loaded.retries <= MAX_RETRIES
    assert isinstance(loaded.verify_ssl, bool)
    assert loaded.sessions
    for session in SESSION_TABLE.values():
        # "/" (or "//") configures no path of its own: "" puts the API at the root itself.
        base = loaded.base_path(session)
        assert base == "" or (base.startswith("/") and not base.endswith("/")), base
    if loaded.telegram is not None:
        assert loaded.telegram.notify in TELEGRAM_MODES
        assert _is_http_url(loaded.telegram.api_url)
    files = [loaded.token_path(s) for s in SESSION_TABLE.values()]
    assert all(path.is_absolute() for path in files)
    assert len(set(files)) == len(files)


def _assert_value_taken(name: str, value: str, loaded: Settings) -> None:
    """An accepted number or boolean is the one given, never a silent default."""
    text = value.strip()
    if not text:
        return
    if name in NUMBER_FIELDS:
        assert getattr(loaded, NUMBER_FIELDS[name]) == float(text)
    elif name == "XTS_RETRIES":
        assert loaded.retries == int(text)
    elif name == "XTS_VERIFY_SSL":
        assert loaded.verify_ssl is (text.lower() in TRUE_WORDS)


def _assert_names(exc: ConfigError, name: str) -> None:
    assert exc.exit_code == 2
    names = (name, PARTNERS.get(name, name))
    assert any(n in exc.message for n in names), exc.message


def _assert_usable(stored: store.StoredToken, session: str) -> None:
    """What status, --if-needed and load_token do with a StoredToken never raises."""
    assert isinstance(stored.token, str)
    assert stored.token
    assert stored.session == session
    assert isinstance(stored.user_id, str)
    assert stored.expires_at is None or stored.expires_at.utcoffset() is not None
    stored.is_expired()
    stored.seconds_left()
    stored.logged_in_at.timestamp()  # metrics
    assert stored.refreshed_at.strftime("%Y-%m-%d %H:%M:%S")  # status
    assert len(stored.masked()) <= 7
    json.dumps(stored.to_json())


def _login_pipeline(
    body: dict[str, Any], session: str, root: str, folder: Path
) -> store.StoredToken | None:
    """An answer through what a login does with it: check, interpret, save, read back.

    None when the answer is refused; then the error is the contract's: a refusal (exit 1)
    unless XTS said success, a retryable failure (exit 3) when it said success without a token.
    """
    try:
        require_token(body)
        result = login_result(SESSION_TABLE[session], body, root)
    except XtsRefreshError as exc:
        assert exc.exit_code in {1, 3}
        expected = RetryableError if body.get("type") == "success" else LoginRefusedError
        assert isinstance(exc, expected)
        event(f"login answer: {type(exc).__name__}")
        return None
    assert isinstance(result, LoginResult)
    assert result.token
    assert result.token == result.token.strip()
    stored = account_refresh.stored_from_login(result)
    assert (stored.token, stored.session, stored.api_root) == (result.token, session, root)
    _assert_usable(stored, session)
    if session == "marketdata":
        expiry = store.app_key_expiry(stored.extra["application_expiry_date"])
        assert expiry is None or isinstance(expiry, datetime)
    path = folder / f"{session}.json"
    store.save_token(path, stored)
    back = store.read_token_file(path, session)
    assert (back.token, back.user_id, back.session, back.api_root) == (
        stored.token,
        stored.user_id,
        stored.session,
        stored.api_root,
    )
    assert (back.timestamp, back.expires_at) == (stored.timestamp, stored.expires_at)
    assert back.utc_offset == stored.utc_offset
    assert back.logged_in_at == stored.logged_in_at
    assert json.dumps(back.extra) == json.dumps(stored.extra)
    event(f"login answer: saved, expiry {'known' if stored.expires_at else 'unknown'}")
    return stored


PREVIOUS = store.StoredToken(
    token=_jwt_of({"userID": USER_ID, "iat": FUTURE_EXP - 86400, "exp": FUTURE_EXP}),
    user_id=USER_ID,
    session="interactive",
    api_root="http://127.0.0.1:9",
    timestamp=datetime(2024, 10, 13, 9, 0, 0, 123456),
    expires_at=datetime.fromtimestamp(FUTURE_EXP, timezone.utc).astimezone(),
    extra={"isInvestorClient": True, "clientCodes": [USER_ID]},
)


def _check_real_run(fault: Fault, *args: str, secret: str | None = None) -> None:
    """The real script, XTS_RETRIES=1, against ``fault`` on every login: a contract ending.

    Exit 0, 1 or 3; no traceback anywhere; the last line starts with ✓ (exit 0) or ✗; the
    grep-able success line only on success; the previous token file byte-identical unless the
    run succeeded (or saved a token XTS then rejected under --verify, or one this machine's
    clock calls expired or nearly), and then a new readable
    token; at most two login requests; no temporary file; ``secret`` (a session token the
    answer hands over), raw or escaped, in no output or log.
    """
    with XtsSimulator() as sim, tempfile.TemporaryDirectory(prefix="xts-props-") as folder:
        sim.add_account(INTERACTIVE_KEY, INTERACTIVE_SECRET, USER_ID, "interactive")
        project = Project(sim, Path(folder))
        project.settings["XTS_RETRIES"] = "1"
        store.save_token(project.token_file, PREVIOUS)
        before = project.token_file.read_bytes()
        sim.add_fault("interactive_login", fault, times=3)
        run = project.run(*args)
        assert run.code in {0, 1, 3}, run.output
        if secret is not None:
            for text in (run.output, run.log):
                assert secret not in text
                assert secret.encode("unicode_escape").decode() not in text, text
        assert "Traceback" not in run.stdout, run.stdout
        assert "Traceback" not in run.stderr, run.stderr
        lines = [line for line in run.stdout.split("\n") if line.strip()]
        assert lines, run.output
        assert lines[-1].startswith("✓" if run.code == 0 else "✗"), run.stdout
        # XTS text may quote the success line, but only a real success prints it as a line.
        assert any(line.startswith(SUCCESS_LINE) for line in lines) is (run.code == 0), run.stdout
        assert sim.count("interactive_login") <= 2
        if run.code == 0:
            stored = store.read_token_file(project.token_file)
            assert stored.token != PREVIOUS.token
        elif "timedatectl" in run.stdout:
            # A token already expired, or nearly, by this machine's clock: saved, yet exit 3.
            assert run.code == 3, run.stdout
            assert store.read_token_file(project.token_file).token != PREVIOUS.token
        elif "--verify" not in args:
            assert project.token_file.read_bytes() == before
        assert not list(Path(folder).glob(".*.tmp"))


# == in-process properties: XTS answers ===========================================================


@pytest.mark.slow
@settings(FAST, max_examples=300)
@given(raw=ANY_BYTES, status=STATUSES, headers=HEADERS, rate_limit_is_answer=st.booleans())
def test_arbitrary_bytes_decode_to_xts_json_or_a_retryable_error(
    raw: bytes, status: int, headers: CaseInsensitiveDict[str], rate_limit_is_answer: bool
) -> None:
    """Any body, status and headers: an XTS object with "type", or RetryableError (exit 3),
    or for a redirect (3xx with a Location) or a 404 their own errors (exit 3, not retried).

    Also: an answer only passes with a status below 500 other than 429 (or a 429 rate-limit
    body when rate limits are answers), and Retry-After never becomes a negative or NaN wait.
    """
    try:
        body = decode_answer(status, headers, raw, rate_limit_is_answer)
    except RetryableError as exc:
        assert exc.exit_code == 3
        assert exc.retry_after is None or exc.retry_after >= 0
        return
    except RedirectedError as exc:
        assert exc.exit_code == 3
        assert 300 <= status < 400 and "Location" in headers
        return
    except RouteNotFoundError as exc:
        assert exc.exit_code == 3
        assert status == 404
        return
    assert isinstance(body, dict)
    assert "type" in body
    rate_limit = str(body.get("code", "")).startswith("e-apirl")
    assert (status < 500 and status != 429) or (status == 429 and rate_limit_is_answer)
    assert status != 429 or rate_limit


@pytest.mark.slow
@settings(FAST, max_examples=300)
@given(
    value=ANY_BODIES,
    ascii_only=st.booleans(),
    encoding=ENCODINGS,
    status=st.one_of(st.sampled_from([200, 400, 429, 500, 502]), STATUSES),
    headers=HEADERS,
)
def test_arbitrary_json_decodes_to_itself_or_a_retryable_error(
    value: Any, ascii_only: bool, encoding: str, status: int, headers: CaseInsensitiveDict[str]
) -> None:
    """Any JSON value as the body, in any encoding JSON readers detect: XTS JSON or exit 3.

    An object with "type" under a non-failing status comes back exactly as it was sent.
    """
    raw = _encoded(value, ascii_only, encoding)
    try:
        body = decode_answer(status, headers, raw)
    except (RetryableError, RedirectedError, RouteNotFoundError) as exc:
        assert exc.exit_code == 3
        return
    assert isinstance(value, dict)
    assert "type" in value
    assert status < 500
    assert status != 429
    assert json.dumps(body) == json.dumps(value)


@pytest.mark.slow
@settings(FAST, max_examples=300)
@given(body=XTS_ANSWERS, session=st.sampled_from(SESSIONS), root=st.sampled_from(ROOTS))
@example(
    body={
        "type": "success",
        "code": "s-user-0001",
        "description": "Valid User.",
        "result": {
            "token": _jwt_of({"userID": "CK68_BEBAFF", "exp": FUTURE_EXP}),
            "userID": "CK68",
            "isInvestorClient": True,
            "clientCodes": ["CK68"],
        },
    },
    session="interactive",
    root=ROOTS[0],
)
@example(
    body={"type": "success", "result": {"token": " t ", "userID": 68, "clientCodes": "CK68"}},
    session="interactive",
    root=ROOTS[0],
)
@example(
    body={"type": "success", "result": {"token": "x", "application_expiry_date": 30122028}},
    session="marketdata",
    root=ROOTS[1],
)
@example(body={"type": "success", "result": ["token"]}, session="interactive", root=ROOTS[0])
@example(body={"type": True, "result": {"token": "x"}}, session="interactive", root=ROOTS[0])
def test_login_answers_end_in_a_saved_token_or_a_contract_error(
    body: dict[str, Any], session: str, root: str, scratch: Path
) -> None:
    """Any answer through require_token, login_result and stored_from_login: a token, or exit 1/3.

    Refusals are exactly the answers whose type is not "success" (exit 1); "success" without
    a usable token is retryable (exit 3). A token that gets through is saved to a file that
    reads back with the same token, user, session, root, times and extra fields, and whose
    JSON (json.dumps) never fails.

    Bodies with NaN or an infinity are left out: no JSON XTS sends can hold one (decode_answer
    refuses them, see test_saved_token_file_is_strict_json), so they never reach a login.
    """
    try:
        json.dumps(body, allow_nan=False)
    except ValueError:
        assume(False)
    _login_pipeline(body, session, root, scratch / "login")


@settings(FAST, max_examples=300)
@given(body=st.one_of(XTS_ANSWERS, JSON_OBJECTS))
def test_describe_xts_error_never_raises(body: dict[str, Any]) -> None:
    """Any object: describe_xts_error gives text, led by XTS's code when there is one."""
    text = describe_xts_error(body)
    assert isinstance(text, str)
    code = body.get("code")
    if isinstance(code, str) and code.strip():
        assert text.startswith(one_line(code))
    assert "\n" not in text and "\r" not in text


@settings(FAST, max_examples=400)
@given(token=st.one_of(NEAR_JWTS, st.text()))
@example(token=_jwt_of({"exp": 1e308}))
@example(token=_jwt_of({"exp": -(10**20)}))
@example(token=_jwt_of({"exp": float("nan")}))
@example(token=_jwt_of({"exp": True}))
@example(token=_jwt_of({"exp": "1700000000"}))
@example(token=_jwt_of({"exp": 253_402_300_799.999999}))
@example(token="a.\u00e9\u00e9.c")
@example(token="a.b=.c")
def test_token_claims_never_raise(token: str) -> None:
    """Any string, near-JWTs included: jwt_claims gives a dict, expiry_from_token None or an
    aware datetime (so comparing it with now never fails)."""
    claims = store.jwt_claims(token)
    assert isinstance(claims, dict)
    expiry = store.expiry_from_token(token)
    assert expiry is None or expiry.utcoffset() is not None


@settings(FAST, max_examples=100)
@given(exp=st.one_of(st.integers(min_value=0, max_value=FUTURE_EXP), st.floats(0, FUTURE_EXP)))
def test_readable_exp_claim_is_the_expiry(exp: float) -> None:
    """A numeric exp claim in range is exactly the token's expiry, in the token and its file."""
    token = _jwt_of({"userID": USER_ID, "exp": exp})
    expected = datetime.fromtimestamp(exp, timezone.utc)
    assert store.expiry_from_token(token) == expected
    data = {"token": token, "timestamp": "2024-10-13T09:00:00.123456", "expires_at": None}
    assert store.parse_token_json(data, Path("t.json"), "interactive").expires_at == expected


@settings(FAST, max_examples=200)
@given(value=APP_EXPIRY_DATES)
def test_app_key_expiry_never_raises(value: Any) -> None:
    """Any application_expiry_date XTS sends: a datetime to warn about, or None."""
    expiry = store.app_key_expiry(value)
    assert expiry is None or isinstance(expiry, datetime)


# == in-process properties: token files ===========================================================


@pytest.mark.slow
@settings(FAST, max_examples=400)
@given(data=TOKEN_FILES, session=st.sampled_from(SESSIONS))
@example(
    data={"token": "t", "timestamp": "2024-10-13T09:00:00", "session": None}, session="marketdata"
)
@example(
    data={"token": "t", "timestamp": "2024-10-13 09:00:00", "expires_at": "x"},
    session="interactive",
)
@example(
    data={
        "token": "t",
        "timestamp": "2024-10-13T09:00:00",
        "expires_at": "0001-01-01T00:00:00+23:59",
    },
    session="interactive",
)
def test_parse_token_json_gives_a_token_or_corrupt(data: Any, session: str) -> None:
    """Any decoded token file: a StoredToken that status and load_token can use, or
    TokenUnavailableError with state "corrupt" naming the file."""
    path = Path("/nonexistent/xts_store_token.json")
    try:
        stored = store.parse_token_json(data, path, session)
    except TokenUnavailableError as exc:
        assert (exc.state, exc.path, exc.exit_code) == ("corrupt", str(path), 1)
        event("token file: corrupt")
        return
    _assert_usable(stored, session)
    event(f"token file: usable, {'expired' if stored.is_expired() else 'unexpired'}")


@settings(FAST, max_examples=200)
@given(raw=TOKEN_FILE_BYTES, session=st.sampled_from(SESSIONS))
@example(raw=b"", session="interactive")
@example(raw=b"\xef\xbb\xbf{}", session="interactive")
@example(raw=b'{"token": "t", "timestamp": "2024-10-13T09:00:00"}\x00', session="interactive")
def test_token_files_of_any_bytes_read_as_a_token_or_corrupt(
    raw: bytes, session: str, scratch: Path
) -> None:
    """Any bytes in a token file: read_token_file gives a StoredToken or "corrupt", and
    load_token raises nothing but TokenUnavailableError ("corrupt" or "expired")."""
    path = scratch / "files" / f"{session}.json"
    path.write_bytes(raw)
    try:
        stored: store.StoredToken | None = store.read_token_file(path, session)
    except TokenUnavailableError as exc:
        assert (exc.state, exc.path) == ("corrupt", str(path))
        stored = None
    if stored is not None:
        _assert_usable(stored, session)
    try:
        loaded = load_token(path, session)
    except TokenUnavailableError as exc:
        assert exc.state == ("expired" if stored is not None else "corrupt")
        event(f"load_token: {exc.state}")
        return
    event("load_token: StoredToken")
    assert stored is not None
    assert not stored.is_expired()
    assert loaded.token == stored.token


@settings(FAST, max_examples=50)
@given(
    key=st.sampled_from(["timestamp", "expires_at"]),
    moment=st.one_of(
        st.datetimes(max_value=datetime(1, 1, 2)), st.datetimes(min_value=datetime(9999, 12, 30))
    ),
)
@example(key="expires_at", moment=datetime(1, 1, 1))
@example(key="timestamp", moment=datetime(1, 1, 1))
@example(key="timestamp", moment=datetime(9999, 12, 31, 23, 59, 59))
def test_token_file_times_at_the_ends_of_the_calendar_are_handled(
    key: str, moment: datetime, scratch: Path
) -> None:
    """A token file whose naive timestamp or expires_at is at the edge of the calendar: a
    usable StoredToken or "corrupt", from parse_token_json and from load_token alike."""
    data = {"token": "t0k3n", "timestamp": "2024-10-13T09:00:00", key: moment.isoformat()}
    path = scratch / "files" / "edge.json"
    path.write_bytes(_json_bytes(data))
    try:
        _assert_usable(store.parse_token_json(data, path, "interactive"), "interactive")
    except TokenUnavailableError as exc:
        assert exc.state == "corrupt"
    try:
        load_token(path)
    except TokenUnavailableError as exc:
        assert exc.state in {"corrupt", "expired"}


# == in-process properties: settings ==============================================================


@settings(FAST, max_examples=500)
@given(name=st.sampled_from(KNOWN_VARIABLES), value=SETTING_VALUES)
@example(name="XTS_TIMEOUT", value="nan")
@example(name="XTS_DEADLINE", value=" inf ")
@example(name="XTS_RETRY_BACKOFF", value="-0")
@example(name="XTS_RETRIES", value="21")
@example(name="XTS_RETRIES", value="٣")
@example(name="XTS_VERIFY_SSL", value="False")
@example(name="XTS_VERIFY_SSL", value="off")
@example(name="XTS_API_ROOT", value="https://xtsmum.5paisa.com/")
@example(name="XTS_API_ROOT", value="https://host:65536")
@example(name="TELEGRAM_NOTIFY", value=" Failure ")
@example(name="XTS_CA_BUNDLE", value="a\x00b")
@example(name="XTS_TOKEN_FILE", value="xts_marketdata_token.json")
@example(name="XTS_MARKETDATA_PATH", value="/")  # no path of its own: the root itself
def test_one_bad_setting_is_a_config_error_naming_it(name: str, value: str, scratch: Path) -> None:
    """Any text in any one variable of a valid environment: Settings in range (numbers and
    booleans as given), or ConfigError (exit 2) whose message names the variable (or the
    partner it must be set with)."""
    environ = {**BASE_ENVIRON, name: value}
    try:
        loaded = _load(environ, scratch / "empty.env")
    except ConfigError as exc:
        _assert_names(exc, name)
        event("one setting: ConfigError")
        return
    _assert_valid_settings(loaded)
    _assert_value_taken(name, value, loaded)
    event("one setting: Settings")


@settings(FAST, max_examples=300)
@given(content=ENV_BYTES)
@example(content=b"\xef\xbb\xbf" + "\r\n".join(BASE_ENV_LINES).encode() + b"\r\n")
@example(content=("export " + "\nexport ".join(BASE_ENV_LINES)).encode())
@example(content=b"\xff\xfe" + "\n".join(BASE_ENV_LINES).encode("utf-16-le"))
@example(content=b"XTS_API_ROOT=\"https://h\x00\"\nXTS_INTERACTIVE_API_KEY='k'\n")
def test_arbitrary_env_files_load_or_fail_as_config_errors(content: bytes, scratch: Path) -> None:
    """Any .env bytes (BOM, CRLF, quotes, export, NUL, invalid UTF-8): Settings in range,
    or ConfigError (exit 2)."""
    path = scratch / "envs" / "fuzzed.env"
    path.write_bytes(content)
    try:
        loaded = _load({}, path)
    except ConfigError as exc:
        assert exc.exit_code == 2
        event(".env: ConfigError")
        return
    _assert_valid_settings(loaded)
    event(".env: Settings")


# == end to end: the real script on generated answers =============================================

CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/html",
        "text/plain",
        "",
        "application/octet-stream",
    ]
)


@pytest.mark.slow
@settings(E2E, max_examples=4)
@given(body=ANY_BYTES, status=STATUSES, content_type=CONTENT_TYPES)
@example(body=b"", status=200, content_type="application/json")
@example(body=Fault.html(502).body, status=502, content_type="text/html")
def test_real_script_on_arbitrary_bytes_ends_in_a_contract_code(
    body: bytes, status: int, content_type: str
) -> None:
    """Any bytes with any status from XTS: the real script exits 0, 1 or 3 with a ✓/✗ last
    line and no traceback, and keeps the previous token file byte for byte unless it succeeded.
    """
    _check_real_run(Fault.raw(body, status, content_type))


@pytest.mark.slow
@settings(E2E)
@given(
    value=st.one_of(XTS_ANSWERS, JSON_VALUES),
    ascii_only=st.booleans(),
    encoding=ENCODINGS,
    status=st.one_of(st.sampled_from([200, 400, 500]), STATUSES),
)
@example(
    value={
        "type": "success",
        "code": "s-user-0001",
        "description": "Valid User.",
        "result": {
            "token": _jwt_of({"userID": "CK68_BEBAFF", "iat": 1, "exp": FUTURE_EXP}),
            "userID": "CK68",
            "isInvestorClient": "yes",
            "clientCodes": None,
        },
    },
    ascii_only=False,
    encoding="utf-16",
    status=200,
)
@example(
    value={
        "type": "error",
        "code": "e-user-0005",
        "description": "Invalid credentials.",
        "result": {},
    },
    ascii_only=True,
    encoding="utf-8",
    status=400,
)
def test_real_script_on_arbitrary_json_ends_in_a_contract_code(
    value: Any, ascii_only: bool, encoding: str, status: int
) -> None:
    """Any JSON value (mostly XTS-shaped answers with fuzzed fields) with any status: the same
    contract ending as for arbitrary bytes; a usable success saves a new, readable token."""
    _check_real_run(Fault.raw(_encoded(value, ascii_only, encoding), status))


# == regressions: inputs that once broke the program ==========================

NESTING = st.integers(min_value=5_000, max_value=100_000)
OPENERS = st.sampled_from([b"[", b'{"a":'])


@BUG
@given(depth=NESTING, opener=OPENERS)
@example(depth=100_000, opener=b"[")
def test_deeply_nested_answer_is_retryable(depth: int, opener: bytes) -> None:
    """A deeply nested JSON body is not XTS JSON: RetryableError (exit 3)."""
    with pytest.raises(RetryableError):
        decode_answer(200, {}, opener * depth)


@BUG
@given(depth=NESTING, opener=OPENERS, in_token=st.booleans())
@example(depth=100_000, opener=b"[", in_token=False)
@example(depth=100_000, opener=b"[", in_token=True)
def test_deeply_nested_token_file_is_corrupt(
    depth: int, opener: bytes, in_token: bool, scratch: Path
) -> None:
    """A token file of deeply nested JSON is "corrupt"; a token whose JWT payload is deeply
    nested has no claims (the file is usable, its expiry unknown)."""
    path = scratch / "files" / "nested.json"
    if in_token:
        token = _jwt(opener * depth)
        assert store.jwt_claims(token) == {}
        assert store.expiry_from_token(token) is None
        path.write_bytes(_json_bytes({"token": token, "timestamp": datetime.now().isoformat()}))
        assert load_token(path).expires_at is None  # usable: assumed 24 h from the login
    else:
        path.write_bytes(opener * depth)
        with pytest.raises(TokenUnavailableError):
            load_token(path)


SURROGATES = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)


def _with_surrogates(surrogates: str, in_token: bool) -> dict[str, Any]:
    """A success answer with lone surrogates in its token (or else in its userID)."""
    token, user = (f"eyJ{surrogates}", USER_ID) if in_token else (_jwt_of({}), surrogates)
    return {"type": "success", "result": {"token": token, "userID": user}}


@BUG
@given(body=st.builds(_with_surrogates, SURROGATES, st.booleans()))
@example(
    body=json.loads('{"type": "success", "result": {"token": "\\ud800eyJ", "userID": "CK68"}}')
)
def test_token_with_lone_surrogate_is_refused_or_saved(body: dict[str, Any], scratch: Path) -> None:
    """An answer with a lone UTF-16 surrogate in its token or user: refused, or saved and
    read back whole."""
    _login_pipeline(body, "interactive", ROOTS[0], scratch / "login")


@BUG
@given(body=XTS_ANSWERS)
@example(
    body={
        "type": "success",
        "result": {"token": "eyJ", "userID": "CK68", "isInvestorClient": math.nan},
    }
)
def test_saved_token_file_is_strict_json(body: dict[str, Any], scratch: Path) -> None:
    """Whatever XTS sent, a saved token file is JSON any language reads (no NaN/Infinity)."""
    try:
        decoded = decode_answer(200, {}, _json_bytes(body))
        stored = _login_pipeline(decoded, "interactive", ROOTS[0], scratch / "login")
    except RetryableError:
        return
    if stored is not None:
        _strict_json((scratch / "login" / "interactive.json").read_text(encoding="utf-8"))


@BUG
@given(body=st.one_of(XTS_ANSWERS, JSON_OBJECTS))
@example(body={"type": "error", "code": "e-user-0005", "description": f"Invalid\n{SUCCESS_LINE}"})
@example(
    body={"type": "error", "code": "e-\x1b[2J", "description": f"\x1b[31m\r{SUCCESS_LINE}\x9b"}
)
def test_xts_text_stays_on_one_line(body: dict[str, Any]) -> None:
    """XTS's error text, as the messages quote it, is one line, with no control character
    (an ESC sequence, a carriage return, a C1 character) that could steer a terminal."""
    controls = re.compile(r"[\x00-\x1f\x7f-\x9f]")
    assert len(describe_xts_error(body).splitlines()) <= 1
    assert not controls.search(describe_xts_error(body))
    try:
        login_result(INTERACTIVE, body, ROOTS[0])
    except XtsRefreshError as exc:
        assert len(exc.message.splitlines()) <= 1
        assert not controls.search(exc.message)


@BUG
@given(
    value=st.one_of(
        st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=4),
        st.text("0123456789", min_size=4301, max_size=4400),
    )
)
@example(value="²")
@example(value="9" * 5000)
def test_retries_of_odd_digits_is_a_config_error(value: str, scratch: Path) -> None:
    """XTS_RETRIES of any digits: a number of retries in range, or ConfigError naming it."""
    try:
        loaded = _load({**BASE_ENVIRON, "XTS_RETRIES": value}, scratch / "empty.env")
    except ConfigError as exc:
        _assert_names(exc, "XTS_RETRIES")
        return
    assert 0 <= loaded.retries <= MAX_RETRIES


@BUG
@given(
    name=st.sampled_from(URL_VARIABLES),
    value=st.builds(
        "{}{}{}".format,
        st.sampled_from(["http://", "https://"]),
        st.text("[]:@/", min_size=1, max_size=3),
        st.text(max_size=6),
    ),
)
@example(name="XTS_API_ROOT", value="http://[")
@example(name="HEALTHCHECK_URL", value="https://a\uff03b")
def test_malformed_urls_are_config_errors(name: str, value: str, scratch: Path) -> None:
    """Any http(s)-looking text in a URL variable: Settings, or ConfigError naming it."""
    try:
        loaded = _load({**BASE_ENVIRON, name: value}, scratch / "empty.env")
    except ConfigError as exc:
        _assert_names(exc, name)
        return
    _assert_valid_settings(loaded)


@BUG
@given(
    name=st.sampled_from(PATH_VARIABLES),
    value=st.one_of(
        st.text("abcdefghijklmnopqrstuvwxyz", min_size=8, max_size=12).map("~zz-{}/f".format),
        st.integers(min_value=256, max_value=400).map("x".__mul__),
    ),
)
@example(name="XTS_CA_BUNDLE", value="~zz-no-such-user/ca.pem")
@example(name="XTS_TOKEN_FILE", value="~zz-no-such-user/xts_store_token.json")
@example(name="XTS_CA_BUNDLE", value="x" * 300)
def test_odd_paths_are_settings_or_config_errors(name: str, value: str, scratch: Path) -> None:
    """A path variable naming an unknown user's home or an over-long name: Settings, or
    ConfigError naming the variable."""
    try:
        loaded = _load({**BASE_ENVIRON, name: value}, scratch / "empty.env")
    except ConfigError as exc:
        _assert_names(exc, name)
        return
    _assert_valid_settings(loaded)


def _short_wait() -> str:
    time.sleep(0.005)
    return "waited"


@BUG
@given(value=st.floats(min_value=0.001, max_value=1e300).map(repr))
@example(value="1e10")
def test_accepted_timeouts_can_be_waited_for(value: str, scratch: Path) -> None:
    """An XTS_TIMEOUT and XTS_DEADLINE that load are budgets a request can be bounded by."""
    environ = {**BASE_ENVIRON, "XTS_TIMEOUT": value, "XTS_DEADLINE": value}
    try:
        loaded = _load(environ, scratch / "empty.env")
    except ConfigError:
        return
    with contextlib.suppress(TimeoutError):  # a tiny budget may run out: that is its job
        assert run_within(min(loaded.timeout, loaded.deadline), _short_wait) == "waited"


@pytest.mark.parametrize(
    ("fault", "args", "secret"),
    [
        pytest.param(
            Fault.raw(b"[" * 100_000),
            (),
            None,
            id="deeply-nested-json",
        ),
        pytest.param(
            Fault.raw(b'{"type": "success", "result": {"token": "\\ud800eyJ", "userID": "CK68"}}'),
            (),
            None,
            id="lone-surrogate-in-token",
        ),
        pytest.param(
            Fault.raw(
                b'{"type": "success", "result": {"token": "eyJ.e30.x", "userID": "\\udc80"}}'
            ),
            (),
            None,
            id="lone-surrogate-in-user",
        ),
        pytest.param(
            Fault.json(
                {"type": "error", "code": "e-user-0005", "description": f"No\n{SUCCESS_LINE}"}, 400
            ),
            (),
            None,
            id="line-break-in-description",
        ),
        pytest.param(
            Fault.json({"type": "success", "result": {"token": "eyJ.e30.x", "userID": "U\nV"}}),
            (),
            None,
            id="line-break-in-user",
        ),
        pytest.param(
            Fault.json({"type": "success", "result": {"token": "eyJ.e30.токен", "userID": "CK68"}}),
            ("--verify",),
            "eyJ.e30.токен",
            id="verify-non-latin1-token",
        ),
        pytest.param(
            Fault.json(
                {"type": "success", "result": {"token": "eyJ.e30.sig\nx", "userID": "CK68"}}
            ),
            ("--verify",),
            "eyJ.e30.sig\nx",
            id="verify-token-with-line-break",
        ),
    ],
)
def test_real_script_on_known_bad_answers(
    fault: Fault, args: tuple[str, ...], secret: str | None
) -> None:
    """The end-to-end face of the bugs above: the same contract ending as any other answer,
    and a token XTS hands over never printed."""
    _check_real_run(fault, *args, secret=secret)


PATH_CHARS = st.text(st.sampled_from("abc/._-0189 #'\"\\"), min_size=1, max_size=20)


def _env_value_forms(path: str, comment: str, form: str) -> str:
    """How an operator might write XTS_TOKEN_FILE's value in .env."""
    if form == "single":
        return "'" + path.replace("\\", "\\\\").replace("'", "\\'") + "'" + comment
    if form == "double":
        return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"' + comment
    bare = "".join(path.split()).replace("#", "").replace("'", "").replace('"', "") or "x"
    return bare + comment


@settings(FAST, max_examples=300)
@given(
    path=PATH_CHARS,
    comment=st.sampled_from(["", " # note", "\t# note", "  #x"]),
    form=st.sampled_from(["bare", "single", "double"]),
)
def test_load_tokens_env_reader_agrees_with_python_dotenv(
    path: str, comment: str, form: str
) -> None:
    """load_token's small .env reader finds the token file python-dotenv (the refresher) finds."""
    import io

    from dotenv import dotenv_values

    from xts_refresher import paths

    value = _env_value_forms(path, comment, form)
    expected = dotenv_values(stream=io.StringIO(f"XTS_TOKEN_FILE={value}\n"), interpolate=False)
    assert paths.unquote(value) == expected["XTS_TOKEN_FILE"]


# -- the plain .env reader -----------------------------------------------------------------------

ENV_PIECES = st.sampled_from(
    ["A", "B_2", "export ", "export", "=", "==", " ", "\t", "#", " #", "'", '"', "\\", "$X",
     "${A}", "\r", "\r\n", "\n", "\x0c", "\u00a0", "é", "123456:AA-_x", "https://h/p?q=1",
     "-1001", "/tmp/a b", "1A", ":", "\x00"]
)  # fmt: skip


def _dotenv(text: str) -> dict[str, str | None]:
    import io

    from dotenv import dotenv_values

    return dict(dotenv_values(stream=io.StringIO(text), interpolate=False))


ENV_LINES = st.lists(
    st.tuples(
        st.sampled_from(["", "export ", " ", "#"]),
        st.sampled_from(["A", "B_2", "export", "1A", "A B"]),
        st.sampled_from(["=", " = ", ""]),
        st.lists(st.sampled_from(["x", "$X", "'", '"', "\\", "#", " #", " ", "-", ":", "é"]),
                 max_size=4),
        st.sampled_from(["\n", "\r\n", "\r"]),
    ).map(lambda line: line[0] + line[1] + line[2] + "".join(line[3]) + line[4]),
    max_size=6,
).map("".join)  # fmt: skip


@pytest.mark.slow
@settings(FAST, max_examples=1500)
@given(pieces=st.lists(ENV_PIECES, max_size=24) | ENV_LINES.map(lambda text: [text]))
@example(pieces=["A", "=", "'", "x", "'"])  # quotes are python-dotenv's to take off
@example(pieces=["A", "=", '"', "$X", '"'])
@example(pieces=["A", "=", "\\", "x"])
@example(pieces=["A", "=", "B_2", "\r", "B_2", "=", "A"])  # a lone carriage return ends a line
@example(pieces=["A", "=", "B_2", "\x0c", "B_2", "=", "A"])  # str.splitlines would split here
@example(pieces=["export ", "A", "=", "123456:AA-_x", "\n", "#", "A", "=", "-1001"])
def test_the_plain_env_reader_reads_what_python_dotenv_reads(pieces: list[str]) -> None:
    """Whatever text it accepts, plain_env_values reads as python-dotenv does (no
    interpolation, as the refresher asks it); anything else it leaves to python-dotenv."""
    from xts_refresher.env_files import plain_env_values

    text = "".join(pieces)
    plain = plain_env_values(text)
    event("plain" if plain is not None else "left to python-dotenv")
    if plain is not None:
        assert plain == _dotenv(text)


def test_the_plain_env_reader_takes_the_example_settings_file() -> None:
    """.env.example, filled in with values of the usual shapes, is plain: a refresh reads it
    without importing python-dotenv (the point of the fast path)."""
    from conftest import APP_DIR

    from xts_refresher.env_files import plain_env_values

    filled = {
        "XTS_API_ROOT": "https://ttblaze.iifl.com",
        "XTS_INTERACTIVE_API_KEY": "ik-FAKE-7f3a9c-interactive-key",
        "XTS_INTERACTIVE_API_SECRET": "Ab12$Cd34%Ef",
        "XTS_USER_ID": "CK68",
        "TELEGRAM_TOKEN": "987654321:AAFakeBotTokenZZtestonly_x9y8w7v6u5t4",
        "TELEGRAM_CHAT_ID": "-1001234567890",
        "HEALTHCHECK_URL": "https://hc-ping.com/0f6b7f1e-2d1c-4c4e-9c3e-5a6b7c8d9e0f",
    }
    lines = []
    for line in (APP_DIR / ".env.example").read_text(encoding="utf-8").splitlines():
        name = line.partition("=")[0]
        lines.append(f"{name}={filled[name]}" if name in filled else line)
    text = "\n".join(lines) + "\n"
    plain = plain_env_values(text)
    assert plain is not None
    assert plain == _dotenv(text)
    assert plain["TELEGRAM_TOKEN"] == filled["TELEGRAM_TOKEN"]
