"""Settings: read from flags, the process environment and ``.env``, validated before any traffic.

Precedence is flag > process environment > ``.env`` > default. Every relative path resolves
against the folder that holds ``xts_token_refresh.py`` (cron starts jobs in ``$HOME``). All
problems are collected and reported together, each naming its variable, so one edit fixes them.

Every variable the program reads is a row of one table, ``TABLE``: its name, its default, the
function that turns its text into a value (or says what is wrong with it), whether it is
secret, and what it means. ``Settings``' plain fields, the validation, the variables read from
the environment, the secrets kept from the hook and ``check-config --help`` all follow from it,
and a test holds ``.env.example`` to it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

from . import paths
from .env_files import env_file_is_exposed, read_env_file
from .errors import ConfigError
from .paths import APP_DIR, DEFAULT_ACCOUNT, DEFAULT_ACCOUNTS_DIR
from .sessions import INTERACTIVE, MARKETDATA, SESSIONS, Session
from .store import is_user
from .values import Frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; mypy honours the name
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .console import Log
    from .store import StoredToken

DEFAULT_ENV_FILE = ".env"
DEFAULT_LOG_FILE = "xts_token_refresh.log"
DEFAULT_TELEGRAM_API_URL = "https://api.telegram.org"
TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})
TELEGRAM_MODES = ("all", "failure", "off")
MAX_RETRIES = 20
DEFAULT_DEADLINE_SECONDS = 300.0
MAX_DEADLINE_SECONDS = 86400.0
DEFAULT_RETRY_BACKOFF_SECONDS = 2.0
# How an account's interactive session is logged in: with its key and secret, or on the
# broker's login page by the account holder (browser_login.py).
KEY_LOGIN, BROWSER_LOGIN = "key", "browser"
DEFAULT_RETURN_URL = "http://127.0.0.1:8765/xts/callback"
MAX_LOGIN_WAIT_SECONDS = 86400.0
# How long XTS_ACCESS_TOKEN_COMMAND may run before it is stopped.
TOKEN_COMMAND_SECONDS = 120.0
# Placeholders from .env.example: sending them to the broker would only earn a refusal.
PLACEHOLDER_PREFIXES = ("your_", "your-", "<")


# -- parsers: the text of one setting to its value ---------------------------------------------
#
# Each takes the setting's text as read (possibly blank) and returns its value, None when the
# text is blank (the row's default then applies), or raises InvalidSettingError with what is wrong,
# a sentence that follows the variable's name.


class InvalidSettingError(ValueError):
    """The text of a setting that its parser refuses; the message follows the variable's name
    (``must be true or false ...``)."""


def parse_text(raw: str) -> str | None:
    """The text, trimmed; InvalidSettingError for a placeholder left from .env.example."""
    value = raw.strip()
    if value.lower().startswith(PLACEHOLDER_PREFIXES):
        raise InvalidSettingError("still holds the placeholder from .env.example.")
    return value or None


def url_parser(*, base: bool = False, no_user: bool = False) -> Callable[[str], str | None]:
    """A parser of an http(s) URL, returned without a trailing ``/``; with ``base``, paths are
    added to it, so a query or a fragment (which would end up before those paths) is refused
    too; with ``no_user``, so is a user or password (never shown)."""

    def parse_url(raw: str) -> str | None:
        value = parse_text(raw)
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            _ = parts.port
        except ValueError:
            problem = "is not a valid URL (check the brackets and the port)."
            raise InvalidSettingError(problem) from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise InvalidSettingError("must be an http(s) URL, e.g. https://host:port/path.")
        if no_user and "@" in parts.netloc:
            raise InvalidSettingError(
                "must not hold a user or password (user:password@): XTS reads the session "
                "token from the Authorization header, which they would replace."
            )
        if base and ("?" in value or "#" in value):
            raise InvalidSettingError(
                "must not have a query (?…) or a fragment (#…): paths are added to it, "
                "e.g. https://host:port/path."
            )
        return value.rstrip("/")

    return parse_url


def required(parse: Callable[[str], Any], example: str) -> Callable[[str], Any]:
    """``parse`` for a setting that must be set: blank text is InvalidSettingError too."""

    def parse_required(raw: str) -> Any:
        value = parse(raw)
        if value is None and not raw.strip():
            raise InvalidSettingError(f"is not set (e.g. {example}).")
        return value

    return parse_required


def parse_boolean(raw: str) -> bool | None:
    """True or False from true/false, 1/0 or yes/no in any case; nothing else."""
    value = raw.strip().lower()
    if not value:
        return None
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise InvalidSettingError(f"must be true or false (or 1/0, yes/no), not {value!r}.")


def seconds_parser(
    minimum: float = 0.001, maximum: float = 86400.0
) -> Callable[[str], float | None]:
    """A parser of a number of seconds from ``minimum`` to ``maximum``."""

    def parse_seconds(raw: str) -> float | None:
        value = raw.strip()
        if not value:
            return None
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not minimum <= number <= maximum:
            raise InvalidSettingError(
                f"must be a number of seconds from {minimum:g} to {maximum:g}, not {value!r}."
            )
        return number

    return parse_seconds


def whole_parser(maximum: int) -> Callable[[str], int | None]:
    """A parser of a whole number from 0 to ``maximum`` (ASCII digits only)."""

    def parse_whole(raw: str) -> int | None:
        value = raw.strip()
        if not value:
            return None
        # Not a regular expression: compiling one costs every run about 0.3 M instructions.
        digits = value.isascii() and value.isdigit() and len(value) <= 6
        if not digits or int(value) > maximum:
            raise InvalidSettingError(f"must be a whole number from 0 to {maximum}, not {value!r}.")
        return int(value)

    return parse_whole


def choice_parser(*choices: str) -> Callable[[str], str | None]:
    """A parser of one of ``choices``, in any case."""

    def parse_choice(raw: str) -> str | None:
        value = raw.strip().lower()
        if value and value not in choices:
            raise InvalidSettingError(f"must be one of {', '.join(choices)}, not {value!r}.")
        return value or None

    return parse_choice


def parse_chat_ids(raw: str) -> tuple[str, ...] | None:
    """The chat IDs of a comma-separated list, each trimmed, in the order given; an empty item
    (``42,,7``, a trailing comma) is skipped and a repeated ID kept once (one message per chat
    and run). InvalidSettingError for an item with white space in it (IDs separated by spaces
    instead of commas) or a placeholder."""
    chats: list[str] = []
    for item in raw.split(","):
        chat = parse_text(item)
        if chat is None or chat in chats:
            continue
        if len(chat.split()) > 1:
            raise InvalidSettingError(
                "must be chat IDs separated by commas (e.g. 4242,-1001234567890), "
                f"not {raw.strip()!r}."
            )
        chats.append(chat)
    return tuple(chats) or None


def parse_duration_setting(raw: str) -> float | None:
    """Seconds in ``30m``, ``1h30m``, ``45s`` or ``600`` (a bare number is seconds), as the
    command line's durations, from 0 to MAX_LOGIN_WAIT_SECONDS."""
    value = raw.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():  # the default "0", read by every refresh
        seconds = float(value)
    else:
        from argparse import ArgumentTypeError

        from .cli import parse_duration  # the command line's reading of a duration

        try:
            seconds = parse_duration(value)
        except ArgumentTypeError:
            raise InvalidSettingError(
                f"must be a duration such as 30m, 1h or 600, not {value!r}."
            ) from None
    if seconds > MAX_LOGIN_WAIT_SECONDS:
        raise InvalidSettingError(f"must be at most 24h, not {value!r}.")
    return seconds


