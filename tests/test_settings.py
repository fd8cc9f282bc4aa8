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
from collections.abc import Callable
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

from xts_refresher import parsers, settings
from xts_refresher.accounts import load_settings
from xts_refresher.cli import build_parser
from xts_refresher.sessions import SESSIONS
from xts_refresher.settings import PathOverrides, Settings

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


@pytest.fixture
def copied_project(tmp_path: Path) -> Path:
    """A copy of the program (script and package) in a fresh folder with no .env in it."""
    return copy_program(tmp_path / "refresher")


def test_a_missing_env_file_is_named_with_its_absolute_path_and_how_to_create_it(
    copied_project: Path,
) -> None:
    """With no .env and nothing in the environment, the run says the settings file does not
    exist (its absolute path) and how to create it, not only "XTS_API_ROOT is not set"."""
    env_file = copied_project / ".env"
    log = copied_project / "xts_token_refresh.log"

    done = run_process([PYTHON, str(copied_project / SCRIPT.name)])

    assert done.returncode == 2, done.stdout + done.stderr
    assert f"The settings file {env_file} does not exist" in done.stdout
    assert f"{copied_project / 'refresh_xts_token.sh'} --setup" in done.stdout
    assert "copies .env.example" in done.stdout
    assert done.stdout.splitlines()[-1].startswith("✗")
    assert log.exists()  # a cron run's configuration error is in its log too


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


def test_status_warns_about_an_exposed_env_file_on_stderr_with_json(project: Project) -> None:
    """``status`` repeats the warning every run gives while .env is readable by others; with
    ``--json`` the warning goes to stderr and stdout stays pure JSON."""
    assert project.run().code == 0
    env_file = project.write_env()
    env_file.chmod(0o644)
    argv = [PYTHON, str(SCRIPT), "status", "--env-file", str(env_file)]

    text = run_process(argv)
    document = run_process([*argv, "--json"])

    warning = f"⚠ {env_file} can be read by other users: run `chmod 600 {env_file}`."
    assert text.returncode == 0, text.stdout + text.stderr
    assert warning in text.stdout
    assert document.returncode == 0
    assert warning in document.stderr
    assert json.loads(document.stdout)["ok"] is True


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


# -- the table of settings ------------------------------------------------------------------------


def example_lines(folder: Path = APP_DIR) -> dict[str, tuple[str, bool]]:
    """Each variable the .env.example in ``folder`` names (``NAME=value`` or commented out,
    ``# NAME=value``): its value there, and whether the line is a setting (not commented out)."""
    named: dict[str, tuple[str, bool]] = {}
    for line in (folder / ".env.example").read_text(encoding="utf-8").splitlines():
        commented = line.startswith("# ")
        name, equals, value = line.removeprefix("# ").partition("=")
        setting = equals and name.isidentifier() and name.isupper()
        if setting and (not commented or name not in named):
            named[name] = (value, not commented)
    return named


def test_env_example_names_every_setting_of_the_table_and_no_other() -> None:
    """Every variable of the table appears in .env.example (as a setting or commented out), and
    every variable .env.example names is in the table."""
    named = example_lines()
    assert set(named) == set(settings.ROWS), set(named) ^ set(settings.ROWS)


def test_env_example_states_the_tables_defaults() -> None:
    """Where .env.example sets a value, it is the table's default (as the setting's parser reads
    both); an empty value or a placeholder is a setting with no default."""
    for name, (value, is_setting) in example_lines().items():
        row = settings.ROWS[name]
        if not is_setting:
            continue  # an example, commented out
        if not value or value.startswith("your_"):
            assert not row.default, name
        else:
            assert row.default, name
            assert row.parse(value) == row.parse(row.default), name


