"""Accounts: many broker logins in one install, end to end.

Each account is a ``NAME.env`` file (its API root, keys and user ID) in a temporary accounts
folder that the shared ``.env`` (passed with ``--env-file``) names in ``XTS_ACCOUNTS_DIR``; the
shared file holds only what the accounts share (log file, timeouts, Telegram, health check,
hook). Two simulators play two brokers. The real script runs cron-style (``PATH`` only, from
``/``); nothing is mocked. Every run is scanned for every account's secrets and every token
either broker issued: stdout, stderr, the log file, Telegram messages and pings.
"""

from __future__ import annotations

import base64
import fcntl
import json
import re
import shlex
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import (
    APP_DIR,
    BOT_TOKEN,
    PYTHON,
    SCRIPT,
    Project,
    Run,
    run_process,
    start_process,
    token_json,
)

from xts_refresher.alerts import TELEGRAM_BUDGET_SECONDS
from xts_refresher.simulator import Fault, XtsSimulator

BANNER_RULE = "=" * 62
ALL_FRESH_SINGLE = "✓ Every configured session holds a fresh token (exit code 0)."
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ +(.*)$")
LOGIN_ROUTES = ("interactive_login", "marketdata_login", "hostlookup")
TELEGRAM_CHAT = "4242"


# -- the world: accounts on simulated brokers -----------------------------------------------------


def write_settings_file(path: Path, text: str) -> None:
    """Make ``path`` hold ``text``, mode 600; a file that already does is left alone, so that
    starting a run never truncates a file a run started before it is reading."""
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    path.chmod(0o600)


class Account:
    """One broker login: its simulator, user, distinctive fake keys, and its file's settings."""

    def __init__(
        self, name: str, sim: XtsSimulator, user_id: str, accounts_dir: Path, marketdata: bool
    ) -> None:
        self.name = name
        self.sim = sim
        self.user_id = user_id
        self.file = accounts_dir / f"{name}.env"
        self.folder = accounts_dir / name
        self.token_file = self.folder / "xts_store_token.json"
        self.md_token_file = self.folder / "xts_marketdata_token.json"
        self.interactive_key = f"ik-FAKE-{name}-7Qm2x-interactive-key"
        self.interactive_secret = f"is-FAKE-{name}-Zt91w-interactive-secret"
        self.marketdata_key = f"mk-FAKE-{name}-3Hd8k-marketdata-key" if marketdata else None
        self.marketdata_secret = f"ms-FAKE-{name}-Lp05v-marketdata-secret" if marketdata else None
        sim.add_account(self.interactive_key, self.interactive_secret, user_id, "interactive")
        self.settings: dict[str, str] = {
            "XTS_API_ROOT": sim.url,
            "XTS_INTERACTIVE_API_KEY": self.interactive_key,
            "XTS_INTERACTIVE_API_SECRET": self.interactive_secret,
            "XTS_USER_ID": user_id,
        }
        if self.marketdata_key and self.marketdata_secret:
            sim.add_account(self.marketdata_key, self.marketdata_secret, user_id, "marketdata")
            self.settings["XTS_MARKETDATA_API_KEY"] = self.marketdata_key
            self.settings["XTS_MARKETDATA_API_SECRET"] = self.marketdata_secret

    @property
    def prefix(self) -> str:
        """What every console and log line of this account starts with."""
        return f"[{self.name}] "

    @property
    def token_files(self) -> list[Path]:
        """The token files this account's refresh writes."""
        return [self.token_file, self.md_token_file] if self.marketdata_key else [self.token_file]

    def secrets(self) -> list[str]:
        """This account's keys and secrets."""
        values = [self.interactive_key, self.interactive_secret]
        return values + [v for v in (self.marketdata_key, self.marketdata_secret) if v]

    def write(self) -> None:
        """Write this account's file, mode 600."""
        lines = [f"{name}={value}" for name, value in self.settings.items()]
        write_settings_file(self.file, "\n".join(lines) + "\n")


class Fleet:
    """One test's install: an accounts folder in tmp, the shared .env, the log, the runner."""

    def __init__(self, folder: Path, sim: XtsSimulator) -> None:
        self.folder = folder
        self.accounts_dir = folder / "accounts"
        self.accounts_dir.mkdir()
        self.env_file = folder / "shared.env"
        self.log_file = folder / "xts_token_refresh.log"
        # Token files named in the shared .env are ignored for accounts: these must never appear.
        self.canaries = (folder / "shared-canary-token.json", folder / "shared-canary-md.json")
        self.sims: list[XtsSimulator] = [sim]
        self.accounts: dict[str, Account] = {}
        self.shared: dict[str, str] = {
            "XTS_ACCOUNTS_DIR": str(self.accounts_dir),
            "XTS_LOG_FILE": str(self.log_file),
            "XTS_TOKEN_FILE": str(self.canaries[0]),
            "XTS_MARKETDATA_TOKEN_FILE": str(self.canaries[1]),
            "XTS_TIMEOUT": "5",
            "XTS_RETRIES": "1",
            "XTS_RETRY_BACKOFF": "0.05",
            "XTS_DEADLINE": "30",
        }

    def add(
        self, name: str, sim: XtsSimulator, user_id: str, *, marketdata: bool = False
    ) -> Account:
        """A new account on ``sim`` (its keys accepted there); its file is written at each run."""
        account = Account(name, sim, user_id, self.accounts_dir, marketdata)
        self.accounts[name] = account
        if sim not in self.sims:
            self.sims.append(sim)
        return account

    def with_telegram(self, sim: XtsSimulator) -> Fleet:
        """Send the run's Telegram message to ``sim``'s fake Bot API."""
        self.shared.update(
            TELEGRAM_TOKEN=BOT_TOKEN,
            TELEGRAM_CHAT_ID=TELEGRAM_CHAT,
            TELEGRAM_NOTIFY="all",
            TELEGRAM_API_URL=sim.url,
        )
        return self

    def write(self) -> Path:
        """Write the shared .env and every account file (mode 600); the shared file's path."""
        lines = [f"{name}={value}" for name, value in self.shared.items()]
        write_settings_file(self.env_file, "\n".join(lines) + "\n")
        for account in self.accounts.values():
            account.write()
        return self.env_file

    def argv(self, *args: str) -> list[str]:
        """The script run with ``args`` and the shared .env."""
        return [PYTHON, str(SCRIPT), *args, "--env-file", str(self.write())]

    def env(self) -> dict[str, str]:
        """What a run gets on top of cron's PATH (the log stays in tmp whatever happens)."""
        return {"XTS_LOG_FILE": str(self.log_file)}

    def run(self, *args: str, timeout: float = 60) -> Run:
        """Run the script cron-style; the run, with the log lines it added."""
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        done = run_process(self.argv(*args), env=self.env(), timeout=timeout)
        log = self.log_file.read_bytes()[offset:] if self.log_file.exists() else b""
        return self.checked(Run(done.returncode, done.stdout, done.stderr, log.decode()))

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start the script cron-style without waiting for it."""
        return start_process(self.argv(*args), env=self.env())

    def finish(self, process: subprocess.Popen[str], timeout: float = 60) -> Run:
        """Wait for a started run; the run (with the whole log)."""
        stdout, stderr = process.communicate(timeout=timeout)
        log = self.log_file.read_text(encoding="utf-8") if self.log_file.exists() else ""
        return self.checked(Run(process.returncode, stdout, stderr, log))

    def checked(self, run: Run) -> Run:
        """``run`` once nothing secret leaked anywhere and no shared token file was written."""
        self.assert_no_secrets(run.stdout, run.stderr, run.log, *self.notification_texts())
        for canary in self.canaries:
            assert not canary.exists(), f"a shared .env's token file was written: {canary}"
        return run

    def secrets(self) -> list[str]:
        """Every account's keys, the bot token, and every token any broker issued."""
        values = [s for account in self.accounts.values() for s in account.secrets()]
        for sim in self.sims:
            values += sim.issued_tokens("interactive") + sim.issued_tokens("marketdata")
        return [*values, BOT_TOKEN]

    def assert_no_secrets(self, *texts: str) -> None:
        """Fail when any secret or issued token appears in ``texts``."""
        for secret in self.secrets():
            for text in texts:
                assert secret not in text, f"a secret leaked: {secret[:10]}..."

    def notification_texts(self) -> list[str]:
        """What left for Telegram (the message bodies) and the pings (path, query, headers, body)
        on any simulator. (A Telegram request's path holds the bot token by design.)"""
        texts: list[str] = []
        for sim in self.sims:
            texts += [r.body.decode("utf-8", "replace") for r in sim.requests("telegram")]
            for ping in sim.requests("healthcheck"):
                texts += [ping.path, json.dumps(ping.query), json.dumps(ping.headers)]
                texts.append(ping.body.decode("utf-8", "replace"))
        return texts


