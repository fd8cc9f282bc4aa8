"""What the mutation run mutates, and which tests it runs against each file's mutants.

A target is one file and the test files that cover it: ``tests/test_units.py`` first (about
two seconds), then the end-to-end files that drive that part of the program against the
simulator. Selections are whole test files, so a new test in them counts without an edit
here; the few tests of ``LEFT_OUT`` never run in the mutation run. A selection should take
well under a minute and a half unmutated. The run orders the selected tests fastest first
(by the baseline's durations), so a kill usually comes within seconds; a survivor costs the
whole selection.

Never in a selection: ``tests/test_quality.py`` and ``tests/test_shell.py`` (ruff, mypy and
shellcheck "kill" a mutant for its style, not its behaviour), ``tests/test_unprivileged.py``
(the machine-wide user ``xtstest``), ``tests/test_mutation.py`` (this run's own generator).
"""

from __future__ import annotations

from typing import NamedTuple

UNITS = "tests/test_units.py"


class Target(NamedTuple):
    """A file to mutate and the test files that cover it."""

    name: str
    path: str
    tests: tuple[str, ...]

    def selection(self) -> tuple[str, ...]:
        """The test files to run: the unit tier first, then the target's own."""
        return (UNITS, *self.tests)


def _tests(path: str, *names: str) -> tuple[str, ...]:
    """Node ID prefixes of these tests of ``path``."""
    return tuple(f"tests/{path}::{name}" for name in names)


# Left out of every selection (``--deselect``, a node ID prefix each):
LEFT_OUT = (
    # A budget waited out (20 s of a hanging Telegram or XTS): time bounds, which other tests
    # of the same files cover in a few seconds.
    *_tests("test_accounts.py", "test_a_chat_whose_bot_api_hangs_costs_the_other_chat"),
    *_tests("test_alerts.py", "test_a_telegram_that_never_answers_costs_the_run_at_most"),
    *_tests(
        "test_status.py",
        "test_status_verify_when_xts_cannot_be_asked_says_not_checked_quickly[time-out]",
    ),
    # Root's real crontab and the cron daemon (machine-wide; the daemon test waits for cron's
    # next minute).
    *_tests(
        "test_cron.py",
        "test_install_replaces_only_its_own_line",
        "test_install_and_uninstall_without_a_crontab",
        "test_account_lines_coexist_in_the_crontab",
        "test_cron_install_account_lines_coexist",
        "test_install_without_a_cron_daemon_warns_and_still_installs",
        "test_install_with_the_cron_daemon_running_does_not_warn_of_it",
        "test_install_recognises_other_cron_daemons",
        "test_cron_daemon_runs_the_wrapper",
    ),
)
DESELECT = tuple(f"--deselect={node}" for node in LEFT_OUT)

ACCOUNTS = "tests/test_accounts.py"
ALERTS = "tests/test_alerts.py"
CHECK_CONFIG = "tests/test_check_config.py"
CLIENT = "tests/test_client.py"
CONSOLE = "tests/test_console.py"
CORE = "tests/test_core.py"
CRON = "tests/test_cron.py"
FAULTS = "tests/test_faults.py"
HOOKS = "tests/test_hooks.py"
LOADER = "tests/test_load_token.py"
LOGROTATE = "tests/test_logrotate.py"
METRICS = "tests/test_metrics.py"
PIPES = "tests/test_pipes.py"
PROPERTIES = "tests/test_properties.py"
READING = "tests/test_reading_files.py"
REFRESH = "tests/test_refresh.py"
REFRESH_OPTIONS = "tests/test_refresh_options.py"
SERVER_TEXT = "tests/test_server_text.py"
SETTINGS = "tests/test_settings.py"
SIGNALS = "tests/test_signals.py"
STATUS = "tests/test_status.py"
STORE = "tests/test_store.py"
SYSTEMD = "tests/test_systemd.py"
URL_CREDENTIALS = "tests/test_url_credentials.py"
WRAPPER = "tests/test_wrapper.py"
WRITTEN = "tests/test_written_paths.py"
PACKAGE = "xts_refresher"

