"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and proof verification.

    leaf(d)    = SHA-256(0x00 || d)
    node(l, r) = SHA-256(0x01 || l || r)
    MTH({})    = SHA-256("")
    MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n

The odd node is carried up, never duplicated. `Frontier` keeps the roots of the complete
subtrees of a growing tree (at most 64 hashes), so appending and taking the root are
cheap and memory stays flat. Proofs are built from a stream of leaf hashes: the nodes a
proof needs are the roots of known leaf ranges, so one pass with one `Frontier` per range
builds any proof without holding the tree. Verification follows RFC 9162 2.1.3.2
(inclusion) and 2.1.4.2 (consistency), checking sizes and exact proof lengths.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from runner.errors import VerificationFailed

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


@dataclass
class Frontier:
    """The compact range [0, size): roots of the perfect subtrees, largest first."""

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def append(self, leaf: bytes) -> None:
        hashes = self.hashes
        hashes.append(leaf)
        n = self.size
        while n & 1:
            right = hashes.pop()
            hashes[-1] = _sha256(b"\x01" + hashes[-1] + right).digest()
            n >>= 1
        self.size += 1

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        root = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            root = node_hash(left, root)
        return root

    def copy(self) -> Frontier:
        return Frontier(self.size, list(self.hashes))

    def serialize(self) -> dict[str, object]:
        return {"size": self.size, "hashes": [h.hex() for h in self.hashes]}

    @classmethod
    def deserialize(cls, data: object) -> Frontier:
        """Rebuild from `serialize()` output; ValueError when it is not a valid frontier."""
        if not isinstance(data, dict):
            raise ValueError("frontier is not an object")
        size, hashes = data.get("size"), data.get("hashes")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError("frontier size is not a non-negative integer")
        if not isinstance(hashes, list) or len(hashes) != bin(size).count("1"):
            raise ValueError("frontier hash count does not match its size")
        raw = [bytes.fromhex(h) if isinstance(h, str) else b"" for h in hashes]
        if any(len(h) != HASH_SIZE for h in raw):
            raise ValueError("frontier hash is not 32 bytes")
        return cls(size, raw)


def root_of(leaves: Iterable[bytes]) -> bytes:
    """MTH of a sequence of leaf hashes, streaming."""
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()


# -- which leaf ranges a proof needs ------------------------------------------------------

Range = tuple[int, int]  # [start, end)


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The subtrees whose roots make the audit path of leaf `index` (RFC 6962 2.1.1 PATH),
    in proof order (bottom-up)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    ranges: list[Range] = []
    start, end, m = 0, size, index
    while end - start > 1:
        k = _split(end - start)
        if m < k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, m = start + k, m - k
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The subtrees whose roots make the consistency proof from `old_size` to `new_size`
    (RFC 6962 2.1.2 PROOF / SUBPROOF), in proof order."""
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    ranges: list[Range] = []
    start, end, m, complete = 0, new_size, old_size, True
    while m != end - start:
        n = end - start
        k = _split(n)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, m, complete = start + k, m - k, False
    if not complete:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def proof_from_leaves(ranges: Sequence[Range], leaves: Iterable[bytes]) -> list[bytes]:
    """The roots of `ranges` (disjoint, non-empty), in one pass over the leaf hashes."""
    order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
    roots: list[bytes] = [b""] * len(ranges)
    cursor, seen = 0, 0
    current = Frontier()
    for index, leaf in enumerate(leaves):
        if cursor == len(order):
            break
        seen = index + 1
        start, end = ranges[order[cursor]]
        if index < start:
            continue
        current.append(leaf)
        if index == end - 1:
            roots[order[cursor]] = current.root()
            current = Frontier()
            cursor += 1
    if cursor != len(order):
        raise ValueError(f"only {seen} leaves; the proof needs {ranges[order[-1]][1]}")
    return roots


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    return proof_from_leaves(inclusion_ranges(index, len(leaves)), leaves)


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    return proof_from_leaves(consistency_ranges(old_size, len(leaves)), leaves)


# -- verification (RFC 9162) ---------------------------------------------------------------


class ProofError(VerificationFailed):
    """A proof that does not prove what it claims (exit 1)."""


def _check_hashes(*hashes: bytes) -> None:
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise ProofError(f"a hash is {len(h)} bytes, not {HASH_SIZE}")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 2.1.3.2 steps 1-4: the root the proof leads to."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    _check_hashes(leaf, *proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ProofError unless `proof` shows `leaf` at `index` in the tree `root` of `size`."""
    _check_hashes(root)
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Raise ProofError unless `proof` shows tree (`new_size`, `new_root`) extends
    (`old_size`, `old_root`): RFC 9162 2.1.4.2."""
    _check_hashes(old_root, new_root, *proof)
    if old_size < 0 or new_size < old_size:
        raise ProofError(f"size {new_size} cannot extend size {old_size}")
    if old_size == new_size:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("equal sizes with different roots")
        return
    if old_size == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != old_root:
        raise ProofError("consistency proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("consistency proof does not lead to the new root")
