"""The fast tier: the pure functions, called in-process (no subprocess, network or sleeping).

Every other test file drives the real script against the simulator; these run in about a
second, so a change to one of the functions below is checked at once. Expectations follow
the functions' docstrings.
"""

from __future__ import annotations

import argparse
import base64
import importlib.metadata
import json
import os
import re
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import APP_DIR, skip_or_fail

import xts_refresher
from xts_refresher import (
    cli,
    cron,
    errors,
    locks,
    parsers,
    paths,
    schedule,
    settings,
    store,
    urls,
    wrapper,
)
from xts_refresher.accounts import load_settings
from xts_refresher.answers import (
    LoginResult,
    RedirectedError,
    RetryableError,
    RouteNotFoundError,
    decode_answer,
    describe_xts_error,
    login_result,
    one_line,
    require_token,
)
from xts_refresher.client import unsafe_connection
from xts_refresher.errors import (
    ConfigError,
    LoginRefusedError,
    TokenUnavailableError,
    XtsRefreshError,
)
from xts_refresher.sessions import INTERACTIVE, MARKETDATA, SESSIONS, Session
from xts_refresher.settings import Credentials, PathOverrides, TelegramSettings
from xts_refresher.store import StoredToken

REQUIREMENTS = APP_DIR / "requirements.txt"
NO_SUCH_USER = "no_such_user_xts_refresher_units"


# -- durations, users and URLs (store, settings) ---------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (0.9, "0s"),
        (1, "1s"),
        (45, "45s"),
        (59, "59s"),
        (60, "1m"),
        (12 * 60, "12m"),
        (12 * 60 + 59, "12m"),
        (3600, "1h 00m"),
        (3900, "1h 05m"),
        (23 * 3600 + 59 * 60, "23h 59m"),
        (86399, "23h 59m"),
        (86400, "1d 0h"),
        (2 * 86400 + 3 * 3600, "2d 3h"),
        (2 * 86400 + 3 * 3600 + 59 * 60, "2d 3h"),
        (-45, "45s"),
        (-3900, "1h 05m"),
        (-(2 * 86400 + 3 * 3600), "2d 3h"),
    ],
)
def test_format_duration(seconds: float, expected: str) -> None:
    assert store.format_duration(seconds) == expected


@pytest.mark.parametrize(
    ("user_id", "expected"),
    [
        ("CK68", "CK68"),
        ("CK68_BEBAFF", "CK68"),
        ("CK68_BEBAFF0123456789", "CK68"),
        ("ck68_bebaff", "CK68"),
        ("Ck68", "CK68"),
        ("  ck68  ", "CK68"),
        (" ck68 _BEBAFF", "CK68"),
        ("CK68_A_B", "CK68"),
        ("", ""),
    ],
)
def test_base_user(user_id: str, expected: str) -> None:
    assert store.base_user(user_id) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080/", True),
        ("http://127.0.0.1", True),
        ("http://127.1.2.3/x", True),
        ("http://localhost:5000/interactive", True),
        ("http://LOCALHOST/", True),
        ("http://[::1]:8080/", True),
        ("http://user:pw@127.0.0.1:9/", True),
        ("https://ttblaze.iifl.com/", False),
        ("http://example.com", False),
        ("http://localhost.example.com/", False),
        ("http://127.0.0.1.nip.io/", False),
        ("http://10.0.0.1/", False),
        ("http://[2001:db8::1]/", False),
        ("http://0.0.0.0/", False),
        ("not a url", False),
        ("", False),
        ("http://", False),
        ("::1", False),
        ("http://[::1", False),  # an unbalanced bracket: no host, and no exception
        ("http://[bad]/", False),
        ("http://[::ffff:127.0.0.1]/", True),
        ("http://localhost./", True),
    ],
)
def test_is_loopback_url(url: str, expected: bool) -> None:
    assert urls.is_loopback_url(url) is expected


# -- cli ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2h", 7200.0),
        ("90m", 5400.0),
        ("1h30m", 5400.0),
        ("45s", 45.0),
        ("3600", 3600.0),
        ("1.5h", 5400.0),
        ("1d", 86400.0),
        ("30h", 108000.0),
        ("1d2h3m4s", 86400.0 + 7200 + 180 + 4),
        ("2H", 7200.0),
        (" 2h ", 7200.0),
        ("0.5", 0.5),
        ("0", 0.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert cli.parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        *("", " ", "h", "2x", "2 h", "1h 30m", "-2h", "+2h", "2h-", "h2", "1e3", "1.5.h", ".5h"),
        *(
            "two",
            "1" * 400,
            "1h1h",
            "\uff12h",
            "\u0662h",
        ),  # endless, a unit twice, non-ASCII digits
    ],
)
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        cli.parse_duration(text)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["refresh"]),
        (["--if-needed"], ["refresh", "--if-needed"]),
        (["--verify", "--if-needed"], ["refresh", "--verify", "--if-needed"]),
        # An option's value is not a command, even when it is spelled like one.
        (["--env-file", "status"], ["refresh", "--env-file", "status"]),
        (
            ["--token-file", "demo", "--log-file", "cron"],
            ["refresh", "--token-file", "demo", "--log-file", "cron"],
        ),
        (
            ["--renew-before", "2h", "--if-needed"],
            ["refresh", "--renew-before", "2h", "--if-needed"],
        ),
        (["--env-file=status"], ["refresh", "--env-file=status"]),
        # A named command is left alone, wherever it comes.
        (["refresh"], ["refresh"]),
        (["status", "--json"], ["status", "--json"]),
        (["--env-file", "x.env", "status"], ["--env-file", "x.env", "status"]),
        (["check-config"], ["check-config"]),
        (["cron", "print"], ["cron", "print"]),
        (["demo"], ["demo"]),
        # --help and --version are argparse's.
        (["--help"], ["--help"]),
        (["-h"], ["-h"]),
        (["--version"], ["--version"]),
        (["--env-file", "x.env", "--help"], ["--env-file", "x.env", "--help"]),
        # An unknown word is left for argparse to refuse.
        (["refrsh"], ["refrsh"]),
        (["--if-needed", "stauts"], ["--if-needed", "stauts"]),
    ],
)
def test_with_default_command(argv: list[str], expected: list[str]) -> None:
    assert cli.with_default_command(argv) == expected


def test_with_default_command_does_not_change_its_argument() -> None:
    argv = ("--if-needed",)
    assert cli.with_default_command(argv) == ["refresh", "--if-needed"]
    assert argv == ("--if-needed",)


def test_exit_codes_text_names_0_to_5_130_and_143_in_order() -> None:
    text = cli.exit_codes_text()
    assert re.findall(r"(?:^|; )(\d+) ", text) == ["0", "1", "2", "3", "4", "5", "130", "143"]
    for code, meaning in errors.exit_code_meanings().items():
        assert f"{code} {meaning}" in text
    assert "\n" not in text


# -- errors and the cron wrapper ------------------------------------------------------------


def all_error_classes() -> list[type[XtsRefreshError]]:
    """XtsRefreshError and every subclass, wherever defined (client's RetryableError too)."""
    found: list[type[XtsRefreshError]] = []
    pending: list[type[XtsRefreshError]] = [XtsRefreshError]
    while pending:
        cls = pending.pop(0)
        found.append(cls)
        pending += cls.__subclasses__()
    return found


def test_exit_code_meanings_are_exactly_0_to_5_130_and_143() -> None:
    meanings = errors.exit_code_meanings()
    assert list(meanings) == [0, 1, 2, 3, 4, 5, 130, 143]
    assert meanings[0] == errors.SUCCESS_MEANING
    assert all(isinstance(m, str) and m.strip() and "\n" not in m for m in meanings.values())


def test_the_error_hierarchy_is_found() -> None:
    names = {cls.__name__ for cls in all_error_classes()}
    assert {
        "LoginRefusedError",
        "ConfigError",
        "XtsUnavailableError",
        "TokenRejectedError",
        "LocalError",
        "TokenSaveError",
        "LockTimeoutError",
        "UnexpectedError",
        "HookFailedError",
        "TokenUnavailableError",
        "RetryableError",
        "ClockSkewError",
        "InterruptedRunError",
        "TerminatedRunError",
    } <= names


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda cls: cls.__name__)
def test_every_error_class_exit_code_has_a_meaning(cls: type[XtsRefreshError]) -> None:
    assert cls.exit_code in errors.exit_code_meanings()
    assert cls.exit_code != 0


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (errors.LoginRefusedError, 1),
        (errors.TokenUnavailableError, 1),
        (errors.ConfigError, 2),
        (errors.XtsUnavailableError, 3),
        (errors.TokenRejectedError, 3),
        (RetryableError, 3),
        (errors.LocalError, 4),
        (errors.TokenSaveError, 4),
        (errors.LockTimeoutError, 4),
        (errors.UnexpectedError, 4),
        (errors.HookFailedError, 5),
        (errors.ClockSkewError, 3),
        (errors.InterruptedRunError, 130),
        (errors.TerminatedRunError, 143),
    ],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
def test_exit_codes_of_the_contract(cls: type[XtsRefreshError], code: int) -> None:
    assert cls.exit_code == code


def test_exit_meaning_of_a_code_is_the_meaning_its_classes_carry() -> None:
    for code, meaning in errors.exit_code_meanings().items():
        assert errors.exit_meaning(code, "refresh") == meaning
        assert errors.exit_meaning(code, "check-config") == meaning


def test_exit_meaning_of_status_1_is_a_token_that_will_not_do_not_a_refused_login() -> None:
    assert errors.exit_meaning(1, "status") == errors.STATUS_NOT_USABLE_MEANING
    assert errors.exit_meaning(1, "status") != errors.exit_meaning(1, "refresh")
    assert errors.exit_meaning(2, "status") == errors.exit_code_meanings()[2]


def test_exit_meanings_name_the_settings_file_of_the_account() -> None:
    """--help names any account's file; the wrapper's closing line the file it is given; no
    meaning says ".env" where the account's file is meant."""
    meanings = errors.exit_code_meanings()
    assert meanings[1].endswith(f"XTS_USER_ID in {errors.ANY_SETTINGS_FILE}")
    assert f"XTS_API_ROOT in {errors.ANY_SETTINGS_FILE}" in meanings[3]
    assert errors.exit_meaning(1, "refresh", "accounts/acc03.env").endswith(
        "XTS_USER_ID in accounts/acc03.env"
    )
    assert "XTS_API_ROOT in accounts/acc03.env" in errors.exit_meaning(
        3, "refresh", "accounts/acc03.env"
    )
    assert not any("{" in m or " .env" in m for m in meanings.values())
    assert errors.ANY_SETTINGS_FILE in cli.exit_codes_text()


def test_a_failure_is_placed_once_and_names_the_broker_only_where_it_is_concerned() -> None:
    """XtsRefreshError.place: the hint names the account's file from then on (.env before);
    a refused login or XTS failing keeps the broker, a local failure does not."""
    refused = errors.LoginRefusedError("XTS refused the interactive login.")
    assert refused.hint.startswith("Check the API key and secret in .env ")
    refused.place("xts.b.example:3000", "accounts/acc03.env")
    refused.place("other:1", "accounts/other.env")
    assert refused.broker == "xts.b.example:3000"
    assert "in accounts/acc03.env (and XTS_USER_ID)" in str(refused)
    local = errors.TokenSaveError("Cannot write the token file /x.")
    local.place("xts.b.example:3000", "accounts/acc03.env")
    assert local.broker is None


@pytest.mark.parametrize(
    ("api_root", "broker"),
    [
        ("https://ttblaze.iifl.com", "ttblaze.iifl.com"),
        ("https://ttblaze.iifl.com:443/dashboard", "ttblaze.iifl.com"),
        ("http://xts.b.example:80/", "xts.b.example"),
        ("https://xts.b.example:3000", "xts.b.example:3000"),
        ("http://127.0.0.1:8080/apimarketdata", "127.0.0.1:8080"),
        ("https://user:pa55word@xts.b.example:3000/x", "xts.b.example:3000"),
        ("https://[::1]:3000", "[::1]:3000"),
        ("HTTPS://XTS.B.EXAMPLE", "xts.b.example"),
    ],
)
def test_broker_of_is_the_host_and_a_port_not_the_schemes_default(
    api_root: str, broker: str
) -> None:
    assert urls.broker_of(api_root) == broker


def test_shown_path_is_relative_to_the_program_inside_it_else_absolute(tmp_path: Path) -> None:
    assert settings.shown_path(Path(paths.APP_DIR) / "accounts" / "acc03.env") == (
        "accounts/acc03.env"
    )
    assert settings.shown_path(Path(paths.APP_DIR) / ".env") == ".env"
    assert settings.shown_path(tmp_path / "my.env") == str(tmp_path / "my.env")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (3.30782, "3.3"),
        (30.0, "30"),
        (12.6, "13"),
        (9.96, "10"),
        (1.0, "1"),
        (0.04, "0.1"),
        (0.0, "0"),
    ],
)
def test_seconds_text_rounds_for_people(seconds: float, shown: str) -> None:
    from xts_refresher.timebox import seconds_text

    assert seconds_text(seconds) == shown


def test_plural_counts_in_the_singular_for_one() -> None:
    from xts_refresher.values import plural

    assert plural(1, "account") == "1 account"
    assert plural(0, "account") == "0 accounts"
    assert plural(3, "token") == "3 tokens"
    assert plural(2, "day") == "2 days"


