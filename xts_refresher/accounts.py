"""Accounts: one install serving every broker login a trader holds, and the reading of each
account's settings: its values read by the rows of the table of settings, combined and
validated into ``Settings``, every problem listed at once in the table's order.

An account is a file ``NAME.env`` in the accounts folder (``accounts`` beside the program, or
``XTS_ACCOUNTS_DIR``); ``.env`` then holds only what the accounts share. With no account file,
``.env`` is the single account ``default`` and everything is as if accounts did not exist.
Precedence for an account: flag > its own file > the process environment > ``.env`` > default;
its token files are set by its own file only, else they go into its own folder
(``accounts/NAME/``), so no two accounts share one by accident.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from . import paths
from .env_files import read_env_file
from .errors import ConfigError
from .parsers import InvalidSettingError, parse_api_path, resolve_path
from .paths import APP_DIR, DEFAULT_ACCOUNT, DEFAULT_ACCOUNTS_DIR, account_file, account_folder
from .sessions import INTERACTIVE, SESSIONS
from .settings import (
    ACCOUNT_ROWS,
    ACCOUNTS_DIR,
    BROWSER_LOGIN,
    DEFAULT_ENV_FILE,
    DISPLAY_TZ,
    KNOWN_VARIABLES,
    LOG_FILE,
    TABLE,
    TELEGRAM_ROWS,
    Credentials,
    PathOverrides,
    Setting,
    Settings,
    TelegramSettings,
)
from .values import Frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING, spelled as everywhere else; mypy honours the name
if TYPE_CHECKING:
    from typing import Any


class Install(Frozen):
    """One install's accounts: the shared settings file and its values, and the account names.

    With no ``NAME.env`` in the accounts folder, ``.env`` is the single account ``default``
    (``has_account_files`` False) and everything is as if accounts did not exist.
    """

    __slots__ = ("accounts_dir", "env_file", "has_account_files", "names", "values")
    _hidden = ("values",)  # every raw setting, secrets included
    env_file: Path
    values: Mapping[str, str]
    accounts_dir: Path
    names: tuple[str, ...]
    has_account_files: bool

    def __init__(
        self,
        env_file: Path,
        values: Mapping[str, str],
        accounts_dir: Path,
        names: tuple[str, ...],
    ) -> None:
        self._set(
            env_file=env_file,
            values=MappingProxyType(dict(values)),
            accounts_dir=accounts_dir,
            names=names or (DEFAULT_ACCOUNT,),
            has_account_files=bool(names),
        )

    def file_of(self, name: str) -> Path:
        """The settings file of account ``name``: ``NAME.env`` in the accounts folder."""
        return Path(account_file(str(self.accounts_dir), name))

    def readable_values(self, name: str) -> dict[str, str]:
        """The variables of account ``name``'s own file as far as it can be read ({} when it
        cannot): all a broken account's token files and health check are known by."""
        with contextlib.suppress(ConfigError):
            return read_env_file(self.file_of(name))
        return {}

    def select(self, wanted: Sequence[str]) -> tuple[str, ...]:
        """The accounts ``wanted`` names (all of them when it names none), each once;
        ConfigError for a name that is not an account, listing those that are."""
        if not wanted:
            return self.names
        unknown = [name for name in wanted if name not in self.names]
        if unknown:
            where = (
                f"account files are NAME.env in {self.accounts_dir}"
                if self.has_account_files
                else f"there are no account files in {self.accounts_dir}, so .env is the only "
                f"account, {DEFAULT_ACCOUNT!r}"
            )
            raise ConfigError(
                f"Unknown account {', '.join(map(repr, unknown))}: the accounts are "
                f"{', '.join(self.names)} ({where}).",
                "Name one of them with --account, or add its NAME.env file.",
            )
        return tuple(dict.fromkeys(wanted))


def find_install(overrides: PathOverrides, environ: Mapping[str, str]) -> Install:
    """The install's shared settings and its accounts; ConfigError for an unreadable .env.

    An account file whose name no account may have is an account all the same (named as
    shown_name shows it), which fails alone: see misnamed_account_error.
    """
    return install_of(*collect_values(overrides, environ))


