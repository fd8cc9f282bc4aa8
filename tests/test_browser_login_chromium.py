"""Browser login with a real browser: headless Chromium signs in on the simulator's broker
login page the way an account holder would, and the refresher waiting on the other side saves
the token.

Chromium and its driver come from Debian (``chromium``, ``chromium-driver``; .ci/run installs
them) and selenium from requirements-dev.txt. Nothing is downloaded at run time: the driver and
the browser are named by path, and selenium's driver manager is kept offline.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import queue
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import APP_DIR, Project, closed_port, skip_or_fail, token_json

from xts_refresher.simulator import (
    THIRDPARTY_INTERACTIVE_KEY,
    THIRDPARTY_INTERACTIVE_SECRET,
    THIRDPARTY_PASSWORD,
    THIRDPARTY_TOTP_SECRET,
    THIRDPARTY_USER_ID,
    totp,
)

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


@contextlib.contextmanager
def headless_chromium(
    folder: Path, monkeypatch: pytest.MonkeyPatch, *flags: str
) -> Iterator[WebDriver]:
    """A headless Chromium with CHROMIUM_FLAGS and ``flags``, driven through Debian's
    chromedriver, with a fresh profile in ``folder``; quit on leaving. Missing browser, driver
    or selenium: skipped locally, a failure under CI=true."""
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
    for flag in (*CHROMIUM_FLAGS, *flags):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={folder / 'chromium-profile'}")
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium's sandbox refuses to run as root
    service = Service(
        executable_path=str(CHROMEDRIVER), log_output=str(folder / "chromedriver.log")
    )
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    """A headless Chromium for the test (see headless_chromium)."""
    with headless_chromium(tmp_path, monkeypatch) as driver:
        yield driver


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


LINK_LINE = re.compile(r"Open this link to log in (\S+): (\S+)")
LINK_WAIT = 30  # seconds the run may take to print its link


class Output:
    """What a running script prints on stdout, read line by line as it comes (a thread), so that
    the test can act on one line while the script goes on; stderr is kept for the end."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._fresh: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            self._fresh.put(line)
        self._fresh.put(None)

    def link(self) -> tuple[str, str]:
        """The account and link of the first "Open this link" line, once printed (the test
        fails when the script ends or LINK_WAIT passes without one)."""
        while True:
            line = self._fresh.get(timeout=LINK_WAIT)
            assert line is not None, "the run ended without printing a link:\n" + self.text()
            found = LINK_LINE.search(line)
            if found:
                return found[1], found[2]

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """The exit code and everything printed (stdout, then stderr), once the script ends."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout)
        assert self.process.stderr is not None
        return code, self.text() + self.process.stderr.read()

    def text(self) -> str:
        """The stdout lines read so far."""
        return "".join(self.lines)


def browser_account(project: Project, return_url: str) -> dict[str, str]:
    """The settings of an account of the simulator's broker whose holder signs in on its page
    and is sent back to ``return_url``."""
    project.account_secrets.append(THIRDPARTY_INTERACTIVE_SECRET)
    return {
        "XTS_INTERACTIVE_API_KEY": THIRDPARTY_INTERACTIVE_KEY,
        "XTS_INTERACTIVE_API_SECRET": THIRDPARTY_INTERACTIVE_SECRET,
        "XTS_USER_ID": THIRDPARTY_USER_ID,
        "XTS_LOGIN": "browser",
        "XTS_RETURN_URL": return_url,
    }


def sign_in_with_chromium(chromium: WebDriver, link: str, return_url: str) -> str:
    """Open ``link`` in Chromium, sign in as the simulator's holder (user ID, password, a TOTP
    of now) and wait until the broker's page has handed the browser to ``return_url`` and the
    page there says who is logged in; the text of that page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    chromium.get(link)
    chromium.find_element(By.NAME, "userID").send_keys(THIRDPARTY_USER_ID)
    chromium.find_element(By.NAME, "password").send_keys(THIRDPARTY_PASSWORD)
    chromium.find_element(By.NAME, "totp").send_keys(totp(THIRDPARTY_TOTP_SECRET))
    chromium.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(chromium, PAGE_TIMEOUT).until(
        lambda driver: (
            driver.current_url.startswith(return_url)
            and "logged in" in driver.find_element(By.TAG_NAME, "body").text
        )
    )
    return str(chromium.find_element(By.TAG_NAME, "body").text)


def assert_nothing_secret_in(project: Project, output: str, *pages: str) -> None:
    """No secret, access token or session token of the simulator in the run's ``output`` or
    the browser's ``pages``; the app key (which the broker's page needs) only in the link's
    own line of the output."""
    access_tokens = project.sim.thirdparty.access_tokens()
    for secret in [*project.secrets(), *access_tokens]:
        for text in (output, *pages):
            assert secret not in text, f"a secret leaked: {secret[:6]}..."
    with_key = [line for line in output.splitlines() if THIRDPARTY_INTERACTIVE_KEY in line]
    assert len(with_key) == 1
    assert LINK_LINE.search(with_key[0])
    for page in pages:
        assert THIRDPARTY_INTERACTIVE_KEY not in page


