"""The documents: the samples in README.md, CRON_SETUP.md and docs/ are what the program
prints, README's tables name what the program knows, its quick-start commands are the ones CI
runs, every command line they show parses, and every relative link in the documents (and
every document a file of the project names) leads to a file (and a heading) that exists.

Samples are checked against real runs: the script (and the wrapper) run as cron runs them,
against the bundled simulator, and each line of the documented sample, with paths, times,
tokens, user IDs and versions normalised, must appear in the output, in order.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import APP_DIR, WRAPPER, Project, assert_no_secrets, run_process

README = APP_DIR / "README.md"
CRON_SETUP = APP_DIR / "CRON_SETUP.md"
README_LIMIT_BYTES = 15 * 1024
DEMO_COMMAND = "./refresh_xts_token.sh --setup && ./xts_token_refresh.py demo"
TEST_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -q -r requirements-dev.txt "
    "&& .venv/bin/python -m pytest"
)
DOCUMENTS = (
    "README.md",
    "CRON_SETUP.md",
    "RELIABILITY.md",
    "PROTOCOL.md",
    "benchmarks/README.md",
    "mutation/README.md",
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.M)
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
# What differs between the documented sample and a real run: where, when, which token, which
# Python. Applied to both sides.
VARIABLE_PARTS = (
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d)?"), "<TIME>"),
    (re.compile(r"(?<=token )[A-Za-z0-9_-]{6}…"), "<TOKEN>…"),
    (re.compile(r"Python 3\.\d+\.\d+"), "Python <VERSION>"),
    (re.compile(r"(?<=user )[A-Z0-9]+"), "<USER>"),
    (re.compile(r"\(\d+h \d+m left\)"), "(<LEFT> left)"),
)
ACCOUNTS = APP_DIR / "docs/accounts.md"
MONITORING = APP_DIR / "docs/monitoring.md"


def section(path: Path, heading: str) -> str:
    """The text of ``path`` under the heading ``heading`` (any level), up to the next heading
    of the same or a higher level."""
    text = path.read_text(encoding="utf-8")
    found = re.search(rf"^(#+) {re.escape(heading)}\n", text, re.M)
    assert found, f"{path.name} has no heading {heading!r}"
    rest = text[found.end() :]
    end = re.search(rf"^#{{1,{len(found[1])}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def fenced_blocks(text: str) -> list[tuple[str, list[str]]]:
    """The fenced blocks of ``text`` (also those indented in a list): each one's language
    (``""`` for none) and lines; ``"inline"`` for the inline code outside them, one a line."""
    blocks: list[tuple[str, list[str]]] = [("inline", [])]
    language: str | None = None
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            if language is None:
                language = line.strip()[3:]
                blocks.append((language, []))
            else:
                language = None
        elif language is not None:
            blocks[-1][1].append(line)
        else:
            blocks[0][1].extend(re.findall(r"`([^`]+)`", line))
    return blocks


def first_plain_block(text: str) -> list[str]:
    """The lines of the first fenced block without a language (an output sample) in ``text``."""
    plain = [lines for language, lines in fenced_blocks(text) if language == ""]
    assert plain, "no output sample"
    return plain[0]


def normalised(lines: list[str], folders: dict[str, str]) -> list[str]:
    """``lines`` with the folders (each to its placeholder) and the variable parts replaced."""
    result = []
    for line in lines:
        text = line
        for folder, placeholder in folders.items():
            text = text.replace(folder, placeholder)
        for pattern, placeholder in VARIABLE_PARTS:
            text = pattern.sub(placeholder, text)
        result.append(text)
    return result


def assert_in_order(sample: list[str], output: list[str]) -> None:
    """Each line of ``sample`` is a line of ``output``, in the same order."""
    position = 0
    for line in sample:
        try:
            position = output.index(line, position) + 1
        except ValueError:
            raise AssertionError(
                f"documented line {line!r} is not printed (in this order):\n" + "\n".join(output)
            ) from None


def test_the_readme_sample_is_what_a_refresh_prints(project: Project) -> None:
    """README's "What a run prints" is a refresh as cron runs it, line for line once the
    folder, the times and the token prefix are set aside."""
    run = project.run()

    assert run.code == 0, run.output
    sample = first_plain_block(section(README, "What a run prints"))
    assert len(sample) >= 9 and sample[-1].startswith("✓ "), sample
    folders = {str(project.folder): "<DIR>", "/abs/path": "<DIR>"}
    assert_in_order(normalised(sample, folders), normalised(run.stdout.splitlines(), folders))


def test_the_cron_guide_samples_are_what_the_program_and_the_wrapper_print(
    project: Project, tmp_path: Path
) -> None:
    """CRON_SETUP.md's "The program directly" is the script's output and "The wrapper, as cron
    will run it" is the wrapper's, run from ``/`` with cron's bare environment (the wrapper
    finds this checkout's virtualenv, as it finds the operator's)."""
    direct = project.run()
    env_file = str(project.write_env())
    wrapped = run_process([str(WRAPPER), "--env-file", env_file], env={"HOME": str(tmp_path)})

    assert direct.code == 0, direct.output
    assert wrapped.returncode == 0, wrapped.stdout + wrapped.stderr
    assert_no_secrets(project, wrapped.stdout, wrapped.stderr)
    folders = {
        str(project.folder): "<DATA>",
        "/path/to/xts-token-refresher/xts_store_token.json": "<DATA>/xts_store_token.json",
        str(APP_DIR): "<APP>",
        "/path/to/xts-token-refresher": "<APP>",
    }
    program = first_plain_block(section(CRON_SETUP, "The program directly"))
    assert_in_order(normalised(program, folders), normalised(direct.stdout.splitlines(), folders))
    wrapper = first_plain_block(section(CRON_SETUP, "The wrapper, as cron will run it"))
    assert wrapper[-1] == "exit code 0"  # what the documented command's `echo` adds
    assert_in_order(
        normalised(wrapper[:-1], folders), normalised(wrapped.stdout.splitlines(), folders)
    )


def test_the_status_sample_is_what_status_prints(project: Project) -> None:
    """docs/monitoring.md's ``status`` sample is what ``status`` prints after a refresh."""
    assert project.run().code == 0
    run = project.run("status")

    assert run.code == 0, run.output
    sample = first_plain_block(section(MONITORING, "`status`"))
    assert sample[0].startswith("✓ interactive")
    folders = {str(project.folder): "<DIR>", "/abs/path": "<DIR>"}
    assert_in_order(normalised(sample, folders), normalised(run.stdout.splitlines(), folders))


