"""What a refresh came to, and every word that tells it.

A run's outcome is told in several places at once: each account's closing line, the summary
line of a run of account files, the Telegram message, and the closing health-check ping (which
carries the run's last line). All of that wording is here, so that changing how a failure is
told changes this module only. A run of the single account of ``.env`` is told without
``[NAME]`` prefixes, by its own closing line and its own message; a run of account files by
each account's closing line, a summary line, and one message naming the accounts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .errors import LocalError, XtsRefreshError
from .sessions import SESSIONS
from .shown_time import shown_time
from .store import StoredToken
from .values import Frozen, plural

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; mypy honours the name
if TYPE_CHECKING:
    from .console import Log
    from .settings import Settings, TelegramSettings

# A failure's text in a Telegram message is cut here (an XTS description can be pages long,
# and Telegram takes 4,096 characters in all); its hint (what to do) is always whole.
MESSAGE_ITEM_CHARACTERS = 500


class AccountResult(Frozen):
    """What one account's refresh came to: its failures, the tokens it saved, its warnings."""

    __slots__ = ("account", "errors", "saved", "warnings")
    account: str
    errors: tuple[XtsRefreshError, ...]
    saved: tuple[StoredToken, ...]
    warnings: tuple[str, ...]

    def __init__(
        self,
        account: str,
        errors: Sequence[XtsRefreshError],
        saved: Sequence[StoredToken],
        warnings: Sequence[str] = (),
    ) -> None:
        self._set(
            account=account, errors=tuple(errors), saved=tuple(saved), warnings=tuple(warnings)
        )

    @property
    def code(self) -> int:
        """The account's exit code: the highest of its failures, 0 without any."""
        return max((e.exit_code for e in self.errors), default=0)

    @property
    def worst(self) -> XtsRefreshError | None:
        """The failure that sets the exit code (the first of the highest), or None."""
        return max(self.errors, key=lambda e: e.exit_code) if self.errors else None

    @property
    def broker(self) -> str | None:
        """The broker the account's failures concern (XtsRefreshError.place), or None."""
        return next((e.broker for e in self.errors if e.broker), None)


def broker_words(broker: str | None) -> str:
    """How a failure line names the broker it concerns: ``broker xts.b.example:3000``, or
    nothing for a failure no broker is concerned in (a disk, a hook, a broken account file)."""
    return f"broker {broker}" if broker else ""


def session_failure_line(title: str, broker: str | None, message: str) -> str:
    """A session's ✗ line, as it happens: ``✗ XTS token (broker H): what failed``."""
    where = f" ({broker_words(broker)})" if broker else ""
    return f"✗ {title}{where}: {message}"


def _one_line_message(failure: XtsRefreshError) -> str:
    """The message of ``failure`` on one line: the first of several (shown above in full)."""
    if "\n" not in failure.message:
        return failure.message
    return failure.message.split("\n", 1)[0].rstrip(":") + " (listed above)."


def failures_text(result: AccountResult, whole: bool = True) -> str:
    """Every failure of ``result`` after the broker it concerns: each message, then each
    distinct hint (what to do). With ``whole``, a single failure keeps its lines (a settings
    file's every problem); otherwise everything is on one line."""
    errors = result.errors
    if len(errors) == 1:
        text = str(errors[0]) if whole else one_line_reason(errors[0])
    else:
        hints = list(dict.fromkeys(e.hint for e in errors if e.hint))
        text = " ".join([*map(_one_line_message, errors), *hints])
    where = broker_words(result.broker)
    return f"{where}: {text}" if where else text


def hook_recursion_error() -> LocalError:
    """The failure of a refresh that XTS_POST_REFRESH_HOOK started (exit 4)."""
    return LocalError(
        "This refresh was started by XTS_POST_REFRESH_HOOK, while the refresh that runs the "
        "hook holds the lock.",
        "A hook must not run the refresher: the tokens are already fresh when it runs.",
    )


def interruption_text(signal_name: str, states: Sequence[str]) -> str:
    """The failure of a run a signal stopped, given what became of each token (session_state)."""
    return f"{signal_name} stopped the refresh after the logins under way: {'; '.join(states)}."


def session_state(label: str, fresh: bool, saved: bool, interrupted: bool) -> str:
    """What became of one session's token in a run a signal stopped: ``fresh`` (no failure),
    ``saved`` (a new token is in its file), ``interrupted`` (its login was never sent)."""
    if fresh and saved:
        return f"the {label} token is fresh (renewed and saved)"
    if fresh:
        return f"the {label} token is fresh (the stored one is still valid)"
    if saved:
        return f"the new {label} token was saved but failed (see above)"
    if interrupted:
        return f"the {label} token was not renewed (no login was sent; its file is unchanged)"
    return f"the {label} token was not renewed (see above)"


HOOK_NOT_RUN_STATE = "the post-refresh hook was not run (restart the bot yourself)"
NOTHING_TO_DO_HINT = "Nothing else needs doing."


# -- the console's closing lines ----------------------------------------------------------------


def closing_text(result: AccountResult) -> str:
    """The account's ✓ or ✗ line, with the exit code and, on failure, the broker, every
    failure (both sessions' when both failed) and what to do."""
    if result.errors:
        return f"✗ Token refresh failed (exit code {result.code}): {failures_text(result)}"
    return "✓ Every configured session holds a fresh token (exit code 0)."


