"""The mutation run: plant bugs drawn afresh from the code and see whether the tests notice.

    .venv/bin/python mutation/run.py [--seed N] [--per-module N] [--module NAME ...]
                                     [--only ID ...] [--jobs 1|2] [--json FILE] [--list]

The working tree (the files ``git ls-files --cached --others --exclude-standard`` lists, so
uncommitted edits and new test files count, ignored files do not) is snapshotted once into a
temporary folder. For each target of ``targets.py`` (a file and the tests that cover it),
``generate.py`` lists every mutant its operators can make in the snapshot's copy of the file,
and draws ``--per-module`` of them with a random generator seeded by ``--seed`` and the
target's name: the same seed on the same code draws the same mutants; a run without
``--seed`` picks one and prints it.

First the baseline: each test file of the drawn targets' selections runs once on an
unmutated copy, recording each test's duration, and the run refuses to go on if any test
fails for good (a mutant "killed" by a test that fails anyway proves nothing); a test that
fails once but passes on a second try is flaky, and is left out. Then each mutant gets a
fresh copy of the snapshot with its one edit and runs ``python -m pytest -q -x -p
no:cacheprovider <selection>`` there with ``CI=true``, its tests fastest first
(``fast_first.py``), ``--jobs`` at a time, within a time limit of three times its
selection's baseline plus 30 s (at least 60 s); the tests of ``targets.LEFT_OUT`` never run:

- killed: pytest exit 1 (a test failed);
- survived: exit 0 (every selected test passed with the bug in place);
- error: a time-out, a collection or usage error (exit 2-5): reported apart, never a kill.

Then every test that killed a mutant runs once more, all together, on an unmutated copy: a
kill by a test that fails there too (flaky) becomes an error. The score is killed / total,
per target and in all. Nothing is written in the project folder
(copies live under the system's temporary folder and are removed at the end); this run is not
part of ``.ci/run``. Exit status: 0 when the score reaches ``--fail-under``, 1 below it, 2 when
a baseline fails or an ``--only`` ID names no mutant of the code.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from generate import Mutant, draw, python_mutants, shell_mutants
from targets import LEFT_OUT, TARGETS, WHOLE_SUITE, Target

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
# The virtualenv's real folder: tests compare sys.prefix with what the wrapper finds.
DEFAULT_PYTHON = VENV.resolve() / "bin" / "python"
MAX_JOBS = 2  # two cores: one pytest process per core
DEFAULT_PER_MODULE = 8
WHOLE_SUITE_TIMEOUT = 900.0
OUTPUT_TAIL = 40  # lines of pytest's output kept for a survivor or an error


@dataclass(frozen=True)
class Outcome:
    """One pytest run in a copy: how it ended."""

    status: str  # killed, survived, error
    seconds: float
    exit_code: int | None  # None after a time-out
    killer: str  # the first failing test, for a kill
    tail: str  # the end of pytest's output, for a survivor or an error
    failed: tuple[str, ...] = ()  # every failing test


@dataclass(frozen=True)
class Planned:
    """A drawn mutant, the target it belongs to, and the line it changes."""

    target: Target
    mutant: Mutant
    original: str
    mutated: str


@dataclass(frozen=True)
class Result:
    """A mutant and what the tests made of it."""

    target: str
    id: str
    path: str
    line: int
    operator: str
    original: str
    mutated: str
    status: str
    seconds: float
    exit_code: int | None
    killer: str
    tail: str


def git(*args: str) -> str:
    """The output of ``git <args>`` in the project folder ('' when git cannot tell)."""
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else ""


def project_files() -> list[str]:
    """The working tree's files, relative: tracked and new ones, not ignored ones."""
    done = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    names = sorted({name for name in done.stdout.decode().split("\0") if name})
    return [name for name in names if (ROOT / name).is_file() or (ROOT / name).is_symlink()]


def copy_tree(source: Path, files: list[str], target: Path) -> None:
    """Copy ``files`` (relative to ``source``) into ``target``, keeping modes and symlinks."""
    for name in files:
        origin, copy = source / name, target / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_symlink():
            copy.symlink_to(os.readlink(origin))
        else:
            shutil.copy2(origin, copy)


