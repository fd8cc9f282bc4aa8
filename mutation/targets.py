"""What the mutation run mutates, and which tests it runs against each file's mutants.

A target is one file and the test selection that covers it: ``tests/test_units.py`` first
(about a second, and the most likely to kill), then the end-to-end files that drive that
part of the program against the simulator. Each selection is whole test files (so a new test
counts without an edit here), minus tests that touch machine-wide state or only wait out a
budget; a selection should take well under a minute unmutated. The run orders the selected
tests fastest first (by the baseline's durations), so a kill usually comes within seconds;
a survivor costs the whole selection.

Never in a selection: ``tests/test_quality.py`` and ``tests/test_shell.py`` (ruff, mypy and
shellcheck "kill" a mutant for its style, not its behaviour), ``tests/test_unprivileged.py``
(the machine-wide user ``xtstest``).
"""

from __future__ import annotations

from typing import NamedTuple

UNITS = "tests/test_units.py"


class Target(NamedTuple):
    """A file to mutate and the pytest arguments of the tests that cover it."""

    name: str
    path: str
    tests: tuple[str, ...]

    def selection(self) -> tuple[str, ...]:
        """The pytest arguments: the unit tier first, then the target's own."""
        return (UNITS, *self.tests)


def _skip(path: str, *names: str) -> tuple[str, ...]:
    """``--deselect`` arguments for these tests of ``path`` (a name is a node ID prefix)."""
    return tuple(f"--deselect=tests/{path}::{name}" for name in names)


# Tests whose cost is a budget waited out (20 s of a hanging Telegram, a hanging XTS): they
# test time bounds, which other tests of the same file cover more cheaply.
SLOW_ACCOUNTS = _skip("test_accounts.py", "test_a_chat_whose_bot_api_hangs_costs_the_other_chat")
SLOW_DELIVERY = _skip(
    "test_delivery.py", "test_a_telegram_that_never_answers_costs_the_run_at_most_its_budget"
)
SLOW_STATUS = _skip(
    "test_status.py", "test_status_verify_when_xts_cannot_be_asked_says_not_checked_quickly[time"
)
# Tests of cron that change root's real crontab or start the cron daemon (the daemon test
# waits for cron's next minute): machine-wide, and slow.
CRONTAB = _skip(
    "test_cron.py",
    "test_install_replaces_only_its_own_line",
    "test_install_and_uninstall_without_a_crontab",
    "test_account_lines_coexist_in_the_crontab",
    "test_cron_install_account_lines_coexist",
    "test_install_without_a_cron_daemon_warns_and_still_installs",
    "test_install_with_the_cron_daemon_running_does_not_warn_of_it",
    "test_install_recognises_other_cron_daemons",
    "test_cron_daemon_runs_the_wrapper",
)

REFRESH = "tests/test_refresh.py"
FAULTS = "tests/test_faults.py"
CORE = "tests/test_core.py"
OPERATIONS = "tests/test_operations.py"
LOCKS = "tests/test_locks.py"
SIGNALS = "tests/test_signals.py"
PACKAGE = "xts_refresher"

TARGETS = (
    Target(
        "accounts",
        f"{PACKAGE}/accounts.py",
        ("tests/test_accounts.py", "tests/test_load_token_accounts.py", *SLOW_ACCOUNTS),
    ),
    Target(
        "refresh",
        f"{PACKAGE}/refresh.py",
        (CORE, REFRESH, FAULTS, OPERATIONS, LOCKS, SIGNALS, "tests/test_hooks.py"),
    ),
    Target("interrupt", f"{PACKAGE}/interrupt.py", (SIGNALS,)),
    Target("hook", f"{PACKAGE}/hook.py", ("tests/test_hooks.py",)),
    Target(
        "delivery",
        f"{PACKAGE}/delivery.py",
        ("tests/test_delivery.py", "tests/test_hooks.py", OPERATIONS, *SLOW_DELIVERY),
    ),
    Target(
        "metrics", f"{PACKAGE}/metrics.py", ("tests/test_metrics.py", "tests/test_properties.py")
    ),
    Target("systemd", f"{PACKAGE}/systemd.py", ("tests/test_systemd.py",)),
    Target("cron", f"{PACKAGE}/cron.py", ("tests/test_cron.py", CORE, *CRONTAB)),
    Target("status", f"{PACKAGE}/status.py", ("tests/test_status.py", CORE, *SLOW_STATUS)),
    Target("settings", f"{PACKAGE}/settings.py", (CORE, REFRESH, "tests/test_hardening.py")),
    Target(
        "store",
        f"{PACKAGE}/store.py",
        ("tests/test_blind_spots.py", "tests/test_crash.py", CORE, REFRESH, FAULTS, LOCKS),
    ),
    Target("client", f"{PACKAGE}/client.py", (CORE, REFRESH, FAULTS)),
    Target(
        "notify",
        f"{PACKAGE}/notify.py",
        (
            "tests/test_blind_spots.py",
            "tests/test_pipes.py",
            CORE,
            REFRESH,
            "tests/test_logrotate.py",
        ),
    ),
    Target("timebox", f"{PACKAGE}/timebox.py", (REFRESH, "tests/test_delivery.py", *SLOW_DELIVERY)),
    Target(
        "paths",
        f"{PACKAGE}/paths.py",
        ("tests/test_hardening.py", "tests/test_properties.py", CORE, REFRESH),
    ),
    Target(
        "wrapper",
        "refresh_xts_token.sh",
        ("tests/test_wrapper.py", CORE, "tests/test_pipes.py", "tests/test_logrotate.py"),
    ),
)

# --whole-suite: every test but the style checks and the machine-wide user's.
WHOLE_SUITE = (
    UNITS,
    "tests",
    "--ignore=tests/test_quality.py",
    "--ignore=tests/test_shell.py",
    "--ignore=tests/test_unprivileged.py",
)
