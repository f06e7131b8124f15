"""`runner runs`: the runs kept under `.runner/runs/`, newest first (`records.rundirs` finds
them and says which are live; a run that has not ended and is not live crashed)."""

from __future__ import annotations

from typing import Any

from runner.app import App
from runner.records.rundirs import list_runs, runs_root
from runner.report.display import format_duration


def _mission(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("name") or value.get("path") or "-")
    return str(value) if value else "-"


def main(app: App) -> int:
    runs = list_runs(app.state_dir)
    if app.out.json_mode:
        app.out.json([run.serialize() for run in runs])
        return 0
    if not runs:
        app.out.line(f"no runs in {runs_root(app.state_dir)} yet")
        return 0
    rows = [("RUN", "MISSION", "RESULT", "STARTED", "DURATION")]
    for run in runs:
        started, seconds = run.started, run.duration_s
        rows.append(
            (
                run.run.run_id,
                _mission(run.document.get("mission")),
                run.result or "-",
                started.strftime("%Y-%m-%d %H:%M:%S") if started else "-",
                format_duration(seconds) if seconds is not None else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        app.out.line(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0