def test_the_accounts_sample_is_what_a_run_of_two_accounts_prints(project: Project) -> None:
    """docs/accounts.md's sample of a run of the accounts ``huf`` and ``self`` (its ``...``
    stands for lines left out) is what such a run prints; its lines of one account keep
    their order, whatever the other account's lines do between them."""
    project.with_accounts("huf", "self")
    run = project.run()

    assert run.code == 0, run.output
    sample = first_plain_block(section(ACCOUNTS, "What a run of several accounts does and prints"))
    assert "..." in sample and sample[-1].startswith("✓ All 2 accounts")
    folders = {str(project.folder): "<DIR>", "/abs/path": "<DIR>"}
    printed = normalised(run.stdout.splitlines(), folders)
    documented = normalised([line for line in sample if line != "..."], folders)
    for prefix in ("[huf] ", "[self] ", "✓ "):
        assert_in_order(
            [line for line in documented if line.startswith(prefix)],
            [line for line in printed if line.startswith(prefix)],
        )
    # The banner opens the run once, as documented; each account's lines are one block.
    assert documented[:2] == printed[:2] == ["=" * 62, "XTS Token Refresh Cron Job Started"]
    assert printed.count("XTS Token Refresh Cron Job Started") == 1
    owners = [line[1 : line.index("]")] for line in printed if line.startswith("[")]
    assert sorted(set(owners)) == ["huf", "self"]
    assert sum(1 for i in range(1, len(owners)) if owners[i] != owners[i - 1]) == 1, run.stdout


