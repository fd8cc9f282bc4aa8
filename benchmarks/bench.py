"""Benchmark of the XTS token refresher against its floors (README, "Performance").

Run it from the repository (about a minute on an idle 2-core machine)::

    .venv/bin/python benchmarks/bench.py [--runs N] [--warmup N] [--json]

It starts the bundled XTS simulator on 127.0.0.1 in this process (no faults), writes a
temporary .env and folder (the token files, the log and the lock go there: nothing is written
into the repository), and times every program as a separate process started the way cron starts
it: a bare environment (``PATH=/usr/bin:/bin``), from ``/``, stdin from /dev/null, output to a
file. After the warm-up rounds, every round runs each process once, in a rotating order, so that
drift on a busy machine hits every measurement alike; each process is reaped with ``os.wait4``,
which gives its own peak RSS. Reported: median, min, p90 and max wall time; ``ratio``, the
median over the baseline's median (what the targets are judged on); ``paired``, the median of
the per-round ratios (less sensitive to load that comes and goes); the target and its verdict.

1. ``xts_token_refresh.py --env-file X`` (a full refresh) against a floor script that imports
   requests, POSTs the same interactive login and writes the JSON token file (target <= 1.15x).
2. ``refresh_xts_token.sh --env-file X`` against the same direct call of the script (<= 1.2x).
3. ``load_token(path)`` in a fresh process against ``json.load(open(path))`` in a fresh process
   (<= 1.5x); and, as a secondary number, the in-process cost of each per call.
4. The peak RSS of a refresh process (< 40 MiB), with the floor's for comparison.

Context rows (no target): ``python -c pass`` and ``python -c "import requests"``. The machine,
its load average before and after, and the CPU pressure are printed with the table, since a busy
machine inflates every number. This is a benchmark, not a test: nothing here runs in CI. Exit
code: 0 when every target is met, 1 when one is not, 2 when a measured program failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

APP_DIR = Path(__file__).resolve().parent.parent
SCRIPT = APP_DIR / "xts_token_refresh.py"
WRAPPER = APP_DIR / "refresh_xts_token.sh"
VENV_PYTHON = APP_DIR / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable))
CRON_ENV = {"PATH": "/usr/bin:/bin"}
COMMAND = ".venv/bin/python benchmarks/bench.py"

# Fake credentials, known only to the simulator this benchmark starts.
USER_ID = "BENCH1"
APP_KEY = "ik-BENCH-interactive-key"
APP_SECRET = "is-BENCH-interactive-secret"

DEFAULT_RUNS = 50
DEFAULT_WARMUP = 3
IN_PROCESS_CALLS = 2000
IN_PROCESS_REPEATS = 9
MIB = 1024 * 1024

TARGET_REFRESH = 1.15
TARGET_WRAPPER = 1.2
TARGET_LOAD_TOKEN = 1.5
TARGET_RSS_MIB = 40.0

FLOOR_SCRIPT = '''\
"""The floor of a refresh: import requests, log in once, write the JSON token file."""
import json
import sys

import requests

url, path = sys.argv[1], sys.argv[2]
payload = {{"appKey": {key!r}, "secretKey": {secret!r}, "source": "WEBAPI"}}
body = requests.post(url + "/interactive/user/session", json=payload, timeout=30).json()
if body.get("type") != "success":
    sys.exit(1)
with open(path, "w", encoding="utf-8") as file:
    json.dump(body["result"], file, indent=2)
'''

# Both processes of measurement 3 put the repository on sys.path the same way.
LOAD_TOKEN_CODE = (
    "import sys; sys.path.insert(0, {app!r}); "
    "from xts_token_refresh import load_token; load_token({path!r})"
)
JSON_LOAD_CODE = (
    "import sys; sys.path.insert(0, {app!r}); import json; json.load(open({path!r}, 'rb'))"
)

# What the refresher would write into the repository if its settings were not followed.
REPO_OUTPUTS = (
    "xts_store_token.json",
    "xts_marketdata_token.json",
    "xts_store_token.json.lock",
    "xts_token_refresh.log",
    ".env",
)


@dataclass
class Series:
    """One process measurement: its command, and wall seconds and peak RSS (bytes) per round."""

    name: str
    argv: list[str]
    check: Callable[[], bool] | None = None
    seconds: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Stats:
    """Summary of a list of numbers."""

    median: float
    minimum: float
    p90: float
    maximum: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        """The summary of ``values`` (p90 by the nearest-rank method)."""
        ordered = sorted(values)
        rank = max(0, min(len(ordered) - 1, -(-9 * len(ordered) // 10) - 1))
        return cls(statistics.median(ordered), ordered[0], ordered[rank], ordered[-1])

    def scaled(self, factor: float) -> dict[str, float]:
        """The summary in another unit, rounded for reports."""
        return {
            "median": round(self.median * factor, 3),
            "min": round(self.minimum * factor, 3),
            "p90": round(self.p90 * factor, 3),
            "max": round(self.maximum * factor, 3),
        }


class BenchmarkError(Exception):
    """A measured program did not do its job: its numbers would mean nothing."""


def run_process(argv: Sequence[str], output: Path) -> tuple[float, int, int]:
    """Wall seconds, peak RSS in bytes and exit code of ``argv`` run as cron would."""
    with output.open("wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv), env=CRON_ENV, cwd="/", stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return elapsed, usage.ru_maxrss * 1024, process.returncode  # ru_maxrss is KiB on Linux


def measure_round(series: Sequence[Series], output: Path, keep: bool) -> None:
    """Run every measurement once, in order; raise BenchmarkError when one fails."""
    for item in series:
        elapsed, rss, code = run_process(item.argv, output)
        if code != 0 or (item.check is not None and not item.check()):
            text = output.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise BenchmarkError(f"{item.name} failed (exit code {code}):\n{text}")
        if keep:
            item.seconds.append(elapsed)
            item.rss.append(rss)


def in_process_seconds(actions: Sequence[Callable[[], object]]) -> list[Stats]:
    """Seconds per call of each action, the actions alternating (IN_PROCESS_REPEATS blocks)."""
    samples: list[list[float]] = [[] for _ in actions]
    for _ in range(IN_PROCESS_REPEATS):
        for action, times in zip(actions, samples):
            started = time.perf_counter()
            for _ in range(IN_PROCESS_CALLS):
                action()
            times.append((time.perf_counter() - started) / IN_PROCESS_CALLS)
    return [Stats.of(times) for times in samples]


def paired_ratio(values: Sequence[float], baseline: Sequence[float]) -> float:
    """The median of the per-round ratios of ``values`` to ``baseline``."""
    return statistics.median(a / b for a, b in zip(values, baseline))


def written(path: Path) -> Callable[[], bool]:
    """A check that ``path`` was written again since the previous call of the check."""
    last = [-1]

    def check() -> bool:
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return False
        fresh, last[0] = stamp != last[0], stamp
        return fresh

    return check


def cpu_pressure() -> str | None:
    """The kernel's CPU pressure (share of time some task waited for a CPU), or None."""
    try:
        text = Path("/proc/pressure/cpu").read_text(encoding="utf-8")
    except OSError:
        return None
    fields = dict(part.split("=") for part in text.splitlines()[0].split()[1:])
    return f"{fields.get('avg10', '?')}% (10 s), {fields.get('avg60', '?')}% (60 s)"