def test_the_closing_line_names_both_failed_sessions_the_broker_and_each_hint_once() -> None:
    """outcome.closing_text and summary_text: every failure of the account (both sessions),
    after the broker; a hint the two share is said once; one account counts in the singular."""
    from xts_refresher.outcome import AccountResult, closing_text, summary_text

    failures = [
        errors.XtsUnavailableError("The interactive login failed after 2 attempts: refused."),
        errors.XtsUnavailableError("The market-data login failed after 2 attempts: refused."),
    ]
    for failure in failures:
        failure.place("xts.b.example:3000", "accounts/acc03.env")
    result = AccountResult("acc03", failures, [])

    closing = closing_text(result)
    summary = summary_text([result])

    assert closing.startswith(
        "✗ Token refresh failed (exit code 3): broker xts.b.example:3000: The interactive login "
    )
    for told in (closing, summary):
        assert "The market-data login failed" in told
        assert told.count("XTS_API_ROOT in accounts/acc03.env") == 1
    assert summary.startswith("✗ 1 of 1 account failed (exit code 3): acc03: broker ")


@pytest.mark.parametrize("code", [6, 127, 137, 255])
def test_exit_meaning_of_a_code_no_class_carries_is_unexpected(code: int) -> None:
    assert errors.exit_meaning(code, "refresh") == errors.UNKNOWN_MEANING


@pytest.mark.parametrize(
    ("args", "word"),
    [
        ((), "refresh"),
        (("--if-needed", "--verify"), "refresh"),
        (("status",), "status"),
        (("--env-file", "status", "check-config"), "check-config"),
        (("--account", "huf", "--token-file", "t.json", "--log-file", "l.log"), "refresh"),
        (("--if-needed", "--renew-before", "90m"), "refresh"),
        (("--account", "cron", "status", "--json"), "status"),
        (("cron", "--help"), "cron"),
        (("--env-file", "x.env", "--help"), "--help"),
        (("-h", "status"), "-h"),
        (("--version",), "--version"),
        (("bogus", "status"), "bogus"),
        (("--env-file",), "refresh"),
    ],
)
def test_wrapper_names_the_command_as_the_command_line_reads_it(
    args: tuple[str, ...], word: str
) -> None:
    assert wrapper.command_word(args) == word
    if word not in ("bogus", "-h", "--help", "--version"):
        # The command line itself runs that command (refresh when none is named).
        assert cli.command_named(cli.with_default_command(args)) == word


def requirement_names() -> list[str]:
    """The distribution names in requirements.txt, in order."""
    names = []
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if text and not text.startswith("-"):
            found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", text)
            assert found, line
            names.append(found[0])
    return names


def top_level_modules(distribution: str) -> set[str]:
    """The importable top-level names an installed distribution provides."""
    files = importlib.metadata.distribution(distribution).files or []
    return {
        file.parts[0].removesuffix(".py")
        for file in files
        if file.suffix == ".py" and file.parts[0].removesuffix(".py").isidentifier()
    }


def test_wrapper_probe_prints_the_version_then_the_required_modules_not_found(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    wrapper.probe(["--env-file", "x.env", "status"])
    assert capsys.readouterr().out == f"{sys.version.split()[0]}\n\nstatus\n"
    monkeypatch.setattr(
        xts_refresher, "REQUIRED_MODULES", ("requests", "no_such_module_xts", "dotenv", "nor_x")
    )
    wrapper.probe([])
    assert (
        capsys.readouterr().out == f"{sys.version.split()[0]}\nno_such_module_xts nor_x\nrefresh\n"
    )


def test_wrapper_main_prints_the_meaning_of_an_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert wrapper.main(["1", "status"]) == 0
    assert capsys.readouterr().out == errors.STATUS_NOT_USABLE_MEANING + "\n"
    assert wrapper.main(["5", "refresh"]) == 0
    assert capsys.readouterr().out == errors.exit_code_meanings()[5] + "\n"
    for wrong in ([], ["x", "refresh"], ["1"], ["1", "status", "more"]):
        assert wrapper.main(wrong) == 2
        assert capsys.readouterr().out == ""


def test_required_modules_are_requirements_txt() -> None:
    names = requirement_names()
    assert names == ["requests", "python-dotenv"]
    modules = []
    for name in names:
        provided = top_level_modules(name)
        assert len(provided) == 1, f"{name} provides {sorted(provided)}"
        modules.append(provided.pop())
    assert xts_refresher.REQUIRED_MODULES == tuple(modules) == ("requests", "dotenv")


# -- cron -----------------------------------------------------------------------------------

UTC = timezone.utc
KOLKATA = ZoneInfo("Asia/Kolkata")
NEW_YORK = ZoneInfo("America/New_York")
A_WEDNESDAY = date(2024, 1, 10)


def test_tz_naming_a_zone_file_outside_any_zoneinfo_folder_reads_that_file(
    tmp_path: Path,
) -> None:
    """``TZ=:/path`` to a copy of a zone file (not under a zoneinfo folder, so it has no name
    to look up) is read as that zone, and named by its path."""
    import shutil
    import zoneinfo

    found = [Path(folder, "Asia", "Kolkata") for folder in zoneinfo.TZPATH]
    source = next((path for path in found if path.is_file()), None)
    if source is None:
        skip_or_fail("no zoneinfo folder with Asia/Kolkata (Debian: apt-get install tzdata)")
        return
    copy = tmp_path / "kolkata.tzif"
    shutil.copyfile(source, copy)

    zone, label = schedule.machine_zone({"TZ": f":{copy}"})

    assert label == str(copy)
    assert zone.utcoffset(datetime(2026, 1, 5, 9, 0)) == timedelta(hours=5, minutes=30)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("09:00", (9, 0)),
        ("9:00", (9, 0)),
        ("9:05", (9, 5)),
        ("00:00", (0, 0)),
        ("0:00", (0, 0)),
        ("23:59", (23, 59)),
        (" 08:45 ", (8, 45)),
    ],
)
def test_parse_at(text: str, expected: tuple[int, int]) -> None:
    assert schedule.parse_at(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "9",
        "0900",
        "24:00",
        "12:60",
        "09:0",
        "09:000",
        "9am",
        "09:00:00",
        "-1:00",
        "9.00",
        "009:00",
        "09 :00",
        "a:bc",
        "\uff11\uff12:\uff10\uff10",  # full-width digits are not a time cron can take
    ],
)
def test_parse_at_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="not a time of day"):
        schedule.parse_at(text)


@pytest.mark.parametrize(
    ("days", "shift", "expected"),
    [
        ("daily", 0, "*"),
        ("daily", -1, "*"),
        ("daily", 1, "*"),
        ("weekdays", -1, "0-4"),
        ("weekdays", 0, "1-5"),
        ("weekdays", 1, "2-6"),
        ("weekdays", 2, "0,3-6"),
        ("weekdays", -2, "0-3,6"),
        ("weekdays", 7, "1-5"),
        ("weekdays", -7, "1-5"),
    ],
)
def test_day_field(days: str, shift: int, expected: str) -> None:
    assert schedule.day_field(days, shift) == expected


def test_convert_kolkata_morning_on_utc_stays_the_same_day() -> None:
    when = schedule.convert("09:00", "Asia/Kolkata", "weekdays", UTC, "UTC", today=A_WEDNESDAY)
    assert (when.hour, when.minute, when.days) == (3, 30, "1-5")
    assert when.notes[0] == "09:00 Asia/Kolkata is 03:30 in this machine's zone (UTC)"
    assert not any("midnight" in note or "daylight" in note for note in when.notes)


@pytest.mark.parametrize(("days", "field"), [("weekdays", "0-4"), ("daily", "*")])
def test_convert_across_midnight_moves_the_days(days: str, field: str) -> None:
    when = schedule.convert("04:00", "Asia/Kolkata", days, UTC, "UTC", today=A_WEDNESDAY)
    assert (when.hour, when.minute, when.days) == (22, 30, field)
    assert "22:30" in when.notes[0]
    assert any("crosses midnight" in note for note in when.notes)


def test_convert_forward_across_midnight() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    when = schedule.convert(
        "22:00", "Asia/Kolkata", "weekdays", tokyo, "Asia/Tokyo", today=A_WEDNESDAY
    )
    assert (when.hour, when.minute, when.days) == (1, 30, "2-6")


def test_convert_in_the_same_zone_changes_nothing() -> None:
    when = schedule.convert(
        "09:00", "Asia/Kolkata", "weekdays", KOLKATA, "Asia/Kolkata", today=A_WEDNESDAY
    )
    assert (when.hour, when.minute, when.days) == (9, 0, "1-5")
    assert len(when.notes) == 1


@pytest.mark.parametrize("today", [date(2024, 1, 10), date(2024, 7, 10)])
def test_convert_to_a_daylight_saving_zone_warns(today: date) -> None:
    when = schedule.convert(
        "09:00", "Asia/Kolkata", "daily", NEW_YORK, "America/New_York", today=today
    )
    offset = 10.5 if today.month == 1 else 9.5  # EST is UTC-5, EDT UTC-4; IST is UTC+5:30
    expected = datetime(2024, today.month, 10, 9, 0) - timedelta(hours=offset)
    assert (when.hour, when.minute) == (expected.hour, expected.minute)
    warning = [note for note in when.notes if "daylight saving" in note]
    assert len(warning) == 1
    assert "America/New_York" in warning[0]


def test_convert_from_a_daylight_saving_zone_warns_about_that_zone() -> None:
    when = schedule.convert("09:00", "America/New_York", "daily", UTC, "UTC", today=A_WEDNESDAY)
    assert (when.hour, when.minute) == (14, 0)
    assert any("America/New_York observes daylight saving" in note for note in when.notes)


@pytest.mark.parametrize(
    ("at", "zone", "days", "match"),
    [
        ("09:00", "Asia/Kolkata", "weekends", "--days"),
        ("25:00", "Asia/Kolkata", "daily", "--at"),
        ("09:00", "Mars/Olympus_Mons", "daily", "Unknown time zone"),
        ("09:00", "", "daily", "Unknown time zone"),
    ],
)
def test_convert_refuses(at: str, zone: str, days: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        schedule.convert(at, zone, days, UTC, "UTC", today=A_WEDNESDAY)


def test_crontab_line_plain() -> None:
    line = cron.crontab_line(schedule.Schedule(30, 3, "1-5", ()), Path("/opt/xts"))
    assert line == (
        "30 3 * * 1-5 /opt/xts/refresh_xts_token.sh >> /opt/xts/cron_output.log 2>&1 "
        "# xts-token-refresh:/opt/xts"
    )
    assert schedule.is_own_line(line, Path("/opt/xts"))
    assert not schedule.is_own_line(line, Path("/opt/other"))


def test_crontab_line_quotes_spaces_and_escapes_percent() -> None:
    app_dir = Path("/opt/my bots/xts")
    line = cron.crontab_line(
        schedule.Schedule(0, 9, "*", ()), app_dir, ("--env-file", "/etc/xts/50%.env")
    )
    command = line.split(" # xts-token-refresh:")[0]
    assert command == (
        "0 9 * * * '/opt/my bots/xts/refresh_xts_token.sh' --env-file /etc/xts/50\\%.env "
        ">> '/opt/my bots/xts/cron_output.log' 2>&1"
    )
    assert re.search(r"(?<!\\)%", command) is None  # cron turns a bare % into a newline
    assert schedule.is_own_line(line, app_dir)


def test_crontab_marker_escapes_percent_in_the_folder_name() -> None:
    """cron reads the marker comment as part of the command: a bare % there would cut it."""
    app_dir = Path("/opt/my 50% bots")
    line = cron.crontab_line(schedule.Schedule(30, 3, "*", ()), app_dir)
    assert re.search(r"(?<!\\)%", line) is None
    assert schedule.is_own_line(line, app_dir)


# -- client ---------------------------------------------------------------------------------

JSON = {"Content-Type": "application/json; charset=utf-8"}
RATE_LIMIT = {"type": "error", "code": "e-apirl-0004", "description": "Rate limit exceeded"}


def raw(body: object) -> bytes:
    return json.dumps(body).encode("utf-8")


@pytest.mark.parametrize("status", [200, 400, 401, 403])
def test_decode_answer_returns_xts_json(status: int) -> None:
    body = {"type": "success", "code": "s-user-0001", "result": {"token": "abc", "n": 1.5}}
    assert decode_answer(status, JSON, raw(body)) == body


@pytest.mark.parametrize(
    ("status", "headers", "content"),
    [
        (502, {"Content-Type": "text/html"}, b"<html><body>502 Bad Gateway</body></html>"),
        (200, {"Content-Type": "text/html"}, b"<html>captive portal</html>"),
        (200, JSON, b""),
        (200, JSON, b"[1, 2]"),
        (200, JSON, b'"success"'),
        (200, JSON, b'{"code": "s-1", "result": {}}'),  # no "type": not XTS JSON
        (200, JSON, b'{"type": "success", "result": {"n": NaN}}'),
        (200, JSON, b'{"type": "success", "result": {"n": Infinity}}'),
        (200, JSON, b'{"type": "success", "result": {"n": -Infinity}}'),
        (200, JSON, b'{"type": "success", "result": {"n": 1e999}}'),
        (200, JSON, b'{"type": "success", "result": {"n": -1e999}}'),
        (200, JSON, b"[" * 100000),
        (200, JSON, b"\xff\xfe not utf-8"),
    ],
)
def test_decode_answer_refuses_what_is_not_xts_json(
    status: int, headers: dict[str, str], content: bytes
) -> None:
    with pytest.raises(RetryableError) as failure:
        decode_answer(status, headers, content)
    assert f"HTTP {status}" in failure.value.reason
    assert failure.value.exit_code == 3


def test_decode_answer_names_the_content_type_of_what_is_not_xts_json() -> None:
    with pytest.raises(RetryableError) as failure:
        decode_answer(200, {"Content-Type": "text/html\x1b[2J; charset=utf-8"}, b"<html>")
    assert "text/html\\x1b[2J" in failure.value.reason  # the server's text, written out


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_decode_answer_refuses_a_redirect_without_a_retry(status: int) -> None:
    """A redirect is its own failure (never retried, never followed), naming where it
    pointed without a user or password."""
    location = "https://user:pw-FAKE@login.example/\x1b[31mx"
    with pytest.raises(RedirectedError) as failure:
        decode_answer(status, {"Location": location, "Content-Type": "text/html"}, b"")
    assert not isinstance(failure.value, RetryableError)
    assert failure.value.exit_code == 3
    assert failure.value.message == (
        f"a redirect (HTTP {status}) to https://login.example/\\x1b[31mx"
    )


@pytest.mark.parametrize(
    "content", [raw({"type": "error", "code": "e-route-0404", "description": "x"}), b"<html>", b""]
)
def test_decode_answer_takes_a_404_for_a_wrong_path_not_a_refusal(content: bytes) -> None:
    with pytest.raises(RouteNotFoundError) as failure:
        decode_answer(404, JSON, content)
    assert not isinstance(failure.value, RetryableError)
    assert failure.value.message.startswith("HTTP 404")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[2J\x1b[31mred\x07", "\\x1b[2J\\x1b[31mred\\x07"),
        ("ok\r✓ fake success", "ok ✓ fake success"),
        ("a\nb\tc  d", "a b c d"),
        ("c1 \x9b31m and \x85 del \x7f", "c1 \\x9b31m and del \\x7f"),
        ("\x00\x1f", "\\x00"),
        ("plain: é ✓ ₹", "plain: é ✓ ₹"),
    ],
)
def test_one_line_folds_and_writes_out_control_characters(text: str, shown: str) -> None:
    """Server text is shown on one line with no character that could steer a terminal."""
    assert one_line(text) == shown
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", one_line(text))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p@host:4000/x?y#z", "https://host:4000/x?y#z"),
        ("https://token@host", "https://host"),
        ("https://host/path@not-credentials", "https://host/path@not-credentials"),
        ("https://a@b:c@host/", "https://host/"),
        ("http://[::1]:8/x", "http://[::1]:8/x"),
        ("no scheme@host", "no scheme@host"),
    ],
)
def test_without_credentials(url: str, shown: str) -> None:
    assert urls.without_credentials(url) == shown


