"""The replay of a stored event log for `runner logs`: each event as one short line.

Output lines are prefixed by where they come from, `[job/step name]` (a step known by its
`step.started` or `step.finished`, else `step N`); transitions say what happened
(`[job] started`, `[job/step] failure (exit code 1) in 0.3s`, `run finished: success in
2.0s`; no duration for what never ran). A `::group::` is its header, `[job/step] ▾ title`,
the group's lines indented under it, as in the plain view; its end shows nothing. A
step's summary is `[job/step] summary:`, its Markdown lines under it. An annotation is
`[job/step] error: Title: message`, compiler style when it has a file
(`[job/step] src/a.py:3:5: error: Title: message`; `runner.report.annotations`). Lines of steps are
cleaned as the views clean them (`display.clean_line`): the log keeps what the step
printed, escape sequences included, and a replay must not let them reach a terminal.
"""

from __future__ import annotations

from runner.records.events import (
    Annotation,
    ArtifactStored,
    CacheRestored,
    CacheSaved,
    GroupFinished,
    GroupStarted,
    ImageBuild,
    JobEvent,
    JobFinished,
    JobStarted,
    OutputLine,
    RunEvent,
    RunFinished,
    RunStarted,
    ServiceStarted,
    ServiceStopped,
    StepEvent,
    StepFinished,
    StepPlaced,
    StepRetry,
    StepStarted,
    StepSummary,
    UnknownEvent,
    VerifyFinished,
)
from runner.records.results import Status
from runner.report.annotations import compiler_line, headline
from runner.report.display import Glyphs, OpenGroups, build_progress, clean_line, summary_lines


class ReplayView:
    """Formats the events of one log, in order (it remembers step names and groups)."""

    def __init__(self, glyphs: Glyphs) -> None:
        self._glyphs = glyphs
        self._names: dict[tuple[str, int], str] = {}
        self._groups = OpenGroups()

    def _where(self, event: JobEvent) -> str:
        if not isinstance(event, StepEvent):
            return f"[{event.job}]"
        key = (event.job, event.step)
        named = event.name if isinstance(event, StepStarted | StepFinished) else ""
        name = named or self._names.get(key) or f"step {event.step}"
        self._names[key] = name
        return f"[{event.job}/{name}]"

    def line(self, event: RunEvent | UnknownEvent) -> str | None:
        """The event's line; None for one that shows nothing (the end of a group)."""
        match event:
            case RunStarted(run_id=run_id, mission=mission, event=on):
                on_text = f" on {on}" if on else ""
                return f"run {run_id} started: {mission}{on_text}".replace("  ", " ")
            case RunFinished(result=result, reason=reason, duration_ms=millis):
                return f"run finished: {result.serialize()}{_why(reason)}{_took(millis)}"
            case ImageBuild(name=name, tag=tag, phase=phase, line=text):
                return build_progress(name, tag, phase, text)
            case OutputLine(job=job, step=step, line=text):
                indent = self._groups.indent(job, step)
                return f"{self._where(event)} {indent}{clean_line(text)}"
            case GroupStarted(job=job, step=step, title=title):
                self._groups.start(job, step)
                return f"{self._where(event)} {self._glyphs.group_open} {clean_line(title)}"
            case GroupFinished(job=job, step=step):
                self._groups.end(job, step)
                return None
            case StepStarted(job=job, step=step, attempt=attempt):
                self._groups.end(job, step)
                again = f" (attempt {attempt})" if attempt > 1 else ""
                return f"{self._where(event)} started{again}"
            case JobStarted():
                return f"{self._where(event)} started"
            case StepPlaced(node=node, pod=pod):
                return f"{self._where(event)} placed {_pairs(node=node, pod=pod)}"
            case StepFinished(job=job, step=step, status=status, reason=reason):
                self._groups.end(job, step)
                return _finished(self._where(event), status, reason, event.duration_ms)
            case JobFinished(status=status, reason=reason, duration_ms=millis):
                return _finished(self._where(event), status, reason, millis)
            case Annotation():
                located = compiler_line(event)
                if located:
                    return f"{self._where(event)} {located}"
                return f"{self._where(event)} {clean_line(event.level)}: {headline(event)}"
            case StepSummary(markdown=markdown):
                bar = self._glyphs.bar
                shown = [f"{self._where(event)} summary:"]
                return "\n".join([*shown, *(f"  {bar} {text}" for text in summary_lines(markdown))])
            case StepRetry(attempt=attempt, delay_s=delay, reason=reason):
                return f"{self._where(event)} retry{_why(reason)}: attempt {attempt} in {delay}s"
            case CacheRestored() | CacheSaved():
                cached = {k: v for k, v in event.fields().items() if k != "job"}
                return f"{self._where(event)} {event.kind} {_pairs(**cached)}"
            case ServiceStarted(service=service, health=health):
                return f"{self._where(event)} service {service}: {health}"
            case ServiceStopped(service=service):
                return f"{self._where(event)} service {service}: removed"
            case ArtifactStored():
                stored = _pairs(
                    name=event.name, path=event.path, sha256=event.sha256, size=event.size
                )
                return f"{self._where(event)} {event.kind} {stored}"
            case VerifyFinished(checks=checks):
                failed = sum(check.status.value != "passed" for check in checks)
                return f"verify finished: {len(checks)} check(s), {failed} not passed"
            case UnknownEvent(kind=kind):
                fields = event.fields()
                job, step = fields.pop("job", None), fields.pop("step", None)
                where = "" if job is None else f"[{job}]" if step is None else f"[{job}/{step}]"
                rest = _pairs(**fields)
                return " ".join(part for part in (where, kind, rest) if part)


def _why(reason: str) -> str:
    return f" ({reason})" if reason else ""


def _took(millis: int) -> str:
    return f" in {millis / 1000:.1f}s" if millis else ""


def _finished(where: str, status: Status, reason: str, millis: int) -> str:
    return f"{where} {status.serialize()}{_why(reason)}{_took(millis)}"


def _pairs(**fields: object) -> str:
    """`name=value` for each field that holds something."""
    return " ".join(f"{key}={value}" for key, value in fields.items() if value not in ("", None))
