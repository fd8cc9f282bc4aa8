"""Prometheus metrics for node_exporter's textfile collector.

With ``XTS_METRICS_FILE`` set, every ``refresh`` and ``status`` rewrites that file atomically
(mode 0644: node_exporter runs as another user; nothing secret is in it). The token gauges come
from the token files themselves; the last run's time, exit code and duration from each
account's run record (run_record.py), so a ``status`` after a failed refresh still shows the
failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import TokenSaveError, TokenUnavailableError
from .outputs import (
    METRICS_ROLE,
    WrittenPath,
    collisions,
    kind_problem,
    would_be_account_files,
    written_paths,
)
from .run_record import load_run
from .settings import Settings, foreign_token
from .store import app_key_expiry, read_token_file, write_atomically

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; mypy honours the name
if TYPE_CHECKING:
    from .console import Log

METRICS_FILE_MODE = 0o644
# Every gauge: its name, its help text, and whether it has a session label.
GAUGES = (
    ("xts_token_expiry_timestamp_seconds", "When the stored token expires (its exp claim).", True),
    ("xts_token_refreshed_timestamp_seconds", "When the stored token was obtained.", True),
    (
        "xts_token_usable",
        "1 when the stored token is present, unexpired and these settings'.",
        True,
    ),
    ("xts_refresh_last_run_timestamp_seconds", "When the last refresh ended.", False),
    ("xts_refresh_last_exit_code", "The exit code of the last refresh (0: all fresh).", False),
    ("xts_refresh_last_duration_seconds", "How long the last refresh took.", False),
    (
        "xts_app_key_expiry_timestamp_seconds",
        "When the market-data app key expires (application_expiry_date).",
        False,
    ),
)


def _labels(account: str, session: str | None = None) -> str:
    pairs = [("account", account)] + ([("session", session)] if session else [])
    escaped = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in pairs)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(pairs, escaped)) + "}"


def _app_key_timestamp(value: object) -> float | None:
    """The app key's expiry (store.app_key_expiry) as a Unix time, or None; also None for a
    date this machine's time zone cannot place (1 January of year 1, west of Greenwich)."""
    expiry = app_key_expiry(value)
    try:
        return None if expiry is None else expiry.timestamp()
    except ValueError:
        return None


def account_samples(settings: Settings) -> dict[str, list[tuple[str, float]]]:
    """Every gauge's samples (label text, value) for one account, read from its files."""
    samples: dict[str, list[tuple[str, float]]] = {name: [] for name, _, _ in GAUGES}
    for session in settings.sessions:
        labels = _labels(settings.account, session.name)
        try:
            stored = read_token_file(settings.token_path(session), session.name)
        except TokenUnavailableError:
            samples["xts_token_usable"].append((labels, 0.0))
            continue
        usable = not stored.is_expired() and foreign_token(settings, stored) is None
        samples["xts_token_usable"].append((labels, 1.0 if usable else 0.0))
        samples["xts_token_refreshed_timestamp_seconds"].append(
            (labels, stored.logged_in_at.timestamp())
        )
        if stored.expires_at is not None:
            samples["xts_token_expiry_timestamp_seconds"].append(
                (labels, stored.expires_at.timestamp())
            )
        app_key = _app_key_timestamp(stored.extra.get("application_expiry_date"))
        if app_key is not None:
            samples["xts_app_key_expiry_timestamp_seconds"].append(
                (_labels(settings.account), app_key)
            )
    run = load_run(settings)
    if run is not None:
        account = _labels(settings.account)
        samples["xts_refresh_last_run_timestamp_seconds"].append((account, run.ended_at))
        samples["xts_refresh_last_exit_code"].append((account, float(run.exit_code)))
        samples["xts_refresh_last_duration_seconds"].append((account, run.duration))
    return samples


def render(accounts: Iterable[Settings]) -> str:
    """The Prometheus text format of every account's gauges, each with # HELP and # TYPE."""
    merged: dict[str, list[tuple[str, float]]] = {name: [] for name, _, _ in GAUGES}
    for settings in accounts:
        for name, found in account_samples(settings).items():
            merged[name] += found
    lines = []
    for name, help_text, _ in GAUGES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f"{name}{labels} {value:.17g}" for labels, value in merged[name]]
    return "\n".join(lines) + "\n"


def write_metrics(
    accounts: Sequence[Settings],
    log: Log,
    settings_files: Iterable[Path] = (),
    accounts_dir: Path | None = None,
    broken_token_files: Iterable[WrittenPath] = (),
) -> None:
    """Rewrite each metrics file the accounts name, with the gauges of the accounts naming
    it; a file that cannot be written, is a symlink or no regular file, or is one of the
    accounts' settings, token, lock or log files, of ``settings_files`` (the install's,
    broken accounts' included) or of ``broken_token_files`` (broken accounts', whose bots
    still read them), or would be an account file in ``accounts_dir``, costs a warning, never
    the run's outcome (``status`` writes it without a refresh's check of written paths)."""
    by_file: dict[Path, list[Settings]] = {}
    for settings in accounts:
        if settings.metrics_file is not None:
            by_file.setdefault(settings.metrics_file, []).append(settings)
    theirs = [w for s in accounts for w in written_paths(s) if w.role != METRICS_ROLE]
    theirs += broken_token_files
    guarded = {f for s in accounts for f in (s.env_file, s.shared_env_file) if f}
    guarded.update(settings_files)
    for path, named in by_file.items():
        metrics = WrittenPath(path, METRICS_ROLE, renamed_over=False)
        refused = kind_problem(metrics) or next(
            (p for p in collisions([*theirs, metrics], guarded) if path in p.paths), None
        )
        if refused is None and accounts_dir is not None:
            refused = next(iter(would_be_account_files([metrics], accounts_dir)), None)
        if refused is not None:  # never written through a symlink, nor over another file
            log.warning("⚠ The metrics file %s was not written: %s", path, refused.text)
            continue
        try:
            content = render(named).encode("utf-8")
            write_atomically(
                path, content, "the previous file is kept", METRICS_FILE_MODE, "the metrics file"
            )
        except TokenSaveError as exc:
            log.warning("⚠ The metrics file %s was not written: %s", path, exc.message)
