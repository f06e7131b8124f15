"""What a user sees of a run: a live table on a terminal, plain lines in CI, a summary.

Both views are `Sink` subscribers and write only through `runner.output.Output`.

- `LiveView` (a terminal): one row per job instance (status symbol, elapsed time, the
  step it is on), redrawn in place with ANSI cursor-up + clear-line by a background ticker
  at most `1 / interval` times a second, so durations tick while steps run. After the
  run it prints the last output lines of every failed step and the annotations.
- `PlainView` (CI, a pipe): one prefixed line per thing that happened, in order:
  `[job] ▶ step`, `[job] │ output`, `[job] │ ▾ group` (its lines indented under it),
  `[job] ✓ step (1.2s)`; an annotation with a file compiler style,
  `src/a.py:3:5: error: Title: message [job > step]`, one without as the workflow
  command `::error title=job > step::message` (`runner.report.annotations`).
- JSON mode shows nothing live: the command prints the final document.
- `summary` after the run: the jobs, each failed step, each step's `$GITHUB_STEP_SUMMARY`
  (its Markdown as written, cleaned line by line), the verify checks, the result.

Glyphs fall back to ASCII when the stream's encoding is not a Unicode one. Output lines
of steps are untrusted: escape sequences and control characters are removed before they
reach a terminal, and a line is always prefixed so that it can never pose as a workflow
command of a CI system reading our log.
"""

from __future__ import annotations

import collections

from runner.output import Output
from runner.records.events import (
    Annotation,
    GroupFinished,
    GroupStarted,
    ImageBuild,
    JobFinished,
    OutputLine,
    RunEvent,
    RunStarted,
    ServiceStarted,
    StepFinished,
    StepRetry,
    StepStarted,
)
from runner.records.results import CheckStatus, RunResult, Status
from runner.records.sink import Subscriber
from runner.report.annotations import compiler_line, level_of
from runner.report.display import (
    STATUS_COLOR,
    STATUS_VERB,
    OpenGroups,
    build_progress,
    clean_line,
    encodable,
    format_duration,
    glyphs_for,
    stream_encoding,
    summary_lines,
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
    """Plain prefixed lines for CI logs and pipes: one line per thing that happened.

    A `::group::` of a step shows as its header on the output bar (`[job] │ ▾ title`), the
    group's lines indented under it; its end shows nothing (the indent stops). Groups are
    not turned into a CI system's folds: jobs run at once and their lines interleave, so a
    fold would swallow other jobs' lines."""

    def __init__(self, out: Output) -> None:
        self._out = out
        self._glyphs = glyphs_for(out.stdout)
        self._encoding = stream_encoding(out.stdout)
        self._step_names: dict[tuple[str, int], str] = {}
        self._groups = OpenGroups()

    def _line(self, text: str) -> None:
        self._out.line(encodable(text, self._encoding))

    def _mark(self, status: Status) -> str:
        return self._out.paint(self._glyphs.status(status), STATUS_COLOR[status])

    def handle(self, event: RunEvent) -> None:
        g = self._glyphs
        match event:
            case RunStarted(run_id=run_id, mission=mission, event=on, jobs=jobs):
                self._line(
                    f"run {run_id}: {mission} on {on}, "
                    f"{len(jobs)} job{'' if len(jobs) == 1 else 's'}"
                )
            case ImageBuild(name=name, tag=tag, phase=phase, line=line):
                self._line(build_progress(name, tag, phase, line))
            case StepStarted(job=job, step=step, name=name, attempt=attempt):
                self._step_names[(job, step)] = name
                self._groups.end(job, step)
                again = f" (attempt {attempt})" if attempt > 1 else ""
                self._line(f"[{job}] {self._mark(Status.RUNNING)} {name}{again}")
            case OutputLine(job=job, step=step, line=line):
                indent = self._groups.indent(job, step)
                self._line(f"[{job}] {g.bar} {indent}{clean_line(line)}")
            case GroupStarted(job=job, step=step, title=title):
                self._groups.start(job, step)
                self._line(f"[{job}] {g.bar} {g.group_open} {clean_line(title)}")
            case GroupFinished(job=job, step=step):
                self._groups.end(job, step)
            case Annotation():
                self._annotation(event)
            case StepRetry(job=job, step=step, attempt=attempt, delay_s=delay, reason=reason):
                name = self._step_names.get((job, step), f"step {step}")
                why = f": {reason}" if reason else ""
                self._line(
                    f"[{job}] {self._out.paint(g.retry, 'yellow')} {name}{why}, "
                    f"attempt {attempt} in {format_duration(delay)}"
                )
            case StepFinished(job=job, step=step, name=name):
                self._groups.end(job, step)
                finished = self._finished(
                    event.status, event.reason, event.duration_ms, event.attempts, name
                )
                self._line(f"[{job}] {finished}")
            case ServiceStarted(job=job, service=service, health=health):
                self._line(f"[{job}] service {service}: {health}")
            case JobFinished(job=job, status=status, reason=reason, duration_ms=millis):
                what = f"job {STATUS_VERB[status]}"
                self._line(f"[{job}] {self._finished(status, reason, millis, 1, what)}")
            case _:
                pass

    def _finished(
        self, status: Status, reason: str, duration_ms: int, attempts: int, what: str
    ) -> str:
        text = f"{self._mark(status)} {what}"
        if reason and (status is not Status.SUCCESS or reason != "success"):
            text += f": {reason}"
        details = []
        if status is not Status.SKIPPED:
            details.append(format_duration(duration_ms / 1000))
        if attempts > 1:
            details.append(f"{attempts} attempts")
        return text + (f" ({', '.join(details)})" if details else "")

    def _annotation(self, event: Annotation) -> None:
        job, step = event.job, event.step
        title = job
        if (job, step) in self._step_names:
            title = f"{job} {self._glyphs.arrow} {self._step_names[(job, step)]}"
        located = compiler_line(event)
        if located:
            self._line(f"{located} [{title}]")
            return
        message = "\n".join(clean_line(line) for line in event.message.splitlines())
        if event.title:
            message = f"{clean_line(event.title)}: {message}"
        self._line(
            f"::{level_of(event)} title={_command_property(title)}::{_command_data(message)}"
        )


def make_view(out: Output) -> Subscriber | None:
    """The live view on a terminal, plain lines otherwise, nothing in JSON mode."""
    if out.json_mode:
        return None
    if out.is_tty:
        return LiveView(out)
    return PlainView(out)


# -- the final summary --------------------------------------------------------------------


def summary(run: RunResult, out: Output) -> None:
    """The human summary after a run: jobs, the steps' `$GITHUB_STEP_SUMMARY` Markdown
    (as text), verify checks, the result."""
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
    for key, job in run.jobs.items():
        for step in job.steps:
            if step.summary.strip():
                line(f"summary of {key} {g.arrow} {step.name}:")
                for text in summary_lines(step.summary):
                    line(f"  {g.bar} {text}")
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
