"""Signed checkpoints in the C2SP tlog-checkpoint signed-note format.

    <origin>
    <tree size, decimal>
    <base64 root hash>
                                   (a blank line)
    — <key name> <base64(4-byte key hash || Ed25519 signature of all text above)>

The signature covers the body text, its final newline included. Verifiers ignore
signature lines of unknown keys, reject a note where a trusted key's signature fails,
and need at least one good signature from a trusted key.

The ledger's `checkpoints` file is append-only: the notes one after another, each
followed by one blank line (`<note>\\n`), so two newlines end a note; `split_notes`
reads it back with byte offsets.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass

from runner.audit.keys import PublicKey, Signer, TrustedKeys, valid_name
from runner.errors import VerificationFailed

SIG_PREFIX = "\u2014 "  # em dash, space
MAX_SIGNATURES = 100


class CheckpointError(VerificationFailed):
    """A note that is not a well-formed checkpoint: what is to be verified is not even
    readable (exit 1)."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_hash: bytes
    signature: bytes


@dataclass(frozen=True)
class SignedNote:
    checkpoint: Checkpoint
    body: str  # the signed text
    signatures: tuple[NoteSignature, ...]
    text: str  # the whole note as stored


@dataclass(frozen=True)
class NoteVerdict:
    good: tuple[PublicKey, ...]  # trusted keys whose signature verifies
    bad: tuple[PublicKey, ...]  # trusted keys whose signature fails
    unknown: tuple[str, ...]  # `name+hash` of signatures from keys not trusted

    @property
    def ok(self) -> bool:
        return bool(self.good) and not self.bad


def signature_line(body: str, signer: Signer) -> str:
    blob = signer.public.key_hash + signer.sign(body.encode())
    return f"{SIG_PREFIX}{signer.name} {base64.b64encode(blob).decode()}\n"


def sign(checkpoint: Checkpoint, *signers: Signer) -> str:
    body = checkpoint.body()
    return body + "\n" + "".join(signature_line(body, s) for s in signers)


def sign_text(body: str, *signers: Signer) -> str:
    """Sign any note text (ending in a newline) - for test vectors and exports."""
    if not body.endswith("\n"):
        raise CheckpointError("note text must end with a newline")
    return body + "\n" + "".join(signature_line(body, s) for s in signers)


def parse_note(text: str) -> tuple[str, tuple[NoteSignature, ...]]:
    """Split a signed note into its body and signatures (not yet verified)."""
    if any(c != "\n" and not c.isprintable() for c in text):
        raise CheckpointError("note holds control characters")
    body, sep, sigs = text.rpartition("\n\n")
    if not sep or not body or not sigs.endswith("\n"):
        raise CheckpointError("note has no signature block")
    body += "\n"
    signatures = []
    for line in sigs[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise CheckpointError(f"not a signature line: {line[:40]!r}")
        name, space, encoded = line[len(SIG_PREFIX) :].partition(" ")
        if not space or not valid_name(name):
            raise CheckpointError(f"bad signature line: {line[:40]!r}")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise CheckpointError(f"signature of {name} is not base64") from None
        if len(blob) < 5:
            raise CheckpointError(f"signature of {name} is too short")
        signatures.append(NoteSignature(name, blob[:4], blob[4:]))
    if not signatures:
        raise CheckpointError("note has no signatures")
    if len(signatures) > MAX_SIGNATURES:
        raise CheckpointError("note has too many signatures")
    return body, tuple(signatures)


def parse(text: str) -> SignedNote:
    """A signed checkpoint note; CheckpointError when it is malformed."""
    body, signatures = parse_note(text)
    lines = body.split("\n")[:-1]
    if len(lines) < 3:
        raise CheckpointError("checkpoint body needs origin, size and root lines")
    origin, size_text, root_text = lines[:3]
    if not origin:
        raise CheckpointError("checkpoint origin is empty")
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise CheckpointError(f"checkpoint size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error:
        raise CheckpointError("checkpoint root is not base64") from None
    if len(root) != 32:
        raise CheckpointError("checkpoint root is not 32 bytes")
    if any(not line for line in lines[3:]):
        raise CheckpointError("checkpoint has an empty extension line")
    return SignedNote(Checkpoint(origin, int(size_text), root), body, signatures, text)


def verify(note: SignedNote, trusted: TrustedKeys) -> NoteVerdict:
    """Check each signature line against the trusted keys (unknown keys are ignored)."""
    good: list[PublicKey] = []
    bad: list[PublicKey] = []
    unknown: list[str] = []
    message = note.body.encode()
    for sig in note.signatures:
        key = trusted.find(sig.name, sig.key_hash)
        if key is None:
            unknown.append(f"{sig.name}+{sig.key_hash.hex()}")
        elif key.verify(sig.signature, message):
            if key not in good:
                good.append(key)
        else:
            bad.append(key)
    return NoteVerdict(tuple(good), tuple(bad), tuple(unknown))


def split_notes(data: bytes) -> Iterator[tuple[int, str | None, bytes]]:
    """The notes of a checkpoints file: (byte offset, text or None if not UTF-8, raw).
    A last note not followed by its blank line is yielded with raw not ending in \\n\\n."""
    offset = 0
    length = len(data)
    while offset < length:
        # A note ends at the first "\n\n" after its body/signature separator.
        sep = data.find(b"\n\n", offset)
        end = data.find(b"\n\n", sep + 2) if sep >= 0 else -1
        stop = length if end < 0 else end + 2
        raw = data[offset:stop]
        try:
            text: str | None = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        yield offset, text, raw
        offset = stop


def note_complete(raw: bytes) -> bool:
    return raw.endswith(b"\n\n")
