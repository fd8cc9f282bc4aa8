"""Mutants drawn from the code itself: every place an operator can plant a small bug.

``python_mutants`` walks a module's syntax tree (the standard library's ``ast``) and
``shell_mutants`` scans the bash wrapper line by line; both return every mutant they can
make, each one edit of the file's bytes, checked only when drawn (``is_valid``). Nothing here
is a list of bugs: the same code always gives the same mutants, and ``draw`` picks a sample
of them with a seeded random generator.

Python operators (the name is what a report shows):

- ``compare``: ``<``↔``<=``, ``>``↔``>=``, ``==``↔``!=``, ``is``↔``is not``, ``in``↔``not in``
- ``and-or``: every ``and`` of one expression becomes ``or``, or every ``or`` ``and``
- ``not-removed``: ``not x`` becomes ``x``
- ``number+1``, ``number-1``, ``number=0``: an int or float literal changed
- ``bool``: ``True``↔``False``
- ``string-emptied`` (data) and ``message-emptied`` (text meant for people: see MESSAGE_WEIGHT)
- ``statement-deleted``: a simple statement (a call, an assignment, ``raise``...) becomes ``pass``
- ``return-none``: ``return X`` becomes ``return None``
- ``if-true``, ``if-false``: an ``if``/``elif``/conditional expression's condition forced
- ``handler-raises``: an ``except`` clause's body becomes a bare ``raise``
- ``arithmetic``: ``+``↔``-``, ``*``↔``/``, ``//``→``*``, ``%``→``//``, ``**``→``*``, also in
  ``+=`` and the like
- ``flag-dropped``: one operand of ``a | b`` dropped (``os.O_EXCL``, ``fcntl.LOCK_NB``...)
- ``lock-shared``: ``LOCK_EX``↔``LOCK_SH``

Never mutated: docstrings, annotations (never evaluated: every module has ``from __future__
import annotations``), ``if TYPE_CHECKING:`` blocks, the text inside f-strings (messages whose
positions Python 3.9-3.11 do not report reliably), ``__slots__``/``__all__``, and lines
marked ``# pragma: no mutate`` (each such mark says why in its comment).

Shell operators: ``line-deleted`` (a simple command becomes ``:``; an ``echo`` line is a
``message-deleted``), ``test-flipped`` (``-eq``↔``-ne``, ``-lt``↔``-le``, ``-gt``↔``-ge``,
``==``↔``!=``, ``-n``↔``-z``), ``and-or`` (``&&``↔``||``), ``not-removed`` (``if ! cmd``),
``exit-code`` (``return``/``exit`` with a status made 0, or 0 made 1).
"""

from __future__ import annotations

import ast
import random
import re
import subprocess
from dataclasses import dataclass

# Text meant for people (a message emptied) weighs this much in the draw against 1 for any
# other mutant: tests check the lines that matter (✗, ⚠, the contract's words), not every
# sentence, so a survivor there is more often noise than a gap.
MESSAGE_WEIGHT = 0.25
NO_MUTATE = "pragma: no mutate"

# Calls whose string arguments are messages: output, logging, exceptions (by name suffix).
MESSAGE_CALLS = frozenset(
    {"print", "say", "info", "warning", "warn", "_warn", "error", "exception", "debug"}
    | {"critical", "log", "show", "fail"}
)
MESSAGE_KEYWORDS = frozenset({"help", "description", "epilog", "metavar", "usage"})
MESSAGE_SUFFIXES = ("Error", "Exception", "Warning")
TYPING_CALLS = frozenset({"cast", "TypeVar", "NewType"})