@pytest.fixture
def sim2() -> Iterator[XtsSimulator]:
    """A second broker."""
    with XtsSimulator() as simulator:
        yield simulator


@pytest.fixture
def fleet(sim: XtsSimulator, tmp_path: Path) -> Fleet:
    """An install with an empty accounts folder; the first broker plays Telegram and pings."""
    return Fleet(tmp_path, sim)


@pytest.fixture
def pair(fleet: Fleet, sim: XtsSimulator, sim2: XtsSimulator) -> tuple[Account, Account]:
    """alice (interactive) on the first broker, bob (interactive and market data) on the second."""
    return fleet.add("alice", sim, "ALC701"), fleet.add("bob", sim2, "BOB802", marketdata=True)


# -- helpers --------------------------------------------------------------------------------------


def jwt_user(token: str) -> str:
    """The user part of a JWT's userID claim (the simulator issues ``<user>_<hex>``)."""
    part = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    assert isinstance(claims, dict)
    return str(claims["userID"]).split("_", 1)[0]


def lines(text: str) -> list[str]:
    """The non-empty lines of ``text``."""
    return [line for line in text.splitlines() if line.strip()]


def last_line(text: str) -> str:
    """The last non-empty line."""
    return lines(text)[-1]


def log_messages(log: str) -> list[str]:
    """The log's lines without their time and level (continuation lines as they are)."""
    found = [LOG_LINE.match(line) for line in lines(log)]
    return [m.group(1) if m else line for m, line in zip(found, lines(log))]


def logins(sim: XtsSimulator) -> int:
    """How many login (and host-lookup) requests ``sim`` received."""
    return sum(sim.count(route) for route in LOGIN_ROUTES)


def ping_paths(sim: XtsSimulator, prefix: str) -> list[str]:
    """The paths of the pings ``sim`` received under ``prefix``, in order."""
    return [r.path for r in sim.requests("healthcheck") if r.path.startswith(prefix + "/")]


def assert_account_lines_prefixed(
    run: Run, accounts: Sequence[Account], *, closing: bool = True
) -> None:
    """Every console and log line that belongs to an account (names its user, its folder or its
    file, or is a seed line) starts ``[NAME] ``; the closing line (when the command prints
    one) is the run's own."""
    for text in (run.stdout, "\n".join(log_messages(run.log))):
        for line in lines(text)[: -1 if closing else None]:
            for account in accounts:
                if account.user_id in line or str(account.folder) in line:
                    assert line.startswith(account.prefix), f"not prefixed {account.prefix}: {line}"
            if "refreshed successfully" in line or "Token saved to" in line:
                assert any(line.startswith(a.prefix) for a in accounts), line


def assert_seed_lines(run: Run, account: Account) -> None:
    """The seed's lines of one account's refresh, each prefixed, on stdout and in the log;
    the seed's banner opens the run once, unprefixed."""
    prefix = account.prefix
    for text in (run.stdout, "\n".join(log_messages(run.log))):
        got = lines(text)
        assert got[:2] == [BANNER_RULE, "XTS Token Refresh Cron Job Started"], got[:4]
        assert got.count("XTS Token Refresh Cron Job Started") == 1
        assert not any("Cron Job Started" in line for line in got[2:]), got
        assert got.count(prefix + "Starting XTS token refresh process...") == 1
        assert got.count(prefix + "✓ XTS token refreshed successfully!") == 1
        assert prefix + f"✓ Token saved to: {account.token_file}" in got
        if account.marketdata_key:
            assert prefix + f"✓ Token saved to: {account.md_token_file}" in got
        # The account's own closing line, prefixed too.
        assert any(line.startswith(prefix) and "(exit code 0)" in line for line in got), text


def assert_holds_newest_token(account: Account) -> None:
    """The account's token files, 0600 in its own 0700 folder, hold its broker's newest tokens."""
    assert stat.S_IMODE(account.folder.stat().st_mode) == 0o700
    kinds = ["interactive", "marketdata"][: len(account.token_files)]
    for path, kind in zip(account.token_files, kinds):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        data = token_json(path)
        assert data["token"] == account.sim.issued_tokens(kind)[-1]
        assert data["userID"] == account.user_id
        assert data["session"] == kind
        assert data["api_root"] == account.sim.url


LOAD = """
import json, sys
from xts_token_refresh import load_token, TokenUnavailableError
try:
    t = load_token({arguments})
    found = {{"user": t.user_id, "token": t.token, "requests": "requests" in sys.modules}}
    print(json.dumps(found))
except TokenUnavailableError as exc:
    print(json.dumps({{"state": exc.state, "message": str(exc)}}))
"""