@pytest.mark.parametrize(
    ("url", "info", "secrets"),
    [
        ("https://u:p@host:4000/x?y#z", "u:p", ["u:p", "p"]),
        ("https://token@host", "token", ["token"]),
        ("https://a@b:c@host/", "a@b:c", ["a@b:c", "c"]),
        ("https://:pw@host", ":pw", [":pw", "pw"]),
        ("https://u:@host", "u:", ["u:"]),
        ("https://@host", "", []),
        ("https://host/path@not-credentials", None, []),
        ("https://host?q=a@b", None, []),
        ("no scheme@host", None, []),
    ],
)
def test_a_urls_user_and_password_are_read_once_for_showing_masking_and_cutting(
    url: str, info: str | None, secrets: list[str]
) -> None:
    """One reader of the ``user:password`` before a URL's host: what redaction masks (it and
    the password), what a health check's messages cut (``user:password@``), and what is left
    out when the URL is shown all agree with it."""
    from xts_refresher.alerts import hidden_userinfo

    assert urls.userinfo(url) == info
    assert urls.url_credentials(url) == secrets
    assert hidden_userinfo(url) == ("" if info is None else f"{info}@")
    assert urls.without_credentials(url) == url.replace(hidden_userinfo(url), "", 1)


def test_settings_secrets_hold_every_urls_credentials() -> None:
    loaded = load_settings(
        PathOverrides(),
        {
            "XTS_API_ROOT": "https://xts.example",
            "XTS_INTERACTIVE_API_KEY": "key-1234",
            "XTS_INTERACTIVE_API_SECRET": "secret-1234",
            "XTS_HOSTLOOKUP_URL": "https://lu:lookup-pw@xts.example:4000/hostlookup",
            "TELEGRAM_TOKEN": "123456789:AAbcdefghijklmnopqrstuvwxyz012345678",
            "TELEGRAM_CHAT_ID": "42",
            "TELEGRAM_API_URL": "https://tg:tg-pw@bot.example",
            "HEALTHCHECK_URL": "https://only-a-token@hc.example/ping/x",
        },
    )
    found = loaded.secrets()
    for secret in ("lu:lookup-pw", "lookup-pw", "tg:tg-pw", "tg-pw", "only-a-token"):
        assert secret in found


@pytest.mark.parametrize(
    ("connection", "root", "why"),
    [
        ("https://xts.example:3000/interactive", "https://xts.example", None),
        ("https://other.example/interactive", "https://xts.example", None),
        ("http://xts.example:3000/interactive", "https://xts.example", "is not https"),
        ("http://127.0.0.1:3000/interactive", "https://xts.example", "is not https"),
        ("http://127.0.0.1:3000/interactive", "http://127.0.0.1:9", None),
        ("http://[::1]:3000/interactive", "http://localhost:9", None),
        ("http://xts.example/interactive", "http://127.0.0.1:9", "is not https"),
        (
            "https://u:p@xts.example/interactive",
            "https://xts.example",
            "carries a user or password",
        ),
        ("https://xts.example/i?x=1", "https://xts.example", "has a query or fragment"),
        ("https://xts.example/i#x", "https://xts.example", "has a query or fragment"),
        ("ftp://xts.example/interactive", "https://xts.example", "is not https"),
        ("/interactive", "https://xts.example", "names no host"),
        ("https://[::1/interactive", "https://xts.example", "is not a valid URL"),
    ],
)
def test_unsafe_connection(connection: str, root: str, why: str | None) -> None:
    """Where a host lookup may send the login (and its secret)."""
    assert unsafe_connection(connection, root) == why


@pytest.mark.parametrize(
    ("session", "answered", "same"),
    [
        (INTERACTIVE, "CK68", True),
        (INTERACTIVE, "ck68", True),
        (INTERACTIVE, "CK68_EVIL", False),
        (INTERACTIVE, "CK68_", False),
        (INTERACTIVE, "CK6", False),
        (MARKETDATA, "CK68_BEBAFF", True),
        (MARKETDATA, "ck68", True),
        (MARKETDATA, "CK69_BEBAFF", False),
    ],
)
def test_is_user_allows_the_suffix_for_market_data_only(
    session: Session, answered: str, same: bool
) -> None:
    assert store.is_user(session, answered, "CK68") is same


@pytest.mark.parametrize(
    ("location", "elsewhere"),
    [
        ("/accounts/login/", False),
        ("https://hc.example/accounts/login/", False),
        ("https://HC.example/x", False),
        ("https://hc.example:8443/x", True),
        ("http://hc.example/", True),
        ("https://evil.example/", True),
        ("//evil.example/ping", True),
        ("https://[::1/", True),
    ],
)
def test_a_health_check_server_redirects_elsewhere_only_off_its_origin(
    location: str, elsewhere: bool
) -> None:
    """check-config's HEAD of the check's server may be sent to a login page on the same
    server; a redirect to another scheme, host or port is a refusal."""
    from xts_refresher.alerts import redirects_elsewhere

    assert redirects_elsewhere("https://hc.example/", location) is elsewhere


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_decode_answer_retries_xts_json_5xx(status: int) -> None:
    body = {"type": "error", "code": "e-server-0001", "description": "Internal error"}
    with pytest.raises(RetryableError, match="e-server-0001"):
        decode_answer(status, JSON, raw(body))


@pytest.mark.parametrize(
    ("header", "retry_after"),
    [("7", 7.0), ("0.5", 0.5), ("-3", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", None), ("", None)],
)
def test_decode_answer_429_is_retryable_with_retry_after(
    header: str, retry_after: float | None
) -> None:
    with pytest.raises(RetryableError) as failure:
        decode_answer(429, {**JSON, "Retry-After": header}, raw(RATE_LIMIT))
    assert failure.value.retry_after == retry_after


def test_decode_answer_429_html_keeps_retry_after() -> None:
    with pytest.raises(RetryableError) as failure:
        decode_answer(429, {"Retry-After": "12", "Content-Type": "text/html"}, b"<html>")
    assert failure.value.retry_after == 12.0


def test_decode_answer_without_retry_after() -> None:
    with pytest.raises(RetryableError) as failure:
        decode_answer(429, JSON, raw(RATE_LIMIT))
    assert failure.value.retry_after is None


def test_decode_answer_rate_limit_is_an_answer_for_token_checks() -> None:
    assert decode_answer(429, JSON, raw(RATE_LIMIT), rate_limit_is_answer=True) == RATE_LIMIT


def test_decode_answer_429_that_is_not_a_rate_limit_stays_retryable() -> None:
    body = {"type": "error", "code": "e-other-0001", "description": "Slow down"}
    with pytest.raises(RetryableError):
        decode_answer(429, JSON, raw(body), rate_limit_is_answer=True)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"code": "e-user-0001", "description": "Invalid credentials."},
            "e-user-0001: Invalid credentials",
        ),
        ({"type": "error"}, "no code: no description"),
        ({"code": None, "description": ""}, "no code: no description"),
        ({"code": "e-1", "description": "Line one\r\nline\ttwo  "}, "e-1: Line one line two"),
        ({"code": "e-1\nFAKE ✓", "description": "x"}, "e-1 FAKE ✓: x"),
        (
            {
                "code": "e-app-0001",
                "description": "Bad Request",
                "result": {
                    "errors": [
                        {"field": "appKey", "messages": ["appKey is required"]},
                        {"field": "secretKey", "messages": ["secretKey\nis", "too short"]},
                        {"field": "source", "messages": "not a list"},
                        "not a dict",
                    ]
                },
            },
            "e-app-0001: Bad Request (appKey is required; secretKey is; too short)",
        ),
        ({"code": "e-2", "description": "x", "result": {"errors": []}}, "e-2: x"),
        ({"code": "e-2", "description": "x", "result": {"errors": "no"}}, "e-2: x"),
        ({"code": "e-2", "description": "x", "result": ["errors"]}, "e-2: x"),
        ({"code": 404, "description": "Not found"}, "404: Not found"),
    ],
)
def test_describe_xts_error(body: dict[str, Any], expected: str) -> None:
    text = describe_xts_error(body)
    assert text == expected
    assert "\n" not in text and "\r" not in text


def success(**result: Any) -> dict[str, Any]:
    return {"type": "success", "code": "s-user-0001", "description": "ok", "result": result}


@pytest.mark.parametrize("session", [INTERACTIVE, MARKETDATA], ids=lambda s: s.name)
def test_login_result_success(session: Session) -> None:
    body = success(token="eyJhbGci.eyJleHAi.sig", userID="CK68", isInvestorClient=False)
    result = login_result(session, body, "https://xts.example")
    assert isinstance(result, LoginResult)
    assert result == LoginResult(
        session.name, "eyJhbGci.eyJleHAi.sig", "CK68", "https://xts.example", body["result"]
    )
    assert "eyJhbGci" not in repr(result)


def test_login_result_strips_the_token_and_folds_the_user() -> None:
    result = login_result(INTERACTIVE, success(token="  tok123\n", userID="CK\n68"), "https://r")
    assert (result.token, result.user_id) == ("tok123", "CK 68")


@pytest.mark.parametrize(
    ("user", "expected"), [(None, ""), ("", ""), (68, "68"), ("\ud800X", "\\ud800X")]
)
def test_login_result_user_id(user: object, expected: str) -> None:
    assert login_result(MARKETDATA, success(token="t", userID=user), "r").user_id == expected


@pytest.mark.parametrize("session", [INTERACTIVE, MARKETDATA], ids=lambda s: s.name)
@pytest.mark.parametrize(
    "body",
    [
        {"type": "error", "code": "e-user-0001", "description": "Invalid credentials"},
        {"type": "error", "code": "e-app-0001", "result": {"errors": [{"messages": ["x"]}]}},
        {"type": "failure"},
        {"code": "e-1"},
    ],
)
def test_login_result_refused(session: Session, body: dict[str, Any]) -> None:
    with pytest.raises(LoginRefusedError) as failure:
        login_result(session, body, "https://xts.example")
    refusal = failure.value
    assert refusal.exit_code == 1
    assert f"the {session.label} login" in refusal.message
    assert describe_xts_error(body) in refusal.message
    assert session.key_variable in refusal.hint
    assert session.secret_variable in refusal.hint
    other = MARKETDATA if session is INTERACTIVE else INTERACTIVE
    assert other.key_variable not in refusal.hint


@pytest.mark.parametrize("session", [INTERACTIVE, MARKETDATA], ids=lambda s: s.name)
@pytest.mark.parametrize(
    "body",
    [
        {"type": "success"},
        {"type": "success", "result": None},
        {"type": "success", "result": "token"},
        {"type": "success", "result": {}},
        {"type": "success", "result": {"token": ""}},
        {"type": "success", "result": {"token": "   "}},
        {"type": "success", "result": {"token": None}},
        {"type": "success", "result": {"token": 12345}},
    ],
)
def test_login_result_success_without_token_is_retryable(
    session: Session, body: dict[str, Any]
) -> None:
    with pytest.raises(RetryableError, match="without a token"):
        login_result(session, body, "https://xts.example")


@pytest.mark.parametrize("token", ["tökén", "abc def", "abc\tdef", "ab\x00c", "ab\x7fc", "日本"])
def test_login_result_token_not_printable_ascii_is_retryable(token: str) -> None:
    with pytest.raises(RetryableError, match="not printable ASCII"):
        login_result(INTERACTIVE, success(token=token, userID="CK68"), "https://xts.example")


@pytest.mark.parametrize(
    "body",
    [
        success(token="t"),
        {"type": "error", "code": "e-1"},
        {"type": "error", "result": {}},
        {},
    ],
)
def test_require_token_accepts(body: dict[str, Any]) -> None:
    """A token, or no claim of success (a refusal is login_result's to judge): no error."""
    try:
        require_token(body)
    except RetryableError as exc:
        pytest.fail(f"require_token refused {body}: {exc}")


