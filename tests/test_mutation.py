"""The mutation run's generator (mutation/generate.py): which mutants it draws from the code.

The run itself (planting each mutant in a copy and running the tests) is a manual campaign,
not part of CI; these tests keep its generator honest: the bugs that matter most are among
the mutants it makes of the real store, every mutant of the real files still parses, what is
never mutated (docstrings, annotations, f-strings, marked lines) is left alone, and a seed
repeats a draw.
"""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
from types import ModuleType

from conftest import APP_DIR, WRAPPER


def load(name: str) -> ModuleType:
    """mutation/<name>.py as a module (the mutation folder is not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"mutation_{name}", APP_DIR / "mutation" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


generate = load("generate")
STORE = "xts_refresher/store.py"
LOCKS = "xts_refresher/locks.py"


def mutated_lines(path: str) -> set[tuple[str, str, str]]:
    """(operator, original line, mutated line) of every mutant of ``path``."""
    source = (APP_DIR / path).read_bytes()
    return {(m.operator, *m.lines(source)) for m in generate.python_mutants(path, source)}


def test_the_store_mutants_include_fsync_dropped_lock_shared_and_exclusive_create_dropped() -> None:
    """Drawn from the code, not listed: the temporary file's and the folder's fsync deleted,
    the run lock taken shared (locks.py), the temporary file opened without O_EXCL."""
    mutants = mutated_lines(STORE) | mutated_lines(LOCKS)

    assert ("statement-deleted", "os.fsync(fd)", "pass") in mutants
    assert ("statement-deleted", "_fsync_folder(folder)", "pass") in mutants
    assert (
        "lock-shared",
        "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)",
        "fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)",
    ) in mutants
    assert (
        "flag-dropped",
        "fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)",
        "fd = os.open(tmp, (os.O_WRONLY | os.O_CREAT) | os.O_NOFOLLOW, 0o600)",
    ) in mutants


SAMPLE = '''"""A module's docstring."""

from __future__ import annotations

LIMIT: int = 3


def check(value: int = 2) -> str:
    """A function's docstring."""
    if value < LIMIT and not value:
        return f"{value + 1} too small"
    try:
        total = value * 2
    except OverflowError:
        return "overflow"
    print("checked")
    return "ok" if total else "none"  # pragma: no mutate (a marked line)
'''


def test_python_operators_leave_docstrings_annotations_f_strings_and_marked_lines_alone() -> None:
    """Every mutant of a small module, by line and operator: nothing in a docstring, an
    annotation, an f-string or a marked line; a module's own assignment is not deleted."""
    source = SAMPLE.encode()

    found = {
        (m.line, m.operator, m.lines(source)[1]) for m in generate.python_mutants("s.py", source)
    }

    assert found == {
        (5, "number+1", "LIMIT: int = 4"),
        (5, "number-1", "LIMIT: int = 2"),
        (5, "number=0", "LIMIT: int = 0"),
        (8, "number+1", "def check(value: int = 3) -> str:"),
        (8, "number-1", "def check(value: int = 1) -> str:"),
        (8, "number=0", "def check(value: int = 0) -> str:"),
        (10, "if-true", "if True:"),
        (10, "if-false", "if False:"),
        (10, "compare", "if value <= LIMIT and not value:"),
        (10, "and-or", "if value < LIMIT or not value:"),
        (10, "not-removed", "if value < LIMIT and value:"),
        (11, "return-none", "return None"),
        (13, "statement-deleted", "pass"),
        (13, "arithmetic", "total = value / 2"),
        (13, "number+1", "total = value * 3"),
        (13, "number-1", "total = value * 1"),
        (13, "number=0", "total = value * 0"),
        (15, "handler-raises", "raise"),
        (15, "return-none", "return None"),
        (15, "string-emptied", "return ''"),
        (16, "message-deleted", "pass"),
        (16, "message-emptied", "print('')"),
    }
    for mutant in generate.python_mutants("s.py", source):
        assert generate.is_valid(mutant, source), mutant.ident


def test_every_mutant_of_the_wrapper_is_valid_bash_and_none_is_inside_its_python() -> None:
    """Each shell mutant passes ``bash -n``; Python that the wrapper may run with ``-c`` (a
    quoted string over several lines) is never cut by a line deletion."""
    source = WRAPPER.read_bytes()
    lines = source.decode().splitlines()
    inside = {
        number
        for number, line in enumerate(lines, start=1)
        if line.startswith(("from xts_refresher import", "print("))
    }

    mutants = generate.shell_mutants(WRAPPER.name, source)

    assert {"line-deleted", "test-flipped", "and-or", "exit-code", "not-removed"} <= {
        m.operator for m in mutants
    }
    assert not [m for m in mutants if m.line in inside and m.operator.endswith("-deleted")]
    for mutant in mutants:
        mutated = mutant.apply(source)
        assert mutated != source
        done = subprocess.run(["bash", "-n"], input=mutated, capture_output=True, check=False)
        assert done.returncode == 0, (mutant.ident, done.stderr)


def test_a_seed_repeats_the_draw_and_the_draw_spreads_over_lines() -> None:
    """The same seed draws the same mutants; another seed other ones; at most one a line
    while lines last."""
    source = (APP_DIR / STORE).read_bytes()
    mutants = generate.python_mutants(STORE, source)

    first = generate.draw(mutants, source, 12, random.Random("41:store"))
    again = generate.draw(mutants, source, 12, random.Random("41:store"))
    other = generate.draw(mutants, source, 12, random.Random("42:store"))

    assert len(first) == 12
    assert [m.ident for m in first] == [m.ident for m in again]
    assert [m.ident for m in first] != [m.ident for m in other]
    assert len({m.line for m in first}) == 12


def test_the_targets_name_existing_files_tests_and_left_out_tests() -> None:
    """Each target of the run names a file of the project and test files that exist; each
    test the run leaves out still exists (a renamed one would quietly run again)."""
    targets = load("targets")

    for target in targets.TARGETS:
        assert (APP_DIR / target.path).is_file(), target.path
        for name in target.selection():
            assert (APP_DIR / name).is_file(), (target.name, name)
    for node in targets.LEFT_OUT:
        path, name = node.split("::")
        assert f"def {name.split('[')[0]}" in (APP_DIR / path).read_text(encoding="utf-8"), node
