"""The ``cron`` command: the crontab line, in this machine's time zone, installed or removed.

XTS markets keep Indian time, but cron reads the schedule in the machine's zone, so a VPS on
UTC running ``0 9 * * *`` refreshes at 14:30 IST, after the open: the line is converted
(``schedule.convert``), uses absolute paths, and ends with its marker (``schedule.own_marker``).
``install`` replaces only the line with exactly its marker (same folder, same accounts), in
place, so lines for different accounts coexist and installing twice changes nothing;
``uninstall`` removes only that line (without ``--account``, only the line for all accounts).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from . import schedule
from .errors import ConfigError
from .paths import APP_DIR
from .schedule import Schedule, account_flags, describe, is_own_line, line_accounts

# Process names of cron daemons: Debian's cron, cronie's and busybox's crond, fcron.
CRON_DAEMONS = frozenset({"cron", "crond", "cronie", "fcron"})


def crontab_line(
    when: Schedule,
    app_dir: Path = Path(APP_DIR),
    arguments: tuple[str, ...] = (),
    accounts: Iterable[str] = (),
) -> str:
    """The crontab line that runs the wrapper (with ``arguments``, then ``--account NAME``
    for each of ``accounts``) at ``when``, output appended to its log."""

    def quoted(word: str | Path) -> str:
        # cron turns an unescaped % into a newline.
        return shlex.quote(str(word)).replace("%", "\\%")

    selection = schedule.account_selection(accounts)
    for path in (str(app_dir), *arguments):
        schedule.refuse_control_characters(path, "a crontab line")
    chosen = [part for name in selection for part in ("--account", name)]
    words = [str(app_dir / "refresh_xts_token.sh"), *arguments, *chosen]
    wrapper = " ".join(quoted(word) for word in words)
    command = f"{wrapper} >> {quoted(app_dir / 'cron_output.log')} 2>&1"
    timing = f"{when.minute} {when.hour} * * {when.days}"
    return f"{timing} {command} {schedule.own_marker(app_dir, selection)}"


def read_crontab() -> list[str]:
    """The current user's crontab lines ([] when there is none)."""
    try:
        listing = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ConfigError(
            "The crontab command is not installed.",
            "Install cron (Debian/Ubuntu: apt-get install cron), or use the systemd timer.",
        ) from None
    if listing.returncode != 0:
        if "no crontab" in listing.stderr.lower():
            return []
        raise ConfigError(f"crontab -l failed: {listing.stderr.strip()}")
    # Split at line ends only: str.splitlines would also split another job's line at a form
    # feed or a Unicode line separator in it, and write it back as two.
    return listing.stdout.removesuffix("\n").split("\n") if listing.stdout else []