TARGETS = (
    Target("accounts", f"{PACKAGE}/accounts.py", (ACCOUNTS, LOADER, SETTINGS, READING)),
    Target(
        "account_refresh",
        f"{PACKAGE}/account_refresh.py",
        (CORE, REFRESH, REFRESH_OPTIONS, FAULTS, CLIENT, ALERTS, STORE, SIGNALS, HOOKS),
    ),
    Target("refresh", f"{PACKAGE}/refresh.py", (CORE, ACCOUNTS, SIGNALS, HOOKS, ALERTS, STORE)),
    Target("outcome", f"{PACKAGE}/outcome.py", (CORE, ACCOUNTS, ALERTS, SIGNALS, REFRESH)),
    Target("interrupt", f"{PACKAGE}/interrupt.py", (SIGNALS,)),
    Target("hook", f"{PACKAGE}/hook.py", (HOOKS,)),
    Target(
        "alerts",
        f"{PACKAGE}/alerts.py",
        (ALERTS, CHECK_CONFIG, HOOKS, REFRESH_OPTIONS, SERVER_TEXT, URL_CREDENTIALS),
    ),
    Target("metrics", f"{PACKAGE}/metrics.py", (METRICS, PROPERTIES, WRITTEN)),
    Target("systemd", f"{PACKAGE}/systemd.py", (SYSTEMD,)),
    Target("cron", f"{PACKAGE}/cron.py", (CRON, CORE)),
    Target("schedule", f"{PACKAGE}/schedule.py", (CRON, SYSTEMD)),
    Target("status", f"{PACKAGE}/status.py", (STATUS, CORE, SETTINGS)),
    Target("check_config", f"{PACKAGE}/check_config.py", (CHECK_CONFIG, ACCOUNTS)),
    Target(
        "settings",
        f"{PACKAGE}/settings.py",
        (SETTINGS, CORE, REFRESH, REFRESH_OPTIONS, READING, URL_CREDENTIALS),
    ),
    Target("parsers", f"{PACKAGE}/parsers.py", (SETTINGS, PROPERTIES, READING)),
    Target("urls", f"{PACKAGE}/urls.py", (URL_CREDENTIALS, SETTINGS, CHECK_CONFIG)),
    Target(
        "env_files",
        f"{PACKAGE}/env_files.py",
        (SETTINGS, READING, ACCOUNTS, REFRESH, PROPERTIES),
    ),
    Target("store", f"{PACKAGE}/store.py", (STORE, CORE, READING, REFRESH, FAULTS)),
    Target("locks", f"{PACKAGE}/locks.py", (STORE, FAULTS, SIGNALS, HOOKS, ACCOUNTS)),
    Target("outputs", f"{PACKAGE}/outputs.py", (WRITTEN, CORE, METRICS)),
    Target("client", f"{PACKAGE}/client.py", (CORE, CLIENT, REFRESH, FAULTS, SERVER_TEXT)),
    Target("answers", f"{PACKAGE}/answers.py", (CLIENT, FAULTS, SERVER_TEXT, PROPERTIES, REFRESH)),
    Target(
        "console",
        f"{PACKAGE}/console.py",
        (CONSOLE, PIPES, CORE, HOOKS, LOGROTATE, ACCOUNTS, SERVER_TEXT, URL_CREDENTIALS, WRITTEN),
    ),
    Target("timebox", f"{PACKAGE}/timebox.py", (REFRESH, CLIENT, ALERTS)),
    Target("paths", f"{PACKAGE}/paths.py", (LOADER, SETTINGS, PROPERTIES, CORE, WRITTEN)),
    Target("wrapper", "refresh_xts_token.sh", (WRAPPER, CORE, PIPES, LOGROTATE)),
)

# --whole-suite: every test but the style checks, the machine-wide user's and LEFT_OUT.
WHOLE_SUITE = (
    UNITS,
    "tests",
    "--ignore=tests/test_quality.py",
    "--ignore=tests/test_shell.py",
    "--ignore=tests/test_unprivileged.py",
    "--ignore=tests/test_mutation.py",
)