COMPARE_SWAP: dict[type[ast.cmpop], tuple[str, str]] = {
    ast.Lt: ("<", "<="),
    ast.LtE: ("<=", "<"),
    ast.Gt: (">", ">="),
    ast.GtE: (">=", ">"),
    ast.Eq: ("==", "!="),
    ast.NotEq: ("!=", "=="),
    ast.Is: ("is", "is not"),
    ast.IsNot: ("is not", "is"),
    ast.In: ("in", "not in"),
    ast.NotIn: ("not in", "in"),
}
ARITHMETIC_SWAP: dict[type[ast.operator], tuple[str, str]] = {
    ast.Add: ("+", "-"),
    ast.Sub: ("-", "+"),
    ast.Mult: ("*", "/"),
    ast.Div: ("/", "*"),
    ast.FloorDiv: ("//", "*"),
    ast.Mod: ("%", "//"),
    ast.Pow: ("**", "*"),
}
LOCK_SWAP = {"LOCK_EX": "LOCK_SH", "LOCK_SH": "LOCK_EX"}
SIMPLE_STATEMENTS = (
    ast.Expr,
    ast.Assign,
    ast.AugAssign,
    ast.AnnAssign,
    ast.Raise,
    ast.Delete,
    ast.Assert,
    ast.Break,
    ast.Continue,
)


@dataclass(frozen=True)
class Mutant:
    """One edit of one file: bytes ``start:end`` of its UTF-8 text become ``replacement``."""

    path: str  # relative to the project folder
    line: int  # 1-based, where the edit starts
    column: int  # 1-based, in characters
    operator: str
    start: int
    end: int
    replacement: str
    weight: float = 1.0

    @property
    def ident(self) -> str:
        """A name that finds this mutant again in the same code: path:line:column:operator."""
        return f"{self.path}:{self.line}:{self.column}:{self.operator}"

    def apply(self, source: bytes) -> bytes:
        """``source`` with this edit made."""
        return source[: self.start] + self.replacement.encode() + source[self.end :]

    def lines(self, source: bytes) -> tuple[str, str]:
        """The original source line(s) the edit touches and what they become, each stripped."""
        first = source.rfind(b"\n", 0, self.start) + 1
        before_end = source.find(b"\n", self.end)
        before = source[first : len(source) if before_end < 0 else before_end]
        after_at = self.start + len(self.replacement.encode())
        mutated = self.apply(source)
        after_end = mutated.find(b"\n", after_at)
        after = mutated[first : len(mutated) if after_end < 0 else after_end]
        return _one_line(before), _one_line(after)


def _one_line(text: bytes) -> str:
    """``text`` decoded, its lines stripped and joined with ' ⏎ '."""
    return " ⏎ ".join(part.strip() for part in text.decode("utf-8", "replace").splitlines())


# -- Python -----------------------------------------------------------------------------------


class _Positions:
    """Byte offsets of (line, column) positions in a UTF-8 source, as ``ast`` reports them."""

    def __init__(self, source: bytes) -> None:
        self.source = source
        self.starts = [0]
        for number, byte in enumerate(source):
            if byte == 0x0A:
                self.starts.append(number + 1)

    def offset(self, line: int, byte_column: int) -> int:
        """The offset of ``line`` (1-based) and ``byte_column`` (0-based, in bytes)."""
        return self.starts[line - 1] + byte_column

    def start(self, node: ast.AST) -> int:
        """Where ``node`` starts."""
        return self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]

    def end(self, node: ast.AST) -> int:
        """Where ``node`` ends (exclusive)."""
        return self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]

    def line_column(self, offset: int) -> tuple[int, int]:
        """The 1-based line and 1-based character column of ``offset``."""
        low, high = 0, len(self.starts) - 1
        while low < high:
            middle = (low + high + 1) // 2
            if self.starts[middle] <= offset:
                low = middle
            else:
                high = middle - 1
        prefix = self.source[self.starts[low] : offset].decode("utf-8", "replace")
        return low + 1, len(prefix) + 1


def _operator_span(gap: bytes, words: str) -> tuple[int, int] | None:
    """The byte span, within ``gap`` (the text between two operands: brackets, blanks, line
    continuations, comments and the operator alone), of the operator ``words``; None when it
    is not there."""
    code = re.sub(rb"#[^\n]*", lambda found: b" " * len(found.group()), gap)
    pattern = rb"\s+".join(re.escape(word.encode()) for word in words.split())
    if words[0].isalpha():
        pattern = rb"(?<![\w])" + pattern + rb"(?![\w])"
    found = re.search(pattern, code)
    return None if found is None else found.span()


