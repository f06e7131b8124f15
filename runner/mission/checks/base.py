"""What every semantic check of a mission shares: the document, the findings, helpers.

The checks never trust a value's type (they run even after schema errors), hence the
`dict_of` / `list_of` / `names_of` accessors.
"""

from __future__ import annotations

from typing import Any

from runner import expressions as ex
from runner.findings import Finding, Severity
from runner.mission.yaml_loader import YamlDocument


def dict_of(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def list_of(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def names_of(value: Any) -> list[str]:
    """`needs: a` or `needs: [a, b]` -> names (other shapes were reported by the schema)."""
    if isinstance(value, str):
        return [value]
    return [v for v in list_of(value) if isinstance(v, str)]


def one_expression(text: str) -> bool:
    """True when text is exactly one `${{ ... }}` and nothing else."""
    if not (text.startswith("${{") and text.endswith("}}")):
        return False
    try:
        found = ex.find_expressions(text)
    except ex.ExpressionError:
        return False
    return len(found) == 1


def show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


class Reporter:
    """The document being checked and the findings so far."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.findings: list[Finding] = []
        self.inputs: frozenset[str] | None = None  # declared inputs; None: none declared

    # -- reporting ------------------------------------------------------------------------

    def add(
        self,
        keypath: str,
        message: str,
        rule: str,
        severity: Severity = Severity.ERROR,
        *,
        key: bool = False,
        at: tuple[int, int] | None = None,
    ) -> None:
        line, col = at or (self.doc.key_at(keypath) if key else self.doc.at(keypath))
        self.findings.append(Finding(self.doc.path, line, col, message, rule, keypath, severity))

    def note(self, keypath: str, message: str) -> None:
        self.add(keypath, message, "github-only", Severity.NOTE, key=True)