def load_in_subprocess(fleet: Fleet, arguments: str) -> dict[str, Any]:
    """What a trading program gets from ``load_token(<arguments>)`` in a fresh interpreter that
    finds the accounts through XTS_ACCOUNTS_DIR in its environment."""
    env = {"PYTHONPATH": str(APP_DIR), "XTS_ACCOUNTS_DIR": str(fleet.accounts_dir)}
    done = run_process([PYTHON, "-c", LOAD.format(arguments=arguments)], env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert isinstance(data, dict)
    return data


# -- 1. two accounts on two brokers ---------------------------------------------------------------


def test_two_accounts_on_two_brokers_are_refreshed_and_reported(
    fleet: Fleet, pair: tuple[Account, Account], sim: XtsSimulator, sim2: XtsSimulator
) -> None:
    """Both accounts log in to their own broker and land in their own folders; every account
    line is prefixed; one Telegram message names both; status and load_token see both."""
    alice, bob = pair
    fleet.with_telegram(sim)

    run = fleet.run()

    assert run.code == 0, run.output
    assert last_line(run.stdout) == "✓ All 2 accounts hold fresh tokens (exit code 0)."
    assert last_line("\n".join(log_messages(run.log))) == last_line(run.stdout)
    (alice_login,) = sim.requests("interactive_login")
    assert alice_login.json["appKey"] == alice.interactive_key
    assert sim.count("marketdata_login") == 0
    (bob_login,) = sim2.requests("interactive_login")
    assert bob_login.json["appKey"] == bob.interactive_key
    (bob_md_login,) = sim2.requests("marketdata_login")
    assert bob_md_login.json["appKey"] == bob.marketdata_key
    for account in pair:
        assert_holds_newest_token(account)
        assert_seed_lines(run, account)
    assert not alice.md_token_file.exists()
    assert_account_lines_prefixed(run, pair)

    (message,) = sim.requests("telegram")
    assert sim2.count("telegram") == 0
    assert message.json["chat_id"] == TELEGRAM_CHAT
    assert "alice" in message.json["text"]
    assert "bob" in message.json["text"]

    status_run = fleet.run("status", "--json")
    assert status_run.code == 0, status_run.output
    document = json.loads(status_run.stdout)
    assert document["ok"] is True
    entries = {(e["account"], e["session"]): e for e in document["sessions"]}
    assert set(entries) == {("alice", "interactive"), ("bob", "interactive"), ("bob", "marketdata")}
    assert entries["alice", "interactive"]["path"] == str(alice.token_file)
    assert entries["alice", "interactive"]["user_id"] == alice.user_id
    assert entries["bob", "marketdata"]["path"] == str(bob.md_token_file)
    assert all(e["state"] == "fresh" for e in entries.values())

    text = fleet.run("status")
    assert text.code == 0, text.output
    for account in pair:
        mine = [line for line in lines(text.stdout) if line.startswith(account.prefix)]
        assert any("interactive" in line and account.user_id in line for line in mine), mine
        assert any(str(account.token_file) in line for line in mine), mine
    assert any(line.startswith("[bob] ") and "marketdata" in line for line in lines(text.stdout))
    assert_account_lines_prefixed(text, pair, closing=False)
    assert logins(sim) == 1  # status never logs in
    assert logins(sim2) == 2

    for account in pair:
        got = load_in_subprocess(fleet, f"account={account.name!r}")
        assert got == {
            "user": account.user_id,
            "token": token_json(account.token_file)["token"],
            "requests": False,
        }
    got = load_in_subprocess(fleet, "session='marketdata', account='bob'")
    assert got["token"] == token_json(bob.md_token_file)["token"]
    unnamed = load_in_subprocess(fleet, "")
    assert "state" in unnamed, "several accounts and none named must raise TokenUnavailableError"
    assert "alice" in unnamed["message"]
    assert "bob" in unnamed["message"]


# -- 2. one broker down ---------------------------------------------------------------------------


def test_one_broker_down_fails_only_its_account(
    fleet: Fleet, pair: tuple[Account, Account], sim: XtsSimulator, sim2: XtsSimulator
) -> None:
    """With bob's broker stopped, alice is still refreshed; bob's files are byte for byte as
    before; exit 3 and the closing line names bob; Telegram names the failure first."""
    alice, bob = pair
    assert fleet.run().code == 0
    before = {path: path.read_bytes() for path in bob.token_files}
    folder_before = sorted(p.name for p in bob.folder.iterdir())
    alice_before = token_json(alice.token_file)["token"]
    sim.clear()
    sim2.stop()
    fleet.with_telegram(sim)

    run = fleet.run()

    assert run.code == 3, run.output
    assert last_line(run.stdout).startswith("✗ 1 of 2 accounts failed (exit code 3): bob: ")
    assert sim.count("interactive_login") == 1
    assert_holds_newest_token(alice)
    assert token_json(alice.token_file)["token"] != alice_before
    assert {path: path.read_bytes() for path in bob.token_files} == before
    assert sorted(p.name for p in bob.folder.iterdir()) == folder_before
    assert any(line.startswith("[bob] ✗") for line in lines(run.stdout)), run.stdout
    assert any(line.startswith("[alice] ✓") for line in lines(run.stdout))
    assert_account_lines_prefixed(run, pair)
    (message,) = sim.requests("telegram")
    text = message.json["text"]
    assert text.index("bob") < text.index("alice"), "failures first"


def broker(sim: XtsSimulator) -> str:
    """How failures name ``sim`` as a broker: its host and (not the default) port."""
    return f"broker {urlsplit(sim.url).netloc}"


def test_a_failure_names_its_broker_and_the_accounts_own_file(
    fleet: Fleet, pair: tuple[Account, Account], sim: XtsSimulator, sim2: XtsSimulator
) -> None:
    """With bob's broker down, both of bob's sessions fail: every ✗ line of bob (console and
    log) names bob's broker by host and port, and only it; the closing and summary lines name
    both sessions; the advice names bob's own file, not .env; the Telegram message names bob's
    broker and file and not alice's broker; bob's token files are byte for byte as before."""
    _alice, bob = pair
    assert fleet.run().code == 0
    before = {path: path.read_bytes() for path in bob.token_files}
    sim.clear()
    sim2.clear()
    sim2.stop()
    fleet.with_telegram(sim)

    run = fleet.run()

    assert run.code == 3, run.output
    assert {path: path.read_bytes() for path in bob.token_files} == before
    assert sim2.requests() == []  # stopped: nothing got through
    for text in (run.stdout, "\n".join(log_messages(run.log))):
        failures = [line for line in lines(text) if "✗" in line]
        assert failures, text
        for line in failures:
            assert broker(sim2) in line, line
            assert broker(sim) not in line, line
        bob_closing = next(line for line in failures if line.startswith("[bob] ✗ Token refresh"))
        summary = failures[-1]
        for told in (bob_closing, summary):
            assert "interactive login" in told, told
            assert "market-data login" in told, told
            assert f"XTS_API_ROOT in {bob.file}" in told, told
            assert "in .env)" not in told, told
    assert last_line(run.stdout).startswith(
        f"✗ 1 of 2 accounts failed (exit code 3): bob: {broker(sim2)}: "
    )
    (message,) = sim.requests("telegram")
    text = message.json["text"]
    assert f"✗ bob ({broker(sim2)})" in text, text
    assert str(bob.file) in text, text
    assert broker(sim) not in text, text


def test_a_refused_login_names_the_accounts_file_in_its_advice(
    fleet: Fleet, pair: tuple[Account, Account], sim: XtsSimulator, sim2: XtsSimulator
) -> None:
    """bob's broker refuses his key: the advice (console, log, Telegram) says to fix the key in
    bob's own file, and names bob's broker; alice is refreshed."""
    alice, bob = pair
    bob.settings["XTS_INTERACTIVE_API_SECRET"] = "is-FAKE-bob-wrong-secret-Qx4"
    fleet.with_telegram(sim)

    run = fleet.run()

    assert run.code == 1, run.output
    assert_holds_newest_token(alice)
    assert not bob.token_file.exists()
    closing = next(line for line in lines(run.stdout) if line.startswith("[bob] ✗ Token refresh"))
    assert f"XTS_INTERACTIVE_API_SECRET in {bob.file}" in closing, closing
    assert broker(sim2) in closing, closing
    assert f"in {bob.file}" in "\n".join(log_messages(run.log))
    (message,) = sim.requests("telegram")
    assert f"in {bob.file}" in message.json["text"]
    assert "in the settings file" not in run.stdout + message.json["text"]


def test_each_accounts_lines_come_together_on_the_console_and_in_real_order_in_the_log(
    fleet: Fleet, pair: tuple[Account, Account], sim: XtsSimulator, sim2: XtsSimulator
) -> None:
    """alice's broker answers her first login late (a 504 after 1.5 s, then a retry), so bob
    is done long before her: on the console the banner comes once, then each account's lines
    as one block, bob's first (he finished first); the log keeps the real order, alice's
    first line before bob's, her retry after bob's closing line."""
    alice, bob = pair
    sim.add_fault("interactive_login", Fault.hang(1.5))

    run = fleet.run()

    assert run.code == 0, run.output
    assert sim.count("interactive_login") == 2
    shown = lines(run.stdout)
    assert shown.count(BANNER_RULE) == 2 and shown[0] == BANNER_RULE
    owners = [line[1 : line.index("]")] for line in shown if line.startswith("[")]
    blocks = [name for i, name in enumerate(owners) if i == 0 or owners[i - 1] != name]
    assert blocks == ["bob", "alice"], owners
    assert shown[-1] == "✓ All 2 accounts hold fresh tokens (exit code 0)."
    logged = log_messages(run.log)
    alice_lines = [i for i, line in enumerate(logged) if line.startswith(alice.prefix)]
    bob_closing = max(i for i, line in enumerate(logged) if line.startswith(bob.prefix))
    assert alice_lines[0] < bob_closing < alice_lines[-1], logged
    assert any("retrying" in logged[i] for i in alice_lines if i > bob_closing), logged
    assert sorted(logged) == sorted(line for line in lines(run.stdout)), (
        "the console and the log tell the same lines"
    )
    for account in pair:
        assert_seed_lines(run, account)


def test_status_names_the_account_whose_last_refresh_failed_until_a_good_one(
    fleet: Fleet, pair: tuple[Account, Account], sim: XtsSimulator, sim2: XtsSimulator
) -> None:
    """bob's broker refuses his next interactive login (exit 1), alice's refreshes: ``status``
    exits 1 and ends with one line naming bob, his failure's time in IST and exit code, and
    the command for bob alone; bob's interactive token is called the previous one, not his
    market-data token (renewed by that run), nor alice's; ``--json``
    gives each account its ``last_run``. bob's next good refresh clears it: ✓ line, exit 0."""
    alice, bob = pair
    assert fleet.run().code == 0
    sim2.add_fault("interactive_login", Fault.xts_error("e-user-0005", "Invalid credentials"))
    failed = fleet.run()
    assert failed.code == 1, failed.output
    logins_before = (logins(sim), logins(sim2))

    text = fleet.run("status")

    assert text.code == 1, text.output
    closing = last_line(text.stdout)
    assert re.fullmatch(
        r"✗ 1 of 2 accounts not ready: bob \(last refresh failed at \d\d:\d\d IST, exit code "
        r"1\)\. Fix what the lines above say, then run `xts_token_refresh\.py --account bob`\.",
        closing,
    ), closing
    bob_lines = [line for line in lines(text.stdout) if line.startswith(bob.prefix)]
    alice_lines = [line for line in lines(text.stdout) if line.startswith(alice.prefix)]
    # His interactive login was refused; his market-data login went through.
    assert sum("This is the previous token" in line for line in bob_lines) == 1
    assert any(line.startswith("[bob] ✗ last refresh failed: ") and "e-user-0005" in line
               for line in bob_lines), bob_lines  # fmt: skip
    assert not any("previous token" in line for line in alice_lines)
    assert any(line.startswith("[alice] ✓ last refresh: ") for line in alice_lines)
    assert (logins(sim), logins(sim2)) == logins_before

    document = json.loads(fleet.run("status", "--json").stdout)
    runs = {entry["account"]: entry for entry in document["accounts"]}
    assert document["ok"] is False
    assert runs["alice"]["ready"] is True
    assert runs["alice"]["last_run"]["exit_code"] == 0
    assert runs["bob"]["ready"] is False
    assert runs["bob"]["last_run"]["exit_code"] == 1
    assert "e-user-0005" in runs["bob"]["last_run"]["reason"]
    messages = {(e["account"], e["session"]): e["message"] for e in document["sessions"]}
    assert messages["bob", "interactive"].startswith("This is the previous token")
    assert messages["bob", "marketdata"] is None
    assert messages["alice", "interactive"] is None

    assert fleet.run("--account", "bob").code == 0
    cleared = fleet.run("status")
    assert cleared.code == 0, cleared.output
    assert last_line(cleared.stdout) == "✓ 2 accounts, 3 tokens usable."


# -- 3. one broker hanging ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_hanging_broker_does_not_delay_the_other_account(
    fleet: Fleet, pair: tuple[Account, Account], sim: XtsSimulator
) -> None:
    """alice's broker never answers (alice comes first, so taking turns would show): bob's
    token files are written within about 2 s of the start, long before alice's 5 s time-out,
    and the run ends by XTS_DEADLINE with exit 3."""
    alice, bob = pair
    deadline = 6.0
    fleet.shared["XTS_DEADLINE"] = f"{deadline:g}"
    sim.add_fault("interactive_login", Fault.hang(60), times=10)

    started = time.monotonic()
    process = fleet.start()
    bob_at: float | None = None
    alive_then = False
    while time.monotonic() - started < 20 and process.poll() is None:
        try:
            if all(token_json(path)["token"] for path in bob.token_files):
                bob_at = time.monotonic() - started
                alive_then = process.poll() is None
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    run = fleet.finish(process, timeout=30)
    elapsed = time.monotonic() - started

    assert bob_at is not None, run.output
    assert bob_at < 3.0, f"bob's token files appeared {bob_at:.1f} s after the start"
    assert alive_then, "bob's files appeared only after the run ended"
    assert run.code == 3, run.output
    assert 4.5 < elapsed < deadline + 4, f"the run took {elapsed:.1f} s"
    assert sim.count("interactive_login") >= 1
    assert not alice.token_file.exists()
    assert_holds_newest_token(bob)
    assert last_line(run.stdout).startswith("✗ 1 of 2 accounts failed (exit code 3): alice: ")
    assert_account_lines_prefixed(run, pair)