class _PythonMutator(ast.NodeVisitor):
    """Collects every mutant of one module."""

    def __init__(self, path: str, source: bytes) -> None:
        self.path = path
        self.source = source
        self.at = _Positions(source)
        self.found: list[Mutant] = []
        self.skipped_lines = {
            number
            for number, line in enumerate(source.decode("utf-8").splitlines(), start=1)
            if NO_MUTATE in line
        }
        self.messages: set[int] = set()  # id() of string constants that are messages
        self.depth = 0  # how many functions and classes the walk is in

    # -- recording --

    def add(
        self,
        operator: str,
        start: int,
        end: int,
        replacement: str,
        *,
        weight: float = 1.0,
        where: int | None = None,
    ) -> None:
        """Record a mutant (named after offset ``where``, by default ``start``) unless its line
        is marked ``no mutate`` or it changes nothing."""
        line, column = self.at.line_column(start if where is None else where)
        if line in self.skipped_lines or self.source[start:end] == replacement.encode():
            return
        self.found.append(
            Mutant(self.path, line, column, operator, start, end, replacement, weight)
        )

    def between(self, left: ast.AST, right: ast.AST, words: str) -> tuple[int, int] | None:
        """The span of operator ``words`` between the nodes ``left`` and ``right``."""
        gap_start = self.at.end(left)
        span = _operator_span(self.source[gap_start : self.at.start(right)], words)
        return None if span is None else (gap_start + span[0], gap_start + span[1])

    # -- what is never visited --

    def visit_Module(self, node: ast.Module) -> None:
        self.body(node.body)

    def body(self, statements: list[ast.stmt]) -> None:
        """Visit a block of statements, its docstring left alone."""
        for index, statement in enumerate(statements):
            if index == 0 and _is_docstring(statement):
                continue
            self.visit(statement)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        self.depth += 1
        self.body(node.body)
        self.depth -= 1

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.visit_FunctionDef(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        for base in [*node.bases, *node.keywords]:
            self.visit(base)
        self.depth += 1
        self.body(node.body)
        self.depth -= 1

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        """f-strings are messages: their text is never mutated (nor what they format)."""

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.statement(node)
            self.visit(node.value)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.body)

    # -- statements --

    def generic_visit(self, node: ast.AST) -> None:
        if isinstance(node, SIMPLE_STATEMENTS):
            self.statement(node)
        super().generic_visit(node)

    def statement(self, node: ast.stmt) -> None:
        """``statement-deleted`` (``message-deleted`` for a call that only tells people),
        except for a module's own assignments: deleting one only breaks the import."""
        if self.depth == 0 and isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            return
        operator, weight = "statement-deleted", 1.0
        call = node.value if isinstance(node, ast.Expr) else None
        if isinstance(call, ast.Call) and _call_name(call) in MESSAGE_CALLS:
            operator, weight = "message-deleted", MESSAGE_WEIGHT
        self.add(operator, self.at.start(node), self.at.end(node), "pass", weight=weight)

    def visit_Assign(self, node: ast.Assign) -> None:
        names = {getattr(target, "id", None) for target in node.targets}
        if names & {"TYPE_CHECKING", "__slots__", "__all__"}:
            return
        self.statement(node)
        for target in node.targets:
            self.visit(target)
        self.visit(node.value)

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
            self.body(node.orelse)
            return
        self.condition(test)
        self.visit(test)
        self.body(node.body)
        self.body(node.orelse)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self.condition(node.test)
        self.generic_visit(node)

    def condition(self, test: ast.expr) -> None:
        """``if-true`` and ``if-false`` for a condition that is not a constant already."""
        if isinstance(test, ast.Constant):
            return
        start, end = self.at.start(test), self.at.end(test)
        self.add("if-true", start, end, "True", weight=0.5)
        self.add("if-false", start, end, "False", weight=0.5)

    def visit_Return(self, node: ast.Return) -> None:
        value = node.value
        if value is not None and not (isinstance(value, ast.Constant) and value.value is None):
            self.add("return-none", self.at.start(value), self.at.end(value), "None")
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        body = node.body
        if not (len(body) == 1 and isinstance(body[0], ast.Raise) and body[0].exc is None):
            self.add("handler-raises", self.at.start(body[0]), self.at.end(body[-1]), "raise")
        if node.type is not None:
            self.visit(node.type)
        self.body(body)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.statement(node)
        swap = ARITHMETIC_SWAP.get(type(node.op))
        if swap is not None:
            span = self.between(node.target, node.value, swap[0] + "=")
            if span is not None:
                self.add("arithmetic", *span, swap[1] + "=")
        self.visit(node.target)
        self.visit(node.value)

    # -- expressions --

    def visit_Compare(self, node: ast.Compare) -> None:
        left: ast.expr = node.left
        for op, right in zip(node.ops, node.comparators):
            old, new = COMPARE_SWAP[type(op)]
            span = self.between(left, right, old)
            if span is not None:
                self.add("compare", *span, new)
            left = right
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        old, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
        spans = [self.between(a, b, old) for a, b in zip(node.values, node.values[1:])]
        found = [span for span in spans if span is not None]
        if found and len(found) == len(spans):
            # Every keyword of this expression swapped, nothing between them touched.
            pieces, cursor = [], found[0][0]
            for first, last in found:
                pieces += [self.source[cursor:first].decode(), new]
                cursor = last
            self.add("and-or", found[0][0], found[-1][1], "".join(pieces))
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not):
            start, operand = self.at.start(node), self.at.start(node.operand)
            self.add("not-removed", start, operand, _opening(self.source, start, operand))
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.BitOr):
            self.flag_dropped(node)
        swap = ARITHMETIC_SWAP.get(type(node.op))
        if swap is not None and not _is_text(node.left) and not _is_text(node.right):
            span = self.between(node.left, node.right, swap[0])
            if span is not None:
                self.add("arithmetic", *span, swap[1])
        self.generic_visit(node)

    def flag_dropped(self, node: ast.BinOp) -> None:
        """``a | b`` loses ``b`` (and, at the head of a chain, ``a`` too)."""
        start, end = self.at.start(node), self.at.end(node)
        keep_left = self.operand(node.left)
        self.add("flag-dropped", start, end, keep_left, where=self.at.start(node.right))
        if not (isinstance(node.left, ast.BinOp) and isinstance(node.left.op, ast.BitOr)):
            self.add("flag-dropped", start, end, self.operand(node.right))

    def operand(self, node: ast.expr) -> str:
        """The source of ``node``, bracketed unless it is a name, an attribute or a literal."""
        text = self.source[self.at.start(node) : self.at.end(node)].decode()
        plain = isinstance(node, (ast.Name, ast.Attribute, ast.Constant))
        return text if plain else f"({text})"

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in LOCK_SWAP:
            end = self.at.end(node)
            self.add("lock-shared", end - len(node.attr), end, LOCK_SWAP[node.attr])
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        """The type arguments of ``cast``, ``TypeVar``, ``NewType`` are never evaluated as code."""
        skip = 1 if _call_name(node) in TYPING_CALLS else 0
        self.visit(node.func)
        for argument in node.args[skip:]:
            self.visit(argument)
        for keyword in node.keywords:
            self.visit(keyword)

    def mark_messages(self, node: ast.AST) -> None:
        """Note every string literal in ``node`` as a message."""
        for inner in ast.walk(node):
            if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                self.messages.add(id(inner))

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        start, end = self.at.start(node), self.at.end(node)
        written = self.source[start:end].decode()
        if isinstance(value, bool):
            self.add("bool", start, end, str(not value))
        elif isinstance(value, (int, float)):
            for operator, changed in (
                ("number+1", value + 1),
                ("number-1", value - 1),
                ("number=0", 0),
            ):
                if changed != value and not (operator == "number-1" and value == 1):
                    self.add(operator, start, end, _number(written, changed), weight=1 / 3)
        elif isinstance(value, (str, bytes)) and value:
            empty = "b''" if isinstance(value, bytes) else "''"
            if id(node) in self.messages:
                self.add("message-emptied", start, end, empty, weight=MESSAGE_WEIGHT)
            else:
                self.add("string-emptied", start, end, empty)


