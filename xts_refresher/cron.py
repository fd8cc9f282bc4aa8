"""The ``cron`` command: the crontab line, in this machine's time zone, installed or removed.

cron reads the schedule in the machine's zone (``0 9 * * *`` on a UTC VPS is 14:30 IST, after
the open), so the line is converted (``schedule.convert``). ``install`` replaces only the line
with exactly its marker (same folder, same accounts), in place, so lines for different accounts
coexist; ``uninstall`` removes only that line (without ``--account``, the one for all accounts).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path

from . import schedule
from .errors import ConfigError
from .schedule import APP, Schedule, account_flags, describe, is_own_line, line_accounts

# Process names of cron daemons: Debian's cron, cronie's and busybox's crond, fcron.
CRON_DAEMONS = frozenset({"cron", "crond", "cronie", "fcron"})
NO_DAEMON = (
    "WARNING: no cron daemon runs on this machine (no cron or crond process), so the line is "
    "installed but will never run. Start cron, and have it start at boot: sudo systemctl "
    "enable --now cron (the service is crond on Red Hat-like systems), or sudo service cron "
    "start where there is no systemd; or use the systemd timer (CRON_SETUP.md)."
)


def crontab_line(
    when: Schedule,
    app_dir: Path = APP,
    arguments: tuple[str, ...] = (),
    accounts: Iterable[str] = (),
) -> str:
    """The crontab line that runs the job (``schedule.job_words``) at ``when``, into its log."""

    def quoted(word: str | Path) -> str:
        return shlex.quote(str(word)).replace("%", "\\%")  # cron turns a bare % into a newline

    selection = schedule.account_selection(accounts)
    words = schedule.job_words(app_dir, arguments, selection, "a crontab line")
    command = f"{' '.join(map(quoted, words))} >> {quoted(app_dir / 'cron_output.log')} 2>&1"
    marker = schedule.own_marker(app_dir, selection)
    return f"{when.minute} {when.hour} * * {when.days} {command} {marker}"


def crontab(*argv: str, lines: list[str] | None = None) -> str:
    """What ``crontab argv`` prints (``-l``: the table, "" when there is none; ``-``: replace
    it with ``lines``); ConfigError when crontab is missing or fails."""
    table = None if lines is None else "".join(f"{line}\n" for line in lines)
    try:
        done = subprocess.run(
            ["crontab", *argv], input=table, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise ConfigError(
            "The crontab command is not installed.",
            "Install cron (Debian/Ubuntu: apt-get install cron), or use the systemd timer.",
        ) from None
    if done.returncode == 0 or ("no crontab" in done.stderr.lower() and table is None):
        return done.stdout if done.returncode == 0 else ""
    failed = "crontab -l failed" if table is None else "crontab refused the new table"
    raise ConfigError(f"{failed}: {done.stderr.strip()}")


def read_crontab() -> list[str]:
    """The current user's crontab lines ([] when there is none)."""
    listing = crontab("-l")
    # Split at line ends only: str.splitlines would also split another job's line at a form
    # feed or a Unicode line separator in it, and write it back as two.
    return listing.removesuffix("\n").split("\n") if listing else []


def cron_daemon_running(proc: Path = Path("/proc")) -> bool | None:
    """Whether a cron daemon runs here, by a process's name or command line (``crond``,
    ``/usr/sbin/cron -f``, ``busybox crond -f``); None when it cannot be told (no /proc, as
    on macOS, or other users' processes hidden by ``hidepid``)."""
    try:
        (proc / "1" / "comm").read_bytes()
    except OSError:
        return None
    for process in proc.glob("[0-9]*"):
        with contextlib.suppress(OSError):  # ended meanwhile, or not ours to read
            name = (process / "comm").read_text(encoding="utf-8", errors="replace").strip()
            argv = (process / "cmdline").read_bytes().decode("utf-8", "replace").split("\0")
            words = [os.path.basename(word) for word in argv[:2]]
            if {name, words[0]} & CRON_DAEMONS or words == ["busybox", "crond"]:
                return True
    return False


