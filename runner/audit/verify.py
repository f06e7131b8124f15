"""`audit verify`: prove the ledger intact from its bytes and keys trusted from outside.

One streaming pass over entries.jsonl (memory flat in the ledger's size): every line is
hashed as stored, parsed strictly (duplicate keys and floats are unparseable), and
checked for its origin (`log`), `seq` (= line index) and `prev` link; the Merkle root is
recomputed at every checkpoint's size and compared with the signed root; key rotations
and revocations recorded in the ledger are checked against their signatures. Trust comes
only from the keys given (policies/keys/ by default), never from the ledger.

Each problem is reported once per code, with the first bad seq and byte offset and how
many more there were. Errors are evidence of tampering (exit 1); the warnings say what
verify could not prove:

    INCOMPLETE_TAIL  a torn last line or note (a crash mid-write, not yet recovered)
    UNSEALED_TAIL    entries after the last signed checkpoint: could be changed unseen
    UNANCHORED       no --anchor: someone holding the signing key could rewrite or
                     truncate everything, checkpoints included, and verify would pass
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.audit import canonical, checkpoint
from runner.audit.entries import Entry, KeyRevoked, KeyRotated
from runner.audit.files import CHECKPOINTS, ENTRIES, GENESIS, first_entry_origin, read_origin
from runner.audit.findings import Code, Collector, LedgerFinding, Report
from runner.audit.keys import PublicKey, TrustedKeys
from runner.audit.merkle import (
    Frontier,
    ProofError,
    Range,
    consistency_ranges,
    verify_consistency,
)

__all__ = ["Code", "LedgerFinding", "Report", "verify_ledger"]


@dataclass(frozen=True)
class _Note:
    offset: int
    size: int
    root: bytes
    good: tuple[PublicKey, ...]  # trusted keys whose signatures verify
    trusted: bool  # good and no bad signature
    file: str


def _check_note(
    text: str | None,
    offset: int,
    file: str,
    origin: str | None,
    trusted: TrustedKeys,
    found: Collector,
) -> _Note | None:
    if text is None:
        found.add(Code.UNPARSEABLE, None, offset, "checkpoint is not UTF-8 text", file)
        return None
    try:
        note = checkpoint.parse(text)
    except checkpoint.CheckpointError as exc:
        found.add(Code.UNPARSEABLE, None, offset, f"checkpoint is malformed: {exc}", file)
        return None
    cp = note.checkpoint
    if origin is not None and cp.origin != origin:
        found.add(
            Code.FOREIGN_ENTRY,
            None,
            offset,
            f"checkpoint of log {cp.origin!r}, not of this ledger ({origin!r})",
            file,
        )
        return None
    verdict = checkpoint.verify(note, trusted)
    for key in verdict.bad:
        found.add(
            Code.BAD_SIGNATURE,
            None,
            offset,
            f"checkpoint of size {cp.size}: the signature of trusted key {key.key_id} "
            "does not verify (the note was altered or forged)",
            file,
        )
    if not verdict.good and not verdict.bad:
        keys = ", ".join(verdict.unknown) or "none"
        found.add(
            Code.UNTRUSTED_KEY,
            None,
            offset,
            f"checkpoint of size {cp.size} is signed by no trusted key (signed by: {keys}; "
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


@dataclass
class _KeyEvents:
    retired: dict[bytes, tuple[int, str]] = field(default_factory=dict)  # raw key -> (seq, how)


def _entry_signatures(
    entry: dict[str, Any], keys: Iterable[PublicKey]
) -> tuple[list[PublicKey], list[PublicKey]]:
    """Which of `keys` signed the entry's canonical bytes without `signatures`: (good, bad)."""
    body = {k: v for k, v in entry.items() if k != "signatures"}
    sigs = entry.get("signatures")
    by_key: dict[str, Any] = {}
    if isinstance(sigs, list):
        for item in sigs:
            if isinstance(item, dict) and isinstance(item.get("key"), str):
                by_key[item["key"]] = item.get("sig")
    try:
        payload = canonical.dumps(body)
    except canonical.CanonicalError:
        return [], list(keys)
    good: list[PublicKey] = []
    bad: list[PublicKey] = []
    for key in keys:
        encoded = by_key.get(key.key_id)
        try:
            signature = (
                base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else b""
            )
        except binascii.Error:
            signature = b""
        (good if signature and key.verify(signature, payload) else bad).append(key)
    return good, bad


