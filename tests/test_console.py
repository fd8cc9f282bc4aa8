"""The redactor every console line, log line, Telegram message and ping body passes.

It masks each secret it was told about (a secret inside a longer one too), tokens nobody told
it about by their shape (a JWT, a Telegram bot token, also inside a URL), cuts the user and
password out of any URL, and writes out control characters while keeping the lines. The pure
cases run in-process; the end-to-end ones run the real script, cron-style, against the
simulator and search every output for any ten characters of the token.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time

import pytest
from conftest import Project

from xts_refresher.console import Redactor
from xts_refresher.simulator import Fault
from xts_refresher.store import mask

LOGIN = "interactive_login"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unregistered_jwt() -> str:
    """A fresh JWT-shaped token (``eyJ…``) that no simulator issued and nobody registered."""
    header = {"alg": "HS256", "typ": "JWT", "kid": secrets.token_hex(6)}
    claims = {"sub": secrets.token_hex(8), "exp": int(time.time()) + 86400}
    parts = (
        json.dumps(header).encode(),
        json.dumps(claims).encode(),
        secrets.token_bytes(32),
    )
    return ".".join(_b64url(part) for part in parts)


def unregistered_bot_token() -> str:
    """A fresh Telegram-bot-token-shaped string (``<digits>:<35+ url-safe chars>``)."""
    bot_id = 1_000_000_000 + secrets.randbelow(8_999_999_999)
    return f"{bot_id}:AA{secrets.token_urlsafe(30)}Z"


LEAK_WINDOW = 10  # no 10 characters of an unregistered token may appear together


def assert_masked(token: str, *texts: str) -> None:
    """``token`` appears in none of ``texts``, not even in part: at most a 6-character prefix.

    Every run of LEAK_WINDOW characters of the token is looked for, so a redactor that masked
    only the first part of a JWT (its standard header) would be caught too.
    """
    # pytest.fail, not assert: pytest's report of a failed `assert x not in text` would print
    # the text, token and all.
    for text in texts:
        if token in text:
            pytest.fail(f"an unregistered token leaked whole: {mask(token)}")
        for start in range(len(token) - LEAK_WINDOW + 1):
            if token[start : start + LEAK_WINDOW] in text:
                pytest.fail(f"{LEAK_WINDOW} characters of a token leaked, from offset {start}")
        prefix_run = re.escape(token[:3]) + r"[A-Za-z0-9_.:-]*"
        for found in re.finditer(prefix_run, text):
            if token.startswith(found[0]) and len(found[0]) > 6:
                pytest.fail(f"more than a 6-character prefix of a token shown: {len(found[0])}")


# -- in-process ---------------------------------------------------------------------------------


def test_the_redactor_writes_out_controls_and_cuts_url_credentials_but_keeps_lines() -> None:
    text = "line one\n\tline \x1b[2Jtwo \r http://u:p-FAKE@host:1/x and ssh://git@h"
    assert Redactor().redact(text) == (
        "line one\n\tline \\x1b[2Jtwo \\x0d http://host:1/x and ssh://h"
    )


@pytest.mark.parametrize(
    "text",
    [
        "https://api.telegram.org/bot1234567890:AAH{tail}/sendMessage",
        "token=1234567890:AAH{tail} failed",
    ],
)
def test_the_redactor_masks_a_bot_token_it_was_not_told_about_also_in_a_url(text: str) -> None:
    """An unregistered Telegram bot token is masked by its shape, inside a Bot API URL too."""
    from xts_refresher.console import Redactor

    secret = "1234567890:AAH" + "x" * 33
    masked = Redactor().redact(text.format(tail="x" * 33))
    assert secret not in masked
    assert "xxxxxxxxxx" not in masked


def test_the_redactor_masks_jwt_and_bot_token_shapes_it_was_never_told_about() -> None:
    """A Redactor with no secrets masks a JWT (``eyJ….….…``) and a Telegram bot token in any
    text, down to a prefix of at most six characters. It fails if SECRET_SHAPES is emptied or
    broken."""
    redactor = Redactor()
    jwt, bot = unregistered_jwt(), unregistered_bot_token()
    for token in (jwt, bot):
        for text in (
            f"Invalid Token {token}",
            f"token={token}.",
            f'{{"token": "{token}", "userID": "CK68"}}',
            f"Authorization: {token}\nnext line",
            f"({token})",
        ):
            masked = redactor.redact(text)
            assert_masked(token, masked)
            assert mask(token) in masked  # the text keeps its shape: a masked prefix
    record = redactor.redact(f"two at once: {jwt} and {bot}")
    assert_masked(jwt, record)
    assert_masked(bot, record)


@pytest.mark.parametrize(
    "order",
    [["abcd1234", "abcd1234-and-the-rest"], ["abcd1234-and-the-rest", "abcd1234"]],
)
def test_a_secret_inside_a_longer_secret_does_not_unmask_the_longer_one(order: list[str]) -> None:
    """Known secrets are masked longest first, whatever the order they were told in."""
    from xts_refresher.console import Redactor

    masked = Redactor(order).redact("key abcd1234-and-the-rest end")
    assert "-and-the-rest" not in masked, masked


# -- end to end ---------------------------------------------------------------------------------


def test_an_xts_error_echoing_an_unregistered_token_is_masked_everywhere(
    project: Project,
) -> None:
    """A refused login whose description echoes a token the run never saw (an XTS
    "Invalid Token <jwt>"): exit 1, XTS's code shown, the token only as a masked prefix in
    stdout, stderr and the log file. It fails if SECRET_SHAPES is emptied or broken."""
    jwt, bot = unregistered_jwt(), unregistered_bot_token()
    project.sim.add_fault(LOGIN, Fault.xts_error("e-session-0007", f"Invalid Token {jwt}"))
    run = project.run()
    assert run.code == 1, run.output
    assert "e-session-0007" in run.stdout
    assert "Invalid Token" in run.stdout
    assert_masked(jwt, run.stdout, run.stderr, run.log)
    assert mask(jwt) in run.stdout
    assert mask(jwt) in run.log

    project.sim.add_fault(LOGIN, Fault.xts_error("e-session-0007", f"Invalid bot {bot}"))
    run = project.run()
    assert run.code == 1, run.output
    assert_masked(bot, run.stdout, run.stderr, run.log)
    assert mask(bot) in run.stdout


def test_a_hook_printing_an_unregistered_token_is_masked_in_the_output_and_log(
    project: Project,
) -> None:
    """XTS_POST_REFRESH_HOOK output is logged; a JWT or bot token it prints (never registered)
    shows only as a masked prefix. It fails if SECRET_SHAPES is emptied or broken."""
    jwt, bot = unregistered_jwt(), unregistered_bot_token()
    project.settings["XTS_POST_REFRESH_HOOK"] = f"echo {jwt}; echo bot={bot}"
    run = project.run()
    assert run.code == 0, run.output
    assert "hook:" in run.log
    for token in (jwt, bot):
        assert_masked(token, run.stdout, run.stderr, run.log)
        assert mask(token) in run.log