def tree_digest(tree: Path, files: list[str]) -> str:
    """A SHA-256 of the names and contents of ``files`` in ``tree``: which tree was tested."""
    digest = hashlib.sha256()
    for name in files:
        path = tree / name
        content = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def read_failed(path: Path) -> list[str]:
    """The node IDs ``fast_first`` wrote to ``path`` (none when it wrote nothing); removes it."""
    try:
        failed: list[str] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    path.unlink()
    return failed


def run_pytest(
    tree: Path,
    selection: tuple[str, ...],
    timeout: float,
    python: Path,
    durations: dict[str, Path],
    *,
    exit_first: bool = True,
) -> Outcome:
    """Run the pytest arguments ``selection`` in ``tree`` (stopping at the first failure
    unless ``exit_first`` is false) within ``timeout``; ``durations`` may name a file to
    ``record`` each test's seconds in, or to ``order`` by."""
    # -n 0: each run is one pytest process in order (fast_first); the jobs run side by side.
    argv = [str(python), "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider"]
    argv += ["-p", "fast_first"]
    argv += ["-x", *selection] if exit_first else list(selection)
    env = {**os.environ, "CI": "true", "PYTHONDONTWRITEBYTECODE": "1"}
    env["PYTHONPATH"] = str(tree / "mutation")
    for name in ("PYTEST_ADDOPTS", "XTS_MUTATION_RECORD", "XTS_MUTATION_ORDER"):
        env.pop(name, None)
    for role, path in durations.items():
        env[f"XTS_MUTATION_{role.upper()}"] = str(path)
    failed_file = tree.parent / f"{tree.name}.failed.json"
    env["XTS_MUTATION_FAILED"] = str(failed_file)
    started = time.monotonic()
    # A session of its own, so a time-out ends the simulators and scripts the tests started too.
    process = subprocess.Popen(
        argv,
        cwd=tree,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
        code: int | None = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        code = None
    seconds = time.monotonic() - started
    tail = "\n".join(output.splitlines()[-OUTPUT_TAIL:])
    failed = tuple(read_failed(failed_file))
    if code == 1:
        return Outcome("killed", seconds, code, next(iter(failed), "(see output)"), tail, failed)
    if code == 0:
        return Outcome("survived", seconds, code, "", tail)
    why = f"timed out after {timeout:g} s" if code is None else f"pytest exit {code}"
    return Outcome("error", seconds, code, "", f"{why}\n{tail}")


class Campaign:
    """Copies of one snapshot of the working tree, in a temporary folder of their own."""

    def __init__(self, python: Path, left_out: tuple[str, ...]) -> None:
        self.python = python
        self.left_out = list(left_out)
        self.flaky: list[str] = []  # left out by the baseline
        self.folder = Path(tempfile.mkdtemp(prefix="xts-mutation-"))
        self.snapshot = self.folder / "snapshot"
        self.files = project_files()
        copy_tree(ROOT, self.files, self.snapshot)
        self.digest = tree_digest(self.snapshot, self.files)
        self._count = 0
        self._counting = threading.Lock()  # the pool's threads ask for copies at once

    def source(self, path: str) -> bytes:
        """The snapshot's copy of ``path``."""
        return (self.snapshot / path).read_bytes()

    def durations(self, name: str = "all") -> Path:
        """Where the baseline records the durations of a test file's tests (``all``: of
        every file, merged)."""
        return self.folder / f"durations-{name.replace('/', '-')}.json"

    def fresh_copy(self, label: str) -> Path:
        """A new copy of the snapshot."""
        with self._counting:
            self._count += 1
            number = self._count
        tree = self.folder / f"{number:04d}-{label}"
        copy_tree(self.snapshot, self.files, tree)
        # A checkout, as the tests expect (git check-ignore; nothing left beside the script).
        subprocess.run(["git", "init", "-q", str(tree)], check=True, capture_output=True)
        if VENV.is_dir():
            # The wrapper looks for .venv beside itself (tests run it without XTS_VENV too).
            (tree / ".venv").symlink_to(VENV.resolve(), target_is_directory=True)
        return tree

    def run(
        self,
        label: str,
        selection: tuple[str, ...],
        timeout: float,
        mutant: Mutant | None,
        durations: dict[str, Path],
        *,
        exit_first: bool = True,
    ) -> Outcome:
        """``selection`` (less the tests left out) on a fresh copy, with ``mutant`` planted
        when given; the copy goes."""
        tree = self.fresh_copy(label)
        try:
            if mutant is not None:
                planted = tree / mutant.path
                planted.write_bytes(mutant.apply(self.source(mutant.path)))
            arguments = (*selection, *(f"--deselect={node}" for node in self.left_out))
            return run_pytest(
                tree, arguments, timeout, self.python, durations, exit_first=exit_first
            )
        finally:
            shutil.rmtree(tree, ignore_errors=True)

    def leave_out(self, tests: list[str]) -> None:
        """Leave ``tests`` (flaky ones) out of every later run."""
        with self._counting:
            self.flaky += tests
            self.left_out += tests

    def close(self) -> None:
        """Remove every copy."""
        shutil.rmtree(self.folder, ignore_errors=True)


def say(text: str) -> None:
    """A progress line, at once."""
    print(text, flush=True)


def indent(text: str) -> str:
    """``text`` indented under a progress line."""
    return "\n".join(f"       | {line}" for line in text.splitlines())


def every_mutant(target: Target, source: bytes) -> list[Mutant]:
    """Every mutant the operators make of ``target``'s file."""
    if target.path.endswith(".py"):
        return python_mutants(target.path, source)
    return shell_mutants(target.path, source)


def plan(
    campaign: Campaign, targets: tuple[Target, ...], seed: int, per_module: int, only: list[str]
) -> list[Planned]:
    """The mutants of this run: ``per_module`` drawn per target, or the ``only`` IDs."""
    planned: list[Planned] = []
    wanted = set(only)
    for target in targets:
        source = campaign.source(target.path)
        mutants = every_mutant(target, source)
        if only:
            chosen = [m for m in mutants if m.ident in wanted]
            wanted -= {m.ident for m in chosen}
        else:
            # Not for secrets: a draw that the same seed repeats.
            generator = random.Random(f"{seed}:{target.name}")  # noqa: S311
            chosen = draw(mutants, source, per_module, generator)
        for mutant in chosen:
            planned.append(Planned(target, mutant, *mutant.lines(source)))
    if wanted:
        raise SystemExit(
            f"No such mutant in this code: {', '.join(sorted(wanted))} (see --list, --all)."
        )
    return planned


def baseline(campaign: Campaign, targets: list[Target], jobs: int) -> dict[str, float] | None:
    """Each test file of the targets' selections once, unmutated, recording its tests'
    durations (merged into ``campaign.durations()``); the seconds each file took, or None
    when a test fails for good (see ``baseline_file``)."""
    files = list(dict.fromkeys(name for t in targets for name in t.selection()))
    say(f"Baseline: {len(files)} test files on the unmutated tree...")
    seconds: dict[str, float] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(baseline_file, campaign, name): name for name in files}
        for future in concurrent.futures.as_completed(futures):
            name, (passed, took) = futures[future], future.result()
            seconds[name] = took
            if not passed:
                return None
    merged: dict[str, float] = {}
    for name in files:
        merged.update(json.loads(campaign.durations(name).read_text(encoding="utf-8")))
    campaign.durations().write_text(json.dumps(merged) + "\n", encoding="utf-8")
    return seconds


