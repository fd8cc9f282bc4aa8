"""``xts_token_refresh.py systemd print|install|uninstall``: the service and timer units.

The real script runs as a subprocess, as in tests/test_cron.py. Nothing is written where
systemd reads units: ``install --dir DIR`` writes into a temporary folder only, and the
installs that tell systemd run as an ordinary user (in-process, with ``euid`` naming one),
whose user units go below ``HOME``, a temporary folder (these tests run as root, whose units
would go to ``/etc/systemd/system``). systemd-analyze (``verify``, ``calendar``) judges what
was written; a missing systemd-analyze skips those checks (fails under CI=true).

systemctl is either the real one, which on a machine without a running systemd (a container:
this project's CI) cannot reach systemd, or a stand-in first on PATH that records how it was
called and answers as a reachable systemd does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from conftest import (
    APP_DIR,
    CRON_PATH,
    PYTHON,
    SCRIPT,
    WRAPPER,
    copy_program,
    run_process,
    skip_or_fail,
)

from xts_refresher import systemd
from xts_refresher.errors import ConfigError, XtsRefreshError

TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
AS_ROOT = os.geteuid() == 0
ACCOUNTS = {"huf": "XTS_DEADLINE=60\n", "self": ""}
SHARED_DEADLINE = "XTS_DEADLINE=100\n"
NAME = "xts-token-refresh"
# TimeoutStartSec=: the longest XTS_DEADLINE + the hook's 120 s + 35 s of alerts + 60 s.
TIMEOUT = str(86400 + 120 + 35 + 60)
# An ordinary user (no entry in /etc/passwd needed): its units are user units below HOME.
USER_EUID = 4242
EXAMPLE_DIR = Path("/path/to/xts-token-refresher")
# systemctl as a reachable systemd answers; FAKE_SYSTEMCTL_FAIL=<verb> makes that verb fail.
FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> {log}
for word in "$@"; do
  if [ "$word" = "$FAKE_SYSTEMCTL_FAIL" ]; then
    echo "Failed to $word unit: Access denied" >&2
    exit 1
  fi
done
case "$*" in
  *show*) echo "Version=252" ;;
  *is-active*) echo "active" ;;
esac
exit 0
"""


def example_header(name: str) -> str:
    """The lines above the generated text in the examples of ``systemd/``."""
    return (
        "# An example, not a file to copy: what `xts_token_refresh.py systemd install` writes\n"
        f"# to /etc/systemd/system/{name} for the program in /path/to/xts-token-refresher,\n"
        "# daily at 09:00 Asia/Kolkata, when root installs it (User= is whoever installs it).\n"
        "# `xts_token_refresh.py systemd print` shows the units for your folder.\n"
        "#\n"
    )


def systemd_cli(
    *args: str,
    script: Path = SCRIPT,
    home: Path | None = None,
    env: dict[str, str] | None = None,
    tz: str = "UTC",
) -> subprocess.CompletedProcess[str]:
    """Run ``<script> systemd <args>`` in a bare environment (cron's PATH unless ``env`` sets
    one), with ``HOME`` a folder of the test's."""
    full = {"HOME": str(home or Path("/nonexistent")), "TZ": tz, **(env or {})}
    return run_process([PYTHON, str(script), "systemd", *args], env=full, timeout=60)


def printed_units(stdout: str) -> dict[Path, str]:
    """The units ``systemd print`` shows, by the path in their ``# file:`` line."""
    units: dict[Path, str] = {}
    current: Path | None = None
    for line in stdout.splitlines(keepends=True):
        if line.startswith("# file: "):
            current = Path(line[len("# file: ") :].strip())
            units[current] = ""
        else:
            assert current is not None, f"text before the first # file: line: {line!r}"
            units[current] += line
    return {path: text.rstrip("\n") + "\n" for path, text in units.items()}


def unit_texts(stdout: str) -> list[str]:
    """The service's and the timer's text, as ``systemd print`` shows them."""
    texts = list(printed_units(stdout).values())
    assert len(texts) == 2, stdout
    return texts


def settings_of(text: str) -> dict[str, str]:
    """A unit's ``Key=value`` lines (comments left out); a key must appear once."""
    pairs = [
        line.split("=", 1)
        for line in text.splitlines()
        if "=" in line and not line.startswith(("#", ";"))
    ]
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), keys
    return dict((key, value) for key, value in pairs)


