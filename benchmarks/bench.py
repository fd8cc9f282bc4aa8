"""Benchmark of the XTS token refresher against its floors (issue 5, "Performance").

Run from the repository (one command, about a minute on a 2-core machine)::

    .venv/bin/python benchmarks/bench.py [--runs N] [--warmup N] [--json]

It starts the bundled XTS simulator on 127.0.0.1 in this process, writes a temporary .env and
folder (the token files, the log and the lock go there; nothing is written into the repository),
and times every program as a separate process started the way cron starts it: a bare
environment (``PATH=/usr/bin:/bin``), from ``/``, stdin from /dev/null, output to a file. The
processes are run round-robin (one of each per round, after warm-up rounds), so drift on a busy
machine hits every measurement alike, and each one is reaped with ``os.wait4`` so its own peak
RSS is known. Reported: median, min, p90 and max of the wall time, the ratio of the medians to
the baseline, and whether the issue's target is met.

1. ``xts_token_refresh.py --env-file X`` (a full refresh) against a floor script that imports
   requests, POSTs the same interactive login and writes the JSON token file (target <= 1.15x).
2. ``refresh_xts_token.sh --env-file X`` against the same direct call of the script (<= 1.2x).
3. ``load_token(path)`` in a fresh process against ``json.load(open(path))`` in a fresh process
   (<= 1.5x); the in-process cost of each, per call, as a secondary number.
4. The peak RSS of a refresh process (< 40 MiB), with the floor's for comparison.

This is a benchmark, not a test: nothing here runs in CI.
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

# Fake credentials, known only to the simulator this benchmark starts.
USER_ID = "BENCH1"
APP_KEY = "ik-BENCH-interactive-key"
APP_SECRET = "is-BENCH-interactive-secret"

DEFAULT_RUNS = 40
DEFAULT_WARMUP = 3
IN_PROCESS_CALLS = 2000
IN_PROCESS_REPEATS = 7
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

# The repository is put on sys.path the same way in both processes of measurement 3.
LOAD_TOKEN_CODE = (
    "import sys; sys.path.insert(0, {app!r}); "
    "from xts_token_refresh import load_token; load_token({path!r})"
)
JSON_LOAD_CODE = (
    "import sys; sys.path.insert(0, {app!r}); import json; json.load(open({path!r}, 'rb'))"
)

# Files the refresher would write into the repository if its settings leaked: must not change.
REPO_OUTPUTS = (
    "xts_store_token.json",
    "xts_marketdata_token.json",
    "xts_store_token.json.lock",
    "xts_token_refresh.log",
    ".env",
)


@dataclass
class Series:
    """The samples of one process measurement: wall seconds and peak RSS (bytes) per run."""

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


def measure_round(series: list[Series], output: Path, keep: bool) -> None:
    """Run every measurement once, in order; raise BenchmarkError when one fails."""
    for item in series:
        elapsed, rss, code = run_process(item.argv, output)
        if code != 0 or (item.check is not None and not item.check()):
            text = output.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise BenchmarkError(f"{item.name} failed (exit code {code}):\n{text}")
        if keep:
            item.seconds.append(elapsed)
            item.rss.append(rss)


def in_process_seconds(action: Callable[[], object]) -> Stats:
    """Seconds per call of ``action``: IN_PROCESS_CALLS calls, IN_PROCESS_REPEATS times."""
    samples = []
    for _ in range(IN_PROCESS_REPEATS):
        started = time.perf_counter()
        for _ in range(IN_PROCESS_CALLS):
            action()
        samples.append((time.perf_counter() - started) / IN_PROCESS_CALLS)
    return Stats.of(samples)


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
        "python": f"{version} ({PYTHON})",
        "os": system,
        "machine": platform.machine(),
    }


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
    target: float | None = None,
    target_text: str = "",
    met: bool | None = None,
) -> dict[str, Any]:
    """One line of the report."""
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
        "target": target_text or None,
        "met": met,
    }


def run_benchmark(runs: int, warmup: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """Start the simulator, run every measurement, and return the report document."""
    sys.path.insert(0, str(APP_DIR))
    from xts_refresher.simulator import XtsSimulator
    from xts_token_refresh import load_token

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

        def written(path: Path) -> Callable[[], bool]:
            """A check that ``path`` was written again since the previous check."""
            last = [-1]

            def check() -> bool:
                try:
                    stamp = path.stat().st_mtime_ns
                except OSError:
                    return False
                fresh, last[0] = stamp != last[0], stamp
                return fresh

            return check

        # One refresh first, so load_token has a real token file (a copy: it never changes).
        _, _, code = run_process([PYTHON, str(SCRIPT), "--env-file", str(env_file)], output)
        if code != 0 or not token_file.exists():
            text = output.read_text(encoding="utf-8", errors="replace")
            raise BenchmarkError(f"the first refresh failed (exit code {code}):\n{text}")
        load_file.write_bytes(token_file.read_bytes())
        load_token(load_file)

        env_args = ["--env-file", str(env_file)]
        app, path = str(APP_DIR), str(load_file)
        floor = Series("floor: requests login + write", [PYTHON, str(floor_script), sim.url])
        floor.argv.append(str(floor_token_file))
        floor.check = written(floor_token_file)
        refresh = Series("refresh (xts_token_refresh.py)", [PYTHON, str(SCRIPT), *env_args])
        refresh.check = written(token_file)
        wrapper = Series("wrapper (refresh_xts_token.sh)", [str(WRAPPER), *env_args])
        wrapper.check = written(token_file)
        load = Series(
            "load_token() process",
            [PYTHON, "-c", LOAD_TOKEN_CODE.format(app=app, path=path)],
        )
        plain = Series(
            "json.load() process", [PYTHON, "-c", JSON_LOAD_CODE.format(app=app, path=path)]
        )
        bare = Series("python -c pass (context)", [PYTHON, "-c", "pass"])
        requests_only = Series("python -c 'import requests' (context)", [PYTHON, "-c"])
        requests_only.argv.append("import requests")
        series = [floor, refresh, wrapper, load, plain, bare, requests_only]

        started = time.perf_counter()
        for number in range(warmup):
            progress(f"warm-up round {number + 1}/{warmup}")
            measure_round(series, output, keep=False)
        for number in range(runs):
            if number % 10 == 0:
                progress(f"round {number + 1}/{runs}")
            # Rotate the order each round: no measurement always follows the same one.
            shift = number % len(series)
            measure_round(series[shift:] + series[:shift], output, keep=True)
        progress("in-process load_token() and json.load()")

        def plain_load() -> object:
            with load_file.open("rb") as file:
                return json.load(file)

        in_load = in_process_seconds(lambda: load_token(load_file))
        in_json = in_process_seconds(plain_load)
        wall = time.perf_counter() - started

    changed = [name for name, state in repo_outputs_snapshot().items() if before[name] != state]
    if changed:
        raise BenchmarkError(f"files in the repository changed during the run: {changed}")

    stats = {item.name: Stats.of(item.seconds) for item in series}
    rss = Stats.of(refresh.rss)
    floor_rss = Stats.of(floor.rss)
    rows = [
        row(floor.name, stats[floor.name], "ms"),
        row(
            refresh.name,
            stats[refresh.name],
            "ms",
            baseline=floor.name,
            baseline_stats=stats[floor.name],
            target=TARGET_REFRESH,
            target_text=f"<= {TARGET_REFRESH}x",
        ),
        row(
            wrapper.name,
            stats[wrapper.name],
            "ms",
            baseline=refresh.name,
            baseline_stats=stats[refresh.name],
            target=TARGET_WRAPPER,
            target_text=f"<= {TARGET_WRAPPER}x",
        ),
        row(plain.name, stats[plain.name], "ms"),
        row(
            load.name,
            stats[load.name],
            "ms",
            baseline=plain.name,
            baseline_stats=stats[plain.name],
            target=TARGET_LOAD_TOKEN,
            target_text=f"<= {TARGET_LOAD_TOKEN}x",
        ),
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
        row(bare.name, stats[bare.name], "ms"),
        row(requests_only.name, stats[requests_only.name], "ms"),
    ]
    return {
        "machine": machine(),
        "runs": runs,
        "warmup": warmup,
        "in_process_calls": IN_PROCESS_CALLS * IN_PROCESS_REPEATS,
        "seconds": round(wall, 1),
        "command": "cd " + str(APP_DIR) + " && .venv/bin/python benchmarks/bench.py",
        "rows": rows,
    }


def format_table(document: dict[str, Any]) -> str:
    """The report as a plain-text table and the machine."""
    header = ("measurement", "median", "min", "p90", "max", "ratio", "target", "met")
    lines: list[tuple[str, ...]] = [header]
    for item in document["rows"]:
        unit = item["unit"]
        ratio = "" if item["ratio"] is None else f"{item['ratio']:.2f}x"
        met = "" if item["met"] is None else ("met" if item["met"] else "NOT MET")
        values = [f"{item[key]:.1f} {unit}" for key in ("median", "min", "p90", "max")]
        lines.append((item["measurement"], *values, ratio, item["target"] or "", met))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)) for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    info = document["machine"]
    text += [
        "",
        "ratio: median / median of the baseline (refresh / floor, wrapper / refresh, "
        "load_token() / json.load(), in-process and as processes).",
        f"{document['runs']} runs after {document['warmup']} warm-up runs each, round-robin; "
        f"in-process: {document['in_process_calls']} calls; {document['seconds']} s in all.",
        f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
        f"Python {info['python']}, {info['os']}, {info['machine']}",
        f"rerun: {document['command']} [--runs N] [--json]",
    ]
    return "\n".join(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table (or JSON); 0 when every target is met, else 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--runs", type=int, default=DEFAULT_RUNS, help=f"measured runs ({DEFAULT_RUNS})"
    )
    parser.add_argument(
        "--warmup", type=int, default=DEFAULT_WARMUP, help=f"warm-up runs ({DEFAULT_WARMUP})"
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
