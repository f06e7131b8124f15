"""`runner gc [--older-than AGE] [--keep N]`: remove the containers and volumes of runs that
are no longer alive (crashed, killed), and prune old run directories. Never the ledger;
what was removed or pruned is recorded there (`gc.pruned`)."""

from __future__ import annotations

import time
from typing import Any

from runner.app import App
from runner.audit.keys import load_signer
from runner.audit.ledger import Ledger
from runner.engine.docker.backend import connect
from runner.errors import InvalidInput
from runner.run.gc import parse_age, prune_runs, sweep


def main(app: App, *, older_than: str | None, keep: int | None) -> int:
    older_than_s = parse_age(older_than) if older_than is not None else None
    backend = connect()
    try:
        swept = sweep(backend, app.state_dir)
    finally:
        backend.close()
    pruned = prune_runs(app.state_dir, older_than_s=older_than_s, keep=keep, now=time.time())
    report: dict[str, Any] = {**swept.serialize(), "pruned_runs": pruned}
    if swept.containers or swept.volumes or pruned:
        _record(app, report)
    if app.out.json_mode:
        app.out.json(report)
        return 0
    app.out.line(
        f"removed {len(swept.containers)} container(s) and {len(swept.volumes)} volume(s) "
        f"of dead runs; pruned {len(pruned)} run(s)"
    )
    for run_id in pruned:
        app.out.line(f"  pruned run {run_id}")
    for run_id in sorted(set(swept.alive_runs)):
        app.out.line(f"  kept run {run_id}: still running")
    return 0


def _record(app: App, report: dict[str, Any]) -> None:
    """The `gc.pruned` ledger entry (signed when a key is at hand)."""
    try:
        signer = load_signer(app.state_dir, app.root, create=False, say=app.out.line)
    except InvalidInput:
        signer = None
    ledger = Ledger.open(app.state_dir, signer=signer, repo=app.root)
    try:
        ledger.append(
            "gc.pruned",
            None,
            {
                "runs": report["pruned_runs"],
                "containers": len(report["containers"]),
                "volumes": len(report["volumes"]),
            },
        )
    finally:
        ledger.close()