def analyze() -> str:
    """systemd-analyze's path (skip, or fail under CI=true, without it)."""
    found = shutil.which("systemd-analyze", path=TOOL_PATH)
    if found is None:
        skip_or_fail("systemd-analyze is not installed (Debian: apt-get install systemd)")
    assert found is not None
    return found


def assert_verified(*units: Path, user: bool = False, runtime: Path | None = None) -> None:
    """``systemd-analyze verify`` accepts ``units``, with not a word about any of them."""
    env = {"SYSTEMD_LOG_LEVEL": "notice"}
    argv = [analyze(), "verify", "--man=no"]
    if user:
        assert runtime is not None
        env["XDG_RUNTIME_DIR"] = str(runtime)
        argv.append("--user")
    done = run_process([*argv, *map(str, units)], env=env, timeout=120)
    complaints = [
        line for line in done.stderr.splitlines() if any(unit.name in line for unit in units)
    ]
    assert done.returncode == 0, done.stdout + done.stderr
    assert complaints == [], done.stderr


def utc_elapses(on_calendar: str, iterations: int = 7) -> list[datetime]:
    """The next ``iterations`` elapses of ``on_calendar``, from systemd-analyze's
    ``(in UTC):`` lines (shown when the local zone is not UTC: New York here)."""
    done = run_process(
        [analyze(), "calendar", f"--iterations={iterations}", on_calendar],
        env={"TZ": "America/New_York"},
    )
    assert done.returncode == 0, done.stderr
    found = re.findall(r"\(in UTC\): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", done.stdout)
    assert len(found) == iterations, done.stdout
    return [datetime.strptime(when, "%Y-%m-%d %H:%M:%S") for when in found]


def default_folder(home: Path) -> Path:
    """Where the units go without --dir, for whoever runs the tests."""
    return Path("/etc/systemd/system") if AS_ROOT else home / ".config" / "systemd" / "user"


