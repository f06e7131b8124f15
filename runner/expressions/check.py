"""Static checking of `${{ }}` expressions: finding them in text, the names known at a
place (`Scope`), and every problem of every expression (`check`), with offsets into the
text. Unknown contexts, unknown or unavailable functions, wrong argument counts, step ids
and `needs` jobs that do not exist, unknown inputs, a property `needs.<job>` or
`steps.<id>` does not have (`needs.build.reslt`), an output a needed job does not declare
(`needs.build.outputs.vrsion`, with "did you mean"), a `format()` placeholder without its
argument and a literal `fromJSON()` argument that is not JSON are errors; an undefined
matrix key (and any in a job without a matrix, where `matrix` is empty) and a `format()`
argument its string never uses are warnings. Results are cached by (text, scope).
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from dataclasses import dataclass

from runner.expressions.parser import (
    Access,
    Call,
    Compare,
    Context,
    ExpressionError,
    Group,
    Index,
    Literal,
    Node,
    Not,
    Prop,
    Star,
    parse,
)
from runner.findings import Severity

STATUS_FUNCTIONS = frozenset({"success", "failure", "always", "cancelled"})
KNOWN_CONTEXTS = frozenset(
    {
        "env",
        "secrets",
        "vars",
        "matrix",
        "strategy",
        "steps",
        "needs",
        "inputs",
        "job",
        "jobs",
        "runner",
        "mission",
        "github",
    }
)
# lower-case name -> (name as documented, min args, max args)
SIGNATURES: dict[str, tuple[str, int, int]] = {
    "contains": ("contains", 2, 2),
    "startswith": ("startsWith", 2, 2),
    "endswith": ("endsWith", 2, 2),
    "format": ("format", 1, 255),
    "join": ("join", 1, 2),
    "tojson": ("toJSON", 1, 1),
    "fromjson": ("fromJSON", 1, 1),
    "hashfiles": ("hashFiles", 1, 255),
    "success": ("success", 0, 0),
    "failure": ("failure", 0, 0),
    "always": ("always", 0, 0),
    "cancelled": ("cancelled", 0, 0),
}
FUNCTIONS = frozenset(sig[0] for sig in SIGNATURES.values())  # every function known
RULE = "expression"


@dataclass(frozen=True)
class Problem:
    message: str
    rule: str
    offset: int  # 0-based into the text given to `check`
    severity: Severity = Severity.ERROR


@dataclass(frozen=True)
class Scope:
    """What an expression at one place may use. Names compare case-insensitively."""

    contexts: frozenset[str]
    functions: frozenset[str]
    step_ids: frozenset[str] | None = None  # None: do not check `steps.<id>`
    needs: frozenset[str] | None = None
    matrix_keys: frozenset[str] | None = None  # None: unknown/dynamic matrix, no warning
    inputs: frozenset[str] | None = None
    # the outputs each needed job declares (None for a job whose outputs are not known)
    needs_outputs: tuple[tuple[str, frozenset[str] | None], ...] | None = None


PROPERTIES = {  # what `needs.<job>` and `steps.<id>` have
    "needs": ("outputs", "result"),
    "steps": ("outputs", "outcome", "conclusion"),
}
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{(\d+)\}")


# ---------------------------------------------------------------------------- finding


def scan(text: str) -> tuple[list[tuple[int, int, str]], ExpressionError | None]:
    """(start of `${{`, end after `}}`, inner) of each expression; the error ends the scan."""
    found: list[tuple[int, int, str]] = []
    pos = 0
    while True:
        start = text.find("${{", pos)
        if start < 0:
            return found, None
        i = start + 3
        n = len(text)
        why = ""
        while True:
            close = text.find("}}", i)
            quote = text.find("'", i, close if close >= 0 else n)
            if quote < 0:
                break
            end_quote = _string_end(text, quote)
            if end_quote < 0:
                close = -1
                why = f" (the string started at {quote} is not closed)"
                break
            i = end_quote + 1
        if close < 0:
            return found, ExpressionError(
                f"unterminated expression: '${{{{' has no closing '}}}}'{why}", start
            )
        found.append((start, close + 2, text[start + 3 : close]))
        pos = close + 2


def _string_end(text: str, quote: int) -> int:
    """Offset of the quote closing the string opened at `quote` (`''` escapes); -1 if none."""
    i = quote + 1
    while True:
        end = text.find("'", i)
        if end < 0 or not text.startswith("'", end + 1):
            return end
        i = end + 2


def find_expressions(text: str) -> list[tuple[int, str]]:
    """Every `${{ ... }}` in text as (offset of `${{`, inner source). A `}}` inside a
    quoted string does not close; an unterminated one raises ExpressionError."""
    found, error = scan(text)
    if error is not None:
        raise error
    return [(start, inner) for start, _, inner in found]


# ---------------------------------------------------------------------------- checking


def check(text: str, scope: Scope, *, bare: bool = False) -> list[Problem]:
    """Every problem of every expression in text, with offsets into text. bare=True (an
    `if:`): a text without `${{` is itself one expression; one with `${{` is read as
    `evaluate_condition` reads it, as text holding expressions."""
    try:
        return list(_check(text, scope, bare))
    except TypeError:  # a Scope built with mutable sets cannot be a cache key
        return list(_check.__wrapped__(text, scope, bare))


@functools.lru_cache(maxsize=16384)
def _check(text: str, scope: Scope, bare: bool) -> tuple[Problem, ...]:
    if bare and "${{" not in text:
        sources = [(0, text)]
        error = None
    else:
        found, error = scan(text)
        sources = [(start + 3, inner) for start, _, inner in found]
    problems: list[Problem] = []
    checker = _Checker(scope, problems)
    for base, source in sources:
        try:
            node = parse(source)
        except ExpressionError as exc:
            problems.append(Problem(exc.message, RULE, base + exc.offset))
            continue
        checker.base = base
        checker.walk(node)
    if error is not None:
        problems.append(Problem(error.message, RULE, error.offset))
    return tuple(problems)


def _listing(names: frozenset[str] | None) -> str:
    return ", ".join(sorted(names)) if names else "none"


class _Checker:
    def __init__(self, scope: Scope, problems: list[Problem]) -> None:
        self.scope = scope
        self.problems = problems
        self.base = 0
        self.contexts = {c.lower() for c in scope.contexts}
        self.functions = {f.lower() for f in scope.functions}

    def add(self, message: str, offset: int, severity: Severity = Severity.ERROR) -> None:
        self.problems.append(Problem(message, RULE, self.base + offset, severity))

    def walk(self, node: Node) -> None:
        if isinstance(node, Literal):
            return
        if isinstance(node, Context):
            self.context(node)
        elif isinstance(node, Access):
            self.access(node)
        elif isinstance(node, Call):
            self.call(node)
        elif isinstance(node, Group):
            self.walk(node.inner)
        elif isinstance(node, Not):
            self.walk(node.operand)
        elif isinstance(node, Compare):
            self.walk(node.left)
            self.walk(node.right)
        else:
            for operand in node.operands:
                self.walk(operand)

    def context(self, node: Context) -> bool:
        name = node.name.lower()
        if name in self.contexts:
            return True
        available = _listing(self.scope.contexts)
        if name in KNOWN_CONTEXTS:
            self.add(
                f"context '{node.name}' is not available here (available: {available})", node.offset
            )
        else:
            self.add(f"unknown context '{node.name}' (available here: {available})", node.offset)
        return False

    def access(self, node: Access) -> None:
        base = node.base
        if isinstance(base, Context):
            if self.context(base) and self.member(base.name.lower(), node.accessors[0]):
                self.deeper(base.name.lower(), node.accessors)
        else:
            self.walk(base)
        for acc in node.accessors:
            if isinstance(acc, Index):
                self.walk(acc.expr)

    def member(self, context: str, acc: Prop | Index | Star) -> bool:
        """Checks the first key read from `context`; whether it exists (as far as known)."""
        named = _named(acc)
        if named is None:
            return False
        key, offset = named
        scope = self.scope
        if context == "steps" and scope.step_ids is not None and not _has(scope.step_ids, key):
            self.add(f"no step with id '{key}' here (step ids: {_listing(scope.step_ids)})", offset)
        elif context == "needs" and scope.needs is not None and not _has(scope.needs, key):
            self.add(f"job '{key}' is not in needs (needs: {_listing(scope.needs)})", offset)
        elif context == "inputs" and scope.inputs is not None and not _has(scope.inputs, key):
            self.add(f"no input named '{key}' (inputs: {_listing(scope.inputs)})", offset)
        elif (
            context == "matrix"
            and scope.matrix_keys is not None
            and not _has(scope.matrix_keys, key)
        ):
            if scope.matrix_keys:
                why = f"matrix key '{key}' is not defined (matrix keys: {_listing(scope.matrix_keys)})"
            else:
                why = f"the job has no matrix: matrix.{key} evaluates to empty"
            self.add(why, offset, Severity.WARNING)
        else:
            return True
        return False

    def deeper(self, context: str, accessors: tuple[Prop | Index | Star, ...]) -> None:
        """`needs.<job>.<property>` and `steps.<id>.<property>`, and the outputs a needed
        job declares (`needs.<job>.outputs.<name>`)."""
        known = PROPERTIES.get(context)
        unchecked = self.scope.step_ids if context == "steps" else self.scope.needs
        if unchecked is None:
            return
        owner = _named(accessors[0])
        prop = _named(accessors[1]) if len(accessors) > 1 else None
        if known is None or owner is None or prop is None:
            return
        if prop[0].lower() not in known:
            self.add(
                f"{context}.{owner[0]} has no property '{prop[0]}' (it has {', '.join(known)})"
                + _did_you_mean(prop[0], known),
                prop[1],
            )
            return
        output = _named(accessors[2]) if len(accessors) > 2 else None
        if context != "needs" or prop[0].lower() != "outputs" or output is None:
            return
        declared = dict(self.scope.needs_outputs or ())
        outputs = next((v for k, v in declared.items() if k.lower() == owner[0].lower()), None)
        if outputs is not None and not _has(outputs, output[0]):
            self.add(
                f"job '{owner[0]}' declares no output '{output[0]}' (outputs: "
                f"{_listing(outputs)}), so it would evaluate to empty"
                + _did_you_mean(output[0], outputs),
                output[1],
            )

    def call(self, node: Call) -> None:
        name = node.name.lower()
        signature = SIGNATURES.get(name)
        if signature is None and name not in self.functions:
            self.add(f"unknown function '{node.name}()'", node.offset)
        elif name not in self.functions:
            self.add(
                f"function '{signature[0] if signature else node.name}()' is not available here",
                node.offset,
            )
        if signature is not None:
            problem = arity_problem(signature, len(node.args))
            if problem:
                self.add(problem, node.offset)
        literal = node.args[0] if node.args and isinstance(node.args[0], Literal) else None
        if literal is not None and isinstance(literal.value, str):
            if name == "format":
                self.placeholders(literal.value, len(node.args) - 1, literal.offset)
            elif name == "fromjson" and len(node.args) == 1:
                try:
                    json.loads(literal.value)
                except ValueError as exc:
                    self.add(f"fromJSON() of a literal that is not JSON: {exc}", literal.offset)
        for arg in node.args:
            self.walk(arg)

    def placeholders(self, text: str, given: int, offset: int) -> None:
        """format(): each `{N}` needs its argument; an argument no `{N}` uses is a warning."""
        used = {int(m.group(1)) for m in _PLACEHOLDER.finditer(text) if m.group(1) is not None}
        missing = sorted(i for i in used if i >= given)
        if missing:
            self.add(
                f"format() string uses {{{missing[-1]}}} but is given {given} argument"
                f"{'s' if given != 1 else ''} after it (placeholders count from {{0}})",
                offset,
            )
        unused = sorted(set(range(given)) - used)
        if unused:
            self.add(
                f"format() string has no placeholder {{{unused[0]}}}: its argument is never used",
                offset,
                Severity.WARNING,
            )


def _named(acc: Prop | Index | Star) -> tuple[str, int] | None:
    """The key an accessor reads and its offset (`.NAME`, `['NAME']`); None when computed."""
    if isinstance(acc, Prop):
        return acc.name, acc.offset
    if isinstance(acc, Index) and isinstance(acc.expr, Literal) and isinstance(acc.expr.value, str):
        return acc.expr.value, acc.expr.offset
    return None


def _did_you_mean(word: str, choices: tuple[str, ...] | frozenset[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _has(names: frozenset[str], key: str) -> bool:
    if key in names:
        return True
    folded = key.lower()
    return any(n.lower() == folded for n in names)


def arity_problem(signature: tuple[str, int, int], count: int) -> str | None:
    name, low, high = signature
    if low <= count <= high:
        return None
    if low == high:
        wanted = f"{low} argument{'s' if low != 1 else ''}"
    elif high == 255:
        wanted = f"at least {low} argument{'s' if low != 1 else ''}"
    else:
        wanted = f"{low} to {high} arguments"
    return f"{name}() takes {wanted}, got {count}"
