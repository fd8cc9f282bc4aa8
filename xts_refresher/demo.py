"""The ``demo`` command: a complete refresh against the bundled simulator, nothing to set up.

It starts the XTS simulator on 127.0.0.1, writes its token files and log into a temporary
folder, runs ``refresh --verify`` and ``status`` exactly as a real run would, shows what the
token file holds (token masked), and removes the folder. No ``.env``, no credentials and no
network are needed.

``demo --browser`` does the same for an account of the simulator's broker whose API login needs
the account holder: the refresh prints the login link and waits, and a scripted holder (plain
HTTP, no browser) reads the link from the console, signs in on the simulator's login page with
the user ID, password and a TOTP, and follows the page's hand-over to the return URL, as a
browser would.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TextIO

from .account_refresh import RefreshOptions
from .accounts import load_settings, single_selection
from .console import Redactor, add_log_file, close_logging, setup_logging
from .interrupt import StopRequest
from .refresh import refresh_selection
from .sessions import INTERACTIVE, MARKETDATA, SESSIONS
from .settings import PathOverrides, Settings
from .simulator import (
    DEMO_INTERACTIVE_KEY,
    DEMO_INTERACTIVE_SECRET,
    DEMO_MARKETDATA_KEY,
    DEMO_MARKETDATA_SECRET,
    DEMO_USER_ID,
    THIRDPARTY_INTERACTIVE_KEY,
    THIRDPARTY_INTERACTIVE_SECRET,
    THIRDPARTY_MARKETDATA_KEY,
    THIRDPARTY_MARKETDATA_SECRET,
    THIRDPARTY_USER_ID,
    XtsSimulator,
    sign_in,
)
from .status import status
from .store import mask

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
# The line a run prints for an account whose holder must sign in (login.py's words).
LINK_LINE = re.compile(r"Open this link to log in (\S+): (\S+)")
HOLDER_WAIT = "2m"  # how long the browser demo's refresh waits for the scripted holder


def demo_settings(
    api_root: str, folder: Path, overrides: Mapping[str, str] | None = None
) -> Settings:
    """Settings that point at a simulator at ``api_root`` and keep every file in ``folder``
    (``overrides`` replace or add settings).

    They go through the same validation as an operator's: an empty ``.env`` in ``folder`` and
    the simulator's own credentials as the environment (never this process's environment or
    the operator's ``.env``, so a demo cannot notify anyone).
    """
    env_file = folder / ".env"
    env_file.touch(mode=0o600)
    environ = {
        "XTS_API_ROOT": api_root,
        INTERACTIVE.key_variable: DEMO_INTERACTIVE_KEY,
        INTERACTIVE.secret_variable: DEMO_INTERACTIVE_SECRET,
        MARKETDATA.key_variable: DEMO_MARKETDATA_KEY,
        MARKETDATA.secret_variable: DEMO_MARKETDATA_SECRET,
        "XTS_USER_ID": DEMO_USER_ID,
        "XTS_TIMEOUT": "10",
        "XTS_RETRIES": "2",
        "XTS_DEADLINE": "60",
        "XTS_RETRY_BACKOFF": "0.2",
        **{s.path_variable: str(folder / s.default_file) for s in SESSIONS.values()},
        "XTS_LOG_FILE": str(folder / "xts_token_refresh.log"),
        **(overrides or {}),
    }
    return load_settings(PathOverrides(env_file=str(env_file)), environ)


@contextlib.contextmanager
def proxies_bypassed_for_loopback() -> Iterator[None]:
    """Let requests reach 127.0.0.1 directly while an HTTP(S) proxy is set in the environment.

    A machine that reaches the internet through ``http_proxy``/``https_proxy`` would otherwise
    send the demo's loopback traffic to the proxy, which cannot reach this machine's simulator.
    """
    saved = {name: os.environ.get(name) for name in ("no_proxy", "NO_PROXY")}
    present = [v for v in saved.values() if v]
    merged = ",".join([*present[:1], *LOOPBACK_HOSTS])
    try:
        for name in saved:
            os.environ[name] = merged
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def browser_demo_settings(api_root: str, folder: Path, return_url: str) -> Settings:
    """The demo's settings for the simulator's broker whose holder signs in on its login page:
    its keys and user, ``XTS_LOGIN=browser``, ``return_url`` (on this machine), and a refresh
    that waits for the holder."""
    return demo_settings(
        api_root,
        folder,
        {
            INTERACTIVE.key_variable: THIRDPARTY_INTERACTIVE_KEY,
            INTERACTIVE.secret_variable: THIRDPARTY_INTERACTIVE_SECRET,
            MARKETDATA.key_variable: THIRDPARTY_MARKETDATA_KEY,
            MARKETDATA.secret_variable: THIRDPARTY_MARKETDATA_SECRET,
            "XTS_USER_ID": THIRDPARTY_USER_ID,
            "XTS_LOGIN": "browser",
            "XTS_RETURN_URL": return_url,
            "XTS_LOGIN_WAIT": HOLDER_WAIT,
        },
    )


def free_loopback_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now (bound, read, closed): the demo's
    return URL must name its port before the run listens there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class ScriptedHolder(io.TextIOBase):
    """The account holder, played by a script that reads the run's console: it passes every
    line on to ``console`` and, when the login link appears, signs in on the simulator's page in
    a thread of its own (the run goes on waiting meanwhile), saying what a person would see."""

    def __init__(self, console: TextIO) -> None:
        super().__init__()
        self.console = console
        self.threads: list[threading.Thread] = []
        self._partial = ""
        self._lock = threading.Lock()  # the run's threads and the holder's write at once

    def write(self, text: str) -> int:
        with self._lock:
            self.console.write(text)
            *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            found = LINK_LINE.search(line)
            if found:
                thread = threading.Thread(target=self._sign_in, args=(found[2],), daemon=True)
                self.threads.append(thread)
                thread.start()
        return len(text)

    def flush(self) -> None:
        self.console.flush()

    def _sign_in(self, link: str) -> None:
        self.write(
            f"  (the holder opens the link and signs in as {THIRDPARTY_USER_ID} with the "
            "password and a TOTP; the page hands the session to the return URL)\n"
        )
        status, page = sign_in(link)
        self.write(f"  (the holder's browser shows, HTTP {status}: {page.strip()!r})\n")
        self.flush()

    def finish(self, timeout: float) -> bool:
        """Whether the holder signed in and is done (waiting up to ``timeout`` s for it)."""
        for thread in self.threads:
            thread.join(timeout)
        return bool(self.threads) and not any(t.is_alive() for t in self.threads)


def demo(browser: bool = False) -> int:
    """Run the demonstration (``browser``: of an account whose holder signs in on the broker's
    page); the refresh's exit code (0 when all is well)."""
    with proxies_bypassed_for_loopback():
        return _browser_demo() if browser else _demo()