# -- 4. selecting accounts ------------------------------------------------------------------------


def test_account_flag_selects_accounts_for_every_command(
    fleet: Fleet, pair: tuple[Account, Account], sim: XtsSimulator, sim2: XtsSimulator
) -> None:
    """``--account NAME`` refreshes that account only, also before the command name (where no
    command means refresh), and ``status`` reports the selected account only."""
    alice, bob = pair

    only_alice = fleet.run("refresh", "--account", "alice")

    assert only_alice.code == 0, only_alice.output
    assert last_line(only_alice.stdout) == "✓ Account alice holds fresh tokens (exit code 0)."
    assert sim.count("interactive_login") == 1
    assert logins(sim2) == 0
    assert_holds_newest_token(alice)
    assert not bob.folder.exists()
    assert not any(line.startswith("[bob]") for line in lines(only_alice.output))

    bob_status = fleet.run("--account", "bob", "status")

    assert bob_status.code == 1, bob_status.output  # bob has no token yet
    assert any(line.startswith("[bob] ✗") for line in lines(bob_status.stdout)), bob_status.stdout
    assert str(alice.token_file) not in bob_status.output
    assert not any(line.startswith("[alice]") for line in lines(bob_status.output))

    only_bob = fleet.run("--account", "bob")

    assert only_bob.code == 0, only_bob.output
    assert last_line(only_bob.stdout) == "✓ Account bob holds fresh tokens (exit code 0)."
    assert sim.count("interactive_login") == 1
    assert sim2.count("interactive_login") == 1
    assert_holds_newest_token(bob)

    document = json.loads(fleet.run("--account", "bob", "status", "--json").stdout)
    assert {(e["account"], e["session"]) for e in document["sessions"]} == {
        ("bob", "interactive"),
        ("bob", "marketdata"),
    }