INVOCATION = re.compile(
    r"(xts_token_refresh\.py|refresh_xts_token\.sh)((?:[ \t]+[^\s`|>#;&)\"]+)*)"
)


def documented_invocations(path: Path) -> list[tuple[str, list[str]]]:
    """Every ``xts_token_refresh.py ...`` and ``refresh_xts_token.sh ...`` that ``path`` tells
    the reader to type: in ```bash blocks and in inline code (output blocks are plain), but
    not a usage line with placeholders (``[COMMAND] [OPTIONS]``)."""
    commands = [
        line
        for language, lines in fenced_blocks(path.read_text(encoding="utf-8"))
        if language in ("bash", "inline")
        for line in lines
        if not line.lstrip().startswith("chmod")  # file names given to chmod, not invocations
    ]
    found = []
    for command in commands:
        for match in INVOCATION.finditer(command):
            args = match[2].split()
            if not any(arg.startswith("[") for arg in args):
                found.append((match[1], args))
    return found


def test_every_documented_command_line_is_real() -> None:
    """Every command line CRON_SETUP.md, README.md and docs/ show parses with the program's
    own parser (the wrapper passes its arguments on; ``--setup`` is the wrapper's own), so no
    documented flag is made up."""
    from xts_refresher.cli import build_parser, with_default_command

    guide = documented_invocations(CRON_SETUP)
    assert len(guide) >= 20
    seen = {" ".join(args) for _, args in guide}
    for expected in ("cron install", "cron install --days weekdays", "cron uninstall", "status"):
        assert expected in seen, expected
    assert "--setup" in seen and "--if-needed" in seen
    documents = [CRON_SETUP, README, *sorted((APP_DIR / "docs").glob("*.md"))]
    invocations = [(doc, *found) for doc in documents for found in documented_invocations(doc)]
    assert len(invocations) >= len(guide) + 20
    for document, program, args in invocations:
        if program == "refresh_xts_token.sh" and args == ["--setup"]:
            continue
        try:
            build_parser().parse_args(with_default_command(args))
        except SystemExit as exc:
            pytest.fail(f"{document.name} shows `{program} {' '.join(args)}`: exit {exc.code}")


DOCUMENT_NAME = re.compile(r"(?<![\w./-])(?:\.\./|[\w-]+/)*[A-Za-z][\w-]*\.md\b")
SHIPPED_SUFFIXES = (".py", ".sh", ".md", ".service", ".timer", ".example", ".toml", ".txt")


def documents_named(text: str) -> set[str]:
    """The ``*.md`` files ``text`` mentions, with the path written before them (``see README.md``,
    ``[x](CRON_SETUP.md#y)``, ``docs/systemd.md``)."""
    return set(DOCUMENT_NAME.findall(text))


def test_documents_point_only_inside_the_repository() -> None:
    """Every ``*.md`` document that a file of the project names (a docstring's "see ...",
    a link in a guide) is a file of the repository: beside the script, or where the path
    written before it (``docs/operations.md``, ``../README.md``) leads from there or from the
    naming file's folder."""
    gone = "INTERFACE" + ".md"  # spelled in two parts, or this file would name it
    assert documents_named(f'see {gone}, "Exit codes"; [x](CRON_SETUP.md#3)') == {
        gone,
        "CRON_SETUP.md",
    }
    assert documents_named("[a](../README.md), docs/systemd.md") == {
        "../README.md",
        "docs/systemd.md",
    }
    missing = []
    for path in sorted(APP_DIR.rglob("*")):
        relative = path.relative_to(APP_DIR)
        if any(part.startswith((".", "__pycache__")) or "venv" in part for part in relative.parts):
            continue
        if not path.is_file() or not path.name.endswith(SHIPPED_SUFFIXES):
            continue
        for name in documents_named(path.read_text(encoding="utf-8", errors="replace")):
            if not (APP_DIR / name).is_file() and not (path.parent / name).is_file():
                missing.append(f"{relative} names {name}")
    assert missing == []


