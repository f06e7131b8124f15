"""What `audit verify` reports: finding codes, findings, the report, and the collector
that keeps the first occurrence (lowest seq) of each code and counts the rest."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from runner.audit.files import ENTRIES


class Code(enum.Enum):
    UNPARSEABLE = "UNPARSEABLE"
    SEQ_MISMATCH = "SEQ_MISMATCH"
    CHAIN_BREAK = "CHAIN_BREAK"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    UNTRUSTED_KEY = "UNTRUSTED_KEY"
    REVOKED_KEY = "REVOKED_KEY"
    CHECKPOINT_MISMATCH = "CHECKPOINT_MISMATCH"
    TRUNCATED = "TRUNCATED"
    FOREIGN_ENTRY = "FOREIGN_ENTRY"
    INCOMPLETE_TAIL = "INCOMPLETE_TAIL"
    UNSEALED_TAIL = "UNSEALED_TAIL"
    UNANCHORED = "UNANCHORED"

    @property
    def is_warning(self) -> bool:
        return self in _WARNINGS

    def serialize(self) -> str:
        return self.value


_WARNINGS = frozenset({Code.INCOMPLETE_TAIL, Code.UNSEALED_TAIL, Code.UNANCHORED})


@dataclass(frozen=True)
class LedgerFinding:
    code: Code
    seq: int | None  # the first bad entry's seq (line index), None when not about one
    offset: int | None  # byte offset in `file`
    message: str
    file: str = ENTRIES
    count: int = 1  # how many times this code was found

    @property
    def severity(self) -> str:
        return "warning" if self.code.is_warning else "error"

    def __str__(self) -> str:
        where = []
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        if self.offset is not None:
            where.append(f"{self.file} byte {self.offset}")
        more = f" ({self.count - 1} more)" if self.count > 1 else ""
        place = f" [{', '.join(where)}]" if where else ""
        return f"{self.severity}: {self.code.value}{place}: {self.message}{more}"

    def serialize(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "severity": self.severity,
            "seq": self.seq,
            "offset": self.offset,
            "file": self.file,
            "count": self.count,
            "message": self.message,
        }


@dataclass(frozen=True)
class Report:
    entries: int
    checkpoints: int
    findings: tuple[LedgerFinding, ...]
    root: str  # hex root of all complete entries
    sealed: int  # entries covered by a good, trusted checkpoint
    anchored: bool

    @property
    def ok(self) -> bool:
        return not any(not f.code.is_warning for f in self.findings)

    def codes(self) -> set[Code]:
        return {f.code for f in self.findings}

    def serialize(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "sealed": self.sealed,
            "anchored": self.anchored,
            "root": self.root,
            "findings": [f.serialize() for f in self.findings],
        }


@dataclass
class Collector:
    first: dict[Code, LedgerFinding] = field(default_factory=dict)
    counts: dict[Code, int] = field(default_factory=dict)

    def add(
        self,
        code: Code,
        seq: int | None,
        offset: int | None,
        message: str,
        file: str = ENTRIES,
    ) -> None:
        self.counts[code] = self.counts.get(code, 0) + 1
        known = self.first.get(code)
        earlier = (
            known is not None and seq is not None and known.seq is not None and seq < known.seq
        )
        if known is None or earlier:
            self.first[code] = LedgerFinding(code, seq, offset, message, file)

    def findings(self) -> tuple[LedgerFinding, ...]:
        result = [
            LedgerFinding(f.code, f.seq, f.offset, f.message, f.file, self.counts[f.code])
            for f in self.first.values()
        ]
        order = list(Code)
        result.sort(key=lambda f: (f.code.is_warning, order.index(f.code)))
        return tuple(result)
