"""Browser login with a real browser: headless Chromium signs in on the simulator's broker
login page the way an account holder would, and the refresher waiting on the other side saves
the token.

Chromium and its driver come from Debian (``chromium``, ``chromium-driver``; .ci/run installs
them) and selenium from requirements-dev.txt. Nothing is downloaded at run time: the driver and
the browser are named by path, and selenium's driver manager is kept offline.
"""

from __future__ import annotations

import http.server
import os
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import skip_or_fail

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# A closed network refuses Chromium's own connections (updates, sync, QUIC, field trials): the
# browser is asked not to try, so that it only ever talks to 127.0.0.1.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-proxy-server",
)
PAGE_TIMEOUT = 20  # seconds a page may take to load before the test fails


@pytest.fixture
def chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    """A headless Chromium, driven through Debian's chromedriver, with a fresh profile in
    ``tmp_path``; quit after the test. Missing browser, driver or selenium: skipped locally,
    a failure under CI=true."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        skip_or_fail("selenium is not installed (pip install -r requirements-dev.txt)")
        raise  # not reached: skip_or_fail raises
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not os.access(tool, os.X_OK):
            skip_or_fail(f"{tool} is missing (apt-get install chromium chromium-driver)")
    # Selenium Manager is never needed with both paths given; offline it could not download
    # a driver even if a later selenium tried.
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium's sandbox refuses to run as root
    service = Service(
        executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log")
    )
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


class FormPage(http.server.BaseHTTPRequestHandler):
    """A page with one form on GET; a POST is recorded and answered with what it carried."""

    posted: list[dict[str, list[str]]]

    def do_GET(self) -> None:
        self._answer(
            "text/html; charset=utf-8",
            '<!doctype html><form method="post" action="/done">'
            '<input name="userID"><input name="totp"><button type="submit">Log in</button>'
            "</form>",
        )

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        fields = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8"))
        self.posted.append(fields)
        self._answer("text/plain; charset=utf-8", f"Logged in as {fields['userID'][0]}.")

    def _answer(self, content_type: str, body: str) -> None:
        data = body.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads what was posted, not the access log."""


@pytest.mark.slow
def test_headless_chromium_fills_and_submits_a_form_on_this_machine(
    chromium: WebDriver,
) -> None:
    """The browser the login test relies on works here: it opens a page on 127.0.0.1, types
    into a form, submits it, and ends on the answer, with no connection anywhere else."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    posted: list[dict[str, list[str]]] = []
    handler = type("Handler", (FormPage,), {"posted": posted})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        chromium.get(f"http://127.0.0.1:{server.server_address[1]}/")
        chromium.find_element(By.NAME, "userID").send_keys("CK68")
        chromium.find_element(By.NAME, "totp").send_keys("123456")
        chromium.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(chromium, PAGE_TIMEOUT).until(expected_conditions.url_contains("/done"))
        body = chromium.find_element(By.TAG_NAME, "body").text
    finally:
        server.shutdown()
        server.server_close()
    assert posted == [{"userID": ["CK68"], "totp": ["123456"]}]
    assert body == "Logged in as CK68."
