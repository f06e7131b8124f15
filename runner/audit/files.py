"""The ledger's files and how to read them (writing is runner/audit/ledger.py's job).

<state_dir>/ledger/entries.jsonl   one canonical-JSON entry a line, seq = line index
<state_dir>/ledger/checkpoints     signed notes (checkpoint.py), each + a blank line
<state_dir>/ledger/origin          the log's origin name, made when the ledger is
<state_dir>/ledger/lock            flock'd around every append and checkpoint
<state_dir>/ledger/frontier.json   cache: Merkle frontier at the last checkpoint (used
                                   only by a writer without a key and without a record)
<state_dir>/ledger/policy.json     cache: where the last policy.changed entry is
<state_dir>/ledger/quarantine/     torn tails cut off after a crash, kept as they were

(Runner's own record of the last checkpoint it signed is kept outside this directory,
beside the private key: runner/audit/head.py.)

Reading entries.jsonl never holds more than a bounded window, whatever the length of a
line: `read_blocks` yields runs of whole lines of about `chunk` bytes, and a line longer
than `MAX_ENTRY_BYTES` (which `Ledger.append` refuses to write, so only a forger or a
broken disk makes one) is hashed as it streams by and handed over as its leaf hash alone,
never as bytes. Every reader (verify, the writer's tail check, recovery, show, prove,
export) goes through it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
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
MAX_ENTRY_BYTES = 1 << 20  # the longest line (without its newline) an entry may have
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
            head = handle.read(MAX_ENTRY_BYTES + 1)
        newline = head.find(b"\n")
        if newline < 0:
            return None
        entry = canonical.loads(head[:newline])
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


def contains_note(directory: Path, note: str) -> bool:
    """Whether the checkpoints file holds `note` as one of its notes (exactly as it was
    appended), searched from the end in bounded blocks (it is usually the last one)."""
    needle = note.encode("utf-8") + b"\n"
    try:
        fd = os.open(directory / CHECKPOINTS, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        size = end = os.fstat(fd).st_size
        while end > 0:
            start = max(0, end - _CHUNK)
            block = os.pread(fd, min(size, end + len(needle)) - start, start)
            found = block.rfind(needle)
            while found >= 0:
                at = start + found
                if at == 0 or os.pread(fd, 2, at - 2) == b"\n\n":
                    return True
                found = block.rfind(needle, 0, found + len(needle) - 1)
            end = start
        return False
    finally:
        os.close(fd)


# -- reading entries.jsonl in bounded blocks -------------------------------------------------


@dataclass(frozen=True)
class Lines:
    """Whole lines (each ending in a newline), the first at `seq` / byte `offset`."""

    data: bytes
    seq: int
    offset: int


@dataclass(frozen=True)
class LongLine:
    """A line longer than MAX_ENTRY_BYTES: its leaf hash, computed as it streamed by."""

    leaf: bytes
    seq: int
    offset: int
    length: int  # without the newline


@dataclass(frozen=True)
class TornTail:
    """Bytes after the last newline: a line a crash cut short (or one being written)."""

    seq: int
    offset: int
    length: int


Block = Lines | LongLine | TornTail


def read_blocks(
    fd: int, start: int = 0, end: int | None = None, *, seq: int = 0, chunk: int = _CHUNK
) -> Iterator[Block]:
    """The lines of entries.jsonl in [start, end) (end: the size now), read with pread in
    blocks of `chunk` bytes; memory stays within about MAX_ENTRY_BYTES + 2 * chunk,
    whatever the lines' lengths. `seq` is the index of the line at `start`."""
    stop = os.fstat(fd).st_size if end is None else end
    position = base = start  # next byte to read / file offset of data[0]
    data = b""
    hashing: hashlib._Hash | None = None  # the SHA-256 of a long line being streamed
    length = 0
    while position < stop:
        block = os.pread(fd, min(chunk, stop - position), position)
        if not block:
            break  # the file shrank under us
        position += len(block)
        if hashing is not None:
            newline = block.find(b"\n")
            if newline < 0:
                hashing.update(block)
                length += len(block)
                continue
            hashing.update(block[:newline])
            length += newline
            yield LongLine(hashing.digest(), seq, base, length)
            seq, base, hashing = seq + 1, base + length + 1, None
            data = block[newline + 1 :]
        else:
            data += block
        cut = data.rfind(b"\n") + 1
        if cut:
            yield Lines(data[:cut], seq, base)
            seq += data.count(b"\n", 0, cut)
            base += cut
            data = data[cut:]
        if len(data) > MAX_ENTRY_BYTES:
            hashing = hashlib.sha256(b"\x00")
            hashing.update(data)
            length, data = len(data), b""
    if hashing is not None:
        yield TornTail(seq, base, length)
    elif data:
        yield TornTail(seq, base, len(data))


@dataclass(frozen=True)
class StoredLine:
    """One complete line of entries.jsonl. `data` is None for a line longer than
    MAX_ENTRY_BYTES (never held in memory; `leaf()` still gives its hash)."""

    seq: int
    offset: int
    length: int
    data: bytes | None
    long_leaf: bytes | None = None

    def leaf(self) -> bytes:
        if self.data is None:
            assert self.long_leaf is not None
            return self.long_leaf
        return leaf_hash(self.data)


def lines_of(block: Lines) -> Iterator[StoredLine]:
    """The lines of one block (a line over MAX_ENTRY_BYTES is given by its hash only)."""
    seq, offset = block.seq, block.offset
    for body in block.data.split(b"\n")[:-1]:
        if len(body) > MAX_ENTRY_BYTES:
            yield StoredLine(seq, offset, len(body), None, leaf_hash(body))
        else:
            yield StoredLine(seq, offset, len(body), body)
        seq += 1
        offset += len(body) + 1


def iter_lines(directory: Path, *, chunk: int = _CHUNK) -> Iterator[StoredLine]:
    """Every complete line of entries.jsonl, streaming (a torn last line is left out)."""
    fd = os.open(directory / ENTRIES, os.O_RDONLY)
    try:
        for block in read_blocks(fd, chunk=chunk):
            if isinstance(block, Lines):
                yield from lines_of(block)
            elif isinstance(block, LongLine):
                yield StoredLine(block.seq, block.offset, block.length, None, block.leaf)
    finally:
        os.close(fd)


def iter_entries(directory: Path) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line without newline) of every complete line that is not over
    MAX_ENTRY_BYTES, streaming (for readers that only want entries they can parse)."""
    for line in iter_lines(directory):
        if line.data is not None:
            yield line.offset, line.data


def last_policy(ledger_dir: Path) -> dict[str, Any] | None:
    """The policy document last recorded (`policy` of the last policy.changed entry)."""
    entries = ledger_dir / ENTRIES
    if not entries.exists():
        return None
    with open(entries, "rb") as handle:
        try:
            cached = json.loads((ledger_dir / POLICY).read_text(encoding="utf-8"))
            handle.seek(int(cached["offset"]))
            line = handle.readline(MAX_ENTRY_BYTES + 1)
            if line.endswith(b"\n") and leaf_hash(line[:-1]).hex() == cached["leaf"]:
                found = _policy_of(line[:-1])
                if found is not None and _no_later_policy(handle):
                    return found
        except (OSError, ValueError, KeyError, TypeError):
            pass
    result: dict[str, Any] | None = None
    for _, line in iter_entries(ledger_dir):
        found = _policy_of(line)
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
