"""The garbage runs leave: labelled containers and volumes of runs that are no longer live,
old run directories, repository snapshots no run has used for a while, and `actions/cache`
entries unused for days or beyond the store's cap (`runner.run.cache.collect`).

Whether a run is live is `runner.records.rundirs`'s one rule (its lock is held), the same
`runner runs` and `runner logs --follow` ask; this module only decides what to remove.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.engine.backend import LABEL_RUN, LABEL_STATE, Backend
from runner.errors import InvalidInput, RunnerError
from runner.mission.durations import AGE_UNITS, parse_duration
from runner.policy.loader import memory_bytes
from runner.records.rundirs import RunDir, is_live, list_runs
from runner.run.cache import MAX_TOTAL_BYTES, MAX_UNUSED_DAYS, Evicted, collect
from runner.run.snapshot import DEFAULT_KEEP, DEFAULT_MAX_AGE_S, SnapshotCache


def parse_age(text: str) -> float:
    """ "30s", "15m", "12h", "7d", "2w" -> seconds; InvalidInput otherwise."""
    seconds = parse_duration(text, AGE_UNITS) if isinstance(text, str) else None
    if seconds is None or not any(text.strip().endswith(unit) for unit in AGE_UNITS):
        raise InvalidInput(
            f"--older-than {text!r} is not a duration", hint="use e.g. 30m, 12h, 7d or 2w"
        )
    return seconds


@dataclass
class Sweep:
    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    alive_runs: list[str] = field(default_factory=list)

    def serialize(self) -> dict[str, Any]:
        return {
            "containers": self.containers,
            "volumes": self.volumes,
            "networks": self.networks,
            "alive_runs": sorted(set(self.alive_runs)),
        }


def _ours(labels: dict[str, str], state_dir: Path) -> bool:
    """Made by a run of `state_dir`: its state-dir label says so or, without one, the run
    has a directory there. Runs of other state directories (other repositories, other
    machines sharing the engine) are never judged from here."""
    if LABEL_STATE in labels:
        return labels[LABEL_STATE] == str(state_dir.resolve())
    try:
        return RunDir.of(state_dir, labels.get(LABEL_RUN, "")).path.is_dir()
    except InvalidInput:
        return False


def sweep(backend: Backend, state_dir: Path) -> Sweep:
    """Remove the labelled containers, volumes and networks (with their firewall rules)
    of this state dir's runs that are not alive (containers first: a volume or network in
    use cannot go)."""
    done = Sweep()
    alive: dict[str, bool] = {}
    containers, volumes = backend.list_labelled(LABEL_RUN)
    networks = backend.list_networks(LABEL_RUN)
    for remove, found, removed in (
        (backend.remove, containers, done.containers),
        (backend.remove_volume, volumes, done.volumes),
        (backend.remove_network, networks, done.networks),
    ):
        for key, labels in found.items():
            if not _ours(labels, state_dir):
                continue
            run_id = labels.get(LABEL_RUN, "")
            if run_id not in alive:
                alive[run_id] = is_live(state_dir, run_id)
            if alive[run_id]:
                done.alive_runs.append(run_id)
                continue
            remove(key)
            removed.append(key)
    return done


def prune_runs(
    state_dir: Path, *, older_than_s: float | None, keep: int | None, now: float
) -> list[str]:
    """Delete run directories (never the ledger, never a live run).

    A run is pruned when its directory last changed more than `older_than_s` ago (if
    given) and it is not among the `keep` newest (`list_runs`' order, if given). With
    neither, nothing is pruned."""
    if older_than_s is None and keep is None:
        return []
    if keep is not None and keep < 0:
        raise InvalidInput(f"--keep {keep} must be 0 or more")
    pruned: list[str] = []
    for index, summary in enumerate(list_runs(state_dir)):
        run = summary.run
        if keep is not None and index < keep:
            continue
        if older_than_s is not None and now - run.last_activity() < older_than_s:
            continue
        if run.is_live():
            continue
        try:
            shutil.rmtree(run.path)
        except OSError as exc:
            raise RunnerError(f"cannot prune run {run.run_id} in {run.path}: {exc}") from exc
        pruned.append(run.run_id)
    return sorted(pruned)


def collect_snapshots(
    backend: Backend,
    state_dir: Path,
    *,
    older_than_s: float | None,
    keep: int | None,
    now: float,
) -> list[str] | None:
    """Remove this state dir's repository snapshots last used more than `older_than_s` ago
    (default 7 days) or not among the `keep` most recently used (default 3); the names
    removed, or None when a live run holds them (`runner.run.snapshot`)."""
    return SnapshotCache(backend, state_dir).collect(
        keep=DEFAULT_KEEP if keep is None else keep,
        older_than_s=DEFAULT_MAX_AGE_S if older_than_s is None else older_than_s,
        now=now,
    )


def parse_size(text: str) -> int:
    """ "10g", "500m", "10GiB", "1024" (bytes) -> bytes; InvalidInput otherwise."""
    size = memory_bytes(text) if isinstance(text, str) else None
    if size is None:
        raise InvalidInput(
            f"--cache-max-size {text!r} is not a size", hint="use e.g. 500m, 10g or 10GiB"
        )
    return size


def collect_caches(
    state_dir: Path, *, days: float | None, max_bytes: int | None, now: float
) -> list[Evicted] | None:
    """Evict the `actions/cache` entries unused for `days` (default 7) and then the least
    recently used beyond `max_bytes` (default 10 GiB); None when a run is using the cache."""
    return collect(
        state_dir,
        max_unused_s=(MAX_UNUSED_DAYS if days is None else days) * 86400,
        max_bytes=MAX_TOTAL_BYTES if max_bytes is None else max_bytes,
        now=now,
    )