def install_of(env_file: Path, values: Mapping[str, str]) -> Install:
    """The install whose shared settings file ``env_file`` (with the environment) gives
    ``values``, with the accounts its accounts folder holds."""
    accounts_dir = accounts_dir_path(values)
    names = dict.fromkeys(map(shown_name, paths.account_names(str(accounts_dir))))
    return Install(env_file, values, accounts_dir, tuple(names))


def shown_name(name: str) -> str:
    """``name`` with every character that is not printable escaped (a newline as ``\\n``): an
    account file's name is shown at the start of lines, which it must never split."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in name)


def misnamed_account_error(install: Install, name: str) -> ConfigError:
    """The failure of the account file ``name`` (as shown_name shows it), whose name no
    account may have: that account fails alone, as one whose settings are bad."""
    return ConfigError(
        f"The account file {install.accounts_dir / (name + paths.ACCOUNT_FILE_SUFFIX)} has a "
        "name no account may have: letters, digits, -, _ and . only, at most "
        f"{paths.MAX_ACCOUNT_NAME} characters, not starting with a dot.",
        f"Rename it (or move it out of {install.accounts_dir} if it is a copy), then run "
        "check-config.",
    )


def check_distinct_files(accounts: Sequence[Settings]) -> None:
    """ConfigError when two accounts would write the same token file, also through a symlink
    or a hard link (naming both)."""
    from .outputs import WrittenPath, collisions

    token_files = [
        WrittenPath(path, settings.account, True)
        for settings in accounts
        for path in settings.token_files.values()
    ]
    for problem in collisions(token_files):
        later, earlier = problem.roles
        first, second = problem.paths
        shown = first if first == second else f"{first} and {second} (one file)"
        raise ConfigError(
            f"The accounts {earlier} and {later} would both write {shown}: each account needs "
            "token files of its own.",
            "Remove XTS_TOKEN_FILE/XTS_MARKETDATA_TOKEN_FILE from one of their files "
            "(each then uses its own folder), then run check-config.",
        )


class Selection(Frozen):
    """The accounts a command works on: their settings, and those whose settings are broken.

    ``labelled`` is True with account files: every line of an account then starts ``[NAME]``.
    One broken account never stops the others, so its ConfigError is kept beside them.
    """

    __slots__ = (
        "accounts",
        "broken",
        "install",
        "labelled",
        "shared_telegram",
        "unselected",
        "warnings",
    )
    install: Install
    accounts: tuple[Settings, ...]
    broken: tuple[tuple[str, ConfigError], ...]
    labelled: bool
    shared_telegram: TelegramSettings | None
    unselected: tuple[Settings, ...]
    warnings: tuple[str, ...]

    def __init__(
        self,
        install: Install,
        accounts: tuple[Settings, ...],
        broken: tuple[tuple[str, ConfigError], ...],
        unselected: tuple[Settings, ...] = (),
    ) -> None:
        self._set(
            unselected=unselected,
            install=install,
            accounts=accounts,
            broken=broken,
            labelled=install.has_account_files,
            shared_telegram=shared_telegram(install.values) if broken else None,
            warnings=tuple(inherited_credentials_warnings(install)),
        )

    def secrets(self) -> list[str]:
        """Every secret of every selected account, for redaction."""
        return [secret for settings in self.accounts for secret in settings.secrets()]


def single_selection(settings: Settings) -> Selection:
    """``settings`` alone, selected as the single account of a ``.env`` is (no prefixes): the
    demo's account, which has no install around it."""
    install = Install(settings.env_file, {}, settings.env_file.parent / DEFAULT_ACCOUNTS_DIR, ())
    return Selection(install, (settings,), ())