def parse_return_url(raw: str) -> str | None:
    """An http(s) URL the broker's page sends the browser to, kept as written (its path is the
    one the callback listens at); no user or password, no fragment."""
    value = parse_text(raw)
    if value is None or value == DEFAULT_RETURN_URL:
        return value
    parse_url = url_parser(no_user=True)
    parse_url(value)
    if "#" in value:
        raise InvalidSettingError("must not have a fragment (#…): browsers never send it.")
    return value


def parse_listen_address(raw: str) -> str | None:
    """``host:port`` or ``[IPv6]:port`` of the callback listener, as written."""
    value = raw.strip()
    if not value:
        return None
    host, colon, port = value.rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    good_port = port.isascii() and port.isdigit() and 0 < int(port) < 65536
    if not colon or not bare or not good_port or (":" in bare and bare == host):
        raise InvalidSettingError(
            f"must be host:port, e.g. 127.0.0.1:8765 or [::1]:8765, not {value!r}."
        )
    return value


def parse_path(raw: str) -> Path | None:
    """The path, absolute (see resolve_path), taken as written: neither trimmed nor checked."""
    return resolve_path(raw) if raw else None


def parse_file_path(raw: str) -> Path | None:
    """The path of a file, trimmed, absolute (see resolve_path); placeholders refused."""
    value = parse_text(raw)
    return resolve_path(value) if value else None


def parse_readable_file(raw: str) -> Path | None:
    """The path of a file that must exist and be readable (file_path)."""
    found = parse_file_path(raw)
    if found is not None and not _is_file(found):
        raise InvalidSettingError(f"points to {found}, which is not a readable file.")
    return found


def parse_api_path(raw: str) -> str | None:
    """A path under the API root, ``/``-led without a trailing ``/``; "" for ``/`` (the API at
    the root itself)."""
    value = parse_text(raw)
    if value is None:
        return None
    stripped = value.strip("/")
    return f"/{stripped}" if stripped else ""


# -- the table ----------------------------------------------------------------------------------