def test_an_unknown_account_is_exit_2_listing_the_known_ones(
    fleet: Fleet, pair: tuple[Account, Account], sim: XtsSimulator, sim2: XtsSimulator
) -> None:
    """``--account carol`` is exit 2 naming carol and the accounts there are; nothing is sent."""
    run = fleet.run("--account", "carol")

    assert run.code == 2, run.output
    assert "carol" in run.stdout
    assert "alice" in run.stdout
    assert "bob" in run.stdout
    assert sim.requests() == []
    assert sim2.requests() == []
    assert not any(account.folder.exists() for account in pair)


def test_token_file_flag_with_several_accounts_is_exit_2(
    fleet: Fleet, pair: tuple[Account, Account], sim: XtsSimulator, sim2: XtsSimulator
) -> None:
    """``--token-file`` with more than one account selected (all, or two named) is exit 2 with
    no login; with one account selected it is that account's interactive token file."""
    target = fleet.folder / "flag-token.json"
    for selection in ((), ("--account", "alice", "--account", "bob")):
        run = fleet.run(*selection, "--token-file", str(target))
        assert run.code == 2, run.output
        assert "--token-file" in run.stdout
        assert logins(sim) == 0
        assert logins(sim2) == 0
        assert not target.exists()

    one = fleet.run("--account", "alice", "--token-file", str(target))

    assert one.code == 0, one.output
    assert token_json(target)["userID"] == pair[0].user_id
    assert logins(sim2) == 0


@pytest.mark.parametrize(
    ("name", "shown"),
    [("alice copy", "alice copy"), ("a" * 65, "a" * 65), ("bob\nforged", "bob\\nforged")],
    ids=["a-space", "65-characters", "a-newline"],
)
def test_a_misnamed_account_file_fails_only_itself(
    fleet: Fleet, pair: tuple[Account, Account], name: str, shown: str
) -> None:
    """``accounts/alice copy.env`` (a copy of alice's file), a name over 64 characters, or one
    holding a newline: that file is an account that fails with exit 2, its problem listed
    under its name (a control character shown escaped, so no line is forged), like a file
    whose settings are bad; alice and bob are refreshed, each logged in once; the run exits 2.
    ``check-config`` reports it the same way."""
    alice, bob = pair
    misnamed = fleet.accounts_dir / f"{name}.env"
    misnamed.write_text("".join(f"{k}={v}\n" for k, v in alice.settings.items()), "utf-8")
    misnamed.chmod(0o600)

    run = fleet.run()

    assert run.code == 2, run.output
    before_the_summary = lines(run.stdout)[:-1]
    problem = [line for line in before_the_summary if "has a name no account may have" in line]
    assert len(problem) == 1, run.stdout
    shown_file = str(fleet.accounts_dir / f"{shown}.env")
    assert problem[0].startswith(f"[{shown}] ✗ The account file {shown_file} has a name no ")
    assert last_line(run.stdout).startswith(f"✗ 1 of 3 accounts failed (exit code 2): {shown}: ")
    assert not any(line.startswith("forged") for line in run.stdout.splitlines())
    assert alice.sim.count("interactive_login") == 1
    assert bob.sim.count("interactive_login") == 1
    assert_holds_newest_token(alice)
    assert_holds_newest_token(bob)
    assert not (fleet.accounts_dir / name).exists()

    check = fleet.run("check-config")

    assert check.code == 2, check.output
    assert any(
        line.startswith(f"[{shown}] ✗ The account file {shown_file} has a name no ")
        for line in lines(check.stdout)
    ), check.stdout
    assert last_line(check.stdout).startswith("✗ 1 of 3 accounts not ready (exit code 2): ")


# -- 5. two accounts sharing a token file ---------------------------------------------------------


@pytest.mark.parametrize("selection", [(), ("--account", "alice")], ids=["all", "one-selected"])
def test_two_accounts_with_the_same_token_file_are_exit_2_before_any_login(
    fleet: Fleet,
    pair: tuple[Account, Account],
    sim: XtsSimulator,
    sim2: XtsSimulator,
    selection: tuple[str, ...],
) -> None:
    """Account files that set the same XTS_TOKEN_FILE: exit 2 naming both, nothing sent; also
    when only one of them is selected (a cron line per account would otherwise overwrite the
    other's token)."""
    shared_path = fleet.folder / "same.json"
    for account in pair:
        account.settings["XTS_TOKEN_FILE"] = str(shared_path)

    run = fleet.run(*selection)

    assert run.code == 2, run.output
    assert "alice" in run.stdout
    assert "bob" in run.stdout
    assert str(shared_path) in run.stdout
    assert logins(sim) == 0
    assert logins(sim2) == 0
    assert not shared_path.exists()
    assert not Path(str(shared_path) + ".lock").exists()


# -- 6. one account's own file invalid ------------------------------------------------------------


def test_an_invalid_account_file_fails_that_account_only(
    fleet: Fleet, pair: tuple[Account, Account], sim: XtsSimulator, sim2: XtsSimulator
) -> None:
    """bob's file lacks XTS_API_ROOT: bob fails with exit 2 and nothing is sent to his broker,
    alice is refreshed, the run exits 2; the shared health check hears ``/2`` (the highest code
    of the accounts sharing it) and the one Telegram message names bob's failure first."""
    alice, bob = pair
    del bob.settings["XTS_API_ROOT"]
    fleet.with_telegram(sim)
    prefix = f"/ping/{uuid.uuid4()}"
    fleet.shared["HEALTHCHECK_URL"] = sim.url + prefix

    run = fleet.run()

    assert run.code == 2, run.output
    assert sim.count("interactive_login") == 1
    assert_holds_newest_token(alice)
    assert sim2.requests() == []
    assert not bob.token_file.exists()
    (message,) = sim.requests("telegram")
    text = message.json["text"]
    assert "XTS_API_ROOT" in text
    assert text.index("bob") < text.index("alice"), "failures first"
    assert ping_paths(sim, prefix) == [f"{prefix}/start", f"{prefix}/2"]