@pytest.mark.slow
def test_login_signed_in_by_chromium_saves_the_exchanged_token(
    project: Project, chromium: WebDriver
) -> None:
    """``login --account tp --wait 2m``, started as cron would, prints the link; Chromium opens
    it, signs in with user ID, password and TOTP, and the broker's self-submitting form posts
    the access token to the return URL. The run exchanges it once, saves the token for the
    holder's user (exit 0), and the page the browser ends on says who is logged in, with no
    token in it."""
    return_url = f"http://127.0.0.1:{closed_port()}/xts/callback"
    project.with_accounts("tp", tp=browser_account(project, return_url))
    run = Output(project.start("login", "--account", "tp", "--wait", "2m"))

    account, link = run.link()
    page = sign_in_with_chromium(chromium, link, return_url)
    code, output = run.finish()

    assert code == 0, output
    assert account == "tp"
    assert f"tp is logged in as {THIRDPARTY_USER_ID}" in page
    exchanges = project.sim.requests("interactive_exchange")
    assert len(exchanges) == 1
    saved = token_json(project.folder / "accounts" / "tp" / "xts_store_token.json")
    assert saved["userID"] == THIRDPARTY_USER_ID
    assert saved["token"] in project.sim.issued_tokens("interactive")
    assert_nothing_secret_in(project, output, page, str(chromium.page_source))


@pytest.mark.slow
def test_a_waiting_refresh_takes_the_finished_session_chromium_was_redirected_with(
    project: Project, chromium: WebDriver
) -> None:
    """A cron-style ``refresh`` of a browser account with ``XTS_LOGIN_WAIT=2m`` prints the link
    and waits; the broker hands the finished session over by redirecting Chromium to the return
    URL (a GET carrying ``session``). Nothing is exchanged, the session's token is saved (exit 0)
    and the browser's page names the user, without the token."""
    return_url = f"http://127.0.0.1:{closed_port()}/xts/callback"
    project.settings.update(browser_account(project, return_url), XTS_LOGIN_WAIT="2m")
    project.sim.thirdparty.session_shape = "token"
    project.sim.thirdparty.handover = "get"
    run = Output(project.start("refresh"))

    account, link = run.link()
    page = sign_in_with_chromium(chromium, link, return_url)
    code, output = run.finish()

    assert code == 0, output
    assert account == "default"
    assert f"is logged in as {THIRDPARTY_USER_ID}" in page
    assert project.sim.requests("interactive_exchange") == []
    assert project.sim.requests("interactive_login") == []
    saved = token_json(project.token_file)
    assert saved["userID"] == THIRDPARTY_USER_ID
    assert saved["token"] == project.sim.issued_tokens("interactive")[-1]
    assert_nothing_secret_in(project, output, page, str(chromium.page_source))


# -- the return URL through the holder's own HTTPS reverse proxy (the phone's way) ---------------

PROXY_NAME = "xts.example.in"  # the name docs/browser-login.md's snippets serve
DOCS_PAGE = APP_DIR / "docs/browser-login.md"
PROXY_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # nginx lives in /usr/sbin
PROXY_START = 15  # seconds a proxy may take to listen


def documented_snippet(language: str) -> str:
    """The configuration docs/browser-login.md shows in its ```language block."""
    found = re.search(rf"```{language}\n(.*?)```", DOCS_PAGE.read_text(encoding="utf-8"), re.S)
    assert found is not None, f"no {language} block in {DOCS_PAGE.name}"
    return found[1]


