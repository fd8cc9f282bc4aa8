"""``load_token``: what a trading bot reads, in a fresh interpreter, as the bot would.

It returns the stored token and its metadata without importing requests or python-dotenv,
raises one documented exception (with the file's state: missing, corrupt, expired), resolves a
relative path beside the script whatever the current folder, and with accounts (many broker
logins in one install, ``accounts/NAME.env``) finds each account's file.

The accounts' tests run a COPY of the program (``xts_token_refresh.py`` and the
``xts_refresher`` package) in a temporary folder, so its ``accounts/`` folder and ``.env`` are
the test's own and the project folder stays clean. A bot's view is a fresh interpreter
(``python -S``: no site-packages) with the copy on ``PYTHONPATH``, started from another folder,
in cron's bare environment: modules cached by pytest cannot leak in, and the imports are the
bot's alone. Token files are real files in the contract's shape (README, "Files").
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import APP_DIR, PYTHON, USER_ID, Project, copy_program, run_process

# One process, many calls: each call's keyword arguments in, its token or its error out, and
# the modules a bot must never pay for that were imported by then.
PROBE = r"""
import json, sys
from xts_token_refresh import TokenUnavailableError, load_token
results = []
for call in json.loads(sys.argv[1]):
    try:
        stored = load_token(**call)
        results.append({"token": stored.token, "user_id": stored.user_id})
    except TokenUnavailableError as exc:
        results.append({"state": exc.state, "path": exc.path, "error": str(exc)})
