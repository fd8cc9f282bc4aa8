"""The run record: how each account's last refresh ended, kept beside its token files.

Every refresh writes it when an account's refresh ends, with metrics or without: when it
ended, its exit code, how long it took, and why it failed, on one line (redacted as every
output is; empty on success). ``status`` reads it, so a refresh that failed while an older
token is still valid is not mistaken for a good one; the metrics show it as gauges. It is
``<interactive token file>.run`` (beside the lock), replaced atomically, with the token files'
mode and group, and holds no secret. A record that is missing or cannot be read means "no run
recorded", never an error; ``status`` never writes it.
"""

from __future__ import annotations

import json
import math

from .console import without_controls
from .store import GROUP_TOKEN_FILE_MODE, TOKEN_FILE_MODE, write_atomically
from .values import Frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; mypy honours the name
if TYPE_CHECKING:
    from pathlib import Path

    from .settings import Settings

# A reason is cut here: an XTS description can be pages long, and the record is a summary.
MAX_REASON_CHARACTERS = 1000
# The latest end a record may name (the end of year 9998, see store.is_plausible_time): any
# later time cannot be shown in every zone.
MAX_ENDED_AT = 253_370_764_800.0


class RunRecord(Frozen):
    """An account's last refresh: when it ended (Unix time), its exit code, how long it took
    (seconds), and why it failed on one line ("" when it did not)."""

    __slots__ = ("duration", "ended_at", "exit_code", "reason")
    ended_at: float
    exit_code: int
    duration: float
    reason: str

    def __init__(self, ended_at: float, exit_code: int, duration: float, reason: str = "") -> None:
        self._set(ended_at=ended_at, exit_code=exit_code, duration=duration, reason=reason)

    @property
    def failed(self) -> bool:
        """True when the refresh ended with an exit code other than 0."""
        return self.exit_code != 0

    @property
    def started_at(self) -> float:
        """When the refresh started (Unix time): tokens obtained before it are older ones."""
        return self.ended_at - self.duration


def one_line(text: str) -> str:
    """``text`` on one line (every run of white space, line feeds included, one space), cut
    to MAX_REASON_CHARACTERS."""
    flat = " ".join(text.split())
    if len(flat) > MAX_REASON_CHARACTERS:
        flat = flat[: MAX_REASON_CHARACTERS - 1].rstrip() + "…"
    return flat


def run_record_path(settings: Settings) -> Path:
    """Where the account's last refresh is recorded: beside its run lock, named after its
    interactive token file (``xts_store_token.json.run``)."""
    return settings.lock_file.with_suffix(".run")


def save_run(settings: Settings, record: RunRecord) -> None:
    """Record the account's last refresh, atomically, with the token files' mode and group
    (0600, or 0640 for XTS_TOKEN_GROUP's group); TokenSaveError when it cannot be (the
    previous record is then kept)."""
    data = {
        "ended_at": record.ended_at,
        "exit_code": record.exit_code,
        "duration": record.duration,
        "reason": one_line(without_controls(record.reason)),
    }
    content = (json.dumps(data, ensure_ascii=False) + "\n").encode("utf-8")
    group = settings.token_group  # the token files' mode and group (XTS_TOKEN_GROUP)
    write_atomically(
        run_record_path(settings),
        content,
        "the previous record is kept",
        TOKEN_FILE_MODE if group is None else GROUP_TOKEN_FILE_MODE,
        "the run record",
        group=None if group is None else group.gid,
    )


def load_run(settings: Settings) -> RunRecord | None:
    """The account's last refresh as recorded, or None when none is: no record, or one that
    cannot be read or makes no sense (a FIFO, a device or a huge file, see read_small_file;
    JSON nested past the parser's depth; a time no zone can show; control characters in
    the reason are written out, as in every output)."""
    from .paths import read_small_file

    try:
        data = json.loads(read_small_file(run_record_path(settings))[0])
        ended_at, duration = float(data["ended_at"]), float(data["duration"])
        exit_code, reason = data["exit_code"], data.get("reason", "")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    if not (type(exit_code) is int and 0 <= exit_code <= 255 and isinstance(reason, str)):
        return None
    if not (math.isfinite(duration) and 0 <= duration <= ended_at <= MAX_ENDED_AT):
        return None
    return RunRecord(ended_at, exit_code, duration, one_line(without_controls(reason)))