def _key_entry(
    raw: dict[str, Any],
    seq: int,
    offset: int,
    trusted: TrustedKeys,
    events: _KeyEvents,
    found: Collector,
) -> None:
    entry = Entry(raw)
    rotated = entry.is_a(KeyRotated)
    kind = KeyRotated.TYPE if rotated else KeyRevoked.TYPE
    named = (KeyRotated.old, KeyRotated.new) if rotated else (KeyRevoked.key, KeyRevoked.by)
    keys: list[PublicKey] = []
    for key_field in named:
        try:
            keys.append(PublicKey.from_vkey(entry.get(key_field) or ""))
        except ValueError as exc:
            found.add(Code.UNPARSEABLE, seq, offset, f"{kind}: field {key_field.name!r}: {exc}")
            return
    signers = keys if rotated else keys[1:]
    _, bad = _entry_signatures(raw, signers)
    for key in bad:
        found.add(
            Code.BAD_SIGNATURE,
            seq,
            offset,
            f"{kind}: the signature of {key.key_id} is missing or does not verify",
        )
    if bad:
        return
    authority = keys[0] if rotated else keys[1]
    if authority not in trusted:
        found.add(
            Code.UNTRUSTED_KEY,
            seq,
            offset,
            f"{kind} is signed by {authority.key_id}, which is not a trusted key",
        )
        return
    how = "rotated" if rotated else "revoked"
    # The entry's own (signed) seq, so that a line deleted before it does not move it.
    declared = entry.seq
    at = declared if declared is not None else seq
    events.retired.setdefault(keys[0].raw, (at, how))


def verify_ledger(
    directory: Path,
    trusted: TrustedKeys,
    *,
    anchor: str | None = None,
    anchor_name: str = "anchor",
) -> Report:
    """Check everything in `directory` (a ledger dir); see the module docstring."""
    found = Collector()
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
    anchor_note = None
    if anchor is not None:
        anchor_note = _check_note(
            anchor if anchor.endswith("\n") else anchor + "\n",
            0,
            anchor_name,
            origin,
            trusted,
            found,
        )
        if anchor_note is not None and not anchor_note.trusted:
            anchor_note = None
    good_notes = [n for n in notes if n.trusted]
    latest = max((n.size for n in good_notes), default=0)
    ranges: list[Range] = []
    if anchor_note is not None and 0 < anchor_note.size < latest:
        ranges = consistency_ranges(anchor_note.size, latest)
    captures = {n.size for n in notes} | ({anchor_note.size} if anchor_note else set())
    stream = _stream(directory, origin, trusted, captures, ranges, found)
    count, roots, range_roots, events = stream
    final_root = roots[count]

    for note in notes:
        if note.size > count:
            found.add(
                Code.TRUNCATED,
                count,
                note.offset,
                f"a checkpoint covers {note.size} entries but the ledger holds only {count}: "
                "entries were removed",
                note.file,
            )
        elif roots[note.size] != note.root:
            found.add(
                Code.CHECKPOINT_MISMATCH,
                note.size - 1 if note.size else None,
                note.offset,
                f"the checkpoint of size {note.size} signs root {note.root.hex()[:16]}... "
                f"but the first {note.size} entries hash to {roots[note.size].hex()[:16]}...",
                note.file,
            )
        for key in note.good:
            retired = events.retired.get(key.raw)
            if retired is not None and note.size > retired[0]:
                found.add(
                    Code.REVOKED_KEY,
                    retired[0],
                    note.offset,
                    f"key {key.key_id} was {retired[1]} at seq {retired[0]} but signed the "
                    f"later checkpoint of size {note.size}",
                    note.file,
                )
    sealed = max(
        (
            n.size
            for n in good_notes
            if n.size <= count and roots[n.size] == n.root and not _retired(n, events)
        ),
        default=0,
    )
    if anchor_note is not None:
        _check_anchor(anchor_note, count, roots, range_roots, ranges, notes, latest, found)
    if count > sealed:
        found.add(
            Code.UNSEALED_TAIL,
            sealed,
            None,
            f"entries {sealed}..{count - 1} are not covered by a signed checkpoint: they could "
            "be changed or removed without detection (`runner audit checkpoint` seals them)",
        )
    if anchor is None:
        found.add(
            Code.UNANCHORED,
            None,
            None,
            "no --anchor given: a rewrite or truncation by someone holding the signing key "
            "(checkpoints re-signed) would not be detectable; export checkpoints with "
            "`runner audit checkpoint --export` to a place the runner cannot write",
            "",
        )
    return Report(
        count, len(notes), found.findings(), final_root.hex(), sealed, anchor_note is not None
    )


def _retired(note: _Note, events: _KeyEvents) -> bool:
    return any(
        key.raw in events.retired and note.size > events.retired[key.raw][0] for key in note.good
    )


def _check_anchor(
    anchor: _Note,
    count: int,
    roots: dict[int, bytes],
    range_roots: list[bytes],
    ranges: list[Range],
    notes: list[_Note],
    latest: int,
    found: Collector,
) -> None:
    if anchor.size > count:
        found.add(
            Code.TRUNCATED,
            count,
            None,
            f"the anchor covers {anchor.size} entries but the ledger holds only {count}: "
            "entries were removed since the anchor was taken",
            anchor.file,
        )
        return
    if roots[anchor.size] != anchor.root:
        found.add(
            Code.CHECKPOINT_MISMATCH,
            anchor.size - 1 if anchor.size else None,
            None,
            f"the ledger does not extend the anchor of size {anchor.size}: history before "
            "it was rewritten",
            anchor.file,
        )
        return
    if ranges and len(range_roots) == len(ranges):
        latest_root = next(n.root for n in notes if n.trusted and n.size == latest)
        try:
            verify_consistency(anchor.size, latest, range_roots, anchor.root, latest_root)
        except ProofError as exc:
            found.add(
                Code.CHECKPOINT_MISMATCH,
                anchor.size - 1,
                None,
                f"the latest checkpoint (size {latest}) is not consistent with the anchor: {exc}",
                anchor.file,
            )