def _warnings(
    action: str, selection: tuple[str, ...], lines: list[str], environ: Mapping[str, str]
) -> list[str | None]:
    """What would keep the line for ``selection`` from running as it should: TZ unlike the
    cron daemon's zone; on ``install``, no cron daemon, root's crontab, accounts logged in
    twice beside the crontab's other ``lines``."""
    machine, machine_name = schedule.machine_zone(environ)
    system, system_name = schedule.system_zone()
    now = datetime.now(timezone.utc)
    offsets = {now.astimezone(zone).utcoffset() for zone in (machine, system)}
    warnings: list[str | None] = []
    if environ.get("TZ") and len(offsets) > 1:
        warnings.append(
            f"WARNING: TZ={environ['TZ']} is set here, so the line is in {machine_name} time, "
            f"but the cron daemon reads its schedule in the system's zone ({system_name}) "
            "unless it runs with the same TZ. If in doubt, run again without TZ "
            "(env -u TZ ./xts_token_refresh.py cron install)."
        )
    warnings.append(schedule.wrapper_not_executable("cron"))
    if action != "install":
        return warnings
    if cron_daemon_running() is False:
        warnings.append(NO_DAEMON)
    if os.geteuid() == 0:
        lead = "this installs the line into root's crontab, so "
        example = "e.g. sudo -u xts ./xts_token_refresh.py cron install"
        warnings.append(schedule.runs_as_root("cron", lead, example))
    others = [found for found in map(line_accounts, lines) if found not in (None, selection)]
    shared = [schedule.shared_accounts(selection, found) or () for found in others]
    twice = tuple(sorted({name for names in shared for name in names}))
    if twice:
        warnings.append(
            schedule.overlap_warning(
                twice,
                "another xts-token-refresh line",
                "each run of either line logs in again, and ",
                "keep one line for all accounts or one line per account: `crontab -l` shows "
                "the lines, `xts_token_refresh.py cron uninstall` (with the line's --account "
                "options, if any) removes one.",
            )
        )
    return warnings


def cron_command(
    action: str,
    at: str,
    zone: str,
    days: str,
    *,
    environ: Mapping[str, str],
    arguments: tuple[str, ...] = (),
    accounts: tuple[str, ...] = (),
    holders: tuple[str, ...] = (),
) -> int:
    """``cron print|install|uninstall`` for ``accounts`` (() is the line for all accounts);
    exit 0, or ConfigError (2). ``install`` puts the line in place of its own earlier one,
    else at the end; ``uninstall`` removes it, and says which lines for chosen accounts
    remain."""
    selection = schedule.account_selection(accounts)
    if action == "uninstall":
        lines = read_crontab()
        kept = [line for line in lines if not is_own_line(line, APP, selection)]
        whose = f"{APP}" if not selection else f"{APP} ({describe(selection)})"
        if len(kept) == len(lines):
            print(f"Nothing to remove: no xts-token-refresh line for {whose} in the crontab.")
        else:
            crontab("-", lines=kept)
            print(f"✓ Removed the xts-token-refresh line for {whose}; other lines are untouched.")
        remaining = [found for found in map(line_accounts, kept) if found]
        if remaining and not selection:
            print(schedule.remaining_note("cron", "line", remaining))
        return 0
    machine, machine_name = schedule.machine_zone(environ)
    when = schedule.convert(at, zone, days, machine, machine_name)
    line = crontab_line(when, arguments=arguments, accounts=selection)
    existing = read_crontab() if action == "install" else []
    notes = [*when.notes, *_warnings(action, selection, existing, environ)]
    for note in filter(None, [*notes, schedule.holder_warning("cron", arguments, holders)]):
        print(f"# {note}", file=sys.stderr)
    if action == "print":
        print(line)
        return 0
    lines = [line if is_own_line(current, APP, selection) else current for current in existing]
    first = lines.index(line) if line in lines else len(lines)
    crontab(
        "-", lines=[*lines[:first], line, *(other for other in lines[first + 1 :] if other != line)]
    )
    with contextlib.suppress(OSError):  # cron's shell would create it world-readable (umask 022)
        os.close(os.open(APP / "cron_output.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    print(f"✓ Installed in the crontab: {line}")
    print(
        "  Check it with `crontab -l`; remove it with "
        f"`xts_token_refresh.py cron uninstall{account_flags(selection)}`."
    )
    return 0