def systemd_as_user(
    action: str,
    home: Path,
    capsys: pytest.CaptureFixture[str],
    days: str = "daily",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``systemd <action>`` in-process as an ordinary user whose HOME is ``home`` (cron's PATH
    unless ``env`` sets one): exit code, stdout and stderr, a failure's message printed as
    ``main`` prints it."""
    environ = {"HOME": str(home), "USER": "trader", "PATH": CRON_PATH, **(env or {})}
    try:
        code = systemd.systemd_command(
            action, "09:00", "Asia/Kolkata", days, environ=environ, euid=USER_EUID
        )
    except XtsRefreshError as exc:
        code = exc.exit_code
        print(f"✗ {exc}")
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess([action], code, out, err)


def user_units(home: Path) -> Path:
    """Where an ordinary user's units go: ``~/.config/systemd/user``."""
    return home / ".config" / "systemd" / "user"


@pytest.fixture
def program_copy(tmp_path: Path) -> Path:
    """A copy of the program whose ``accounts/`` holds ``huf.env`` (XTS_DEADLINE=60) and
    ``self.env``, and whose ``.env`` sets XTS_DEADLINE=100; its folder, resolved."""
    return program_with_accounts(tmp_path / "program")


def program_with_accounts(folder: Path) -> Path:
    """Copy the script, the wrapper and the package into ``folder``, with the accounts."""
    copy_program(folder, SCRIPT.name, WRAPPER.name)
    (folder / ".env").write_text(SHARED_DEADLINE, encoding="utf-8")
    accounts = folder / "accounts"
    accounts.mkdir(mode=0o700)
    for name, text in ACCOUNTS.items():
        (accounts / f"{name}.env").write_text(f"# account {name}\n{text}", encoding="utf-8")
    for path in (folder / ".env", *accounts.iterdir()):
        path.chmod(0o600)
    return folder.resolve()


class FakeSystemctl:
    """A systemctl first on PATH that answers as a reachable systemd and records its calls."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir()
        self.log = folder / "calls.log"
        self.program = folder / "systemctl"
        self.program.write_text(FAKE_SYSTEMCTL.format(log=self.log), encoding="utf-8")
        self.program.chmod(0o755)
        self.path = f"{folder}:{CRON_PATH}"

    def calls(self) -> list[str]:
        """Each call's arguments (``--user`` left out), in order; the log is then emptied."""
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8").splitlines()
        self.log.unlink()
        return [line.removeprefix("--user ") for line in lines]


@pytest.fixture
def fake_systemctl(tmp_path: Path) -> FakeSystemctl:
    """A stand-in for a systemctl that reaches systemd."""
    return FakeSystemctl(tmp_path / "fakebin")


# -- print ----------------------------------------------------------------------------------------


@pytest.mark.system
def test_print_shows_both_units_with_absolute_paths(tmp_path: Path) -> None:
    """``systemd print``: the service and the timer, each under its ``# file:`` line, that
    run this folder's wrapper as a oneshot with UMask=0077, a TimeoutStartSec= of the longest
    XTS_DEADLINE plus the margins, and a persistent timer at 09:00 Asia/Kolkata; notes on
    stderr only; systemd-analyze accepts both as printed."""
    done = systemd_cli("print", home=tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    units = printed_units(done.stdout)
    folder = default_folder(tmp_path)
    assert list(units) == [folder / f"{NAME}.service", folder / f"{NAME}.timer"]
    service, timer = (settings_of(text) for text in units.values())
    assert service["Type"] == "oneshot"
    assert service["ExecStart"] == str(WRAPPER)
    assert service["WorkingDirectory"] == str(APP_DIR)
    assert service["UMask"] == "0077"
    assert service["TimeoutStartSec"] == TIMEOUT
    assert (service.get("User") == "root") == AS_ROOT
    assert timer["OnCalendar"] == "*-*-* 09:00:00 Asia/Kolkata"
    assert timer["Persistent"] == "true"
    assert timer["WantedBy"] == "timers.target"
    for text in units.values():
        assert text.startswith(f"# xts-token-refresh:{APP_DIR}\n")
    assert done.stderr and all(line.startswith("# ") for line in done.stderr.splitlines())
    assert f"TimeoutStartSec={TIMEOUT}: XTS_DEADLINE at its maximum (86400 s)" in done.stderr
    assert re.search(r"# 09:00 Asia/Kolkata is \d\d:\d\d today in this machine's zone", done.stderr)

    for path, text in units.items():
        (tmp_path / path.name).write_text(text, encoding="utf-8")
    assert_verified(tmp_path / f"{NAME}.service", tmp_path / f"{NAME}.timer")


@pytest.mark.system
@pytest.mark.parametrize(
    ("args", "on_calendar", "utc", "weekdays"),
    [
        ([], "*-*-* 09:00:00 Asia/Kolkata", "03:30", {0, 1, 2, 3, 4, 5, 6}),
        (["--days", "weekdays"], "Mon..Fri *-*-* 09:00:00 Asia/Kolkata", "03:30", {0, 1, 2, 3, 4}),
        (["--at", "8:45"], "*-*-* 08:45:00 Asia/Kolkata", "03:15", {0, 1, 2, 3, 4, 5, 6}),
        (["--at", "23:00", "--tz", "UTC", "--days", "weekdays"], "Mon..Fri *-*-* 23:00:00 UTC",
         "23:00", {0, 1, 2, 3, 4}),
    ],
)  # fmt: skip
def test_the_timer_fires_at_the_time_in_its_zone(
    args: list[str], on_calendar: str, utc: str, weekdays: set[int]
) -> None:
    """``OnCalendar=`` names the zone, no conversion: systemd-analyze's next seven elapses of
    09:00 Asia/Kolkata are at 03:30 UTC, every day or Monday to Friday only."""
    done = systemd_cli("print", *args, tz="America/New_York")

    assert done.returncode == 0, done.stderr
    timer = settings_of(unit_texts(done.stdout)[1])
    assert timer["OnCalendar"] == on_calendar
    elapses = utc_elapses(timer["OnCalendar"])
    assert {f"{when:%H:%M}" for when in elapses} == {utc}
    assert {when.weekday() for when in elapses} == weekdays
    assert len({when.date() for when in elapses}) == 7


def test_print_warns_of_a_browser_account_no_run_can_sign_in(program_copy: Path) -> None:
    """A timer without --if-needed over a browser account that neither waits for its holder
    nor has a token command gets the warning, naming the way to give it a timer of its own."""
    (program_copy / "accounts" / "self.env").write_text(
        "XTS_LOGIN=browser\nXTS_API_ROOT=http://127.0.0.1:9\nXTS_USER_ID=CK68\n"
        "XTS_INTERACTIVE_API_KEY=ik-FAKE-7f3a9c-interactive-key\n"
        "XTS_INTERACTIVE_API_SECRET=is-FAKE-Qx81Zr-interactive-secret\n",
        encoding="utf-8",
    )
    done = systemd_cli("print", script=program_copy / SCRIPT.name)

    assert done.returncode == 0, done.stdout + done.stderr
    warned = [line for line in done.stderr.splitlines() if "XTS_LOGIN=browser" in line]
    assert len(warned) == 1 and warned[0].startswith("# WARNING: account self "), done.stderr
    assert "`xts_token_refresh.py systemd install --account self --at 08:30`" in warned[0]
    assert "ik-FAKE" not in done.stdout + done.stderr
    huf = systemd_cli("print", "--account", "huf", script=program_copy / SCRIPT.name)
    assert huf.returncode == 0 and "XTS_LOGIN=browser" not in huf.stderr, huf.stderr


def test_path_flags_are_passed_on_quoted_for_systemd(tmp_path: Path) -> None:
    """Path flags given to ``systemd`` reach ExecStart= as absolute paths; a word with a space,
    ``%`` or ``$`` is double-quoted, ``%`` and ``$`` doubled, as systemd reads them back."""
    env_file = tmp_path / "my 100% $HOME.env"
    relative_token = os.path.relpath(tmp_path / "tok.json", APP_DIR)
    done = systemd_cli(
        "print", "--env-file", str(env_file), "--token-file", relative_token, home=tmp_path
    )

    assert done.returncode == 0, done.stdout + done.stderr
    service = settings_of(unit_texts(done.stdout)[0])
    quoted = str(env_file).replace("%", "%%").replace("$", "$$")
    assert service["ExecStart"] == (
        f'{WRAPPER} --env-file "{quoted}" --token-file {tmp_path / "tok.json"}'
    )


@pytest.mark.parametrize("flag", ["--env-file", "--token-file", "--log-file"])
@pytest.mark.parametrize(
    "char", ["\n", "\r", "\x1b", "\x85", "\u2028"], ids=["lf", "cr", "esc", "nel", "ls"]
)
def test_a_control_character_in_a_path_flag_never_reaches_a_unit(
    tmp_path: Path, flag: str, char: str
) -> None:
    """A path flag holding a line break or another control character (C1 ones and Unicode's
    line separator too, which Python splits lines at): exit 2 naming the path, escaped, and
    no unit is printed, in the words the crontab line uses."""
    path = tmp_path / f"job{char}x.txt"

    done = systemd_cli("print", flag, str(path), home=tmp_path)

    assert done.returncode == 2, done.stdout + done.stderr
    assert f"The path {str(path)!r} holds a control character" in done.stdout
    assert "a systemd unit cannot carry" in done.stdout
    assert "ExecStart=" not in done.stdout
    assert len(done.stdout.splitlines()) == 1, done.stdout  # the path shown escaped


def test_a_control_character_in_the_programs_folder_never_reaches_a_unit(tmp_path: Path) -> None:
    """The program in a folder whose name holds a newline: ``systemd install --dir`` exits 2
    naming the folder, and writes nothing."""
    folder = copy_program(tmp_path / "bots\nExecStartPre=/bin/true", SCRIPT.name, WRAPPER.name)
    units = tmp_path / "units"
    units.mkdir()

    done = systemd_cli("install", "--dir", str(units), script=folder / SCRIPT.name, home=tmp_path)

    assert done.returncode == 2, done.stdout + done.stderr
    assert f"The path {str(folder)!r} holds a control character" in done.stdout
    assert list(units.iterdir()) == []


# -- install --dir ------------------------------------------------------------------------------


@pytest.mark.system
def test_install_dir_writes_two_units_systemd_accepts(
    tmp_path: Path, fake_systemctl: FakeSystemctl
) -> None:
    """``systemd install --dir DIR`` writes the two units (mode 0644, the text ``print``
    shows) into DIR, creating it, and nothing else: no systemctl call, exit 0."""
    units_dir = tmp_path / "units" / "new"
    printed = systemd_cli("print", "--days", "weekdays", "--dir", str(units_dir), home=tmp_path)
    done = systemd_cli(
        "install", "--days", "weekdays", "--dir", str(units_dir),
        home=tmp_path, env={"PATH": fake_systemctl.path},
    )  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(path.name for path in units_dir.iterdir()) == [
        f"{NAME}.service",
        f"{NAME}.timer",
    ]
    for path, text in printed_units(printed.stdout).items():
        assert path.parent == units_dir
        assert path.read_text(encoding="utf-8") == text
        assert path.stat().st_mode & 0o777 == 0o644
    assert fake_systemctl.calls() == []
    assert "systemd was not told (--dir)" in done.stdout
    assert f"✓ Wrote {units_dir / f'{NAME}.timer'}" in done.stdout
    assert_verified(units_dir / f"{NAME}.service", units_dir / f"{NAME}.timer")


@pytest.mark.system
def test_units_for_a_folder_with_spaces_percent_and_dollar(tmp_path: Path) -> None:
    """A program in ``my 50% $bots``: WorkingDirectory=, ExecStart= and Documentation= come
    out so that systemd-analyze finds the wrapper (it checks that ExecStart is executable)."""
    program = program_with_accounts(tmp_path / "my 50% $bots")
    units_dir = tmp_path / "units"

    done = systemd_cli("install", "--dir", str(units_dir), script=program / SCRIPT.name)

    assert done.returncode == 0, done.stdout + done.stderr
    service = settings_of((units_dir / f"{NAME}.service").read_text(encoding="utf-8"))
    escaped = str(program).replace("%", "%%")
    assert service["WorkingDirectory"] == escaped
    # The program's own path takes no $ variables: only its arguments do.
    assert service["ExecStart"] == f'"{escaped}/refresh_xts_token.sh"'
    assert_verified(units_dir / f"{NAME}.service", units_dir / f"{NAME}.timer")


# -- accounts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("before_the_command", [False, True])
def test_units_for_an_account_are_named_after_it(
    program_copy: Path, tmp_path: Path, before_the_command: bool
) -> None:
    """``--account huf`` (before or after ``systemd``): units named ``xts-token-refresh-huf``
    that run the wrapper with ``--account huf``, marked for the account; the timeout is the
    same whatever the settings files set XTS_DEADLINE to (60 s for huf, 100 s in .env)."""
    script = program_copy / SCRIPT.name
    if before_the_command:
        argv = [PYTHON, str(script), "--account", "huf", "systemd", "print"]
        done = run_process(argv, env={"HOME": str(tmp_path), "TZ": "UTC"}, timeout=60)
    else:
        done = systemd_cli("print", "--account", "huf", script=script, home=tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    units = printed_units(done.stdout)
    assert [path.name for path in units] == [f"{NAME}-huf.service", f"{NAME}-huf.timer"]
    service_text, timer_text = units.values()
    service = settings_of(service_text)
    assert service["ExecStart"] == f"{program_copy / 'refresh_xts_token.sh'} --account huf"
    assert service["WorkingDirectory"] == str(program_copy)
    assert service["TimeoutStartSec"] == TIMEOUT
    assert "(account huf)" in service["Description"]
    for text in (service_text, timer_text):
        assert text.startswith(f"# xts-token-refresh:{program_copy} accounts=huf\n")
    assert "systemd uninstall --account huf` removes it" in service_text

    every = systemd_cli("print", script=script, home=tmp_path)
    assert every.returncode == 0, every.stderr
    service = settings_of(unit_texts(every.stdout)[0])
    assert service["ExecStart"] == str(program_copy / "refresh_xts_token.sh")
    assert service["TimeoutStartSec"] == TIMEOUT


@pytest.mark.system
def test_units_for_accounts_coexist_and_go_one_by_one(program_copy: Path, tmp_path: Path) -> None:
    """The units for all accounts and for huf, installed into one folder, are four files that
    systemd-analyze accepts together (a warning says huf is logged in by both); uninstalling
    huf's removes only those two, and installing twice changes nothing."""
    script = program_copy / SCRIPT.name
    units_dir = tmp_path / "units"
    both = ("self", "huf")

    for accounts in ((), ("huf",), both):
        flags = [part for name in accounts for part in ("--account", name)]
        done = systemd_cli("install", "--dir", str(units_dir), *flags, script=script)
        assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING: account huf is also logged in by xts-token-refresh-huf.timer" in done.stderr
    names = sorted(path.name for path in units_dir.iterdir())
    kinds = ("service", "timer")
    assert names == sorted(
        f"{NAME}{suffix}.{kind}" for suffix in ("", "-huf", "-huf-self") for kind in kinds
    )
    service = settings_of((units_dir / f"{NAME}-huf-self.service").read_text(encoding="utf-8"))
    assert service["ExecStart"].endswith("refresh_xts_token.sh --account huf --account self")
    assert_verified(*sorted(units_dir.iterdir()))

    before = {path.name: path.read_bytes() for path in units_dir.iterdir()}
    again = systemd_cli("install", "--dir", str(units_dir), "--account", "huf", script=script)
    assert again.returncode == 0, again.stderr
    assert {path.name: path.read_bytes() for path in units_dir.iterdir()} == before

    gone = systemd_cli("uninstall", "--dir", str(units_dir), "--account", "huf", script=script)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert sorted(path.name for path in units_dir.iterdir()) == sorted(
        f"{NAME}{suffix}.{kind}" for suffix in ("", "-huf-self") for kind in kinds
    )
    rest = systemd_cli("uninstall", "--dir", str(units_dir), script=script)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert "systemd uninstall --account huf --account self`" in rest.stdout
    assert sorted(path.name for path in units_dir.iterdir()) == [
        f"{NAME}-huf-self.service",
        f"{NAME}-huf-self.timer",
    ]


def test_unit_names_keep_selections_apart() -> None:
    """Sorted names joined by ``-``, a ``-`` inside a name escaped as systemd-escape does, so
    no two selections share a name; a name no account may have is refused."""
    assert systemd.unit_name() == NAME
    assert systemd.unit_name(("huf",)) == f"{NAME}-huf"
    assert systemd.unit_name(("self", "huf", "self")) == f"{NAME}-huf-self"
    assert systemd.unit_name(("huf-self",)) == f"{NAME}-huf\\x2dself"
    assert systemd.unit_name(("huf-self",)) != systemd.unit_name(("huf", "self"))
    for bad in ("a b", "a:b", ".hidden", "x" * 65):
        with pytest.raises(ConfigError, match="Not an account name"):
            systemd.unit_name((bad,))


def test_exec_words_are_quoted_as_systemd_reads_them() -> None:
    assert systemd.exec_word("/opt/xts/refresh_xts_token.sh") == "/opt/xts/refresh_xts_token.sh"
    assert systemd.exec_word("--account") == "--account"
    assert systemd.exec_word("/opt/my bots") == '"/opt/my bots"'
    assert systemd.exec_word('/opt/a"b\\c') == '"/opt/a\\"b\\\\c"'
    assert systemd.exec_word("/opt/50%/$x") == '"/opt/50%%/$$x"'
    assert systemd.exec_word("/opt/50%/$x", program=True) == '"/opt/50%%/$x"'
    with pytest.raises(ConfigError, match="control character"):
        systemd.exec_word("/opt/a\nb")


# -- install and uninstall, systemd told --------------------------------------------------------


def test_install_without_a_reachable_systemd_says_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On this machine systemctl cannot reach systemd (no systemd runs in the container):
    install writes the units, exits 0, says plainly that the timer is not active and which
    commands make it so, and never claims an active timer. Uninstall removes exactly those two
    files (and an ``enable`` link beside them), not the folder's other files."""
    if Path("/run/systemd/system").is_dir():
        pytest.skip("systemd runs on this machine: the real systemctl would reach it")
    units_dir = user_units(tmp_path)

    done = systemd_as_user("install", tmp_path, capsys, days="weekdays")

    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(path.name for path in units_dir.iterdir()) == [
        f"{NAME}.service",
        f"{NAME}.timer",
    ]
    assert "⚠ The timer is NOT active: systemctl cannot reach systemd here" in done.stdout
    assert "    systemctl --user daemon-reload\n" in done.stdout
    assert f"    systemctl --user enable --now {NAME}.timer\n" in done.stdout
    assert "is active" not in done.stdout
    assert f"✓ Wrote {units_dir / f'{NAME}.service'}" in done.stdout

    unrelated = units_dir / "other.service"
    unrelated.write_text("[Service]\nExecStart=/bin/true\n", encoding="utf-8")
    (units_dir / "timers.target.wants").mkdir()
    link = units_dir / "timers.target.wants" / f"{NAME}.timer"
    link.symlink_to(units_dir / f"{NAME}.timer")
    gone = systemd_as_user("uninstall", tmp_path, capsys)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert sorted(path.name for path in units_dir.iterdir()) == [
        "other.service",
        "timers.target.wants",
    ]
    assert not link.is_symlink()
    assert f"✓ Removed {units_dir / f'{NAME}.timer'}" in gone.stdout

    again = systemd_as_user("uninstall", tmp_path, capsys)
    assert again.returncode == 0, again.stderr
    assert "Nothing to remove" in again.stdout


def test_install_with_a_reachable_systemd_enables_the_timer(
    tmp_path: Path, fake_systemctl: FakeSystemctl, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where systemctl reaches systemd: install runs daemon-reload and enable --now <timer>
    and reports the timer active; uninstall runs disable --now <timer>, removes the two files
    and runs daemon-reload."""
    units_dir = user_units(tmp_path)
    env = {"PATH": fake_systemctl.path}

    done = systemd_as_user("install", tmp_path, capsys, env=env)

    assert done.returncode == 0, done.stdout + done.stderr
    assert fake_systemctl.calls() == [
        "show --property=Version",
        "daemon-reload",
        f"enable --now {NAME}.timer",
        f"is-active {NAME}.timer",
    ]
    assert "the timer is active" in done.stdout
    assert (units_dir / f"{NAME}.timer").is_file()

    gone = systemd_as_user("uninstall", tmp_path, capsys, env=env)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert fake_systemctl.calls() == [
        "show --property=Version",
        f"disable --now {NAME}.timer",
        "daemon-reload",
    ]
    assert list(units_dir.iterdir()) == []


def test_a_refusing_systemctl_exits_2_and_says_what_was_written(
    tmp_path: Path, fake_systemctl: FakeSystemctl, capsys: pytest.CaptureFixture[str]
) -> None:
    units_dir = user_units(tmp_path)
    env = {"PATH": fake_systemctl.path, "FAKE_SYSTEMCTL_FAIL": "enable"}

    done = systemd_as_user("install", tmp_path, capsys, env=env)

    assert done.returncode == 2, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "enable --now xts-token-refresh.timer` failed: Failed to enable unit" in output
    assert f"{units_dir / f'{NAME}.timer'} are written" in output
    assert "is active" not in output


def test_another_folders_units_are_left_alone(tmp_path: Path) -> None:
    """A unit of the same name from another folder is neither replaced (exit 2, nothing
    written) nor removed."""
    units_dir = tmp_path / "units"
    units_dir.mkdir()
    foreign = "# xts-token-refresh:/opt/other\n[Timer]\nOnCalendar=daily\n"
    (units_dir / f"{NAME}.timer").write_text(foreign, encoding="utf-8")

    done = systemd_cli("install", "--dir", str(units_dir))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "belongs to the program in /opt/other" in done.stdout + done.stderr
    assert sorted(path.name for path in units_dir.iterdir()) == [f"{NAME}.timer"]

    gone = systemd_cli("uninstall", "--dir", str(units_dir))
    assert gone.returncode == 0, gone.stderr
    assert "Left alone" in gone.stdout
    assert (units_dir / f"{NAME}.timer").read_text(encoding="utf-8") == foreign


# -- user units (anyone but root), in-process -----------------------------------------------------


@pytest.fixture
def user_home(tmp_path: Path) -> Path:
    """An ordinary user's home folder, empty."""
    home = tmp_path / "home"
    home.mkdir()
    return home


def test_an_ordinary_user_gets_user_units(
    user_home: Path, fake_systemctl: FakeSystemctl, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not root: units in ~/.config/systemd/user, without User=, Group= or the system's
    network-online.target, enabled with ``systemctl --user``; the notes tell of
    ``loginctl enable-linger``."""
    environ = {"HOME": str(user_home), "USER": "trader", "PATH": fake_systemctl.path}

    code = systemd.systemd_command(
        "install", "09:00", "Asia/Kolkata", "weekdays", environ=environ, euid=4242
    )

    out, err = capsys.readouterr()
    assert code == 0, out + err
    folder = user_home / ".config" / "systemd" / "user"
    assert sorted(path.name for path in folder.iterdir()) == [f"{NAME}.service", f"{NAME}.timer"]
    lines = fake_systemctl.log.read_text(encoding="utf-8").splitlines()
    assert lines == [
        "--user show --property=Version",
        "--user daemon-reload",
        f"--user enable --now {NAME}.timer",
        f"--user is-active {NAME}.timer",
    ]
    service = settings_of((folder / f"{NAME}.service").read_text(encoding="utf-8"))
    assert "User" not in service and "Group" not in service and "Wants" not in service
    assert "sudo loginctl enable-linger trader" in err
    assert "systemctl --user list-timers" in out


def test_user_units_without_a_session_say_what_to_run(
    user_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``systemctl --user`` without the user's session bus cannot reach systemd: the units
    are written, exit 0, and the commands (with ``--user``, and the linger) are shown."""
    if Path("/run/systemd/system").is_dir():
        pytest.skip("systemd runs on this machine: the real systemctl might reach it")
    environ = {"HOME": str(user_home), "USER": "trader", "PATH": CRON_PATH}

    code = systemd.systemd_command(
        "install", "09:00", "Asia/Kolkata", "daily", environ=environ, euid=4242
    )

    out, _ = capsys.readouterr()
    assert code == 0, out
    assert "⚠ The timer is NOT active" in out
    assert "as trader in a login session" in out
    assert f"    systemctl --user enable --now {NAME}.timer\n" in out
    assert "    sudo loginctl enable-linger trader" in out
    assert (user_home / ".config" / "systemd" / "user" / f"{NAME}.timer").is_file()


@pytest.mark.system
def test_user_units_pass_systemd_analyze_verify_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    units_dir = tmp_path / "units"
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    code = systemd.systemd_command(
        "install", "09:00", "Asia/Kolkata", "daily",
        environ={"HOME": str(tmp_path), "PATH": CRON_PATH}, unit_dir=str(units_dir), euid=4242,
    )  # fmt: skip
    capsys.readouterr()
    assert code == 0
    assert_verified(
        units_dir / f"{NAME}.service", units_dir / f"{NAME}.timer", user=True, runtime=runtime
    )


def test_xdg_config_home_decides_the_user_folder(tmp_path: Path) -> None:
    scope = systemd.unit_scope({"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "HOME": "/x"}, euid=4242)
    assert scope.folder == tmp_path / "cfg" / "systemd" / "user"
    assert not scope.system and scope.told
    assert systemd.unit_scope({}, euid=0).folder == Path("/etc/systemd/system")
    assert not systemd.unit_scope({}, unit_dir=str(tmp_path), euid=0).told


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "25:00"], "--at '25:00' is not a time of day"),
        (["--at", "9"], "Use HH:MM"),
        (["--tz", "Mars/Olympus_Mons"], "Unknown time zone 'Mars/Olympus_Mons'"),
        (["--tz", "../../etc/passwd"], "Unknown time zone"),
        (["--days", "sundays"], "argument --days: invalid choice: 'sundays'"),
        (["--account", "nobody"], "Unknown account 'nobody': the accounts are huf, self"),
        (["--account", "a b"], "Unknown account 'a b'"),
    ],
)
@pytest.mark.parametrize("action", ["print", "install"])
def test_bad_options_exit_2_and_write_nothing(
    program_copy: Path, tmp_path: Path, action: str, args: list[str], message: str
) -> None:
    units_dir = tmp_path / "units"

    done = systemd_cli(action, *args, "--dir", str(units_dir), script=program_copy / SCRIPT.name)

    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stdout + done.stderr
    assert "[Service]" not in done.stdout
    assert not units_dir.exists()


def test_a_unit_folder_that_cannot_be_made_is_exit_4(program_copy: Path, tmp_path: Path) -> None:
    """``systemd install --dir`` below a regular file: the folder cannot be made, so the units
    cannot be written: exit 4 naming the folder, not a claim that a unit already exists."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n", encoding="utf-8")

    done = systemd_cli(
        "install", "--dir", str(blocker / "units"), script=program_copy / SCRIPT.name
    )

    assert done.returncode == 4, done.stdout + done.stderr
    assert f"Cannot write the units into {blocker / 'units'}" in done.stdout + done.stderr
    assert "exists and belongs to" not in done.stdout + done.stderr
    assert blocker.read_text(encoding="utf-8") == "not a folder\n"


def test_help_describes_the_command() -> None:
    done = run_process([PYTHON, str(SCRIPT), "systemd", "--help"], env={"COLUMNS": "100"})
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for words in ("/etc/systemd/system", "~/.config/systemd/user", "--dir DIR", "enable --now"):
        assert words in text, done.stdout


# -- the examples in systemd/ ---------------------------------------------------------------------


def test_the_examples_are_what_install_writes() -> None:
    """``systemd/xts-token-refresh.service`` and ``.timer`` are documentation: the units
    install writes as root for a program in /path/to/xts-token-refresher (User=your_user),
    under a header that says so. Regenerate them with the snippet below when this fails."""
    scope = systemd.Scope(True, "your_user", "your_group", systemd.SYSTEM_UNIT_DIR, True)
    units = systemd.render("09:00", "Asia/Kolkata", "daily", scope, app_dir=EXAMPLE_DIR)
    for name, text in ((f"{NAME}.service", units.service), (f"{NAME}.timer", units.timer)):
        example = (APP_DIR / "systemd" / name).read_text(encoding="utf-8")
        assert example == example_header(name) + text, name
