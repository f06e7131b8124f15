"""Findings: one problem (or note) about one place in one file.

Every stage that judges a user's file (YAML loading, the schema, semantic checks,
expressions, security checks, policy) reports `Finding`s; `validate` sorts and prints them
as `path:line:col: keypath: message [rule]`, or as JSON objects with the same fields.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int  # 1-based; 0 when the problem concerns the whole file
    col: int  # 1-based; 0 when unknown
    message: str
    rule: str
    keypath: str = ""  # e.g. "jobs.test.steps[1].run"; "" for the document
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        where = f"{self.keypath}: " if self.keypath else ""
        tag = "" if self.severity is Severity.ERROR else f"{self.severity.value}: "
        return f"{self.path}:{self.line}:{self.col}: {tag}{where}{self.message} [{self.rule}]"

    def serialize(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "line": self.line,
            "col": self.col,
            "keypath": self.keypath,
            "message": self.message,
            "rule": self.rule,
            "severity": self.severity.value,
        }


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Stable, reader-friendly order: by file, line, column, then rule; duplicates dropped."""
    return sorted(set(findings), key=lambda f: (f.path, f.line, f.col, f.rule, f.message))


def errors_in(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity is Severity.ERROR]