def baseline_file(campaign: Campaign, name: str) -> tuple[bool, float]:
    """Run the test file ``name`` unmutated: whether it passes (after leaving out its flaky
    tests) and the seconds it took. A failing file runs again whole, then its failing tests
    alone: a test that fails alone too fails for good; one that passes on a second try is
    flaky, and is left out of every later run (it could not tell a kill from chance)."""
    label, record = f"baseline-{Path(name).stem}", {"record": campaign.durations(name)}
    outcome = campaign.run(label, (name,), WHOLE_SUITE_TIMEOUT, None, record)
    if outcome.status == "survived":
        say(f"  ok   {outcome.seconds:5.1f} s  {name}")
        return True, outcome.seconds
    say(f"  FAIL {outcome.seconds:5.1f} s  {name}: {outcome.killer}; trying again...")
    again = campaign.run(label, (name,), WHOLE_SUITE_TIMEOUT, None, record, exit_first=False)
    suspects = tuple(dict.fromkeys([*outcome.failed, *again.failed]))
    alone = campaign.run(
        f"{label}-alone", suspects, WHOLE_SUITE_TIMEOUT, None, {}, exit_first=False
    )
    if again.status == "error" or alone.status == "error" or not suspects:
        say(indent(outcome.tail))
        return False, outcome.seconds
    failing = set(alone.failed)
    if failing:
        say(f"       fails again, also alone: {', '.join(sorted(failing))}")
        say(indent(again.tail))
        return False, outcome.seconds
    flaky = [test for test in suspects if test not in failing]
    campaign.leave_out(flaky)
    say(f"  ok   {again.seconds:5.1f} s  {name}, less its flaky test(s): {', '.join(flaky)}")
    return True, again.seconds