def machine() -> dict[str, Any]:
    """The machine the numbers were taken on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    try:
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                system = f"{line.split('=', 1)[1].strip(chr(34))} ({system})"
                break
    except OSError:
        pass
    version = subprocess.run(
        [PYTHON, "-c", "import platform; print(platform.python_version())"],
        env=CRON_ENV,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "python": version,
        "python_path": PYTHON,
        "os": system,
        "architecture": platform.machine(),
    }


def revision() -> str | None:
    """The repository's commit and how many files differ from it (git, without writing)."""
    git = ["git", "--no-optional-locks", "-C", str(APP_DIR)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changes = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head} + {len(changes)} uncommitted file(s)" if changes else head


def repo_outputs_snapshot() -> dict[str, tuple[int, int] | None]:
    """Size and mtime of each file a misdirected run would write into the repository."""
    snapshot: dict[str, tuple[int, int] | None] = {}
    for name in REPO_OUTPUTS:
        try:
            info = (APP_DIR / name).stat()
        except OSError:
            snapshot[name] = None
        else:
            snapshot[name] = (info.st_size, info.st_mtime_ns)
    return snapshot


def row(
    name: str,
    stats: Stats,
    unit: str,
    *,
    baseline: str | None = None,
    baseline_stats: Stats | None = None,
    paired: float | None = None,
    target: float | None = None,
    target_text: str | None = None,
    met: bool | None = None,
) -> dict[str, Any]:
    """One line of the report; ``met`` is judged on the ratio of medians unless given."""
    factor = {"ms": 1000.0, "us": 1e6, "MiB": 1.0 / MIB}[unit]
    ratio = None
    if baseline_stats is not None:
        ratio = round(stats.median / baseline_stats.median, 3)
        if target is not None and met is None:
            met = ratio <= target
    return {
        "measurement": name,
        "unit": unit,
        **stats.scaled(factor),
        "baseline": baseline,
        "ratio": ratio,
        "paired_ratio": None if paired is None else round(paired, 3),
        "target": target_text,
        "met": met,
    }