@pytest.mark.parametrize(
    "body",
    [{"type": "success"}, success(), success(token=" "), success(token=["t"])],
)
def test_require_token_refuses_success_without_token(body: dict[str, Any]) -> None:
    with pytest.raises(RetryableError):
        require_token(body)


def test_backoff_doubles_per_attempt_up_to_60_s_and_honours_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without jitter, the waits double from the first wait (XTS_RETRY_BACKOFF) up to 60 s; a
    Retry-After is waited at least, and at most 60 s."""
    import random

    from xts_refresher.timebox import backoff_seconds

    monkeypatch.setattr(random, "uniform", lambda low, high: 1.0)  # the module timebox uses
    assert [backoff_seconds(2.0, n) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]
    assert backoff_seconds(2.0, 1, 30.0) == 30.0
    assert backoff_seconds(2.0, 1, 600.0) == 60.0


# -- store ----------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(payload: bytes) -> str:
    """A three-part JWT with ``payload`` as its (unsigned, unchecked) claims."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    return f"{header}.{b64url(payload)}.{b64url(b'not-a-real-signature')}"


def jwt_of(claims: object) -> str:
    return make_jwt(json.dumps(claims).encode())


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": 1700000000},
        {"exp": 1700000000, "iat": 1699913600, "userID": "CK68"},
        {"a": "b"},  # lengths that need every amount of base64 padding
        {"a": "bc"},
        {"a": "bcd"},
        {"userID": "CK68_BEBAFF", "nested": {"list": [1, 2, 3]}, "name": "ü~?>"},
        {},
    ],
)
def test_jwt_claims(claims: dict[str, Any]) -> None:
    assert store.jwt_claims(jwt_of(claims)) == claims


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        jwt_of({"exp": 1}) + ".extra",
        "a.!!!.c",  # bad base64
        "a.x.c",  # one base64 character is never a whole byte
        "a." + b64url(b"\xff\xfe\x00") + ".c",  # not UTF-8
        "a." + b64url(b"{not json") + ".c",
        make_jwt(b"[1, 2, 3]"),  # a JSON list
        make_jwt(b'"a string"'),
        make_jwt(b"null"),
        make_jwt(b"42"),
        make_jwt(b"[" * 100000),
    ],
)
def test_jwt_claims_of_what_is_not_a_jwt(token: str) -> None:
    assert store.jwt_claims(token) == {}


@pytest.mark.parametrize("exp", [1700000000, 1700000000.5, 0, 4102444800])
def test_expiry_from_token(exp: float) -> None:
    expiry = store.expiry_from_token(jwt_of({"exp": exp}))
    assert expiry is not None
    assert expiry.tzinfo is not None and expiry.utcoffset() is not None
    assert expiry == datetime.fromtimestamp(exp, timezone.utc)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"exp": true}',
        b'{"exp": false}',
        b'{"exp": "1700000000"}',
        b'{"exp": null}',
        b'{"exp": [1700000000]}',
        b'{"exp": 100000000000000000000}',
        b'{"exp": -100000000000000000000}',
        b'{"exp": 1e300}',
        b'{"exp": NaN}',
        b'{"exp": Infinity}',
        b'{"exp": 1e999}',
        b'{"iat": 1700000000}',
        b"[1700000000]",
    ],
)
def test_expiry_from_token_unreadable(payload: bytes) -> None:
    assert store.expiry_from_token(make_jwt(payload)) is None


def test_expiry_from_token_of_a_non_jwt() -> None:
    assert store.expiry_from_token("opaque-token") is None


IST = timezone(timedelta(hours=5, minutes=30))
TOKEN_FILE = "/tmp/xts_store_token.json"


def token_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "token": "tok-ABCDEF123456",
        "userID": "CK68",
        "timestamp": "2024-01-10T09:00:00.123456+05:30",
        "refreshed_at": "2024-01-10 09:00:00",
        "expires_at": "2024-01-11T09:00:00+05:30",
        "session": "interactive",
        "api_root": "https://xts.example",
        "isInvestorClient": False,
        "clientCodes": ["CK68"],
    }
    data.update(changes)
    return {name: value for name, value in data.items() if value is not ...}


def test_parse_token_json_good() -> None:
    stored = store.parse_token_json(token_data(), TOKEN_FILE, "interactive")
    assert stored == StoredToken(
        token="tok-ABCDEF123456",
        user_id="CK68",
        session="interactive",
        api_root="https://xts.example",
        timestamp=datetime(2024, 1, 10, 9, 0, 0, 123456, tzinfo=IST),
        expires_at=datetime(2024, 1, 11, 9, 0, tzinfo=IST),
        extra={"isInvestorClient": False, "clientCodes": ["CK68"]},
    )
    assert stored.to_json() == token_data()


def test_parse_token_json_without_session_takes_the_one_asked_for() -> None:
    stored = store.parse_token_json(token_data(session=...), TOKEN_FILE, "marketdata")
    assert stored.session == "marketdata"


def test_parse_token_json_without_expires_at_reads_the_jwt() -> None:
    data = token_data(token=jwt_of({"exp": 1700000000}), expires_at=None)
    stored = store.parse_token_json(data, TOKEN_FILE, "interactive")
    assert stored.expires_at == datetime.fromtimestamp(1700000000, timezone.utc)


def test_parse_token_json_without_any_expiry() -> None:
    stored = store.parse_token_json(token_data(expires_at=...), TOKEN_FILE, "interactive")
    assert stored.expires_at is None
    assert stored.effective_expiry == stored.timestamp + timedelta(hours=24)


def test_parse_token_json_naive_expires_at_gets_a_zone() -> None:
    data = token_data(expires_at="2024-01-11T09:00:00")
    stored = store.parse_token_json(data, TOKEN_FILE, "interactive")
    assert stored.expires_at is not None
    assert stored.expires_at.tzinfo is not None and stored.expires_at.utcoffset() is not None
    assert stored.expires_at == datetime(2024, 1, 11, 9, 0).astimezone()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ([], "not a JSON object"),
        ("token", "not a JSON object"),
        (None, "not a JSON object"),
        (token_data(token=...), "no token"),
        (token_data(token=""), "no token"),
        (token_data(token=None), "no token"),
        (token_data(token=123), "no token"),
        (token_data(token="tök"), "not printable ASCII"),
        (token_data(token="a b"), "not printable ASCII"),
        (token_data(token="a\nb"), "not printable ASCII"),
        (token_data(timestamp=...), "timestamp"),
        (token_data(timestamp="yesterday"), "timestamp"),
        (token_data(timestamp=1704857400), "timestamp"),
        (token_data(session="marketdata"), "'marketdata' session, not 'interactive'"),
        (token_data(session=None), "None session"),
    ],
)
def test_parse_token_json_corrupt(data: Any, why: str) -> None:
    with pytest.raises(TokenUnavailableError) as failure:
        store.parse_token_json(data, TOKEN_FILE, "interactive")
    assert failure.value.state == "corrupt"
    assert failure.value.path == TOKEN_FILE
    assert TOKEN_FILE in failure.value.message
    assert why in failure.value.message


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ("", "…"),
        ("ab", "…"),
        ("abc", "a…"),
        ("abcdefghi", "abc…"),
        ("abcdefghijklmnopq", "abcde…"),
        ("abcdefghijklmnopqr", "abcdef…"),
        ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE3MDAwMDAwMDB9.sig", "eyJhbG…"),
    ],
)
def test_mask(secret: str, expected: str) -> None:
    shown = store.mask(secret)
    assert shown == expected
    assert len(shown) <= 7 and shown.endswith("…")
    assert secret.startswith(shown[:-1])
    assert len(shown) - 1 < max(len(secret), 1)  # never the whole secret


def a_stored_token() -> StoredToken:
    return store.parse_token_json(token_data(), TOKEN_FILE, "interactive")


@pytest.mark.parametrize("field", ["token", "user_id", "session", "expires_at", "extra", "new"])
def test_stored_token_is_immutable(field: str) -> None:
    stored = a_stored_token()
    with pytest.raises(AttributeError):
        setattr(stored, field, "x")
    with pytest.raises(AttributeError):
        delattr(stored, field)
    assert stored == a_stored_token()


def test_stored_token_repr_hides_the_token() -> None:
    stored = a_stored_token()
    assert "tok-ABCDEF123456" not in repr(stored)
    assert "tok-ABCDEF123456" not in str(stored)
    assert "tok-ABCDEF123456" not in f"{[stored]}"
    assert "token=…" in repr(stored)
    assert "CK68" in repr(stored)
    assert stored.masked() == "tok-A…"  # 16 characters: a third of them, at most


@pytest.mark.parametrize(
    ("offset", "text"),
    [
        (timedelta(hours=5, minutes=30), "+05:30"),
        (timedelta(0), "+00:00"),
        (-timedelta(hours=4), "-04:00"),
        (-timedelta(hours=3, minutes=30), "-03:30"),
        (timedelta(hours=14), "+14:00"),
        (-timedelta(hours=23, minutes=59), "-23:59"),
    ],
)
def test_utc_offset_written_and_read_back(offset: timedelta, text: str) -> None:
    assert store.format_utc_offset(offset) == text
    assert store.parse_utc_offset(text) == offset


@pytest.mark.parametrize(
    "value", [None, 330, "", "+0530", "05:30", "+5:30", "+05:60", "+24:00", "+٠٥:٣٠", "+05:30 "]
)
def test_utc_offset_that_is_not_one_is_ignored(value: object) -> None:
    assert store.parse_utc_offset(value) is None


def test_a_token_without_exp_lives_24_hours_from_its_login_in_the_writers_zone() -> None:
    data = token_data(timestamp="2024-01-10T09:00:00.123456", expires_at=None)
    stored = store.parse_token_json({**data, "utc_offset": "+05:30"}, TOKEN_FILE, "interactive")
    assert stored.utc_offset == timedelta(hours=5, minutes=30)
    assert stored.logged_in_at == datetime(2024, 1, 10, 9, 0, 0, 123456, tzinfo=IST)
    assert stored.effective_expiry == datetime(2024, 1, 11, 9, 0, 0, 123456, tzinfo=IST)
    assert stored.to_json()["utc_offset"] == "+05:30"
    assert "utc_offset" not in stored.extra


def test_a_token_file_without_utc_offset_is_read_in_this_machines_zone_as_before() -> None:
    data = token_data(timestamp="2024-01-10T09:00:00", expires_at=None)
    stored = store.parse_token_json(data, TOKEN_FILE, "interactive")
    assert stored.utc_offset is None
    assert stored.effective_expiry == datetime(2024, 1, 11, 9, 0).astimezone()
    assert "utc_offset" not in stored.to_json()


def test_a_new_token_keeps_the_offset_of_its_login() -> None:
    stored = StoredToken.logged_in_now(
        token="t", user_id="CK68", session="interactive", api_root="r", expires_at=None
    )
    now = datetime.now().astimezone()
    assert stored.timestamp.tzinfo is None
    assert stored.utc_offset == now.utcoffset()
    assert abs((stored.logged_in_at - now).total_seconds()) < 60


@pytest.mark.parametrize(
    "changes",
    [
        {"timestamp": "0001-01-01T00:00:00"},
        {"timestamp": "1969-12-31T23:59:59"},
        {"timestamp": "9999-01-01T00:00:00"},
        {"timestamp": "9999-12-31T23:59:59.999999+05:30"},
        {"expires_at": "0001-01-01T00:00:00+14:00"},
        {"expires_at": "9999-12-31T23:59:59"},
        {"expires_at": "9999-12-31T23:59:59-14:00"},
    ],
)
def test_parse_token_json_calls_times_at_the_ends_of_the_calendar_corrupt(
    changes: dict[str, str],
) -> None:
    with pytest.raises(TokenUnavailableError) as failure:
        store.parse_token_json(token_data(**changes), TOKEN_FILE, "interactive")
    assert failure.value.state == "corrupt"
    assert "from 1970 to 9998" in failure.value.message


@pytest.mark.parametrize("exp", [-62135596800, 253402300799, 253370764800])
def test_an_exp_claim_at_the_ends_of_the_calendar_is_no_readable_expiry(exp: int) -> None:
    assert store.expiry_from_token(jwt_of({"exp": exp})) is None


def test_the_first_and_last_plausible_times_are_read() -> None:
    first = token_data(timestamp="1970-01-01T00:00:00", expires_at="9998-12-31T23:59:59")
    stored = store.parse_token_json(first, TOKEN_FILE, "interactive")
    assert stored.logged_in_at.timestamp() < 86400
    assert stored.seconds_left() > 0