heavy = ("requests", "urllib3", "dotenv", "typing", "pathlib", "dataclasses")
print(json.dumps({
    "results": results,
    "imported": sorted(m for m in heavy if m in sys.modules),
    "module": sys.modules["xts_token_refresh"].__file__,
}))
"""

INTERACTIVE = "xts_store_token.json"
MARKETDATA = "xts_marketdata_token.json"


def write_token(
    path: Path, token: str, session: str = "interactive", user_id: str = "CK68"
) -> None:
    """A valid, unexpired token file of ``session`` at ``path`` (folders created)."""
    now = datetime.now()
    extra: dict[str, Any] = (
        {"isInvestorClient": True, "clientCodes": [user_id]}
        if session == "interactive"
        else {"application_expiry_date": "2099-01-01T00:00:00"}
    )
    data = {
        "token": token,
        "userID": user_id,
        "timestamp": now.isoformat(timespec="microseconds"),
        "refreshed_at": now.strftime("%Y-%m-%d %H:%M:%S"),
        "expires_at": (datetime.now(timezone.utc) + timedelta(hours=20)).astimezone().isoformat(),
        "session": session,
        "api_root": "https://xts.example.invalid",
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


class Program:
    """A copy of the program in ``folder``, and a bot that reads its tokens from elsewhere."""

    def __init__(self, folder: Path, elsewhere: Path) -> None:
        self.folder = folder
        self.elsewhere = elsewhere
        self.accounts = folder / "accounts"

    def env(self, text: str) -> None:
        """The shared ``.env`` beside the copy's script."""
        (self.folder / ".env").write_text(text, encoding="utf-8")

    def account(self, name: str, text: str = "", folder: Path | None = None) -> Path:
        """The account file ``NAME.env`` in ``folder`` (default: the copy's accounts/)."""
        where = folder or self.accounts
        where.mkdir(parents=True, exist_ok=True)
        path = where / f"{name}.env"
        path.write_text(
            "XTS_API_ROOT=https://xts.example.invalid\n"
            f"XTS_INTERACTIVE_API_KEY=key-{name}\nXTS_INTERACTIVE_API_SECRET=secret-{name}\n"
            + text,
            encoding="utf-8",
        )
        return path

    def load(self, *calls: dict[str, Any], env: dict[str, str] | None = None) -> list[Any]:
        """What ``load_token(**call)`` gave for each call, in one fresh bot process."""
        argv = [PYTHON, "-S", "-c", PROBE, json.dumps(list(calls))]
        done = run_process(
            argv,
            env={"PYTHONPATH": str(self.folder), **(env or {})},
            cwd=str(self.elsewhere),
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        assert Path(report["module"]).resolve() == self.folder / "xts_token_refresh.py"
        assert report["imported"] == [], report["imported"]
        results: list[Any] = report["results"]
        return results

    def tokens(self, *calls: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
        """The tokens the calls returned; fails on any error."""
        results = self.load(*calls, env=env)
        assert all("token" in result for result in results), results
        return [result["token"] for result in results]

    def error(self, call: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, str]:
        """The TokenUnavailableError of one call, as state, path and message."""
        (result,) = self.load(call, env=env)
        assert "error" in result, result
        error: dict[str, str] = result
        return error


@pytest.fixture
def program(tmp_path: Path) -> Program:
    """A fresh copy of the program (no .env, no accounts) and a bot's own folder."""
    folder = copy_program((tmp_path / "app").resolve())
    elsewhere = (tmp_path / "bot").resolve()
    elsewhere.mkdir()
    return Program(folder, elsewhere)


def test_no_account_files_reads_as_before(program: Program) -> None:
    """No NAME.env (no accounts/ folder, then one without account files): the default files
    beside the script, XTS_TOKEN_FILE from .env or the environment, as always; account
    "default" names the same file."""
    write_token(program.folder / INTERACTIVE, "tok-beside")
    write_token(program.folder / MARKETDATA, "tok-beside-md", "marketdata")
    calls: tuple[dict[str, Any], ...] = ({}, {"account": "default"}, {"session": "marketdata"})
    assert program.tokens(*calls) == ["tok-beside", "tok-beside", "tok-beside-md"]

    program.accounts.mkdir()
    (program.accounts / "notes.txt").write_text("not an account\n", encoding="utf-8")
    (program.accounts / ".hidden.env").write_text("XTS_API_ROOT=x\n", encoding="utf-8")
    assert program.tokens(*calls) == ["tok-beside", "tok-beside", "tok-beside-md"]

    write_token(program.folder / "tokens" / "mine.json", "tok-configured")
    program.env("XTS_TOKEN_FILE=tokens/mine.json\n")
    assert program.tokens({}, {"account": "default"}) == ["tok-configured"] * 2
    write_token(program.elsewhere / "env.json", "tok-environ")
    environ = {"XTS_TOKEN_FILE": str(program.elsewhere / "env.json")}
    assert program.tokens({}, env=environ) == ["tok-environ"]


def test_no_account_files_refuses_another_name(program: Program) -> None:
    """Without account files, any name but "default" is refused as missing, naming the
    (absolute) folder where account files would be."""
    write_token(program.folder / INTERACTIVE, "tok-beside")

    error = program.error({"account": "bob"})

    assert error["state"] == "missing"
    assert error["path"] == str(program.accounts)
    assert "'bob'" in error["error"]
    assert f"no account files (NAME.env) in {program.accounts}" in error["error"]
    assert str(program.accounts / "bob.env") in error["error"]


def test_two_accounts_each_read_by_name(program: Program) -> None:
    """Two account files: each account's tokens are in its own folder accounts/NAME/, for
    both sessions; the files beside the script are not an account's."""
    program.account("self")
    program.account("huf")
    write_token(program.folder / INTERACTIVE, "tok-beside")
    write_token(program.accounts / "self" / INTERACTIVE, "tok-self", user_id="SELF1")
    write_token(program.accounts / "self" / MARKETDATA, "tok-self-md", "marketdata")
    write_token(program.accounts / "huf" / INTERACTIVE, "tok-huf", user_id="HUF1")

    results = program.load(
        {"account": "self"},
        {"account": "huf"},
        {"account": "self", "session": "marketdata"},
    )

    assert results[0] == {"token": "tok-self", "user_id": "SELF1"}
    assert results[1] == {"token": "tok-huf", "user_id": "HUF1"}
    assert results[2]["token"] == "tok-self-md"


def test_two_accounts_and_none_named_lists_both(program: Program) -> None:
    """Several accounts and no account= : an error listing them and saying how to name one."""
    program.account("self")
    program.account("huf")
    write_token(program.folder / INTERACTIVE, "tok-beside")
    write_token(program.accounts / "self" / INTERACTIVE, "tok-self")

    error = program.error({})

    assert error["state"] == "missing"
    assert error["path"] == str(program.accounts)
    assert f"several accounts in {program.accounts} (huf, self)" in error["error"]
    assert "load_token(account=...)" in error["error"]


@pytest.mark.parametrize("name", ["bob", "default"])
def test_unknown_account_lists_the_known_ones(program: Program, name: str) -> None:
    """With account files, a name without one ("default" too) is refused, listing them."""
    program.account("self")
    program.account("huf")
    write_token(program.folder / INTERACTIVE, "tok-beside")

    error = program.error({"account": name})

    assert error["state"] == "missing"
    assert (
        f"no account {name!r} in {program.accounts}: the accounts are huf, self" in (error["error"])
    )


def test_one_account_is_used_when_none_is_named(program: Program) -> None:
    """Exactly one account file: load_token() reads it; a missing token names its absolute
    path in the account's folder."""
    program.account("solo")
    write_token(program.folder / INTERACTIVE, "tok-beside")
    write_token(program.accounts / "solo" / INTERACTIVE, "tok-solo")

    assert program.tokens({}, {"account": "solo"}) == ["tok-solo", "tok-solo"]
    (missing,) = program.load({"session": "marketdata"})
    assert missing["state"] == "missing"
    assert missing["path"] == str(program.accounts / "solo" / MARKETDATA)
    assert str(program.accounts / "solo" / MARKETDATA) in missing["error"]


def test_a_session_the_account_does_not_have_is_told_as_such(program: Program) -> None:
    """load_token(session="marketdata") for an account whose file sets no market-data key:
    the error says the account has no such session and names its file, not "log in again";
    an account that has the session but no token yet still gets "log in again"."""
    solo_file = program.account("solo")
    program.account("duo", "XTS_MARKETDATA_API_KEY=mk\nXTS_MARKETDATA_API_SECRET=ms\n")
    write_token(program.accounts / "solo" / INTERACTIVE, "tok-solo")

    without, not_yet = program.load(
        {"account": "solo", "session": "marketdata"},
        {"account": "duo", "session": "marketdata"},
    )

    assert without["state"] == "missing"
    assert without["path"] == str(program.accounts / "solo" / MARKETDATA)
    assert "The account 'solo' has no market-data session" in without["error"]
    assert (
        f"XTS_MARKETDATA_API_KEY and XTS_MARKETDATA_API_SECRET in {solo_file}" in (without["error"])
    )
    assert "log in again" not in without["error"]
    assert not_yet["state"] == "missing"
    assert "log in again" in not_yet["error"]
    assert "has no market-data session" not in not_yet["error"]


def test_the_single_account_without_market_data_is_told_so(program: Program) -> None:
    """No account files, a .env without a market-data key: load_token(session="marketdata")
    says the account 'default' has no such session, naming the .env beside the program."""
    program.env("XTS_INTERACTIVE_API_KEY=k\nXTS_INTERACTIVE_API_SECRET=s\n")

    error = program.error({"session": "marketdata"})

    assert error["state"] == "missing"
    assert "The account 'default' has no market-data session" in error["error"]
    assert str(program.folder / ".env") in error["error"]
    with_key = program.error(
        {"session": "marketdata"}, env={"XTS_MARKETDATA_API_KEY": "mk-from-the-environment"}
    )
    assert "log in again" in with_key["error"]


def test_account_file_sets_its_token_file_relatively(program: Program) -> None:
    """XTS_TOKEN_FILE in accounts/NAME.env, relative: taken from the script's folder (not
    the bot's, not accounts/); quotes and export as in .env. XTS_TOKEN_FILE set in .env or the
    environment is no account's."""
    program.account("self", 'export XTS_TOKEN_FILE="tokens/self.json"  \n')
    program.account("huf")
    program.env("XTS_TOKEN_FILE=shared.json\n")
    write_token(program.folder / "tokens" / "self.json", "tok-self")
    write_token(program.elsewhere / "tokens" / "self.json", "tok-decoy")
    write_token(program.accounts / "tokens" / "self.json", "tok-decoy")
    write_token(program.folder / "shared.json", "tok-shared")
    write_token(program.elsewhere / "env.json", "tok-environ")
    write_token(program.accounts / "huf" / INTERACTIVE, "tok-huf")
    environ = {"XTS_TOKEN_FILE": str(program.elsewhere / "env.json")}

    for env in (None, environ):
        found = program.tokens({"account": "self"}, {"account": "huf"}, env=env)
        assert found == ["tok-self", "tok-huf"]


def test_accounts_dir_from_the_environment(program: Program, tmp_path: Path) -> None:
    """XTS_ACCOUNTS_DIR in the environment (absolute) moves the folder, over the .env's."""
    moved = (tmp_path / "elsewhere-accounts").resolve()
    program.account("self", folder=moved)
    program.account("huf", folder=moved)
    program.account("ghost")  # in the default folder, which is no longer the accounts folder
    program.env("XTS_ACCOUNTS_DIR=from-dotenv\n")
    write_token(moved / "self" / INTERACTIVE, "tok-self")
    write_token(moved / "huf" / INTERACTIVE, "tok-huf")
    environ = {"XTS_ACCOUNTS_DIR": str(moved)}

    assert program.tokens({"account": "self"}, {"account": "huf"}, env=environ) == [
        "tok-self",
        "tok-huf",
    ]
    error = program.error({"account": "ghost"}, env=environ)
    assert f"no account 'ghost' in {moved}: the accounts are huf, self" in error["error"]


def test_accounts_dir_from_dotenv(program: Program) -> None:
    """XTS_ACCOUNTS_DIR in .env, relative: from the script's folder."""
    program.env("TELEGRAM_NOTIFY=failure\nXTS_ACCOUNTS_DIR='brokers'  # moved\n")
    brokers = program.folder / "brokers"
    program.account("solo", folder=brokers)
    write_token(brokers / "solo" / INTERACTIVE, "tok-solo")

    assert program.tokens({}, {"account": "solo"}) == ["tok-solo", "tok-solo"]
    error = program.error({"account": "bob"})
    assert f"no account 'bob' in {brokers}: the accounts are solo" in error["error"]


def test_marketdata_per_account(program: Program) -> None:
    """session="marketdata" per account: the account file's XTS_MARKETDATA_TOKEN_FILE (an
    absolute one here), else accounts/NAME/xts_marketdata_token.json."""
    md_file = program.elsewhere / "md" / "self.json"
    program.account("self", f"XTS_MARKETDATA_TOKEN_FILE={md_file}\n")
    program.account("huf")
    write_token(md_file, "tok-self-md", "marketdata")
    write_token(program.accounts / "self" / MARKETDATA, "tok-decoy", "marketdata")
    write_token(program.accounts / "huf" / MARKETDATA, "tok-huf-md", "marketdata")
    write_token(program.accounts / "self" / INTERACTIVE, "tok-self")

    found = program.tokens(
        {"account": "self", "session": "marketdata"},
        {"account": "huf", "session": "marketdata"},
        {"account": "self"},
    )

    assert found == ["tok-self-md", "tok-huf-md", "tok-self"]


def test_explicit_path_wins_over_account(program: Program) -> None:
    """An explicit path is read whatever account is named (or how many there are)."""
    program.account("self")
    program.account("huf")
    write_token(program.folder / "given.json", "tok-given")

    assert program.tokens({"path": "given.json"}, {"path": "given.json", "account": "x"}) == [
        "tok-given",
        "tok-given",
    ]


def test_a_bot_imports_no_http_stack_dotenv_typing_pathlib_dataclasses(program: Program) -> None:
    """Reading tokens of accounts, and failing to, in one fresh interpreter: neither requests,
    urllib3, python-dotenv, typing, pathlib nor dataclasses is imported (Program.load checks
    sys.modules after the calls, as it does in every test here)."""
    program.account("self", "XTS_TOKEN_FILE=tokens/self.json\n")
    program.account("huf")
    program.env("XTS_TOKEN_FILE=shared.json\n")
    write_token(program.folder / "tokens" / "self.json", "tok-self")

    results = program.load(
        {"account": "self"},
        {"account": "huf"},
        {},
        {"account": "bob", "session": "marketdata"},
        {"path": "tokens/self.json"},
    )

    assert [result.get("token", result.get("state")) for result in results] == [
        "tok-self",
        "missing",
        "missing",
        "missing",
        "tok-self",
    ]


# -- load_token ---------------------------------------------------------------------------------


LOAD = """
import json, sys
sys.path.insert(0, {app!r})
from xts_token_refresh import load_token, TokenUnavailableError
try:
    t = load_token({path})
    print(json.dumps({{"user": t.user_id, "token": t.token[:6], "left": t.seconds_left() > 0,
                      "investor": t.extra["isInvestorClient"],
                      "requests": "requests" in sys.modules}}))
except TokenUnavailableError as exc:
    print(json.dumps({{"state": exc.state, "message": str(exc)}}))
"""


def load_in_subprocess(path: Path | None, env: dict[str, str] | None = None) -> dict[str, object]:
    """What a trading program gets from load_token(path), run in a fresh interpreter."""
    code = LOAD.format(app=str(APP_DIR), path=repr(str(path)) if path else "")
    done = run_process([PYTHON, "-c", code], env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert isinstance(data, dict)
    return data


def test_load_token_reads_the_token_without_importing_requests(project: Project) -> None:
    """load_token returns the stored token and its metadata, and never imports requests."""
    assert project.run().code == 0
    got = load_in_subprocess(project.token_file)
    assert got == {
        "user": USER_ID,
        "token": project.sim.issued_tokens("interactive")[0][:6],
        "left": True,
        "investor": True,
        "requests": False,
    }
    via_env = load_in_subprocess(None, env={"XTS_TOKEN_FILE": str(project.token_file)})
    assert via_env["user"] == USER_ID


def test_load_token_raises_one_documented_exception(project: Project, tmp_path: Path) -> None:
    """Missing, corrupt and expired token files raise TokenUnavailableError with their state."""
    missing = load_in_subprocess(tmp_path / "none.json")
    assert missing["state"] == "missing"
    assert "none.json" in str(missing["message"])
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"token": ')
    assert load_in_subprocess(corrupt)["state"] == "corrupt"
    expired = tmp_path / "expired.json"
    expired.write_text(
        json.dumps(
            {
                "token": "not-a-jwt-token-value",
                "userID": USER_ID,
                "timestamp": "2024-10-13T09:00:00.123456",
                "refreshed_at": "2024-10-13 09:00:00",
                "expires_at": "2024-10-14T09:00:00+05:30",
                "session": "interactive",
            }
        )
    )
    got = load_in_subprocess(expired)
    assert got["state"] == "expired"
    assert "xts_token_refresh.py" in str(got["message"])


def test_load_token_never_needs_python_dotenv(tmp_path: Path) -> None:
    """A bot reads the token path from the .env beside the script (export, quotes, comments)
    with the standard library only: dotenv is never imported."""
    copy = copy_program(tmp_path / "app")
    token = tmp_path / "elsewhere.json"
    token.write_text(
        json.dumps({"token": "opaque-token-abc", "userID": USER_ID,
                    "timestamp": datetime.now().isoformat(), "session": "interactive"})
    )  # fmt: skip
    (copy / ".env").write_text(
        f"\ufeff# settings\nXTS_TOKEN_FILE=wrong.json\nexport XTS_TOKEN_FILE='{token}'  # here\n"
    )
    code = (
        f"import sys; sys.path.insert(0, {str(copy)!r})\n"
        "from xts_token_refresh import load_token\n"
        "t = load_token()\n"
        "print(t.user_id, 'dotenv' in sys.modules, 'requests' in sys.modules)"
    )
    done = run_process([PYTHON, "-c", code])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [USER_ID, "False", "False"]


def test_a_token_without_readable_expiry_ages_out_after_a_day(tmp_path: Path) -> None:
    """A non-JWT token refreshed long ago is expired for load_token (assumed 24 h lifetime)."""
    old = tmp_path / "old.json"
    old.write_text(
        json.dumps({"token": "opaque-token-abc", "userID": USER_ID,
                    "timestamp": "2020-01-01T09:00:00.000000", "expires_at": None,
                    "session": "interactive"})
    )  # fmt: skip
    got = load_in_subprocess(old)
    assert got["state"] == "expired"
    assert "2020-01-02" in str(got["message"])
    assert "None" not in str(got["message"])


@pytest.fixture
def copied_project(tmp_path: Path) -> Path:
    """A copy of the program (script and package) in a fresh folder with no .env in it."""
    return copy_program(tmp_path / "refresher")


def test_load_token_resolves_a_relative_path_beside_the_script(
    project: Project, copied_project: Path
) -> None:
    """``load_token("name.json")`` reads the file beside the script whatever the current folder
    (cron starts in $HOME), as the refresher does; its errors show the absolute path."""
    assert project.run().code == 0
    shutil.copy2(project.token_file, copied_project / "bot_token.json")
    code = (
        "from xts_token_refresh import load_token, TokenUnavailableError\n"
        "print(load_token('bot_token.json').user_id)\n"
        "try:\n"
        "    load_token('no_such.json')\n"
        "except TokenUnavailableError as exc:\n"
        "    print(exc.path)\n"
        "    print(exc)\n"
    )
    done = run_process(
        [PYTHON, "-c", code], env={"PYTHONPATH": str(copied_project)}, cwd=str(Path.home())
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == USER_ID
    assert lines[1] == str(copied_project / "no_such.json")
    assert str(copied_project / "no_such.json") in lines[2]
