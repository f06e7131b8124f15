"""`runner audit export RUN --format slsa`: signed in-toto/SLSA provenance of a run, once
the ledger verifies (trusted keys, anchor store, runner's record) and the run is sealed."""

from __future__ import annotations

import json
from pathlib import Path

from runner.app import App
from runner.audit import anchors
from runner.audit.head import read_head, record_path
from runner.audit.keys import PUB_DIR, load_trusted
from runner.audit.ledger import ENTRIES, ledger_dir, load_signer
from runner.audit.provenance import export
from runner.errors import InvalidInput


def main(app: App, run_id: str, *, fmt: str, output: Path | None) -> int:
    if fmt != "slsa":
        raise InvalidInput(f"unknown export format {fmt!r}; the format is slsa")
    directory = ledger_dir(app.state_dir)
    if not (directory / ENTRIES).exists():
        raise InvalidInput(f"no audit ledger at {directory}")
    signer = load_signer(app.state_dir, app.root, create=False, say=app.out.line)
    _, given = anchors.for_ledger(app.anchor_store, repo=app.root, state_dir=app.state_dir)
    envelope = export(
        directory,
        run_id,
        signer,
        trusted=load_trusted(app.root / PUB_DIR),
        anchors=given,
        record=read_head(app.state_dir),
        record_name=str(record_path(app.state_dir)),
    )
    text = json.dumps(envelope, indent=2, sort_keys=True) + "\n"
    if output is None:
        app.out.raw(text)
        return 0
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {output}: {exc.strerror}") from None
    app.out.error(f"wrote SLSA provenance of run {run_id} to {output}")
    return 0
