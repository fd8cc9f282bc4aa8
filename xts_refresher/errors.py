"""One exception hierarchy for the whole program.

Every class carries the exit code the contract gives it (see README.md, "Exit codes"), and a
hint that tells the operator what to do next, so ``main`` maps any failure to its code and its
final ``✗`` line in one place. This module imports nothing heavy: ``load_token`` uses it.
"""

from __future__ import annotations

# Where a hint or a meaning names the settings file of the account concerned: replaced by that
# file (``accounts/NAME.env``, ``.env`` or the --env-file path) once the failure is placed.
SETTINGS_FILE = "{settings_file}"
# The file a failure that was never placed names: the single account's.
DEFAULT_SETTINGS_FILE = ".env"


def naming_file(text: str, settings_file: str | None) -> str:
    """``text`` with SETTINGS_FILE replaced by ``settings_file`` (DEFAULT_SETTINGS_FILE when
    None)."""
    return text.replace(SETTINGS_FILE, settings_file or DEFAULT_SETTINGS_FILE)


class XtsRefreshError(Exception):
    """Base of every failure the program reports; ``exit_code`` is what the process exits with.

    A failure of an account's refresh is placed (``place``): it then knows the account's
    broker (``broker``, ``host[:port]`` of its API root) and the settings file its hint names.
    """

    exit_code: int = 1
    default_hint: str = ""
    # What the exit code means, for --help and the cron wrapper's closing line.
    meaning: str = ""
    # Whether the failure is the broker's to explain (a refused login, XTS failing): only
    # then does it name the broker.
    concerns_broker: bool = False
    broker: str | None = None
    settings_file: str | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self._hint = self.default_hint if hint is None else hint

    @property
    def hint(self) -> str:
        """What to do next, naming the account's settings file (SETTINGS_FILE)."""
        return naming_file(self._hint, self.settings_file)

    def place(self, broker: str | None, settings_file: str) -> None:
        """Say which broker the account logs in to (kept when the failure concerns it) and
        which file holds the account's settings; the first placing holds."""
        if self.settings_file is None:
            self.broker = broker if self.concerns_broker else None
            self.settings_file = settings_file

    def __str__(self) -> str:
        separator = "\n" if "\n" in self.message else " "
        return f"{self.message}{separator}{self.hint}".strip()


class LoginRefusedError(XtsRefreshError):
    """XTS refused the login (credentials, app key, wrong user): a person must act. Exit 1."""

    exit_code = 1
    concerns_broker = True
    default_hint = (
        f"Check the API key and secret in {SETTINGS_FILE} (and XTS_USER_ID), then run again."
    )
    meaning = f"XTS refused the login: check the API key, secret and XTS_USER_ID in {SETTINGS_FILE}"


class HolderLoginError(LoginRefusedError):
    """A browser account got no usable session: nobody signed in on the broker's page in time,
    its token command failed, or what was handed over cannot be used. Exit 1: a person must
    act (the hint says which command signs in)."""


class ConfigError(XtsRefreshError):
    """A setting, a flag or a dependency is missing or malformed. Exit 2."""

    exit_code = 2
    meaning = "usage, settings or a missing dependency: see the message above"
    default_hint = (
        "Fix the setting (see .env.example), then run `xts_token_refresh.py check-config`."
    )


class XtsUnavailableError(XtsRefreshError):
    """XTS could not be reached or answered with something other than XTS JSON. Exit 3."""

    exit_code = 3
    concerns_broker = True
    meaning = (
        "XTS unreachable or failing after the retries: check the network and the broker "
        f"(XTS_API_ROOT in {SETTINGS_FILE})"
    )
    default_hint = (
        "XTS did not answer properly; check the network and the broker's status (XTS_API_ROOT "
        f"in {SETTINGS_FILE}), then run again."
    )


class TokenRejectedError(XtsUnavailableError):
    """A freshly saved token failed its authenticated check (``--verify``). Exit 3."""

    default_hint = (
        "The broker rejected the new token; run the refresh again, then contact the broker."
    )


class ClockSkewError(XtsUnavailableError):
    """XTS handed out a token that is expired, or nearly, by this machine's clock: it was saved,
    but is not called fresh. Exit 3."""

    default_hint = (
        "Check this machine's clock (`timedatectl`: turn on NTP time sync), then run the "
        "refresh again; a broker whose clock is wrong is the other possibility."
    )


class NotificationUnavailableError(XtsRefreshError):
    """Telegram or the health check did not answer, or answered 429 or 5xx: worth another try.

    A refresh logs it and keeps its own exit code; ``check-config`` exits 3 with it.
    ``retry_after`` is the wait the server asked for, in seconds, if it said.
    """

    exit_code = 3
    default_hint = "Check the network (a proxy or a firewall in the way), then run check-config."

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotificationRefusedError(XtsRefreshError):
    """Telegram or the health check refused (a bad bot token, an unknown chat or check):
    another try cannot help, a setting must change (the hint names it).

    A refresh logs it and keeps its own exit code; ``check-config`` exits 2 with it.
    """

    exit_code = 2