def _opening(source: bytes, start: int, operand: int) -> str:
    """What is left of ``not (`` when ``not`` goes: the brackets between it and its operand."""
    between = source[start:operand].decode()
    return between[len("not") :].lstrip() if between.startswith("not") else between


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _is_text(node: ast.expr) -> bool:
    """Whether ``node`` is obviously a string (``+`` is then concatenation: ``-`` just breaks)."""
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes))
    )


def _call_name(node: ast.Call) -> str:
    function = node.func
    if isinstance(function, ast.Attribute):
        return function.attr
    return function.id if isinstance(function, ast.Name) else ""


def _number(written: str, value: float) -> str:
    """``value`` in the base the literal was written in (0o600 stays octal)."""
    if isinstance(value, int) and len(written) > 1 and written[0] == "0" and written[1] in "oOxXbB":
        base = {"o": "o", "x": "x", "b": "b"}[written[1].lower()]
        return f"0{base}{value:{base}}" if value >= 0 else repr(value)
    return repr(value)


def python_mutants(path: str, source: bytes) -> list[Mutant]:
    """Every mutant of the Python module ``source`` (at ``path``), in the file's order."""
    mutator = _PythonMutator(path, source)
    tree = ast.parse(source)
    # Messages first, so a literal is known as one wherever the walk meets it.
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _call_name(node)
            if name in MESSAGE_CALLS or name.endswith(MESSAGE_SUFFIXES):
                for argument in node.args:
                    mutator.mark_messages(argument)
            for keyword in node.keywords:
                if keyword.arg in MESSAGE_KEYWORDS:
                    mutator.mark_messages(keyword.value)
    mutator.visit(tree)
    return sorted(set(mutator.found), key=lambda m: (m.start, m.end, m.operator, m.replacement))


