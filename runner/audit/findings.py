"""What `audit verify` reports: finding codes, findings, the report, and the collector
that keeps the first occurrence (lowest seq) of each code in each file and counts the
rest there; and `LedgerRefused`, the writer's refusal to sign, which carries a finding.

Errors are of two kinds. Evidence of tampering: a line, link, signature or checkpoint
that is not what was signed. And what verify cannot prove: entries no checkpoint covers
at all (NO_CHECKPOINT), an anchor that is not a usable checkpoint (BAD_ANCHOR). Both
fail verification (exit 1); only the first is called tampering.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from runner.audit.files import ENTRIES
from runner.errors import VerificationFailed


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
    MISSING_CHECKPOINT = "MISSING_CHECKPOINT"
    NO_CHECKPOINT = "NO_CHECKPOINT"
    BAD_ANCHOR = "BAD_ANCHOR"
    NO_RECORD = "NO_RECORD"
    INCOMPLETE_TAIL = "INCOMPLETE_TAIL"
    UNSEALED_TAIL = "UNSEALED_TAIL"
    UNANCHORED = "UNANCHORED"

    @property
    def is_warning(self) -> bool:
        return self in _WARNINGS

    @property
    def is_tampering(self) -> bool:
        """An error that is evidence of tampering (not merely something unproven)."""
        return not self.is_warning and self not in _UNPROVEN

    def serialize(self) -> str:
        return self.value


_WARNINGS = frozenset({Code.INCOMPLETE_TAIL, Code.UNSEALED_TAIL, Code.UNANCHORED})
_UNPROVEN = frozenset({Code.NO_CHECKPOINT, Code.BAD_ANCHOR, Code.NO_RECORD})


@dataclass(frozen=True)
class LedgerFinding:
    code: Code
    seq: int | None  # the first bad entry's seq (line index), None when not about one
    offset: int | None  # byte offset in `file`
    message: str
    file: str = ENTRIES
    count: int = 1  # how many times this code was found in this file

    @property
    def severity(self) -> str:
        return "warning" if self.code.is_warning else "error"

    def __str__(self) -> str:
        where = []
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        if self.offset is not None:
            where.append(f"{self.file} byte {self.offset}")
        elif self.file and self.file != ENTRIES:
            where.append(self.file)
        more = f" ({self.count - 1} more in {self.file})" if self.count > 1 else ""
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
    anchored: bool  # the entries extend at least one trusted anchor
    anchors: tuple[tuple[str, int], ...] = ()  # (source, trusted checkpoints of this ledger)
    tampered: bool = False  # an error that is evidence of tampering (not a bad anchor)

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
            "anchors": [{"source": source, "checkpoints": n} for source, n in self.anchors],
            "tampered": self.tampered,
            "root": self.root,
            "findings": [f.serialize() for f in self.findings],
        }


@dataclass
class Collector:
    """Keeps, per code and file, the first finding (lowest seq) and how many there were:
    a count never stands for findings in another file, which are listed on their own."""

    first: dict[tuple[Code, str], LedgerFinding] = field(default_factory=dict)
    counts: dict[tuple[Code, str], int] = field(default_factory=dict)

    def add(
        self,
        code: Code,
        seq: int | None,
        offset: int | None,
        message: str,
        file: str = ENTRIES,
    ) -> None:
        key = (code, file)
        self.counts[key] = self.counts.get(key, 0) + 1
        known = self.first.get(key)
        earlier = (
            known is not None and seq is not None and known.seq is not None and seq < known.seq
        )
        if known is None or earlier:
            self.first[key] = LedgerFinding(code, seq, offset, message, file)

    def has_errors(self) -> bool:
        return any(not code.is_warning for code, _ in self.first)

    def findings(self) -> tuple[LedgerFinding, ...]:
        result = [
            LedgerFinding(f.code, f.seq, f.offset, f.message, f.file, self.counts[key])
            for key, f in self.first.items()
        ]
        order = list(Code)
        result.sort(
            key=lambda f: (
                f.code.is_warning,
                order.index(f.code),
                f.seq if f.seq is not None else -1,
                f.file,
            )
        )
        return tuple(result)


class LedgerRefused(VerificationFailed):
    """The writer will not sign (or export) because the ledger does not extend what
    runner last signed, or cannot be checked against it (exit 1). `finding` says why."""

    def __init__(
        self,
        finding: LedgerFinding,
        *,
        action: str = "sign the audit ledger",
        hint: str | None = None,
    ) -> None:
        where = f" (seq {finding.seq})" if finding.seq is not None else ""
        super().__init__(
            f"refusing to {action}: {finding.code.value}{where}: {finding.message}", hint=hint
        )
        self.finding = finding
