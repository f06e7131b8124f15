"""`runner gc [--older-than AGE] [--keep N] [--cache-days D] [--cache-max-size SIZE]`:
remove the containers, volumes and egress networks of runs that are no longer alive
(crashed, killed), prune old run directories, remove repository snapshots
(`runner.run.snapshot`) last used more than AGE ago (default 7 days) or beyond the N most
recently used (default 3), unless a run is live, and evict `actions/cache` entries not
used for D days (default 7) and then the least recently used until the cache takes at
most SIZE (default 10 GiB), unless a run is using it (`runner.run.cache.collect`). Never
the ledger; what was removed or pruned is recorded there (`gc.pruned`; `volumes` counts
the snapshots too), each evicted cache entry as a `cache.evicted`.

`--backend kubernetes [--namespace NS]` sweeps the cluster instead: the pods, claims,
NetworkPolicies and run ConfigMaps labelled with a dead run's id (deleting a run's
ConfigMap cascades to whatever it owns)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from runner.app import App
from runner.commands.recording import append_entries, append_entry
from runner.engine.backend import Backend
from runner.engine.docker.backend import connect
from runner.policy.model import Policy
from runner.run.gc import (
    collect_caches,
    collect_snapshots,
    parse_age,
    parse_size,
    prune_runs,
    sweep,
)


def main(
    app: App,
    *,
    older_than: str | None,
    keep: int | None,
    cache_days: int | None = None,
    cache_max_size: str | None = None,
    connector: Callable[[App, Policy | None], Backend] | None = None,
) -> int:
    """`connector`: the engine chosen with `--backend` (None: Docker)."""
    older_than_s = parse_age(older_than) if older_than is not None else None
    cache_bytes = parse_size(cache_max_size) if cache_max_size is not None else None
    backend = connector(app, None) if connector is not None else connect()
    try:
        swept = sweep(backend, app.state_dir)
        snapshots = collect_snapshots(
            backend, app.state_dir, older_than_s=older_than_s, keep=keep, now=time.time()
        )
    finally:
        backend.close()
    pruned = prune_runs(app.state_dir, older_than_s=older_than_s, keep=keep, now=time.time())
    caches = collect_caches(app.state_dir, days=cache_days, max_bytes=cache_bytes, now=time.time())
    report: dict[str, Any] = {
        **swept.serialize(),
        "snapshots": snapshots or [],
        "pruned_runs": pruned,
        "caches": [evicted.serialize() for evicted in caches or []],
        "caches_in_use": caches is None,
    }
    append_entries(app, [("cache.evicted", evicted.serialize()) for evicted in caches or []])
    if swept.containers or swept.volumes or swept.networks or pruned or snapshots:
        append_entry(
            app,
            "gc.pruned",
            {
                "runs": pruned,
                "containers": len(swept.containers),
                "volumes": len(swept.volumes) + len(snapshots or []),
            },
        )
    if app.out.json_mode:
        app.out.json(report)
        return 0
    app.out.line(
        f"removed {len(swept.containers)} container(s) and {len(swept.volumes)} volume(s) "
        f"of dead runs; pruned {len(pruned)} run(s)"
    )
    if swept.networks:
        app.out.line(f"  removed {len(swept.networks)} egress network(s) and their firewall rules")
    for run_id in pruned:
        app.out.line(f"  pruned run {run_id}")
    for name in snapshots or []:
        app.out.line(f"  removed repository snapshot {name}")
    if snapshots is None:
        app.out.line("  kept the repository snapshots: a run is live")
    for evicted in caches or []:
        why = "unused" if evicted.reason == "unused" else "over the cache size cap"
        scope = " ".join(part for part in (evicted.event, evicted.ref) if part)
        app.out.line(f"  evicted cache {evicted.key!r} ({scope}): {why}")
    if caches is None:
        app.out.line("  kept the caches: a run is using them")
    for run_id in sorted(set(swept.alive_runs)):
        app.out.line(f"  kept run {run_id}: still running")
    return 0
