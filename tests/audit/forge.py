"""What a forger does to a ledger on disk: rewrite entries and re-link them, re-sign
checkpoints with a key they hold, drop checkpoints. Real files, real signatures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.audit import canonical, checkpoint, merkle
from runner.audit.keys import Signer
from runner.audit.ledger import CHECKPOINTS, ENTRIES, GENESIS


def entries_path(state: Path) -> Path:
    return state / "ledger" / ENTRIES


def raw_lines(state: Path) -> list[bytes]:
    return entries_path(state).read_bytes().splitlines(keepends=True)


def write_lines(state: Path, lines: list[bytes]) -> None:
    entries_path(state).write_bytes(b"".join(lines))


def parsed(state: Path) -> list[dict[str, Any]]:
    return [canonical.loads(line[:-1]) for line in raw_lines(state)]


def rechain(items: list[dict[str, Any]], start: int = 0) -> list[bytes]:
    """What a forger without the key does: renumber and relink every entry."""
    out: list[bytes] = []
    prev = GENESIS
    for seq, entry in enumerate(items):
        entry = dict(entry, seq=seq, prev=prev)
        line = canonical.dumps(entry)
        prev = merkle.leaf_hash(line).hex()
        out.append(line + b"\n")
    return out


def note_texts(state: Path) -> list[str]:
    """The complete notes of ledger/checkpoints, each without its trailing blank line."""
    data = (state / "ledger" / CHECKPOINTS).read_bytes()
    return [text[:-1] for _, text, raw in checkpoint.split_notes(data) if text]


def write_notes(state: Path, texts: list[str]) -> None:
    (state / "ledger" / CHECKPOINTS).write_text("".join(t + "\n" for t in texts))


def signed_notes(origin: str, lines: list[bytes], sizes: list[int], key: Signer) -> list[str]:
    """Checkpoints of `lines` at `sizes`, signed with `key` (what the key holder can do)."""
    hashes = [merkle.leaf_hash(line.rstrip(b"\n")) for line in lines]
    return [
        checkpoint.sign(checkpoint.Checkpoint(origin, size, merkle.root_of(hashes[:size])), key)
        for size in sizes
    ]
