"""The mutation run: plant each bug of ``mutation/mutants.py`` and see whether the tests notice.

    .venv/bin/python mutation/run.py [--only NAME ...] [--jobs 1|2] [--json FILE] [--list]

The working tree (the files ``git ls-files --cached --others --exclude-standard`` lists, so
uncommitted edits and new test files count, ignored files do not) is snapshotted once into a
temporary folder; each copy of it gets a symlink ``.venv`` to the project's virtualenv, which
the wrapper looks for beside itself. Every mutant's snippet must then occur exactly once in
its file, or the run stops before any test: a snippet that no longer matches the code is a
list to update, never a mutant to skip quietly.

First the baseline: each distinct test selection runs once on an unmutated copy, and the run
refuses to go on if any fails (a mutant "killed" by a test that fails anyway proves nothing).
Then each mutant gets a fresh copy of the snapshot with its one edit and runs
``python -m pytest -q -x -p no:cacheprovider <selection>`` there with ``CI=true``, at most two
at a time (one per core), each within its own time limit:

- killed: pytest exit 1 (a test failed);
- survived: exit 0 (every selected test passed with the bug in place);
- error: a time-out, a collection or usage error (exit 2-5): reported apart, never a kill.

The score is killed / total. Nothing is written in the project folder (copies live under the
system's temporary folder and are removed at the end); this run is not part of ``.ci/run``.
Exit status: 0 when the score reaches ``--fail-under`` (default 90 %), 1 below it, 2 when the
list does not match the code or a baseline fails.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from mutants import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
DEFAULT_PYTHON = VENV / "bin" / "python"
MAX_JOBS = 2  # two cores: one pytest process per core
# --whole-suite: every test but ruff and mypy, which would "kill" a mutant for its style.
WHOLE_SUITE = ("tests/test_units.py", "tests", "--ignore=tests/test_quality.py")
WHOLE_SUITE_TIMEOUT = 900.0
OUTPUT_TAIL = 40  # lines of pytest's output kept for a survivor or an error
# pytest's short summary (-ra, from pyproject.toml): "FAILED tests/x.py::test_y - reason".
SUMMARY_LINE = re.compile(r"^(?:FAILED|ERROR) (?P<node>\S+)")


class ListMismatchError(Exception):
    """A mutant's snippet is not found exactly once in the code it names."""


@dataclass(frozen=True)
class Outcome:
    """One pytest run in a copy: how it ended."""

    status: str  # killed, survived, error
    seconds: float
    exit_code: int | None  # None after a time-out
    killer: str  # the first failing test, for a kill
    tail: str  # the end of pytest's output, for a survivor or an error


@dataclass(frozen=True)
class Result:
    """A mutant and what the tests made of it."""

    name: str
    path: str
    bug: str
    selection: tuple[str, ...]
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


def check_snippets(mutants: tuple[Mutant, ...], tree: Path) -> None:
    """ListMismatchError naming every mutant whose snippet is not exactly once in its file."""
    names = [m.name for m in mutants]
    problems = [f"the name {n!r} is used twice" for n in sorted(set(names)) if names.count(n) > 1]
    for mutant in mutants:
        try:
            text = (tree / mutant.path).read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(f"{mutant.name}: cannot read {mutant.path}: {exc.strerror}")
            continue
        found = text.count(mutant.old)
        if found != 1:
            problems.append(
                f"{mutant.name}: its snippet occurs {found} times in {mutant.path}, not once:\n"
                + "".join(f"      | {line}\n" for line in mutant.old.splitlines())
            )
        elif mutant.old == mutant.new:
            problems.append(f"{mutant.name}: the replacement is the snippet itself")
    if problems:
        raise ListMismatchError("\n".join(f"  - {p}" for p in problems))


def apply(mutant: Mutant, tree: Path) -> None:
    """Plant ``mutant`` in the copy ``tree`` (its snippet was checked to occur once)."""
    target = tree / mutant.path
    text = target.read_text(encoding="utf-8")
    if text.count(mutant.old) != 1:
        raise ListMismatchError(f"{mutant.name}: the snippet is not once in {mutant.path}")
    target.write_text(text.replace(mutant.old, mutant.new), encoding="utf-8")


def first_failure(output: str) -> str:
    """The node ID of the first failed test in pytest's short summary ('' when none)."""
    for line in output.splitlines():
        found = SUMMARY_LINE.match(line)
        if found:
            return found["node"]
    return ""


