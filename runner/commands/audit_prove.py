"""`runner audit prove SEQ`: an inclusion proof of one entry against the latest signed
checkpoint, verified before it is printed."""

from __future__ import annotations

import base64
from collections.abc import Iterator

from runner.app import App
from runner.audit import canonical, checkpoint
from runner.audit.files import ENTRIES, iter_lines, last_checkpoint, ledger_dir
from runner.audit.keys import PUB_DIR, load_trusted
from runner.audit.merkle import (
    ProofError,
    inclusion_ranges,
    leaf_hash,
    proof_from_leaves,
    verify_inclusion,
)
from runner.errors import InvalidInput, VerificationFailed


def main(app: App, seq: int) -> int:
    directory = ledger_dir(app.state_dir)
    if not (directory / ENTRIES).exists():
        raise InvalidInput(f"no audit ledger at {directory}")
    note = last_checkpoint(directory)
    if note is None:
        raise InvalidInput(
            "the ledger has no checkpoint yet", hint="run `runner audit checkpoint` first"
        )
    trusted = load_trusted(app.root / PUB_DIR)
    verdict = checkpoint.verify(note, trusted)
    if not verdict.ok:
        raise VerificationFailed(
            f"the latest checkpoint is not signed by a trusted key in {app.root / PUB_DIR}",
            hint="run `runner audit verify` to see why",
        )
    size = note.checkpoint.size
    if seq >= size:
        raise InvalidInput(
            f"entry {seq} is not covered by the latest checkpoint ({size} entries)",
            hint="run `runner audit checkpoint` to seal it",
        )
    found: list[bytes] = []

    def leaves() -> Iterator[bytes]:
        for line in iter_lines(directory):
            if line.seq == size:
                return
            if line.seq == seq:
                if line.data is None:
                    raise ProofError(f"entry {seq} is {line.length} bytes long: not an entry")
                found.append(line.data)
            yield line.leaf()

    try:
        proof = proof_from_leaves(inclusion_ranges(seq, size), leaves())
        if not found:
            raise ProofError(f"entry {seq} is missing")
        verify_inclusion(seq, size, leaf_hash(found[0]), proof, note.checkpoint.root)
    except (ProofError, ValueError) as exc:
        raise VerificationFailed(
            f"entry {seq} is not provably in the signed checkpoint of size {size}: {exc}",
            hint="run `runner audit verify`",
        ) from None
    result = {
        "seq": seq,
        "size": size,
        "leaf": leaf_hash(found[0]).hex(),
        "root": base64.b64encode(note.checkpoint.root).decode(),
        "proof": [h.hex() for h in proof],
        "checkpoint": note.text,
        "entry": _entry(found[0]),
    }
    if app.out.json_mode:
        app.out.json(result)
        return 0
    app.out.line(f"entry {seq} is included in the signed checkpoint of {size} entries")
    app.out.line(f"leaf  {result['leaf']}")
    for index, item in enumerate(proof):
        app.out.line(f"proof[{index}] {item.hex()}")
    app.out.line("checkpoint:")
    app.out.raw(note.text)
    return 0


def _entry(line: bytes) -> object:
    try:
        return canonical.loads(line)
    except canonical.CanonicalError:
        return line.decode("utf-8", "replace")
