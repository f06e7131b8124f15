"""Runner's own record of the last checkpoint it signed (its signed tree head), kept
outside the ledger directory: `<state_dir>/keys/last-checkpoint.json`, beside the
private key.

Whoever can write the ledger directory can delete its last checkpoint and rewrite or cut
the entries after the one before, or delete every checkpoint and rewrite everything:
nothing left inside that directory contradicts it. So each time runner signs a
checkpoint it also writes, durably (after the note reached ledger/checkpoints), what it
signed:

    note      the signed note, exactly as appended to ledger/checkpoints
    frontier  the Merkle frontier of the tree it signed (the roots of its perfect
              subtrees, at most 64 hashes): the signed root recomputes from it
    offset    how many bytes of entries.jsonl that tree covers
    last      the leaf hash of its last entry (64 zeros for the empty tree)
    retired   the keys rotated away or revoked in the ledger up to here, by raw public
              key (hex): [seq of the entry, "rotated" | "revoked"]

A ledger made by a writer with a key gets a record of its empty tree at once, so that a
run killed before its first checkpoint still leaves one behind.

The writer checks the ledger against this record before it signs anything
(`runner.audit.ledger`), and signs the tree it builds from the record's frontier and the
leaves after it, never a prefix it did not compute itself; `audit verify` reads it too
when it can (the same state directory). It is a witness, not an anchor: whoever can
rewrite the keys directory can rewrite the record as well (and, with a key file there,
sign anything); the anchor store (runner/audit/anchors.py) is what catches that.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runner.audit import checkpoint as notes
from runner.audit.files import GENESIS
from runner.audit.keys import key_dir
from runner.audit.merkle import Frontier
from runner.durable import write_atomic
from runner.errors import VerificationFailed

RECORD = "last-checkpoint.json"
VERSION = 1


class RecordUnreadable(VerificationFailed):
    """Runner's record of its last checkpoint exists but cannot be believed (exit 1)."""


@dataclass(frozen=True)
class Retired:
    seq: int  # the key.rotated / key.revoked entry
    how: str  # "rotated" | "revoked"


@dataclass(frozen=True)
class SignedHead:
    note: str
    checkpoint: notes.Checkpoint
    frontier: Frontier
    offset: int
    last: bytes
    retired: Mapping[bytes, Retired] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def origin(self) -> str:
        return self.checkpoint.origin

    def serialize(self) -> dict[str, object]:
        return {
            "v": VERSION,
            "note": self.note,
            "frontier": self.frontier.serialize(),
            "offset": self.offset,
            "last": self.last.hex(),
            "retired": {
                key.hex(): [item.seq, item.how] for key, item in sorted(self.retired.items())
            },
        }


def record_path(state_dir: Path) -> Path:
    return key_dir(state_dir) / RECORD


def read_head(state_dir: Path) -> SignedHead | None:
    """The record, or None when there is none; RecordUnreadable when it is damaged."""
    path = record_path(state_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise _unreadable(path, str(exc)) from None
    try:
        return parse_head(text)
    except (ValueError, KeyError, TypeError, notes.CheckpointError) as exc:
        raise _unreadable(path, str(exc)) from None


def parse_head(text: str) -> SignedHead:
    """A record's text; ValueError (or KeyError/TypeError) when it is not one."""
    document = json.loads(text)
    if not isinstance(document, dict) or document.get("v") != VERSION:
        raise ValueError("not a version-1 record")
    note = document["note"]
    if not isinstance(note, str):
        raise ValueError("note is not text")
    signed = notes.parse(note)
    frontier = Frontier.deserialize(document["frontier"])
    offset, last = document["offset"], bytes.fromhex(document["last"])
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0 or len(last) != 32:
        raise ValueError("offset or last leaf is malformed")
    if frontier.size != signed.checkpoint.size or frontier.root() != signed.checkpoint.root:
        raise ValueError("its frontier does not make the root its note signs")
    if signed.checkpoint.size == 0 and (offset != 0 or last != bytes.fromhex(GENESIS)):
        raise ValueError("an empty tree covers no bytes")
    retired: dict[bytes, Retired] = {}
    for key, value in dict(document.get("retired") or {}).items():
        seq, how = value
        if not isinstance(seq, int) or how not in ("rotated", "revoked"):
            raise ValueError(f"retired key {key[:16]} is malformed")
        retired[bytes.fromhex(key)] = Retired(seq, how)
    return SignedHead(note, signed.checkpoint, frontier, offset, last, retired)


def write_head(state_dir: Path, head: SignedHead) -> None:
    """Replace the record, atomically and durably (mode 0600, in the 0700 keys dir);
    OSError when it cannot be written."""
    directory = key_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = json.dumps(head.serialize(), sort_keys=True, indent=1) + "\n"
    write_atomic(record_path(state_dir), text.encode("utf-8"), mode=0o600, durable=True)


def _unreadable(path: Path, why: str) -> RecordUnreadable:
    return RecordUnreadable(
        f"runner's record of the last checkpoint it signed, {path}, is damaged ({why}): "
        "it will not sign a ledger it cannot check against it",
        hint="restore the file from a backup; or, once `runner audit verify` passes, move it "
        "aside and run `runner audit checkpoint --adopt`",
    )
