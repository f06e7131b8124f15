"""`runner audit checkpoint`: seal the ledger with a signed checkpoint; export an anchor."""

from __future__ import annotations

import base64
from pathlib import Path

from runner.app import App
from runner.audit.checkpoint import parse
from runner.audit.ledger import ENTRIES, Ledger, ledger_dir, load_signer
from runner.errors import InvalidInput


def main(app: App, *, export_to: Path | None) -> int:
    directory = ledger_dir(app.state_dir)
    if not (directory / ENTRIES).exists():
        raise InvalidInput(f"no audit ledger at {directory}: nothing to checkpoint")
    signer = load_signer(app.state_dir, app.root, create=False, say=app.out.line)
    with Ledger.open(app.state_dir, signer=signer) as ledger:
        note = ledger.checkpoint()
    cp = parse(note).checkpoint
    if export_to is not None:
        try:
            export_to.write_text(note, encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot write the anchor {export_to}: {exc.strerror}") from None
    if app.out.json_mode:
        app.out.json(
            {
                "origin": cp.origin,
                "size": cp.size,
                "root": base64.b64encode(cp.root).decode(),
                "note": note,
                "exported": str(export_to) if export_to else None,
            }
        )
        return 0
    app.out.line(f"checkpoint of {cp.size} entries signed by {signer.public.key_id}:")
    app.out.raw(note)
    if export_to is not None:
        app.out.line(
            f"exported to {export_to}: keep it where the runner cannot rewrite it (commit it, "
            f"a CI artifact), then `runner audit verify --anchor {export_to}`"
        )
    return 0
