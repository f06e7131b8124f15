"""`runner runs`: the runs kept under `.runner/runs/`, newest first."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.app import App
from runner.errors import InvalidInput
from runner.records.eventlog import read_events


def runs_dir(app: App) -> Path:
    return app.state_dir / "runs"


def find_run(app: App, run_id: str) -> Path:
    """The directory of run `run_id` (a unique prefix is enough)."""
    base = runs_dir(app)
    if run_id and "/" not in run_id and run_id not in (".", "..") and (base / run_id).is_dir():
        return base / run_id
    matches = sorted(p for p in base.glob("*") if p.is_dir() and p.name.startswith(run_id))
    if run_id and len(matches) == 1:
        return matches[0]
    if len(matches) > 1 and run_id:
        names = ", ".join(p.name for p in matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise InvalidInput(f"run {run_id!r} is ambiguous: it starts {names}")
    raise InvalidInput(f"no run {run_id!r} in {base}", hint="`runner runs` lists the runs")


def runner_gone(run_dir: Path) -> bool:
    """The pid in the run's lock file names no process: the run crashed. The lock is read,
    never taken: taking it, even shared, could make the runner itself fail to take it."""
    try:
        pid = int((run_dir / "lock").read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return False  # no lock yet (the run is starting), or its pid not yet written
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False


def _time(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _from_events(path: Path) -> dict[str, Any]:
    """What a run without run.json (still running, or crashed) says about itself."""
    record: dict[str, Any] = {"result": "running"}
    try:
        for event in read_events(path):
            if event.get("kind") == "run.started":
                record.update(
                    {k: event.get(k) for k in ("mission", "event") if event.get(k) is not None}
                )
                record["started"] = event.get("ts")
            elif event.get("kind") == "run.finished":
                record["result"] = event.get("result") or event.get("status") or "unknown"
                record["finished"] = event.get("ts")
    except (InvalidInput, OSError):
        record["result"] = "unreadable"
    return record


def load_run(directory: Path) -> dict[str, Any]:
    """run.json of a run, completed with its id and duration."""
    record: dict[str, Any] = {}
    try:
        loaded = json.loads((directory / "run.json").read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            record = loaded
    except (OSError, ValueError):
        record = _from_events(directory / "events.jsonl")
    record.setdefault("run_id", directory.name)
    if record.get("result") in ("running", "pending") and runner_gone(directory):
        record["result"] = "crashed"
    started, finished = _time(record.get("started")), _time(record.get("finished"))
    millis = record.get("duration_ms")
    if finished is not None and isinstance(millis, int) and not isinstance(millis, bool):
        record["duration_s"] = millis / 1000
    else:
        record["duration_s"] = (
            round((finished - started).total_seconds(), 3) if started and finished else None
        )
    return record


def list_runs(app: App) -> list[dict[str, Any]]:
    base = runs_dir(app)
    runs = [load_run(d) for d in base.iterdir() if d.is_dir()] if base.is_dir() else []
    never = datetime.min.replace(tzinfo=UTC)
    runs.sort(key=lambda r: (_time(r.get("started")) or never, r["run_id"]), reverse=True)
    return runs


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _mission(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("name") or value.get("path") or "-")
    return str(value) if value else "-"


def main(app: App) -> int:
    runs = list_runs(app)
    if app.out.json_mode:
        app.out.json(runs)
        return 0
    if not runs:
        app.out.line(f"no runs in {runs_dir(app)} yet")
        return 0
    rows = [("RUN", "MISSION", "RESULT", "STARTED", "DURATION")]
    for run in runs:
        started = _time(run.get("started"))
        rows.append(
            (
                str(run["run_id"]),
                _mission(run.get("mission")),
                str(run.get("result") or "-"),
                started.strftime("%Y-%m-%d %H:%M:%S") if started else "-",
                _duration(run.get("duration_s")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        app.out.line(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0
