"""What a user sees of a run: a live table on a terminal, plain lines in CI, a summary.

Both views are `Sink` subscribers and write only through `runner.output.Output`.

- `LiveView` (a terminal): one row per job instance (status symbol, elapsed time, the
  step it is on), redrawn in place with ANSI cursor-up + clear-line by a background ticker
  at most `1 / interval` times a second, so durations tick while steps run. After the
  run it prints the last output lines of every failed step and the annotations.
- `PlainView` (CI, a pipe): one prefixed line per thing that happened, in order:
  `[job] ▶ step`, `[job] | output`, `[job] ✓ step (1.2s)`, `::error title=job::message`.
- JSON mode shows nothing live: the command prints the final document.

Glyphs fall back to ASCII when the stream's encoding is not a Unicode one. Output lines
of steps are untrusted: escape sequences and control characters are removed before they
reach a terminal, and a line is always prefixed so that it can never pose as a workflow
command of a CI system reading our log.
"""

from __future__ import annotations

import collections
from typing import Any

from runner.output import Output
from runner.records.results import CheckStatus, RunResult, Status
from runner.records.sink import Event, Subscriber
from runner.report.display import (
    STATUS_COLOR,
    STATUS_VERB,
    clean_line,
    encodable,
    format_duration,
    glyphs_for,
    ms_to_s,
    parse_status,
    stream_encoding,
)
from runner.report.live import LiveView

__all__ = ["LiveView", "PlainView", "make_view", "summary"]


def _command_data(text: str) -> str:
    """Escape a workflow command's message (GitHub's `escapeData`)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _command_property(text: str) -> str:
    return _command_data(text).replace(":", "%3A").replace(",", "%2C")


# -- plain lines --------------------------------------------------------------------------


class PlainView:
    """Plain prefixed lines for CI logs and pipes: one line per thing that happened."""

    def __init__(self, out: Output) -> None:
        self._out = out
        self._glyphs = glyphs_for(out.stdout)
        self._encoding = stream_encoding(out.stdout)
        self._step_names: dict[tuple[str, int], str] = {}

    def _line(self, text: str) -> None:
        self._out.line(encodable(text, self._encoding))

    def _mark(self, status: Status) -> str:
        return self._out.paint(self._glyphs.status(status), STATUS_COLOR[status])

    def handle(self, event: Event) -> None:
        f = event.fields
        kind = event.kind
        g = self._glyphs
        if kind == "run.started":
            jobs = f.get("jobs", [])
            self._line(
                f"run {f.get('run_id', '')}: {f.get('mission', '')} on {f.get('event', '')}, "
                f"{len(jobs)} job{'' if len(jobs) == 1 else 's'}"
            )
        elif kind == "step.started":
            job, name = str(f["job"]), str(f.get("name", ""))
            self._step_names[(job, int(f["step"]))] = name
            attempt = int(f.get("attempt", 1))
            again = f" (attempt {attempt})" if attempt > 1 else ""
            self._line(f"[{job}] {self._mark(Status.RUNNING)} {name}{again}")
        elif kind == "output":
            self._line(f"[{f['job']}] {g.bar} {clean_line(str(f.get('line', '')))}")
        elif kind == "annotation":
            self._annotation(f)
        elif kind == "step.retry":
            name = self._step_names.get((str(f["job"]), int(f["step"])), f"step {f['step']}")
            reason = f": {f['reason']}" if f.get("reason") else ""
            self._line(
                f"[{f['job']}] {self._out.paint(g.retry, 'yellow')} {name}{reason}, "
                f"attempt {f.get('attempt')} in {format_duration(float(f.get('delay_s', 0)))}"
            )
        elif kind == "step.finished":
            self._line(f"[{f['job']}] {self._finished(f, str(f.get('name', '')))}")
        elif kind == "job.finished":
            status = parse_status(f.get("status"))
            self._line(f"[{f['job']}] {self._finished(f, f'job {STATUS_VERB[status]}')}")

    def _finished(self, f: dict[str, Any], what: str) -> str:
        status = parse_status(f.get("status"))
        text = f"{self._mark(status)} {what}"
        reason = str(f.get("reason") or "")
        if reason and (status is not Status.SUCCESS or reason != "success"):
            text += f": {reason}"
        details = []
        seconds = ms_to_s(f.get("duration_ms"))
        if seconds is not None and status is not Status.SKIPPED:
            details.append(format_duration(seconds))
        attempts = int(f.get("attempts") or 1)
        if attempts > 1:
            details.append(f"{attempts} attempts")
        return text + (f" ({', '.join(details)})" if details else "")

    def _annotation(self, f: dict[str, Any]) -> None:
        level = str(f.get("level", "error"))
        if level not in ("error", "warning", "notice"):
            level = "error"
        job = str(f["job"])
        title = job
        step = f.get("step")
        if step is not None and (job, int(step)) in self._step_names:
            title = f"{job} {self._glyphs.arrow} {self._step_names[(job, int(step))]}"
        message = "\n".join(clean_line(line) for line in str(f.get("message", "")).splitlines())
        self._line(f"::{level} title={_command_property(title)}::{_command_data(message)}")


def make_view(out: Output) -> Subscriber | None:
    """The live view on a terminal, plain lines otherwise, nothing in JSON mode."""
    if out.json_mode:
        return None
    if out.is_tty:
        return LiveView(out)
    return PlainView(out)


# -- the final summary --------------------------------------------------------------------


def summary(run: RunResult, out: Output) -> None:
    """The human summary after a run: jobs, verify checks, the result."""
    g = glyphs_for(out.stdout)
    encoding = stream_encoding(out.stdout)

    def line(text: str = "") -> None:
        out.line(encodable(text, encoding))

    def mark(status: Status) -> str:
        return out.paint(g.status(status), STATUS_COLOR[status])

    width = min(max((len(key) for key in run.jobs), default=0), 40)
    line("jobs:")
    for key, job in run.jobs.items():
        text = f"  {mark(job.status)} {key:<{width}}  {job.status.serialize()}"
        if job.reason and job.reason != job.status.serialize():
            text += f": {job.reason}"
        if job.status.done and job.status is not Status.SKIPPED:
            text += f" ({format_duration(job.duration_s)})"
        if job.continue_on_error and job.status is Status.FAILURE:
            text += " [continue-on-error]"
        line(text)
        for step in job.steps:
            if step.status is Status.FAILURE:
                reason = f": {step.reason}" if step.reason else ""
                line(f"  {' ' * width}    {mark(step.status)} {step.name}{reason}")
    if run.checks:
        counts = collections.Counter(check.status for check in run.checks)
        line(
            f"verify: {counts[CheckStatus.PASSED]} passed, {counts[CheckStatus.FAILED]} failed, "
            f"{counts[CheckStatus.UNRESOLVED]} unresolved"
        )
        for check in run.checks:
            if check.status is CheckStatus.PASSED:
                continue
            symbol = (
                out.paint(g.failure, "red")
                if check.status is CheckStatus.FAILED
                else out.paint(g.unresolved, "yellow")
            )
            detail = f" ({check.detail})" if check.detail else ""
            line(f"  {symbol} {check.name}: {check.status.value}: {check.check}{detail}")
    result = run.status
    text = f"{mark(result)} {run.mission}: {out.paint(result.serialize(), STATUS_COLOR[result])}"
    if run.reason and run.reason != result.serialize():
        text += f": {run.reason}"
    line(f"{text} ({format_duration(run.duration_s)}) {g.dot} run {run.run_id}")
