"""Times shown to people are in XTS_DISPLAY_TZ (default Asia/Kolkata), with the zone's
abbreviation, whatever zone the machine keeps; token files keep this machine's local time.

Every test runs the real script cron-style against the simulator on a machine whose zone is UTC
(``TZ=UTC`` in the bare environment), the usual VPS, and reads what people see: the console,
the log file's messages, ``status`` and the Telegram message the simulator received.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import USER_ID, Project, telegram_texts, token_json

UTC_MACHINE = {"TZ": "UTC"}
KOLKATA = ZoneInfo("Asia/Kolkata")
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def shown(moment: datetime, zone: Any = KOLKATA, seconds: bool = True) -> str:
    """``moment`` as the program shows it in ``zone``: ``2024-10-13 09:00:00 IST``."""
    local = moment.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M:%S %Z}" if seconds else f"{local:%Y-%m-%d %H:%M %Z}"


def banner_time(text: str) -> datetime:
    """The time of the banner's ``Execution Time:`` line in ``text`` (its zone left off)."""
    found = re.search(rf"^Execution Time: ({STAMP}) (\S+)$", text, re.MULTILINE)
    assert found, text
    return datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S")


def test_times_are_shown_in_ist_on_a_utc_machine(project: Project) -> None:
    """On a UTC machine with no XTS_DISPLAY_TZ: the banner, the saved token's expiry (console
    and log), ``status`` and the Telegram message say IST, 5 h 30 ahead of the machine; the
    token file keeps the machine's local time (UTC) and its offset; the log's own timestamps
    stay the machine's."""
    project.with_telegram()

    run = project.run(env=UTC_MACHINE)

    assert run.code == 0, run.output
    now_ist = datetime.now(KOLKATA).replace(tzinfo=None)
    assert re.search(rf"^Execution Time: {STAMP} IST$", run.stdout, re.MULTILINE), run.stdout
    assert abs((banner_time(run.stdout) - now_ist).total_seconds()) < 60
    data = token_json(project.token_file)
    expires = datetime.fromisoformat(str(data["expires_at"]))
    assert expires.utcoffset() == timedelta(0)  # the file: this machine's zone, UTC
    refreshed = datetime.strptime(str(data["refreshed_at"]), "%Y-%m-%d %H:%M:%S")
    now_utc = datetime.now(timezone.utc).replace(tzinfo=None)
    assert abs((refreshed - now_utc).total_seconds()) < 60
    saved_line = f"  user {USER_ID}, token {data['token']!s:.6}…, expires {shown(expires)}"
    assert saved_line in run.stdout.splitlines()
    log_lines = run.log.splitlines()
    assert any(line.endswith(saved_line) for line in log_lines)
    (banner_log,) = [line for line in log_lines if "Execution Time:" in line]
    logged_at = datetime.strptime(banner_log[:19], "%Y-%m-%d %H:%M:%S")
    assert abs((logged_at - now_utc).total_seconds()) < 60  # the log's own time: the machine's
    assert banner_log.endswith(" IST")
    (message,) = telegram_texts(project)
    assert f"interactive: user {USER_ID}, expires {shown(expires, seconds=False)}" in message

    status = project.run("status", env=UTC_MACHINE)

    assert status.code == 0, status.output
    logged_in = datetime.fromisoformat(str(data["timestamp"])).replace(tzinfo=timezone.utc)
    assert f"refreshed at {shown(logged_in)}, expires at {shown(expires)}" in status.stdout
    assert re.search(rf"^✓ last refresh: {STAMP} IST, exit code 0$", status.stdout, re.MULTILINE)


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/London", "UTC", "Asia/Tokyo"])
def test_xts_display_tz_shows_times_in_the_zone_it_names(project: Project, zone: str) -> None:
    """XTS_DISPLAY_TZ names another zone (with daylight saving time or without): the banner and
    ``status`` show its time and abbreviation (EST or EDT as the date has it); the token file
    is as without it."""
    project.settings["XTS_DISPLAY_TZ"] = zone

    run = project.run(env=UTC_MACHINE)

    assert run.code == 0, run.output
    now = datetime.now(ZoneInfo(zone))
    assert re.search(rf"^Execution Time: {STAMP} {now:%Z}$", run.stdout, re.MULTILINE)
    assert abs((banner_time(run.stdout) - now.replace(tzinfo=None)).total_seconds()) < 60
    expires = datetime.fromisoformat(str(token_json(project.token_file)["expires_at"]))
    assert expires.utcoffset() == timedelta(0)
    status = project.run("status", env=UTC_MACHINE)
    assert status.code == 0, status.output
    assert f"expires at {shown(expires, ZoneInfo(zone))}" in status.stdout


@pytest.mark.parametrize("value", ["Mars/Olympus_Mons", "../../etc/passwd", "Asia", "IST"])
def test_an_unknown_display_zone_is_exit_2_naming_the_setting(project: Project, value: str) -> None:
    """A zone this machine does not know (a made-up name, a path out of the zone folder, a
    folder of zones, an abbreviation): refresh, status and check-config exit 2 naming
    XTS_DISPLAY_TZ and how to fix it; no login is sent, and the refusal is in the log too."""
    project.settings["XTS_DISPLAY_TZ"] = value

    for command in ("refresh", "status", "check-config"):
        run = project.run(command, env=UTC_MACHINE)
        assert run.code == 2, run.output
        last = run.output.strip().splitlines()[-1]
        assert last.startswith("✗ XTS_DISPLAY_TZ is not a time zone this machine knows"), last
        assert "Asia/Kolkata" in last
    assert "XTS_DISPLAY_TZ is not a time zone" in run.log
    assert project.sim.requests() == []
    assert not project.token_file.exists()