def write_crontab(lines: list[str]) -> None:
    """Replace the current user's crontab with ``lines``; ConfigError when crontab refuses."""
    text = "\n".join(lines) + "\n" if lines else ""
    done = subprocess.run(["crontab", "-"], input=text, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ConfigError(f"crontab refused the new table: {done.stderr.strip()}")


def _is_cron_daemon(process: Path) -> bool:
    """True when the process folder ``/proc/<pid>`` is a cron daemon, by its name or command
    line (``crond``, ``/usr/sbin/cron -f``, ``busybox crond -f``)."""
    try:
        name = (process / "comm").read_text(encoding="utf-8", errors="replace").strip()
        argv = (process / "cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError:  # ended meanwhile, or not ours to read
        return False
    words = [os.path.basename(word) for word in argv[:2]]
    return name in CRON_DAEMONS or words[0] in CRON_DAEMONS or words == ["busybox", "crond"]


def cron_daemon_running(proc: Path = Path("/proc")) -> bool | None:
    """Whether a cron daemon runs on this machine; None when it cannot be told (no /proc, as
    on macOS, or other users' processes hidden by ``hidepid``)."""
    try:
        (proc / "1" / "comm").read_bytes()
    except OSError:
        return None
    return any(_is_cron_daemon(process) for process in proc.glob("[0-9]*"))


def _install_warnings(lines: list[str], selection: tuple[str, ...]) -> list[str]:
    """What would keep the line for ``selection`` from running as it should, beside the
    crontab's other ``lines``: no cron daemon, root's crontab, accounts logged in twice."""
    warnings = []
    if cron_daemon_running() is False:
        warnings.append(
            "WARNING: no cron daemon runs on this machine (no cron or crond process), so the "
            "line is installed but will never run. Start cron, and have it start at boot: "
            "sudo systemctl enable --now cron (the service is crond on Red Hat-like systems), "
            "or sudo service cron start where there is no systemd; or use the systemd timer "
            "(CRON_SETUP.md)."
        )
    if os.geteuid() == 0:
        lead = "this installs the line into root's crontab, so "
        example = "e.g. sudo -u xts ./xts_token_refresh.py cron install"
        warnings.append(schedule.runs_as_root("cron", lead, example))
    return [*warnings, *filter(None, [_overlap_warning(lines, selection)])]


def _overlap_warning(lines: list[str], selection: tuple[str, ...]) -> str | None:
    """The warning that the line for ``selection`` logs in accounts that other lines of this
    folder among ``lines`` log in too; None when it shares none."""
    others = [found for found in map(line_accounts, lines) if found not in (None, selection)]
    shared = [schedule.shared_accounts(selection, found) or () for found in others]
    twice = tuple(sorted({name for names in shared for name in names}))
    if not twice:
        return None
    return schedule.overlap_warning(
        twice,
        "another xts-token-refresh line",
        "each run of either line logs in again, and ",
        "keep one line for all accounts or one line per account: `crontab -l` shows the lines, "
        "`xts_token_refresh.py cron uninstall` (with the line's --account options, if any) "
        "removes one.",
    )


def _uninstall(selection: tuple[str, ...]) -> int:
    """``cron uninstall``: remove this installation's line for ``selection`` only; exit 0."""
    lines = read_crontab()
    kept = [line for line in lines if not is_own_line(line, Path(APP_DIR), selection)]
    whose = f"{APP_DIR}" if not selection else f"{APP_DIR} ({describe(selection)})"
    if len(kept) == len(lines):
        print(f"Nothing to remove: no xts-token-refresh line for {whose} in the crontab.")
    else:
        write_crontab(kept)
        print(f"✓ Removed the xts-token-refresh line for {whose}; other lines are untouched.")
    remaining = [found for found in map(line_accounts, kept) if found]
    if remaining and not selection:
        count = len(remaining)
        commands = schedule.uninstall_commands("cron", remaining)
        print(
            f"  {count} line{'s' if count > 1 else ''} of this folder for chosen accounts "
            f"remain{'s' if count == 1 else ''}, untouched: remove "
            f"{'them' if count > 1 else 'it'} with {commands}."
        )
    return 0


def _install(line: str, existing: list[str], selection: tuple[str, ...]) -> int:
    """``cron install``: ``line`` in place of its own earlier line (so installing twice
    changes nothing, whatever follows it), else appended; exit 0."""
    lines: list[str] = []
    for current in existing:
        if not is_own_line(current, Path(APP_DIR), selection):
            lines.append(current)
        elif line not in lines:
            lines.append(line)
    if line not in lines:
        lines.append(line)
    write_crontab(lines)
    with contextlib.suppress(OSError):  # cron's shell would create it world-readable (umask 022)
        os.close(
            os.open(
                os.path.join(APP_DIR, "cron_output.log"),
                os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                0o600,
            )
        )
    print(f"✓ Installed in the crontab: {line}")
    print(
        "  Check it with `crontab -l`; remove it with "
        f"`xts_token_refresh.py cron uninstall{account_flags(selection)}`."
    )
    return 0


def cron_command(
    action: str,
    at: str,
    zone: str,
    days: str,
    *,
    environ: Mapping[str, str],
    arguments: tuple[str, ...] = (),
    accounts: tuple[str, ...] = (),
) -> int:
    """``cron print|install|uninstall`` for ``accounts`` (() is the line for all accounts);
    exit 0, or ConfigError (2)."""
    selection = schedule.account_selection(accounts)
    if action == "uninstall":
        return _uninstall(selection)
    machine, machine_name = schedule.machine_zone(environ)
    when = schedule.convert(at, zone, days, machine, machine_name)
    line = crontab_line(when, arguments=arguments, accounts=selection)
    notes = [
        *when.notes,
        schedule.tz_differs(machine, machine_name, environ),
        schedule.wrapper_not_executable("cron"),
    ]
    existing = read_crontab() if action == "install" else []
    if action == "install":
        notes += _install_warnings(existing, selection)
    for note in filter(None, notes):
        print(f"# {note}", file=sys.stderr)
    if action == "print":
        print(line)
        return 0
    return _install(line, existing, selection)