def test_the_readme_is_short_and_shows_the_quick_start_commands_ci_runs() -> None:
    """README.md stays within 15 KB and shows the demo and the test command exactly, each in
    a bash block of its own; .ci/run runs that very test command."""
    text = README.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= README_LIMIT_BYTES
    bash_blocks = [lines for language, lines in fenced_blocks(text) if language == "bash"]
    assert [DEMO_COMMAND] in bash_blocks
    assert [TEST_COMMAND] in bash_blocks
    ci_lines = (APP_DIR / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert any(line.startswith(TEST_COMMAND) for line in ci_lines)


def table_first_cells(text: str) -> list[str]:
    """The first cell of every body row of the Markdown tables in ``text``."""
    lines = [*text.splitlines(), ""]
    separator = re.compile(r"\|[-:| ]+\|")
    return [
        line.split("|")[1].strip()
        for line, after in zip(lines, lines[1:])
        if line.startswith("|") and not separator.fullmatch(line) and not separator.fullmatch(after)
    ]


def test_the_readme_exit_codes_are_the_programs() -> None:
    """README's exit-code table lists exactly the exit codes the error classes carry (and 0);
    CRON_SETUP's troubleshooting table covers each of them too."""
    from xts_refresher.errors import exit_code_meanings

    programs = set(exit_code_meanings())
    documented = {int(cell) for cell in table_first_cells(section(README, "Exit codes"))}
    assert documented == programs
    in_guide = {
        int(code)
        for cell in table_first_cells(section(CRON_SETUP, "6. Troubleshooting"))
        for code in cell.split(",")
    }
    assert programs <= in_guide


def test_the_readme_settings_table_names_every_setting_of_env_example() -> None:
    """Every setting .env.example describes is in README's settings table, and the table
    names no other."""
    example = (APP_DIR / ".env.example").read_text(encoding="utf-8")
    described = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", example, re.M))
    cells = table_first_cells(section(README, "Settings"))
    documented = {name for cell in cells for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}
    assert len(described) >= 20
    assert documented == described


def slug(heading: str) -> str:
    """The anchor GitHub gives ``heading``: lower case, markup and punctuation dropped, spaces
    to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of the headings of ``path`` (outside fenced blocks)."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {slug(heading) for heading in HEADING.findall(text)}


def test_slug_is_githubs() -> None:
    """The anchors this file checks are the ones GitHub makes."""
    assert slug("6. Troubleshooting") == "6-troubleshooting"
    assert slug("How bots find an account's token") == "how-bots-find-an-accounts-token"
    assert slug("`check-config`") == "check-config"
    assert slug("Alternative: a systemd timer") == "alternative-a-systemd-timer"


def test_every_relative_link_leads_to_a_file_and_heading_that_exist() -> None:
    """Each relative link in README.md, CRON_SETUP.md, RELIABILITY.md, PROTOCOL.md, docs/*.md
    and the benchmark and mutation guides names an existing file, and its ``#anchor`` (in a
    Markdown file) a heading there."""
    documents = [APP_DIR / name for name in DOCUMENTS]
    documents += sorted((APP_DIR / "docs").glob("*.md"))
    assert len(documents) >= len(DOCUMENTS) + 5
    broken = []
    checked = 0
    for document in documents:
        text = FENCE.sub("", document.read_text(encoding="utf-8"))
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            name, _, anchor = target.partition("#")
            linked = (document.parent / name).resolve() if name else document
            checked += 1
            where = f"{document.relative_to(APP_DIR)}: {target}"
            if not linked.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{where} (no such heading)")
    assert checked >= 40
    assert broken == []


# Where RELIABILITY.md says which file holds the tests of a section: "Tests in `tests/x.py`
# unless a file is given.", "Tests named here are in …", "The tests of this section whose file
# is not given are in …".
SECTION_TEST_FILES = re.compile(
    r"(?:^|\. )(?:The tests|Tests)[^.|]*?\bin ((?:`tests/test_\w+\.py`(?:,? (?:and )?)?)+)"
)
TEST_FILE = re.compile(r"test_\w+\.py")
# In a table's last cell: a test named (`test_x`, `test_x[param]`), a file in parentheses
# naming where the tests before it are, or a whole file named as the test.
CELL_REFERENCE = re.compile(
    r"`(test_\w+)(?:\[[^\]]*\])?`|\(`?(?:tests/)?(test_\w+\.py)`?\)|`tests/(test_\w+\.py)`"
)


def defined_tests(path: Path) -> set[str]:
    """The names of the test functions ``path`` defines (none when it does not exist)."""
    if not path.exists():
        return set()
    return set(re.findall(r"^(?:async )?def (test_\w+)\(", path.read_text(encoding="utf-8"), re.M))


def reliability_references(text: str) -> list[tuple[int, str, tuple[str, ...]]]:
    """Each test RELIABILITY.md's tables name: its line, its name and the files it may be in
    (``()``: any test file); a whole file named as the test comes with the name ``""``.

    A file in parentheses holds the tests named before it in the cell (since the previous
    file); tests named without one are in the files their section names, and ``test_fault…``
    always in ``tests/test_faults.py``."""
    found: list[tuple[int, str, tuple[str, ...]]] = []
    sections: list[tuple[int, list[str]]] = []
    for number, line in enumerate(text.splitlines(), 1):
        heading = re.match(r"(#+) ", line)
        if heading:
            level = len(heading[1])
            sections = [*(s for s in sections if s[0] < level), (level, [])]
            continue
        if not line.startswith("|"):
            named = SECTION_TEST_FILES.search(line)
            if named and sections:
                sections[-1][1].extend(TEST_FILE.findall(named[1]))
            continue
        default = next((tuple(files) for _, files in reversed(sections) if files), ())
        pending: list[str] = []
        for name, file_after, whole_file in CELL_REFERENCE.findall(line.split("|")[-2]):
            if name:
                pending.append(name)
            elif file_after:
                found += [(number, test, (file_after,)) for test in pending]
                found.append((number, "", (file_after,)))
                pending = []
            else:
                found.append((number, "", (whole_file,)))
        found += [(number, test, default) for test in pending]
    return [
        (number, name, ("test_faults.py",) if name.startswith("test_fault") else files)
        for number, name, files in found
    ]


def test_every_test_reliability_names_is_in_the_file_it_names() -> None:
    """Each test RELIABILITY.md names exists, in the file its row or its section names (a
    moved or renamed test must take its row along)."""
    tests = APP_DIR / "tests"
    references = reliability_references((APP_DIR / "RELIABILITY.md").read_text(encoding="utf-8"))
    everywhere = set().union(*(defined_tests(path) for path in tests.glob("test_*.py")))
    missing = []
    for number, name, files in references:
        if not name:
            if not (tests / files[0]).exists():
                missing.append(f"line {number}: no file tests/{files[0]}")
            continue
        defined = set().union(*(defined_tests(tests / file) for file in files))
        if name not in (defined if files else everywhere):
            missing.append(f"line {number}: {name} is not in {', '.join(files) or 'tests/'}")
    assert len(references) >= 300
    assert missing == []


def test_reliability_references_follow_the_files_named_after_them_and_for_the_section() -> None:
    """The reader of RELIABILITY.md's test cells: a file in parentheses holds the tests before
    it, the section's file the rest, and ``test_fault…`` is always in test_faults.py."""
    text = (
        "## Section\n\nTests in `tests/test_a.py` unless a file is given.\n\n"
        "| row | `test_one`, `test_two[x]`, `[y]` (test_b.py), `test_three`, "
        "`test_fault[dns]` (`tests/test_c.py`) |\n"
        "## Other\n\n| row | `test_four`; `tests/test_d.py` |\n"
    )
    assert reliability_references(text) == [
        (5, "test_one", ("test_b.py",)),
        (5, "test_two", ("test_b.py",)),
        (5, "", ("test_b.py",)),
        (5, "test_three", ("test_c.py",)),
        (5, "test_fault", ("test_faults.py",)),
        (5, "", ("test_c.py",)),
        (8, "", ("test_d.py",)),
        (8, "test_four", ()),
    ]
