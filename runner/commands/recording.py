"""Ledger entries written by a command outside a run (`gc.pruned`, `cache.evicted`,
`image.built`): signed with the state directory's key when there is one; a command never
creates a key. `append_entries` opens the ledger once for many (one per evicted cache)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runner.app import App
from runner.audit.keys import load_signer
from runner.audit.ledger import Ledger
from runner.errors import InvalidInput


def append_entry(app: App, type_: str, fields: Mapping[str, Any]) -> None:
    """Append one entry of `type_` (no run) to the ledger of `app`'s state directory."""
    append_entries(app, [(type_, fields)])


def append_entries(app: App, entries: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """Append `entries` (type, fields; no run) in order, opening the ledger once."""
    if not entries:
        return
    try:
        signer = load_signer(app.state_dir, app.root, create=False, say=app.out.line)
    except InvalidInput:
        signer = None
    ledger = Ledger.open(app.state_dir, signer=signer, repo=app.root)
    try:
        for type_, fields in entries:
            ledger.append(type_, None, dict(fields))
    finally:
        ledger.close()
