"""The ledger's files and how to read them (writing is runner/audit/ledger.py's job).

<state_dir>/ledger/entries.jsonl   one canonical-JSON entry a line, seq = line index
<state_dir>/ledger/checkpoints     signed notes (checkpoint.py), each + a blank line
<state_dir>/ledger/origin          the log's origin name, made when the ledger is
<state_dir>/ledger/lock            flock'd around every append and checkpoint
<state_dir>/ledger/frontier.json   cache: Merkle frontier at the last checkpoint
<state_dir>/ledger/policy.json     cache: where the last policy.changed entry is
<state_dir>/ledger/quarantine/     torn tails cut off after a crash, kept as they were
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.audit import canonical
from runner.audit import checkpoint as notes
from runner.audit.entries import Entry, PolicyChanged
from runner.audit.merkle import leaf_hash

ENTRIES = "entries.jsonl"
CHECKPOINTS = "checkpoints"
ORIGIN = "origin"
LOCK = "lock"
FRONTIER = "frontier.json"
POLICY = "policy.json"
QUARANTINE = "quarantine"
GENESIS = "0" * 64
_CHUNK = 1 << 20
_POLICY_CHANGED = b'"type":"%s"' % PolicyChanged.TYPE.encode()  # as canonical JSON writes it


def ledger_dir(state_dir: Path) -> Path:
    return state_dir / "ledger"


def read_origin(directory: Path) -> str | None:
    try:
        return (directory / ORIGIN).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def first_entry_origin(directory: Path) -> str | None:
    """The `log` of the first entry, when the origin file is gone."""
    try:
        with open(directory / ENTRIES, "rb") as handle:
            entry = canonical.loads(handle.readline().rstrip(b"\n"))
    except (OSError, canonical.CanonicalError):
        return None
    return Entry(entry).log if isinstance(entry, dict) else None


def torn_note_tail(fd: int, end: int) -> int:
    """Where the checkpoints file's complete notes end (== end when nothing is torn)."""
    if end == 0:
        return 0
    window = min(end, 1 << 16)
    tail = os.pread(fd, window, end - window)
    if tail.endswith(b"\n\n") and _ends_note(tail, len(tail)):
        return end
    pos = len(tail)
    while True:
        pos = tail.rfind(b"\n\n", 0, pos - 1)
        if pos < 0:
            return end - window if window < end else 0
        if _ends_note(tail, pos + 2):
            return end - window + pos + 2
        pos += 1


def _ends_note(data: bytes, stop: int) -> bool:
    """Whether data[:stop] ends with "<signature line>\\n\\n"."""
    line_start = data.rfind(b"\n", 0, stop - 2) + 1
    return data[line_start : stop - 2].startswith(notes.SIG_PREFIX.encode())


# -- reading ------------------------------------------------------------------------------


def last_checkpoint(directory: Path) -> notes.SignedNote | None:
    """The last complete, well-formed note in the checkpoints file (not verified)."""
    path = directory / CHECKPOINTS
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        end = torn_note_tail(fd, os.fstat(fd).st_size)
        window = min(end, 1 << 16)
        tail = os.pread(fd, window, end - window)
    finally:
        os.close(fd)
    if not tail:
        return None
    pos = len(tail) - 2
    start = 0
    while True:
        found = tail.rfind(b"\n\n", 0, pos)
        if found < 0:
            break
        if _ends_note(tail, found + 2):
            start = found + 2
            break
        pos = found
    try:
        return notes.parse(tail[start:-1].decode("utf-8"))
    except (UnicodeDecodeError, notes.CheckpointError):
        return None


def iter_entries(directory: Path) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line without newline) of every complete line, streaming."""
    path = directory / ENTRIES
    offset = 0
    with open(path, "rb", buffering=_CHUNK) as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                return
            yield offset, line[:-1]
            offset += len(line)


def last_policy(ledger_dir: Path) -> dict[str, Any] | None:
    """The policy document last recorded (`policy` of the last policy.changed entry)."""
    entries = ledger_dir / ENTRIES
    if not entries.exists():
        return None
    with open(entries, "rb") as handle:
        try:
            cached = json.loads((ledger_dir / POLICY).read_text(encoding="utf-8"))
            handle.seek(int(cached["offset"]))
            line = handle.readline()
            if line.endswith(b"\n") and leaf_hash(line[:-1]).hex() == cached["leaf"]:
                found = _policy_of(line[:-1])
                if found is not None and _no_later_policy(handle):
                    return found
        except (OSError, ValueError, KeyError, TypeError):
            pass
        handle.seek(0)
        result: dict[str, Any] | None = None
        for line in handle:
            found = _policy_of(line.rstrip(b"\n"))
            if found is not None:
                result = found
        return result


def _no_later_policy(handle: Any) -> bool:
    """No policy.changed line after the handle's position (a chunked byte search)."""
    needle = _POLICY_CHANGED
    carry = b""
    while chunk := handle.read(_CHUNK):
        if needle in carry + chunk:
            return False
        carry = chunk[-len(needle) :]
    return True


def _policy_of(line: bytes) -> dict[str, Any] | None:
    if _POLICY_CHANGED not in line:
        return None
    try:
        raw = canonical.loads(line)
    except canonical.CanonicalError:
        return None
    if not isinstance(raw, dict) or not (entry := Entry(raw)).is_a(PolicyChanged):
        return None
    return entry.get(PolicyChanged.policy)