# -- the bash wrapper -------------------------------------------------------------------------

# Lines that are not a whole simple command: compound commands' words, braces, case arms'
# ends, and declarations without a value (deleting them changes nothing but a scope).
SHELL_NOT_A_COMMAND = re.compile(
    r"^(?:(?:if|elif|else|fi|for|while|until|do|done|case|esac|then|function)\b|[{})]|;;"
    r"|(?:local|readonly)(?:\s+[\w]+)+\s*$)"
)
SHELL_OPEN_END = re.compile(r"(?:\\|\||&&|\{|\(|\bdo|\bthen|\belse|\bin|;;)\s*$")
SHELL_TEST_SWAP = {
    "-eq": "-ne",
    "-ne": "-eq",
    "-lt": "-le",
    "-le": "-lt",
    "-gt": "-ge",
    "-ge": "-gt",
    "==": "!=",
    "!=": "==",
    "-n": "-z",
    "-z": "-n",
}
SHELL_WORD = re.compile(r"(?<![\w-])(-eq|-ne|-lt|-le|-gt|-ge|==|!=|-n|-z|&&|\|\|)(?![\w=|&])")
SHELL_STATUS = re.compile(r"\b(?:return|exit)\s+(\"\$\{\w+\}\"|\$\{\w+\}|\d+)")
SHELL_NOT = re.compile(r"\b(?:if|elif|while)\s+(!\s+)")


def _unquoted_mask(text: str) -> list[bool]:
    """For each character of ``text``: is it outside quotes and comments? (A plain scanner:
    single and double quotes, backslash escapes, ``#`` starting a word; not heredocs.)"""
    mask = [False] * len(text)
    quote = ""
    index = 0
    while index < len(text):
        char = text[index]
        if quote == "'":
            quote = "" if char == "'" else quote
        elif quote == '"':
            if char == "\\":
                index += 1
            elif char == '"':
                quote = ""
        elif char == "\\":
            index += 1
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or text[index - 1] in " \t\n;"):
            newline = text.find("\n", index)
            index = len(text) if newline < 0 else newline
            continue
        else:
            mask[index] = True
        index += 1
    return mask


def shell_mutants(path: str, source: bytes) -> list[Mutant]:
    """Every mutant of the bash script ``source`` (at ``path``), in the file's order."""
    text = source.decode("utf-8")
    outside = _unquoted_mask(text)
    found: list[Mutant] = []
    start = 0  # the line's first character in ``text``
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        body = line.rstrip("\n")
        continued = text[:start].rstrip("\n").endswith("\\")
        if NO_MUTATE not in body:
            edits = _shell_line_edits(body, outside[start : start + len(body)], continued)
            first_byte = len(text[:start].encode())
            for operator, (begin, end), new, weight in edits:
                found.append(
                    Mutant(
                        path,
                        number,
                        begin + 1,
                        operator,
                        first_byte + len(body[:begin].encode()),
                        first_byte + len(body[:end].encode()),
                        new,
                        weight,
                    )
                )
        start += len(line)
    return found