def test_the_lock_holder_is_read_from_a_regular_file_only(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    lock.write_bytes(b"pid 42 since 2024-10-13 09:00:00\x1b[2J\nsecond line\n" + b"x" * 500)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fds = [
        os.open(lock, os.O_RDONLY),
        os.open("/dev/zero", os.O_RDONLY),
        os.open(fifo, os.O_RDWR | os.O_NONBLOCK),
    ]
    try:
        holders = [locks.RunLock._holder(fd) for fd in fds]
    finally:
        for fd in fds:
            os.close(fd)
    assert holders == ["pid 42 since 2024-10-13 09:00:00?[2J", "holder unknown", "holder unknown"]


def test_write_atomically_refuses_a_symlink_planted_at_its_temporary_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temporary file is created O_EXCL|O_NOFOLLOW: a symlink planted at its name (by
    another user of a shared folder) is refused, and neither its target nor the token file is
    written. The name is made unguessable in the program; the test fixes it to plant one."""
    target = tmp_path / "xts_store_token.json"
    target.write_text("old")
    victim = tmp_path / "victim"
    victim.write_text("victim")
    planted = tmp_path / ".xts_store_token.json.1.2.tmp"
    planted.symlink_to(victim)
    monkeypatch.setattr(store, "_temporary_beside", lambda path: planted)
    from xts_refresher.errors import TokenSaveError

    with pytest.raises(TokenSaveError):
        store.write_atomically(target, b"new")
    assert victim.read_text() == "victim"
    assert target.read_text() == "old"


# -- sessions -------------------------------------------------------------------------------


def test_sessions_table_order() -> None:
    assert list(SESSIONS) == ["interactive", "marketdata"]
    assert list(SESSIONS.values()) == [INTERACTIVE, MARKETDATA]
    assert all(name == session.name for name, session in SESSIONS.items())
    assert (INTERACTIVE.label, MARKETDATA.label) == ("interactive", "market-data")


@pytest.mark.parametrize(
    "field",
    [
        "name",
        "label",
        "title",
        "key_variable",
        "secret_variable",
        "path_variable",
        "default_file",
        "default_base",
        "login_path",
        "check_path",
    ],
)
def test_session_facts_are_distinct(field: str) -> None:
    values = [getattr(session, field) for session in SESSIONS.values()]
    assert len(set(values)) == len(values)


def test_session_variables_are_distinct_across_sessions() -> None:
    variables = [
        name
        for session in SESSIONS.values()
        for name in (
            session.key_variable,
            session.secret_variable,
            session.path_variable,
            session.base_variable,
        )
        if name is not None
    ]
    assert len(variables) == len(set(variables))
    assert all(re.fullmatch(r"XTS_[A-Z_]+", name) for name in variables)
    assert set(variables) <= set(settings.KNOWN_VARIABLES)


@pytest.mark.parametrize("session", list(SESSIONS.values()), ids=lambda s: s.name)
def test_every_session_field_is_set(session: Session) -> None:
    optional = {"base_variable", "check_user_parameter"}
    for field in Session.__slots__:
        value = getattr(session, field)  # AttributeError when a field was never set
        if field in optional and value is None:
            continue
        if field in ("uses_hostlookup", "one_login_per_app_key", "user_id_has_suffix"):
            assert isinstance(value, bool), field
        elif field == "extra_fields":
            assert isinstance(value, tuple) and value, field
        else:
            assert isinstance(value, str) and value, field
    assert session.default_base.startswith("/")
    assert session.login_path.startswith("/") and session.check_path.startswith("/")


def test_session_needs_every_fact() -> None:
    facts = {field: getattr(INTERACTIVE, field) for field in Session.__slots__}
    assert Session(**facts) == INTERACTIVE
    del facts["label"]
    with pytest.raises(TypeError, match="label"):
        Session(**facts)


@pytest.mark.parametrize("session", list(SESSIONS.values()), ids=lambda s: s.name)
@pytest.mark.parametrize("field", ["name", "label", "key_variable", "new_field"])
def test_session_is_immutable(session: Session, field: str) -> None:
    with pytest.raises(AttributeError):
        setattr(session, field, "changed")
    with pytest.raises(AttributeError):
        delattr(session, field)
    assert session.name in SESSIONS


def test_sessions_table_cannot_be_modified() -> None:
    table: Any = SESSIONS
    with pytest.raises(TypeError):
        table["other"] = INTERACTIVE
    with pytest.raises(TypeError):
        table["interactive"] = MARKETDATA
    with pytest.raises(TypeError):
        del table["marketdata"]
    assert list(SESSIONS) == ["interactive", "marketdata"]


# -- paths ----------------------------------------------------------------------------------


def test_app_dir_is_the_project_folder() -> None:
    assert str(APP_DIR) == paths.APP_DIR


@pytest.mark.parametrize(
    ("value", "under_app_dir"),
    [
        ("xts_store_token.json", "xts_store_token.json"),
        ("tokens/x.json", "tokens/x.json"),
        ("a/../b", "b"),
        ("./a/./b//c", "a/b/c"),
        ("a/b/../../c.json", "c.json"),
        ("", ""),
        (".", ""),
        (f"~{NO_SUCH_USER}/x", f"~{NO_SUCH_USER}/x"),
        (f"~{NO_SUCH_USER}", f"~{NO_SUCH_USER}"),
        ("x~/y", "x~/y"),
    ],
)
def test_resolve_relative(value: str, under_app_dir: str) -> None:
    expected = os.path.normpath(os.path.join(paths.APP_DIR, under_app_dir))
    assert paths.resolve(value) == expected
    assert os.path.isabs(paths.resolve(value))


@pytest.mark.parametrize("value", ["/tmp/x.json", "/a/../b", "/a/./b//c/", "//srv/x"])
def test_resolve_absolute_kept_as_written(value: str) -> None:
    assert paths.resolve(value) == value


@pytest.mark.parametrize(
    ("value", "under_home"),
    [("~", ""), ("~/x.json", "/x.json"), ("~/a/../b", "/a/../b")],
)
def test_resolve_expands_home(
    value: str, under_home: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.resolve(value) == f"{tmp_path}{under_home}"


def test_resolve_expands_a_known_user() -> None:
    import pwd

    entry = pwd.getpwuid(os.getuid())
    home = entry.pw_dir.rstrip("/") or "/"
    assert paths.resolve(f"~{entry.pw_name}/x") == os.path.join(home, "x")


def test_read_small_file_reads_up_to_1_mib(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a" * paths.MAX_SMALL_FILE)
    content, info = paths.read_small_file(path)
    assert content == b"a" * paths.MAX_SMALL_FILE
    assert info.st_size == paths.MAX_SMALL_FILE
    with path.open("ab") as more:
        more.write(b"b")
    with pytest.raises(paths.RefusedFileError) as failure:
        paths.read_small_file(path)
    assert failure.value.strerror == "it is larger than 1 MiB"


def test_read_small_file_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to("/dev/zero")
    found = {}
    for path in (fifo, Path("/dev/zero"), link, tmp_path):
        with pytest.raises(paths.RefusedFileError) as failure:
            paths.read_small_file(path)
        found[path.name] = failure.value.strerror
    assert found == {
        "fifo": "it is a FIFO (named pipe), not a regular file",
        "zero": "it is a device, not a regular file",
        "link": "it is a device, not a regular file",
        tmp_path.name: "it is a folder, not a regular file",
    }
    with pytest.raises(FileNotFoundError):
        paths.read_small_file(tmp_path / "nothing")


def test_reading_small_files_leaves_no_descriptor_open(tmp_path: Path) -> None:
    """Every read closes what it opened, also when the opened file is refused: a bot calls
    load_token (which reads this way) again and again in one long-lived process."""
    token = tmp_path / "xts_store_token.json"
    token.write_text('{"token": "x"}', encoding="utf-8")
    huge = tmp_path / "huge.json"
    huge.write_bytes(b"x" * (paths.MAX_SMALL_FILE + 1))
    before = len(os.listdir("/proc/self/fd"))

    for _ in range(20):
        assert paths.read_small_file(token)[0] == b'{"token": "x"}'
        with pytest.raises(paths.RefusedFileError):
            paths.read_small_file(huge)

    assert len(os.listdir("/proc/self/fd")) == before


def test_file_value_of_a_file_that_cannot_be_read_is_none(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.env"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.env"
    huge.write_bytes(b"XTS_TOKEN_FILE=/x\n" + b"#" * paths.MAX_SMALL_FILE)
    assert paths.file_value(str(fifo), "XTS_TOKEN_FILE") is None
    assert paths.file_value(str(huge), "XTS_TOKEN_FILE") is None


# -- settings -------------------------------------------------------------------------------


def test_an_owner_without_a_user_name_is_named_by_number() -> None:
    """A settings file owned by a uid no user has (a file unpacked from another machine) is
    named by that number in the message that refuses it, not a crash."""
    import pwd

    from xts_refresher.env_files import user_name

    uid = 54321
    while uid in {entry.pw_uid for entry in pwd.getpwall()}:
        uid += 1

    assert user_name(uid) == str(uid)
    assert user_name(0) == "root"


@pytest.mark.parametrize(
    "value", ["x.json", "a/../b", "/tmp/x", "~nosuchuser_xts/x", Path("rel/p"), Path("/abs")]
)
def test_resolve_path_is_paths_resolve(value: str | Path) -> None:
    resolved = parsers.resolve_path(value)
    assert isinstance(resolved, Path)
    assert resolved == Path(paths.resolve(os.fspath(value)))
    assert resolved.is_absolute()


def test_credentials_repr_hides_secrets() -> None:
    creds = Credentials("ik-KEY-123456", "is-SECRET-987654")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds]), repr({"i": creds})):
        assert "KEY-123" not in text and "SECRET-987" not in text
        assert "ik-KEY" not in text and "is-SECR" not in text


def test_telegram_settings_repr_hides_the_bot_token() -> None:
    telegram = TelegramSettings("987654:AAbotTOKENzz", ("4242",), "all", "https://api.telegram.org")
    for text in (repr(telegram), str(telegram), repr([telegram])):
        assert "AAbotTOKEN" not in text and "987654" not in text
        assert "4242" in text


MINIMAL = {
    "XTS_API_ROOT": "https://xts.example",
    "XTS_INTERACTIVE_API_KEY": "ik-unit-key",
    "XTS_INTERACTIVE_API_SECRET": "is-unit-secret",
}
MARKETDATA_PAIR = {
    "XTS_MARKETDATA_API_KEY": "mk-unit-key",
    "XTS_MARKETDATA_API_SECRET": "ms-unit-secret",
}


def load(
    tmp_path: Path, values: dict[str, str], environ: dict[str, str] | None = None, **flags: str
) -> settings.Settings:
    env_file = tmp_path / "unit.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    env_file.chmod(0o600)
    return load_settings(PathOverrides(env_file=str(env_file), **flags), environ or {})


def test_load_settings_minimal(tmp_path: Path) -> None:
    loaded = load(tmp_path, MINIMAL)
    assert loaded.sessions == (INTERACTIVE,)
    assert dict(loaded.credentials) == {"interactive": Credentials("ik-unit-key", "is-unit-secret")}
    assert loaded.api_root == "https://xts.example"
    assert loaded.env_file == tmp_path / "unit.env"
    assert loaded.token_path(INTERACTIVE) == APP_DIR / "xts_store_token.json"
    assert loaded.token_path(MARKETDATA) == APP_DIR / "xts_marketdata_token.json"
    assert loaded.log_file == APP_DIR / "xts_token_refresh.log"
    assert loaded.lock_file == APP_DIR / "xts_store_token.json.lock"
    assert loaded.base_path(INTERACTIVE) == "/interactive"
    assert loaded.base_path(MARKETDATA) == "/apimarketdata"
    assert loaded.telegram is None
    assert (loaded.source, loaded.verify_ssl, loaded.retries) == ("WEBAPI", True, 4)
    assert sorted(loaded.secrets()) == ["ik-unit-key", "is-unit-secret"]


def test_lock_files_are_the_run_lock_and_one_per_configured_token_file_in_sorted_order(
    tmp_path: Path,
) -> None:
    """Every run takes its locks in path order, whichever session each belongs to, so two runs
    that share files (even as different sessions) can never each hold what the other awaits."""
    alone = load(tmp_path, {**MINIMAL, "XTS_TOKEN_FILE": str(tmp_path / "z.json")})
    assert alone.lock_files == (tmp_path / "z.json.lock",)
    both = {**MARKETDATA_PAIR, **MINIMAL, "XTS_MARKETDATA_TOKEN_FILE": str(tmp_path / "a.json")}
    one = load(tmp_path, {**both, "XTS_TOKEN_FILE": str(tmp_path / "z.json")})
    other = load(tmp_path, {**both, "XTS_TOKEN_FILE": str(tmp_path / "b.json")})
    assert one.lock_files == (tmp_path / "a.json.lock", tmp_path / "z.json.lock")
    assert other.lock_files == (tmp_path / "a.json.lock", tmp_path / "b.json.lock")
    assert one.lock_file == tmp_path / "z.json.lock"
    market_data_only = {
        **{k: v for k, v in both.items() if "INTERACTIVE" not in k},
        "XTS_TOKEN_FILE": str(tmp_path / "z.json"),
    }
    # The run lock follows the interactive token file even where only market data is on.
    assert load(tmp_path, market_data_only).lock_files == one.lock_files


def test_load_settings_both_sessions_in_order(tmp_path: Path) -> None:
    loaded = load(tmp_path, {**MARKETDATA_PAIR, **MINIMAL})
    assert loaded.sessions == (INTERACTIVE, MARKETDATA)


def test_load_settings_marketdata_alone(tmp_path: Path) -> None:
    values = {"XTS_API_ROOT": "https://xts.example", **MARKETDATA_PAIR}
    assert load(tmp_path, values).sessions == (MARKETDATA,)


def test_load_settings_environment_beats_the_file(tmp_path: Path) -> None:
    loaded = load(tmp_path, MINIMAL, {"XTS_API_ROOT": "https://other.example/", "HOME": "/x"})
    assert loaded.api_root == "https://other.example"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("md_token.json", APP_DIR / "md_token.json"),
        ("tokens/../md.json", APP_DIR / "md.json"),
        ("/srv/xts/md.json", Path("/srv/xts/md.json")),
    ],
)
def test_load_settings_marketdata_token_file(tmp_path: Path, value: str, expected: Path) -> None:
    loaded = load(tmp_path, {**MINIMAL, **MARKETDATA_PAIR, "XTS_MARKETDATA_TOKEN_FILE": value})
    assert loaded.token_path(MARKETDATA) == expected
    assert loaded.token_path(INTERACTIVE) == APP_DIR / "xts_store_token.json"


def test_load_settings_token_file_flag_moves_the_interactive_file_only(tmp_path: Path) -> None:
    flag = str(tmp_path / "flag.json")
    loaded = load(tmp_path, {**MINIMAL, "XTS_TOKEN_FILE": "ignored.json"}, token_file=flag)
    assert loaded.token_path(INTERACTIVE) == Path(flag)
    assert loaded.token_path(MARKETDATA) == APP_DIR / "xts_marketdata_token.json"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("apibinarymarketdata", "/apibinarymarketdata"),
        ("/apibinarymarketdata", "/apibinarymarketdata"),
        ("apibinarymarketdata/", "/apibinarymarketdata"),
        ("//marketdata//", "/marketdata"),
        ("/a/b/", "/a/b"),
        ("  /md  ", "/md"),
    ],
)
def test_load_settings_marketdata_path(tmp_path: Path, value: str, expected: str) -> None:
    loaded = load(tmp_path, {**MINIMAL, **MARKETDATA_PAIR, "XTS_MARKETDATA_PATH": value})
    assert loaded.base_path(MARKETDATA) == expected
    assert loaded.base_path(INTERACTIVE) == "/interactive"


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"XTS_API_ROOT": "https://xts.example"}, "No session is configured"),
        ({k: v for k, v in MINIMAL.items() if k != "XTS_API_ROOT"}, "XTS_API_ROOT is not set"),
        ({**MINIMAL, "XTS_INTERACTIVE_API_SECRET": "your_secret"}, "placeholder"),
        ({**MINIMAL, "XTS_MARKETDATA_API_KEY": "mk"}, "XTS_MARKETDATA_API_SECRET is not set"),
        ({**MINIMAL, "XTS_MARKETDATA_TOKEN_FILE": "xts_store_token.json"}, "must differ"),
    ],
)
def test_load_settings_refuses(tmp_path: Path, values: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load(tmp_path, values)


@pytest.mark.parametrize(
    ("configured", "expected"), [("/", ""), ("//apibinarymarketdata/", "/apibinarymarketdata")]
)
def test_a_marketdata_path_of_slash_adds_no_double_slash(
    tmp_path: Path, configured: str, expected: str
) -> None:
    """XTS_MARKETDATA_PATH=/ means no path of its own: the login URL has no "//"."""
    env_file = tmp_path / "t.env"
    env_file.write_text("", encoding="utf-8")
    environ = {
        "XTS_API_ROOT": "https://x.example",
        MARKETDATA.key_variable: "k-123456",
        MARKETDATA.secret_variable: "s-123456",
        "XTS_MARKETDATA_PATH": configured,
    }
    loaded = load_settings(settings.PathOverrides(env_file=str(env_file)), environ)
    assert loaded.base_path(MARKETDATA) == expected


def test_an_install_never_shows_its_raw_settings_in_a_repr(tmp_path: Path) -> None:
    """The install holds every raw setting, secrets included: its repr hides them."""
    from xts_refresher.accounts import Install

    install = Install(
        tmp_path / ".env", {"XTS_INTERACTIVE_API_SECRET": "sec-REPR-123456"}, tmp_path, ()
    )
    assert "sec-REPR-123456" not in repr(install)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--account", "a", "status", "--account", "b"], ["a", "b"]),
        (["--account", "a", "--account", "b"], ["a", "b"]),
        (["status", "--account", "b"], ["b"]),
        (["status"], []),
    ],
)
def test_account_flags_before_and_after_the_command_add_up(
    argv: list[str], expected: list[str]
) -> None:
    """``--account`` may come before the command name and after it: both lists count."""
    full = cli.with_default_command(argv)
    args = cli.build_parser(cli.command_named(full)).parse_args(full)
    assert cli.selected_accounts(args) == expected


# -- a run of accounts: its outcome, its closing ping, what it imports --------------------------


def test_two_accounts_on_one_marketdata_token_file_are_refused(tmp_path: Path) -> None:
    """The collision check covers every session's file, not only the interactive one."""
    from xts_refresher.accounts import load_selection

    accounts = tmp_path / "accounts"
    accounts.mkdir()
    env = tmp_path / "shared.env"
    env.write_text(f"XTS_ACCOUNTS_DIR={accounts}\n")
    for name in ("alice", "bob"):
        (accounts / f"{name}.env").write_text(
            "XTS_API_ROOT=https://xts.example\n"
            f"XTS_INTERACTIVE_API_KEY=ik-{name}-1234\nXTS_INTERACTIVE_API_SECRET=is-{name}-1234\n"
            f"XTS_MARKETDATA_API_KEY=mk-{name}-1234\nXTS_MARKETDATA_API_SECRET=ms-{name}-1234\n"
            f"XTS_MARKETDATA_TOKEN_FILE={tmp_path / 'md.json'}\n"
        )
    with pytest.raises(ConfigError, match="alice and bob would both write"):
        load_selection(PathOverrides(env_file=str(env)), {})


def test_a_single_account_ends_with_its_closing_line_and_account_files_with_the_summary() -> None:
    """outcome.last_text: the run's last line (printed last, and carried by the closing ping)
    is the single account's own closing line, or with account files the summary line."""
    from xts_refresher.errors import LoginRefusedError
    from xts_refresher.outcome import AccountResult, last_text

    fresh = AccountResult("default", [], [])
    refused = AccountResult("bob", [LoginRefusedError("refused", "Check the key.")], [])

    assert last_text([fresh], labelled=False) == (
        "✓ Every configured session holds a fresh token (exit code 0)."
    )
    assert last_text([refused], labelled=False) == (
        "✗ Token refresh failed (exit code 1): refused Check the key."
    )
    assert last_text([fresh.replaced(account="alice")], labelled=True) == (
        "✓ Account alice holds fresh tokens (exit code 0)."
    )
    assert last_text([fresh.replaced(account="alice"), refused], labelled=True) == (
        "✗ 1 of 2 accounts failed (exit code 1): bob: refused Check the key."
    )
    carol = refused.replaced(account="carol")
    assert last_text([refused, carol], labelled=True) == (
        "✗ 2 of 2 accounts failed (exit code 1): bob: refused Check the key; "
        "carol: refused Check the key."
    )


def test_the_telegram_message_of_accounts_marks_each_failed_one_and_puts_it_first() -> None:
    """outcome.accounts_message: the failed accounts first, each marked ✗ with its reason;
    the others marked ✓ (a trader reads the marks, not the counts)."""
    from xts_refresher.errors import LoginRefusedError
    from xts_refresher.outcome import AccountResult, accounts_message

    alice = AccountResult("alice", [], [])
    bob = AccountResult("bob", [LoginRefusedError("refused", "Check the key.")], [])

    lines = accounts_message([alice, bob], "host1").splitlines()

    assert lines[0].startswith("❌ XTS token refresh on host1: 1 of 2 accounts FAILED")
    assert lines[1] == "✗ bob"
    assert lines[2].startswith("  • ") and "refused" in lines[2]
    assert "✓ alice" in lines
    assert "✗ alice" not in lines


def test_the_telegram_message_of_one_account_counts_in_the_singular() -> None:
    """outcome.accounts_message of a run (or a chat) of one account names it, never "all 1
    accounts" nor "1 of 1 accounts"."""
    from xts_refresher.errors import LoginRefusedError
    from xts_refresher.outcome import AccountResult, accounts_message

    fresh = accounts_message([AccountResult("alice", [], [])], "host1")
    failed = accounts_message([AccountResult("bob", [LoginRefusedError("refused")], [])], "h")

    assert fresh.splitlines()[0] == "✅ XTS token refresh on host1: account alice, fresh tokens"
    assert failed.splitlines()[0] == "❌ XTS token refresh on h: account bob, FAILED (exit code 1)"
    assert "1 accounts" not in fresh + failed


def test_a_closing_ping_hears_its_own_accounts_lines_and_the_runs_own() -> None:
    """ConsoleCapture.text(accounts) keeps the lines of those accounts (AccountLog, each
    starting ``[NAME] ``) and the run's own lines, not another account's; without accounts,
    every line."""
    import logging

    from xts_refresher.console import AccountLog, ConsoleCapture, account_prefix

    log = logging.getLogger("xts_token_refresh.test_capture")
    log.propagate = False
    log.setLevel(logging.INFO)
    capture = ConsoleCapture()
    log.addHandler(capture)
    try:
        AccountLog(log, "alice").info("logged in\nsaved")
        AccountLog(log, "bob").info("refused")
        log.warning("⚠ the run's own line")
    finally:
        log.removeHandler(capture)

    assert account_prefix("alice") == "[alice] "
    assert capture.text(["alice"]) == "[alice] logged in\n[alice] saved\n⚠ the run's own line\n"
    assert "[bob] refused" in capture.text()
    assert "[alice]" not in capture.text(["bob"])


def test_accounts_done_at_the_same_moment_print_their_lines_one_block_after_the_other() -> None:
    """console.AccountLines: each account's console lines are held until it is released,
    the run's own lines pass at once, and four accounts released at the same moment (from
    four threads, as accounts finish) print four whole blocks, never mixed."""
    import io
    import logging
    import threading
    import time

    from xts_refresher.console import AccountLines, AccountLog

    class SlowConsole(io.StringIO):
        """A console whose every write lets the other threads run (a terminal, a pipe)."""

        def write(self, text: str) -> int:
            time.sleep(0.0002)
            return super().write(text)

    stream = SlowConsole()
    log = logging.getLogger("xts_token_refresh.test_blocks")
    log.propagate = False
    log.setLevel(logging.INFO)
    console = logging.StreamHandler(stream)
    log.addHandler(console)
    names = ["a", "b", "c", "d"]
    try:
        held = AccountLines(console)
        for name in names:
            for number in range(100):
                AccountLog(log, name).info("line %d", number)
        log.info("the run's own line")
        assert stream.getvalue() == "the run's own line\n"
        start = threading.Barrier(len(names))

        def release(name: str) -> None:
            start.wait()
            held.release(name)

        threads = [threading.Thread(target=release, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        held.close()
        AccountLog(log, "e").info("after the run")
    finally:
        log.removeHandler(console)

    printed = stream.getvalue().splitlines()[1:]
    owners = [line[1] for line in printed[:-1]]
    assert len(owners) == 4 * 100
    assert sum(1 for i in range(1, len(owners)) if owners[i] != owners[i - 1]) == 3, owners
    assert printed[-1] == "[e] after the run"  # once closed, nothing is held


def test_a_failure_is_one_line_with_its_hint_unless_its_message_has_several() -> None:
    """console.report_failure: a one-line message and its hint make one ✗ line; a message of
    several lines gets its own ✗ line, and the hint the last one."""
    import logging

    from xts_refresher.console import ConsoleCapture, report_failure
    from xts_refresher.errors import LoginRefusedError

    log = logging.getLogger("xts_token_refresh.test_report_failure")
    log.propagate = False
    log.setLevel(logging.INFO)
    capture = ConsoleCapture()
    log.addHandler(capture)
    try:
        report_failure(log, LoginRefusedError("XTS refused the login.", "Check the key."))
        report_failure(log, LoginRefusedError("First line.\nSecond line.", "Check the key."))
    finally:
        log.removeHandler(capture)

    assert capture.text().splitlines() == [
        "✗ XTS refused the login. Check the key.",
        "✗ First line.",
        "Second line.",
        "✗ Check the key.",
    ]


def test_an_accounts_line_holding_a_percent_sign_is_logged_as_written() -> None:
    """An account's line is formatted only when it has arguments: a path or a message with
    ``%`` in it (a folder named ``100%``) is logged as written, not taken for a format."""
    import logging

    from xts_refresher.console import AccountLog, ConsoleCapture

    log = logging.getLogger("xts_token_refresh.test_percent")
    log.propagate = False
    log.setLevel(logging.INFO)
    capture = ConsoleCapture()
    log.addHandler(capture)
    try:
        AccountLog(log, "alice").info("✓ Token saved to /srv/100%/x_%s.json")
        AccountLog(log, "alice").info("%s of %d", "one", 2)
    finally:
        log.removeHandler(capture)

    assert capture.text() == "[alice] ✓ Token saved to /srv/100%/x_%s.json\n[alice] one of 2\n"


def test_metrics_and_the_refresh_read_the_app_key_expiry_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One parser of XTS's application_expiry_date (store.app_key_expiry) for the refresh's
    warning and the metrics' gauge; a date this machine's zone cannot place as a Unix time
    (1 January of year 1, west of Greenwich) is no gauge, and no crash."""
    import time

    from xts_refresher.metrics import _app_key_timestamp

    for value in ("30-12-2028", "2028-12-30", "30/12/2028"):
        expiry = store.app_key_expiry(value)
        assert expiry == datetime(2028, 12, 30)
        assert _app_key_timestamp(value) == expiry.timestamp()
    assert store.app_key_expiry("someday") is None
    assert _app_key_timestamp("someday") is None
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert store.app_key_expiry("01-01-0001") == datetime(1, 1, 1)
        assert _app_key_timestamp("01-01-0001") is None
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_refresh_imports_neither_signal_py_nor_the_hook_module() -> None:
    """Start-up budget: the refresh path sets its signal handlers through the C module (the
    enums of signal.py cost about 3 M instructions), and only a run with a hook imports
    hook.py."""
    import subprocess

    probe = (
        "import sys, xts_refresher.cli, xts_refresher.refresh\n"
        "print(sorted(m for m in ('signal', 'xts_refresher.hook') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=APP_DIR, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_an_accounts_code_is_its_highest_failure_not_its_first() -> None:
    """A refused login (1) and a token that could not be saved (4): the account exits 4."""
    from xts_refresher.errors import LoginRefusedError, TokenSaveError
    from xts_refresher.outcome import AccountResult

    result = AccountResult("a", [LoginRefusedError("refused"), TokenSaveError("full")], [])
    assert result.code == 4
    assert isinstance(result.worst, TokenSaveError)


# -- times shown to people (shown_time) and the run record ------------------------------------

ZONE_FOLDER = Path("/usr/share/zoneinfo")


def zone_files() -> list[tuple[str, bytes]]:
    """Every TZif file of the machine's zone folder (skip_or_fail without one), by name."""
    if not (ZONE_FOLDER / "Asia" / "Kolkata").is_file():
        skip_or_fail(f"no zone database in {ZONE_FOLDER} (apt-get install tzdata)")
    found = []
    for folder, _, names in os.walk(ZONE_FOLDER):
        for name in names:
            key = os.path.relpath(os.path.join(folder, name), ZONE_FOLDER)
            data = Path(folder, name).read_bytes()
            if data[:4] == b"TZif" and not key.startswith(("posix/", "right/")):
                found.append((key, data))
    return found


def test_the_fixed_offset_read_from_a_zone_file_is_zoneinfos_from_its_last_transition_on() -> None:
    """For every zone of the machine that the fast path takes (a fixed offset since its last
    transition, a footer without daylight saving time), the offset and abbreviation are
    zoneinfo's at that transition and up to 80 years later; Asia/Kolkata is among them, and
    zones with daylight saving time (Europe/London, America/New_York) are not."""
    from xts_refresher.shown_time import fixed_tail

    taken = set()
    for key, data in zone_files():
        found = fixed_tail(data)
        if found is None:
            continue
        taken.add(key)
        zone, since = found
        start = max(since, 0.0)
        for moment in (start, start + 1, start + 86400 * 365 * 30, start + 86400 * 365 * 80):
            when = datetime.fromtimestamp(moment, timezone.utc)
            ours, theirs = when.astimezone(zone), when.astimezone(ZoneInfo(key))
            assert (ours.utcoffset(), ours.tzname()) == (theirs.utcoffset(), theirs.tzname()), key
    assert {"Asia/Kolkata", "Asia/Tokyo", "UTC"} <= taken
    assert not {"Europe/London", "America/New_York", "Australia/Sydney"} & taken


def test_a_zone_file_the_fast_path_cannot_vouch_for_is_left_to_zoneinfo() -> None:
    """None (zoneinfo decides) for a version 1 file (no footer), a truncated file, a footer
    with daylight saving time, a footer that disagrees with the last offset, and no TZif."""
    from xts_refresher.shown_time import fixed_tail

    kolkata = (ZONE_FOLDER / "Asia" / "Kolkata").read_bytes() if zone_files() else b""
    london = (ZONE_FOLDER / "Europe" / "London").read_bytes()
    assert fixed_tail(kolkata) is not None
    assert fixed_tail(kolkata[:4] + b"\x00" + kolkata[5:]) is None  # version 1
    assert fixed_tail(kolkata[:-5]) is None
    assert fixed_tail(london) is None
    assert fixed_tail(kolkata.replace(b"IST-5:30", b"IST-5:45")) is None
    assert fixed_tail(b"not a zone file at all") is None


def test_shown_time_writes_a_time_in_the_display_zone_with_its_abbreviation() -> None:
    """An aware time, a Unix time and a naive local time in IST; without seconds; with
    ``today``, today's date left out; a time before the zone's last transition, and a zone
    with daylight saving time, through zoneinfo; an unknown zone refused."""
    from xts_refresher.shown_time import UnknownZoneError, shown_time, use_display_zone

    zone_files()
    moment = datetime(2024, 10, 13, 3, 30, tzinfo=timezone.utc)
    try:
        use_display_zone("Asia/Kolkata")
        assert shown_time(moment) == "2024-10-13 09:00:00 IST"
        assert shown_time(moment.timestamp(), seconds=False) == "2024-10-13 09:00 IST"
        naive = moment.astimezone().replace(tzinfo=None)
        assert shown_time(naive) == "2024-10-13 09:00:00 IST"
        assert shown_time(moment, today=True) == "2024-10-13 09:00:00 IST"
        now = datetime.now(timezone.utc)
        assert (
            shown_time(now, seconds=False, today=True)
            == f"{now.astimezone(ZoneInfo('Asia/Kolkata')):%H:%M} IST"
        )
        early = datetime(1940, 1, 1, tzinfo=timezone.utc)
        assert (
            shown_time(early)
            == f"{early.astimezone(ZoneInfo('Asia/Kolkata')):%Y-%m-%d %H:%M:%S %Z}"
        )
        use_display_zone("Europe/London")
        assert shown_time(moment) == "2024-10-13 04:30:00 BST"
        assert shown_time(moment - timedelta(days=30 * 3)).endswith(" BST")
        assert (
            shown_time(datetime(2024, 1, 13, 9, tzinfo=timezone.utc)) == "2024-01-13 09:00:00 GMT"
        )
        with pytest.raises(UnknownZoneError):
            use_display_zone("Mars/Olympus_Mons")
        assert shown_time(moment).endswith(" BST")  # the zone in use is kept
    finally:
        use_display_zone("Asia/Kolkata")


def test_a_refresh_showing_ist_imports_no_zoneinfo() -> None:
    """Start-up budget: importing zoneinfo costs a refresh about 10 M instructions (it asks
    sysconfig for its search path); the default zone is read from its file instead."""
    import subprocess

    zone_files()
    probe = (
        "import sys, xts_refresher.cli, xts_refresher.refresh\n"
        "from xts_refresher.shown_time import shown_time, use_display_zone\n"
        "use_display_zone('Asia/Kolkata'); print(shown_time(0.0))\n"
        "print(sorted(m for m in ('zoneinfo', 'sysconfig') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=APP_DIR, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == ["1970-01-01 05:30:00 IST", "[]"], done.stdout + done.stderr


def test_a_run_record_says_how_long_ago_its_refresh_started_and_whether_it_failed() -> None:
    """``started_at`` is the end less the duration; ``failed`` is any exit code but 0; a reason
    is one line, cut to MAX_REASON_CHARACTERS."""
    from xts_refresher.run_record import MAX_REASON_CHARACTERS, RunRecord, one_line

    record = RunRecord(1_700_000_100.0, 3, 12.5, "XTS unreachable")
    assert record.started_at == 1_700_000_087.5
    assert record.failed
    assert not RunRecord(1.0, 0, 0.0).failed
    assert one_line("a\n  b\tc ") == "a b c"
    long = one_line("x" * 5000)
    assert len(long) == MAX_REASON_CHARACTERS and long.endswith("…")


# -- alerts: what Telegram and the health check answered, and when to try again -------------


def _bot_answer(obj: object) -> bytes:
    return json.dumps(obj).encode("utf-8")


@pytest.mark.parametrize(
    ("status", "headers", "body", "retry_after"),
    [
        (429, {}, {"ok": False, "error_code": 429, "parameters": {"retry_after": 7}}, 7.0),
        (429, {"Retry-After": "3"}, {"ok": False}, 3.0),
        (429, {"Retry-After": "5"}, {"ok": False, "parameters": {"retry_after": 2}}, 2.0),
        (429, {}, b"<html>slow down</html>", None),
        (502, {}, b"<html>Bad Gateway</html>", None),
        (500, {}, {"ok": False, "error_code": 500, "description": "Internal Server Error"}, None),
        (200, {}, b"<html>captive portal</html>", None),
        (200, {}, {"ok": False}, None),
        (200, {}, [1, 2], None),
    ],
)
def test_telegram_answers_worth_another_try(
    status: int, headers: dict[str, str], body: object, retry_after: float | None
) -> None:
    """429 (waiting what Telegram asks, its body before its header), 5xx, and a 2xx that is
    not a Bot API answer are worth another try."""
    from xts_refresher.alerts import telegram_result

    raw = body if isinstance(body, bytes) else _bot_answer(body)
    with pytest.raises(errors.NotificationUnavailableError) as caught:
        telegram_result(status, headers, raw)
    assert caught.value.retry_after == retry_after
    assert caught.value.message.startswith(f"HTTP {status}")


@pytest.mark.parametrize(
    ("status", "description", "parameters", "fix"),
    [
        (401, "Unauthorized", {}, "Check TELEGRAM_TOKEN"),
        (404, "Not Found", {}, "Check TELEGRAM_TOKEN"),
        (400, "Bad Request: chat not found", {}, "Check TELEGRAM_CHAT_ID"),
        (403, "Forbidden: bot was blocked by the user", {}, "Check TELEGRAM_CHAT_ID"),
        (
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
            {"migrate_to_chat_id": -1001234567890},
            "Put -1001234567890 in TELEGRAM_CHAT_ID in place of this chat's ID",
        ),
        (409, "Conflict", {}, "Check TELEGRAM_TOKEN, TELEGRAM_CHAT_ID and TELEGRAM_API_URL"),
        (
            400,
            "Bad Request: message is too long",
            {},
            "Check TELEGRAM_TOKEN, TELEGRAM_CHAT_ID and TELEGRAM_API_URL",
        ),
    ],
)
def test_telegram_refusals_name_the_setting_to_fix(
    status: int, description: str, parameters: dict[str, Any], fix: str
) -> None:
    """A 4xx other than 429 is a refusal, its hint the setting to change."""
    from xts_refresher.alerts import telegram_result

    body = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    with pytest.raises(errors.NotificationRefusedError) as caught:
        telegram_result(status, {}, _bot_answer(body))
    assert caught.value.message == f"HTTP {status}: {description}"
    assert caught.value.hint.startswith(fix)
    assert caught.value.exit_code == 2


def test_a_telegram_ok_answer_gives_its_result() -> None:
    """``"ok": true`` in a 2xx answer is success, whatever the result holds."""
    from xts_refresher.alerts import telegram_result

    answer = {"ok": True, "result": {"message_id": 9}}
    assert telegram_result(200, {}, _bot_answer(answer)) == {"message_id": 9}


@pytest.mark.parametrize(
    ("status", "headers", "kind", "retry_after"),
    [
        (200, {}, None, None),
        (202, {}, None, None),
        (429, {"Retry-After": "4"}, errors.NotificationUnavailableError, 4.0),
        (503, {}, errors.NotificationUnavailableError, None),
        (404, {}, errors.NotificationRefusedError, None),
        (400, {}, errors.NotificationRefusedError, None),
    ],
)
def test_ping_answers(
    status: int, headers: dict[str, str], kind: type[Exception] | None, retry_after: float | None
) -> None:
    """A 2xx is delivered; 429 and 5xx are worth another try; another 4xx names HEALTHCHECK_URL."""
    from xts_refresher.alerts import ping_result

    if kind is None:
        ping_result(status, headers)
        return
    with pytest.raises(kind) as caught:
        ping_result(status, headers)
    if isinstance(caught.value, errors.NotificationUnavailableError):
        assert caught.value.retry_after == retry_after
    else:
        assert "HEALTHCHECK_URL" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, None), ("", None), (True, None), ("Wed, 21 Oct 2026 07:28:00 GMT", None),
     ("12", 12.0), (3, 3.0), ("-4", 0.0), ("nan", 0.0), (0.5, 0.5)],
)  # fmt: skip
def test_retry_after_seconds(value: object, seconds: float | None) -> None:
    """A number of seconds, never negative; anything else is no wish at all."""
    from xts_refresher.timebox import retry_after_seconds

    assert retry_after_seconds(value) == seconds


class _Attempts:
    """A fake delivery attempt: raises the queued failures in turn, then succeeds."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self, timeout: float) -> None:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)


def _deliver(attempt: _Attempts, *, budget: float = 20.0, deadline: float = 60.0,
             first_wait: float = 0.0) -> tuple[bool, list[str]]:  # fmt: skip
    import logging

    from xts_refresher.alerts import deliver
    from xts_refresher.timebox import Deadline, Pacing

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    log = logging.getLogger(f"test-deliver-{id(lines)}")
    log.propagate = False
    log.addHandler(Keep())
    pacing = Pacing(first_wait, Deadline(deadline))
    done = deliver("The thing", attempt, pacing, log, attempt_seconds=5, budget=Deadline(budget))
    return done, lines


def test_deliver_retries_transient_failures_and_stops_at_the_first_success() -> None:
    """Two transient failures, then success: three calls, two retry lines, True."""
    attempt = _Attempts(
        errors.NotificationUnavailableError("HTTP 502"),
        errors.NotificationUnavailableError("the connection was reset"),
    )
    done, lines = _deliver(attempt)
    assert done is True
    assert attempt.calls == 3
    assert [line.split(", attempt")[0] for line in lines] == [
        "⚠ The thing failed (HTTP 502)",
        "⚠ The thing failed (the connection was reset)",
    ]


def test_deliver_gives_up_after_four_attempts() -> None:
    """Transient every time: four calls, then one line saying it was not delivered."""
    attempt = _Attempts(*[errors.NotificationUnavailableError("HTTP 503") for _ in range(9)])
    done, lines = _deliver(attempt)
    assert done is False
    assert attempt.calls == 4
    assert lines[-1] == "⚠ The thing failed (HTTP 503) after 4 attempts: it was not delivered."


def test_deliver_never_retries_a_refusal() -> None:
    """A refusal: one call, one line with the fix."""
    attempt = _Attempts(errors.NotificationRefusedError("HTTP 401", "Check TELEGRAM_TOKEN."))
    done, lines = _deliver(attempt)
    assert done is False
    assert attempt.calls == 1
    assert lines == [
        "⚠ The thing was refused (HTTP 401): it was not delivered. Check TELEGRAM_TOKEN."
    ]


@pytest.mark.parametrize(
    ("budget", "deadline", "limit"),
    [(20.0, 60.0, "its 20 s budget"), (60.0, 20.0, "XTS_DEADLINE (20 s)")],
)
def test_deliver_waits_only_within_the_budget_and_the_deadline(
    budget: float, deadline: float, limit: str
) -> None:
    """A wait that does not fit in the budget, or before the deadline, is not waited: the
    line names the nearer limit."""
    attempt = _Attempts(errors.NotificationUnavailableError("HTTP 429", retry_after=30.0))
    done, lines = _deliver(attempt, budget=budget, deadline=deadline)
    assert done is False
    assert attempt.calls == 1
    assert lines == [
        f"⚠ The thing failed (HTTP 429) (asked to wait 30 s), and {limit} leaves no time for "
        "another try: it was not delivered."
    ]


@pytest.mark.parametrize(
    ("value", "retries"),
    [("0", 0), ("3", 3), (" 20 ", 20), ("007", 7), ("21", None), ("-1", None), ("1e1", None),
     ("3.0", None), ("²", None), ("٣", None), ("0000003", None), ("", 4)],
)  # fmt: skip
def test_xts_retries_takes_ascii_whole_numbers_only(
    tmp_path: Path, value: str, retries: int | None
) -> None:
    """XTS_RETRIES: up to six ASCII digits, at most 20 (unset: 4); anything else, a superscript
    or Arabic-Indic digit included, is a problem naming the variable."""
    environ = {
        "XTS_API_ROOT": "https://x.example",
        INTERACTIVE.key_variable: "k-123456",
        INTERACTIVE.secret_variable: "s-123456",
        "XTS_RETRIES": value,
    }
    if retries is None:
        with pytest.raises(errors.ConfigError, match="XTS_RETRIES must be a whole number"):
            load(tmp_path, {}, environ)
    else:
        assert load(tmp_path, {}, environ).retries == retries


def test_deliver_turns_an_unforeseen_exception_into_a_warning() -> None:
    """Whatever an attempt raises, the delivery fails with a line naming only its type, and
    the run goes on."""
    attempt = _Attempts(RuntimeError("detail that might hold anything"))
    done, lines = _deliver(attempt)
    assert done is False
    assert attempt.calls == 1
    assert lines == ["⚠ The thing failed (unexpected RuntimeError): it was not delivered."]


def test_the_retry_loop_lets_a_failure_it_cannot_mend_through_at_once() -> None:
    """What ``transient`` does not call a Failure (a refusal, a bug) is raised by the first
    attempt, unretried and unannounced."""
    import logging

    from xts_refresher.timebox import Deadline, Failure, with_retries

    calls: list[int] = []

    def attempt(number: int) -> None:
        calls.append(number)
        raise LookupError("not worth another try")

    def transient(exc: Exception) -> Failure | None:
        return Failure(str(exc)) if isinstance(exc, OSError) else None

    log = logging.getLogger("test-retry-loop-refusal")
    with pytest.raises(LookupError):
        with_retries(
            "The thing", attempt, log, transient=transient, attempts=4, first_wait=0.0,
            limits=(Deadline(60.0),),
        )  # fmt: skip
    assert calls == [1]


def test_the_retry_loop_gives_up_naming_the_deadline_that_leaves_no_time() -> None:
    """A wait that does not fit before the nearer of two deadlines is not waited: RetriesSpent
    names that deadline, the failure and the attempts made; nothing was announced."""
    import logging

    from xts_refresher.timebox import Deadline, Failure, RetriesSpent, with_retries

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    log = logging.getLogger("test-retry-loop-deadline")
    log.propagate = False
    log.addHandler(Keep())

    def attempt(number: int) -> None:
        raise OSError("reset")

    far, near = Deadline(60.0), Deadline(5.0)
    with pytest.raises(RetriesSpent) as caught:
        with_retries(
            "The thing", attempt, log, transient=lambda exc: Failure(str(exc), 30.0),
            attempts=4, first_wait=0.0, limits=(far, near),
        )  # fmt: skip
    assert caught.value.limit is near
    assert (caught.value.failure.reason, caught.value.attempts) == ("reset", 1)
    assert lines == []


def test_a_spent_deadline_has_no_time_left() -> None:
    """A deadline reports the seconds left, and none at all once it has passed (never a
    second more: a wait sized by it would outlive the run's XTS_DEADLINE)."""
    from xts_refresher.timebox import Deadline

    assert Deadline(0.0).remaining() == 0.0
    assert Deadline(-5.0).remaining() == 0.0
    assert 0.0 < Deadline(0.5).remaining() <= 0.5
    assert 29.0 < Deadline(30.0).remaining() <= 30.0


def test_a_secret_in_a_long_requests_message_is_hidden_before_it_is_shortened() -> None:
    """A bot token that straddles the 200th character of requests' message (a long
    TELEGRAM_API_URL behind a proxy) is hidden whole: not a piece of it is left."""
    import requests

    from xts_refresher.client import explain_transport_failure

    token = "123456789:AAEhBP0av28rGhZ-pkZmEwFakeFakeFake12"
    url = "https://" + "a" * 135 + ".example/bot" + token + "/sendMessage"  # token at 185
    failure = requests.exceptions.ProxyError(f"Unable to connect to proxy for {url}")
    shown = explain_transport_failure(failure, hide=token)
    assert shown.startswith("ProxyError: ")
    assert ".example/bot…/sendMes" in shown
    assert token[:14] in explain_transport_failure(failure), "the test no longer straddles"
    for start in range(len(token) - 6):
        assert token[start : start + 6] not in shown


def test_pacing_is_read_only() -> None:
    """The accounts' threads share one Pacing: none may change it for the others."""
    from xts_refresher.timebox import Deadline, Pacing

    pacing = Pacing(2.0, Deadline(60))
    with pytest.raises(AttributeError):
        pacing.first_wait = 0.0
    assert pacing.first_wait == 2.0


def test_check_config_turns_a_bug_in_a_check_into_a_line_and_exit_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check of Telegram that raises what nothing foresaw (a bug) is a ✗ line asking for a
    report, and exit 4, not a traceback; the health check is still asked (here: refused, as
    nothing listens on port 9 of 127.0.0.1)."""
    import logging

    from xts_refresher import alerts, check_config

    def broken(telegram: TelegramSettings) -> str:
        raise RuntimeError("a bug")

    monkeypatch.setattr(alerts, "check_telegram_bot", broken)
    environ = {
        "XTS_API_ROOT": "https://x.example",
        INTERACTIVE.key_variable: "k-123456",
        INTERACTIVE.secret_variable: "s-123456",
        "TELEGRAM_TOKEN": "123456789:AAFakeFakeFakeFakeFakeFakeFakeFake00",
        "TELEGRAM_CHAT_ID": "42",
        "HEALTHCHECK_URL": "http://127.0.0.1:9/ping/abc",
    }
    loaded = load(tmp_path, {}, environ)
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    log = logging.getLogger("test-check-notifications")
    log.propagate = False
    log.addHandler(Keep())
    assert check_config.check_notifications(loaded, log, {}) == 4
    assert lines[0] == (
        "✗ Unexpected error (RuntimeError) while checking Telegram. Please report it, with the "
        "log file (xts_token_refresh.log)."
    )
    assert lines[1].startswith("✗ The health check cannot be reached (connection refused)")


@pytest.mark.parametrize(
    ("remaining", "limit"), [(-5.0, 10.0), (3.0, 10.0), (45.0, 45.0), (300.0, 120.0)]
)
def test_the_hook_gets_the_time_left_at_least_10_s_at_most_120_s(
    remaining: float, limit: float
) -> None:
    """docs/operations.md: the hook may take the time left before XTS_DEADLINE, at least 10 s
    and at most 120 s."""
    from xts_refresher.hook import hook_time_limit

    assert hook_time_limit(remaining) == limit


def test_the_deliveries_of_several_accounts_take_the_shortest_backoff_and_longest_deadline(
    tmp_path: Path,
) -> None:
    """docs/accounts.md: the retries of the shared messages and pings are paced by the
    shortest XTS_RETRY_BACKOFF of the selected accounts, and none starts after the longest of
    their XTS_DEADLINEs."""
    from xts_refresher.refresh import run_pacing

    slow = load(tmp_path, {**MINIMAL, "XTS_RETRY_BACKOFF": "5", "XTS_DEADLINE": "900"})
    quick = load(tmp_path, {**MINIMAL, "XTS_RETRY_BACKOFF": "0.5", "XTS_DEADLINE": "100"})

    pacing = run_pacing([slow, quick])

    assert pacing.first_wait == 0.5
    assert 890 < pacing.deadline.remaining() <= 900


# -- the paths a run writes ---------------------------------------------------------------------


def test_written_paths_list_token_files_their_locks_the_run_record_metrics_and_log(
    tmp_path: Path,
) -> None:
    """One list of what a refresh writes: each configured session's token file and its lock
    (the market-data file's too), the run record and the metrics file with metrics, the log."""
    from xts_refresher.outputs import written_paths
    from xts_refresher.settings import lock_beside

    loaded = load(
        tmp_path,
        {
            **MINIMAL,
            **MARKETDATA_PAIR,
            "XTS_TOKEN_FILE": str(tmp_path / "i.json"),
            "XTS_MARKETDATA_TOKEN_FILE": str(tmp_path / "m.json"),
            "XTS_METRICS_FILE": str(tmp_path / "x.prom"),
        },
        log_file=str(tmp_path / "run.log"),
    )
    listed = {w.path: w for w in written_paths(loaded)}
    assert set(listed) == {
        tmp_path / "i.json",
        tmp_path / "m.json",
        tmp_path / "i.json.lock",
        tmp_path / "m.json.lock",
        tmp_path / "i.json.run",
        tmp_path / "x.prom",
        tmp_path / "run.log",
    }
    assert lock_beside(tmp_path / "i.json") == loaded.lock_file
    assert listed[tmp_path / "i.json"].renamed_over  # renamed over: a symlink there is replaced
    assert not listed[tmp_path / "run.log"].renamed_over  # written in place: a symlink is refused
    assert not listed[tmp_path / "i.json.lock"].renamed_over


def test_unchecked_token_files_are_those_of_broken_accounts_only(tmp_path: Path) -> None:
    """A run of the single account of .env has no broken account: none of its token files is
    guarded as another's (else --token-file elsewhere would make the .env's file a refusal);
    the names given (a broken .env's) get the setting, --token-file, else the default."""
    from xts_refresher.accounts import single_selection
    from xts_refresher.outputs import broken_token_files, unchecked_token_files

    loaded = load(tmp_path, {**MINIMAL, "XTS_TOKEN_FILE": str(tmp_path / "i.json")})
    selection = single_selection(loaded)
    assert broken_token_files(selection) == []
    named = unchecked_token_files(selection.install, ["default"], str(tmp_path / "flag.json"))
    assert [w.path.name for w in named] == ["flag.json", "xts_marketdata_token.json"]


def test_collisions_find_one_file_under_two_roles_but_not_a_shared_role(tmp_path: Path) -> None:
    """A hard link, a symlinked folder (for paths that do not exist yet) and a settings file
    are collisions; one path used twice in one role (the log of several accounts) is not."""
    from xts_refresher.outputs import WrittenPath, collisions

    token = tmp_path / "token.json"
    token.write_text("{}")
    os.link(token, tmp_path / "hard.log")
    (tmp_path / "alias").symlink_to(tmp_path)
    env_file = tmp_path / "settings.env"
    env_file.write_text("X=1\n")
    (tmp_path / "env-link").symlink_to(env_file)

    def written(path: Path, role: str) -> WrittenPath:
        return WrittenPath(path, role, renamed_over=False)

    assert (
        collisions([written(tmp_path / "a.log", "log"), written(tmp_path / "a.log", "log")]) == []
    )
    hard = collisions([written(token, "token"), written(tmp_path / "hard.log", "log")])
    assert [p.paths for p in hard] == [(tmp_path / "hard.log", token)]
    later = collisions(
        [written(tmp_path / "new.json", "token"), written(tmp_path / "alias" / "new.json", "md")]
    )
    assert len(later) == 1
    guarded = collisions([written(tmp_path / "env-link", "log")], [env_file])
    assert "settings file" in guarded[0].text
    through = collisions([written(env_file, "log")], [tmp_path / "env-link"])
    assert "settings file" in through[0].text


def test_the_run_lock_never_opens_through_a_symlink(tmp_path: Path) -> None:
    """A symlink at the lock path: the lock refuses it, and its target is neither truncated
    nor locked."""
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    lock = tmp_path / "token.json.lock"
    lock.symlink_to(target)
    with pytest.raises(errors.LocalError):
        locks.RunLock(lock).acquire(0)
    assert target.read_text() == "keep me\n"


def test_the_run_lock_names_its_holders_start_in_the_display_zone(tmp_path: Path) -> None:
    """The lock file says since when its holder runs as people are shown times (the display
    zone, named), since a waiting run's line and ``status`` show it."""
    from xts_refresher.shown_time import use_display_zone

    use_display_zone("Asia/Tokyo")
    lock = locks.RunLock(tmp_path / "token.json.lock")
    try:
        lock.acquire(0)
        holder = locks.lock_holder(tmp_path / "token.json.lock")
    finally:
        lock.release()
        use_display_zone("Asia/Kolkata")
    assert holder is not None
    assert re.fullmatch(rf"pid {os.getpid()} since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d JST", holder)


@pytest.mark.parametrize(
    ("raw", "chats"),
    [
        ("4242", ("4242",)),
        (" 4242 , -1001234567890 ", ("4242", "-1001234567890")),
        ("4242,,777,", ("4242", "777")),
        ("777,4242,777", ("777", "4242")),
        ("@alerts_channel,4242", ("@alerts_channel", "4242")),
        (" , ", None),
        ("", None),
    ],
)
def test_chat_ids_are_split_at_commas_once_each(raw: str, chats: tuple[str, ...] | None) -> None:
    """TELEGRAM_CHAT_ID: items trimmed, empty ones skipped, a repeated ID kept once, in order."""
    from xts_refresher.parsers import parse_chat_ids

    assert parse_chat_ids(raw) == chats


@pytest.mark.parametrize("raw", ["4242 777", "4242, 777 99", "your_telegram_chat_id,4242"])
def test_chat_ids_not_separated_by_commas_are_refused(raw: str) -> None:
    """An item with white space inside (IDs separated by spaces) or a placeholder is refused."""
    from xts_refresher.parsers import InvalidSettingError, parse_chat_ids

    with pytest.raises(InvalidSettingError):
        parse_chat_ids(raw)