def time_limit(baseline_seconds: float | None) -> float:
    """A mutant's time limit: three times its selection's baseline plus 30 s, at least 60 s."""
    if baseline_seconds is None:
        return WHOLE_SUITE_TIMEOUT
    return max(60.0, 3 * baseline_seconds + 30)


def interleaved(planned: list[Planned], costs: dict[str, float]) -> list[Planned]:
    """The mutants in the order to start them: one of each target in turn, the targets with
    the slowest selections first (so the last minutes are not one long selection alone)."""
    queues: dict[str, list[Planned]] = {}
    for item in planned:
        queues.setdefault(item.target.name, []).append(item)
    names = sorted(queues, key=lambda name: -costs.get(name, 0.0))
    ordered: list[Planned] = []
    while any(queues.values()):
        for name in names:
            if queues[name]:
                ordered.append(queues[name].pop(0))
    return ordered


def mutate(
    campaign: Campaign,
    planned: list[Planned],
    jobs: int,
    limits: dict[str, float],
    whole_suite: bool,
) -> list[Result]:
    """Every mutant on its own copy, ``jobs`` at a time; the results in the plan's order."""
    say(f"Mutants: {len(planned)}, {jobs} at a time...")
    results: dict[str, Result] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {}
        for item in interleaved(planned, limits):
            target, mutant = item.target, item.mutant
            selection = WHOLE_SUITE if whole_suite else target.selection()
            order = {} if whole_suite else {"order": campaign.durations()}
            future = pool.submit(
                campaign.run,
                f"{target.name}-{mutant.line}",
                selection,
                limits.get(target.name, WHOLE_SUITE_TIMEOUT),
                mutant,
                order,
            )
            futures[future] = item
        for future in concurrent.futures.as_completed(futures):
            item, outcome = futures[future], future.result()
            mutant = item.mutant
            results[mutant.ident] = Result(
                item.target.name,
                mutant.ident,
                mutant.path,
                mutant.line,
                mutant.operator,
                item.original,
                item.mutated,
                outcome.status,
                round(outcome.seconds, 1),
                outcome.exit_code,
                outcome.killer,
                outcome.tail,
            )
            done = f"{len(results):3d}/{len(planned)}"
            say(f"  {done} {outcome.status:<8} {outcome.seconds:5.1f} s  {mutant.ident}")
            if outcome.status != "killed":
                say(f"       - {item.original[:110]}\n       + {item.mutated[:110]}")
    return [results[item.mutant.ident] for item in planned]


def confirm_killers(campaign: Campaign, results: list[Result]) -> list[Result]:
    """``results`` with each kill checked: every test that killed a mutant runs once more,
    all together, on an unmutated copy; a kill by a test that fails there too (a flaky test)
    becomes an error."""
    killers = sorted({r.killer for r in results if r.status == "killed" and "::" in r.killer})
    if not killers:
        return results
    say(f"Confirming the kills: the {len(killers)} killing tests on the unmutated tree...")
    outcome = campaign.run(
        "confirm", tuple(killers), WHOLE_SUITE_TIMEOUT, None, {}, exit_first=False
    )
    if outcome.status == "error":
        say(f"  the confirming run itself failed:\n{indent(outcome.tail)}")
        return results
    flaky = set(outcome.failed)
    say(f"  {len(killers) - len(flaky)} pass unmutated; fail unmutated too: {sorted(flaky)}")
    return [
        replace(r, status="error", tail=f"its killer {r.killer} fails unmutated too (flaky)")
        if r.status == "killed" and r.killer in flaky
        else r
        for r in results
    ]


def by_target(results: list[Result]) -> str:
    """The score of each target, and in all, as a plain-text table."""
    names = list(dict.fromkeys(r.target for r in results))
    lines = [f"{'target':<10} {'killed':>6} {'total':>5} {'survived':>8} {'errors':>6}  score"]
    for name in [*names, "all"]:
        rows = [r for r in results if name in ("all", r.target)]
        counts = Counter(r.status for r in rows)
        score = 100.0 * counts["killed"] / len(rows) if rows else 0.0
        lines.append(
            f"{name:<10} {counts['killed']:>6} {len(rows):>5} {counts['survived']:>8} "
            f"{counts['error']:>6}  {score:5.1f} %"
        )
    return "\n".join(lines)


