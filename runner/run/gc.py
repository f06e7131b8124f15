"""Liveness of runs, and the garbage they leave: labelled containers/volumes, old run dirs.

A run is alive while some process holds an exclusive `flock` on `<state>/runs/<id>/lock`
(`hold_run_lock`, taken before the run creates anything and held for its whole life). The
kernel drops the lock when that process dies, even by SIGKILL, so `runner gc` can tell a
crashed run from a running one without trusting any pid file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.engine.backend import LABEL_RUN, LABEL_STATE, Backend
from runner.errors import InvalidInput, RunnerError
from runner.mission.durations import AGE_UNITS, parse_duration

LOCK_NAME = "lock"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class RunLocked(RunnerError):
    """Another process already runs under this run id."""


def run_dir(state_dir: Path, run_id: str) -> Path:
    if not _RUN_ID.match(run_id):
        raise InvalidInput(f"{run_id!r} is not a run id")
    return state_dir / "runs" / run_id


@contextlib.contextmanager
def hold_run_lock(state_dir: Path, run_id: str) -> Iterator[Path]:
    """Hold the run's lock for the duration of the block; yields the run directory."""
    directory = run_dir(state_dir, run_id)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"run {run_id} is already running in {state_dir}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield directory
    finally:
        os.close(fd)  # releases the lock


def run_is_alive(state_dir: Path, run_id: str) -> bool:
    """True while a process holds the run's lock."""
    try:
        lock = run_dir(state_dir, run_id) / LOCK_NAME
    except InvalidInput:
        return False
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


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
    alive_runs: list[str] = field(default_factory=list)

    def serialize(self) -> dict[str, Any]:
        return {
            "containers": self.containers,
            "volumes": self.volumes,
            "alive_runs": sorted(set(self.alive_runs)),
        }


def _ours(labels: dict[str, str], state_dir: Path) -> bool:
    """Made by a run of `state_dir`: its state-dir label says so or, without one, the run
    has a directory there. Runs of other state directories (other repositories, other
    machines sharing the engine) are never judged from here."""
    if LABEL_STATE in labels:
        return labels[LABEL_STATE] == str(state_dir.resolve())
    try:
        return run_dir(state_dir, labels.get(LABEL_RUN, "")).is_dir()
    except InvalidInput:
        return False


def sweep(backend: Backend, state_dir: Path) -> Sweep:
    """Remove the labelled containers and volumes of this state dir's runs that are not
    alive (containers first: a volume in use cannot go)."""
    done = Sweep()
    alive: dict[str, bool] = {}
    containers, volumes = backend.list_labelled(LABEL_RUN)
    for remove, found, removed in (
        (backend.remove, containers, done.containers),
        (backend.remove_volume, volumes, done.volumes),
    ):
        for key, labels in found.items():
            if not _ours(labels, state_dir):
                continue
            run_id = labels.get(LABEL_RUN, "")
            if run_id not in alive:
                alive[run_id] = run_is_alive(state_dir, run_id)
            if alive[run_id]:
                done.alive_runs.append(run_id)
                continue
            remove(key)
            removed.append(key)
    return done


def _last_activity(directory: Path) -> float:
    newest = directory.stat().st_mtime
    with contextlib.suppress(OSError):
        for entry in directory.iterdir():
            newest = max(newest, entry.lstat().st_mtime)
    return newest


def prune_runs(
    state_dir: Path, *, older_than_s: float | None, keep: int | None, now: float
) -> list[str]:
    """Delete run directories (never the ledger, never a live run).

    A run is pruned when it is older than `older_than_s` (if given) and not among the
    `keep` most recent (if given). With neither, nothing is pruned."""
    if older_than_s is None and keep is None:
        return []
    if keep is not None and keep < 0:
        raise InvalidInput(f"--keep {keep} must be 0 or more")
    runs_dir = state_dir / "runs"
    if not runs_dir.is_dir():
        return []
    runs = sorted(
        (
            (_last_activity(d), d)
            for d in runs_dir.iterdir()
            if d.is_dir() and _RUN_ID.match(d.name)
        ),
        reverse=True,
    )
    pruned: list[str] = []
    for index, (when, directory) in enumerate(runs):
        if keep is not None and index < keep:
            continue
        if older_than_s is not None and now - when < older_than_s:
            continue
        if run_is_alive(state_dir, directory.name):
            continue
        try:
            shutil.rmtree(directory)
        except OSError as exc:
            raise RunnerError(f"cannot prune run {directory.name} in {directory}: {exc}") from exc
        pruned.append(directory.name)
    return sorted(pruned)
