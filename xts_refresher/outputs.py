"""The paths a run writes, and the check that they are safe to write before any login.

A run writes each selected account's token files, their locks, its run record, the log file
and the metrics file. Before anything is sent, each of them must be no
settings file, no other of them (also through a symlink or a hard link), no token file of an
account whose settings are broken (its bot still reads it), and, where something already exists,
a regular file. A token file or the run record is replaced by a rename, so a
symlink there is replaced, never followed; the log, the metrics file and a lock are written in
place, so a symlink there is refused. The check is a few lstat calls per path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import ConfigError
from .parsers import resolve_path
from .paths import ACCOUNT_FILE_SUFFIX, APP_DIR, account_folder
from .run_record import run_record_path
from .sessions import INTERACTIVE, SESSIONS, Session
from .settings import lock_beside
from .values import Frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; mypy honours the name
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from .accounts import Install, Selection
    from .settings import Settings

# What a file that is not a regular one is called in a message.
KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


LOG_ROLE = "the log file (XTS_LOG_FILE or --log-file)"
METRICS_ROLE = "the metrics file (XTS_METRICS_FILE)"


class WrittenPath(Frozen):
    """One path a run writes: what it is (``role``, naming its setting), and how it is written:
    ``renamed_over`` (a symlink there is replaced, never followed), else opened and written in
    place. ``derived``: no setting names it, its path follows a token file's (a lock, the run
    record). A Frozen class, not a NamedTuple: creating one of those costs every run ~0.25 ms.
    """

    __slots__ = ("derived", "path", "renamed_over", "role")
    path: Path
    role: str
    renamed_over: bool
    derived: bool

    def __init__(self, path: Path, role: str, renamed_over: bool, derived: bool = False) -> None:
        self._set(path=path, role=role, renamed_over=renamed_over, derived=derived)


class PathProblem(Frozen):
    """Why a written path is refused: the paths involved, the sentence that says so, and the
    roles of the written paths involved."""

    __slots__ = ("paths", "roles", "text")
    paths: tuple[Path, ...]
    text: str
    roles: tuple[str, ...]

    def __init__(self, paths: tuple[Path, ...], text: str, roles: tuple[str, ...] = ()) -> None:
        self._set(paths=paths, text=text, roles=roles)


class WrittenPathError(ConfigError):
    """A path the run would write is unsafe (exit 2, before any login); ``paths`` holds every
    path the problems name."""

    def __init__(self, problems: Sequence[PathProblem]) -> None:
        lines = [problem.text for problem in problems]
        listing = [f"  - {line}" for line in lines]
        message = lines[0] if len(lines) == 1 else "\n".join(["Unsafe paths to write:", *listing])
        super().__init__(
            message,
            "Point each at a regular file of its own, away from the settings files (the flags "
            "and settings named above), then run check-config. Nothing was sent to XTS.",
        )
        self.paths = frozenset(path for problem in problems for path in problem.paths)


def capital(text: str) -> str:
    """``text`` with its first letter in upper case (the rest as it is)."""
    return text[:1].upper() + text[1:]


def written_paths(settings: Settings) -> list[WrittenPath]:
    """Every path a refresh of ``settings`` writes: its configured sessions' token files and
    their locks (the interactive file's lock always: it is the run lock), the run record, the
    metrics file and the log file. The log and the metrics file are named without
    the account: accounts of one run share them."""
    owner = f"account {settings.account}'s" if settings.shared_env_file is not None else "the"
    found: list[WrittenPath] = []
    labels = {}  # each lock's token file, by its session (the run lock: interactive's)
    for session in settings.sessions:
        token_file = settings.token_path(session)
        found.append(WrittenPath(token_file, token_file_role(owner, session), True))
        labels[lock_beside(token_file)] = session.label
    found += [
        WrittenPath(
            lock,
            f"{owner} lock of the {labels.get(lock, INTERACTIVE.label)} token file",
            False,
            derived=True,
        )
        for lock in settings.lock_files
    ]
    found.append(WrittenPath(run_record_path(settings), f"{owner} run record", True, derived=True))
    if settings.metrics_file is not None:
        found.append(WrittenPath(settings.metrics_file, METRICS_ROLE, False))
    found.append(WrittenPath(settings.log_file, LOG_ROLE, False))
    return found


def token_file_role(owner: str, session: Session) -> str:
    """How a token file is named in a refusal: ``the interactive token file (XTS_TOKEN_FILE or
    --token-file)``, ``account NAME's ...`` (``owner``) with account files."""
    flag = " or --token-file" if session is INTERACTIVE else ""
    return f"{owner} {session.label} token file ({session.path_variable}{flag})"


def unchecked_token_files(
    install: Install, names: Iterable[str], token_file: str | None = None
) -> list[WrittenPath]:
    """The token files of the accounts ``names`` when their settings are not valid, as far as
    those can still be read: each account file's (the setting, else the default in the
    account's folder), or, without account files, those of ``.env`` (``token_file``:
    --token-file). No run of theirs writes them, but their bots still read them, so no path a
    run writes may be one of them."""
    found = []
    for name in names:
        values: Mapping[str, str] = install.values
        owner, folder = "the", APP_DIR  # the single account's defaults are beside the program
        if install.has_account_files:
            values = install.readable_values(name)
            owner, folder = f"account {name}'s", account_folder(str(install.accounts_dir), name)
        for session in SESSIONS.values():
            path = values.get(session.path_variable) or os.path.join(folder, session.default_file)
            if not install.has_account_files and session is INTERACTIVE and token_file:
                path = token_file
            if "\x00" not in path:  # a NUL names no file (and is a settings problem of its own)
                found.append(WrittenPath(resolve_path(path), token_file_role(owner, session), True))
    return found


def broken_token_files(selection: Selection) -> list[WrittenPath]:
    """The token files of ``selection``'s broken accounts (unchecked_token_files): they are not
    refreshed, but their bots still read them."""
    return unchecked_token_files(selection.install, [name for name, _ in selection.broken])


def file_keys(path: Path, follow: bool) -> set[object]:
    """What ``path`` is, to compare with another path: (st_dev, st_ino) of what is there (also
    of a symlink's target with ``follow``), or, when nothing is, the path with its folder's
    symlinks resolved. Two paths that share a key are one file."""
    keys: set[object] = set()
    try:
        found = os.lstat(path)
    except OSError:
        return {os.path.join(os.path.realpath(path.parent), path.name)}
    keys.add((found.st_dev, found.st_ino))
    if follow and stat.S_ISLNK(found.st_mode):
        try:
            target = os.stat(path)
        except OSError:
            return keys
        keys.add((target.st_dev, target.st_ino))
    return keys


def kind_problem(written: WrittenPath) -> PathProblem | None:
    """Why what is at ``written.path`` must not be written (not a regular file; a symlink
    where the file is written in place), or None (nothing there, or a regular file)."""
    try:
        mode = os.lstat(written.path).st_mode
    except OSError:
        return None  # nothing there (a folder that cannot be written is found later)
    if stat.S_ISREG(mode) or (written.renamed_over and stat.S_ISLNK(mode)):
        return None
    if stat.S_ISLNK(mode):
        fix = "the run creates the file" if written.derived else "or point the setting elsewhere"
        return PathProblem(
            (written.path,),
            f"{capital(written.role)} {written.path} is a symbolic link: it is never written "
            f"through one. Remove the symlink (rm {written.path}); {fix}.",
        )
    kind = next((name for test, name in KINDS if test(mode)), "not a regular file")
    fix = "" if written.derived else ", or point the setting at a regular file"
    return PathProblem(
        (written.path,),
        f"{capital(written.role)} {written.path} is {kind}, not a regular file. Move it away{fix}.",
    )


def collisions(
    written: Iterable[WrittenPath], settings_files: Iterable[Path] = ()
) -> list[PathProblem]:
    """Every written path that is a settings file, or the same file as a written path of
    another role (a role shared by all accounts, like the log file, is one path)."""
    problems: list[PathProblem] = []
    guarded: dict[object, Path] = {}
    for path in settings_files:
        for key in file_keys(path, follow=True):
            guarded.setdefault(key, path)
    owners: dict[object, WrittenPath] = {}
    for entry in dict.fromkeys(written):
        keys = file_keys(entry.path, follow=not entry.renamed_over)  # what writing it touches
        setting = next((guarded[key] for key in keys if key in guarded), None)
        if setting is not None:
            problems.append(
                PathProblem(
                    (entry.path, setting),
                    f"{capital(entry.role)} {entry.path} is the settings file {setting}: "
                    "writing it would destroy the settings.",
                )
            )
            continue
        other = next((owners[key] for key in keys if key in owners), None)
        if other is not None and other.role != entry.role:
            if other.path == entry.path:
                text = f"{capital(entry.role)} and {other.role} are both {entry.path}"
            else:
                text = (
                    f"{capital(entry.role)} {entry.path} is the same file as {other.role} "
                    f"{other.path} (through a symlink or a hard link)"
                )
            problems.append(
                PathProblem(
                    (entry.path, other.path),
                    f"{text}: each needs a file of its own.",
                    (entry.role, other.role),
                )
            )
            continue
        for key in keys:
            owners.setdefault(key, entry)
    return problems


def settings_files(install: Install) -> list[Path]:
    """Every settings file of the install: its ``.env`` (``--env-file``), the ``.env`` beside
    the program, and every account file."""
    files = [install.env_file, Path(APP_DIR, ".env")]
    if install.has_account_files:
        files += [install.file_of(name) for name in install.names]
    return files


def would_be_account_files(written: Iterable[WrittenPath], accounts_dir: Path) -> list[PathProblem]:
    """Every written path not there yet that, once written, is an account file (``NAME.env``
    in the accounts folder): the next run would read it as that account's settings."""
    folder = os.path.realpath(accounts_dir)
    return [
        PathProblem(
            (entry.path,),
            f"{capital(entry.role)} {entry.path} would be an account file (a NAME"
            f"{ACCOUNT_FILE_SUFFIX} in the accounts folder {accounts_dir}): the next run would "
            "read it as an account's settings. Give it another name or folder.",
        )
        for entry in dict.fromkeys(written)
        if entry.path.name.endswith(ACCOUNT_FILE_SUFFIX)
        and not entry.path.name.startswith(".")
        and not os.path.lexists(entry.path)
        and os.path.realpath(entry.path.parent) == folder
    ]


def path_problems(selection: Selection, log_file: Path) -> list[PathProblem]:
    """Everything unsafe about the paths a refresh of ``selection`` writes (see the module):
    [] when they may all be written."""
    mine = [w for s in selection.accounts for w in written_paths(s)]
    mine.append(WrittenPath(log_file, LOG_ROLE, False))
    # Accounts not selected keep their files: none of ours may be one of them. Their metrics
    # files are rewritten by this run too.
    others = [w for s in selection.unselected for w in written_paths(s)]
    others += broken_token_files(selection)
    checked = dict.fromkeys([*mine, *(w for w in others if w.role == METRICS_ROLE)])
    # The run record is replaced by a rename, and one that cannot be is a warning: it only has
    # to be no other written path.
    checked = {w: None for w in checked if not (w.derived and w.renamed_over)}
    problems = [p for p in map(kind_problem, checked) if p is not None]
    problems += collisions([*mine, *others], settings_files(selection.install))
    problems += would_be_account_files(mine, selection.install.accounts_dir)
    return problems


def check_written_paths(selection: Selection, log_file: Path) -> None:
    """Raise WrittenPathError (exit 2) when a path a refresh of ``selection`` would write is
    unsafe (path_problems); return quietly otherwise."""
    problems = path_problems(selection, log_file)
    if problems:
        raise WrittenPathError(problems)