def _demo() -> int:
    with tempfile.TemporaryDirectory(prefix="xts-demo-") as tmp, XtsSimulator() as simulator:
        folder = Path(tmp)
        settings = demo_settings(simulator.url, folder)
        print(
            f"Demo: the bundled XTS simulator listens on {simulator.url}; the files go to the "
            f"temporary folder {folder}, which is removed when the demo ends."
        )
        print(
            "Nothing leaves this machine: the commands below run with the simulator's own "
            "credentials and the demo's settings, not with a .env.\n"
        )
        code = _refresh_and_show(simulator, settings)
        if code == 0:
            print("✓ Demo complete: put your broker's settings in .env and run the same refresh.")
        return code


def _browser_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="xts-demo-") as tmp, XtsSimulator() as simulator:
        folder = Path(tmp)
        return_url = f"http://127.0.0.1:{free_loopback_port()}/xts/callback"
        settings = browser_demo_settings(simulator.url, folder, return_url)
        print(
            f"Demo: the bundled XTS simulator listens on {simulator.url} and plays a broker "
            "whose API login needs the account holder: the holder signs in on its login page "
            "(user ID, password, TOTP) and the page hands the session to the return URL, "
            f"{return_url}, where the run waits (XTS_LOGIN=browser, "
            f"XTS_LOGIN_WAIT={HOLDER_WAIT}). The files go to the temporary folder {folder}, "
            "which is removed when the demo ends."
        )
        print(
            "A script plays the holder: it reads the link the run prints and signs in over "
            "plain HTTP, as a browser would. Nothing leaves this machine.\n"
        )
        holder = ScriptedHolder(sys.stdout)
        with contextlib.redirect_stdout(holder):
            code = _refresh_and_show(simulator, settings, holder)
        if code == 0:
            print(
                "✓ Demo complete: for your broker, set XTS_LOGIN=browser in .env and run "
                "xts_token_refresh.py login (see docs/browser-login.md)."
            )
        return code


def _refresh_and_show(
    simulator: XtsSimulator, settings: Settings, holder: ScriptedHolder | None = None
) -> int:
    """Run ``refresh --verify`` and ``status`` with ``settings`` (the ``holder`` watching the
    console, when given), then show the token file and what the simulator saw; the first
    failing exit code of the two, else 0."""
    print("$ xts_token_refresh.py refresh --verify")
    redactor = Redactor(settings.secrets())
    log = setup_logging(redactor)
    add_log_file(log, settings.log_file)
    try:
        code = refresh_selection(
            single_selection(settings),
            RefreshOptions(verify=True),
            log,
            redactor,
            StopRequest(),
        )
        if holder is not None and not holder.finish(timeout=10):
            print("⚠ The scripted holder did not sign in.")
        print("\n$ xts_token_refresh.py status")
        status_code = status([settings], verify=False, as_json=False, log=log, redactor=redactor)
    finally:
        close_logging(log)
    token_file = settings.token_path(INTERACTIVE)
    print(f"\nThe token file {token_file} holds (the token is masked here; the file has it whole):")
    if token_file.exists():
        shown = json.loads(token_file.read_text(encoding="utf-8"))
        shown["token"] = mask(shown["token"])
        print(json.dumps(shown, indent=2, ensure_ascii=False))
    print(f"\nThe simulator saw {len(simulator.requests())} requests. Exit code: {code}.")
    return code or status_code