def test_an_invalid_account_files_problem_is_reported_under_its_prefix(
    fleet: Fleet, pair: tuple[Account, Account]
) -> None:
    """bob's problem (XTS_API_ROOT missing) is reported on lines that start ``[bob] ``, every
    line of it, and the run's last line sums up: ``✗ 1 of 2 accounts failed (exit code 2):
    bob: ...``."""
    del pair[1].settings["XTS_API_ROOT"]

    run = fleet.run()

    assert run.code == 2, run.output
    problem = [line for line in lines(run.stdout)[:-1] if "XTS_API_ROOT" in line]
    assert problem, run.stdout
    assert all(line.startswith("[bob] ") for line in problem), problem
    assert last_line(run.stdout).startswith("✗ 1 of 2 accounts failed (exit code 2): bob: ")
    assert_account_lines_prefixed(run, pair)


def test_an_unterminated_quote_in_an_account_file_fails_that_account_only(
    fleet: Fleet, pair: tuple[Account, Account], sim2: XtsSimulator
) -> None:
    """bob's file opens a quote on line 3 (``XTS_INTERACTIVE_API_SECRET="...``) and never closes
    it: bob fails with exit 2, one message under ``[bob] `` naming his file and the line,
    said once and never showing the secret; nothing is sent to his broker; alice is
    refreshed."""
    alice, bob = pair
    bob.settings["XTS_INTERACTIVE_API_SECRET"] = '"' + bob.interactive_secret

    run = fleet.run()

    assert run.code == 2, run.output
    expected = (
        f"[bob] ✗ The settings file {bob.file} cannot be read: line 3: the value of "
        'XTS_INTERACTIVE_API_SECRET opens a quote (") that its line does not close.'
    )
    assert next(line for line in lines(run.stdout) if "line 3" in line).startswith(expected)
    assert run.output.count("line 3") == 2, run.output  # its ✗ line, and the closing summary
    assert last_line(run.stdout).startswith("✗ 1 of 2 accounts failed (exit code 2): bob: ")
    assert "python-dotenv" not in run.output
    assert_holds_newest_token(alice)
    assert sim2.requests() == []
    assert not bob.token_file.exists()


# -- 7. hook and pings per account ----------------------------------------------------------------


def test_hook_runs_once_per_account_and_a_shared_check_is_pinged_once(
    fleet: Fleet, pair: tuple[Account, Account], sim: XtsSimulator, sim2: XtsSimulator
) -> None:
    """The hook runs once for each account that saved a token, told XTS_ACCOUNT and its
    XTS_TOKEN_FILE; a HEALTHCHECK_URL the accounts share gets one ``/start`` and one
    ``/<highest code>`` per run."""
    alice, bob = pair
    hook_out = fleet.folder / "hook.txt"
    fleet.shared["XTS_POST_REFRESH_HOOK"] = (
        f'echo "$XTS_ACCOUNT $XTS_TOKEN_FILE" >> {shlex.quote(str(hook_out))}'
    )
    prefix = f"/ping/{uuid.uuid4()}"
    fleet.shared["HEALTHCHECK_URL"] = sim.url + prefix

    run = fleet.run()

    assert run.code == 0, run.output
    assert sorted(lines(hook_out.read_text(encoding="utf-8"))) == [
        f"alice {alice.token_file}",
        f"bob {bob.token_file}",
    ]
    assert ping_paths(sim, prefix) == [f"{prefix}/start", f"{prefix}/0"]
    assert sim2.count("healthcheck") == 0
    fleet.assert_no_secrets(hook_out.read_text(encoding="utf-8"))

    hook_out.unlink()
    sim.clear()
    sim2.add_fault("interactive_login", Fault.html(503), times=2)
    sim2.add_fault("marketdata_login", Fault.html(503), times=2)

    failed = fleet.run()

    assert failed.code == 3, failed.output
    assert lines(hook_out.read_text(encoding="utf-8")) == [f"alice {alice.token_file}"]
    assert ping_paths(sim, prefix) == [f"{prefix}/start", f"{prefix}/3"]


def test_each_accounts_own_healthcheck_url_gets_its_own_pings(
    fleet: Fleet, pair: tuple[Account, Account], sim: XtsSimulator, sim2: XtsSimulator
) -> None:
    """A HEALTHCHECK_URL in each account's file: each check gets its own ``/start`` and its own
    account's exit code."""
    alice, bob = pair
    alice_check, bob_check = f"/ping/{uuid.uuid4()}", f"/ping/{uuid.uuid4()}"
    alice.settings["HEALTHCHECK_URL"] = sim.url + alice_check
    bob.settings["HEALTHCHECK_URL"] = sim2.url + bob_check

    run = fleet.run()

    assert run.code == 0, run.output
    assert ping_paths(sim, alice_check) == [f"{alice_check}/start", f"{alice_check}/0"]
    assert ping_paths(sim2, bob_check) == [f"{bob_check}/start", f"{bob_check}/0"]
    assert sim.count("healthcheck") == 2
    assert sim2.count("healthcheck") == 2

    sim.clear()
    sim2.clear()
    sim2.add_fault("interactive_login", Fault.html(503), times=2)

    failed = fleet.run()

    assert failed.code == 3, failed.output
    assert ping_paths(sim, alice_check) == [f"{alice_check}/start", f"{alice_check}/0"]
    assert ping_paths(sim2, bob_check) == [f"{bob_check}/start", f"{bob_check}/3"]


# -- 8. the single account ------------------------------------------------------------------------


def test_without_account_files_everything_is_as_before(project: Project, tmp_path: Path) -> None:
    """An empty accounts folder: .env is the single account ``default``; no prefixes, the old
    closing line, the old files; status --json says ``"account": "default"``; the hook is told
    XTS_ACCOUNT=default."""
    empty = tmp_path / "no-accounts"
    empty.mkdir()
    hook_out = tmp_path / "hook.txt"
    project.with_marketdata().settings.update(
        XTS_ACCOUNTS_DIR=str(empty),
        XTS_POST_REFRESH_HOOK=f'echo "$XTS_ACCOUNT" >> {shlex.quote(str(hook_out))}',
    )

    run = project.run()

    assert run.code == 0, run.output
    assert last_line(run.stdout) == ALL_FRESH_SINGLE
    assert not any(line.startswith("[") for line in lines(run.output))
    assert not any(line.startswith("[") for line in log_messages(run.log))
    assert "✓ XTS token refreshed successfully!" in lines(run.stdout)
    assert f"✓ Token saved to: {project.token_file}" in lines(run.stdout)
    assert token_json(project.token_file)["token"] == project.sim.issued_tokens("interactive")[-1]
    assert project.md_token_file.exists()
    assert lines(hook_out.read_text(encoding="utf-8")) == ["default"]
    assert list(empty.iterdir()) == []

    status_run = project.run("status", "--json")
    assert status_run.code == 0, status_run.output
    document = json.loads(status_run.stdout)
    assert [e["account"] for e in document["sessions"]] == ["default", "default"]
    text = project.run("status")
    assert text.code == 0
    assert not any(line.startswith("[") for line in lines(text.output))


