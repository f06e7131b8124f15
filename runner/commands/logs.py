"""`runner logs RUN`: replay a run's (already redacted) event log, or follow a live one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.app import App
from runner.commands.runs import find_run, runner_gone
from runner.errors import InvalidInput
from runner.records.eventlog import read_events


def _finished(run_dir: Path) -> bool:
    """The run has ended: run.json says so, or the process that ran it is gone (a crash)."""
    try:
        record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if isinstance(record, dict) and record.get("finished"):
        return True
    return runner_gone(run_dir)


def _selected(event: dict[str, Any], job: str | None) -> bool:
    if job is None:
        return True
    key = str(event.get("job", ""))
    return key == job or key.startswith(job + " (")  # a matrix instance: "test (shard=1)"


class Formatter:
    """Events as short lines for humans: output prefixed by `[job/step]`."""

    def __init__(self) -> None:
        self._names: dict[tuple[str, Any], str] = {}

    def _where(self, event: dict[str, Any]) -> str:
        job = event.get("job")
        if job is None:
            return ""
        step = event.get("step")
        if step is None:
            return f"[{job}]"
        name = event.get("name") or self._names.get((job, step)) or f"step {step}"
        self._names[(job, step)] = str(name)
        return f"[{job}/{name}]"

    def __call__(self, event: dict[str, Any]) -> str:
        kind = str(event.get("kind", "?"))
        where = self._where(event)
        result = event.get("status") or event.get("result")
        reason = f" ({event['reason']})" if event.get("reason") else ""
        took = event.get("duration_ms")
        took_text = f" in {took / 1000:.1f}s" if isinstance(took, int | float) else ""
        if kind == "output":
            return f"{where} {event.get('line', event.get('text', ''))}"
        if kind == "run.started":
            what = event.get("mission") or ""
            on = f" on {event['event']}" if event.get("event") else ""
            return f"run {event.get('run_id', '')} started: {what}{on}".replace("  ", " ")
        if kind == "run.finished":
            return f"run finished: {result or 'unknown'}{reason}{took_text}"
        if kind in ("job.started", "step.started"):
            attempt = event.get("attempt")
            again = f" (attempt {attempt})" if isinstance(attempt, int) and attempt > 1 else ""
            return f"{where} started{again}"
        if kind in ("job.finished", "step.finished"):
            return f"{where} {result or 'finished'}{reason}{took_text}"
        if kind == "annotation":
            return f"{where} {event.get('level', 'notice')}: {event.get('message', '')}"
        skip = {"seq", "ts", "kind", "job", "step"} | ({"name"} if "step" in event else set())
        rest = " ".join(f"{k}={v}" for k, v in event.items() if k not in skip)
        return " ".join(part for part in (where, kind, rest) if part)


def main(app: App, run_id: str, job: str | None = None, follow: bool = False) -> int:
    run_dir = find_run(app, run_id)
    path = run_dir / "events.jsonl"
    if not follow and not path.exists():
        raise InvalidInput(f"run {run_dir.name} has no event log ({path} is missing)")
    fmt = Formatter()
    for event in read_events(path, follow=follow, until_done=lambda: _finished(run_dir)):
        if not _selected(event, job):
            continue
        if app.out.json_mode:
            app.out.raw(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
        else:
            app.out.raw(fmt(event) + "\n")
    return 0
