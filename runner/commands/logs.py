"""`runner logs RUN`: replay a run's (already redacted) event log, or follow a live one."""

from __future__ import annotations

import json

from runner.app import App
from runner.errors import InvalidInput
from runner.records.eventlog import Logged, replay
from runner.records.events import JobEvent
from runner.records.rundirs import find_run
from runner.report.display import encodable, glyphs_for, stream_encoding
from runner.report.replay import ReplayView


def _selected(logged: Logged, job: str | None) -> bool:
    if job is None:
        return True
    event = logged.event
    key = event.job if isinstance(event, JobEvent) else str(logged.record.get("job", ""))
    return key == job or key.startswith(job + " (")  # a matrix instance: "test (shard=1)"


def main(app: App, run_id: str, job: str | None = None, follow: bool = False) -> int:
    run = find_run(app.state_dir, run_id)
    if not follow and not run.events.exists():
        raise InvalidInput(f"run {run.run_id} has no event log ({run.events} is missing)")
    view = ReplayView(glyphs_for(app.out.stdout))
    encoding = stream_encoding(app.out.stdout)
    # Following ends at run.finished, or once the run is no longer live (it crashed).
    for logged in replay(run.events, follow=follow, until_done=lambda: not run.is_live()):
        if not _selected(logged, job):
            continue
        if app.out.json_mode:
            app.out.raw(json.dumps(logged.record, ensure_ascii=False, separators=(",", ":")) + "\n")
            continue
        line = view.line(logged.event)
        if line is not None:
            app.out.raw(encodable(line, encoding) + "\n")
    return 0
