"""Accounts: one install serving every broker login a trader holds.

An account is a file ``NAME.env`` in the accounts folder (``accounts`` beside the program, or
``XTS_ACCOUNTS_DIR``); ``.env`` then holds only what the accounts share. With no account file,
``.env`` is the single account ``default`` and everything is as if accounts did not exist.
Precedence for an account: flag > its own file > the process environment > ``.env`` > default;
its token files are set by its own file only, else they go into its own folder
(``accounts/NAME/``), so no two accounts share one by accident.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from . import paths
from .env_files import read_env_file
from .errors import ConfigError
from .paths import DEFAULT_ACCOUNT, DEFAULT_ACCOUNTS_DIR, account_file, account_folder
from .sessions import SESSIONS
from .settings import (
    PathOverrides,
    Settings,
    TelegramSettings,
    accounts_dir_path,
    build_settings,
    collect_values,
    shared_telegram,
)
from .values import Frozen


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