def markdown(results: list[Result]) -> str:
    """The score per target and every mutant not killed, as Markdown tables for
    RELIABILITY.md (the "why" column left for a person to fill in)."""
    lines = ["| target | killed / total | errors |", "|---|---|---|"]
    for name in [*dict.fromkeys(r.target for r in results), "all"]:
        rows = [r for r in results if name in ("all", r.target)]
        counts = Counter(r.status for r in rows)
        lines.append(f"| {name} | {counts['killed']} / {len(rows)} | {counts['error']} |")
    lines += ["", "| mutant | the line, then the mutant | why it survived |", "|---|---|---|"]
    for r in results:
        if r.status != "killed":
            before = r.original.replace("|", "\\|")
            after = r.mutated.replace("|", "\\|")
            note = "" if r.status == "survived" else f"{r.status}: "
            lines.append(f"| `{r.path}:{r.line}` {r.operator} | `{before}` → `{after}` | {note} |")
    return "\n".join(lines) + "\n"


def survivors(results: list[Result]) -> str:
    """Every mutant not killed: where, which operator, the line before and after."""
    lines = []
    for r in results:
        if r.status != "killed":
            lines.append(f"{r.status}: {r.path}:{r.line} {r.operator}  (--only {r.id})")
            lines.append(f"    - {r.original}")
            lines.append(f"    + {r.mutated}")
    return "\n".join(lines)


def score_of(results: list[Result]) -> float:
    """killed / total, in %."""
    killed = sum(r.status == "killed" for r in results)
    return 100.0 * killed / len(results) if results else 0.0


