"""`runner audit checkpoint`: seal the ledger with a signed checkpoint (after the writer's
check against what runner last signed), append it to the anchor store, export an anchor;
`--adopt` takes on a ledger runner has no record of, once it verifies."""

from __future__ import annotations

import base64
from pathlib import Path

from runner.app import App
from runner.audit import anchors
from runner.audit.checkpoint import parse
from runner.audit.head import read_head, record_path
from runner.audit.keys import PUB_DIR, load_trusted
from runner.audit.ledger import ENTRIES, Ledger, ledger_dir, load_signer
from runner.audit.verify import verify_ledger
from runner.errors import InvalidInput, VerificationFailed


def main(app: App, *, export_to: Path | None, adopt: bool = False) -> int:
    directory = ledger_dir(app.state_dir)
    if not (directory / ENTRIES).exists():
        raise InvalidInput(f"no audit ledger at {directory}: nothing to checkpoint")
    signer = load_signer(app.state_dir, app.root, create=False, say=app.out.line)
    anchors.resolve_store(app.anchor_store, repo=app.root, state_dir=app.state_dir)
    proven = _adoptable(app) if adopt else None
    with Ledger.open(app.state_dir, signer=signer, repo=app.root, adopt=proven) as ledger:
        note = ledger.checkpoint()
    cp = parse(note).checkpoint
    anchored, warning = anchors.keep(app.anchor_store, note, repo=app.root, state_dir=app.state_dir)
    if warning is not None:
        app.out.error(f"runner: warning: {warning}")
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
                "anchor_store": str(anchored) if anchored else None,
                "adopted": proven is not None,
            }
        )
        return 0
    if proven is not None:
        app.out.line(f"adopted the ledger: runner's record is now {record_path(app.state_dir)}")
    app.out.line(f"checkpoint of {cp.size} entries signed by {signer.public.key_id}:")
    app.out.raw(note)
    if anchored is not None:
        app.out.line(f"appended to the anchor store: {anchored}")
    if export_to is not None:
        app.out.line(
            f"exported to {export_to}: keep it where the runner cannot rewrite it (commit it, "
            f"a CI artifact), then `runner audit verify --anchor {export_to}`"
        )
    return 0


def _adoptable(app: App) -> bytes:
    """The root `audit verify` proves for a ledger runner has no record of: every line,
    link and checkpoint verified with the trusted keys and the anchor store, without a
    single error (a ledger no checkpoint covers proves nothing, so it is not adopted)."""
    if read_head(app.state_dir) is not None:
        raise InvalidInput(
            f"runner already keeps a record of this ledger ({record_path(app.state_dir)}): "
            "there is nothing to adopt",
            hint="run `runner audit checkpoint` without --adopt",
        )
    _, given = anchors.for_ledger(app.anchor_store, repo=app.root, state_dir=app.state_dir)
    report = verify_ledger(
        ledger_dir(app.state_dir), load_trusted(app.root / PUB_DIR), anchors=given
    )
    blocking = [f for f in report.findings if not f.code.is_warning]
    if blocking:
        raise VerificationFailed(
            f"the ledger does not verify ({', '.join(sorted({f.code.value for f in blocking}))}): "
            "runner will not adopt it",
            hint="`runner audit verify` says why",
        )
    unsealed = report.entries - report.sealed
    if unsealed:
        app.out.error(
            f"runner: adopting {unsealed} entries no trusted checkpoint sealed "
            f"({report.sealed}..{report.entries - 1}): they are sealed now on your word"
        )
    return bytes.fromhex(report.root)
