"""The planted bugs of the mutation run: each one exact edit of the current code.

A mutant names the file, an exact snippet of its code (found exactly once, or the run stops:
that keeps this list honest as the code changes), its replacement, what bug it plants, and
the few tests that ought to notice. ``tests/test_units.py`` goes first in every selection
(about a second); the end-to-end node IDs after it are the one or two places where the
behaviour is tested against the simulator. Keep each selection well under a minute.
"""

from __future__ import annotations

from dataclasses import dataclass

UNITS = "tests/test_units.py"


@dataclass(frozen=True)
class Mutant:
    """One planted bug: ``old`` (exactly once in ``path``) becomes ``new``."""

    name: str
    path: str
    old: str
    new: str
    bug: str
    tests: tuple[str, ...]
    timeout: float = 240.0

    def selection(self) -> tuple[str, ...]:
        """The pytest arguments of this mutant's tests: the unit tier, then its own."""
        return (UNITS, *self.tests) if UNITS not in self.tests else self.tests


def _node(path: str, *names: str) -> tuple[str, ...]:
    return tuple(f"tests/{path}::{name}" for name in names)


STORE = "xts_refresher/store.py"
CLIENT = "xts_refresher/client.py"
SETTINGS = "xts_refresher/settings.py"
ACCOUNTS = "xts_refresher/accounts.py"
REFRESH = "xts_refresher/refresh.py"
CRON = "xts_refresher/cron.py"
NOTIFY = "xts_refresher/notify.py"
TIMEBOX = "xts_refresher/timebox.py"
DELIVERY = "xts_refresher/delivery.py"

FSYNC_ORDER = _node(
    "test_blind_spots.py", "test_a_token_save_writes_fsyncs_renames_then_fsyncs_the_folder"
)

# The whole body of store.write_atomically, and the naive in-place writer it becomes.
WRITE_ATOMICALLY_BODY = """\
    folder = path.parent
    tmp = _temporary_beside(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except OSError as exc:
        raise TokenSaveError(f"Cannot create a file in {folder}: {exc.strerror}; {kept}.") from None
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if path.is_dir() and not path.is_symlink():
            raise IsADirectoryError(errno.EISDIR, "it is a folder")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        reason = exc.strerror or str(exc)
        raise TokenSaveError(f"Cannot save the token to {path}: {reason}; {kept}.") from None
    _fsync_folder(folder)
"""
WRITE_IN_PLACE_BODY = """\
    folder = path.parent
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise TokenSaveError(f"Cannot save the token to {path}: {reason}; {kept}.") from None
    _fsync_folder(folder)
"""