def one_line_reason(failure: XtsRefreshError) -> str:
    """``failure`` on one line: a message of several lines (every problem of a settings file)
    is shown above in full, so the summary keeps its first line and the hint."""
    if "\n" not in failure.message:
        return str(failure)
    first = failure.message.split("\n", 1)[0].rstrip(":")
    return f"{first} (listed above). {failure.hint}".strip()


def summary_text(results: Sequence[AccountResult]) -> str:
    """The last line of a run of account files: every account fresh, or which failed and
    what to do."""
    code = max((r.code for r in results), default=0)
    failed = [r for r in results if r.worst is not None]
    if not failed:
        if len(results) == 1:
            return f"✓ Account {results[0].account} holds fresh tokens (exit code 0)."
        return f"✓ All {len(results)} accounts hold fresh tokens (exit code 0)."
    each = [f"{r.account}: {failures_text(r, whole=False)}" for r in failed]
    # "; " parts a sentence's clauses: a reason's closing period stays only on the last one.
    reasons = "; ".join([*(text.rstrip(".") for text in each[:-1]), each[-1]])
    return (
        f"✗ {len(failed)} of {plural(len(results), 'account')} failed (exit code {code}): {reasons}"
    )


def last_text(results: Sequence[AccountResult], labelled: bool) -> str:
    """The run's last line: with account files the summary (each account had its closing
    line), else the single account's closing line."""
    return summary_text(results) if labelled else closing_text(results[0])


def print_line(log: Log, text: str) -> None:
    """Print a closing or summary line: an error when it is a ✗ line."""
    log.log(logging.ERROR if text.startswith("✗") else logging.INFO, "%s", text)


# -- Telegram -----------------------------------------------------------------------------------


def worth_a_message(telegram: TelegramSettings, results: Sequence[AccountResult]) -> bool:
    """Whether these results call for a Telegram message under TELEGRAM_NOTIFY."""
    trouble = any(r.errors or r.warnings for r in results)
    if telegram.notify == "failure":
        return trouble
    return trouble or any(r.saved for r in results)  # --if-needed that kept all: nothing new


def machine_label(settings: Settings | None) -> str:
    """How notifications name this machine: XTS_NOTIFY_LABEL, else the host name."""
    import socket  # requests has it loaded already: only the name is looked up here

    return (settings.notify_label if settings else None) or socket.gethostname()


def message_item(failure: XtsRefreshError) -> str:
    """``failure`` as a Telegram message tells it: its text cut to MESSAGE_ITEM_CHARACTERS, its
    hint (what to do) always whole."""
    text = failure.message
    if len(text) > MESSAGE_ITEM_CHARACTERS:
        text = text[:MESSAGE_ITEM_CHARACTERS].rstrip() + "… (cut; the log has it whole)"
    separator = "\n" if "\n" in text else " "
    return f"{text}{separator}{failure.hint}".strip()


def token_lines(result: AccountResult) -> list[str]:
    """One line per token ``result`` saved: session, user, expiry (nothing secret)."""
    lines = []
    for stored in result.saved:
        expires = shown_time(stored.expires_at, seconds=False) if stored.expires_at else "unknown"
        label = SESSIONS[stored.session].label
        lines.append(f"{label}: user {stored.user_id}, expires {expires}")
    return lines


def telegram_text(results: Sequence[AccountResult], label: str, labelled: bool) -> str:
    """The Telegram message of a run on the machine ``label``: one block per account with
    account files (accounts_message), else the single account's (single_message)."""
    return accounts_message(results, label) if labelled else single_message(results[0], label)


def single_message(result: AccountResult, host: str) -> str:
    """The Telegram message of a run of the single account (.env alone)."""
    if result.errors:
        where = f": {broker_words(result.broker)}" if result.broker else ""
        lines = [f"❌ XTS token refresh FAILED on {host} (exit code {result.code}){where}"]
        lines += [f"• {message_item(e)}" for e in result.errors]
    else:
        lines = [f"✅ XTS token refreshed on {host}"]
    lines += [f"• {line}" for line in token_lines(result)]
    lines += [f"⚠ {w}" for w in result.warnings]
    return "\n".join(lines)


def accounts_message(results: Sequence[AccountResult], host: str) -> str:
    """The Telegram message of a run of account files: one block per account, failures
    first, each naming the account."""
    failed = [r for r in results if r.errors]
    code = max((r.code for r in results), default=0)
    if len(results) == 1:  # a chat only one account names
        mark, verdict = ("❌", f"FAILED (exit code {code})") if failed else ("✅", "fresh tokens")
        lines = [f"{mark} XTS token refresh on {host}: account {results[0].account}, {verdict}"]
    elif failed:
        lines = [
            f"❌ XTS token refresh on {host}: {len(failed)} of {plural(len(results), 'account')} "
            f"FAILED (exit code {code})"
        ]
    else:
        lines = [f"✅ XTS tokens refreshed on {host}: all {len(results)} accounts"]
    for result in sorted(results, key=lambda r: (-r.code, r.account)):
        where = f" ({broker_words(result.broker)})" if result.broker else ""
        lines.append(f"✓ {result.account}" if not result.errors else f"✗ {result.account}{where}")
        lines += [f"  • {message_item(e)}" for e in result.errors]
        lines += [f"  • {line}" for line in token_lines(result)]
        if not result.errors and not result.saved:
            lines.append("  • still valid, no login needed")
        lines += [f"  ⚠ {w}" for w in result.warnings]
    return "\n".join(lines)
