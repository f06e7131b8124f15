"""GitHub Actions `${{ }}` expressions: find, check statically, evaluate; never `eval`.

`parser` (tokenizer, AST, grammar), `values` (GitHub's value and coercion rules), `check`
(static checks and scopes), `evaluate` (the evaluator). This package's namespace is the
one way in for the rest of runner.
May import: only the base modules (`errors`, `findings`).
"""

from __future__ import annotations

from runner.expressions.check import (
    FUNCTIONS,
    KNOWN_CONTEXTS,
    STATUS_FUNCTIONS,
    Problem,
    Scope,
    check,
    find_expressions,
)
from runner.expressions.evaluate import (
    evaluate,
    evaluate_condition,
    evaluate_node,
    has_status_function,
    interpolate,
    referenced_members,
    to_string,
    truthy,
)
from runner.expressions.parser import ExpressionError, parse, to_source

__all__ = [
    "FUNCTIONS",
    "KNOWN_CONTEXTS",
    "STATUS_FUNCTIONS",
    "ExpressionError",
    "Problem",
    "Scope",
    "check",
    "evaluate",
    "evaluate_condition",
    "evaluate_node",
    "find_expressions",
    "has_status_function",
    "interpolate",
    "parse",
    "referenced_members",
    "to_source",
    "to_string",
    "truthy",
]