class Setting(Frozen):
    """One row of the table of settings: the variable, its default (its text, as .env.example
    would write it; "" for none, None when it must be set), the parser of its text, whether it
    is a secret, what it means, and the Settings field it fills (None: code combines it with
    others, or it is not an account's setting at all)."""

    __slots__ = ("default", "field", "meaning", "parse", "secret", "variable")
    variable: str
    default: str | None
    parse: Callable[[str], Any]
    secret: bool
    meaning: str
    field: str | None

    def __init__(
        self,
        variable: str,
        default: str | None,
        parse: Callable[[str], Any],
        meaning: str,
        *,
        field: str | None = None,
        secret: bool = False,
    ) -> None:
        # Not _set(**fields): a row each way costs ~8 k instructions more, times every row.
        put = object.__setattr__
        put(self, "variable", variable)
        put(self, "default", default)
        put(self, "parse", parse)
        put(self, "secret", secret)
        put(self, "meaning", meaning)
        put(self, "field", field)

    def read(self, values: Mapping[str, str]) -> Any:
        """The value ``values`` give this setting, or its default; InvalidSettingError when the
        text given is refused."""
        value = self.parse(values.get(self.variable, ""))
        if value is None and self.default:
            return self.parse(self.default)
        return value


def _session_rows(session: Session) -> tuple[Setting, ...]:
    """The app key and secret of ``session``."""
    return (
        Setting(
            session.key_variable,
            "",
            parse_text,
            f"app key of the {session.label} session (set it and its secret, or neither)",
            secret=True,
        ),
        Setting(
            session.secret_variable,
            "",
            parse_text,
            f"secret of the {session.label} app key",
            secret=True,
        ),
    )


def _token_file_row(session: Session) -> Setting:
    return Setting(
        session.path_variable,
        session.default_file,
        parse_path,
        f"{session.label} token file (an account's: accounts/NAME/{session.default_file})",
    )


# In the order the problems of a run's settings are listed.
TABLE: tuple[Setting, ...] = (
    Setting(
        "XTS_API_ROOT",
        None,
        required(url_parser(base=True, no_user=True), "XTS_API_ROOT=https://ttblaze.iifl.com"),
        "your broker's XTS API root: scheme, host, optional port and path prefix",
        field="api_root",
    ),
    *(row for session in SESSIONS.values() for row in _session_rows(session)),
    Setting(
        "XTS_CA_BUNDLE",
        "",
        parse_readable_file,
        "CA bundle (PEM) for a certificate chain the system does not trust",
        field="ca_bundle",
    ),
    Setting("TELEGRAM_TOKEN", "", parse_text, "Telegram bot token (off when unset)", secret=True),
    Setting(
        "TELEGRAM_CHAT_ID",
        "",
        parse_chat_ids,
        "Telegram chats the messages go to: chat IDs separated by commas",
    ),
    Setting(
        "TELEGRAM_NOTIFY",
        "all",
        choice_parser(*TELEGRAM_MODES),
        "which runs Telegram hears of: all, failure (failures and warnings), off",
    ),
    Setting(
        "TELEGRAM_API_URL",
        DEFAULT_TELEGRAM_API_URL,
        url_parser(base=True),
        "Telegram Bot API server (a self-hosted one)",
    ),
    *(_token_file_row(session) for session in SESSIONS.values()),
    Setting(
        "XTS_MARKETDATA_PATH",
        MARKETDATA.default_base,
        parse_api_path,
        "market-data API path (/apibinarymarketdata for binary-feed brokers)",
    ),
    Setting("XTS_API_SOURCE", "WEBAPI", parse_text, "login source sent to XTS", field="source"),
    Setting(
        "XTS_USER_ID",
        "",
        parse_text,
        "your XTS user ID: a login that answers for another user is refused",
        field="user_id",
    ),
    Setting("XTS_VERIFY_SSL", "true", parse_boolean, "TLS certificate checks", field="verify_ssl"),
    Setting(
        "XTS_TIMEOUT",
        "30",
        seconds_parser(maximum=3600.0),
        "seconds one HTTP request may take",
        field="timeout",
    ),
    Setting(
        "XTS_RETRIES",
        "4",
        whole_parser(MAX_RETRIES),
        "retries after a transient failure",
        field="retries",
    ),
    Setting(
        "XTS_DEADLINE",
        f"{DEFAULT_DEADLINE_SECONDS:g}",
        seconds_parser(maximum=MAX_DEADLINE_SECONDS),
        "seconds the whole run may take",
        field="deadline",
    ),
    Setting(
        "XTS_RETRY_BACKOFF",
        f"{DEFAULT_RETRY_BACKOFF_SECONDS:g}",
        seconds_parser(minimum=0.0, maximum=60.0),
        "first wait between retries, in seconds (doubles each time)",
        field="retry_backoff",
    ),
    Setting(
        "XTS_HOSTLOOKUP_URL",
        "",
        url_parser(),
        "host-lookup URL of clustered deployments",
        field="hostlookup_url",
    ),
    Setting(
        "XTS_POST_REFRESH_HOOK",
        "",
        parse_text,
        "shell command run after a refresh that saved a new token",
        field="post_refresh_hook",
    ),
    Setting(
        "HEALTHCHECK_URL",
        "",
        url_parser(base=True),
        "dead man's switch pinged when a run starts and ends",
        field="healthcheck_url",
    ),
    Setting(
        "XTS_NOTIFY_LABEL",
        "",
        parse_text,
        "how Telegram messages name this machine (default: its host name)",
        field="notify_label",
    ),
    Setting(
        "XTS_METRICS_FILE",
        "",
        parse_file_path,
        "Prometheus text file for node_exporter's textfile collector",
        field="metrics_file",
    ),
    Setting(
        "XTS_LOGIN",
        KEY_LOGIN,
        choice_parser(KEY_LOGIN, BROWSER_LOGIN),
        "key: log in with key and secret; browser: the holder signs in on the broker page",
        field="login",
    ),
    Setting(
        "XTS_LOGIN_URL",
        "",
        url_parser(base=True, no_user=True),
        "the broker's login page (default: XTS_API_ROOT/interactive/thirdparty)",
        field="login_url",
    ),
    Setting(
        "XTS_RETURN_URL",
        DEFAULT_RETURN_URL,
        parse_return_url,
        "where the broker's page sends the browser with the session",
        field="return_url",
    ),
    Setting(
        "XTS_CALLBACK_LISTEN",
        "",
        parse_listen_address,
        "host:port the refresher listens on while it waits (default: the return URL's)",
        field="callback_listen",
    ),
    Setting(
        "XTS_LOGIN_WAIT",
        "0",
        parse_duration_setting,
        "how long a refresh waits for the holder to sign in (30m); 0: it does not wait",
        field="login_wait",
    ),
    Setting(
        "XTS_ACCESS_TOKEN_COMMAND",
        "",
        parse_text,
        "command that signs in without a person and prints the session (within 120 s)",
        field="access_token_command",
    ),
    Setting(
        "XTS_LOG_FILE",
        DEFAULT_LOG_FILE,
        parse_path,
        "detailed log, one for every account (--log-file overrides it)",
    ),
    Setting(
        "XTS_ACCOUNTS_DIR",
        DEFAULT_ACCOUNTS_DIR,
        parse_path,
        "folder of the account files NAME.env (never set in an account file)",
    ),
)
ROWS = MappingProxyType({row.variable: row for row in TABLE})
# Every variable the program reads; the process environment is consulted for these only.
KNOWN_VARIABLES = tuple(ROWS)
SECRET_VARIABLES = tuple(row.variable for row in TABLE if row.secret)


