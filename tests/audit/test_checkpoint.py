"""Signed-note checkpoints. The key, text and signatures are the test vectors of Go's
golang.org/x/mod/sumdb/note (note_test.go)."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runner.audit import checkpoint
from runner.audit.checkpoint import Checkpoint, CheckpointError
from runner.audit.keys import PublicKey, Signer, TrustedKeys
from runner.errors import VerificationFailed

PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
ENOCH_SIG = "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"


def peter_signer() -> Signer:
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:]
    private = Ed25519PrivateKey.from_private_bytes(seed)
    signer = Signer.from_private(private, "test vector")
    return Signer(private, PublicKey("PeterNeumann", signer.public.raw), "test vector")


def test_signing_reproduces_the_go_note_vector() -> None:
    signer = peter_signer()
    assert signer.public.vkey() == PETER_VKEY
    assert checkpoint.sign_text(TEXT, signer) == TEXT + "\n" + PETER_SIG


def test_unknown_signatures_are_ignored_and_trusted_ones_verified() -> None:
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    body, sigs = checkpoint.parse_note(note)
    assert body == TEXT
    assert [s.name for s in sigs] == ["PeterNeumann", "EnochRoot"]
    peter, enoch = PublicKey.from_vkey(PETER_VKEY), PublicKey.from_vkey(ENOCH_VKEY)
    signed = checkpoint.SignedNote(Checkpoint("o", 0, b"\0" * 32), body, sigs, note)
    verdict = checkpoint.verify(signed, TrustedKeys([peter]))
    assert verdict.ok and verdict.good == (peter,) and verdict.unknown == ("EnochRoot+af0cfe78",)
    both = checkpoint.verify(signed, TrustedKeys([peter, enoch]))
    assert both.good == (peter, enoch)
    assert not checkpoint.verify(signed, TrustedKeys([])).ok


def test_a_changed_signature_of_a_trusted_key_is_bad() -> None:
    note = TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    body, sigs = checkpoint.parse_note(note)
    signed = checkpoint.SignedNote(Checkpoint("o", 0, b"\0" * 32), body, sigs, note)
    verdict = checkpoint.verify(signed, TrustedKeys([PublicKey.from_vkey(PETER_VKEY)]))
    assert not verdict.ok and verdict.bad == (PublicKey.from_vkey(PETER_VKEY),)


@pytest.mark.parametrize(
    "note",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT
        + "\n"
        + "\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG * 101,
    ],
)
def test_malformed_notes_are_rejected(note: str) -> None:
    with pytest.raises(CheckpointError):
        checkpoint.parse_note(note)


def test_checkpoint_round_trip_and_body_format() -> None:
    signer = Signer.generate()
    cp = Checkpoint("runner/repo/abc", 12, bytes(range(32)))
    note = checkpoint.sign(cp, signer)
    assert note.startswith(
        "runner/repo/abc\n12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n\u2014 "
    )
    parsed = checkpoint.parse(note)
    assert parsed.checkpoint == cp
    assert checkpoint.verify(parsed, TrustedKeys([signer.public])).ok
    tampered = checkpoint.parse(note.replace("\n12\n", "\n13\n"))
    assert checkpoint.verify(tampered, TrustedKeys([signer.public])).bad == (signer.public,)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("o\n012\nAAAA\n", "not a decimal"),
        ("o\n-1\nAAAA\n", "not a decimal"),
        ("o\n1\nAAAA\n", "not 32 bytes"),
        ("o\n1\n", "needs origin, size and root"),
    ],
)
def test_bad_checkpoint_bodies(body: str, message: str) -> None:
    note = checkpoint.sign_text(body, Signer.generate())
    with pytest.raises(CheckpointError, match=message):
        checkpoint.parse(note)


def test_split_notes_gives_offsets_and_flags_a_torn_last_note() -> None:
    signer = Signer.generate()
    one = checkpoint.sign(Checkpoint("o", 1, b"\1" * 32), signer) + "\n"
    two = checkpoint.sign(Checkpoint("o", 2, b"\2" * 32), signer) + "\n"
    data = (one + two).encode() + two.encode()[:30]
    parts = list(checkpoint.split_notes(data))
    assert [p[0] for p in parts] == [0, len(one.encode()), len((one + two).encode())]
    assert [checkpoint.note_complete(p[2]) for p in parts] == [True, True, False]
    assert checkpoint.parse(parts[1][1][:-1]).checkpoint.size == 2  # type: ignore[index]


def test_a_malformed_note_is_a_verification_failure_in_the_error_tree() -> None:
    with pytest.raises(VerificationFailed) as info:
        checkpoint.parse("runner/x\n5\n\n\u2014 k AAAA\n")
    assert isinstance(info.value, CheckpointError) and info.value.exit_code == 1
