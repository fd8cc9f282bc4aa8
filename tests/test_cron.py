"""``xts_token_refresh.py cron print|install|uninstall`` and a real cron daemon running the job.

``cron print`` is run as a subprocess with ``TZ`` naming the machine's zone, so every
conversion (IST to UTC, to IST itself, to a zone west of UTC, across midnight in both
directions) is checked with the real script. ``install``/``uninstall`` change the real crontab
of the user running the tests; it is saved first and restored afterwards, under a lock so that
two test sessions on one machine never interleave. The last test starts Debian's cron daemon
(when none runs), installs a per-minute line and waits for the job to refresh a token from
the simulator in the pytest process.

Lines for accounts (``cron install --account NAME``) are tested with a copy of the program in
a temporary folder whose ``accounts/`` holds ``alice.env``, ``bob.env`` and ``carol.env``, so
that its account names are known and its lines carry the copy's folder; the same sequence of
installs and removals also runs in-process, against ``cron_command`` itself.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import pytest
from conftest import (
    APP_DIR,
    INTERACTIVE_KEY,
    INTERACTIVE_SECRET,
    PYTHON,
    SCRIPT,
    USER_ID,
    WRAPPER,
    Project,
    assert_no_secrets,
    copy_program,
    run_process,
    skip_or_fail,
    token_json,
)

from xts_refresher import cron, schedule
from xts_refresher.errors import ConfigError

MARKER = f"# xts-token-refresh:{APP_DIR}"
TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CRONTAB_LOCK = Path("/tmp/xts-token-refresh-tests.crontab.lock")
UNRELATED = [
    'MAILTO=""',
    "# the operator's own notes stay where they are",
    "17 4 * * * /bin/true # an unrelated job",
    "0 1 * * * /opt/other/refresh_xts_token.sh # xts-token-refresh:/opt/other",
]
JOB_WAIT_SECONDS = 130
# Characters that would end a crontab line or a unit's line, or make Python split it when the
# table is read back (str.splitlines): C0 and C1 controls, DEL, Unicode's line separator.
LINE_SPLITTERS = {
    "newline": "\n",
    "carriage-return": "\r",
    "escape": "\x1b",
    "delete": "\x7f",
    "next-line": "\x85",
    "line-separator": "\u2028",
}
IST = ZoneInfo("Asia/Kolkata")
ACCOUNTS = ("alice", "bob", "carol")


def expected_line(
    minute: int, hour: int, days: str, app_dir: Path = APP_DIR, accounts: Sequence[str] = ()
) -> str:
    """The crontab line ``cron print`` must give for the program in ``app_dir`` (this checkout),
    for ``accounts`` (sorted, each once; () is the line for all accounts)."""
    wrapper = shlex.quote(str(app_dir / "refresh_xts_token.sh"))
    log = shlex.quote(str(app_dir / "cron_output.log"))
    chosen = "".join(f" --account {name}" for name in accounts)
    marker = f"# xts-token-refresh:{app_dir}"
    if accounts:
        marker += f" accounts={','.join(accounts)}"
    return f"{minute} {hour} * * {days} {wrapper}{chosen} >> {log} 2>&1 {marker}"


def cron_cli(
    action: str,
    *args: str,
    tz: str | None = "UTC",
    home: Path | None = None,
    script: Path = SCRIPT,
) -> subprocess.CompletedProcess[str]:
    """Run ``<script> cron <action> <args>`` (this checkout's xts_token_refresh.py unless
    ``script`` names a copy) with ``TZ=tz`` in a bare environment."""
    return script_cli(script, "cron", action, *args, tz=tz, home=home)


def script_cli(
    script: Path, *argv: str, tz: str | None = "UTC", home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``<script> <argv>`` with ``TZ=tz`` in a bare environment."""
    env = {"HOME": str(home or Path("/"))}
    if tz is not None:
        env["TZ"] = tz
    return run_process([PYTHON, str(script), *argv], env=env, timeout=30)


@pytest.fixture
def program_copy(tmp_path: Path) -> Path:
    """A copy of the program (script, wrapper, package) in a temporary folder, whose
    ``accounts/`` holds the account files of ``ACCOUNTS`` (mode 600); its folder, resolved."""
    folder = copy_program(tmp_path / "program", SCRIPT.name, WRAPPER.name)
    accounts = folder / "accounts"
    accounts.mkdir(mode=0o700)
    for name in ACCOUNTS:
        account_file = accounts / f"{name}.env"
        account_file.write_text(f"# the settings of account {name}\n", encoding="utf-8")
        account_file.chmod(0o600)
    return folder.resolve()


def ist_today_at(hour: int, minute: int) -> datetime:
    """Today's ``hour:minute`` in IST (the date cron.py converts for)."""
    today = datetime.now(IST).date()
    return datetime(today.year, today.month, today.day, hour, minute, tzinfo=IST)


# -- cron print ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine_tz", "args", "when", "crosses"),
    [
        ("UTC", [], (30, 3, "*"), False),
        ("UTC", ["--days", "weekdays"], (30, 3, "1-5"), False),
        ("Etc/UTC", ["--at", "08:45", "--tz", "Asia/Kolkata"], (15, 3, "*"), False),
        ("Asia/Kolkata", [], (0, 9, "*"), False),
        ("Asia/Kolkata", ["--days", "weekdays"], (0, 9, "1-5"), False),
        ("Asia/Kolkata", ["--at", "23:00", "--tz", "UTC"], (30, 4, "*"), True),
        (
            "Asia/Kolkata",
            ["--at", "23:00", "--tz", "UTC", "--days", "weekdays"],
            (30, 4, "2-6"),
            True,
        ),
        ("Asia/Tokyo", ["--days", "weekdays"], (30, 12, "1-5"), False),
        # Two days apart (UTC+14 to UTC-11): Monday 00:30 there is Saturday 23:30 here.
        (
            "Pacific/Pago_Pago",
            ["--at", "00:30", "--tz", "Pacific/Kiritimati", "--days", "weekdays"],
            (30, 23, "0-3,6"),
            True,
        ),
    ],
)
def test_cron_print_converts_to_the_machine_zone(
    machine_tz: str, args: list[str], when: tuple[int, int, str], crosses: bool
) -> None:
    """``cron print`` gives the IST (or --tz) time in the machine's zone, days shifted with it.

    The line is exactly: the schedule, the wrapper's absolute path, ``>> <abs>/cron_output.log
    2>&1`` and the marker comment; the explanation (and the note that the conversion crosses
    midnight) goes to stderr, not into the line.
    """
    done = cron_cli("print", *args, tz=machine_tz)

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == expected_line(*when) + "\n"
    assert done.stderr.startswith("# ")
    assert f"in this machine's zone ({machine_tz})" in done.stderr
    assert ("crosses midnight" in done.stderr) == crosses