def settings_help() -> str:
    """The table of settings as ``check-config --help`` lists it: each as ``NAME=default``
    (required or secret noted), its meaning on the next line."""
    lines = ["settings (in .env, accounts/NAME.env or the environment; see .env.example):"]
    for row in TABLE:
        notes = ["required"] if row.default is None else []
        notes += ["secret"] if row.secret else []
        shown = f"  ({', '.join(notes)})" if notes else ""
        lines += [f"  {row.variable}={row.default or ''}{shown}", f"      {row.meaning}"]
    return "\n".join(lines)


# Read from .env and the environment only, never from an account file: the install's.
INSTALL_VARIABLES = ("XTS_LOG_FILE", "XTS_ACCOUNTS_DIR")
ACCOUNT_ROWS = tuple(row for row in TABLE if row.variable not in INSTALL_VARIABLES)
# The Settings fields that code builds from several settings, or from none.
COMBINED_FIELDS = (
    "account",
    "base_paths",
    "credentials",
    "env_file",
    "log_file",
    "shared_env_file",
    "telegram",
    "link_telegram",
    "token_files",
)


class PathOverrides(Frozen):
    """The path flags every command takes; None where the flag was not given."""

    __slots__ = ("env_file", "log_file", "token_file")
    env_file: str | None
    token_file: str | None
    log_file: str | None

    def __init__(
        self,
        env_file: str | None = None,
        token_file: str | None = None,
        log_file: str | None = None,
    ) -> None:
        self._set(env_file=env_file, token_file=token_file, log_file=log_file)


class Credentials(Frozen):
    """One XTS app key and its secret."""

    __slots__ = ("app_key", "secret")
    _hidden = ("app_key", "secret")
    app_key: str
    secret: str

    def __init__(self, app_key: str, secret: str) -> None:
        self._set(app_key=app_key, secret=secret)


class TelegramSettings(Frozen):
    """Where notifications go (one bot, one or more chats, each ID once), and which ones."""

    __slots__ = ("api_url", "bot_token", "chat_ids", "notify")
    _hidden = ("bot_token",)
    bot_token: str
    chat_ids: tuple[str, ...]
    notify: str
    api_url: str

    def __init__(
        self, bot_token: str, chat_ids: tuple[str, ...], notify: str, api_url: str
    ) -> None:
        self._set(bot_token=bot_token, chat_ids=chat_ids, notify=notify, api_url=api_url)


