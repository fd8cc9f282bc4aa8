"""The ``demo`` command: a complete refresh against the bundled simulator, nothing to set up.

It starts the XTS simulator on 127.0.0.1, writes its token files and log into a temporary
folder, runs ``refresh --verify`` and ``status`` exactly as a real run would, shows what the
token file holds (token masked), and removes the folder. No ``.env``, no credentials and no
network are needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .account_refresh import RefreshOptions
from .accounts import single_selection
from .console import Redactor, add_log_file, close_logging, setup_logging
from .interrupt import StopRequest
from .refresh import refresh_selection
from .sessions import INTERACTIVE, MARKETDATA, SESSIONS
from .settings import PathOverrides, Settings, load_settings
from .simulator import (
    DEMO_INTERACTIVE_KEY,
    DEMO_INTERACTIVE_SECRET,
    DEMO_MARKETDATA_KEY,
    DEMO_MARKETDATA_SECRET,
    DEMO_USER_ID,
    XtsSimulator,
)
from .status import status
from .store import mask

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def demo_settings(api_root: str, folder: Path) -> Settings:
    """Settings that point at a simulator at ``api_root`` and keep every file in ``folder``.

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


def demo() -> int:
    """Run the demonstration; the refresh's exit code (0 when all is well)."""
    with proxies_bypassed_for_loopback():
        return _demo()


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
            print("\n$ xts_token_refresh.py status")
            status_code = status(
                [settings], verify=False, as_json=False, log=log, redactor=redactor
            )
        finally:
            close_logging(log)
        token_file = settings.token_path(INTERACTIVE)
        print(
            f"\nThe token file {token_file} holds (the token is masked here; the file "
            "has it whole):"
        )
        if token_file.exists():
            shown = json.loads(token_file.read_text(encoding="utf-8"))
            shown["token"] = mask(shown["token"])
            print(json.dumps(shown, indent=2, ensure_ascii=False))
        print(f"\nThe simulator saw {len(simulator.requests())} requests. Exit code: {code}.")
        if code == 0 and status_code == 0:
            print("✓ Demo complete: put your broker's settings in .env and run the same refresh.")
        return code or status_code
