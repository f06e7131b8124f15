"""The writer's checks that the ledger on disk continues what runner last signed (its
record, runner/audit/head.py), and that each line appended since is one runner could have
written. `runner.audit.ledger` refuses to sign (LedgerRefused) on the first problem
these return; `audit verify` makes the same checks and more, from scratch.

    check_head  the same origin; at least the bytes the record covers; the line ending
                there hashing to the record's last leaf; the record's note still in
                ledger/checkpoints
    check_line  at most MAX_ENTRY_BYTES, strict canonical JSON, an object of this log,
                numbered in order and linked to the line before it

Both read bounded windows (one line at most), never the history before the record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.audit import canonical
from runner.audit.files import CHECKPOINTS, ENTRIES, MAX_ENTRY_BYTES, StoredLine, contains_note
from runner.audit.findings import Code, LedgerFinding
from runner.audit.head import SignedHead
from runner.audit.merkle import leaf_hash


@dataclass(frozen=True)
class Problem:
    finding: LedgerFinding
    hint: str | None = None


def _problem(code: Code, seq: int | None, message: str, hint: str | None = None) -> Problem:
    return Problem(LedgerFinding(code, seq, None, message), hint)


def check_head(
    fd: int, directory: Path, origin: str, head: SignedHead, record: Path
) -> Problem | None:
    """Whether entries.jsonl (open as `fd`) and ledger/checkpoints still extend `head`."""
    restart = (
        "nothing was signed; `runner audit verify` shows what changed. If you removed "
        f"the ledger on purpose, move {record} aside to start a new one"
    )
    if head.origin != origin:
        return _problem(
            Code.FOREIGN_ENTRY,
            None,
            f"the ledger in {directory} is log {origin!r}, but runner last signed log "
            f"{head.origin!r} ({record}): the ledger was replaced",
            restart,
        )
    end = os.fstat(fd).st_size
    if end < head.offset:
        return _problem(
            Code.TRUNCATED,
            None,
            f"runner signed a checkpoint of {head.size} entries covering {head.offset} bytes "
            f"of {ENTRIES} ({record}), but the file holds {end}: entries were removed",
            restart if end == 0 else None,
        )
    if not head.size:
        return None
    if leaf_hash(line_ending_at(fd, head.offset)) != head.last:
        return _problem(
            Code.CHECKPOINT_MISMATCH,
            head.size - 1,
            f"entry {head.size - 1}, the last of the {head.size} runner sealed ({record}), is "
            f"not the one it signed: entries before seq {head.size} were rewritten "
            "(`runner audit verify` shows which)",
        )
    if not contains_note(directory, head.note):
        return _problem(
            Code.MISSING_CHECKPOINT,
            None,
            f"the checkpoint of {head.size} entries runner signed last ({record}) is no "
            f"longer in {directory / CHECKPOINTS}: it was deleted",
        )
    return None


def line_ending_at(fd: int, offset: int) -> bytes:
    """The line that ends (with its newline) at byte `offset`; b"" when there is none."""
    window = min(offset, MAX_ENTRY_BYTES + 2)
    data = os.pread(fd, window, offset - window)
    if not data.endswith(b"\n"):
        return b""
    start = data.rfind(b"\n", 0, len(data) - 1) + 1
    if start == 0 and window < offset:
        return b""  # longer than any entry runner writes
    return data[start:-1]


def check_line(line: StoredLine, origin: str, last: bytes) -> tuple[dict[str, Any], Problem | None]:
    """One line appended since the record (its entry, parsed, or {}), after a line whose
    leaf hash is `last`: a Problem unless runner could have written it."""
    seq = line.seq
    if line.data is None:
        return {}, _problem(
            Code.UNPARSEABLE,
            seq,
            f"entry {seq} is {line.length} bytes long, over the {MAX_ENTRY_BYTES}-byte limit "
            "runner writes: it was not written by runner",
        )
    try:
        raw = canonical.loads(line.data)
    except canonical.CanonicalError as exc:
        return {}, _problem(Code.UNPARSEABLE, seq, f"entry {seq} is not strict JSON: {exc}")
    if type(raw) is not dict:
        return {}, _problem(Code.UNPARSEABLE, seq, f"entry {seq} is not a JSON object")
    if raw.get("log") != origin:
        message = f"entry {seq} is of log {raw.get('log')!r}, not of this ledger ({origin!r})"
        return raw, _problem(Code.FOREIGN_ENTRY, seq, message)
    if raw.get("seq") != seq:
        return raw, _problem(
            Code.SEQ_MISMATCH,
            seq,
            f"line {seq} says seq {raw.get('seq')!r}: an entry was inserted, deleted, "
            "reordered or replayed",
        )
    if raw.get("prev") != last.hex():
        return raw, _problem(
            Code.CHAIN_BREAK,
            seq,
            f"entry {seq}'s prev is not the hash of the entry before it: one of them was "
            "changed, removed or moved",
        )
    return raw, None