def _shell_line_edits(
    body: str, free: list[bool], continued: bool
) -> list[tuple[str, tuple[int, int], str, float]]:
    """The edits of one line of bash: (operator, character span, replacement, weight).
    ``free`` tells which characters are outside quotes and comments; ``continued``, whether
    the line before ends with a backslash."""
    edits: list[tuple[str, tuple[int, int], str, float]] = []
    stripped = body.strip()
    indent = len(body) - len(body.lstrip())
    if (
        stripped
        and not stripped.startswith("#")
        and free[indent]  # not inside a string that began on an earlier line
        and not continued
        and not SHELL_NOT_A_COMMAND.match(stripped)
        and not SHELL_OPEN_END.search(stripped.split(" #")[0])
        and not re.match(r"^[\w-]+\(\)", stripped)  # a function's head
        and not re.search(r"\)\s", stripped.split(" ", 1)[0] + " ")  # a case pattern
        and _balanced(body)
    ):
        if _is_message(stripped):
            edits.append(("message-deleted", (indent, len(body)), ":", MESSAGE_WEIGHT))
        else:
            edits.append(("line-deleted", (indent, len(body)), ":", 1.0))
    for match in SHELL_WORD.finditer(body):
        if all(free[match.start() : match.end()]):
            word = match.group(1)
            if word in ("&&", "||"):
                edits.append(("and-or", match.span(), "||" if word == "&&" else "&&", 1.0))
            else:
                edits.append(("test-flipped", match.span(), SHELL_TEST_SWAP[word], 1.0))
    for match in SHELL_STATUS.finditer(body):
        if free[match.start()]:
            new = "1" if match.group(1) == "0" else "0"
            edits.append(("exit-code", match.span(1), new, 1.0))
    for match in SHELL_NOT.finditer(body):
        if free[match.start(1)]:
            edits.append(("not-removed", match.span(1), "", 1.0))
    return edits


def _is_message(command: str) -> bool:
    """Whether a line of bash only tells people something: an ``echo`` of a sentence (or of
    nothing). A function's answer (``echo "${arg}"``, ``printf '%s\\n' ...``) is not one."""
    if not (command == "echo" or command.startswith("echo ")):
        return False
    words = command[len("echo") :].split(">", 1)[0].strip()
    return not words or " " in words or words.startswith(('"✓', '"✗', '"⚠'))


def _balanced(line: str) -> bool:
    """Whether ``line`` opens as many brackets and quotes as it closes (a whole command)."""
    return line.count("(") == line.count(")") and line.count("{") == line.count("}")


# -- drawing a sample -------------------------------------------------------------------------


def is_valid(mutant: Mutant, source: bytes) -> bool:
    """Whether the mutated file still parses (Python: ``ast``; bash: ``bash -n``)."""
    mutated = mutant.apply(source)
    if mutant.path.endswith(".py"):
        try:
            ast.parse(mutated)
        except SyntaxError:
            return False
        return True
    done = subprocess.run(
        ["bash", "-n"], input=mutated, capture_output=True, check=False, timeout=30
    )
    return done.returncode == 0


def draw(
    mutants: list[Mutant], source: bytes, count: int, generator: random.Random
) -> list[Mutant]:
    """``count`` valid mutants of one file, drawn with their weights, one per line while
    lines last; in the file's order."""
    # Weighted sampling without replacement: the largest u ** (1 / weight) first.
    keyed = sorted(mutants, key=lambda m: generator.random() ** (1 / m.weight), reverse=True)
    chosen: list[Mutant] = []
    lines: set[int] = set()
    for second_pass in (False, True):
        for mutant in keyed:
            if len(chosen) >= count:
                break
            if mutant in chosen or (not second_pass and mutant.line in lines):
                continue
            if is_valid(mutant, source):
                chosen.append(mutant)
                lines.add(mutant.line)
    return sorted(chosen, key=lambda m: (m.start, m.operator))
