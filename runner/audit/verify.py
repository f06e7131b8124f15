"""`audit verify`: prove the ledger intact from its bytes and keys trusted from outside.

One streaming pass over entries.jsonl (memory flat in the ledger's size and in the
length of any line: a line over MAX_ENTRY_BYTES is hashed as it streams by and reported
UNPARSEABLE unparsed): every line is hashed as stored, parsed strictly (duplicate keys
and floats are unparseable), and checked for its origin (`log`), `seq` (= line index)
and `prev` link; the Merkle root is recomputed at the size of every checkpoint, anchor
and runner's record and compared with the signed root; key rotations and revocations
are checked against their signatures (runner/audit/keyevents.py). Trust comes only from
the keys given (policies/keys/ by default), never from the ledger.

What verify checks the entries against:

    ledger/checkpoints  signed by a trusted key; each must match the entries
    runner's record     (<state>/keys/last-checkpoint.json, when verify runs on the
                        same state directory) the last checkpoint runner signed: it must
                        still be in ledger/checkpoints (else MISSING_CHECKPOINT) and the
                        entries must extend it
    anchors             --anchor FILE and the anchor store's checkpoints of this ledger:
                        the entries must extend every one, and the latest checkpoint
                        must be consistent with the latest anchor (RFC 6962 proof).
                        An anchor that is not a usable checkpoint is BAD_ANCHOR: a bad
                        anchor, not a tampered ledger

When the entries do not make a signed root, the finding names the first entry that
differs when that can be known (runner/audit/mismatch.py).

Each problem is reported once per code and file, with the first bad seq and byte offset
and how many more there were in that file. Errors fail verification (exit 1): evidence
of tampering, or what cannot be proven at all (NO_CHECKPOINT: entries and no
checkpoint; BAD_ANCHOR). The warnings say what verify could not prove:

    INCOMPLETE_TAIL  a torn last line or note (a crash mid-write, not yet recovered)
    UNSEALED_TAIL    entries after the last signed checkpoint: could be changed unseen
    UNANCHORED       no anchor: someone holding the signing key could rewrite or
                     truncate everything, checkpoints included, and verify would pass
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.audit import canonical, checkpoint
from runner.audit.files import (
    CHECKPOINTS,
    ENTRIES,
    GENESIS,
    MAX_ENTRY_BYTES,
    Lines,
    LongLine,
    TornTail,
    first_entry_origin,
    read_blocks,
    read_origin,
)
from runner.audit.findings import Code, Collector, LedgerFinding, Report
from runner.audit.head import SignedHead
from runner.audit.keyevents import KEY_TYPES, KeyHistory
from runner.audit.keys import PublicKey, TrustedKeys
from runner.audit.merkle import (
    Frontier,
    ProofError,
    Range,
    consistency_ranges,
    verify_consistency,
)
from runner.audit.mismatch import Claim, check_claims

__all__ = ["AnchorNote", "Code", "LedgerFinding", "Report", "verify_ledger"]


@dataclass(frozen=True)
class AnchorNote:
    """One checkpoint kept outside the ledger: its text (None if not UTF-8), where it came
    from (a file, for findings) and its byte offset there (None: the whole file)."""

    text: str | None
    source: str
    offset: int | None = None


@dataclass(frozen=True)
class _Note:
    offset: int | None
    size: int
    root: bytes
    good: tuple[PublicKey, ...]  # trusted keys whose signatures verify
    trusted: bool  # good and no bad signature
    file: str


def _check_note(
    text: str | None,
    offset: int | None,
    file: str,
    origin: str | None,
    trusted: TrustedKeys,
    found: Collector,
    *,
    anchor: bool = False,
) -> _Note | None:
    """A note's checks; for an anchor, a note that is not a checkpoint of this ledger is
    BAD_ANCHOR (the anchor is bad, not the ledger)."""
    malformed = Code.BAD_ANCHOR if anchor else Code.UNPARSEABLE
    what = "anchor" if anchor else "checkpoint"
    if text is None:
        found.add(malformed, None, offset, f"{what} is not UTF-8 text", file)
        return None
    try:
        note = checkpoint.parse(text)
    except checkpoint.CheckpointError as exc:
        found.add(malformed, None, offset, f"{what} is not a well-formed checkpoint: {exc}", file)
        return None
    cp = note.checkpoint
    if origin is not None and cp.origin != origin:
        found.add(
            Code.BAD_ANCHOR if anchor else Code.FOREIGN_ENTRY,
            None,
            offset,
            f"{what} of log {cp.origin!r}, not of this ledger ({origin!r})",
            file,
        )
        return None
    verdict = checkpoint.verify(note, trusted)
    for key in verdict.bad:
        found.add(
            Code.BAD_SIGNATURE,
            None,
            offset,
            f"{what} of size {cp.size}: the signature of trusted key {key.key_id} "
            "does not verify (the note was altered or forged)",
            file,
        )
    if not verdict.good and not verdict.bad:
        keys = ", ".join(verdict.unknown) or "none"
        found.add(
            Code.UNTRUSTED_KEY,
            None,
            offset,
            f"{what} of size {cp.size} is signed by no trusted key (signed by: {keys}; "
            f"trusted: {len(trusted)} key(s) from {trusted.source or 'nowhere'})",
            file,
        )
    return _Note(offset, cp.size, cp.root, verdict.good, verdict.ok, file)


def _read_notes(
    directory: Path, origin: str | None, trusted: TrustedKeys, found: Collector
) -> list[_Note]:
    path = directory / CHECKPOINTS
    if not path.exists():
        return []
    notes: list[_Note] = []
    for offset, text, raw in checkpoint.split_notes(path.read_bytes()):
        if not checkpoint.note_complete(raw):
            found.add(
                Code.INCOMPLETE_TAIL,
                None,
                offset,
                f"the last checkpoint is torn ({len(raw)} bytes without their end); "
                "the next append will quarantine it",
                CHECKPOINTS,
            )
            break
        note = _check_note(text[:-1] if text else None, offset, CHECKPOINTS, origin, trusted, found)
        if note is not None:
            notes.append(note)
    return notes


def _read_anchors(
    anchors: Sequence[AnchorNote], origin: str | None, trusted: TrustedKeys, found: Collector
) -> list[_Note]:
    """The anchors that are trusted checkpoints of this ledger."""
    good: list[_Note] = []
    for item in anchors:
        text = item.text
        if text is not None and not text.endswith("\n"):
            text += "\n"
        note = _check_note(text, item.offset, item.source, origin, trusted, found, anchor=True)
        if note is not None and note.trusted:
            good.append(note)
    return good


def verify_ledger(
    directory: Path,
    trusted: TrustedKeys,
    *,
    anchor: str | None = None,
    anchor_name: str = "anchor",
    anchors: Sequence[AnchorNote] = (),
    record: SignedHead | None = None,
    record_name: str = "runner's record",
    record_problem: str | None = None,
) -> Report:
    """Check everything in `directory` (a ledger dir) against `trusted`, the anchors
    (`anchor` text, named `anchor_name`, and `anchors`) and runner's `record` (or why it
    could not be read); see the module docstring."""
    found = Collector()
    if record_problem is not None:
        found.add(Code.BAD_ANCHOR, None, None, record_problem, record_name)
    origin = read_origin(directory) or first_entry_origin(directory)
    if not len(trusted):
        found.add(
            Code.UNTRUSTED_KEY,
            None,
            None,
            f"no trusted keys in {trusted.source or '(none given)'}: no checkpoint can be "
            "verified; commit the .pub files of the signing keys there",
            trusted.source or "",
        )
    notes = _read_notes(directory, origin, trusted, found)
    given = [*([AnchorNote(anchor, anchor_name)] if anchor is not None else []), *anchors]
    good_anchors = _read_anchors(given, origin, trusted, found)
    latest_anchor = max(good_anchors, key=lambda n: n.size, default=None)
    good_notes = [n for n in notes if n.trusted]
    latest = max((n.size for n in good_notes), default=0)
    ranges: list[Range] = []
    if latest_anchor is not None and 0 < latest_anchor.size < latest:
        ranges = consistency_ranges(latest_anchor.size, latest)
    if record is not None and origin is not None and record.origin != origin:
        found.add(
            Code.FOREIGN_ENTRY,
            None,
            None,
            f"runner last signed log {record.origin!r}, but this ledger is log {origin!r}: "
            "the ledger was replaced",
            record_name,
        )
        record = None
    captures = {n.size for n in notes} | {n.size for n in good_anchors}
    if record is not None:
        captures.add(record.size)
    count, roots, range_roots, keys = _stream(directory, origin, trusted, captures, ranges, found)

    claims = [
        *(Claim(n.size, n.root, n.file, n.offset, "checkpoint") for n in notes),
        *(Claim(n.size, n.root, n.file, n.offset, "anchor") for n in good_anchors),
        *(
            [Claim(record.size, record.checkpoint.root, record_name, None, "record")]
            if record is not None and record.size
            else []
        ),
    ]
    check_claims(directory, claims, count, roots, found)
    for note in notes:
        for key in note.good:
            retired = keys.retired.get(key.raw)
            if retired is not None and note.size > retired.seq:
                found.add(
                    Code.REVOKED_KEY,
                    retired.seq,
                    note.offset,
                    f"key {key.key_id} was {retired.how} at seq {retired.seq} but signed the "
                    f"later checkpoint of size {note.size}",
                    note.file,
                )
    signed = {(n.size, n.root) for n in notes}
    if record is not None and record.size and (record.size, record.checkpoint.root) not in signed:
        found.add(
            Code.MISSING_CHECKPOINT,
            None,
            None,
            f"runner's record ({record_name}) says it signed a checkpoint of {record.size} "
            f"entries (root {record.checkpoint.root.hex()[:16]}...) that {CHECKPOINTS} no "
            "longer holds: it was deleted",
            CHECKPOINTS,
        )
    sealed = max(
        (
            n.size
            for n in good_notes
            if n.size <= count and roots[n.size] == n.root and not _retired(n, keys)
        ),
        default=0,
    )
    if latest_anchor is not None and roots.get(latest_anchor.size) == latest_anchor.root:
        _check_consistency(latest_anchor, roots, range_roots, ranges, notes, latest, found)
    if count and not notes:
        found.add(
            Code.NO_CHECKPOINT,
            0,
            None,
            f"the ledger holds {count} entries but no checkpoint: nothing in it is proven "
            "(every checkpoint was deleted, or the writer never sealed them)",
            CHECKPOINTS,
        )
    elif count and not sealed and not found.has_errors():
        found.add(
            Code.NO_CHECKPOINT,
            0,
            None,
            f"no trusted checkpoint covers any of the {count} entries: nothing in it is proven",
            CHECKPOINTS,
        )
    if count > sealed:
        advice = (
            "do not seal them before the errors above are explained: runner refuses to"
            if found.has_errors()
            else "`runner audit checkpoint` seals them"
        )
        found.add(
            Code.UNSEALED_TAIL,
            sealed,
            None,
            f"entries {sealed}..{count - 1} are not covered by a signed checkpoint: they "
            f"could be changed or removed without detection ({advice})",
        )
    if latest_anchor is None:
        found.add(
            Code.UNANCHORED,
            None,
            None,
            "no anchor (--anchor FILE, or this ledger's checkpoints in the anchor store): a "
            "rewrite or truncation by someone holding the signing key (checkpoints re-signed) "
            "would not be detectable; every run appends its checkpoint to the anchor store, "
            "and `runner audit checkpoint --export` writes one to keep where runner cannot",
            "",
        )
    findings = found.findings()
    anchor_files = {item.source for item in given}

    def unusable(f: LedgerFinding) -> bool:
        """Not evidence against the ledger: an anchor no trusted key signed, or no keys."""
        signature = f.code in (Code.UNTRUSTED_KEY, Code.BAD_SIGNATURE)
        return signature and (f.file in anchor_files or not len(trusted))

    tampered = any(f.code.is_tampering and not unusable(f) for f in findings)
    return Report(
        count,
        len(notes),
        findings,
        roots[count].hex(),
        sealed,
        latest_anchor is not None,
        anchors=tuple(
            (source, sum(1 for n in good_anchors if n.file == source)) for source in anchor_files
        ),
        tampered=tampered,
    )


def _retired(note: _Note, keys: KeyHistory) -> bool:
    return any(
        key.raw in keys.retired and note.size > keys.retired[key.raw].seq for key in note.good
    )


def _check_consistency(
    anchor: _Note,
    roots: dict[int, bytes],
    range_roots: list[bytes],
    ranges: list[Range],
    notes: list[_Note],
    latest: int,
    found: Collector,
) -> None:
    """The latest checkpoint must extend the latest anchor (RFC 6962 consistency)."""
    if ranges and len(range_roots) == len(ranges):
        latest_root = next(n.root for n in notes if n.trusted and n.size == latest)
        try:
            verify_consistency(anchor.size, latest, range_roots, anchor.root, latest_root)
        except ProofError as exc:
            found.add(
                Code.CHECKPOINT_MISMATCH,
                anchor.size,
                anchor.offset,
                f"the latest checkpoint (size {latest}) is not consistent with the anchor of "
                f"size {anchor.size}: {exc}; the change is among entries "
                f"{anchor.size}..{latest - 1}",
                anchor.file,
            )


# -- the pass over the entries -------------------------------------------------------------

CHUNK_BYTES = 4 << 20  # entries are checked in chunks of whole lines of about this size
PARALLEL_MIN_BYTES = 32 << 20  # from this size on, chunks are checked in worker processes
_NOT_CHECKED = "\0"  # first_prev of a chunk whose first line is not an object

_Checked = tuple[
    bytes, int, str, list[tuple[str, int, int, str]], list[tuple[int, int, dict[str, Any]]]
]


def _check_chunk(data: bytes, seq0: int, offset0: int, origin: str | None) -> _Checked:
    """Check the whole lines in `data` (first line at seq0 / byte offset0) on their own:
    hash, strict parse, origin, seq, and prev within the chunk. Returns the packed leaf
    hashes, the line count, the first line's `prev` (for the caller to link), findings
    as (code, seq, offset, message), and the key.rotated / key.revoked entries."""
    sha256 = hashlib.sha256
    decode = canonical.loads
    error = canonical.CanonicalError
    leaves: list[bytes] = []
    findings: list[tuple[str, int, int, str]] = []
    key_entries: list[tuple[int, int, dict[str, Any]]] = []
    first_prev = _NOT_CHECKED
    prev = ""
    seq, offset = seq0, offset0
    for body in data.split(b"\n")[:-1]:
        leaf = sha256(b"\x00" + body).digest()
        leaves.append(leaf)
        if len(body) > MAX_ENTRY_BYTES:
            findings.append(("UNPARSEABLE", seq, offset, _too_long(len(body))))
            entry: Any = None
        else:
            try:
                entry = decode(body)
            except error as exc:
                findings.append(("UNPARSEABLE", seq, offset, f"entry is not strict JSON: {exc}"))
                entry = None
            else:
                if type(entry) is not dict:
                    findings.append(("UNPARSEABLE", seq, offset, "entry is not a JSON object"))
                    entry = None
        if entry is not None:
            if entry.get("log") != origin:
                findings.append(
                    (
                        "FOREIGN_ENTRY",
                        seq,
                        offset,
                        f"entry of log {entry.get('log')!r}, not of this ledger ({origin!r})",
                    )
                )
            if entry.get("seq") != seq:
                findings.append(
                    (
                        "SEQ_MISMATCH",
                        seq,
                        offset,
                        f"line {seq} says seq {entry.get('seq')!r}: an entry was inserted, "
                        "deleted, reordered or replayed",
                    )
                )
            if seq == seq0:
                first_prev = str(entry.get("prev"))
            elif entry.get("prev") != prev:
                findings.append(("CHAIN_BREAK", seq, offset, _CHAIN_MESSAGE))
            if entry.get("type") in KEY_TYPES:
                key_entries.append((seq, offset, entry))
        prev = leaf.hex()
        seq += 1
        offset += len(body) + 1
    return b"".join(leaves), seq - seq0, first_prev, findings, key_entries


def _too_long(length: int) -> str:
    return (
        f"entry is {length} bytes long, over the {MAX_ENTRY_BYTES}-byte limit of an entry "
        "(runner never writes one): not parsed"
    )


_CHAIN_MESSAGE = (
    "prev does not match the hash of the entry before it: the entry or the one before it "
    "was changed, removed or moved"
)


def _stream(
    directory: Path,
    origin: str | None,
    trusted: TrustedKeys,
    captures: set[int],
    ranges: list[Range],
    found: Collector,
) -> tuple[int, dict[int, bytes], list[bytes], KeyHistory]:
    """The one pass over entries.jsonl. Returns (complete entries, root at each capture
    size and at the end, roots of `ranges`, key rotations/revocations)."""
    keys = KeyHistory()
    path = directory / ENTRIES
    roots: dict[int, bytes] = {0: Frontier().root()}
    if not path.exists():
        return 0, roots, [], keys
    sha256 = hashlib.sha256
    stack: list[bytes] = []
    targets = iter(sorted(s for s in captures if s > 0))
    target = next(targets, -1)
    order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
    range_roots: list[bytes] = [b""] * len(ranges)
    cursor = 0
    r_start, r_end = ranges[order[0]] if ranges else (-1, -1)
    sub: Frontier | None = None
    prev = GENESIS
    seq = 0

    def consume(result: _Checked, seq0: int, offset0: int) -> None:
        nonlocal seq, prev, target, sub, cursor, r_start, r_end, range_roots
        leaves, count, first_prev, findings, key_entries = result
        if first_prev != _NOT_CHECKED and first_prev != prev:
            found.add(Code.CHAIN_BREAK, seq0, offset0, _CHAIN_MESSAGE)
        for code, at, offset, message in findings:
            found.add(Code(code), at, offset, message)
        for at, offset, entry in key_entries:
            for problem in keys.apply(entry, at, trusted):
                found.add(problem.code, at, offset, problem.message)
        for index in range(0, 32 * count, 32):
            leaf = leaves[index : index + 32]
            stack.append(leaf)
            n = seq
            while n & 1:
                right = stack.pop()
                stack[-1] = sha256(b"\x01" + stack[-1] + right).digest()
                n >>= 1
            if seq == r_start:
                sub = Frontier()
            if sub is not None:
                sub.append(leaf)
                if seq == r_end - 1:
                    range_roots[order[cursor]] = sub.root()
                    sub = None
                    cursor += 1
                    r_start, r_end = ranges[order[cursor]] if cursor < len(order) else (-1, -1)
            seq += 1
            if seq == target:
                roots[seq] = Frontier(seq, list(stack)).root()
                target = next(targets, -1)
        if count:
            prev = leaves[-32:].hex()

    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        work = _blocks(fd, size, found)
        workers = min(os.cpu_count() or 1, 4)
        if workers > 1 and size >= PARALLEL_MIN_BYTES:
            context = multiprocessing.get_context("spawn")  # never fork a threaded process
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                pending: deque[tuple[Future[_Checked] | _Checked, int, int]] = deque()
                for item, seq0, offset0 in work:
                    if isinstance(item, bytes):
                        pending.append(
                            (pool.submit(_check_chunk, item, seq0, offset0, origin), seq0, offset0)
                        )
                    else:
                        pending.append((item, seq0, offset0))
                    if len(pending) > 2 * workers:
                        done, at, offset = pending.popleft()
                        consume(done.result() if isinstance(done, Future) else done, at, offset)
                while pending:
                    done, at, offset = pending.popleft()
                    consume(done.result() if isinstance(done, Future) else done, at, offset)
        else:
            for item, seq0, offset0 in work:
                checked = (
                    _check_chunk(item, seq0, offset0, origin) if isinstance(item, bytes) else item
                )
                consume(checked, seq0, offset0)
    finally:
        os.close(fd)
    roots[seq] = Frontier(seq, list(stack)).root()
    if cursor < len(order):
        range_roots = []
    return seq, roots, range_roots, keys


def _blocks(fd: int, size: int, found: Collector) -> Iterator[tuple[bytes | _Checked, int, int]]:
    """(whole lines to check, or an over-long line already checked, first seq, offset);
    a torn tail becomes INCOMPLETE_TAIL."""
    for block in read_blocks(fd, 0, size, chunk=CHUNK_BYTES):
        if isinstance(block, Lines):
            yield block.data, block.seq, block.offset
        elif isinstance(block, LongLine):
            finding = ("UNPARSEABLE", block.seq, block.offset, _too_long(block.length))
            yield (block.leaf, 1, _NOT_CHECKED, [finding], []), block.seq, block.offset
        elif isinstance(block, TornTail):
            found.add(
                Code.INCOMPLETE_TAIL,
                block.seq,
                block.offset,
                f"the last line is torn ({block.length} bytes without a newline); the next "
                "append will quarantine it and record a recovery entry",
            )