def run_pytest(tree: Path, selection: tuple[str, ...], timeout: float, python: Path) -> Outcome:
    """Run ``selection`` in ``tree`` (stopping at the first failure) within ``timeout``."""
    argv = [str(python), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *selection]
    env = {**os.environ, "CI": "true", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
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
    if code == 1:
        return Outcome("killed", seconds, code, first_failure(output) or "(see output)", tail)
    if code == 0:
        return Outcome("survived", seconds, code, "", tail)
    why = f"timed out after {timeout:g} s" if code is None else f"pytest exit {code}"
    return Outcome("error", seconds, code, "", f"{why}\n{tail}")


class Campaign:
    """Copies of one snapshot of the working tree, in a temporary folder of their own."""

    def __init__(self, python: Path) -> None:
        self.python = python
        self.folder = Path(tempfile.mkdtemp(prefix="xts-mutation-"))
        self.snapshot = self.folder / "snapshot"
        self.files = project_files()
        copy_tree(ROOT, self.files, self.snapshot)
        self.digest = tree_digest(self.snapshot, self.files)
        self._count = 0
        self._counting = threading.Lock()  # the pool's threads ask for copies at once

    def fresh_copy(self, label: str) -> Path:
        """A new copy of the snapshot."""
        with self._counting:
            self._count += 1
            number = self._count
        tree = self.folder / f"{number:03d}-{label}"
        copy_tree(self.snapshot, self.files, tree)
        if VENV.is_dir():
            # The wrapper looks for .venv beside itself (tests run it without XTS_VENV too).
            (tree / ".venv").symlink_to(VENV.resolve(), target_is_directory=True)
        return tree

    def run(
        self, label: str, selection: tuple[str, ...], timeout: float, mutant: Mutant | None
    ) -> Outcome:
        """``selection`` on a fresh copy, with ``mutant`` planted when given; the copy goes."""
        tree = self.fresh_copy(label)
        try:
            if mutant is not None:
                apply(mutant, tree)
            return run_pytest(tree, selection, timeout, self.python)
        finally:
            shutil.rmtree(tree, ignore_errors=True)

    def close(self) -> None:
        """Remove every copy."""
        shutil.rmtree(self.folder, ignore_errors=True)


def say(text: str) -> None:
    """A progress line, at once."""
    print(text, flush=True)


def baseline(campaign: Campaign, mutants: tuple[Mutant, ...], jobs: int) -> bool:
    """Run each distinct selection once, unmutated; True when every one passes."""
    selections = list(dict.fromkeys(m.selection() for m in mutants))
    timeouts = {s: max(m.timeout for m in mutants if m.selection() == s) for s in selections}
    say(f"Baseline: {len(selections)} distinct test selections on the unmutated tree...")
    good = True
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {
            pool.submit(campaign.run, f"baseline{i}", s, timeouts[s], None): s
            for i, s in enumerate(selections)
        }
        for future in concurrent.futures.as_completed(futures):
            selection, outcome = futures[future], future.result()
            passed = outcome.status == "survived"
            good = good and passed
            mark = "ok " if passed else "FAIL"
            say(f"  {mark} {outcome.seconds:5.1f} s  {' '.join(selection)}")
            if not passed:
                say(f"       {outcome.killer or ''}\n{indent(outcome.tail)}")
    return good


def indent(text: str) -> str:
    """``text`` indented under a progress line."""
    return "\n".join(f"       | {line}" for line in text.splitlines())


def mutate(campaign: Campaign, mutants: tuple[Mutant, ...], jobs: int) -> list[Result]:
    """Every mutant on its own copy, ``jobs`` at a time; the results in the list's order."""
    say(f"Mutants: {len(mutants)}, {jobs} at a time...")
    results: dict[str, Result] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {
            pool.submit(campaign.run, m.name, m.selection(), m.timeout, m): m for m in mutants
        }
        for future in concurrent.futures.as_completed(futures):
            mutant, outcome = futures[future], future.result()
            results[mutant.name] = Result(
                mutant.name,
                mutant.path,
                mutant.bug,
                mutant.selection(),
                outcome.status,
                round(outcome.seconds, 1),
                outcome.exit_code,
                outcome.killer,
                outcome.tail,
            )
            done = f"{len(results):2d}/{len(mutants)}"
            say(f"  {done} {outcome.status:<8} {outcome.seconds:5.1f} s  {mutant.name}")
            if outcome.status != "killed":
                say(indent(outcome.tail.splitlines()[-1] if outcome.tail else ""))
    return [results[m.name] for m in mutants]


def table(results: list[Result]) -> str:
    """The results as a plain-text table."""
    width = max(len(r.name) for r in results)
    lines = [f"{'mutant':<{width}}  {'status':<8}  {'time':>6}  killed by / note"]
    for r in results:
        note = r.killer if r.status == "killed" else r.bug
        lines.append(f"{r.name:<{width}}  {r.status:<8}  {r.seconds:5.1f}s  {note}")
    return "\n".join(lines)


def score_line(results: list[Result]) -> tuple[float, str]:
    """The score (killed / total, in %) and the line that states it."""
    killed = sum(r.status == "killed" for r in results)
    survived = sum(r.status == "survived" for r in results)
    errors = sum(r.status == "error" for r in results)
    score = 100.0 * killed / len(results) if results else 0.0
    return score, (
        f"Score: {killed}/{len(results)} killed ({score:.1f} %); "
        f"{survived} survived, {errors} error(s)."
    )


def list_mutants(mutants: tuple[Mutant, ...]) -> None:
    """Print every mutant: its name, file, bug and tests."""
    for m in mutants:
        say(f"{m.name}  ({m.path})\n    {m.bug}\n    tests: {' '.join(m.selection())}")
    say(f"{len(mutants)} mutants.")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="mutation/run.py",
        description="Plant each bug of mutation/mutants.py in a copy of the working tree and "
        "run the tests that should notice it.",
    )
    parser.add_argument("--list", action="store_true", help="list the mutants, check, and stop")
    parser.add_argument(
        "--only", action="append", metavar="NAME", default=[], help="this mutant only (repeat)"
    )
    parser.add_argument("--jobs", type=int, choices=range(1, MAX_JOBS + 1), default=MAX_JOBS)
    parser.add_argument("--json", metavar="FILE", type=Path, help="write the results here")
    parser.add_argument(
        "--python", metavar="PATH", type=Path, default=DEFAULT_PYTHON, help="runs pytest"
    )
    parser.add_argument(
        "--fail-under", metavar="PERCENT", type=float, default=90.0, help="default 90"
    )
    parser.add_argument(
        "--whole-suite",
        action="store_true",
        help="run every test (but tests/test_quality.py) for each mutant instead of its "
        "selection: does any test anywhere kill a survivor? (about 4 min a mutant)",
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip the baseline (only while iterating on one mutant: a recorded run has one)",
    )
    return parser.parse_args(argv)