# -- 9. concurrency -------------------------------------------------------------------------------


def test_concurrent_runs_over_four_accounts_never_mix_or_tear_token_files(
    fleet: Fleet, sim: XtsSimulator
) -> None:
    """Four accounts on one broker, three refreshes started at once while readers loop over
    every token file: no partial JSON, no account's token in another's file, every run exits 0,
    and no lock is left held."""
    accounts = [fleet.add(f"acct{n}", sim, f"USR{n}0{n}") for n in range(1, 5)]
    assert fleet.run().code == 0
    problems: list[str] = []
    seen: dict[str, set[str]] = {a.name: set() for a in accounts}
    reads = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            for account in accounts:
                try:
                    data = json.loads(account.token_file.read_bytes())
                    token, user = str(data["token"]), data["userID"]
                    owner = jwt_user(token)
                except Exception as exc:  # any torn or odd file is a finding, not a crash
                    problems.append(f"{account.name}: {exc!r}")
                    continue
                if user != account.user_id or owner != account.user_id:
                    problems.append(f"{account.name} holds a token of {user}/{owner}")
                seen[account.name].add(token)
                reads += 1

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        processes = [fleet.start() for _ in range(3)]
        runs = [fleet.finish(process) for process in processes]
    finally:
        stop.set()
        for thread in readers:
            thread.join()

    assert [run.code for run in runs] == [0, 0, 0], [run.output for run in runs]
    assert problems == []
    assert reads > 0
    assert sim.count("interactive_login") == 4 * 4
    issued = sim.issued_tokens("interactive")
    for account in accounts:
        own = [token for token in issued if jwt_user(token) == account.user_id]
        assert len(own) == 4
        assert seen[account.name] <= set(own)
        assert token_json(account.token_file)["token"] == own[-1]
        others = set(issued) - set(own)
        assert not seen[account.name] & others
        assert [p.name for p in account.folder.iterdir() if p.name.endswith(".tmp")] == []
        lock = Path(str(account.token_file) + ".lock")
        assert lock.exists()
        with lock.open("r") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if a lock was left held
            fcntl.flock(handle, fcntl.LOCK_UN)


def test_check_config_before_the_first_refresh_passes_and_sends_no_login(
    fleet: Fleet, pair: tuple[Account, Account], sim: XtsSimulator, sim2: XtsSimulator
) -> None:
    """The README's order: check-config before any refresh. The accounts' own folders do not
    exist yet (a refresh makes them), which is no problem: exit 0, every line prefixed but the
    last, which speaks for both; no login anywhere, no folder made."""
    assert len(pair) == 2  # both accounts are written by the run

    run = fleet.run("check-config")

    assert run.code == 0, run.output
    for name in ("alice", "bob"):
        assert f"[{name}] ✓ Ready" in run.stdout
        assert not (fleet.accounts_dir / name).exists()
    assert logins(sim) == logins(sim2) == 0
    *account_lines, closing = lines(run.stdout)
    assert all(line.startswith(("[alice] ", "[bob] ")) for line in account_lines)
    assert closing == "✓ All 2 accounts are ready."

    one = fleet.run("check-config", "--account", "bob")

    assert one.code == 0, one.output
    assert last_line(one.stdout) == "✓ Account bob is ready."


def test_shared_api_keys_in_the_shared_env_are_warned_about(
    fleet: Fleet, pair: tuple[Account, Account]
) -> None:
    """With account files, an API key in .env is inherited by every account that does not set
    its own: the run says so (two accounts on one market-data key end each other's sessions)."""
    fleet.shared["XTS_MARKETDATA_API_KEY"] = "mk-SHARED-inherited-key"
    fleet.shared["XTS_MARKETDATA_API_SECRET"] = "ms-SHARED-inherited-secret"

    run = fleet.run("check-config")

    warning = [line for line in lines(run.stdout) if "XTS_MARKETDATA_API_KEY" in line]
    assert warning and warning[0].startswith("⚠ "), run.stdout
    assert "every account whose own file does not set them" in warning[0]
    assert "mk-SHARED-inherited-key" not in run.output


# -- 10. notifications that meet glitches ---------------------------------------------------------


def test_the_per_chat_messages_and_shared_ping_go_out_once_despite_glitches(
    fleet: Fleet, pair: tuple[Account, Account], sim: XtsSimulator, sim2: XtsSimulator
) -> None:
    """bob's broker fails (exit 3). The shared chat's Bot API resets, then answers 502; the
    shared check answers 502 twice (the start ping's one try, then the first closing attempt):
    the one message naming both accounts arrives once, the closing ``/3`` once, and the exit
    code is the refresh's."""
    alice, bob = pair
    fleet.with_telegram(sim)
    prefix = f"/ping/{uuid.uuid4()}"
    fleet.shared["HEALTHCHECK_URL"] = sim.url + prefix
    sim2.add_fault("interactive_login", Fault.html(503), times=2)
    sim.add_fault("telegram", Fault.connection_reset())
    sim.add_fault("telegram", Fault.html(502))
    sim.add_fault("healthcheck", Fault.html(502), times=2)

    run = fleet.run()

    assert run.code == 3, run.output
    assert_holds_newest_token(alice)
    assert not bob.token_file.exists()
    assert sim.count("telegram") == 3
    (message,) = sim.telegram_messages()
    assert message.json["chat_id"] == TELEGRAM_CHAT
    assert "alice" in message.json["text"]
    assert "bob" in message.json["text"]
    assert ping_paths(sim, prefix) == [f"{prefix}/start", f"{prefix}/3", f"{prefix}/3"]
    closing = sim.requests("healthcheck")[-1]
    assert "[bob] " in closing.body.decode("utf-8")
    retried = [line for line in lines(run.stdout) if "retrying" in line and line.startswith("⚠ ")]
    assert [line.split(" failed")[0] for line in retried] == [
        "⚠ The Telegram notification to chat 4242",
        "⚠ The Telegram notification to chat 4242",
        "⚠ The health-check ping /3 for alice, bob",
    ]
    assert "✓ The Telegram notification to chat 4242 got through on attempt 3 of 4." in run.stdout
    assert "✓ The health-check ping /3 for alice, bob got through on attempt 2 of 4." in run.stdout
    assert "⚠ The health-check ping /start for alice, bob failed (HTTP 502): it was not" in (
        run.stdout
    )
    assert last_line(run.stdout).startswith("✗ 1 of 2 accounts failed (exit code 3)")


