"""Reading a settings file (``.env``, ``accounts/NAME.env``): its variables, and the refusal of
a file that is not safe to read.

A plain file (``NAME=value`` lines) is read here without python-dotenv, whose import would cost
every run; any other is read by python-dotenv's parser, with every line it cannot read named.
A settings file that someone other than this user (and root) could have written is refused: it
sets a command the job runs (XTS_POST_REFRESH_HOOK).
"""

from __future__ import annotations

import io
import os
import stat

from . import SETUP_HINT, paths
from .errors import ConfigError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; mypy honours the name
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

# What a plain settings file holds (printable ASCII, tabs, line ends), and what a plain value
# does not (white space, quotes, a backslash, "#").
PLAIN_ENV_TEXT = frozenset(map(chr, range(0x20, 0x7F))) | {"\n", "\r", "\t"}
NOT_IN_PLAIN_VALUES = frozenset(" \t'\"\\#")
# A settings file that these can write is refused (see refuse_foreign_writers).
FOREIGN_WRITE_BITS = stat.S_IWGRP | stat.S_IWOTH


def plain_env_values(text: str) -> dict[str, str] | None:
    """The variables of ``text`` when every line is blank, a comment, or a plain
    ``NAME=value`` (``export`` before it allowed; the value printable ASCII without quotes,
    backslashes, white space or ``#``), as python-dotenv reads them; None for any other text,
    which python-dotenv must read.

    Most settings files are plain, and reading them without python-dotenv spares every run
    its import (about 11 M instructions, 2 % of a refresh); a property test holds the two
    readers to the same answers.
    """
    if not PLAIN_ENV_TEXT.issuperset(text):
        return None
    values: dict[str, str] = {}
    # Lines end as python-dotenv ends them: at \r\n, \n or a lone \r.
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not name.isidentifier() or not NOT_IN_PLAIN_VALUES.isdisjoint(value):
            return None
        values[name] = value
    return values


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of a ``.env`` file; empty values and bare names are left out.

    A UTF-8 byte-order mark (Windows editors add one) is dropped before parsing, and no
    ``${VAR}`` interpolation is done: a secret holding ``$`` stays as written. A plain file is
    read without python-dotenv (plain_env_values), any other with it. ConfigError for a file
    that cannot be read, that is no regular file of at most 1 MiB (paths.read_small_file), or
    that someone other than this user (and root) could have written (refuse_foreign_writers).
    """
    try:
        raw, info = paths.read_small_file(path)
    except paths.RefusedFileError as exc:
        raise ConfigError(
            f"Cannot read the settings file {path}: {exc.strerror}.",
            "Point --env-file (or the account file) at your settings file, a regular text file.",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"Cannot read the settings file {path}: {exc.strerror}.",
            "Check its path and that the user running the job can read it.",
        ) from None
    refuse_foreign_writers(path, info)
    try:
        # Lines end as a file opened as text ends them (universal newlines).
        text = raw.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text.", "Save it as UTF-8.") from None
    parsed: Mapping[str, str | None] | None = plain_env_values(text)
    if parsed is None:
        parsed = dotenv_env_values(path, text)
    return {key: value for key, value in parsed.items() if value}


def dotenv_env_values(path: Path, text: str) -> dict[str, str | None]:
    """The variables of the settings file ``path`` (its ``text``) as python-dotenv reads them,
    without interpolation; ConfigError naming the file and each line it cannot read.

    python-dotenv itself only logs a warning for such a line and reads on, so a quote left open
    drops the setting, or runs on to the next quote and swallows the lines between. Its
    parser is asked directly so that every such line is found, and none is shown (it may
    hold a secret).
    """
    try:
        from dotenv.parser import parse_stream
    except ImportError:
        raise ConfigError("python-dotenv is not installed.", SETUP_HINT) from None
    values: dict[str, str | None] = {}
    problems = []
    for binding in parse_stream(io.StringIO(text)):
        problem = _statement_problem(binding.original.string, binding.original.line, binding.error)
        if problem:
            problems.append(problem)
        elif binding.key is not None:
            values[binding.key] = binding.value
    if problems:
        quotes = any("quote" in problem for problem in problems)
        listing = problems[0] if len(problems) == 1 else "".join(f"\n  - {p}" for p in problems)
        raise ConfigError(
            f"The settings file {path} cannot be read: {listing}",
            (
                "Close each quote on its line, with nothing after it but a # comment (or "
                "leave the quotes out: a value needs them only around spaces or #)"
                if quotes
                else "Write each setting as NAME=value on a line of its own"
            )
            + ", then run check-config.",
        )
    return values


def _statement_problem(statement: str, line: int, unreadable: bool) -> str | None:
    """What is wrong with one statement python-dotenv parsed (its text from the end of the one
    before, which began on ``line``), or None when it is a setting on one line, a comment or
    blank. The problem names the line and the variable, never the value."""
    body = statement.strip()
    # The statement's own line: the blank lines before it are part of its text.
    lead = statement[: len(statement) - len(statement.lstrip())]
    line += lead.count("\n") + lead.count("\r") - lead.count("\r\n")
    if not unreadable and "\n" not in body and "\r" not in body:
        return None
    if body.startswith("export") and body[6:7].isspace():
        body = body[6:].lstrip()
    name, equals, value = body.partition("=")
    name, value = name.rstrip(), value.lstrip()
    if not equals or not name.isidentifier():
        return f"line {line} is not NAME=value."
    quote = value[:1]
    if quote not in ("'", '"'):
        return f"line {line}: the value of {name} cannot be read."
    if not _closes_on_its_line(value):
        return (
            f"line {line}: the value of {name} opens a quote ({quote}) that its line does not "
            "close."
        )
    return f"line {line}: the value of {name} has more after its closing quote ({quote})."


def _closes_on_its_line(quoted: str) -> bool:
    """True when the quote ``quoted`` opens is closed before its first line ends (a backslash
    escapes the character after it, as python-dotenv reads quotes)."""
    first_line = quoted.replace("\r", "\n").split("\n", 1)[0]
    index = 1
    while index < len(first_line):
        if first_line[index] == "\\":
            index += 2
        elif first_line[index] == quoted[0]:
            return True
        else:
            index += 1
    return False


def refuse_foreign_writers(path: Path, info: os.stat_result) -> None:
    """ConfigError when anyone but this user and root can change the settings file ``path``
    (``info`` is its fstat): group or others may write it, or another user owns it (an owner
    can always make a file writable again).

    A settings file sets XTS_POST_REFRESH_HOOK, a command this job runs as this user (as
    root, under root's crontab): whoever can write the file can run commands as this user.
    Group write is refused too, not only when the group has other members: a group's members
    cannot be listed reliably (primary groups, NSS, LDAP), and a write ACL shows in the
    group bits of the mode.
    """
    mode = stat.S_IMODE(info.st_mode)
    user = os.geteuid()
    why = "XTS_POST_REFRESH_HOOK, a command this job runs as its own user"
    if mode & FOREIGN_WRITE_BITS:
        who = "other users" if mode & stat.S_IWOTH else "its group"
        raise ConfigError(
            f"The settings file {path} can be written by {who} (mode {mode:04o}): whoever can "
            f"write it can set {why}, so it is not read.",
            f"Run `chmod 600 {path}` (and check who may have changed it), then run again.",
        )
    if info.st_uid not in (user, 0):
        running = user_name(user)
        owners = running if user == 0 else f"{running} (who runs the job) or root"
        raise ConfigError(
            f"The settings file {path} belongs to the user {user_name(info.st_uid)}, who can "
            f"change it and so set {why}: only {owners} may own it, so it is not read.",
            f"Give it to {running} (as root: `chown {running} {path}`), check what it "
            "holds, then run again.",
        )


def user_name(uid: int) -> str:
    """The name of the user ``uid``, or the number when no user has it."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def env_file_is_exposed(path: Path) -> bool:
    """True when ``path`` exists and its group or others may read it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(stat.S_IMODE(mode) & 0o077)