class Settings(Frozen):
    """Everything a run needs, validated. Paths are absolute.

    The fields named in TABLE's rows hold those settings; the others (COMBINED_FIELDS) are
    built from several. ``credentials`` holds the configured sessions only, by name;
    ``token_files`` and ``base_paths`` hold every session of the table (the hook is told both
    files).
    """

    __slots__ = tuple(sorted([*(row.field for row in TABLE if row.field), *COMBINED_FIELDS]))
    # From TABLE (a test holds these to its rows).
    api_root: str
    source: str
    user_id: str | None
    verify_ssl: bool
    ca_bundle: Path | None
    timeout: float
    retries: int
    deadline: float
    retry_backoff: float
    hostlookup_url: str | None
    post_refresh_hook: str | None
    healthcheck_url: str | None
    notify_label: str | None
    metrics_file: Path | None
    login: str
    login_url: str | None
    return_url: str
    callback_listen: str | None
    login_wait: float
    access_token_command: str | None
    # COMBINED_FIELDS.
    account: str
    credentials: Mapping[str, Credentials]
    token_files: Mapping[str, Path]
    base_paths: Mapping[str, str]
    telegram: TelegramSettings | None
    # Where a browser account's sign-in link goes, whatever TELEGRAM_NOTIFY says (else None).
    link_telegram: TelegramSettings | None
    env_file: Path
    shared_env_file: Path | None
    log_file: Path

    def __init__(self, **fields: Any) -> None:
        missing = set(self.__slots__) - set(fields)
        if missing:
            raise TypeError(f"Settings needs {sorted(missing)}")
        self._set(**fields)

    @property
    def sessions(self) -> tuple[Session, ...]:
        """The configured sessions, in the table's order (interactive first)."""
        return tuple(s for s in SESSIONS.values() if s.name in self.credentials)

    def token_path(self, session: Session) -> Path:
        """The token file of ``session``."""
        return self.token_files[session.name]

    def base_path(self, session: Session) -> str:
        """The path under the API root where ``session``'s API lives (``/apimarketdata``)."""
        return self.base_paths[session.name]

    @property
    def lock_file(self) -> Path:
        """The run lock, beside the interactive token file."""
        return lock_beside(self.token_files[INTERACTIVE.name])

    @property
    def lock_files(self) -> tuple[Path, ...]:
        """Every lock a refresh of these settings takes, in the order it takes them (sorted by
        path, so two runs that share files can never each hold one the other waits for): the
        run lock, and one beside each configured session's token file. A market-data login
        ends the previous market-data session, so two runs that share a market-data file but
        not the interactive one must still take turns."""
        paths = {self.lock_file, *(lock_beside(self.token_path(s)) for s in self.sessions)}
        return tuple(sorted(paths, key=str))

    @property
    def broker(self) -> str:
        """The broker these settings log in to, as messages name it (broker_of the API root)."""
        return broker_of(self.api_root)

    @property
    def shown_env_file(self) -> str:
        """The file that holds this account's own settings, as advice names it (shown_path):
        ``accounts/NAME.env``, or ``.env`` (the --env-file path) for the single account."""
        return shown_path(self.env_file)

    def urls(self) -> dict[str, str]:
        """Every URL these settings hold, by the variable that sets it."""
        urls = {"XTS_API_ROOT": self.api_root}
        if self.hostlookup_url:
            urls["XTS_HOSTLOOKUP_URL"] = self.hostlookup_url
        if self.telegram is not None:
            urls["TELEGRAM_API_URL"] = self.telegram.api_url
        if self.healthcheck_url:
            urls["HEALTHCHECK_URL"] = self.healthcheck_url
        if self.login == BROWSER_LOGIN:
            urls["XTS_LOGIN_URL"] = self.login_url or ""
            urls["XTS_RETURN_URL"] = self.return_url
        return urls

    def secrets(self) -> list[str]:
        """Every secret value these settings hold, for redaction: the keys and secrets, the bot
        token, and the credentials in any URL (a server behind basic authentication)."""
        values = [v for c in self.credentials.values() for v in (c.app_key, c.secret)]
        if self.telegram is not None:
            values.append(self.telegram.bot_token)
        for url in self.urls().values():
            values += url_credentials(url)
        return values


DEFAULT_PORTS = {"http": 80, "https": 443}


def broker_of(api_root: str) -> str:
    """The host of ``api_root``, with its port when that is not the scheme's default
    (``xts.b.example:3000``): how a failure names the broker it concerns. Never a user or
    password; the URL itself when it has no host."""
    try:
        parts = urlsplit(api_root)
        host, port = parts.hostname, parts.port
    except ValueError:
        return without_credentials(api_root)
    if not host:
        return without_credentials(api_root)
    shown = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS.get(parts.scheme.lower()):
        shown += f":{port}"
    return shown