def compared(
    item: Series, base: Series, target: float | None = None, *, unit: str = "ms"
) -> dict[str, Any]:
    """The row of process ``item`` against process ``base``."""
    return row(
        item.name,
        Stats.of(item.seconds),
        unit,
        baseline=base.name,
        baseline_stats=Stats.of(base.seconds),
        paired=paired_ratio(item.seconds, base.seconds),
        target=target,
        target_text=None if target is None else f"<= {target:g}x",
    )


def run_benchmark(runs: int, warmup: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """Start the simulator, run every measurement, and return the report document."""
    sys.path.insert(0, str(APP_DIR))
    from xts_refresher.simulator import XtsSimulator
    from xts_token_refresh import load_token

    load_before = os.getloadavg()
    before = repo_outputs_snapshot()
    sim = XtsSimulator(host="127.0.0.1")
    with sim, tempfile.TemporaryDirectory(prefix="xts-bench-") as tmp:
        sim.add_account(APP_KEY, APP_SECRET, USER_ID, "interactive")
        folder = Path(tmp)
        token_file = folder / "xts_store_token.json"
        floor_token_file = folder / "floor_token.json"
        load_file = folder / "load_token.json"
        output = folder / "output.txt"
        env_file = folder / "bench.env"
        settings = {
            "XTS_API_ROOT": sim.url,
            "XTS_INTERACTIVE_API_KEY": APP_KEY,
            "XTS_INTERACTIVE_API_SECRET": APP_SECRET,
            "XTS_USER_ID": USER_ID,
            "XTS_TOKEN_FILE": str(token_file),
            "XTS_MARKETDATA_TOKEN_FILE": str(folder / "xts_marketdata_token.json"),
            "XTS_LOG_FILE": str(folder / "xts_token_refresh.log"),
        }
        env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()), encoding="utf-8")
        env_file.chmod(0o600)
        floor_script = folder / "floor_refresh.py"
        floor_script.write_text(FLOOR_SCRIPT.format(key=APP_KEY, secret=APP_SECRET), "utf-8")

        # One refresh first, so load_token has a real token file (a copy: it never changes).
        _, _, code = run_process([PYTHON, str(SCRIPT), "--env-file", str(env_file)], output)
        if code != 0 or not token_file.exists():
            text = output.read_text(encoding="utf-8", errors="replace")
            raise BenchmarkError(f"the first refresh failed (exit code {code}):\n{text}")
        load_file.write_bytes(token_file.read_bytes())
        load_token(load_file)

        app, path = str(APP_DIR), str(load_file)
        env_args = ["--env-file", str(env_file)]
        floor_argv = [PYTHON, str(floor_script), sim.url, str(floor_token_file)]
        floor = Series("floor: requests login + write", floor_argv, written(floor_token_file))
        refresh_argv = [PYTHON, str(SCRIPT), *env_args]
        refresh = Series("refresh: xts_token_refresh.py", refresh_argv, written(token_file))
        wrapper_argv = [str(WRAPPER), *env_args]
        wrapper = Series("wrapper: refresh_xts_token.sh", wrapper_argv, written(token_file))
        plain_code = JSON_LOAD_CODE.format(app=app, path=path)
        plain = Series("json.load() process", [PYTHON, "-c", plain_code])
        load_code = LOAD_TOKEN_CODE.format(app=app, path=path)
        load = Series("load_token() process", [PYTHON, "-c", load_code])
        bare = Series("context: python -c pass", [PYTHON, "-c", "pass"])
        imports = Series("context: python -c 'import requests'", [PYTHON, "-c", "import requests"])
        series = [floor, refresh, wrapper, plain, load, bare, imports]

        started = time.perf_counter()
        for number in range(warmup):
            progress(f"warm-up round {number + 1}/{warmup}")
            measure_round(series, output, keep=False)
        for number in range(runs):
            if number % 10 == 0:
                progress(f"round {number + 1}/{runs}")
            shift = number % len(series)  # no measurement always follows the same one
            measure_round(series[shift:] + series[:shift], output, keep=True)
        progress("in-process load_token() and json.load()")

        def plain_load() -> object:
            with load_file.open("rb") as file:
                return json.load(file)

        in_load, in_json = in_process_seconds([lambda: load_token(load_file), plain_load])
        wall = time.perf_counter() - started

    after = repo_outputs_snapshot()
    written_here = [n for n, state in after.items() if state is not None and state != before[n]]
    if written_here:  # (a file someone else deleted meanwhile is no concern of ours)
        raise BenchmarkError(
            f"files in the repository were written during the run: {written_here} "
            "(by this benchmark, or by another process working in the repository meanwhile)"
        )

    rss, floor_rss = Stats.of(refresh.rss), Stats.of(floor.rss)
    rows = [
        row(floor.name, Stats.of(floor.seconds), "ms"),
        compared(refresh, floor, TARGET_REFRESH),
        compared(wrapper, refresh, TARGET_WRAPPER),
        row(plain.name, Stats.of(plain.seconds), "ms"),
        compared(load, plain, TARGET_LOAD_TOKEN),
        row("json.load() in-process, per call", in_json, "us"),
        row(
            "load_token() in-process, per call",
            in_load,
            "us",
            baseline="json.load() in-process, per call",
            baseline_stats=in_json,
        ),
        row("peak RSS: floor process", floor_rss, "MiB"),
        row(
            "peak RSS: refresh process",
            rss,
            "MiB",
            baseline="peak RSS: floor process",
            baseline_stats=floor_rss,
            target_text=f"< {TARGET_RSS_MIB:g} MiB (max)",
            met=rss.maximum < TARGET_RSS_MIB * MIB,
        ),
        compared(bare, floor),
        compared(imports, floor),
    ]
    return {
        "machine": machine(),
        "revision": revision(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_pressure_after": cpu_pressure(),
        "runs": runs,
        "warmup": warmup,
        "in_process_calls": IN_PROCESS_CALLS * IN_PROCESS_REPEATS,
        "seconds": round(wall, 1),
        "command": f"cd {APP_DIR} && {COMMAND}",
        "rows": rows,
    }


def format_table(document: dict[str, Any]) -> str:
    """The report as a plain-text table, then the machine and how to rerun."""
    header = ("measurement", "median", "min", "p90", "max", "ratio", "paired", "target", "met")
    lines: list[tuple[str, ...]] = [header]
    for item in document["rows"]:
        unit = item["unit"]
        values = [f"{item[key]:.1f} {unit}" for key in ("median", "min", "p90", "max")]
        ratios = [
            "" if item[key] is None else f"{item[key]:.2f}x" for key in ("ratio", "paired_ratio")
        ]
        met = "" if item["met"] is None else ("met" if item["met"] else "NOT MET")
        lines.append((item["measurement"], *values, *ratios, item["target"] or "", met))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)) for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    info = document["machine"]
    load_before = " ".join(f"{x:.2f}" for x in document["load_average_before"])
    load_after = " ".join(f"{x:.2f}" for x in document["load_average_after"])
    text += [
        "",
        "ratio: median / the baseline's median (refresh / floor, wrapper / refresh, "
        "load_token / json.load; context rows / floor); targets are judged on it.",
        "paired: median of the per-round ratios. Processes run as cron runs them "
        "(env PATH=/usr/bin:/bin, cwd /).",
        f"{document['runs']} rounds after {document['warmup']} warm-up rounds; in-process: "
        f"{document['in_process_calls']} calls each; {document['seconds']} s in all.",
        f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
        f"Python {info['python']}, {info['os']}, {info['architecture']}",
        f"load average before: {load_before}; after: {load_after}; "
        f"CPU pressure after: {document['cpu_pressure_after'] or 'unknown'}",
        f"measured: {document['revision'] or 'unknown revision'}",
        f"rerun: {document['command']} [--runs N] [--warmup N] [--json]",
    ]
    return "\n".join(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table (or JSON); 0 when every target is met, else 1."""
    parser = argparse.ArgumentParser(
        description="Benchmark the XTS token refresher against its floors (README, Performance)."
    )
    parser.add_argument(
        "--runs", type=int, default=DEFAULT_RUNS, help=f"measured rounds ({DEFAULT_RUNS})"
    )
    parser.add_argument(
        "--warmup", type=int, default=DEFAULT_WARMUP, help=f"warm-up rounds ({DEFAULT_WARMUP})"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON document instead")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")
    sys.dont_write_bytecode = True  # this process writes nothing into the repository

    def progress(text: str) -> None:
        print(f"... {text}", file=sys.stderr, flush=True)

    try:
        document = run_benchmark(args.runs, args.warmup, progress)
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(document, indent=2) if args.json else format_table(document))
    return 0 if all(item["met"] is not False for item in document["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