def load_selection(
    overrides: PathOverrides, environ: Mapping[str, str], wanted: Sequence[str] = ()
) -> Selection:
    """The settings of the accounts ``wanted`` names (every account when none), validated.

    Raises ConfigError (exit 2, before any traffic) for an unknown name, ``--token-file`` with
    several accounts, two accounts on one token file, and, with the single account of ``.env``,
    for its invalid settings; an account file's own problems (and a name no account may
    have) are kept in ``broken``.
    """
    install = find_install(overrides, environ)
    names = install.select(wanted)
    if overrides.token_file and len(names) > 1:
        raise ConfigError(
            f"--token-file names one token file, but {len(names)} accounts are selected "
            f"({', '.join(names)}).",
            "Select one of them with --account NAME, or leave --token-file out.",
        )
    accounts: list[Settings] = []
    broken: list[tuple[str, ConfigError]] = []
    for name in names:
        if not paths.is_account_name(name):
            broken.append((name, misnamed_account_error(install, name)))
            continue
        try:
            accounts.append(account_settings(install, name, overrides))
        except ConfigError as exc:
            if not install.has_account_files:
                raise
            broken.append((name, exc))
    others = []  # an account not selected may still share a file with one that is
    unflagged = PathOverrides(overrides.env_file, None, overrides.log_file)  # --token-file: ours
    for name in filter(paths.is_account_name, install.names):
        if name not in names:
            with contextlib.suppress(ConfigError):
                others.append(account_settings(install, name, unflagged))
    check_distinct_files([*accounts, *others])
    return Selection(install, tuple(accounts), tuple(broken), tuple(others))


def inherited_credentials_warnings(install: Install) -> list[str]:
    """With account files, the session keys that ``.env`` or the environment set: every
    account whose own file does not set them logs in with them, which is rarely meant."""
    if not install.has_account_files:
        return []
    shared = [
        name
        for session in SESSIONS.values()
        for name in (session.key_variable, session.secret_variable)
        if install.values.get(name)
    ]
    if not shared:
        return []
    return [
        f"{install.env_file} (or the environment) sets {', '.join(shared)}: every account "
        "whose own file does not set them logs in with them. Put API keys in the account "
        "files only (two accounts on one market-data key end each other's sessions)."
    ]


def account_settings(install: Install, name: str, overrides: PathOverrides) -> Settings:
    """Validated settings of account ``name`` of ``install``; ConfigError lists its problems."""
    if not install.has_account_files:
        return build_settings(
            overrides, install.values, env_file=install.env_file, shared_values=install.values
        )
    own_file = install.file_of(name)
    values = {
        key: value
        for key, value in install.values.items()
        if key not in {session.path_variable for session in SESSIONS.values()}
    }
    values.update(read_env_file(own_file))
    return build_settings(
        overrides,
        values,
        env_file=own_file,
        shared_values=install.values,
        account=name,
        shared_env_file=install.env_file,
        folder=Path(account_folder(str(install.accounts_dir), name)),
    )


# -- one account's settings: its raw values read by the table's rows, combined, every problem
# listed at once -------------------------------------------------------------------------------


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
    ConfigError lists every problem. Accounts are loaded by ``load_selection``."""
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
    rows: tuple[Setting[Any], ...], values: Mapping[str, str], problems: _Problems
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


def log_file_path(overrides: PathOverrides, values: Mapping[str, str]) -> Path:
    """The detailed log's path: --log-file, else XTS_LOG_FILE, else the default."""
    if overrides.log_file:
        return resolve_path(overrides.log_file)
    return LOG_FILE.read(values)


def display_zone_name(values: Mapping[str, str]) -> str:
    """The zone times are shown in: XTS_DISPLAY_TZ, else Asia/Kolkata; ConfigError (naming
    the setting) for a zone this machine does not know."""
    try:
        return DISPLAY_TZ.read(values)
    except InvalidSettingError as exc:
        raise ConfigError(
            f"{DISPLAY_TZ.variable} {exc}",
            f"Set {DISPLAY_TZ.variable} in the settings file (.env, not an account's) to a "
            "zone such as Europe/London, or remove it for Asia/Kolkata; then run check-config.",
        ) from None


def accounts_dir_path(values: Mapping[str, str]) -> Path:
    """The accounts folder: XTS_ACCOUNTS_DIR, else ``accounts`` beside the program."""
    return ACCOUNTS_DIR.read(values)
