"""Merkle tree tests. The vectors are those of transparency-dev/merkle
(proof/verify_test.go: the RFC 6962 test leaves, their roots, inclusion and consistency
proofs); the mutations are that file's corruptInclusionProof/corruptConsistencyProof."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.audit import merkle
from runner.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from runner.errors import VerificationFailed

LEAVES = [
    b"",
    bytes.fromhex("00"),
    bytes.fromhex("10"),
    bytes.fromhex("2021"),
    bytes.fromhex("3031"),
    bytes.fromhex("40414243"),
    bytes.fromhex("5051525354555657"),
    bytes.fromhex("606162636465666768696a6b6c6d6e6f"),
]
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]


def _h(*hexes: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in hexes]


# (leaf index 1-based, tree size, proof), as in verify_test.go
INCLUSION = [
    (
        1,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        _h(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (3, 3, _h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        2,
        5,
        _h(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]
CONSISTENCY = [
    (
        1,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        _h(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
HASHES = [leaf_hash(d) for d in LEAVES]


# -- a plain recursive reference (RFC 6962 2.1) ------------------------------------------


def ref_mth(d: Sequence[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = 1
    while k * 2 < len(d):
        k *= 2
    return node_hash(ref_mth(d[:k]), ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) <= 1:
        return []
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if complete else [ref_mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*ref_subproof(m, d[:k], complete), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


# -- mutations (transparency-dev corrupt*Proof) ------------------------------------------


def inclusion_mutations(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, int, int, list[bytes], bytes, bytes]]:
    probes = [
        ("index - 1", index - 1, size, proof, root, leaf),
        ("index + 1", index + 1, size, proof, root, leaf),
        ("index ^ 2", index ^ 2, size, proof, root, leaf),
        ("size * 2", index, size * 2, proof, root, leaf),
        ("size / 2", index, size // 2, proof, root, leaf),
        ("wrong leaf", index, size, proof, root, b"WrongLeaf"),
        ("empty root", index, size, proof, EMPTY_ROOT, leaf),
        ("random root", index, size, proof, SOME_HASH, leaf),
        ("trailing garbage", index, size, [*proof, b""], root, leaf),
        ("trailing root", index, size, [*proof, root], root, leaf),
        ("preceding garbage", index, size, [b"", *proof], root, leaf),
        ("preceding root", index, size, [root, *proof], root, leaf),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 8]) + wrong[i][1:]
        probes.append((f"proof[{i}] bit flipped", index, size, wrong, root, leaf))
    if proof:
        probes.append(("element dropped", index, size, proof[:-1], root, leaf))
    if len(proof) > 1:
        probes.append(
            ("element inserted", index, size, [proof[0], SOME_HASH, *proof[1:]], root, leaf)
        )
    return probes


def consistency_mutations(
    m: int, n: int, proof: list[bytes], r1: bytes, r2: bytes
) -> list[tuple[str, int, int, list[bytes], bytes, bytes]]:
    probes = [
        ("size1 - 1", m - 1, n, proof, r1, r2),
        ("size1 + 1", m + 1, n, proof, r1, r2),
        ("size1 ^ 2", m ^ 2, n, proof, r1, r2),
        ("size2 * 2", m, n * 2, proof, r1, r2),
        ("size2 / 2", m, n // 2, proof, r1, r2),
        ("wrong root1", m, n, proof, b"WrongRoot", r2),
        ("wrong root2", m, n, proof, r1, b"WrongRoot"),
        ("swapped roots", m, n, proof, r2, r1),
        ("empty proof", m, n, [], r1, r2),
        ("trailing garbage", m, n, [*proof, b""], r1, r2),
        ("trailing root1", m, n, [*proof, r1], r1, r2),
        ("trailing root2", m, n, [*proof, r2], r1, r2),
        ("preceding garbage", m, n, [b"", *proof], r1, r2),
        ("preceding root1", m, n, [r1, *proof], r1, r2),
        ("preceding root2", m, n, [r2, *proof], r1, r2),
        ("preceding proof[0]", m, n, [proof[0], *proof], r1, r2),
        ("element dropped", m, n, proof[:-1], r1, r2),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 16]) + wrong[i][1:]
        probes.append((f"proof[{i}] bit flipped", m, n, wrong, r1, r2))
    if len(proof) > 1:
        probes.append(("element inserted", m, n, [proof[0], SOME_HASH, *proof[1:]], r1, r2))
    return probes


def _inclusion_fails(index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes) -> bool:
    try:
        verify_inclusion(index, size, leaf, proof, root)
    except ProofError:
        return True
    return False


def _consistency_fails(m: int, n: int, proof: list[bytes], r1: bytes, r2: bytes) -> bool:
    try:
        verify_consistency(m, n, proof, r1, r2)
    except ProofError:
        return True
    return False


# -- tests --------------------------------------------------------------------------------


def test_roots_match_the_published_vectors() -> None:
    for size in range(1, 9):
        assert root_of(HASHES[:size]) == ROOTS[size - 1]
    assert root_of([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION)
def test_inclusion_proofs_match_vectors_and_every_mutation_fails(
    leaf: int, size: int, proof: list[bytes]
) -> None:
    index, root = leaf - 1, ROOTS[size - 1]
    assert inclusion_proof(HASHES[:size], index) == proof
    verify_inclusion(index, size, HASHES[index], proof, root)
    accepted = [
        p[0]
        for p in inclusion_mutations(index, size, proof, root, HASHES[index])
        if not _inclusion_fails(*p[1:])
    ]
    assert accepted == []


@pytest.mark.parametrize(("m", "n", "proof"), CONSISTENCY)
def test_consistency_proofs_match_vectors_and_every_mutation_fails(
    m: int, n: int, proof: list[bytes]
) -> None:
    r1, r2 = ROOTS[m - 1], ROOTS[n - 1]
    assert consistency_proof(HASHES[:n], m) == proof
    verify_consistency(m, n, proof, r1, r2)
    accepted = [
        p[0] for p in consistency_mutations(m, n, proof, r1, r2) if not _consistency_fails(*p[1:])
    ]
    assert accepted == []


@pytest.mark.parametrize(
    ("m", "n", "r1", "r2", "proof", "ok"),
    [
        (0, 0, b"1" * 32, b"2" * 32, [], False),
        (1, 1, b"1" * 32, b"2" * 32, [], False),
        (0, 0, b"1" * 32, b"1" * 32, [], True),
        (0, 1, b"1" * 32, b"2" * 32, [], True),
        (1, 1, b"2" * 32, b"2" * 32, [], True),
        (1, 0, b"1" * 32, b"2" * 32, [], False),
        (2, 1, b"1" * 32, b"2" * 32, [], False),
        (1, 2, b"1" * 32, b"2" * 32, [], False),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    ],
)
def test_consistency_edge_cases(
    m: int, n: int, r1: bytes, r2: bytes, proof: list[bytes], ok: bool
) -> None:
    assert _consistency_fails(m, n, proof, r1, r2) is not ok


def test_inclusion_edge_cases() -> None:
    single = leaf_hash(b"data")
    verify_inclusion(0, 1, single, [], single)
    for index, size in [(0, 0), (1, 0), (2, 1), (1, 1)]:
        assert _inclusion_fails(index, size, [], single, single)
    assert _inclusion_fails(0, 1, [], single, b"")
    assert _inclusion_fails(0, 1, [], b"", single)


def test_odd_node_is_carried_not_duplicated() -> None:
    a, b, c = HASHES[1:4]
    assert root_of([a, b, c]) != root_of([a, b, c, c])


def test_domain_separation_stops_a_leaf_posing_as_a_node() -> None:
    a, b = HASHES[1:3]
    forged_leaf = a + b  # 64 bytes: the two children of the root of [a, b]
    assert leaf_hash(forged_leaf) != root_of([a, b])


def test_frontier_round_trips_and_rejects_corrupt_state() -> None:
    frontier = Frontier()
    for h in HASHES[:7]:
        frontier.append(h)
    assert len(frontier.hashes) == 3
    again = Frontier.deserialize(frontier.serialize())
    assert again.root() == ROOTS[6]
    bad = frontier.serialize()
    bad["size"] = 8
    with pytest.raises(ValueError, match="hash count"):
        Frontier.deserialize(bad)


def test_proof_needs_enough_leaves() -> None:
    with pytest.raises(ValueError, match="only 3 leaves"):
        merkle.proof_from_leaves(merkle.inclusion_ranges(0, 8), HASHES[:3])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 70), st.data())
def test_proofs_agree_with_the_reference_and_mutations_fail(size: int, data: st.DataObject) -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    root = root_of(hashes)
    assert root == ref_mth(hashes)
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(hashes, index)
    assert proof == ref_path(index, hashes)
    verify_inclusion(index, size, hashes[index], proof, root)
    assert all(
        _inclusion_fails(*p[1:])
        for p in inclusion_mutations(index, size, proof, root, hashes[index])
    )
    m = data.draw(st.integers(1, size))
    cproof = consistency_proof(hashes, m)
    assert cproof == ref_subproof(m, hashes, True)
    old_root = root_of(hashes[:m])
    verify_consistency(m, size, cproof, old_root, root)
    if cproof:
        assert all(
            _consistency_fails(*p[1:])
            for p in consistency_mutations(m, size, cproof, old_root, root)
        )


def test_a_proof_that_fails_is_a_verification_failure_in_the_error_tree() -> None:
    leaves = [leaf_hash(bytes([i])) for i in range(4)]
    with pytest.raises(VerificationFailed) as info:
        verify_inclusion(0, 4, leaves[0], [leaves[1]], root_of(leaves))  # one hash short
    assert isinstance(info.value, ProofError) and info.value.exit_code == 1