def list_plan(
    campaign: Campaign, targets: tuple[Target, ...], planned: list[Planned], show_all: bool
) -> None:
    """Print the drawn mutants (or every mutant with ``show_all``) and the counts."""
    for target in targets:
        mutants = every_mutant(target, campaign.source(target.path))
        kinds = Counter(m.operator for m in mutants)
        say(
            f"{target.name} ({target.path}): {len(mutants)} mutants: "
            + ", ".join(f"{name} {count}" for name, count in sorted(kinds.items()))
        )
        say(f"    tests: {' '.join(target.selection())}")
        shown = mutants if show_all else [p.mutant for p in planned if p.target is target]
        source = campaign.source(target.path)
        for mutant in shown:
            before, after = mutant.lines(source)
            say(f"  {mutant.ident}\n      - {before[:120]}\n      + {after[:120]}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    names = [t.name for t in TARGETS]
    parser = argparse.ArgumentParser(
        prog="mutation/run.py",
        description="Draw mutants from the code, plant each in a copy of the working tree and "
        "run the tests that cover its file.",
    )
    parser.add_argument("--seed", type=int, help="repeat the draw of an earlier run")
    parser.add_argument(
        "--per-module",
        type=int,
        default=DEFAULT_PER_MODULE,
        metavar="N",
        help=f"mutants drawn per target (default {DEFAULT_PER_MODULE})",
    )
    parser.add_argument(
        "--module", action="append", choices=names, default=[], help="this target only (repeat)"
    )
    parser.add_argument(
        "--only", action="append", metavar="ID", default=[], help="this mutant only (repeat)"
    )
    parser.add_argument("--list", action="store_true", help="show the draw and stop")
    parser.add_argument("--all", action="store_true", help="with --list: every mutant, not a draw")
    parser.add_argument("--jobs", type=int, choices=range(1, MAX_JOBS + 1), default=MAX_JOBS)
    parser.add_argument("--json", metavar="FILE", type=Path, help="write the results here")
    parser.add_argument(
        "--markdown", metavar="FILE", type=Path, help="write the scores and survivors as tables"
    )
    parser.add_argument(
        "--python", metavar="PATH", type=Path, default=DEFAULT_PYTHON, help="runs pytest"
    )
    parser.add_argument(
        "--fail-under", metavar="PERCENT", type=float, default=75.0, help="default 75"
    )
    parser.add_argument(
        "--whole-suite",
        action="store_true",
        help="run every test (but style checks) for each mutant instead of its target's "
        "selection: does any test anywhere kill a survivor? (about 5 min a mutant)",
    )
    parser.add_argument(
        "--deselect",
        action="append",
        metavar="NODE",
        default=[],
        help="leave this test out too (a node ID prefix; repeat), e.g. one that fails unmutated",
    )
    parser.add_argument(
        "--baseline-only",
        action="store_true",
        help="run the targets' selections unmutated, show how long each takes, and stop",
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip the baseline (only while iterating on one mutant: a recorded run has one)",
    )
    return parser.parse_args(argv)


def targets_for(modules: list[str], only: list[str]) -> tuple[Target, ...]:
    """The targets ``--module`` names, or those the ``--only`` IDs are in, or all of them."""
    if modules:
        return tuple(t for t in TARGETS if t.name in modules)
    if only:
        paths = {ident.split(":", 1)[0] for ident in only}
        return tuple(t for t in TARGETS if t.path in paths)
    return TARGETS


def signals_as_cron_gives_them() -> None:
    """SIGINT and SIGQUIT at their defaults for the tests and what they start, as cron and a
    terminal give them: a run started in the background of a non-interactive shell (or with
    nohup) inherits them ignored, and the program rightly keeps an ignored SIGINT ignored, so
    the tests of what Ctrl-C does would fail for a reason that is not the code's."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) is signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def main(argv: list[str]) -> int:
    """Run the campaign; the exit status (see the module's documentation)."""
    args = parse_args(argv)
    signals_as_cron_gives_them()
    if not args.python.exists():
        raise SystemExit(f"No Python at {args.python} (create .venv first, or give --python).")
    seed = args.seed if args.seed is not None else secrets.randbelow(1_000_000)
    targets = targets_for(args.module, args.only)
    started = time.monotonic()
    when = datetime.now(timezone.utc).astimezone()
    commit = git("rev-parse", "HEAD").strip()  # as the snapshot is taken, not as the run ends
    uncommitted = git("status", "--porcelain").splitlines()
    campaign = Campaign(args.python, (*LEFT_OUT, *args.deselect))
    say(
        f"Snapshot of {len(campaign.files)} files at {commit[:12] or 'no commit'}"
        f"{f' + {len(uncommitted)} uncommitted change(s)' if uncommitted else ''}, "
        f"tree {campaign.digest[:12]}. Seed {seed} (repeat with --seed {seed})."
    )
    try:
        planned = plan(campaign, targets, seed, args.per_module, args.only)
        if args.list:
            list_plan(campaign, targets, planned, args.all)
            return 0
        used = [t for t in targets if any(p.target is t for p in planned)]
        if args.baseline_only:
            return 0 if baseline(campaign, list(targets), args.jobs) is not None else 2
        limits: dict[str, float] = {}
        if not args.whole_suite:
            if args.no_baseline:
                limits = {t.name: WHOLE_SUITE_TIMEOUT for t in used}
            else:
                seconds = baseline(campaign, used, args.jobs)
                if seconds is None:
                    say("A baseline fails: fix the tests (or the selection) before mutating.")
                    return 2
                limits = {
                    t.name: time_limit(sum(seconds[name] for name in t.selection())) for t in used
                }
        results = mutate(campaign, planned, args.jobs, limits, args.whole_suite)
        results = confirm_killers(campaign, results)
    finally:
        campaign.close()
    elapsed = time.monotonic() - started
    score = score_of(results)
    say("")
    say(by_target(results))
    say("")
    say(survivors(results) or "No survivors.")
    say(f"\nSeed {seed}; wall time: {elapsed / 60:.1f} min ({elapsed:.0f} s), {args.jobs} job(s).")
    if args.json is not None:
        report = {
            "date": when.isoformat(timespec="seconds"),
            "commit": commit,
            "uncommitted": uncommitted,
            "tree_sha256": campaign.digest,
            "seed": seed,
            "per_module": args.per_module,
            "left_out": [*LEFT_OUT, *args.deselect],
            "flaky": campaign.flaky,
            "python": str(args.python),
            "jobs": args.jobs,
            "baseline": not args.no_baseline,
            "seconds": round(elapsed, 1),
            "score_percent": round(score, 1),
            "killed": sum(r.status == "killed" for r in results),
            "total": len(results),
            "results": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        say(f"Results written to {args.json}.")
    if args.markdown is not None:
        args.markdown.write_text(markdown(results), encoding="utf-8")
        say(f"Tables written to {args.markdown}.")
    return 0 if score >= args.fail_under else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