def test_settings_fields_are_the_tables_and_the_combined_ones() -> None:
    """Settings has a field for each row declared in its body (the row itself, on the class),
    plus the combined fields, each typed (annotated) once; the table lists the rows in the
    order of the body, the combined ones where their tuples stand."""
    fields = [row.field for row in settings.TABLE if row.field]
    assert len(fields) == len(set(fields))
    assert set(settings.FIELDS) == {*fields, *settings.COMBINED_FIELDS}
    assert set(Settings.__annotations__) == set(settings.COMBINED_FIELDS)
    for row in settings.TABLE:
        if row.field:
            assert getattr(Settings, row.field) is row, row.variable
    variables = [row.variable for row in settings.TABLE]
    assert variables[:2] == ["XTS_API_ROOT", "XTS_INTERACTIVE_API_KEY"]
    assert variables.index("XTS_CA_BUNDLE") < variables.index("TELEGRAM_TOKEN")
    assert variables[-3:] == ["XTS_LOG_FILE", "XTS_ACCOUNTS_DIR", "XTS_DISPLAY_TZ"]
    declared = [
        name for name, value in vars(Settings).items() if isinstance(value, settings.Setting)
    ]
    assert [row.field for row in settings.TABLE if row.field] == declared


def test_a_settings_field_is_its_value_and_cannot_be_set(tmp_path: Path) -> None:
    """A row's field holds the value read for it; a copy with a change (replaced) differs
    there only; assigning to a field is refused, as for any value object."""
    pair = "XTS_INTERACTIVE_API_KEY=ik-unit\nXTS_INTERACTIVE_API_SECRET=is-unit\n"
    loaded = load_from(tmp_path, f"XTS_API_ROOT=https://xts.example\n{pair}XTS_TIMEOUT=12\n")
    assert (loaded.api_root, loaded.timeout, loaded.retries) == ("https://xts.example", 12.0, 4)
    quick = loaded.replaced(timeout=1.5)
    assert (quick.timeout, loaded.timeout, quick.retries) == (1.5, 12.0, 4)
    assert quick != loaded and quick.replaced(timeout=12.0) == loaded
    assert "timeout=1.5" in repr(quick) and "_timeout" not in repr(quick)
    with pytest.raises(AttributeError):
        loaded.timeout = 3.0
    with pytest.raises(TypeError, match="needs"):
        Settings(account="default")


def test_a_row_added_to_the_body_of_settings_is_read_listed_and_held_to_env_example(
    tmp_path: Path,
) -> None:
    """The steps of adding a setting, in a copy of the program: a row added to Settings' body
    is a field read from .env (its default otherwise), check-config --help lists its variable,
    default and meaning in its place, a bad value is a problem named in its place, and the
    check of .env.example finds it missing until the file names it."""
    program = copy_program(tmp_path / "program", SCRIPT.name, ".env.example")
    module = program / "xts_refresher" / "settings.py"
    anchor = "    _install_rows = INSTALL_ROWS\n"
    row = (
        '    example_wait = Setting("XTS_EXAMPLE_WAIT", "7", seconds_parser(), '
        '"seconds an example waits")\n'
    )
    text = module.read_text(encoding="utf-8")
    assert text.count(anchor) == 1
    module.write_text(text.replace(anchor, row + anchor), encoding="utf-8")

    shown = run_process([PYTHON, str(program / SCRIPT.name), "check-config", "--help"])
    assert shown.returncode == 0, shown.stderr
    listed = shown.stdout.split("settings (in .env", 1)[1]
    assert "  XTS_EXAMPLE_WAIT=7\n      seconds an example waits\n" in listed
    assert listed.index("XTS_METRICS_FILE=") < listed.index("XTS_EXAMPLE_WAIT=")
    assert listed.index("XTS_EXAMPLE_WAIT=") < listed.index("XTS_LOG_FILE=")

    probe = f"""
import json, sys
sys.path.insert(0, {str(program)!r})
from xts_refresher import accounts, settings
def load(text):
    path = {str(tmp_path / "probe.env")!r}
    open(path, "w").write("XTS_API_ROOT=https://xts.example\\nXTS_INTERACTIVE_API_KEY=ik\\n"
                          "XTS_INTERACTIVE_API_SECRET=is\\n" + text)
    try:
        return accounts.load_settings(settings.PathOverrides(env_file=path), {{}}).example_wait
    except Exception as exc:
        return str(exc)
print(json.dumps({{"set": load("XTS_EXAMPLE_WAIT=2.5\\n"), "default": load(""),
    "bad": load("XTS_EXAMPLE_WAIT=soon\\nXTS_TIMEOUT=0\\n"),
    "known": settings.KNOWN_VARIABLES}}))
"""
    done = run_process([PYTHON, "-c", probe])
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert (found["set"], found["default"]) == (2.5, 7.0)
    bad = found["bad"]
    assert "XTS_EXAMPLE_WAIT must be a number of seconds" in bad, bad
    assert bad.index("XTS_TIMEOUT must be") < bad.index("XTS_EXAMPLE_WAIT must be")
    assert set(found["known"]) ^ set(example_lines(program)) == {"XTS_EXAMPLE_WAIT"}