def shown_path(path: Path) -> str:
    """``path`` as advice shows it: relative to the program's folder when it lies inside it
    (``accounts/acc03.env``, ``.env``), else absolute."""
    try:
        return path.relative_to(APP_DIR).as_posix()
    except ValueError:
        return str(path)


def without_credentials(url: str) -> str:
    """``url`` as it may be shown: without the ``user:password@`` before its host."""
    scheme, separator, rest = url.partition("://")
    ends = [found for found in map(rest.find, "/?#") if found >= 0]
    authority = rest[: min(ends, default=len(rest))]
    if not separator or "@" not in authority:
        return url
    return f"{scheme}://{rest[authority.rindex('@') + 1 :]}"


def url_credentials(url: str) -> list[str]:
    """The ``user:password`` of ``url`` and its password (the user alone when there is no
    password: then it is the secret), for redaction; [] when it has none."""
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return []
    if "@" not in parts.netloc:
        return []
    if password is None:
        return list(filter(None, [user]))
    return list(filter(None, [parts.netloc.rsplit("@", 1)[0], password]))


def lock_beside(token_file: Path) -> Path:
    """The lock of ``token_file``: ``<token file>.lock``, beside it."""
    return token_file.with_name(token_file.name + ".lock")


def resolve_path(value: str | os.PathLike[str]) -> Path:
    """``value`` as an absolute path; a relative one is taken from the program's folder."""
    return Path(paths.resolve(os.fspath(value)))


def collect_values(
    overrides: PathOverrides, environ: Mapping[str, str]
) -> tuple[Path, dict[str, str]]:
    """The settings file's path and the merged raw values (process environment over ``.env``)."""
    env_file = resolve_path(overrides.env_file or DEFAULT_ENV_FILE)
    values: dict[str, str] = {}
    if overrides.env_file is not None or env_file.exists():
        if overrides.env_file is not None and not env_file.exists():
            raise ConfigError(
                f"The settings file {env_file} (--env-file) does not exist.",
                "Give the path of your .env file.",
            )
        values.update(read_env_file(env_file))
    for name in KNOWN_VARIABLES:
        if environ.get(name):
            values[name] = environ[name]
    return env_file, values


def load_settings(overrides: PathOverrides, environ: Mapping[str, str]) -> Settings:
    """Validated settings of the single account of ``.env`` (flags, ``environ``, ``.env``);
    ConfigError lists every problem. Accounts are loaded by ``accounts.load_selection``."""
    env_file, values = collect_values(overrides, environ)
    return build_settings(overrides, values, env_file=env_file, shared_values=values)


# Where a setting's problem is listed: at its row's place in TABLE.
PLACE = MappingProxyType({row.variable: place for place, row in enumerate(TABLE)})


class _Problems:
    """The problems found in an account's settings, listed in TABLE's order (each at the place
    of the setting it is about, in the order found), so one edit can fix them all."""

    def __init__(self) -> None:
        self.found: list[tuple[int, str]] = []

    def add(self, variable: str | None, problem: str) -> None:
        """Note ``problem``, about ``variable`` (None: before every setting)."""
        self.found.append((-1 if variable is None else PLACE[variable], problem))

    def before(self, variable: str) -> bool:
        """True when a problem was noted at ``variable``'s place or before it."""
        return any(place <= PLACE[variable] for place, _ in self.found)

    def listing(self) -> str:
        """The problems, one ``  - `` line each."""
        ordered = sorted(self.found, key=lambda found: found[0])
        return "\n".join(f"  - {problem}" for _, problem in ordered)


def read_rows(
    rows: tuple[Setting, ...], values: Mapping[str, str], problems: _Problems
) -> dict[str, Any]:
    """The value of each of ``rows`` (by variable) that ``values`` give it, else its default;
    a setting whose text is refused is noted in ``problems`` and has its default."""
    read: dict[str, Any] = {}
    for row in rows:
        try:
            read[row.variable] = row.read(values)
        except InvalidSettingError as exc:
            problems.add(row.variable, f"{row.variable} {exc}")
            read[row.variable] = row.parse(row.default) if row.default else None
    return read