MUTANTS: tuple[Mutant, ...] = (
    # -- store: the atomic write ----------------------------------------------------------------
    Mutant(
        "store-tmp-fsync-dropped",
        STORE,
        "            os.fsync(fd)\n        finally:\n            os.close(fd)\n",
        "        finally:\n            os.close(fd)\n",
        "the temporary token file is renamed over the old one without an fsync",
        FSYNC_ORDER,
    ),
    Mutant(
        "store-folder-fsync-dropped",
        STORE,
        '        raise TokenSaveError(f"Cannot save the token to {path}: {reason}; {kept}.") '
        "from None\n    _fsync_folder(folder)\n",
        '        raise TokenSaveError(f"Cannot save the token to {path}: {reason}; {kept}.") '
        "from None\n",
        "the folder is not fsynced after the rename (the rename may not survive a power cut)",
        FSYNC_ORDER,
    ),
    Mutant(
        "store-mode-0644",
        STORE,
        "            os.fchmod(fd, mode)\n",
        "            os.fchmod(fd, 0o644)\n",
        "token files readable by every user of the machine",
        _node(
            "test_refresh.py",
            "test_refresh_writes_the_contract_token_file",
            "test_token_file_is_0600_even_under_umask_000",
        ),
    ),
    Mutant(
        "store-tmp-open-without-excl-nofollow",
        STORE,
        "        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)\n",
        "        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)\n",
        "the temporary file is opened without O_EXCL|O_NOFOLLOW: a file or symlink planted at "
        "its name is written through",
        (
            *_node("test_refresh.py", "test_a_symlink_at_the_token_path_is_replaced_not_followed"),
            *_node(
                "test_faults.py", "test_temporary_files_of_a_killed_run_are_removed_by_the_next_run"
            ),
        ),
    ),
    Mutant(
        "store-rename-follows-symlink",
        STORE,
        "        os.replace(tmp, path)\n",
        "        os.replace(tmp, os.path.realpath(path))\n",
        "a symlink at the token path is followed: its target is overwritten",
        _node("test_refresh.py", "test_a_symlink_at_the_token_path_is_replaced_not_followed"),
    ),
    Mutant(
        "store-write-in-place",
        STORE,
        WRITE_ATOMICALLY_BODY,
        WRITE_IN_PLACE_BODY,
        "the token file is truncated and rewritten in place (no temporary file, no rename): a "
        "reader or a crash can see half a file, a full disk loses the old token",
        (
            *_node("test_faults.py", "test_fault_disk_full"),
            *_node(
                "test_refresh.py",
                "test_a_failed_save_is_exit_4_and_keeps_the_previous_file",
                "test_concurrent_runs_take_turns_and_readers_never_see_a_partial_file",
            ),
        ),
    ),
    Mutant(
        "store-stale-cleanup-too-broad",
        STORE,
        '    prefix = f".{path.name}."\n',
        '    prefix = "."\n',
        "the clean-up of killed runs' temporary files deletes every hidden .tmp file in the "
        "token folder, not only this token file's",
        _node("test_faults.py", "test_temporary_files_of_a_killed_run_are_removed_by_the_next_run"),
    ),
    # -- store: the run lock --------------------------------------------------------------------
    Mutant(
        "store-lock-shared",
        STORE,
        "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)",
        "fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)",
        "the run lock is a shared lock: two refreshes log in at the same time",
        (
            *_node(
                "test_blind_spots.py",
                "test_simultaneous_refreshes_of_one_token_file_never_have_two_logins_in_flight",
                "test_a_refresh_holding_the_lock_blocks_even_a_shared_locker",
            ),
        ),
    ),
    Mutant(
        "store-lock-no-wait",
        STORE,
        "        give_up = time.monotonic() + max(wait_seconds, 0.0)\n",
        "        give_up = time.monotonic()\n",
        "a run that finds the lock held gives up at once instead of waiting for its turn",
        _node(
            "test_refresh.py",
            "test_a_held_lock_makes_the_next_run_wait_then_exit_4",
            "test_concurrent_runs_take_turns_and_readers_never_see_a_partial_file",
        ),
    ),
    Mutant(
        "store-lock-wait-past-deadline",
        STORE,
        "                if time.monotonic() >= give_up:\n",
        "                if time.monotonic() >= give_up + 30:\n",
        "the wait for a held lock outlasts XTS_DEADLINE by half a minute",
        _node("test_refresh.py", "test_a_held_lock_makes_the_next_run_wait_then_exit_4"),
    ),
    Mutant(
        "store-writability-probe-dropped",
        STORE,
        "    probe = _temporary_beside(path)\n    try:\n        os.close(",
        "    probe = _temporary_beside(path)\n    return\n    try:\n        os.close(",
        "the writability check before the login only looks for a folder at the path (no probe "
        "file), so an unwritable folder is found after the login",
        _node(
            "test_hardening.py",
            "test_an_append_only_folder_is_found_before_any_login",
            "test_an_immutable_marketdata_file_gets_no_login_and_the_other_session_still_refreshes",
        ),
    ),
    # -- client: retries, backoff, the deadline -------------------------------------------------
    Mutant(
        "client-retry-sleeps-past-deadline",
        CLIENT,
        "            if wait >= self.deadline.remaining():\n",
        "            if self.deadline.remaining() <= 0:\n",
        "a retry wait longer than the time left is slept anyway (only an exhausted deadline "
        "stops the retries)",
        (
            *_node(
                "test_blind_spots.py", "test_a_wait_longer_than_the_deadline_ends_the_run_at_once"
            ),
            *_node("test_refresh.py", "test_deadline_stops_the_retries"),
        ),
    ),
    Mutant(
        "client-attempt-not-bounded-by-deadline",
        CLIENT,
        "        budget = min(self.settings.timeout, self.deadline.remaining())\n",
        "        budget = self.settings.timeout\n",
        "each attempt gets the full XTS_TIMEOUT even when the deadline is nearer",
        _node("test_faults.py", "test_deadline_bounds_the_whole_run_whatever_the_server_does"),
    ),
    Mutant(
        "client-exchange-not-timeboxed",
        CLIENT,
        "            status, answer_headers, raw = run_within(\n"
        "                budget, lambda: self._exchange(request, budget)\n"
        "            )\n",
        "            status, answer_headers, raw = self._exchange(request, budget)\n",
        "only each socket read is bounded by XTS_TIMEOUT: a server trickling its answer holds "
        "the run without limit",
        (
            *_node("test_refresh.py", "test_a_trickling_body_is_bounded_by_the_timeout"),
            *_node("test_faults.py", "test_fault[body-trickles-past-timeout]"),
        ),
    ),
    Mutant(
        "client-one-attempt-fewer",
        CLIENT,
        "        attempts = self.settings.retries + 1\n",
        "        attempts = self.settings.retries\n",
        "XTS_RETRIES counts the first attempt: one retry fewer than configured",
        _node(
            "test_refresh.py",
            "test_transient_failures_are_retried_then_exit_3",
            "test_a_transient_failure_then_success_is_exit_0",
        ),
    ),
    Mutant(
        "timebox-backoff-not-exponential",
        TIMEBOX,
        "first_wait * 2.0 ** (attempt - 1))",
        "first_wait)",
        "the backoff does not double between attempts",
        _node(
            "test_refresh.py",
            "test_transient_failures_are_retried_then_exit_3",
            "test_retry_after_is_respected",
            "test_deadline_stops_the_retries",
        ),
    ),
    Mutant(
        "timebox-retry-after-ignored",
        TIMEBOX,
        "        wait = max(wait, min(retry_after, MAX_BACKOFF_SECONDS))\n",
        "        pass\n",
        "a Retry-After header is ignored (the broker is hammered while it rate-limits us)",
        _node("test_refresh.py", "test_retry_after_is_respected"),
    ),
    Mutant(
        "client-refusal-retried",
        CLIENT,
        "    if status >= 500 or status == 429:\n",
        "    if status >= 400:\n",
        "an HTTP 4xx answer (XTS's login refusal) is retried like a 5xx",
        _node("test_refresh.py", "test_refused_credentials_exit_1_without_retry"),
    ),
    Mutant(
        "client-rate-limit-200-not-retried",
        CLIENT,
        "                if _is_rate_limit(body) and not rate_limit_is_answer:\n",
        "                if False:\n",
        "an e-apirl rate-limit body with HTTP 200 at login is taken for a refusal (exit 1), "
        "not retried",
        _node(
            "test_refresh.py",
            "test_transient_failures_are_retried_then_exit_3[rate-limit-code-200]",
        ),
    ),
    Mutant(
        "client-rate-limit-429-not-an-answer",
        CLIENT,
        "    if status == 429 and rate_limit_is_answer and _is_rate_limit(body):\n",
        "    if status != 429 and rate_limit_is_answer and _is_rate_limit(body):\n",
        "a token check answered HTTP 429 with XTS's rate-limit body is retried, not counted as "
        "the token accepted",
        _node("test_status.py", "test_status_verify_counts_an_http_429_rate_limit_as_accepted"),
    ),
    Mutant(
        "client-body-cap-raised",
        CLIENT,
        "MAX_BODY_BYTES = 4 * 1024 * 1024\n",
        "MAX_BODY_BYTES = 64 * 1024 * 1024\n",
        "answers up to 64 MiB are read into memory",
        _node("test_faults.py", "test_fault[ten-megabyte-body]"),
    ),
    Mutant(
        "client-ca-bundle-ignored",
        CLIENT,
        "            str(settings.ca_bundle) if settings.ca_bundle is not None else "
        "settings.verify_ssl\n",
        "            settings.verify_ssl\n",
        "XTS_CA_BUNDLE is not passed to requests: a broker with a private CA cannot be reached",
        _node(
            "test_faults.py",
            "test_fault_tls_trusted_through_ca_bundle",
            "test_fault_tls_ca_bundle_beats_requests_ca_bundle",
        ),
    ),
    # -- settings and accounts ------------------------------------------------------------------
    Mutant(
        "settings-env-file-beats-environment",
        SETTINGS,
        "        if environ.get(name):\n            values[name] = environ[name]\n",
        "        if environ.get(name):\n            values.setdefault(name, environ[name])\n",
        "the .env file wins over the process environment",
        _node("test_refresh.py", "test_flag_beats_environment_beats_env_file"),
    ),
    Mutant(
        "settings-setting-beats-token-file-flag",
        SETTINGS,
        "    if overrides.token_file:\n",
        "    if overrides.token_file and not values.get(INTERACTIVE.path_variable):\n",
        "XTS_TOKEN_FILE wins over --token-file",
        _node("test_refresh.py", "test_flag_beats_environment_beats_env_file"),
    ),
    Mutant(
        "settings-lenient-booleans",
        SETTINGS,
        "        if value in TRUE_WORDS:\n"
        "            return True\n"
        "        if value in FALSE_WORDS:\n"
        "            return False\n"
        '        self.problems.append(f"{name} must be true or false (or 1/0, yes/no), not '
        '{value!r}.")\n'
        "        return default\n",
        "        return value in TRUE_WORDS\n",
        "any word that is not true/1/yes means false (XTS_VERIFY_SSL=ture turns TLS checks off)",
        _node(
            "test_refresh.py",
            "test_strict_booleans_accept_any_case_and_warn_when_off",
            "test_bad_settings_exit_2_before_any_traffic",
        ),
    ),
    Mutant(
        "settings-verify-ssl-off-by-default",
        SETTINGS,
        '        verify_ssl=check.boolean("XTS_VERIFY_SSL", True),\n',
        '        verify_ssl=check.boolean("XTS_VERIFY_SSL", False),\n',
        "TLS certificates are not checked unless XTS_VERIFY_SSL=true",
        _node("test_faults.py", "test_fault_tls_untrusted_certificate"),
    ),
    Mutant(
        "settings-placeholder-exact-match",
        SETTINGS,
        "        if value.lower().startswith(PLACEHOLDER_PREFIXES):\n",
        "        if value.lower() in PLACEHOLDER_PREFIXES:\n",
        "a placeholder from .env.example (your_api_key) is sent to the broker as a key",
        _node("test_refresh.py", "test_bad_settings_exit_2_before_any_traffic"),
    ),
    Mutant(
        "settings-same-file-for-both-sessions",
        SETTINGS,
        "    if len(set(token_files.values())) < len(token_files):\n",
        "    if len(set(token_files.values())) < len(token_files) - 1:\n",
        "both sessions may write one token file (each login overwrites the other's token)",
        (),
    ),
    Mutant(
        "settings-account-files-default-beside-script",
        SETTINGS,
        "(folder or APP_DIR) / session.default_file",
        "APP_DIR / session.default_file",
        "accounts' token files default to the program's folder, not accounts/NAME/",
        _node("test_accounts.py", "test_two_accounts_on_two_brokers_are_refreshed_and_reported"),
    ),
    Mutant(
        "settings-one-lock-for-all-accounts",
        SETTINGS,
        '        return token_file.with_name(token_file.name + ".lock")\n',
        '        return APP_DIR / "xts_token_refresh.lock"\n',
        "one run lock for the whole install: an account whose broker hangs holds up the others",
        _node("test_accounts.py", "test_a_hanging_broker_does_not_delay_the_other_account"),
    ),
    Mutant(
        "accounts-shared-token-file-inherited",
        ACCOUNTS,
        "        if key not in {session.path_variable for session in SESSIONS.values()}\n",
        "        if key\n",
        "XTS_TOKEN_FILE in the shared .env applies to every account",
        _node("test_accounts.py", "test_two_accounts_on_two_brokers_are_refreshed_and_reported"),
    ),
    Mutant(
        "accounts-distinct-check-interactive-only",
        ACCOUNTS,
        "        for path in settings.token_files.values():\n",
        "        for path in list(settings.token_files.values())[:1]:\n",
        "two accounts on one market-data token file are not refused",
        _node(
            "test_accounts.py",
            "test_two_accounts_with_the_same_token_file_are_exit_2_before_any_login",
        ),
    ),
    Mutant(
        "accounts-one-broken-stops-all",
        ACCOUNTS,
        "            if not install.has_account_files:\n                raise\n"
        "            broken.append((name, exc))\n",
        "            raise\n",
        "one account file with invalid settings stops every account",
        _node("test_accounts.py", "test_an_invalid_account_file_fails_that_account_only"),
    ),
    # -- the refresh command --------------------------------------------------------------------
    Mutant(
        "refresh-writability-not-checked",
        REFRESH,
        "                check_writable(self.settings.token_path(session), session)\n",
        "                pass\n",
        "no writability check before the logins: a market-data login is sent for a token "
        "that cannot be saved (killing the live session)",
        (
            *_node("test_faults.py", "test_fault_folder_at_token_path"),
            *_node(
                "test_hardening.py",
                "test_an_immutable_marketdata_file_gets_no_login_and_the_other_session_still_refreshes",
            ),
        ),
    ),
    Mutant(
        "refresh-renew-window-ignored",
        REFRESH,
        "    if left <= renew_before:\n",
        "    if left <= 0:\n",
        "--if-needed keeps a token until it has expired (--renew-before ignored)",
        (
            *_node(
                "test_operations.py",
                "test_if_needed_logs_in_when_the_stored_token_will_not_do",
                "test_renew_before_sets_the_window",
            ),
        ),
    ),
    Mutant(
        "refresh-if-needed-verify-skipped",
        REFRESH,
        "        if reason is None and kept is not None and self.options.verify:\n",
        "        if reason is None and kept is not None and not self.options.verify:\n",
        "--if-needed --verify does not put the kept token to XTS (a token the broker dropped "
        "is kept)",
        _node(
            "test_hardening.py",
            "test_if_needed_verify_renews_a_token_xts_rejects_and_keeps_the_one_it_accepts",
        ),
    ),
    Mutant(
        "refresh-new-tokens-not-verified",
        REFRESH,
        "        if self.options.verify:\n            outcomes = [self._verify(client, o) for o in "
        "outcomes]\n",
        "",
        "--verify does not check the new tokens",
        _node(
            "test_operations.py",
            "test_verify_checks_each_new_token_after_the_logins",
            "test_verify_exits_3_and_notifies_when_xts_rejects_the_new_token",
        ),
    ),
    Mutant(
        "refresh-account-code-first-not-highest",
        REFRESH,
        "        return max((e.exit_code for e in self.errors), default=0)\n",
        "        return self.errors[0].exit_code if self.errors else 0\n",
        "an account's exit code is its first failure's, not the highest",
        (
            *_node(
                "test_hooks.py", "test_a_failing_hook_is_exit_5_with_the_tokens_saved_and_notified"
            ),
            *_node(
                "test_operations.py",
                "test_verify_exits_3_and_notifies_when_xts_rejects_the_new_token",
            ),
        ),
    ),
    Mutant(
        "refresh-run-code-lowest-account",
        REFRESH,
        "    return max((r.code for r in ordered), default=0)\n",
        "    return min((r.code for r in ordered), default=0)\n",
        "with several accounts the run exits with the lowest account's code (0 if any worked)",
        _node("test_accounts.py", "test_one_broker_down_fails_only_its_account"),
    ),
    Mutant(
        "refresh-hook-without-new-token",
        REFRESH,
        "if o.saved is not None and o.error is None]\n",
        "if o.error is None]\n",
        "the post-refresh hook runs though no token was saved (--if-needed kept them all)",
        _node("test_hooks.py", "test_hook_is_skipped_when_if_needed_keeps_every_token"),
    ),
    Mutant(
        "refresh-stale-temporaries-kept",
        REFRESH,
        "                remove_stale_temporaries(self.settings.token_path(session))\n",
        "                pass\n",
        "temporary files of killed runs are never removed",
        _node("test_faults.py", "test_temporary_files_of_a_killed_run_are_removed_by_the_next_run"),
    ),
    Mutant(
        "refresh-lock-wait-is-timeout",
        REFRESH,
        "        with RunLock(self.settings.lock_file, self.deadline.remaining(), announce):\n",
        "        with RunLock(self.settings.lock_file, self.settings.timeout, announce):\n",
        "the wait for the lock is XTS_TIMEOUT (one request's limit), not what is left of "
        "XTS_DEADLINE",
        (
            *_node(
                "test_refresh.py",
                "test_a_held_lock_makes_the_next_run_wait_then_exit_4",
                "test_concurrent_runs_take_turns_and_readers_never_see_a_partial_file",
            ),
            *_node(
                "test_hardening.py", "test_a_run_waiting_for_the_lock_says_so_and_names_the_holder"
            ),
        ),
    ),
    # -- cron -----------------------------------------------------------------------------------
    Mutant(
        "cron-ist-fallback-sign",
        CRON,
        '        "Asia/Kolkata": timezone(timedelta(hours=5, minutes=30)),\n',
        '        "Asia/Kolkata": timezone(-timedelta(hours=5, minutes=30)),\n',
        "the built-in Asia/Kolkata offset (no zoneinfo data) is UTC-05:30",
        _node(
            "test_blind_spots.py",
            "test_cron_print_without_zoneinfo_data_uses_correct_built_in_offsets",
        ),
    ),
    Mutant(
        "cron-day-shift-backwards",
        CRON,
        "    moved = sorted({(day + shift) % 7 for day in range(span[0], span[1] + 1)})\n",
        "    moved = sorted({(day - shift) % 7 for day in range(span[0], span[1] + 1)})\n",
        "a conversion across midnight moves the weekdays the wrong way",
        _node("test_cron.py", "test_cron_print_west_of_utc_moves_to_the_previous_evening"),
    ),
    Mutant(
        "cron-percent-not-escaped",
        CRON,
        '        return shlex.quote(str(word)).replace("%", "\\\\%")\n',
        "        return shlex.quote(str(word))\n",
        "a % in a path reaches cron unescaped (cron cuts the command there)",
        (),
    ),
    Mutant(
        "cron-marker-percent-not-escaped",
        CRON,
        '    marker = f"{MARKER}{app_dir}".replace("%", "\\\\%")\n',
        '    marker = f"{MARKER}{app_dir}"\n',
        "a % in the folder name reaches cron unescaped in the marker comment",
        _node("test_cron.py", "test_an_account_marker_escapes_percent_in_the_folder_name"),
    ),
    Mutant(
        "cron-marker-matched-anywhere",
        CRON,
        "    return line.rstrip().endswith(own_marker(app_dir, accounts))\n",
        "    return own_marker(app_dir, accounts) in line\n",
        "the line for all accounts also claims the lines for some accounts (install and "
        "uninstall remove them)",
        _node(
            "test_cron.py",
            "test_each_line_is_owned_only_for_its_own_folder_and_accounts",
            "test_account_lines_coexist_in_the_crontab",
        ),
    ),
    Mutant(
        "settings-plain-reader-lone-cr-in-a-line",
        SETTINGS,
        'text.replace("\\r\\n", "\\n").replace("\\r", "\\n").split("\\n")',
        'text.split("\\n")',
        "a lone carriage return does not end a line for the plain .env reader, as it does for "
        "python-dotenv: the two read the same file differently",
        ("tests/test_properties.py::test_the_plain_env_reader_reads_what_python_dotenv_reads",),
    ),
    Mutant(
        "settings-plain-reader-takes-quotes",
        SETTINGS,
        """NOT_IN_PLAIN_VALUES = frozenset(" \\t'\\"\\\\#")""",
        """NOT_IN_PLAIN_VALUES = frozenset(" \\t#")""",
        "a quoted value is read by the plain reader, quotes and all",
        ("tests/test_properties.py::test_the_plain_env_reader_reads_what_python_dotenv_reads",),
    ),
    # -- notifications that arrive ---------------------------------------------------------------
    Mutant(
        "delivery-never-retried",
        DELIVERY,
        "ATTEMPTS = 4  #",
        "ATTEMPTS = 1  #",
        "a Telegram message or closing ping that met one glitch is lost",
        _node(
            "test_delivery.py",
            "test_a_failure_message_whose_first_attempts_fail_arrives_once",
            "test_the_closing_ping_is_retried_and_arrives_once",
        ),
    ),
    Mutant(
        "delivery-refusal-retried",
        DELIVERY,
        "    raise NotificationRefusedError(reason, telegram_fix(status, description, parameters"
        "))\n",
        "    raise NotificationUnavailableError(reason)\n",
        "a bad bot token or unknown chat is retried, and the line does not say what to fix",
        _node("test_delivery.py", "test_a_refused_bot_token_is_not_retried_and_named_in_the_log"),
    ),
    Mutant(
        "delivery-telegram-retry-after-ignored",
        DELIVERY,
        'retry_after = retry_after_seconds(parameters.get("retry_after"))',
        "retry_after = None",
        "Telegram's flood control is not waited for (the retry is refused again)",
        _node("test_delivery.py", "test_a_failure_message_whose_first_attempts_fail_arrives_once"),
    ),
    Mutant(
        "delivery-budget-ignored",
        DELIVERY,
        "        left = min(budget.remaining(), pacing.deadline.remaining())\n",
        "        left = pacing.deadline.remaining()\n",
        "a Telegram outage holds the run for every attempt, past its budget",
        _node("test_delivery.py", "test_a_429_asking_longer_than_the_budget_is_not_waited_for"),
    ),
    Mutant(
        "delivery-deadline-ignored",
        DELIVERY,
        "        left = min(budget.remaining(), pacing.deadline.remaining())\n",
        "        left = budget.remaining()\n",
        "notifications are retried after XTS_DEADLINE has passed",
        _node("test_delivery.py", "test_no_retry_starts_after_the_runs_deadline"),
    ),
    Mutant(
        "delivery-chats-one-after-another",
        DELIVERY,
        "        thread.start()\n    for thread in threads:\n        thread.join()\n",
        "        thread.start()\n        thread.join()\n",
        "one chat whose Bot API hangs delays every other chat's message",
        _node("test_accounts.py", "test_a_chat_whose_bot_api_hangs_costs_the_other_chat_nothing"),
    ),
    Mutant(
        "check-config-pings-the-check",
        DELIVERY,
        '    origin = f"{parts.scheme}://{parts.netloc}/"\n',
        "    origin = url\n",
        "check-config asks the health check's own URL, which healthchecks.io counts as a ping",
        _node(
            "test_delivery.py",
            "test_check_config_asks_telegram_and_the_health_check_and_sends_nothing",
        ),
    ),
    # -- the redactor ---------------------------------------------------------------------------
    Mutant(
        "notify-jwt-shape-removed",
        NOTIFY,
        '    re.compile(r"eyJ[A-Za-z0-9_-]{4,}\\.[A-Za-z0-9_-]{4,}\\.[A-Za-z0-9_-]*"),\n',
        "",
        "a JWT the redactor was never told about (an XTS error echoing one) is printed whole",
        _node(
            "test_blind_spots.py",
            "test_the_redactor_masks_jwt_and_bot_token_shapes_it_was_never_told_about",
            "test_an_xts_error_echoing_an_unregistered_token_is_masked_everywhere",
        ),
    ),
    Mutant(
        "notify-secrets-masked-shortest-first",
        NOTIFY,
        "sorted((*self._secrets, secret), key=len, reverse=True)",
        "sorted((*self._secrets, secret), key=len)",
        "known secrets are masked shortest first: the tail of a secret that contains another "
        "is printed",
        (),
    ),
)
