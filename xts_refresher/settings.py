"""Settings: the table of every variable the program reads, and the validated ``Settings``.

Every variable is a row of one table, ``TABLE``: its name, its default, the function that
turns its text into a value or says what is wrong with it (``parsers.py``), whether it is
secret, and what it means. The rows are declared in the body of ``Settings``, in the table's
order: a row that fills a field of its own is that field (its parser's type is the field's),
and the rows that code combines into one field (the app keys, the token files, Telegram) sit
there as tuples. The validation and the order its problems are listed in, the variables read
from the environment, the secrets kept from the hook and ``check-config --help`` all follow
from the table, and a test holds ``.env.example`` to it.

``accounts.py`` reads the values (flag > process environment > ``.env`` > default; every
relative path from the folder that holds ``xts_token_refresh.py``, since cron starts jobs in
``$HOME``) and lists every problem at once, each naming its variable, so one edit fixes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

# typing: requests imports it, so a refresh pays nothing more for it here.
from typing import Generic, TypeVar

from .env_files import env_file_is_exposed
from .parsers import (
    choice_parser,
    duration_parser,
    parse_api_path,
    parse_boolean,
    parse_chat_ids,
    parse_display_zone,
    parse_file_path,
    parse_group,
    parse_listen_address,
    parse_path,
    parse_readable_file,
    parse_text,
    required,
    return_url_parser,
    seconds_parser,
    url_parser,
    whole_parser,
)
from .paths import APP_DIR, DEFAULT_ACCOUNTS_DIR
from .sessions import INTERACTIVE, MARKETDATA, SESSIONS, Session
from .shown_time import DEFAULT_DISPLAY_TZ, DISPLAY_TZ_VARIABLE
from .store import is_user
from .urls import broker_of, is_loopback_url, url_credentials, without_credentials
from .values import Frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING, spelled as everywhere else; mypy honours the name
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Literal, overload

    from .console import Log
    from .store import StoredToken

T = TypeVar("T")

DEFAULT_ENV_FILE = ".env"
DEFAULT_LOG_FILE = "xts_token_refresh.log"
DEFAULT_TELEGRAM_API_URL = "https://api.telegram.org"
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


# -- the table ----------------------------------------------------------------------------------


class Setting(Frozen, Generic[T]):
    """One row of the table of settings: the variable, its default (its text, as .env.example
    would write it; "" for none, None when it must be set), the parser of its text, whether it
    is a secret, what it means, and the Settings field it fills (None: code combines it with
    others, or it is not an account's setting at all).

    Declared in the body of ``Settings`` as ``name = Setting(...)``, a row is the field
    ``name``, of type T: what its parser returns, None included when the default is "".
    """

    __slots__ = ("default", "field", "meaning", "parse", "secret", "stored", "variable")
    variable: str
    default: str | None
    parse: Callable[[str], Any]
    secret: bool
    meaning: str
    field: str | None
    stored: Any  # the slot of Settings that holds the field's value (set_name)

    if TYPE_CHECKING:  # the overloads type a row; at run time they would cost every refresh

        @overload
        def __init__(
            self: Setting[T | None],
            variable: str,
            default: Literal[""],
            parse: Callable[[str], T | None],
            meaning: str,
            *,
            secret: bool = False,
        ) -> None: ...

        @overload
        def __init__(
            self: Setting[T],
            variable: str,
            default: str | None,
            parse: Callable[[str], T | None],
            meaning: str,
            *,
            secret: bool = False,
        ) -> None: ...

    def __init__(
        self,
        variable: str,
        default: str | None,
        parse: Callable[[str], Any],
        meaning: str,
        *,
        secret: bool = False,
    ) -> None:
        # Not _set(**fields): a row each way costs ~8 k instructions more, times every row.
        put = object.__setattr__
        put(self, "variable", variable)
        put(self, "default", default)
        put(self, "parse", parse)
        put(self, "secret", secret)
        put(self, "meaning", meaning)
        put(self, "field", None)
        put(self, "stored", None)

    def __set_name__(self, owner: type[Any], name: str) -> None:
        if name.startswith("_"):
            raise TypeError(f"{self.variable}: rows that fill no field of their own go in a tuple")
        object.__setattr__(self, "field", name)
        object.__setattr__(self, "stored", vars(owner)[stored_slot(name)])

    if TYPE_CHECKING:

        @overload
        def __get__(self, instance: None, owner: type[Any] | None = None) -> Setting[T]: ...

        @overload
        def __get__(self, instance: object, owner: type[Any] | None = None) -> T: ...

    def __get__(self, instance: object, owner: type[Any] | None = None) -> Setting[T] | T:
        if instance is None:
            return self
        value: T = self.stored.__get__(instance, owner)
        return value

    def __set__(self, instance: object, value: T) -> None:
        # Reached only through object.__setattr__ (Frozen._set); Frozen refuses plain assignment.
        self.stored.__set__(instance, value)

    def read(self, values: Mapping[str, str]) -> T:
        """The value ``values`` give this setting, or its default; InvalidSettingError when the
        text given is refused."""
        value: T = self.parse(values.get(self.variable, ""))
        if value is None and self.default:
            default: T = self.parse(self.default)
            return default
        return value


def stored_slot(field: str) -> str:
    """The slot of Settings that holds the value of the row ``field``."""
    return f"_{field}"


def stored_slots(namespace: Mapping[str, object]) -> tuple[str, ...]:
    """The slots of the rows a class body declares (``namespace``)."""
    return tuple(stored_slot(name) for name, v in namespace.items() if isinstance(v, Setting))


def rows_of(namespace: Mapping[str, object]) -> tuple[Setting[Any], ...]:
    """The rows a class body declares, in its order: each Setting, and each of a tuple of them."""
    rows: list[Setting[Any]] = []
    for value in namespace.values():
        if isinstance(value, Setting):
            rows.append(value)
        elif isinstance(value, tuple) and value and all(isinstance(v, Setting) for v in value):
            rows += value
    return tuple(rows)


def _session_rows(session: Session) -> tuple[Setting[str | None], ...]:
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


def _token_file_row(session: Session) -> Setting[Path]:
    return Setting(
        session.path_variable,
        session.default_file,
        parse_path,
        f"{session.label} token file (an account's: accounts/NAME/{session.default_file})",
    )


# The rows that code combines into the fields below them in Settings (or that are the
# install's, not an account's); the rest of the table is in Settings' body.
KEY_ROWS = tuple(row for session in SESSIONS.values() for row in _session_rows(session))
TELEGRAM_ROWS = (
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
)
TOKEN_FILE_ROWS = tuple(_token_file_row(session) for session in SESSIONS.values())
MARKETDATA_PATH = Setting(
    "XTS_MARKETDATA_PATH",
    MARKETDATA.default_base,
    parse_api_path,
    "market-data API path (/apibinarymarketdata for binary-feed brokers)",
)
# Read from .env and the environment only, never from an account file: the install's.
LOG_FILE = Setting(
    "XTS_LOG_FILE",
    DEFAULT_LOG_FILE,
    parse_path,
    "detailed log, one for every account (--log-file overrides it)",
)
ACCOUNTS_DIR = Setting(
    "XTS_ACCOUNTS_DIR",
    DEFAULT_ACCOUNTS_DIR,
    parse_path,
    "folder of the account files NAME.env (never set in an account file)",
)
DISPLAY_TZ = Setting(
    DISPLAY_TZ_VARIABLE,
    DEFAULT_DISPLAY_TZ,
    parse_display_zone,
    "time zone of the times shown to people (console, Telegram, status)",
)
INSTALL_ROWS = (LOG_FILE, ACCOUNTS_DIR, DISPLAY_TZ)
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

    The body declares the table, in the order the problems of a run's settings are listed:
    each ``name = Setting(...)`` is the field ``name``; the tuples of rows are combined into
    the fields of COMBINED_FIELDS (typed below them). ``credentials`` holds the configured
    sessions only, by name; ``token_files`` and ``base_paths`` hold every session of the table
    (the hook is told both files).
    """

    api_root = Setting(
        "XTS_API_ROOT",
        None,
        required(url_parser(base=True, no_user=True), "XTS_API_ROOT=https://ttblaze.iifl.com"),
        "your broker's XTS API root: scheme, host, optional port and path prefix",
    )
    _key_rows = KEY_ROWS
    ca_bundle = Setting(
        "XTS_CA_BUNDLE",
        "",
        parse_readable_file,
        "CA bundle (PEM) for a certificate chain the system does not trust",
    )
    _telegram_rows = TELEGRAM_ROWS
    _token_file_rows = TOKEN_FILE_ROWS
    _base_path_rows = (MARKETDATA_PATH,)
    source = Setting("XTS_API_SOURCE", "WEBAPI", parse_text, "login source sent to XTS")
    user_id = Setting(
        "XTS_USER_ID",
        "",
        parse_text,
        "your XTS user ID: a login that answers for another user is refused",
    )
    verify_ssl = Setting("XTS_VERIFY_SSL", "true", parse_boolean, "TLS certificate checks")
    timeout = Setting(
        "XTS_TIMEOUT", "30", seconds_parser(maximum=3600.0), "seconds one HTTP request may take"
    )
    retries = Setting(
        "XTS_RETRIES", "4", whole_parser(MAX_RETRIES), "retries after a transient failure"
    )
    deadline = Setting(
        "XTS_DEADLINE",
        f"{DEFAULT_DEADLINE_SECONDS:g}",
        seconds_parser(maximum=MAX_DEADLINE_SECONDS),
        "seconds the whole run may take",
    )
    retry_backoff = Setting(
        "XTS_RETRY_BACKOFF",
        f"{DEFAULT_RETRY_BACKOFF_SECONDS:g}",
        seconds_parser(minimum=0.0, maximum=60.0),
        "first wait between retries, in seconds (doubles each time)",
    )
    hostlookup_url = Setting(
        "XTS_HOSTLOOKUP_URL", "", url_parser(), "host-lookup URL of clustered deployments"
    )
    post_refresh_hook = Setting(
        "XTS_POST_REFRESH_HOOK",
        "",
        parse_text,
        "shell command run after a refresh that saved a new token",
    )
    healthcheck_url = Setting(
        "HEALTHCHECK_URL",
        "",
        url_parser(base=True),
        "dead man's switch pinged when a run starts and ends",
    )
    notify_label = Setting(
        "XTS_NOTIFY_LABEL",
        "",
        parse_text,
        "how Telegram messages name this machine (default: its host name)",
    )
    metrics_file = Setting(
        "XTS_METRICS_FILE",
        "",
        parse_file_path,
        "Prometheus text file for node_exporter's textfile collector",
    )
    login = Setting(
        "XTS_LOGIN",
        KEY_LOGIN,
        choice_parser(KEY_LOGIN, BROWSER_LOGIN),
        "key: log in with key and secret; browser: the holder signs in on the broker page",
    )
    login_url = Setting(
        "XTS_LOGIN_URL",
        "",
        url_parser(base=True, no_user=True),
        "the broker's login page (default: XTS_API_ROOT/interactive/thirdparty)",
    )
    return_url = Setting(
        "XTS_RETURN_URL",
        DEFAULT_RETURN_URL,
        return_url_parser(DEFAULT_RETURN_URL),
        "where the broker's page sends the browser with the session",
    )
    callback_listen = Setting(
        "XTS_CALLBACK_LISTEN",
        "",
        parse_listen_address,
        "host:port the refresher listens on while it waits (default: the return URL's)",
    )
    login_wait = Setting(
        "XTS_LOGIN_WAIT",
        "0",
        duration_parser(MAX_LOGIN_WAIT_SECONDS),
        "how long a refresh waits for the holder to sign in (30m); 0: it does not wait",
    )
    access_token_command = Setting(
        "XTS_ACCESS_TOKEN_COMMAND",
        "",
        parse_text,
        "command that signs in without a person and prints the session (within 120 s)",
    )
    token_group = Setting(
        "XTS_TOKEN_GROUP",
        "",
        parse_group,
        "group whose members may read the token files (0640; account folders 0750)",
    )
    _install_rows = INSTALL_ROWS
    # New rows go above this line; each row's value sits in a slot of its own (Setting.stored).
    __slots__ = (*COMBINED_FIELDS, *stored_slots(locals()))
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
        missing = set(FIELDS) - set(fields)
        if missing:
            raise TypeError(f"Settings needs {sorted(missing)}")
        self._set(**fields)

    def _fields(self) -> tuple[str, ...]:
        return FIELDS

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


TABLE = rows_of(vars(Settings))
# Settings' fields, by name: the table's and the combined ones.
FIELDS = tuple(sorted([*(row.field for row in TABLE if row.field), *COMBINED_FIELDS]))
ROWS = MappingProxyType({row.variable: row for row in TABLE})
# Every variable the program reads; the process environment is consulted for these only.
KNOWN_VARIABLES = tuple(ROWS)
SECRET_VARIABLES = tuple(row.variable for row in TABLE if row.secret)
INSTALL_VARIABLES = tuple(row.variable for row in INSTALL_ROWS)
ACCOUNT_ROWS = tuple(row for row in TABLE if row.variable not in INSTALL_VARIABLES)


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


def shown_path(path: Path) -> str:
    """``path`` as advice shows it: relative to the program's folder when it lies inside it
    (``accounts/acc03.env``, ``.env``), else absolute."""
    try:
        return path.relative_to(APP_DIR).as_posix()
    except ValueError:
        return str(path)


def lock_beside(token_file: Path) -> Path:
    """The lock of ``token_file``: ``<token file>.lock``, beside it."""
    return token_file.with_name(token_file.name + ".lock")


# -- what every command checks about the settings ----------------------------------------------


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