# -- the pass over the entries -------------------------------------------------------------

CHUNK_BYTES = 4 << 20  # entries are checked in chunks of whole lines of about this size
PARALLEL_MIN_BYTES = 32 << 20  # from this size on, chunks are checked in worker processes
_NOT_CHECKED = "\0"  # first_prev of a chunk whose first line is not an object


def _check_chunk(
    data: bytes, seq0: int, offset0: int, origin: str | None
) -> tuple[bytes, int, str, list[tuple[str, int, int, str]], list[tuple[int, int, dict[str, Any]]]]:
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
        try:
            entry = decode(body)
        except error as exc:
            findings.append(("UNPARSEABLE", seq, offset, f"entry is not strict JSON: {exc}"))
        else:
            if type(entry) is not dict:
                findings.append(("UNPARSEABLE", seq, offset, "entry is not a JSON object"))
            else:
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
                if entry.get("type") in _KEY_TYPES:
                    key_entries.append((seq, offset, entry))
        prev = leaf.hex()
        seq += 1
        offset += len(body) + 1
    return b"".join(leaves), seq - seq0, first_prev, findings, key_entries


_KEY_TYPES = (KeyRotated.TYPE, KeyRevoked.TYPE)
_CHAIN_MESSAGE = (
    "prev does not match the hash of the entry before it: the entry or the one before it "
    "was changed, removed or moved"
)


def _chunks(path: Path, tail: list[tuple[int, int, int]]) -> Iterator[tuple[bytes, int, int]]:
    """(whole lines, first seq, first offset) of entries.jsonl; a torn tail is put in
    `tail` as (seq, offset, length)."""
    seq = offset = 0
    carry = b""
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            data = carry + block
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            yield data[:cut], seq, offset
            seq += data.count(b"\n", 0, cut)
            offset += cut
            carry = data[cut:]
    if carry:
        tail.append((seq, offset, len(carry)))


def _stream(
    directory: Path,
    origin: str | None,
    trusted: TrustedKeys,
    captures: set[int],
    ranges: list[Range],
    found: Collector,
) -> tuple[int, dict[int, bytes], list[bytes], _KeyEvents]:
    """The one pass over entries.jsonl. Returns (complete entries, root at each capture
    size and at the end, roots of `ranges`, key rotations/revocations)."""
    events = _KeyEvents()
    path = directory / ENTRIES
    roots: dict[int, bytes] = {0: Frontier().root()}
    if not path.exists():
        return 0, roots, [], events
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

    def consume(
        result: tuple[
            bytes, int, str, list[tuple[str, int, int, str]], list[tuple[int, int, dict[str, Any]]]
        ],
        seq0: int,
        offset0: int,
    ) -> None:
        nonlocal seq, prev, target, sub, cursor, r_start, r_end, range_roots
        leaves, count, first_prev, findings, key_entries = result
        if first_prev != _NOT_CHECKED and first_prev != prev:
            found.add(Code.CHAIN_BREAK, seq0, offset0, _CHAIN_MESSAGE)
        for code, at, offset, message in findings:
            found.add(Code(code), at, offset, message)
        for at, offset, entry in key_entries:
            _key_entry(entry, at, offset, trusted, events, found)
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

    tail: list[tuple[int, int, int]] = []
    workers = min(os.cpu_count() or 1, 4)
    if workers > 1 and path.stat().st_size >= PARALLEL_MIN_BYTES:
        context = multiprocessing.get_context("spawn")  # never fork a threaded process
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            pending: deque[tuple[Future[Any], int, int]] = deque()
            for data, seq0, offset0 in _chunks(path, tail):
                pending.append(
                    (pool.submit(_check_chunk, data, seq0, offset0, origin), seq0, offset0)
                )
                if len(pending) > 2 * workers:
                    future, at, offset = pending.popleft()
                    consume(future.result(), at, offset)
            while pending:
                future, at, offset = pending.popleft()
                consume(future.result(), at, offset)
    else:
        for data, seq0, offset0 in _chunks(path, tail):
            consume(_check_chunk(data, seq0, offset0, origin), seq0, offset0)
    for at, offset, length in tail:
        found.add(
            Code.INCOMPLETE_TAIL,
            at,
            offset,
            f"the last line is torn ({length} bytes without a newline); the next append will "
            "quarantine it and record a recovery entry",
        )
    roots[seq] = Frontier(seq, list(stack)).root()
    if cursor < len(order):
        range_roots = []
    return seq, roots, range_roots, events
