"""All of runner's output to the user goes through here.

`Output` knows whether stdout is a terminal (live view, colour) or not (plain lines for CI
logs), and whether the user asked for JSON. Every byte passes through the redactor that
the run installs (`Output.redactor`), so that no secret reaches a terminal or a CI log.
Tests capture output by giving `Output` their own streams.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

from runner.findings import Finding, Severity

ColorMode = Literal["auto", "always", "never"]

_COLORS = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "dim": "2", "bold": "1"}


def _identity(text: str) -> str:
    return text


@dataclass
class Output:
    json_mode: bool = False
    color: ColorMode = "auto"
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    redactor: Callable[[str], str] = _identity

    @property
    def is_tty(self) -> bool:
        isatty = getattr(self.stdout, "isatty", None)
        return bool(isatty and isatty()) and os.environ.get("CI", "") in ("", "0", "false")

    @property
    def use_color(self) -> bool:
        if self.color == "always":
            return True
        if self.color == "never" or "NO_COLOR" in os.environ:
            return False
        return self.is_tty

    def paint(self, text: str, color: str) -> str:
        if not self.use_color or color not in _COLORS:
            return text
        return f"\x1b[{_COLORS[color]}m{text}\x1b[0m"

    def line(self, text: str = "") -> None:
        """A line for humans on stdout (suppressed in JSON mode)."""
        if not self.json_mode:
            self.stdout.write(self.redactor(text) + "\n")
            self.stdout.flush()

    def raw(self, text: str) -> None:
        """Text on stdout whatever the mode (replayed logs, exported documents)."""
        self.stdout.write(self.redactor(text))
        self.stdout.flush()

    def error(self, text: str) -> None:
        """A message on stderr, in every mode."""
        self.stderr.write(self.redactor(text) + "\n")
        self.stderr.flush()

    def progress(self, text: str) -> None:
        """How a long command is getting on, on stderr in every mode: stdout keeps the
        command's result alone (its lines, or its JSON document)."""
        self.stderr.write(self.redactor(text) + "\n")
        self.stderr.flush()

    def json(self, document: Any) -> None:
        """The machine-readable result of a command: one JSON document on stdout."""
        text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, default=str)
        self.stdout.write(self.redactor(text) + "\n")
        self.stdout.flush()

    def findings(self, findings: Iterable[Finding]) -> None:
        colors = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.NOTE: "dim"}
        for finding in findings:
            self.line(self.paint(str(finding), colors[finding.severity]))