def test_each_row_has_a_one_line_meaning_and_a_default_its_parser_reads() -> None:
    """Every meaning is one short line; every default is text its own parser accepts."""
    for row in settings.TABLE:
        assert row.meaning and "\n" not in row.meaning and len(row.meaning) <= 80, row.variable
        if row.default:
            assert row.parse(row.default) is not None, row.variable


def test_secret_variables_are_the_keys_secrets_and_bot_token() -> None:
    """The secrets kept from the hook's environment: every session's key and secret and the
    Telegram bot token, and nothing else."""
    expected = {"TELEGRAM_TOKEN"} | {
        name
        for session in SESSIONS.values()
        for name in (session.key_variable, session.secret_variable)
    }
    assert set(settings.SECRET_VARIABLES) == expected


@pytest.mark.parametrize(
    ("parse", "text", "problem"),
    [
        (parsers.parse_boolean, "maybe", "must be true or false (or 1/0, yes/no), not 'maybe'."),
        (parsers.parse_text, "your_key", "still holds the placeholder from .env.example."),
        (parsers.whole_parser(20), "21", "must be a whole number from 0 to 20, not '21'."),
        (parsers.seconds_parser(), "nan", "must be a number of seconds from 0.001 to 86400"),
        (parsers.choice_parser("all", "off"), "some", "must be one of all, off, not 'some'."),
        (parsers.url_parser(), "ftp://host", "must be an http(s) URL"),
        (parsers.url_parser(base=True), "https://h/?q", "must not have a query"),
        (parsers.url_parser(no_user=True), "https://u:p@h", "must not hold a user or password"),
    ],
)
def test_a_parser_refuses_bad_text_with_what_follows_the_name(
    parse: Callable[[str], object], text: str, problem: str
) -> None:
    """A parser's refusal is the rest of a sentence that starts with the variable's name."""
    with pytest.raises(parsers.InvalidSettingError) as refused:
        parse(text)
    assert str(refused.value).startswith(problem)


@pytest.mark.parametrize(
    ("parse", "text", "value"),
    [
        (parsers.parse_boolean, " YES ", True),
        (parsers.parse_boolean, "", None),
        (parsers.parse_text, "  WEBAPI ", "WEBAPI"),
        (parsers.whole_parser(20), "0", 0),
        (parsers.seconds_parser(minimum=0.0), "0", 0.0),
        (parsers.url_parser(), "https://h:1/p/", "https://h:1/p"),
        (parsers.parse_api_path, "apibinarymarketdata/", "/apibinarymarketdata"),
        (parsers.parse_api_path, "/", ""),
    ],
)
def test_a_parser_reads_good_text(parse: Callable[[str], object], text: str, value: object) -> None:
    """Blank text is None (the default applies); good text is its value."""
    assert parse(text) == value


def test_check_config_help_lists_every_setting_with_its_default() -> None:
    """``check-config --help`` lists each setting of the table as NAME=default with its meaning;
    a refresh's parser does not build that list."""
    done = run_process([PYTHON, str(SCRIPT), "check-config", "--help"])

    assert done.returncode == 0, done.stderr
    for row in settings.TABLE:
        assert f"  {row.variable}={row.default or ''}" in done.stdout, row.variable
        assert f"      {row.meaning}\n" in done.stdout, row.variable
    assert "  XTS_API_ROOT=  (required)" in done.stdout
    assert "  TELEGRAM_TOKEN=  (secret)" in done.stdout
    assert build_parser("refresh").format_help().count("XTS_TIMEOUT") == 0
