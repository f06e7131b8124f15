"""Evaluating `${{ }}` expressions, and the questions the rest of runner asks of them.
Parsed by `runner.expressions.parser`, never `eval`'d; value rules in
`runner.expressions.values`; finding and static checks in `runner.expressions.check`.
Everything here is used through the package namespace, `runner.expressions`.

    evaluate(source, contexts, fns)     value of one expression (the inside of `${{ }}`)
    interpolate(text, contexts, fns)    text with each `${{ }}` replaced by its string value
    evaluate_condition(text, ...)       an `if:`, bare or wrapped in `${{ }}`
    has_status_function(text)           does an `if:` call success()/failure()/...?
    referenced_members(text, context)   e.g. the secret names a text reads

Status functions (`success()` ...) and `hashFiles()` are supplied by the caller; the other
functions are built in. Context and function names are case-insensitive, and so are object
keys. `evaluate_condition` on a text that is not one whole expression (`${{ a }} && b`)
interpolates it and tests the resulting string, which (as on GitHub) is true whenever it is
not empty.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from runner.expressions import values as V
from runner.expressions.check import (
    SIGNATURES,
    STATUS_FUNCTIONS,
    arity_problem,
    find_expressions,
    scan,
)
from runner.expressions.parser import (
    Access,
    Call,
    Compare,
    Context,
    ExpressionError,
    Group,
    Index,
    Literal,
    Logical,
    Node,
    Not,
    Prop,
    Star,
    parse,
)

to_string = V.to_string
truthy = V.truthy

_BUILTINS: dict[str, Callable[..., Any]] = {
    "contains": V.fn_contains,
    "startswith": V.fn_starts_with,
    "endswith": V.fn_ends_with,
    "format": V.fn_format,
    "join": V.fn_join,
    "tojson": V.fn_to_json,
    "fromjson": V.fn_from_json,
}
Functions = Mapping[str, Callable[..., Any]]


# ---------------------------------------------------------------------------- queries


def _nodes(text: str, bare: bool) -> list[Node]:
    if bare and "${{" not in text:
        return [parse(text)]
    return [parse(inner) for _, inner in find_expressions(text)]


def _walk(node: Node) -> list[Node]:
    """node and every node below it."""
    out: list[Node] = []
    stack = [node]
    while stack:
        n = stack.pop()
        out.append(n)
        if isinstance(n, Access):
            stack.append(n.base)
            stack.extend(a.expr for a in n.accessors if isinstance(a, Index))
        elif isinstance(n, Call):
            stack.extend(n.args)
        elif isinstance(n, Group):
            stack.append(n.inner)
        elif isinstance(n, Not):
            stack.append(n.operand)
        elif isinstance(n, Compare):
            stack.extend((n.left, n.right))
        elif isinstance(n, Logical):
            stack.extend(n.operands)
    return out


def has_status_function(text: str, *, bare: bool = True) -> bool:
    """Whether an `if:` calls success()/failure()/always()/cancelled(); when it does not,
    GitHub evaluates it as `success() && (...)`. ExpressionError on bad syntax."""
    return any(
        isinstance(n, Call) and n.name.lower() in STATUS_FUNCTIONS
        for node in _nodes(text, bare)
        for n in _walk(node)
    )


def referenced_members(text: str, context: str, *, bare: bool = False) -> frozenset[str]:
    """The members of `context` that text reads by name: `secrets.A`, `secrets['B']` ->
    {"A", "B"}. A computed member (`secrets[inputs.x]`) or the whole context (`secrets`,
    `secrets.*`) adds "*". ExpressionError on bad syntax."""
    wanted = context.lower()
    found: set[str] = set()
    for node in _nodes(text, bare):
        accessed: set[int] = set()
        for n in _walk(node):
            if not isinstance(n, Access) or not isinstance(n.base, Context):
                continue
            if n.base.name.lower() != wanted:
                continue
            accessed.add(id(n.base))
            first = n.accessors[0]
            if isinstance(first, Prop):
                found.add(first.name)
            elif isinstance(first, Index) and isinstance(first.expr, Literal):
                found.add(to_string(first.expr.value))
            else:
                found.add("*")
        for n in _walk(node):
            if isinstance(n, Context) and n.name.lower() == wanted and id(n) not in accessed:
                found.add("*")
    return frozenset(found)


# ---------------------------------------------------------------------------- evaluation


class _Evaluator:
    def __init__(self, contexts: Mapping[str, Any], functions: Functions | None) -> None:
        self.contexts = contexts
        self.functions = {k.lower(): f for k, f in (functions or {}).items()}

    def ev(self, node: Node) -> Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Access):
            value = self.ev(node.base)
            for acc in node.accessors:
                if isinstance(acc, Prop):
                    value = V.index(value, acc.name, False)
                elif isinstance(acc, Star):
                    value = V.index(value, None, True)
                else:
                    value = V.index(value, self.ev(acc.expr), False)
            return value
        if isinstance(node, Logical):
            want = node.op == "||"
            value = None
            for operand in node.operands:
                value = self.ev(operand)
                if V.truthy(value) is want:
                    return value
            return value
        if isinstance(node, Compare):
            return V.compare(node.op, self.ev(node.left), self.ev(node.right))
        if isinstance(node, Not):
            return not V.truthy(self.ev(node.operand))
        if isinstance(node, Context):
            return self.context(node)
        if isinstance(node, Group):
            return self.ev(node.inner)
        return self.call(node)

    def context(self, node: Context) -> Any:
        try:
            return self.contexts[node.name]
        except KeyError:
            pass
        name = node.name.lower()
        for key, value in self.contexts.items():
            if isinstance(key, str) and key.lower() == name:
                return value
        raise ExpressionError(f"unknown context '{node.name}'", node.offset)

    def call(self, node: Call) -> Any:
        name = node.name.lower()
        signature = SIGNATURES.get(name)
        if signature is not None:
            problem = arity_problem(signature, len(node.args))
            if problem:
                raise ExpressionError(problem, node.offset)
        fn = self.functions.get(name) or _BUILTINS.get(name)
        if fn is None:
            shown = signature[0] if signature else node.name
            what = "is not available here" if signature else "is unknown"
            raise ExpressionError(f"function '{shown}()' {what}", node.offset)
        args = [self.ev(arg) for arg in node.args]
        try:
            return fn(*args)
        except ExpressionError as exc:
            if name in _BUILTINS:
                raise ExpressionError(exc.message, node.offset, hint=exc.hint) from None
            raise


def evaluate(source: str, contexts: Mapping[str, Any], functions: Functions | None = None) -> Any:
    """The value of one expression (the inside of `${{ }}`); ExpressionError (offsets into
    source) on bad syntax or an unknown context or function."""
    return evaluate_node(parse(source), contexts, functions)


def evaluate_node(
    node: Node, contexts: Mapping[str, Any], functions: Functions | None = None
) -> Any:
    """The value of a parsed expression (see `parse`)."""
    value = _Evaluator(contexts, functions).ev(node)
    return list(value) if isinstance(value, V.Filtered) else value


def interpolate(text: str, contexts: Mapping[str, Any], functions: Functions | None = None) -> str:
    """text with every `${{ }}` replaced by the string of its value (offsets into text)."""
    found = find_expressions(text)
    if not found:
        return text
    evaluator = _Evaluator(contexts, functions)
    parts: list[str] = []
    pos = 0
    for start, inner in found:
        parts.append(text[pos:start])
        try:
            value = evaluator.ev(parse(inner))
        except ExpressionError as exc:
            raise exc.shifted(start + 3) from None
        parts.append(V.to_string(value))
        pos = start + 3 + len(inner) + 2
    parts.append(text[pos:])
    return "".join(parts)


def evaluate_condition(
    text: str, contexts: Mapping[str, Any], functions: Functions | None = None
) -> bool:
    """An `if:`: a bare expression or one whole `${{ }}`. Anything else (text around or
    between several `${{ }}`) is interpolated and true when the string is not empty, which
    is GitHub's behaviour. Applying the default `success() &&` is the caller's job."""
    found, error = scan(text)
    if error is not None:
        raise error
    if not found:
        return V.truthy(evaluate(text, contexts, functions))
    if len(found) == 1:
        start, end, inner = found[0]
        if not text[:start].strip() and not text[end:].strip():
            try:
                return V.truthy(evaluate(inner, contexts, functions))
            except ExpressionError as exc:
                raise exc.shifted(start + 3) from None
    return V.truthy(interpolate(text, contexts, functions))
