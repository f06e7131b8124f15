"""Where the entries differ from a tree someone signed (a checkpoint, an anchor, runner's
record): TRUNCATED when the tree covers entries that are gone, CHECKPOINT_MISMATCH when
the entries do not make its root, naming the first entry that differs when that can be
known.

The successors' `prev` fields still hold the leaf hashes that were signed. When taking
them for the leaves rebuilds the signed root, every other entry is as signed, and the
first entry whose own hash is not the one its successor claims is the one changed (an
edited line whose neighbours were left alone). When it does not (the entries were
re-linked), the change is somewhere after the largest tree below that still matches,
and that range is what the finding names. This takes a second pass over the entries,
made only for a ledger that does not verify.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from runner.audit import canonical
from runner.audit.files import iter_lines
from runner.audit.findings import Code, Collector
from runner.audit.merkle import Frontier


@dataclass(frozen=True)
class Claim:
    """A tree the entries must make: its size and signed root, and who signed it where."""

    size: int
    root: bytes
    file: str
    offset: int | None
    kind: str  # checkpoint | anchor | record

    def says(self) -> str:
        if self.kind == "anchor":
            return (
                f"the ledger does not extend the anchor of size {self.size} (history before "
                "it was rewritten): the anchor signs a root"
            )
        if self.kind == "record":
            return f"runner's record says it signed a tree of size {self.size} with a root"
        return f"the checkpoint of size {self.size} signs a root"


def check_claims(
    directory: Path, claims: list[Claim], count: int, roots: dict[int, bytes], found: Collector
) -> None:
    """TRUNCATED or CHECKPOINT_MISMATCH for each claim the entries do not make, naming the
    first entry that differs when it can be known (module docstring)."""
    matched = sorted({c.size for c in claims if c.size <= count and roots[c.size] == c.root})
    # a mismatching claim -> the largest size below it that still matches
    mismatched = {
        (c.size, c.root): max((m for m in matched if m < c.size), default=0)
        for c in claims
        if c.size <= count and roots[c.size] != c.root
    }
    claimed_roots, first_diff = _locate(directory, mismatched) if mismatched else ({}, {})
    for claim in claims:
        if claim.size > count:
            whose = {
                "checkpoint": "a checkpoint",
                "anchor": "the anchor",
                "record": "runner's record of its last checkpoint",
            }[claim.kind]
            found.add(
                Code.TRUNCATED,
                count,
                claim.offset,
                f"{whose} covers {claim.size} entries but the ledger holds only {count}: "
                "entries were removed",
                claim.file,
            )
            continue
        start = mismatched.get((claim.size, claim.root))
        if start is None:
            continue
        first = first_diff.get(start)
        if claimed_roots.get(claim.size) == claim.root and first is not None and first < claim.size:
            seq, where = first, _known_text(first)
        else:
            seq, where = start, _range_text(start, claim.size)
        message = f"{claim.says()} the entries do not make: {where}"
        found.add(Code.CHECKPOINT_MISMATCH, seq, claim.offset, message, claim.file)


def _known_text(first: int) -> str:
    return (
        f"entry {first} is not the one signed (entry {first + 1}'s prev still holds the hash "
        "that was signed, and with it the signed root comes back)"
    )


def _range_text(seq: int, size: int) -> str:
    if seq >= size - 1:
        return f"entry {size - 1} was changed"
    return (
        f"one of entries {seq}..{size - 1} was changed (they were re-linked, so which one "
        "cannot be told)"
    )


_PREV = re.compile(rb'"prev":"([0-9a-f]{64})"')


def _claimed_prev(data: bytes | None) -> bytes | None:
    """The `prev` an entry holds (the leaf hash its predecessor had when it was written)."""
    if data is None:
        return None
    hits = _PREV.findall(data)
    if len(hits) == 1:
        return bytes.fromhex(hits[0].decode())
    try:
        entry = canonical.loads(data)
    except canonical.CanonicalError:
        return None
    prev = entry.get("prev") if isinstance(entry, dict) else None
    try:
        return bytes.fromhex(prev) if isinstance(prev, str) and len(prev) == 64 else None
    except ValueError:
        return None


def _locate(
    directory: Path, mismatched: dict[tuple[int, bytes], int]
) -> tuple[dict[int, bytes], dict[int, int]]:
    """A second pass, run only on a ledger that does not verify. The leaves as the
    successors' `prev` fields claim them: their root at each mismatching size N, and, for
    each start M (the largest matching size below an N), the first entry from M on whose
    own hash is not the one its successor claims."""
    sizes = {size for size, _ in mismatched}
    top = max(sizes)
    claimed = Frontier()
    claimed_roots: dict[int, bytes] = {}
    starts = sorted(set(mismatched.values()))
    first_diff: dict[int, int] = {}
    pending: bytes | None = None  # the actual leaf of the previous line

    def take(leaf_claimed: bytes, actual: bytes) -> None:
        index = claimed.size
        claimed.append(leaf_claimed)
        if leaf_claimed != actual:
            while starts and starts[0] <= index:
                first_diff[starts.pop(0)] = index
        if claimed.size in sizes:
            claimed_roots[claimed.size] = claimed.root()

    for line in iter_lines(directory):
        if line.seq > top:
            break
        if pending is not None:
            prev = _claimed_prev(line.data)
            take(prev if prev is not None else pending, pending)
        pending = line.leaf()
    if pending is not None and claimed.size < top:
        take(pending, pending)
    return claimed_roots, first_diff