@pytest.mark.slow
def test_a_chat_whose_bot_api_hangs_costs_the_other_chat_nothing(
    fleet: Fleet, pair: tuple[Account, Account], sim: XtsSimulator, sim2: XtsSimulator
) -> None:
    """alice's own chat is on a Bot API that never answers; bob's is the shared one. The
    messages go out side by side: bob's arrives at once, naming bob only, and the run waits
    for alice's at most one Telegram budget."""
    alice, bob = pair
    fleet.with_telegram(sim)
    alice.settings.update(TELEGRAM_API_URL=sim2.url, TELEGRAM_CHAT_ID="777")
    sim2.add_fault("telegram", Fault.hang(60), times=5)

    started = time.time()
    run = fleet.run()
    elapsed = time.time() - started

    assert run.code == 0, run.output
    assert elapsed < TELEGRAM_BUDGET_SECONDS + 8, f"the run took {elapsed:.1f} s"
    (message,) = sim.telegram_messages()
    assert message.at - started < 8, "bob's message waited for alice's chat"
    assert message.json["chat_id"] == TELEGRAM_CHAT
    assert "bob" in message.json["text"]
    assert "alice" not in message.json["text"]
    assert sim2.count("telegram") == 2
    assert sim2.telegram_messages() == []
    (given_up,) = [line for line in lines(run.stdout) if "it was not delivered" in line]
    assert given_up.startswith("⚠ The Telegram notification to chat 777 failed")
    assert_holds_newest_token(alice)
    assert_holds_newest_token(bob)


def test_each_chat_hears_once_of_the_accounts_that_name_it(
    fleet: Fleet, pair: tuple[Account, Account], sim: XtsSimulator, sim2: XtsSimulator
) -> None:
    """alice's file names two chats (the shared one among them, with spaces and a repeat), bob
    keeps the shared one; bob fails. The shared chat gets one message about both; alice's own
    chat one about alice only. When alice's own chat cannot be found, the shared chat still gets
    its message and the exit code is the refresh's."""
    alice, _ = pair
    fleet.with_telegram(sim)
    alice.settings["TELEGRAM_CHAT_ID"] = f"777 , {TELEGRAM_CHAT},777"
    refusal = Fault.xts_error("e-user-0005", "Invalid credentials.")
    sim2.add_fault("interactive_login", refusal, times=2)

    run = fleet.run()

    assert run.code == 1, run.output
    messages = {m.json["chat_id"]: m.json["text"] for m in sim.telegram_messages()}
    assert sim.count("telegram") == len(messages) == 2
    shared, own = messages[TELEGRAM_CHAT], messages["777"]
    assert "✗ bob" in shared and "✓ alice" in shared
    assert "✓ alice" in own and "bob" not in own
    assert own.splitlines()[0].endswith(": account alice, fresh tokens")
    assert_holds_newest_token(alice)

    sim.clear()
    sim.forget_chat("777")

    refused = fleet.run()

    assert refused.code == 1, refused.output
    assert sim.count("telegram") == 2  # one each: a refusal is not retried
    (delivered,) = sim.telegram_messages()[len(messages) :]
    assert delivered.json["chat_id"] == TELEGRAM_CHAT
    assert "✗ bob" in delivered.json["text"] and "alice" in delivered.json["text"]
    assert "⚠ The Telegram notification to chat 777 was refused" in refused.stdout


def test_check_config_asks_a_shared_chat_and_check_once_for_all_accounts(
    fleet: Fleet, pair: tuple[Account, Account], sim: XtsSimulator, sim2: XtsSimulator
) -> None:
    """Two accounts sharing the chat and the health check: one getMe, one getChat and one
    request to the check's server, and each account's lines say what they answered; alice's
    own chat, which Telegram cannot find, is exit 2 for alice only."""
    fleet.with_telegram(sim)
    fleet.shared["HEALTHCHECK_URL"] = f"{sim.url}/ping/{uuid.uuid4()}"

    run = fleet.run("check-config")

    assert run.code == 0, run.output
    assert sim.count("telegram_getme") == sim.count("telegram_getchat") == 1
    assert [r.method for r in sim.requests("unknown")].count("HEAD") == 1
    assert sim.count("telegram") == sim.count("healthcheck") == 0
    for name in ("alice", "bob"):
        assert f"[{name}] ✓ Telegram accepts the bot token (bot @xts_sim_bot)" in run.stdout
        assert f"[{name}] ✓ The health check's server {sim.url}/ answers" in run.stdout
        assert f"[{name}] ✓ Ready" in run.stdout

    alice, _ = pair
    alice.settings["TELEGRAM_CHAT_ID"] = f"777,{TELEGRAM_CHAT}"
    sim.forget_chat("777")
    sim.clear()

    refused = fleet.run("check-config")

    assert refused.code == 2, refused.output
    assert sim.count("telegram_getme") == 1  # one bot
    chats = sorted(r.json["chat_id"] for r in sim.requests("telegram_getchat"))
    assert chats == ["4242", "777"]  # each distinct chat once
    accepted = "✓ Telegram accepts the bot token (bot @xts_sim_bot) and knows chat"
    assert f"[alice] {accepted} {TELEGRAM_CHAT}" in refused.stdout
    assert "[alice] ✗ Telegram refused the check (HTTP 400: Bad Request: chat not found)" in (
        refused.stdout
    )
    assert "[alice] ✗ Not ready (exit code 2)" in refused.stdout
    assert "[bob] ✓ Ready" in refused.stdout
    assert last_line(refused.stdout) == (
        "✗ 1 of 2 accounts not ready (exit code 2): alice. Fix what is marked ✗ under their "
        "names, then run check-config again."
    )


def test_a_message_about_many_failed_accounts_is_cut_to_fit_telegram(
    fleet: Fleet, sim: XtsSimulator
) -> None:
    """Nine accounts refused with pages-long XTS descriptions: the one message would pass
    Telegram's 4,096 characters, so it is cut there, says so, and is delivered at once."""
    fleet.with_telegram(sim)
    for number in range(9):
        fleet.add(f"acct{number}", sim, f"USR{number:03d}")
    sim.add_fault("interactive_login", Fault.xts_error("e-user-0005", "Refused. " * 200), times=9)

    run = fleet.run()

    assert run.code == 1, run.output
    assert sim.count("interactive_login") == 9
    (message,) = sim.telegram_messages()
    text = message.json["text"]
    assert 4000 < len(text) <= 4096
    assert text.startswith("❌ XTS token refresh on ")
    assert "9 of 9 accounts FAILED (exit code 1)" in text.split("\n", 1)[0]
    assert text.endswith("\n… (cut here to fit Telegram: the log has every line)")
    assert sim.count("telegram") == 1


@pytest.mark.slow
def test_the_start_pings_of_several_checks_go_out_side_by_side(
    fleet: Fleet, pair: tuple[Account, Account], sim: XtsSimulator, sim2: XtsSimulator
) -> None:
    """Each account's own check hangs on ``/start``: the two pings wait their 5 s together,
    not one after the other, and each line names its account."""
    alice, bob = pair
    alice.settings["HEALTHCHECK_URL"] = f"{sim.url}/ping/{uuid.uuid4()}"
    bob.settings["HEALTHCHECK_URL"] = f"{sim2.url}/ping/{uuid.uuid4()}"
    sim.add_fault("healthcheck", Fault.hang(30))
    sim2.add_fault("healthcheck", Fault.hang(30))

    started = time.monotonic()
    run = fleet.run()
    elapsed = time.monotonic() - started

    assert run.code == 0, run.output
    assert elapsed < 8.5, f"the run took {elapsed:.1f} s: were the start pings one by one?"
    for name in ("alice", "bob"):
        assert (
            f"⚠ The health-check ping /start for {name} failed (no answer within 5 s): it was "
            "not delivered." in run.stdout
        )
    assert sim.count("healthcheck") == sim2.count("healthcheck") == 2