def build_settings(
    overrides: PathOverrides,
    values: Mapping[str, str],
    *,
    env_file: Path,
    shared_values: Mapping[str, str],
    account: str = DEFAULT_ACCOUNT,
    shared_env_file: Path | None = None,
    folder: Path | None = None,
) -> Settings:
    """Validated Settings of ``account`` from its merged raw ``values`` (read from
    ``env_file``); token files default into ``folder`` when given, the log file comes from
    the install's ``shared_values``. ConfigError lists every problem."""
    values = dict(values)
    problems = _Problems()
    for name in sorted(n for n, v in values.items() if "\x00" in v):
        problems.add(None, f"{name} contains a NUL byte.")
        values[name] = ""
    read = read_rows(ACCOUNT_ROWS, values, problems)
    credentials = _credentials(read, problems)
    token_files = _token_files(overrides, values, read, folder)
    if len(set(token_files.values())) < len(token_files):
        names = [s.path_variable for s in SESSIONS.values()]
        problems.add(names[-1], f"{' and '.join(names)} must differ.")
    _check_browser_login(read, credentials, problems)
    settings = Settings(
        **{row.field: read[row.variable] for row in ACCOUNT_ROWS if row.field},
        account=account,
        credentials=MappingProxyType(credentials),
        token_files=token_files,
        base_paths=_base_paths(read),
        telegram=_telegram(read, problems),
        link_telegram=_link_telegram(read),
        env_file=env_file,
        shared_env_file=shared_env_file,
        log_file=log_file_path(overrides, shared_values),
    )
    if problems.found:
        listing = problems.listing()
        if not env_file.exists():
            raise ConfigError(
                f"The settings file {env_file} does not exist, and the environment does not "
                f"hold valid settings either:\n{listing}",
                f"Create it: `{os.path.join(APP_DIR, 'refresh_xts_token.sh')} --setup` copies "
                f".env.example to {env_file} (mode 600); put your broker's settings in it, then "
                "run check-config.",
            )
        shared = f", {shared_env_file}" if shared_env_file else ""
        raise ConfigError(
            f"The settings in {env_file}{shared} (or the environment) are not valid:\n{listing}",
            "Fix them (every setting is described in .env.example), then run check-config.",
        )
    return settings


def _credentials(read: Mapping[str, Any], problems: _Problems) -> dict[str, Credentials]:
    """The configured sessions' app keys and secrets, by session name; a key without its
    secret (or a secret without its key), and no session at all, are problems."""
    credentials = {}
    for session in SESSIONS.values():
        pair = _pair(read, session.key_variable, session.secret_variable, problems)
        if pair is not None:
            credentials[session.name] = Credentials(*pair)
    last = list(SESSIONS.values())[-1].secret_variable
    if not credentials and not problems.before(last):
        first, *others = SESSIONS.values()
        problems.add(
            last,
            f"No session is configured: set {first.key_variable} and {first.secret_variable}"
            + "".join(
                f" (and, for {s.label}, {s.key_variable} and {s.secret_variable})" for s in others
            )
            + ".",
        )
    return credentials


def _check_browser_login(
    read: dict[str, Any], credentials: Mapping[str, Credentials], problems: _Problems
) -> None:
    """A browser login's settings that only make sense together: the interactive key and secret
    (the link carries the key, the exchange sends both), and the login page's default, which
    follows XTS_API_ROOT."""
    if read["XTS_LOGIN"] != BROWSER_LOGIN:
        return
    if INTERACTIVE.name not in credentials and not problems.before("XTS_LOGIN"):
        problems.add(
            "XTS_LOGIN",
            f"XTS_LOGIN=browser needs {INTERACTIVE.key_variable} and "
            f"{INTERACTIVE.secret_variable}: the link to the broker's page carries the key, and "
            "the access token is exchanged with both.",
        )
    if read["XTS_HOSTLOOKUP_URL"]:
        problems.add(
            "XTS_HOSTLOOKUP_URL",
            "XTS_HOSTLOOKUP_URL cannot be used with XTS_LOGIN=browser: the broker's page hands "
            "over a session of XTS_API_ROOT itself.",
        )
    if not read["XTS_LOGIN_URL"] and read["XTS_API_ROOT"]:
        read["XTS_LOGIN_URL"] = f"{read['XTS_API_ROOT']}{INTERACTIVE.default_base}/thirdparty"


def _pair(
    read: Mapping[str, Any], first: str, second: str, problems: _Problems, at: str | None = None
) -> tuple[str, str] | None:
    """The values of the settings ``first`` and ``second`` when both are set; None when neither
    is, or when one is (a problem, listed at ``at``, else at the one missing)."""
    one, other = read[first], read[second]
    if one and other:
        return one, other
    if one or other:
        missing = second if one else first
        problems.add(
            at or missing, f"{missing} is not set, but its partner is: set both or neither."
        )
    return None


def _token_files(
    overrides: PathOverrides,
    values: Mapping[str, str],
    read: Mapping[str, Any],
    folder: Path | None,
) -> Mapping[str, Path]:
    """Every session's token file: the flag (interactive only), the setting, or the default
    (in ``folder``, an account's own, when given)."""
    files = {
        session.name: (
            resolve_path(folder / session.default_file)
            if folder is not None and not values.get(session.path_variable)
            else read[session.path_variable]
        )
        for session in SESSIONS.values()
    }
    if overrides.token_file:
        files[INTERACTIVE.name] = resolve_path(overrides.token_file)
    return MappingProxyType(files)


