"""The directory of each run, `<state>/runs/<run-id>/`: its layout, its record, listing and
finding runs, and the one rule that tells a live run from an ended one.

    run.json      the run's record (`RunResult.serialize()`, redacted): written as the run
                  starts (result `running`), replaced atomically when it ends
    events.jsonl  the event log (`runner.records.eventlog`)
    artifacts/    what the run's jobs stored, `<name>.tar`
    lock          held, with an exclusive `flock`, by the process running the run

A run is live iff some process holds its lock; nothing else is asked (`runner gc`, `runner
runs` and `runner logs --follow` all go through `RunDir.is_live`). The runner takes the
lock before the directory exists under the run's id (it is made under a hidden name,
locked, then renamed into place) and keeps it until run.json says how the run ended, so a
run's directory is never seen unlocked while its runner lives. The kernel drops the lock
when that process dies, even by SIGKILL: a crashed run is told from a running one without
trusting a pid (which another process may have taken since, or which names a process of
another pid namespace sharing the directory).

A directory, lock or record that cannot be written (a full disk, an I/O error) raises
`StorageFailed` (exit 4) naming the path.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.durable import write_atomic
from runner.errors import InvalidInput, RunnerError, StorageFailed
from runner.records.eventlog import replay
from runner.records.events import RunFinished, RunStarted
from runner.records.results import RunResult
from runner.secrets.redact import Redactor, redact_structure

RUNS = "runs"
RUN_JSON = "run.json"
EVENTS = "events.jsonl"
ARTIFACTS = "artifacts"
LOCK = "lock"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
UNFINISHED = ("running", "pending")  # what run.json says of a run that has not ended


class RunLocked(RunnerError):
    """Another process already runs under this run id."""


def runs_root(state_dir: Path) -> Path:
    return state_dir / RUNS


@dataclass(frozen=True)
class RunDir:
    """One run's directory and the paths in it."""

    path: Path

    @classmethod
    def of(cls, state_dir: Path, run_id: str) -> RunDir:
        """The directory of run `run_id`; InvalidInput if that is no run id (a path)."""
        if not _RUN_ID.match(run_id):
            raise InvalidInput(f"{run_id!r} is not a run id")
        return cls(runs_root(state_dir) / run_id)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def events(self) -> Path:
        return self.path / EVENTS

    @property
    def artifacts(self) -> Path:
        return self.path / ARTIFACTS

    @property
    def lock(self) -> Path:
        return self.path / LOCK

    def is_live(self) -> bool:
        """True while a process holds the run's lock. Asking takes the lock shared for an
        instant; a runner never needs it then (it locked the directory before naming it)."""
        try:
            fd = os.open(self.lock, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def read_record(self) -> dict[str, Any] | None:
        """run.json as it is; None when there is none or it is not a JSON object."""
        try:
            loaded = json.loads(self.run_json.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return loaded if isinstance(loaded, dict) else None

    def write_record(self, result: RunResult, redactor: Redactor | None = None) -> None:
        """Replace run.json (atomically) with `result`, redacted when a redactor is given."""
        document = result.serialize()
        if redactor is not None:
            document = redact_structure(document, redactor)
        text = json.dumps(document, indent=2, sort_keys=True)
        try:
            write_atomic(self.run_json, (text + "\n").encode("utf-8"))
        except OSError as exc:
            raise StorageFailed.writing(self.run_json, exc, "the run record") from exc

    def last_activity(self) -> float:
        """The newest modification time of the directory and what is directly in it."""
        newest = self.path.stat().st_mtime
        with contextlib.suppress(OSError):
            for entry in self.path.iterdir():
                newest = max(newest, entry.lstat().st_mtime)
        return newest


def is_live(state_dir: Path, run_id: str) -> bool:
    """`RunDir.is_live` by id; never live for what is not a run id (a label's value)."""
    try:
        return RunDir.of(state_dir, run_id).is_live()
    except InvalidInput:
        return False


@contextlib.contextmanager
def hold_run_lock(state_dir: Path, run_id: str) -> Iterator[RunDir]:
    """Hold the run's lock for the duration of the block, making its directory if need be
    (locked before it appears under its name); yields the run's directory."""
    run = RunDir.of(state_dir, run_id)
    try:
        fd = _lock(run, state_dir)
    except OSError as exc:
        raise StorageFailed.writing(run.path, exc, "the run directory") from exc
    try:
        with contextlib.suppress(OSError):  # for people: the lock is what counts
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield run
    finally:
        os.close(fd)  # releases the lock


def _open_lock(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _lock(run: RunDir, state_dir: Path) -> int:
    root = run.path.parent
    root.mkdir(parents=True, exist_ok=True)
    if not run.path.exists():
        staging = Path(tempfile.mkdtemp(prefix=f".{run.run_id}.", dir=root))
        fd = _open_lock(staging / LOCK)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else knows this file
        try:
            staging.rename(run.path)
            return fd
        except OSError:  # a directory of that name appeared meanwhile: lock that one
            os.close(fd)
            shutil.rmtree(staging, ignore_errors=True)
    fd = _open_lock(run.lock)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunLocked(f"run {run.run_id} is already running in {state_dir}") from None
    return fd


def run_dirs(state_dir: Path) -> list[RunDir]:
    """Every run directory, in no particular order (hidden ones being made are not runs)."""
    root = runs_root(state_dir)
    if not root.is_dir():
        return []
    return [RunDir(p) for p in root.iterdir() if _RUN_ID.match(p.name) and p.is_dir()]


def find_run(state_dir: Path, run_id: str) -> RunDir:
    """The directory of run `run_id`; a unique prefix of one is enough."""
    root = runs_root(state_dir)
    if _RUN_ID.match(run_id) and (root / run_id).is_dir():
        return RunDir(root / run_id)
    matches = sorted(
        (run for run in run_dirs(state_dir) if run_id and run.run_id.startswith(run_id)),
        key=lambda run: run.run_id,
    )
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(r.run_id for r in matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise InvalidInput(f"run {run_id!r} is ambiguous: it starts {names}")
    raise InvalidInput(f"no run {run_id!r} in {root}", hint="`runner runs` lists the runs")


# -- what a run says of itself -------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """A run as `runner runs` lists it: its record (run.json, or what the event log says of
    a run without one), whether it is live, and what follows from both."""

    run: RunDir
    document: dict[str, Any]
    live: bool

    @property
    def crashed(self) -> bool:
        """The run has not ended, and it is not live."""
        return self.document.get("result") in UNFINISHED and not self.live

    @property
    def result(self) -> str:
        """The recorded result, or `crashed`."""
        return "crashed" if self.crashed else str(self.document.get("result") or "")

    @property
    def started(self) -> datetime | None:
        return parse_time(self.document.get("started"))

    @property
    def duration_s(self) -> float | None:
        started, finished = self.started, parse_time(self.document.get("finished"))
        millis = self.document.get("duration_ms")
        if finished is not None and isinstance(millis, int) and not isinstance(millis, bool):
            return millis / 1000
        if started and finished:
            return round((finished - started).total_seconds(), 3)
        return None

    def serialize(self) -> dict[str, Any]:
        """The record, completed with the run id, `crashed` and the duration."""
        document = {**self.document}
        document.setdefault("run_id", self.run.run_id)
        if self.crashed:
            document["result"] = "crashed"
        document["duration_s"] = self.duration_s
        return document


def summarize(run: RunDir) -> RunSummary:
    document = run.read_record()
    if document is None:
        document = _from_events(run)
    return RunSummary(run, document, run.is_live())


def _from_events(run: RunDir) -> dict[str, Any]:
    """What a run without run.json says about itself in its event log."""
    record: dict[str, Any] = {"result": "running"}
    try:
        for logged in replay(run.events):
            event = logged.event
            if isinstance(event, RunStarted):
                said = {"mission": event.mission, "event": event.event}
                record.update({key: value for key, value in said.items() if value})
                record["started"] = logged.ts
            elif isinstance(event, RunFinished):
                record["result"] = event.result.serialize()
                record["finished"] = logged.ts
                record["duration_ms"] = event.duration_ms
    except (InvalidInput, OSError):
        record["result"] = "unreadable"
    return record


def list_runs(state_dir: Path) -> list[RunSummary]:
    """Every run, newest first: by the time it started, or (when it does not say) by the
    last time its directory changed."""

    def newest(summary: RunSummary) -> tuple[float, str]:
        started = summary.started
        when = started.timestamp() if started else _mtime(summary.run)
        return when, summary.run.run_id

    return sorted((summarize(run) for run in run_dirs(state_dir)), key=newest, reverse=True)


def _mtime(run: RunDir) -> float:
    try:
        return run.last_activity()
    except OSError:
        return 0.0


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time (or unix seconds or milliseconds) as an aware datetime."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None