class LocalError(XtsRefreshError):
    """Something on this machine failed: saving a token, or waiting for the run lock. Exit 4."""

    exit_code = 4
    meaning = "local failure: a token could not be saved, or another run held the lock"
    default_hint = "Check the disk, the folder's permissions and the path, then run again."


class TokenSaveError(LocalError):
    """A token could not be written; the previous token file is left as it was."""


class LockTimeoutError(LocalError):
    """Another run held the lock longer than this run's deadline."""

    default_hint = "Wait for the other run to finish, or stop it if it is stuck, then run again."


class UnexpectedError(XtsRefreshError):
    """A failure no check foresaw (a bug). Exit 4; the traceback is in the log file."""

    exit_code = 4
    default_hint = "Please report it, with the log file (xts_token_refresh.log)."


class HookFailedError(XtsRefreshError):
    """Tokens were saved, but XTS_POST_REFRESH_HOOK failed or timed out. Exit 5."""

    exit_code = 5
    meaning = "tokens saved, but the post-refresh hook failed"
    default_hint = (
        "The tokens are saved; fix the hook command (XTS_POST_REFRESH_HOOK) and run it by hand."
    )


class InterruptedRunError(XtsRefreshError):
    """SIGINT (Ctrl-C) stopped the refresh: the logins under way finished and their tokens were
    saved, and none started after it. Exit 130, as a shell reports a job stopped by SIGINT."""

    exit_code = 130
    meaning = "interrupted by SIGINT (Ctrl-C): the logins under way were saved, none started after"
    default_hint = "Run the refresh again to renew the tokens that were not renewed."


class TerminatedRunError(InterruptedRunError):
    """SIGTERM (systemd stopping the job, a shutdown) stopped the refresh, as SIGINT does.
    Exit 143, as a shell reports a job stopped by SIGTERM."""

    exit_code = 143
    meaning = "stopped by SIGTERM: the logins under way were saved, none started after"


class TokenUnavailableError(XtsRefreshError):
    """A stored token cannot be used: its file is missing, corrupt, or the token has expired.

    ``state`` is ``"missing"``, ``"corrupt"`` or ``"expired"``; ``path`` is the file read.
    This is the one exception :func:`xts_token_refresh.load_token` raises.
    """

    exit_code = 1
    default_hint = "Run `xts_token_refresh.py` to log in again."

    def __init__(self, message: str, *, state: str, path: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.state = state
        self.path = path


SUCCESS_MEANING = "every configured session holds a fresh token"
# status exits 1 when a token will not do: no login was refused, so exit 1 means this instead.
STATUS_NOT_USABLE_MEANING = "a token is missing, expired or not accepted: run a refresh"
# A code no class carries: a crash, or a signal other than SIGINT and SIGTERM.
UNKNOWN_MEANING = "unexpected failure: see the messages above and xts_token_refresh.log"


# How --help names the settings file of "the account" in what an exit code means.
ANY_SETTINGS_FILE = "the account's settings file (.env, or accounts/NAME.env)"


def exit_code_meanings(settings_file: str = ANY_SETTINGS_FILE) -> dict[int, str]:
    """Each exit code the program uses and what it means, from the classes that carry them,
    naming ``settings_file`` where a setting is to be checked."""
    meanings = {0: SUCCESS_MEANING}
    pending: list[type[XtsRefreshError]] = [XtsRefreshError]
    while pending:
        cls = pending.pop(0)
        if cls.meaning:
            meanings.setdefault(cls.exit_code, naming_file(cls.meaning, settings_file))
        pending += cls.__subclasses__()
    return dict(sorted(meanings.items()))


def broker_concerned(code: int, command: str) -> bool:
    """Whether exit code ``code`` of ``command`` tells of a failure the broker is concerned in
    (a refused login, XTS failing), so that the closing line names the broker."""
    if code == 1 and command == "status":
        return False
    return code in (LoginRefusedError.exit_code, XtsUnavailableError.exit_code)


def exit_meaning(code: int, command: str, settings_file: str = ANY_SETTINGS_FILE) -> str:
    """What exit code ``code`` of ``command`` (a command's name, "refresh" by default) means,
    for the closing line of the cron wrapper, naming ``settings_file`` where a setting is to
    be checked."""
    if code == 1 and command == "status":
        return STATUS_NOT_USABLE_MEANING
    return exit_code_meanings(settings_file).get(code, UNKNOWN_MEANING)