def _base_paths(read: Mapping[str, Any]) -> Mapping[str, str]:
    """Every session's API path under the root, ``/``-led, from its setting or the default."""
    return MappingProxyType(
        {
            session.name: read[session.base_variable]
            if session.base_variable
            else parse_api_path(session.default_base) or ""
            for session in SESSIONS.values()
        }
    )


TELEGRAM_ROWS = tuple(row for row in TABLE if row.variable.startswith("TELEGRAM_"))


def shared_telegram(values: Mapping[str, str]) -> TelegramSettings | None:
    """The Telegram chat ``values`` (those of .env) set, when they set a valid one: where a run
    reports accounts whose own settings are broken."""
    problems = _Problems()
    telegram = _telegram(read_rows(TELEGRAM_ROWS, values, problems), problems)
    return None if problems.found else telegram


def _telegram(read: Mapping[str, Any], problems: _Problems) -> TelegramSettings | None:
    """Where notifications go; None when Telegram is off (a token without its chat, or a chat
    without its token, is a problem)."""
    pair = _pair(read, "TELEGRAM_TOKEN", "TELEGRAM_CHAT_ID", problems, at="TELEGRAM_API_URL")
    if pair is None or read["TELEGRAM_NOTIFY"] == "off":
        return None
    chat_ids: tuple[str, ...] = read["TELEGRAM_CHAT_ID"]
    return TelegramSettings(pair[0], chat_ids, read["TELEGRAM_NOTIFY"], read["TELEGRAM_API_URL"])


def _link_telegram(read: Mapping[str, Any]) -> TelegramSettings | None:
    """The chats a browser account's sign-in link is sent to: the configured ones, even when
    TELEGRAM_NOTIFY is off (the link must reach the holder); None for a key account."""
    if read["XTS_LOGIN"] != BROWSER_LOGIN or not (
        read["TELEGRAM_TOKEN"] and read["TELEGRAM_CHAT_ID"]
    ):
        return None
    chat_ids: tuple[str, ...] = read["TELEGRAM_CHAT_ID"]
    return TelegramSettings(read["TELEGRAM_TOKEN"], chat_ids, "all", read["TELEGRAM_API_URL"])


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte
        return False


def log_file_path(overrides: PathOverrides, values: Mapping[str, str]) -> Path:
    """The detailed log's path: --log-file, else XTS_LOG_FILE, else the default."""
    if overrides.log_file:
        return resolve_path(overrides.log_file)
    log_file: Path = ROWS["XTS_LOG_FILE"].read(values)
    return log_file


def accounts_dir_path(values: Mapping[str, str]) -> Path:
    """The accounts folder: XTS_ACCOUNTS_DIR, else ``accounts`` beside the program."""
    folder: Path = ROWS["XTS_ACCOUNTS_DIR"].read(values)
    return folder


# -- what every command checks about the settings ----------------------------------------------


def is_loopback_url(url: str) -> bool:
    """True when ``url`` names this machine."""
    import ipaddress  # only runs that check URLs need it

    try:
        host = (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:  # an unbalanced [ or a bad IPv6 literal names no host at all
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is this machine too
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def warn_about_setup(settings: Settings, log: Log) -> None:
    """The warnings every run repeats until the operator fixes them."""
    for env_file in filter(None, (settings.env_file, settings.shared_env_file)):
        if env_file_is_exposed(env_file):
            log.warning("⚠ %s can be read by other users: run `chmod 600 %s`.", env_file, env_file)
    if not settings.verify_ssl and settings.ca_bundle is None:
        log.warning(
            "⚠ TLS certificate checks are OFF (XTS_VERIFY_SSL=false): anyone on the "
            "network path can read your API secret. Prefer XTS_CA_BUNDLE."
        )
    for name, url in settings.urls().items():
        if name == "HEALTHCHECK_URL":
            continue  # a ping carries no secret of the broker's or Telegram's
        if url.lower().startswith("http://") and not is_loopback_url(url):
            log.warning(
                "⚠ %s uses plain http: secrets cross the network unencrypted. Use https.", name
            )


def foreign_token(settings: Settings, stored: StoredToken) -> tuple[str, str] | None:
    """The state and reason when ``stored`` belongs to another user or API root, else None.

    With host lookup the interactive root is whatever the lookup assigned, so it is not compared.
    """
    session = SESSIONS[stored.session]
    if settings.user_id and not is_user(session, stored.user_id, settings.user_id):
        return "wrong-user", (
            f"the stored token is for user {stored.user_id or 'unknown'}, "
            f"not XTS_USER_ID={settings.user_id}"
        )
    assigned_root = session.uses_hostlookup and settings.hostlookup_url
    if not assigned_root and stored.api_root.rstrip("/") != settings.api_root:
        stored_root = without_credentials(stored.api_root) or "an unknown API root"
        return "wrong-root", (
            f"the stored token is for {stored_root}, "
            f"not XTS_API_ROOT={without_credentials(settings.api_root)}"
        )
    return None