def replaced(text: str, *pairs: tuple[str, str]) -> str:
    """``text`` with each (old, new) of ``pairs`` replaced; each old must be there."""
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new)
    return text


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for PROXY_NAME and its key, made with openssl in ``folder``."""
    openssl = shutil.which("openssl", path=PROXY_PATH)
    if openssl is None:
        skip_or_fail("openssl is missing (apt-get install openssl)")
    assert openssl is not None
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={PROXY_NAME}",
         "-addext", f"subjectAltName=DNS:{PROXY_NAME}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def nginx_arguments(folder: Path, proxy_port: int, listen_port: int) -> list[str]:
    """nginx's arguments: in the foreground, serving the docs' server block with this test's
    port, certificate and listen address put in, every file it writes in ``folder``."""
    cert, key = self_signed_certificate(folder)
    server = replaced(
        documented_snippet("nginx"),
        ("listen 443 ssl;", f"listen 127.0.0.1:{proxy_port} ssl;"),
        (f"/etc/letsencrypt/live/{PROXY_NAME}/fullchain.pem", str(cert)),
        (f"/etc/letsencrypt/live/{PROXY_NAME}/privkey.pem", str(key)),
        ("http://127.0.0.1:8765;", f"http://127.0.0.1:{listen_port};"),
    )
    temp = (
        " ".join(
            f"{kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi")
        )
        + f" uwsgi_temp_path {folder / 'uwsgi'}; scgi_temp_path {folder / 'scgi'};"
    )
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers that can reach the folder
    config = folder / "nginx.conf"
    config.write_text(
        f"daemon off;\n{user}pid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'};\n"
        f"events {{}}\nhttp {{\naccess_log off;\n{temp}\n{server}}}\n",
        encoding="utf-8",
    )
    return ["-p", str(folder), "-e", str(folder / "error.log"), "-c", str(config)]


def caddy_arguments(folder: Path, proxy_port: int, listen_port: int) -> list[str]:
    """caddy's arguments: serving the docs' site block with this test's port, certificate and
    listen address put in; no admin endpoint, no redirect server on port 80, no trust store
    touched."""
    cert, key = self_signed_certificate(folder)
    site = replaced(
        documented_snippet("caddyfile"),
        (f"{PROXY_NAME} {{", f"{PROXY_NAME}:{proxy_port} {{\n\ttls {cert} {key}"),
        ("reverse_proxy 127.0.0.1:8765", f"reverse_proxy 127.0.0.1:{listen_port}"),
    )
    options = (
        "{\n\tadmin off\n\tauto_https disable_redirects\n\tdefault_bind 127.0.0.1\n"
        "\tskip_install_trust\n}\n"
    )
    config = folder / "Caddyfile"
    config.write_text(options + site, encoding="utf-8")
    return ["run", "--adapter", "caddyfile", "--config", str(config)]


@contextlib.contextmanager
def reverse_proxy(kind: str, folder: Path, proxy_port: int, listen_port: int) -> Iterator[None]:
    """The docs' ``kind`` (nginx or caddy) snippet serving https://PROXY_NAME:proxy_port and
    forwarding to 127.0.0.1:listen_port, running until the block ends (stopped then)."""
    program = shutil.which(kind, path=PROXY_PATH)
    if program is None:
        skip_or_fail(f"{kind} is missing (apt-get install nginx-light caddy)")
    assert program is not None
    folder.mkdir()
    build = nginx_arguments if kind == "nginx" else caddy_arguments
    argv = [program, *build(folder, proxy_port, listen_port)]
    home = str(folder)
    env = {"PATH": PROXY_PATH, "HOME": home, "XDG_DATA_HOME": home, "XDG_CONFIG_HOME": home}
    with (folder / "output.log").open("wb") as output:
        proxy = subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        until = time.monotonic() + PROXY_START
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", proxy_port), timeout=1),
            ):
                break
            logs = [(folder / name) for name in ("output.log", "error.log")]
            shown = "".join(f.read_text("utf-8", "replace") for f in logs if f.exists())
            assert proxy.poll() is None, f"{kind} stopped: {shown}"
            assert time.monotonic() < until, f"{kind} did not listen in time: {shown}"
            time.sleep(0.05)
        yield
    finally:
        proxy.terminate()
        try:
            proxy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()


@pytest.mark.slow
@pytest.mark.system
@pytest.mark.parametrize("kind", ["nginx", "caddy"])
def test_the_documented_reverse_proxy_brings_the_phones_callback_to_the_listener(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """The phone's way: the return URL is https://xts.example.in/xts/callback, served by the
    nginx or Caddy snippet of docs/browser-login.md (as written there; only the port, the
    certificate and the listen address put in), which forwards to XTS_CALLBACK_LISTEN. A
    browser that reaches the listener only through the proxy signs in; the session arrives
    with its state, the token is saved (exit 0), and the page says who is logged in."""
    proxy_port, listen_port = closed_port(), closed_port()
    return_url = f"https://{PROXY_NAME}:{proxy_port}/xts/callback"
    project.settings.update(
        browser_account(project, return_url), XTS_CALLBACK_LISTEN=f"127.0.0.1:{listen_port}"
    )
    phone = (f"--host-resolver-rules=MAP {PROXY_NAME} 127.0.0.1", "--ignore-certificate-errors")

    with contextlib.ExitStack() as running:
        running.enter_context(reverse_proxy(kind, tmp_path / kind, proxy_port, listen_port))
        browser = running.enter_context(headless_chromium(tmp_path, monkeypatch, *phone))
        run = Output(project.start("login", "--wait", "2m"))
        _, link = run.link()
        page = sign_in_with_chromium(browser, link, return_url)
        code, output = run.finish()

    assert code == 0, output
    assert f"default is logged in as {THIRDPARTY_USER_ID}" in page
    assert len(project.sim.requests("interactive_exchange")) == 1
    assert token_json(project.token_file)["userID"] == THIRDPARTY_USER_ID
    assert_nothing_secret_in(project, output, page)
