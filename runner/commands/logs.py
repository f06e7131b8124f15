"""`runner logs RUN`: replay a run's (already redacted) event log, or follow a live one."""

from __future__ import annotations

import json
from pathlib import Path

from runner.app import App
from runner.commands.runs import find_run, runner_gone
from runner.errors import InvalidInput
from runner.records.eventlog import Logged, replay
from runner.records.events import JobEvent
from runner.report.display import encodable, glyphs_for, stream_encoding
from runner.report.replay import ReplayView


def _finished(run_dir: Path) -> bool:
    """The run has ended: run.json says so, or the process that ran it is gone (a crash)."""
    try:
        record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if isinstance(record, dict) and record.get("finished"):
        return True
    return runner_gone(run_dir)


def _selected(logged: Logged, job: str | None) -> bool:
    if job is None:
        return True
    event = logged.event
    key = event.job if isinstance(event, JobEvent) else str(logged.record.get("job", ""))
    return key == job or key.startswith(job + " (")  # a matrix instance: "test (shard=1)"


def main(app: App, run_id: str, job: str | None = None, follow: bool = False) -> int:
    run_dir = find_run(app, run_id)
    path = run_dir / "events.jsonl"
    if not follow and not path.exists():
        raise InvalidInput(f"run {run_dir.name} has no event log ({path} is missing)")
    view = ReplayView(glyphs_for(app.out.stdout))
    encoding = stream_encoding(app.out.stdout)
    for logged in replay(path, follow=follow, until_done=lambda: _finished(run_dir)):
        if not _selected(logged, job):
            continue
        if app.out.json_mode:
            app.out.raw(json.dumps(logged.record, ensure_ascii=False, separators=(",", ":")) + "\n")
            continue
        line = view.line(logged.event)
        if line is not None:
            app.out.raw(encodable(line, encoding) + "\n")
    return 0