def chosen(only: list[str]) -> tuple[Mutant, ...]:
    """The mutants ``--only`` names (all of them without it); SystemExit for an unknown one."""
    if not only:
        return MUTANTS
    known = {m.name for m in MUTANTS}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise SystemExit(f"Unknown mutant(s): {', '.join(unknown)} (see --list).")
    return tuple(m for m in MUTANTS if m.name in only)


def main(argv: list[str]) -> int:
    """Run the campaign; the exit status (see the module's documentation)."""
    args = parse_args(argv)
    mutants = chosen(args.only)
    if args.whole_suite:
        mutants = tuple(replace(m, tests=WHOLE_SUITE, timeout=WHOLE_SUITE_TIMEOUT) for m in mutants)
    if not args.python.exists():
        raise SystemExit(f"No Python at {args.python} (create .venv first, or give --python).")
    started = time.monotonic()
    when = datetime.now(timezone.utc).astimezone()
    commit = git("rev-parse", "HEAD").strip()  # as the snapshot is taken, not as the run ends
    uncommitted = git("status", "--porcelain").splitlines()
    campaign = Campaign(args.python)
    say(
        f"Snapshot of {len(campaign.files)} files at {commit[:12] or 'no commit'}"
        f"{f' + {len(uncommitted)} uncommitted change(s)' if uncommitted else ''}, "
        f"tree {campaign.digest[:12]}."
    )
    try:
        try:
            check_snippets(mutants, campaign.snapshot)
        except ListMismatchError as exc:
            say(f"The mutant list no longer matches the code:\n{exc}")
            return 2
        if args.list:
            list_mutants(mutants)
            return 0
        if not args.no_baseline and not baseline(campaign, mutants, args.jobs):
            say("A baseline fails: fix the tests (or the selection) before mutating.")
            return 2
        results = mutate(campaign, mutants, args.jobs)
    finally:
        campaign.close()
    elapsed = time.monotonic() - started
    score, line = score_line(results)
    say("")
    say(table(results))
    say("")
    say(line)
    say(f"Wall time: {elapsed / 60:.1f} min ({elapsed:.0f} s), {args.jobs} job(s).")
    for r in results:
        if r.status != "killed":
            say(f"\n== {r.status}: {r.name} ({r.path}): {r.bug}\n{indent(r.tail)}")
    if args.json is not None:
        report = {
            "date": when.isoformat(timespec="seconds"),
            "commit": commit,
            "uncommitted": uncommitted,
            "tree_sha256": campaign.digest,
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
    return 0 if score >= args.fail_under else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
