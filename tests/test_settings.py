"""Settings: each documented default, the precedence of flags, environment and settings files,
and how a settings file is read.

The defaults are held to the numbers README.md's settings table and .env.example promise
(written out here, not taken from the code). The precedence tests run the real script
cron-style against the simulator, each level naming a different place, so that only the
documented winner can produce what the simulator and the files show.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from conftest import (
    APP_DIR,
    INTERACTIVE_KEY,
    INTERACTIVE_SECRET,
    PYTHON,
    SCRIPT,
    USER_ID,
    Project,
    closed_port,
    copy_program,
    run_process,
    token_json,
    with_healthcheck,
)

from xts_refresher.cli import build_parser
from xts_refresher.settings import PathOverrides, Settings, load_settings

BOT = "123456789:AAunitBotTokenOnlyForTheDefaultsTest0"


def load_from(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    """The settings the program builds from a settings file holding ``text``."""
    env_file = tmp_path / "unit.env"
    env_file.write_text(text, encoding="utf-8")
    env_file.chmod(0o600)
    return load_settings(PathOverrides(env_file=str(env_file)), environ or {})


# -- defaults -------------------------------------------------------------------------------------


def test_every_optional_setting_has_its_documented_default(tmp_path: Path) -> None:
    """With only the required settings (and a Telegram pair), every other setting takes the
    default README.md's table gives: 30 s, 4 retries, 2 s backoff, 300 s deadline, WEBAPI,
    /apimarketdata, TLS checks on, TELEGRAM_NOTIFY=all, api.telegram.org, no label (the host
    name), no metrics, no hook, no host lookup, no health check, no user check."""
    loaded = load_from(
        tmp_path,
        "XTS_API_ROOT=https://xts.example/\n"
        "XTS_MARKETDATA_API_KEY=mk-unit\nXTS_MARKETDATA_API_SECRET=ms-unit\n"
        f"TELEGRAM_TOKEN={BOT}\nTELEGRAM_CHAT_ID=4242\n",
    )
    expected = {
        "api_root": "https://xts.example",
        "timeout": 30.0,
        "retries": 4,
        "retry_backoff": 2.0,
        "deadline": 300.0,
        "source": "WEBAPI",
        "verify_ssl": True,
        "ca_bundle": None,
        "user_id": None,
        "hostlookup_url": None,
        "post_refresh_hook": None,
        "healthcheck_url": None,
        "notify_label": None,
        "metrics_file": None,
    }
    assert {name: getattr(loaded, name) for name in expected} == expected
    assert loaded.base_paths["marketdata"] == "/apimarketdata"
    telegram = loaded.telegram
    assert telegram is not None
    assert (telegram.notify, telegram.api_url) == ("all", "https://api.telegram.org")
    assert loaded.token_files["marketdata"] == APP_DIR / "xts_marketdata_token.json"
    assert loaded.log_file == APP_DIR / "xts_token_refresh.log"


def test_files_default_to_the_scripts_folder_with_owner_only_modes(tmp_path: Path) -> None:
    """A copy of the program with a .env beside it and no path settings, started from / with
    no --env-file and a permissive umask: it reads that .env, and writes the token file, the
    log and the lock beside the script (token and log 0600)."""
    from xts_refresher.simulator import XtsSimulator

    folder = copy_program(tmp_path / "refresher")
    with XtsSimulator() as sim:
        sim.add_account(INTERACTIVE_KEY, INTERACTIVE_SECRET, USER_ID, "interactive")
        env_file = folder / ".env"
        env_file.write_text(
            f"XTS_API_ROOT={sim.url}\nXTS_INTERACTIVE_API_KEY={INTERACTIVE_KEY}\n"
            f"XTS_INTERACTIVE_API_SECRET={INTERACTIVE_SECRET}\nXTS_RETRIES=0\n",
            encoding="utf-8",
        )
        env_file.chmod(0o600)

        done = run_process(
            [PYTHON, str(folder / SCRIPT.name)], preexec=lambda: __import__("os").umask(0)
        )

    assert done.returncode == 0, done.stdout + done.stderr
    token_file = folder / "xts_store_token.json"
    assert f"✓ Token saved to: {token_file}" in done.stdout
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "xts_token_refresh.log").stat().st_mode) == 0o600
    assert (folder / "xts_store_token.json.lock").exists()
    assert not (folder / "xts_marketdata_token.json").exists()  # no market-data session set


# -- how a settings file is read -------------------------------------------------------------------


def test_every_settings_problem_is_listed_at_once(project: Project) -> None:
    """Four bad settings at once: one exit 2 naming all four variables, nothing sent."""
    project.settings.update(
        XTS_TIMEOUT="thirty", XTS_VERIFY_SSL="maybe", TELEGRAM_NOTIFY="sometimes"
    )
    project.settings["XTS_INTERACTIVE_API_SECRET"] = ""

    run = project.run()

    assert run.code == 2, run.output
    for name in ("XTS_TIMEOUT", "XTS_VERIFY_SSL", "TELEGRAM_NOTIFY", "XTS_INTERACTIVE_API_SECRET"):
        assert name in run.stdout, name
    assert project.sim.requests() == []


@pytest.mark.parametrize("quoted", [False, True], ids=["plain", "quoted"])
def test_a_secret_holding_a_dollar_is_sent_as_written(project: Project, quoted: bool) -> None:
    """No ``${VAR}`` expansion: a secret with ``$HOME`` and ``${PATH}`` in it (plain, or in
    quotes, which python-dotenv reads) reaches XTS exactly as written."""
    secret = "is-FAKE-$HOME-${PATH}-$$-dollar"
    project.sim.add_account("ik-FAKE-dollar-key", secret, USER_ID, "interactive")
    project.settings["XTS_INTERACTIVE_API_KEY"] = "ik-FAKE-dollar-key"
    project.settings["XTS_INTERACTIVE_API_SECRET"] = f"'{secret}'" if quoted else secret

    run = project.run(env={"HOME": "/root"})

    assert run.code == 0, run.output
    assert project.sim.requests("interactive_login")[0].json["secretKey"] == secret
    assert secret not in run.output + run.log


def test_no_option_takes_a_secret() -> None:
    """Secrets come only from the environment or a settings file: no option of any command
    takes a key, a secret or a bot token (``ps`` would show it)."""
    parsers = [build_parser()]
    options: list[str] = []
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:  # argparse lists its options nowhere else
            options += action.option_strings
            if isinstance(action.choices, dict):  # the subcommands' parsers
                parsers += action.choices.values()
    assert "--token-file" in options and "--verify" in options  # the walk reached the commands
    for option in options:
        assert not any(word in option for word in ("secret", "key", "password", "bot")), option


def test_every_command_warns_about_an_env_file_others_can_read(project: Project) -> None:
    """refresh, status and check-config each warn, with the chmod to run, while the settings
    file is readable by group or others; the runs still succeed."""
    env_file = project.write_env()
    env_file.chmod(0o640)
    warning = f"⚠ {env_file} can be read by other users: run `chmod 600 {env_file}`."
    for command in ("refresh", "status", "check-config"):
        run = project.run(command, "--env-file", str(env_file), use_env_file=False)
        assert run.code == 0, run.output
        assert warning in run.stdout, command


# -- precedence: flag > environment > .env > default ----------------------------------------------


def test_the_environment_beats_the_settings_file_for_every_kind_of_setting(
    project: Project,
) -> None:
    """The settings file names a dead API root, a wrong secret and 0 retries; the environment
    the simulator's root, the right secret and 2 retries: the environment's values are the
    ones used (a 503 first is retried, the login succeeds)."""
    project.settings.update(
        XTS_API_ROOT=f"http://127.0.0.1:{closed_port()}",
        XTS_INTERACTIVE_API_SECRET="is-FAKE-wrong-secret-Env1",
        XTS_RETRIES="0",
    )
    environment = {
        "XTS_API_ROOT": project.sim.url,
        "XTS_INTERACTIVE_API_SECRET": INTERACTIVE_SECRET,
        "XTS_RETRIES": "2",
    }
    from xts_refresher.simulator import Fault

    project.sim.add_fault("interactive_login", Fault.html(503))

    run = project.run(env=environment)

    assert run.code == 0, run.output
    logins = project.sim.requests("interactive_login")
    assert len(logins) == 2
    assert logins[-1].json["secretKey"] == INTERACTIVE_SECRET


def test_log_file_flag_beats_environment_beats_settings_file(project: Project) -> None:
    """XTS_LOG_FILE in the settings file, another in the environment, a third as --log-file:
    each run logs where the strongest of those it was given points, and nowhere else."""
    logs = {name: project.folder / f"{name}.log" for name in ("file", "environment", "flag")}
    project.settings["XTS_LOG_FILE"] = str(logs["file"])
    env_file = project.write_env()
    argv = [PYTHON, str(SCRIPT), "--env-file", str(env_file)]

    assert run_process(argv).returncode == 0
    assert run_process(argv, env={"XTS_LOG_FILE": str(logs["environment"])}).returncode == 0
    flagged = [*argv, "--log-file", str(logs["flag"])]
    assert run_process(flagged, env={"XTS_LOG_FILE": str(logs["environment"])}).returncode == 0

    runs = {
        name: path.read_text(encoding="utf-8").count("Cron Job Started")
        for name, path in logs.items()
    }
    assert runs == {"file": 1, "environment": 1, "flag": 1}


def test_for_an_account_flag_beats_its_file_beats_environment_beats_env_file(
    project: Project,
) -> None:
    """HEALTHCHECK_URL in .env, another in the environment, a third in alice's own file (bob's
    sets none): alice pings hers, bob the environment's, the .env's check hears nothing. And
    ``--token-file`` with ``--account alice`` beats the XTS_TOKEN_FILE of alice's file. The one
    exception: XTS_LOG_FILE in alice's file is ignored, every account logs to the shared log."""
    checks = {level: with_healthcheck(project) for level in ("env-file", "environment", "alice")}
    project.settings["HEALTHCHECK_URL"] = project.sim.url + checks["env-file"]
    alice_file = project.folder / "alice-own.json"
    own_log = project.folder / "alice-own.log"
    alice = {
        "HEALTHCHECK_URL": project.sim.url + checks["alice"],
        "XTS_TOKEN_FILE": str(alice_file),
        "XTS_LOG_FILE": str(own_log),  # not for an account: one log for all
    }
    project.with_accounts("alice", "bob", alice=alice)
    environment = {"HEALTHCHECK_URL": project.sim.url + checks["environment"]}

    run = project.run(env=environment)

    assert run.code == 0, run.output
    paths = [r.path for r in project.sim.requests("healthcheck")]
    assert sorted(paths) == sorted(
        f"{checks[level]}/{ping}" for level in ("alice", "environment") for ping in ("start", "0")
    )
    assert token_json(alice_file)["userID"] == USER_ID
    assert not own_log.exists()
    assert "[alice] ✓ Token saved to: " in project.log_file.read_text(encoding="utf-8")
    flagged = project.folder / "alice-flag.json"
    before = alice_file.read_bytes()

    run = project.run("--account", "alice", "--token-file", str(flagged), env=environment)

    assert run.code == 0, run.output
    assert f"✓ Token saved to: {flagged}" in run.stdout
    assert alice_file.read_bytes() == before
    assert json.loads(flagged.read_text(encoding="utf-8"))["session"] == "interactive"


