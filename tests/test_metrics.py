"""Prometheus metrics (``XTS_METRICS_FILE``), read by the real node_exporter, and the shipped
alerting rules checked by the real promtool.

The refresher writes the file for node_exporter's textfile collector; the tests start Debian's
``prometheus-node-exporter`` on a loopback port with only that collector, scrape it over HTTP
and compare what it serves with the token files. ``promtool`` checks the metrics file's format
and the example rules in ``prometheus/``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from conftest import APP_DIR, Project, assert_no_secrets, skip_or_fail, token_json

from xts_refresher.simulator import Fault

RULES = APP_DIR / "prometheus" / "xts_refresher_alerts.yml"
GAUGES = (
    "xts_token_expiry_timestamp_seconds",
    "xts_token_refreshed_timestamp_seconds",
    "xts_token_usable",
    "xts_refresh_last_run_timestamp_seconds",
    "xts_refresh_last_exit_code",
    "xts_refresh_last_duration_seconds",
    "xts_app_key_expiry_timestamp_seconds",
)


def tool(name: str) -> str:
    """The path of a Prometheus program (Debian's packages), or skip (fail under CI)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
    if found is None:
        skip_or_fail(
            f"{name} is not installed (apt-get install prometheus-node-exporter prometheus)"
        )
    assert found is not None
    return found


def samples(text: str) -> dict[str, float]:
    """The samples of a Prometheus text (``name{labels}`` → value), comments left out."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return found


def with_metrics(project: Project) -> Path:
    """Have the project's runs write their metrics into a folder of their own; the file."""
    folder = project.folder / "textfile"
    folder.mkdir()
    path = folder / "xts_refresher.prom"
    project.settings["XTS_METRICS_FILE"] = str(path)
    return path


@pytest.mark.system
def test_a_refresh_writes_every_gauge_matching_the_token_files(project: Project) -> None:
    """After a refresh under umask 077 (the systemd unit's): mode 0644 all the same, # HELP and
    # TYPE for every gauge, samples labelled by account and session whose values are the token
    files' own, the run's exit code 0, and no secret or token; promtool accepts the format."""
    project.with_marketdata()
    path = with_metrics(project)

    run = project.run(preexec=lambda: os.umask(0o077))

    assert run.code == 0, run.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    text = path.read_text(encoding="utf-8")
    for gauge in GAUGES:
        assert f"# HELP {gauge} " in text
        assert f"# TYPE {gauge} gauge" in text
    found = samples(text)
    stored = token_json(project.token_file)
    label = '{account="default",session="interactive"}'
    expiry = found[f"xts_token_expiry_timestamp_seconds{label}"]
    assert abs(expiry - time.time() - 86400) < 120
    assert found[f"xts_token_usable{label}"] == 1
    assert found['xts_token_usable{account="default",session="marketdata"}'] == 1
    assert found['xts_refresh_last_exit_code{account="default"}'] == 0
    assert 0 < found['xts_refresh_last_duration_seconds{account="default"}'] < 60
    assert (
        abs(found['xts_refresh_last_run_timestamp_seconds{account="default"}'] - time.time()) < 60
    )
    assert 'xts_app_key_expiry_timestamp_seconds{account="default"}' in found
    assert str(stored["token"]) not in text
    assert_no_secrets(project, text)
    checked = subprocess.run(
        [tool("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_status_after_a_failed_refresh_still_shows_the_failure(project: Project) -> None:
    """The last run's exit code is kept across commands: a ``status`` after a refused login
    rewrites the file and still says exit code 1, while the (old) token stays usable (and
    ``status`` itself exits 1 for the failed refresh)."""
    path = with_metrics(project)
    assert project.run().code == 0
    project.settings["XTS_INTERACTIVE_API_SECRET"] = "is-FAKE-wrong-secret-Mt33"
    assert project.run().code == 1
    path.unlink()

    status = project.run("status")

    assert status.code == 1, status.output
    found = samples(path.read_text(encoding="utf-8"))
    assert found['xts_refresh_last_exit_code{account="default"}'] == 1
    assert found['xts_token_usable{account="default",session="interactive"}'] == 1


@pytest.mark.system
def test_a_metrics_file_that_cannot_be_replaced_is_a_metrics_warning(project: Project) -> None:
    """The metrics file is immutable (``chattr +i``): the refresh still saves its token and
    exits 0; the one ⚠ line names the metrics file and never speaks of a token."""
    path = with_metrics(project)
    assert project.run().code == 0
    before = path.read_bytes()
    chattr = shutil.which("chattr") or "/usr/bin/chattr"
    done = subprocess.run([chattr, "+i", str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        skip_or_fail(f"chattr +i does not work here: {done.stderr.strip()}")
    try:
        run = project.run()
    finally:
        subprocess.run([chattr, "-i", str(path)], capture_output=True, check=False)

    assert run.code == 0, run.output
    warnings = [line for line in run.stdout.splitlines() if line.startswith("⚠")]
    assert len(warnings) == 1, run.stdout
    expected = f"The metrics file {path} was not written: Cannot save the metrics file to {path}"
    assert expected in warnings[0]
    assert "token" not in warnings[0]
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def free_port() -> int:
    """A loopback port nobody listens on at the moment."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def node_exporter(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Debian's node_exporter on a loopback port with only the textfile collector, reading a
    folder of its own; its metrics URL and the folder."""
    folder = tmp_path / "collector"
    folder.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [
            tool("prometheus-node-exporter"),
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={folder}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield url, folder
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.system
def test_node_exporter_serves_the_refreshers_metrics(
    project: Project, node_exporter: tuple[str, Path]
) -> None:
    """The real node_exporter reads the file without a scrape error and serves the refresher's
    gauges with the values of the token file."""
    url, folder = node_exporter
    project.settings["XTS_METRICS_FILE"] = str(folder / "xts_refresher.prom")
    assert project.run().code == 0

    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback
        served = samples(answer.read().decode("utf-8"))

    assert served["node_textfile_scrape_error"] == 0
    label = '{account="default",session="interactive"}'
    expiry = served[f"xts_token_expiry_timestamp_seconds{label}"]
    assert abs(expiry - time.time() - 86400) < 120
    assert served[f"xts_token_usable{label}"] == 1
    assert served['xts_refresh_last_exit_code{account="default"}'] == 0


@pytest.mark.system
def test_the_example_alerting_rules_are_valid() -> None:
    """promtool accepts the shipped rules: token expiring within 2 h, not usable, last exit
    code not 0, no run for 26 h, app key expiring."""
    checked = subprocess.run(
        [tool("promtool"), "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout


def test_a_refresh_or_status_of_chosen_accounts_keeps_the_other_accounts_gauges(
    project: Project,
) -> None:
    """One metrics file for two accounts: after ``refresh --account alice`` (a refused login,
    exit 1) and ``status --account alice``, the file still holds bob's gauges as his last run
    left them, next to alice's new exit code; bob's token file is untouched."""
    path = with_metrics(project)
    accounts_dir = project.with_accounts("alice", "bob")
    assert project.run().code == 0
    bob_token = accounts_dir / "bob" / "xts_store_token.json"
    bob_before = bob_token.read_bytes()
    bob = samples(path.read_text(encoding="utf-8"))
    bob = {key: value for key, value in bob.items() if 'account="bob"' in key}
    assert bob['xts_token_usable{account="bob",session="interactive"}'] == 1
    project.sim.add_fault("interactive_login", Fault.xts_error("e-user-0005", "Invalid."))

    for args, code in ((("--account", "alice"), 1), (("status", "--account", "alice"), 1)):
        run = project.run(*args)
        assert run.code == code, run.output
        found = samples(path.read_text(encoding="utf-8"))
        assert {key: found.get(key) for key in bob} == bob, f"after {args}: bob's gauges lost"
        assert found['xts_refresh_last_exit_code{account="alice"}'] == 1
    assert bob_token.read_bytes() == bob_before


def test_the_gauges_hold_the_token_files_times_and_usability(project: Project) -> None:
    """``xts_token_refreshed_timestamp_seconds`` is the file's login time, the app key's expiry
    its ``application_expiry_date`` (midnight, this machine's zone), and ``xts_token_usable``
    is 0 for a token these settings cannot use (another user's) and for a missing one."""
    project.with_marketdata()
    path = with_metrics(project)
    project.sim.application_expiry_date = "31-12-2030"
    assert project.run().code == 0
    app_key = samples(path.read_text(encoding="utf-8"))
    expected = datetime(2030, 12, 31).timestamp()
    assert app_key['xts_app_key_expiry_timestamp_seconds{account="default"}'] == expected
    stored = token_json(project.token_file)
    data = json.loads(project.token_file.read_text(encoding="utf-8"))
    data["userID"] = "ZZ99"
    project.token_file.write_text(json.dumps(data), encoding="utf-8")
    project.md_token_file.unlink()

    assert project.run("status").code == 1

    found = samples(path.read_text(encoding="utf-8"))
    interactive = '{account="default",session="interactive"}'
    refreshed = datetime.fromisoformat(str(stored["timestamp"])).timestamp()
    assert found[f"xts_token_refreshed_timestamp_seconds{interactive}"] == pytest.approx(refreshed)
    assert found[f"xts_token_usable{interactive}"] == 0
    assert found['xts_token_usable{account="default",session="marketdata"}'] == 0
    assert 'xts_app_key_expiry_timestamp_seconds{account="default"}' not in found  # file gone