def test_cron_print_passes_the_path_flags_on_as_absolute_paths(tmp_path: Path) -> None:
    """``cron print --env-file X --token-file Y --log-file Z`` puts those flags, absolute and
    quoted (``%`` escaped for cron), into the job's command, before the redirect."""
    env_file = tmp_path / "my 100%.env"
    relative_token = os.path.relpath(tmp_path / "tok.json", APP_DIR)
    done = cron_cli(
        "print", "--env-file", str(env_file), "--token-file", relative_token,
        "--log-file", str(tmp_path / "x.log"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    quoted_env = shlex.quote(str(env_file)).replace("%", "\\%")
    wrapper = shlex.quote(str(WRAPPER))
    assert f"{wrapper} --env-file {quoted_env} --token-file {tmp_path / 'tok.json'} " in done.stdout
    assert f"--log-file {tmp_path / 'x.log'} >> " in done.stdout


@pytest.mark.parametrize("days", ["daily", "weekdays"])
def test_cron_print_west_of_utc_moves_to_the_previous_evening(days: str) -> None:
    """America/New_York: 09:00 IST is the evening before (22:30 or 23:30 by season).

    Weekdays move to Sunday-Thursday (``0-4``), and stderr warns that New York's daylight
    saving time makes the IST time drift by an hour part of the year, and how to avoid it.
    """
    local = ist_today_at(9, 0).astimezone(ZoneInfo("America/New_York"))
    assert local.date() < ist_today_at(9, 0).date()

    done = cron_cli("print", "--days", days, tz="America/New_York")

    assert done.returncode == 0, done.stderr
    assert local.hour in (22, 23)
    field = "*" if days == "daily" else "0-4"
    assert done.stdout == expected_line(local.minute, local.hour, field) + "\n"
    assert "crosses midnight" in done.stderr
    assert "WARNING: America/New_York observes daylight saving time" in done.stderr
    assert "timedatectl set-timezone UTC" in done.stderr


@pytest.mark.parametrize("machine_tz", ["UTC", "Asia/Kolkata"])
def test_no_daylight_saving_warning_where_there_is_none(machine_tz: str) -> None:
    """UTC and IST have no daylight saving time: no drift warning, no midnight note."""
    done = cron_cli("print", "--days", "weekdays", tz=machine_tz)

    assert done.returncode == 0, done.stderr
    assert "daylight saving" not in done.stderr
    assert "crosses midnight" not in done.stderr


def test_tz_may_name_a_zone_file() -> None:
    """``TZ=:/etc/localtime`` (the glibc form) is the system zone, as with no TZ at all."""
    if not Path("/etc/localtime").exists():
        skip_or_fail("this machine has no /etc/localtime")

    by_file = cron_cli("print", tz=":/etc/localtime")
    by_system = cron_cli("print", tz=None)

    assert by_file.returncode == 0, by_file.stderr
    assert by_system.returncode == 0, by_system.stderr
    assert by_file.stdout == by_system.stdout
    assert by_file.stdout.endswith(f" {MARKER}\n")


def test_a_tz_other_than_the_systems_zone_is_warned_about() -> None:
    """With ``TZ`` naming a zone whose offset is not the system's, the line follows TZ and
    stderr warns that the cron daemon reads the system's zone, with the ``env -u TZ`` way out;
    with TZ naming the system's zone itself there is no such warning."""
    if not Path("/etc/localtime").exists():
        skip_or_fail("this machine has no /etc/localtime")
    now = datetime.now(timezone.utc)
    system_offset = now.astimezone(schedule.system_zone()[0]).utcoffset()
    other = next(
        name
        for name in ("Asia/Singapore", "Pacific/Honolulu")
        if now.astimezone(ZoneInfo(name)).utcoffset() != system_offset
    )

    differing = cron_cli("print", tz=other)
    same = cron_cli("print", tz=":/etc/localtime")

    assert differing.returncode == 0, differing.stderr
    assert f"WARNING: TZ={other} is set here" in differing.stderr
    assert "env -u TZ ./xts_token_refresh.py cron install" in differing.stderr
    local = ist_today_at(9, 0).astimezone(ZoneInfo(other))
    assert differing.stdout.startswith(f"{local.minute} {local.hour} ")
    assert same.returncode == 0, same.stderr
    assert "WARNING: TZ=" not in same.stderr


@pytest.mark.parametrize(
    ("args", "machine_tz", "message"),
    [
        (["--at", "25:00"], "UTC", "--at '25:00' is not a time of day"),
        (["--at", "09:60"], "UTC", "--at '09:60' is not a time of day"),
        (["--at", "9"], "UTC", "Use HH:MM"),
        (["--at", "nine"], "UTC", "--at 'nine' is not a time of day"),
        (["--tz", "Mars/Olympus_Mons"], "UTC", "Unknown time zone 'Mars/Olympus_Mons'"),
        (["--tz", "../../etc/passwd"], "UTC", "Unknown time zone"),
        (["--days", "sundays"], "UTC", "argument --days: invalid choice: 'sundays'"),
        ([], "Bogus/Zone", "Unknown time zone 'Bogus/Zone'"),
    ],
)
def test_bad_cron_options_exit_2(args: list[str], machine_tz: str, message: str) -> None:
    """A bad ``--at``, ``--tz``, ``--days`` (or machine TZ) exits 2, says why, prints no line."""
    done = cron_cli("print", *args, tz=machine_tz)

    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stdout + done.stderr
    assert "refresh_xts_token.sh" not in done.stdout


@pytest.mark.parametrize("flag", ["--env-file", "--token-file", "--log-file"])
@pytest.mark.parametrize("char", LINE_SPLITTERS.values(), ids=LINE_SPLITTERS.keys())
def test_a_control_character_in_a_path_flag_never_reaches_the_crontab(
    tmp_path: Path, flag: str, char: str
) -> None:
    """A path flag holding a newline, a carriage return or another control character would
    split the crontab line (or the table when read back): exit 2 naming the path (escaped),
    and no line is printed."""
    path = tmp_path / f"job{char}x.txt"

    done = cron_cli("print", flag, str(path))

    assert done.returncode == 2, done.stdout + done.stderr
    assert f"The path {str(path)!r} holds a control character" in done.stdout
    assert "a crontab line cannot carry" in done.stdout
    assert "refresh_xts_token.sh" not in done.stdout
    assert len(done.stdout.splitlines()) == 1, done.stdout  # the path shown escaped


def test_cron_help_explains_every_argument() -> None:
    """``cron --help`` describes the command, each action and ``--days``."""
    done = run_process([PYTHON, str(SCRIPT), "cron", "--help"], env={"COLUMNS": "100"})

    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "this machine's time zone" in text
    for words in (
        "print: show the line",
        "install: put it in the crontab",
        "uninstall: remove it",
        "--days {daily,weekdays} daily, or weekdays: Monday to Friday in --tz",
    ):
        assert words in text, done.stdout


# -- lines for accounts -------------------------------------------------------------------------

OPT = Path("/opt/xts")
PLAIN = schedule.Schedule(30, 3, "*", ())


def test_the_line_for_all_accounts_is_unchanged() -> None:
    """No accounts named: the line and marker of a single-account install, byte for byte."""
    line = cron.crontab_line(PLAIN, OPT, accounts=())
    assert line == (
        "30 3 * * * /opt/xts/refresh_xts_token.sh >> /opt/xts/cron_output.log 2>&1 "
        "# xts-token-refresh:/opt/xts"
    )
    assert line == cron.crontab_line(PLAIN, OPT)
    assert (
        schedule.own_marker(OPT) == schedule.own_marker(OPT, ()) == "# xts-token-refresh:/opt/xts"
    )


def test_an_account_line_passes_each_account_after_the_other_arguments() -> None:
    """The accounts, sorted and each once, follow the path flags as ``--account NAME``; the
    marker names them after the folder."""
    line = cron.crontab_line(
        PLAIN, OPT, ("--env-file", "/etc/xts/prod.env"), accounts=("carol", "alice", "carol")
    )
    assert line == (
        "30 3 * * * /opt/xts/refresh_xts_token.sh --env-file /etc/xts/prod.env "
        "--account alice --account carol >> /opt/xts/cron_output.log 2>&1 "
        "# xts-token-refresh:/opt/xts accounts=alice,carol"
    )
    assert schedule.own_marker(OPT, ["carol", "alice"]) == (
        "# xts-token-refresh:/opt/xts accounts=alice,carol"
    )
    assert schedule.own_marker(OPT, ("bob",)) == "# xts-token-refresh:/opt/xts accounts=bob"


def test_an_account_marker_escapes_percent_in_the_folder_name() -> None:
    app_dir = Path("/opt/my 50% bots")
    line = cron.crontab_line(PLAIN, app_dir, accounts=("bob",))
    assert re.search(r"(?<!\\)%", line) is None
    assert line.endswith(" # xts-token-refresh:/opt/my 50\\% bots accounts=bob")
    assert schedule.is_own_line(line, app_dir, ("bob",))
    assert not schedule.is_own_line(line, app_dir)


@pytest.mark.parametrize(
    "accounts",
    [(), ("bob",), ("alice", "carol"), ("alice", "bob", "carol"), ("b",), ("a", "b")],
)
def test_each_line_is_owned_only_for_its_own_folder_and_accounts(
    accounts: tuple[str, ...],
) -> None:
    """A line is this installation's line for exactly one account selection (in any order):
    never for another selection (``b`` is not ``bob``, nor ``a,b``), never for another
    folder (``/opt/xts2``, ``/opt``, ``/x/opt/xts``), and never the line for all accounts."""
    line = cron.crontab_line(PLAIN, OPT, accounts=accounts)
    selections = [(), ("bob",), ("b",), ("ob",), ("a", "b"), ("alice", "carol")]
    selections += [("alice", "bob", "carol"), ("carol",), ("alice",)]
    for selection in selections:
        assert schedule.is_own_line(line, OPT, selection) == (selection == accounts), selection
    assert schedule.is_own_line(line + "  ", OPT, tuple(reversed(accounts)))
    for folder in ("/opt/xts2", "/opt", "/x/opt/xts", "/opt/xts accounts=bob"):
        assert not schedule.is_own_line(line, Path(folder), accounts), folder
    assert schedule.line_accounts(line, OPT) == accounts
    assert schedule.line_accounts(line, Path("/opt/xts2")) is None


@pytest.mark.parametrize(
    "line",
    [
        "17 4 * * * /bin/true # an unrelated job",
        "0 1 * * * /opt/other/refresh_xts_token.sh # xts-token-refresh:/opt/other",
        "0 1 * * * /opt/xts2/refresh_xts_token.sh # xts-token-refresh:/opt/xts2 accounts=bob",
        "0 1 * * * x # xts-token-refresh:/opt/xts accounts=",
        "0 1 * * * x # xts-token-refresh:/opt/xts accounts=carol,alice",
        "0 1 * * * x # xts-token-refresh:/opt/xts accounts=a b",
        "# xts-token-refresh:/opt/xts accounts=bob is a note, not a line",
    ],
)
def test_other_lines_belong_to_no_selection(line: str) -> None:
    """Lines of other jobs, other folders, or markers ``cron install`` never writes."""
    assert schedule.line_accounts(line, OPT) is None


@pytest.mark.parametrize("name", ["a b", "a,b", "50%", ".hidden", "", "x" * 65, "bob\n"])
def test_a_name_no_account_may_have_never_reaches_the_crontab(name: str) -> None:
    """The caller checks the names; a name that would break the line or its marker is still
    refused here (exit 2)."""
    with pytest.raises(ConfigError, match="Not an account name"):
        cron.crontab_line(PLAIN, OPT, accounts=("bob", name))
    with pytest.raises(ConfigError, match="Not an account name"):
        schedule.own_marker(OPT, (name,))


@pytest.mark.parametrize("before_the_command", [False, True])
def test_cron_print_for_an_account(program_copy: Path, before_the_command: bool) -> None:
    """``cron print --account bob`` (or ``--account bob cron print``) prints the line that
    runs the wrapper with ``--account bob``, with the account marker; several accounts come
    sorted and each once."""
    script = program_copy / SCRIPT.name
    if before_the_command:
        done = script_cli(script, "--account", "bob", "cron", "print")
    else:
        done = cron_cli("print", "--account", "bob", script=script)

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == expected_line(30, 3, "*", program_copy, ["bob"]) + "\n"
    assert " --account bob >> " in done.stdout
    assert done.stdout.endswith(f" # xts-token-refresh:{program_copy} accounts=bob\n")

    several = cron_cli(
        "print", "--account", "carol", "--account", "alice", "--account", "carol", script=script
    )
    assert several.returncode == 0, several.stdout + several.stderr
    assert several.stdout == expected_line(30, 3, "*", program_copy, ["alice", "carol"]) + "\n"


def browser_account(wait: str = "0") -> str:
    """An account file that signs in on the broker's page, waiting ``wait`` for its holder."""
    return (
        f"XTS_LOGIN=browser\nXTS_LOGIN_WAIT={wait}\nXTS_API_ROOT=http://127.0.0.1:9\n"
        f"XTS_INTERACTIVE_API_KEY={INTERACTIVE_KEY}\n"
        f"XTS_INTERACTIVE_API_SECRET={INTERACTIVE_SECRET}\nXTS_USER_ID={USER_ID}\n"
    )


def test_cron_print_warns_of_a_browser_account_no_run_can_sign_in(program_copy: Path) -> None:
    """A line without --if-needed that covers a browser account with neither XTS_LOGIN_WAIT
    nor XTS_ACCESS_TOKEN_COMMAND gets one warning naming it and the two ways out; one that
    waits for its holder is not named, nor one whose settings cannot be read (carol's)."""
    accounts = program_copy / "accounts"
    (accounts / "alice.env").write_text(browser_account(), encoding="utf-8")
    (accounts / "bob.env").write_text(browser_account("30m"), encoding="utf-8")
    script = program_copy / SCRIPT.name

    done = cron_cli("print", script=script)

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == expected_line(30, 3, "*", program_copy) + "\n"
    warned = [line for line in done.stderr.splitlines() if "XTS_LOGIN=browser" in line]
    assert len(warned) == 1 and warned[0].startswith("# WARNING: account alice "), done.stderr
    assert "bob" not in warned[0] and "carol" not in warned[0]
    assert "`xts_token_refresh.py cron install --account alice --at 08:30`" in warned[0]
    assert "`xts_token_refresh.py login --account alice`" in warned[0]
    assert "--if-needed" in warned[0]
    assert INTERACTIVE_KEY not in done.stdout + done.stderr
    assert INTERACTIVE_SECRET not in done.stdout + done.stderr
    for args in (["--account", "bob"], ["--account", "carol"]):
        quiet = cron_cli("print", *args, script=script)
        assert quiet.returncode == 0 and "XTS_LOGIN=browser" not in quiet.stderr, quiet.stderr


# -- install / uninstall against the real crontab ----------------------------------------------


class Crontab:
    """The current user's real crontab, read and written with the ``crontab`` program."""

    def read(self) -> list[str]:
        """Its lines; [] when the user has no crontab."""
        done = run_process(["crontab", "-l"])
        if done.returncode != 0:
            assert "no crontab" in done.stderr.lower(), done.stderr
            return []
        return done.stdout.splitlines()

    def write(self, lines: Sequence[str]) -> None:
        """Replace it with ``lines``."""
        text = "".join(f"{line}\n" for line in lines)
        done = subprocess.run(
            ["crontab", "-"],
            input=text,
            capture_output=True,
            text=True,
            check=False,
            env={"PATH": TOOL_PATH},
        )
        assert done.returncode == 0, done.stderr

    def remove(self) -> None:
        """Delete it altogether (as if the user never had one)."""
        run_process(["crontab", "-r"])


@pytest.fixture
def crontab() -> Iterator[Crontab]:
    """The real crontab, saved before the test and restored after it, whatever happens.

    A lock file serialises the tests of every pytest session on the machine that touch it.
    """
    if shutil.which("crontab", path=TOOL_PATH) is None:
        skip_or_fail("the crontab program is not installed (Debian: apt-get install cron)")
    with CRONTAB_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table = Crontab()
        saved = run_process(["crontab", "-l"])
        had_one = saved.returncode == 0
        if not had_one:
            assert "no crontab" in saved.stderr.lower(), saved.stderr
        try:
            yield table
        finally:
            if had_one:
                done = subprocess.run(
                    ["crontab", "-"],
                    input=saved.stdout,
                    capture_output=True,
                    text=True,
                    check=False,
                    env={"PATH": TOOL_PATH},
                )
                assert done.returncode == 0, done.stderr
            else:
                table.remove()


@pytest.fixture
def app_cron_output() -> Iterator[tuple[Path, bool]]:
    """This checkout's cron_output.log and whether it existed; removed again if the test made
    it (and it is still empty), so the checkout is left as it was found.
    """
    path = APP_DIR / "cron_output.log"
    existed = path.exists()
    yield path, existed
    if not existed and path.exists() and path.stat().st_size == 0:
        path.unlink()


def own_lines(lines: Sequence[str]) -> list[str]:
    """The lines this checkout's ``cron install`` owns."""
    return [line for line in lines if line.endswith(MARKER)]


@pytest.mark.system
@pytest.mark.parametrize("char", ["\n", "\r", "\u2028"], ids=["newline", "cr", "line-separator"])
def test_a_control_character_in_the_programs_folder_never_reaches_the_crontab(
    tmp_path: Path, crontab: Crontab, char: str
) -> None:
    """The program in a folder whose name holds a line break: ``cron print`` and ``cron
    install`` exit 2 naming the folder, and the crontab is left as it was."""
    folder = copy_program(tmp_path / f"bots{char}* * * * * touch x", SCRIPT.name, WRAPPER.name)
    crontab.write(UNRELATED)

    for action in ("print", "install"):
        done = cron_cli(action, script=folder / SCRIPT.name)

        assert done.returncode == 2, done.stdout + done.stderr
        assert "holds a control character" in done.stdout
        assert repr(str(folder))[1:-1] in done.stdout
        assert "refresh_xts_token.sh" not in done.stdout
    assert crontab.read() == UNRELATED


@pytest.mark.system
def test_install_replaces_only_its_own_line(
    crontab: Crontab, app_cron_output: tuple[Path, bool]
) -> None:
    """``install`` keeps every other line (even another installation's), never duplicates its
    own, replaces it when the time changes, leaves the crontab alone on a bad option, and
    creates cron_output.log owner-only; ``uninstall`` removes exactly that one line.
    """
    crontab.write(UNRELATED)
    cron_output, existed = app_cron_output

    first = cron_cli("install")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"✓ Installed in the crontab: {expected_line(30, 3, '*')}" in first.stdout
    assert cron_output.exists()
    if not existed:  # created owner-only, not world-readable by cron's shell
        assert stat.S_IMODE(cron_output.stat().st_mode) == 0o600
    assert crontab.read() == [*UNRELATED, expected_line(30, 3, "*")]

    again = cron_cli("install")
    assert again.returncode == 0, again.stderr
    assert crontab.read() == [*UNRELATED, expected_line(30, 3, "*")]

    moved = cron_cli("install", "--at", "08:45", "--days", "weekdays")
    assert moved.returncode == 0, moved.stderr
    lines = crontab.read()
    assert lines == [*UNRELATED, expected_line(15, 3, "1-5")]
    assert len(own_lines(lines)) == 1

    refused = cron_cli("install", "--at", "99:99")
    assert refused.returncode == 2
    assert crontab.read() == lines

    removed = cron_cli("uninstall")
    assert removed.returncode == 0, removed.stderr
    assert "✓ Removed the xts-token-refresh line" in removed.stdout
    assert crontab.read() == UNRELATED

    nothing = cron_cli("uninstall")
    assert nothing.returncode == 0, nothing.stderr
    assert "Nothing to remove" in nothing.stdout
    assert crontab.read() == UNRELATED


@pytest.mark.system
def test_install_keeps_other_lines_that_hold_control_characters_whole(
    crontab: Crontab, app_cron_output: tuple[Path, bool]
) -> None:
    """Another job's line holding a form feed, a file separator or a Unicode line separator
    (where Python's str.splitlines would split it) comes through ``install`` and
    ``uninstall`` byte for byte: one line stays one line."""
    other = "5 4 * * * /bin/echo 'a\x0cb\x1cc\u2028d\x85e' # another job"
    crontab.write([*UNRELATED, other])
    expected = "".join(f"{line}\n" for line in [*UNRELATED, other])

    for action in ("install", "uninstall"):
        done = cron_cli(action, tz="UTC")

        assert done.returncode == 0, done.stdout + done.stderr
        assert other in run_process(["crontab", "-l"]).stdout.split("\n")
    assert run_process(["crontab", "-l"]).stdout == expected


@pytest.mark.system
def test_install_and_uninstall_without_a_crontab(
    crontab: Crontab, app_cron_output: tuple[Path, bool]
) -> None:
    """A user with no crontab at all: ``install`` creates one with the line, ``uninstall``
    leaves it empty; ``uninstall`` on no crontab is not an error.
    """
    crontab.remove()
    assert crontab.read() == []

    nothing = cron_cli("uninstall")
    assert nothing.returncode == 0, nothing.stderr
    assert "Nothing to remove" in nothing.stdout

    installed = cron_cli("install", tz="Asia/Kolkata")
    assert installed.returncode == 0, installed.stderr
    assert crontab.read() == [expected_line(0, 9, "*")]

    removed = cron_cli("uninstall")
    assert removed.returncode == 0, removed.stderr
    assert crontab.read() == []


class Runner(Protocol):
    """Runs ``cron <action>`` for ``accounts`` at ``at`` (IST) on a UTC machine."""

    def __call__(
        self, action: str, accounts: Sequence[str] = (), at: str = "09:00"
    ) -> tuple[int, str, str]:
        """The exit code, stdout and stderr."""


def check_account_lines(crontab: Crontab, run: Runner, app_dir: Path) -> None:
    """Lines for all accounts, for ``bob`` and for ``alice, carol`` coexist beside every
    other line; installing any of them again changes nothing, a new time replaces the line in
    place; ``uninstall --account bob`` removes only bob's line, ``uninstall`` only the line
    for all accounts, and says which lines remain and how to remove them."""

    def line(accounts: Sequence[str] = (), minute: int = 30) -> str:
        return expected_line(minute, 3, "*", app_dir, accounts)

    neighbours = [  # another folder whose name starts the same, with lines of both kinds
        f"0 2 * * * {app_dir}-old/refresh_xts_token.sh # xts-token-refresh:{app_dir}-old",
        f"0 2 * * * {app_dir}-old/refresh_xts_token.sh --account bob "
        f"# xts-token-refresh:{app_dir}-old accounts=bob",
    ]
    if app_dir != APP_DIR:
        neighbours.append(expected_line(0, 9, "*"))  # this checkout's own line
    base = [*UNRELATED, *neighbours]
    crontab.write(base)
    every, bob, two = line(), line(["bob"]), line(["alice", "carol"])

    code, out, _ = run("install")
    assert code == 0, out
    assert crontab.read() == [*base, every]

    code, out, err = run("install", ["bob"])
    assert code == 0, out + err
    assert f"✓ Installed in the crontab: {bob}" in out
    assert "`xts_token_refresh.py cron uninstall --account bob`" in out
    assert "WARNING: account bob is also logged in by another xts-token-refresh line" in err
    assert crontab.read() == [*base, every, bob]

    code, out, err = run("install", ["carol", "alice"])
    assert code == 0, out + err
    assert "accounts alice, carol are also logged in" in err
    full = [*base, every, bob, two]
    assert crontab.read() == full

    for again in (["bob"], [], ["alice", "carol", "alice"], ["bob", "bob"]):
        code, out, err = run("install", again)
        assert code == 0, out + err
        assert crontab.read() == full, again

    code, out, err = run("install", ["bob"], "08:45")
    assert code == 0, out + err
    assert crontab.read() == [*base, every, line(["bob"], minute=15), two]
    run("install", ["bob"])
    assert crontab.read() == full

    check_account_removals(crontab, run, app_dir, base)


def check_account_removals(
    crontab: Crontab, run: Runner, app_dir: Path, base: Sequence[str]
) -> None:
    """The second half of ``check_account_lines``: the crontab holds ``base``, then the lines
    for all accounts, for bob and for alice and carol."""
    every, two = (
        expected_line(30, 3, "*", app_dir, accounts) for accounts in ([], ["alice", "carol"])
    )
    code, out, err = run("uninstall", ["bob"])
    assert code == 0, out + err
    assert f"✓ Removed the xts-token-refresh line for {app_dir} (account bob);" in out
    assert crontab.read() == [*base, every, two]
    code, out, _ = run("uninstall", ["bob"])
    assert code == 0
    assert f"Nothing to remove: no xts-token-refresh line for {app_dir} (account bob)" in out
    assert crontab.read() == [*base, every, two]

    code, out, err = run("uninstall")
    assert code == 0, out + err
    assert f"✓ Removed the xts-token-refresh line for {app_dir};" in out
    assert "1 line of this folder for chosen accounts remains" in out
    assert "`xts_token_refresh.py cron uninstall --account alice --account carol`" in out
    assert crontab.read() == [*base, two]
    code, out, _ = run("uninstall")
    assert code == 0
    assert "Nothing to remove" in out
    assert "cron uninstall --account alice --account carol" in out
    assert crontab.read() == [*base, two]

    code, out, _ = run("uninstall", ["carol", "alice"])
    assert code == 0, out
    assert crontab.read() == base
    code, out, _ = run("uninstall")
    assert "Nothing to remove" in out
    assert "remain" not in out


@pytest.mark.system
def test_account_lines_coexist_in_the_crontab(
    crontab: Crontab, app_cron_output: tuple[Path, bool], capsys: pytest.CaptureFixture[str]
) -> None:
    """``cron_command`` itself (this checkout, in-process) keeps the lines for different
    account selections apart (see ``check_account_lines``)."""

    def run(action: str, accounts: Sequence[str] = (), at: str = "09:00") -> tuple[int, str, str]:
        code = cron.cron_command(
            action, at, "Asia/Kolkata", "daily", environ={"TZ": "UTC"}, accounts=tuple(accounts)
        )
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    check_account_lines(crontab, run, APP_DIR)


@pytest.mark.system
def test_cron_install_account_lines_coexist(crontab: Crontab, program_copy: Path) -> None:
    """The same with the real script (a copy, with the accounts alice, bob and carol):
    ``cron install|uninstall --account NAME``, repeatable, in any order."""
    script = program_copy / SCRIPT.name

    def run(action: str, accounts: Sequence[str] = (), at: str = "09:00") -> tuple[int, str, str]:
        chosen = [part for name in accounts for part in ("--account", name)]
        done = cron_cli(action, *chosen, "--at", at, script=script)
        return done.returncode, done.stdout, done.stderr

    check_account_lines(crontab, run, program_copy)


# -- the real cron daemon -----------------------------------------------------------------------


def cron_is_running() -> bool:
    """True when a process called ``cron`` or ``crond`` runs (``pgrep -x``, without procps)."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text(encoding="utf-8").strip() in ("cron", "crond"):
                return True
        except OSError:
            continue  # the process ended meanwhile
    return False


@pytest.fixture
def cron_daemon() -> Iterator[subprocess.Popen[bytes] | None]:
    """A running cron daemon: the machine's own, or one this fixture starts and later stops."""
    daemon = shutil.which("cron", path=TOOL_PATH)
    if daemon is None:
        skip_or_fail("the cron daemon is not installed (Debian: apt-get install cron)")
        return
    if cron_is_running():
        yield None  # someone else's daemon: use it, never stop it
        return
    if os.geteuid() != 0:
        skip_or_fail("no cron daemon runs, and only root can start one")
    started = subprocess.Popen(
        [daemon, "-f"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(0.5)
        assert started.poll() is None, f"cron -f exited at once with {started.returncode}"
        yield started
    finally:
        started.terminate()
        try:
            started.wait(timeout=10)
        except subprocess.TimeoutExpired:
            started.kill()
            started.wait(timeout=10)


NO_DAEMON = "WARNING: no cron daemon runs on this machine"
AS_ROOT = "WARNING: this installs the line into root's crontab"
DAEMON_GONE_SECONDS = 150


def no_cron_daemon() -> None:
    """Return once no cron daemon runs. A test of another session on this machine stops the
    daemon it started when it ends (waited for here, up to 150 s); the machine's own daemon
    cannot be stopped from a test: skipped, and a failure under CI, where nothing starts cron.
    """
    if not wait_for(lambda: not cron_is_running(), DAEMON_GONE_SECONDS):
        skip_or_fail("a cron daemon runs (the machine's own), so 'no daemon' cannot be seen")


@pytest.mark.system
def test_install_without_a_cron_daemon_warns_and_still_installs(
    crontab: Crontab, app_cron_output: tuple[Path, bool]
) -> None:
    """With no cron daemon running, ``install`` still installs the line but warns (a ``#``
    note on stderr) that it would never run, and how to start cron; as root it also warns
    that the job would run as root. ``print`` (a line for anywhere) warns of neither.

    The test first makes sure no cron daemon runs (see ``no_cron_daemon``).
    """
    no_cron_daemon()
    crontab.write(UNRELATED)

    done = cron_cli("install")

    assert done.returncode == 0, done.stdout + done.stderr
    assert crontab.read() == [*UNRELATED, expected_line(30, 3, "*")]
    assert NO_DAEMON in done.stderr
    assert "systemctl enable --now cron" in done.stderr
    assert "service cron start" in done.stderr
    assert (AS_ROOT in done.stderr) == (os.geteuid() == 0)
    assert all(line.startswith("# ") for line in done.stderr.splitlines()), done.stderr
    if os.geteuid() == 0:
        assert "dedicated unprivileged user" in done.stderr
    printed = cron_cli("print")
    assert printed.returncode == 0, printed.stderr
    assert NO_DAEMON not in printed.stderr
    assert AS_ROOT not in printed.stderr


@pytest.mark.system
def test_install_with_the_cron_daemon_running_does_not_warn_of_it(
    crontab: Crontab,
    cron_daemon: subprocess.Popen[bytes] | None,
    app_cron_output: tuple[Path, bool],
) -> None:
    """With Debian's cron daemon running, ``install`` has no "no cron daemon" warning (the
    root warning still depends only on who installs)."""
    done = cron_cli("install")

    assert done.returncode == 0, done.stdout + done.stderr
    assert NO_DAEMON not in done.stderr
    assert (AS_ROOT in done.stderr) == (os.geteuid() == 0)
    assert own_lines(crontab.read()) == [expected_line(30, 3, "*")]


@pytest.mark.system
@pytest.mark.parametrize("style", ["crond", "busybox crond"])
def test_install_recognises_other_cron_daemons(
    crontab: Crontab, app_cron_output: tuple[Path, bool], tmp_path: Path, style: str
) -> None:
    """A process called ``crond`` (cronie, busybox's symlink) or started as ``busybox crond``
    counts as a cron daemon. Here each is a plain shell process with that name (the name is
    all the check reads), started once no real cron daemon runs."""
    no_cron_daemon()
    script = tmp_path / "crond"
    script.write_text("#!/bin/sh\nsleep 60\n", encoding="utf-8")
    script.chmod(0o755)
    if style == "crond":  # the process's name (comm) is crond
        argv, executable = [str(script)], None
    else:  # comm is sh, the command line is `busybox crond -f`
        argv, executable = ["busybox", "crond", "-f"], "/bin/sh"
    fake = subprocess.Popen(argv, executable=executable, cwd=tmp_path, start_new_session=True)
    try:
        time.sleep(0.3)
        assert fake.poll() is None
        done = cron_cli("install")
    finally:
        fake.kill()
        fake.wait(timeout=10)

    assert done.returncode == 0, done.stdout + done.stderr
    assert NO_DAEMON not in done.stderr
    without = cron_cli("install")
    assert NO_DAEMON in without.stderr


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    """Poll ``condition()`` twice a second for up to ``seconds``; its last value."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.5)
    return bool(condition())


def job_venv() -> str:
    """``XTS_VENV=... `` for a checkout without .venv/venv (the wrapper finds .venv itself)."""
    if any((APP_DIR / name / "bin" / "python").exists() for name in (".venv", "venv")):
        return ""
    return f"XTS_VENV={shlex.quote(sys.prefix)} "


@pytest.mark.slow
@pytest.mark.system
@pytest.mark.timeout(240)
def test_cron_daemon_runs_the_wrapper(
    project: Project,
    tmp_path: Path,
    crontab: Crontab,
    cron_daemon: subprocess.Popen[bytes] | None,
) -> None:
    """The real cron daemon runs a per-minute line: the wrapper, in cron's bare environment
    (PATH=/usr/bin:/bin, no LANG, started in $HOME), finds its virtualenv, logs in to the
    simulator and saves the token; the output log has the banner and the exit-code-0 line.
    The test then removes its line and leaves the crontab as it was.
    """
    env_file = project.write_env()
    output = tmp_path / "cron_output.log"
    test_marker = f"# xts-token-refresh-test:{tmp_path}"
    command = (
        f"{job_venv()}{shlex.quote(str(WRAPPER))} --env-file {shlex.quote(str(env_file))}"
        f" >> {shlex.quote(str(output))} 2>&1"
    ).replace("%", "\\%")
    job = f"* * * * * {command} {test_marker}"
    before = crontab.read()
    # cron notices a new table by the spool folder's mtime, in whole seconds: a change in the
    # same second as its last look (or the previous test's clean-up) would go unnoticed.
    time.sleep(1.1)
    crontab.write([*before, job])

    try:
        appeared = wait_for(project.token_file.exists, JOB_WAIT_SECONDS / 2)
        if not appeared:  # write it again, in a later second, in case cron missed the change
            crontab.write([*before, job])
            appeared = wait_for(project.token_file.exists, JOB_WAIT_SECONDS / 2)

        def finished() -> bool:
            text = output.read_text(encoding="utf-8") if output.exists() else ""
            return "(exit code: " in text

        done = wait_for(finished, 30) if appeared else False
    finally:
        crontab.write([line for line in crontab.read() if not line.endswith(test_marker)])
    log = output.read_text(encoding="utf-8") if output.exists() else "(no cron output)"
    assert appeared, f"cron did not run the job within {JOB_WAIT_SECONDS} s; output:\n{log}"
    assert done, log
    assert crontab.read() == before

    first_run = log.split("XTS Token Refresh - ")[1]
    for line in (
        f"Working Directory: {APP_DIR}",
        "✓ Virtual environment activated",
        "Python version: Python 3.",
        "✓ Required packages found",
        "XTS Token Refresh Cron Job Started",
        "✓ XTS token refreshed successfully!",
        f"✓ Token saved to: {project.token_file}",
        "✓ Token refresh completed successfully (exit code: 0)",
    ):
        assert line in first_run, f"{line!r} missing from the cron output:\n{log}"
    saved = token_json(project.token_file)
    assert saved["userID"] == USER_ID
    assert saved["token"] in project.sim.issued_tokens("interactive")
    assert project.sim.count("interactive_login") >= 1
    assert_no_secrets(project, log, project.log_file.read_text(encoding="utf-8"))


# -- the documents that schedule it -------------------------------------------------------------

UNITS = APP_DIR / "systemd"


@pytest.mark.system
def test_systemd_units_are_valid() -> None:
    """The example units: a oneshot service running the wrapper in the project folder as a
    named user, and a persistent timer at 09:00 Asia/Kolkata; systemd-analyze (when present)
    accepts both once the placeholders are filled in, and the timer fires at 03:30 UTC.
    """
    service = (UNITS / "xts-token-refresh.service").read_text(encoding="utf-8")
    timer = (UNITS / "xts-token-refresh.timer").read_text(encoding="utf-8")
    settings = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in (service + timer).splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert settings["Type"] == "oneshot"
    assert settings["ExecStart"] == "/path/to/xts-token-refresher/refresh_xts_token.sh"
    assert settings["WorkingDirectory"] == "/path/to/xts-token-refresher"
    assert settings["User"] == "your_user"
    assert settings["OnCalendar"] == "*-*-* 09:00:00 Asia/Kolkata"
    assert settings["Persistent"] == "true"
    assert settings["WantedBy"] == "timers.target"

    analyze = shutil.which("systemd-analyze", path=TOOL_PATH)
    if analyze is None:
        return  # the text above is all a machine without systemd can check
    calendar = run_process(
        [analyze, "calendar", "--iterations=2", settings["OnCalendar"]], env={"TZ": "UTC"}
    )
    assert calendar.returncode == 0, calendar.stderr
    assert "03:30:00 UTC" in calendar.stdout


# -- machines without zoneinfo data -------------------------------------------------------------


HIDDEN_TZDATA = 'raise ImportError("the tzdata package is hidden by tests/test_cron.py")\n'


def no_zoneinfo_environment(tmp_path: Path, machine_zone: str) -> dict[str, str]:
    """An environment in which Python finds no zoneinfo data at all: PYTHONTZPATH names an
    empty folder, and a ``tzdata`` package that cannot be imported shadows any installed one."""
    empty = tmp_path / "empty-zoneinfo"
    empty.mkdir(exist_ok=True)
    shadow = tmp_path / "no-tzdata" / "tzdata"
    shadow.mkdir(parents=True, exist_ok=True)
    (shadow / "__init__.py").write_text(HIDDEN_TZDATA, encoding="utf-8")
    return {
        "TZ": machine_zone,
        "PYTHONTZPATH": str(empty),
        "PYTHONPATH": str(shadow.parent),
    }


ZONE_CHECK = """
import sys, zoneinfo
for name in sys.argv[1:]:
    try:
        zoneinfo.ZoneInfo(name)
    except zoneinfo.ZoneInfoNotFoundError:
        continue
    sys.exit(f"{name} was found: the fallback would not be used")
"""


@pytest.mark.parametrize(
    ("machine_zone", "zone", "at", "hours"),
    [
        pytest.param("UTC", "Asia/Kolkata", "09:00", "30 3", id="ist-on-a-utc-machine"),
        pytest.param("Asia/Kolkata", "Asia/Kolkata", "09:00", "0 9", id="ist-on-an-ist-machine"),
        pytest.param("Asia/Kolkata", "UTC", "03:30", "0 9", id="utc-on-an-ist-machine"),
    ],
)
def test_cron_print_without_zoneinfo_data_uses_correct_built_in_offsets(
    tmp_path: Path, machine_zone: str, zone: str, at: str, hours: str
) -> None:
    """With no zoneinfo database and no tzdata package, ``cron print`` converts with its
    built-in offsets, and they are right: 09:00 IST is 03:30 UTC, and 09:00 on an IST machine.
    It fails with the fallback Asia/Kolkata offset wrong in sign (-05:30) or missing."""
    env = no_zoneinfo_environment(tmp_path, machine_zone)
    check = run_process([PYTHON, "-c", ZONE_CHECK, zone, machine_zone], env=env, timeout=30)
    assert check.returncode == 0, check.stderr  # the zones really are missing in there
    done = run_process(
        [PYTHON, str(SCRIPT), "cron", "print", "--tz", zone, "--at", at], env=env, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1, done.stdout
    assert lines[0].startswith(f"{hours} * * * "), lines[0]
    assert "Traceback" not in done.stderr