def test_path_flags_work_before_the_command_name_too(project: Project) -> None:
    """``--env-file``, ``--token-file`` and ``--log-file`` given before ``refresh`` or
    ``status`` count as after it: the token goes to the flag's file, the log to the flag's
    log, and ``status`` reads the flag's token file."""
    token_file = project.folder / "before-command.json"
    log_file = project.folder / "before-command.log"
    flags = ["--env-file", str(project.write_env()), "--token-file", str(token_file)]
    flags += ["--log-file", str(log_file)]

    refreshed = run_process([PYTHON, str(SCRIPT), *flags, "refresh"])
    status = run_process([PYTHON, str(SCRIPT), *flags, "status", "--json"])

    assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr
    assert token_json(token_file)["userID"] == USER_ID
    assert not project.token_file.exists()
    assert "Cron Job Started" in log_file.read_text(encoding="utf-8")
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["sessions"][0]["path"] == str(token_file)


def test_a_plain_http_root_that_is_not_this_machine_is_warned_about(project: Project) -> None:
    """``XTS_API_ROOT=http://`` another host: every run warns that secrets would cross the
    network unencrypted (``status`` here, which never contacts the root); https, and plain
    http to this machine (the simulator), are not warned about."""
    warning = "⚠ XTS_API_ROOT uses plain http: secrets cross the network unencrypted."
    assert project.run().code == 0
    assert warning not in project.runs[-1].stdout  # http://127.0.0.1 is this machine
    for root, warned in (("http://xts.example", True), ("https://xts.example", False)):
        project.settings["XTS_API_ROOT"] = root
        run = project.run("status")
        assert (warning in run.stdout) is warned, (root, run.stdout)
    assert project.sim.count("interactive_login") == 1


def test_xts_api_source_is_sent_as_the_logins_source(project: Project) -> None:
    """XTS_API_SOURCE (default WEBAPI) is what each login sends as ``source``."""
    project.with_marketdata().settings["XTS_API_SOURCE"] = "MOBILEAPI"

    run = project.run()

    assert run.code == 0, run.output
    for route in ("interactive_login", "marketdata_login"):
        assert project.sim.requests(route)[0].json["source"] == "MOBILEAPI", route
