"""Annotations as every view shows them, and the ones a run keeps for its reports.

A located annotation (`::error file=src/a.py,line=3,col=5,title=Bad::message`) is shown
compiler style, `src/a.py:3:5: error: Bad: message`, so that editors and CI log parsers
jump to it (`compiler_line`); one without a file keeps the view's own form. The location
is `file`, `file:line` or `file:line:col` (ranges stay in the JSON). What the step gave is
untrusted: every piece is cleaned as an output line is (`display.clean_line`), a message
of several lines is shown on one, and a file that could make the line pose as something
else (one starting with `:`, `#`, `[`, a space ...: a CI system's workflow command, one
of runner's own lines) is shown as `./name`.

`StepAnnotations` is a `Sink` subscriber keeping the annotations of a run for JUnit, the
JSON result and the live view's closing list, bounded as GitHub bounds them
(`PER_STEP` of each level per step, `PER_JOB` per job); what it drops it counts, so a
report can say how many more the event log holds (`runner logs`).
"""

from __future__ import annotations

import collections
import dataclasses
import threading

from runner.records.events import Annotation, RunEvent
from runner.report.display import clean_line
from runner.secrets.redact import Redactor

PER_STEP = 10  # of each level (GitHub keeps 10 errors, 10 warnings, 10 notices a step)
PER_JOB = 50  # GitHub keeps 50 a job
LEVELS = ("error", "warning", "notice")
_SAFE_START = frozenset("./_~-")


def level_of(event: Annotation) -> str:
    """The annotation's level, `error` for one a log holds that runner never writes."""
    return event.level if event.level in LEVELS else "error"


def location(event: Annotation) -> str:
    """`file:line:col` as far as the annotation has them; "" without a file."""
    if not event.file:
        return ""
    file = clean_line(event.file)
    if not file or not (file[0].isalnum() or file[0] in _SAFE_START):
        file = "./" + file
    parts = [file]
    if event.line is not None and event.line > 0:
        parts.append(str(event.line))
        if event.col is not None and event.col > 0:
            parts.append(str(event.col))
    return ":".join(parts)


def one_line(text: str) -> str:
    """A message of any number of lines, cleaned, on one."""
    return " ".join(clean_line(part) for part in text.splitlines())


def headline(event: Annotation) -> str:
    """`Title: message` (the message alone without a title), on one line."""
    message = one_line(event.message)
    return f"{clean_line(event.title)}: {message}" if event.title else message


def compiler_line(event: Annotation) -> str:
    """`file:line:col: level: Title: message`; "" for an annotation without a file."""
    where = location(event)
    return f"{where}: {level_of(event)}: {headline(event)}" if where else ""


@dataclasses.dataclass
class _Job:
    kept: int = 0
    per_step: collections.Counter[tuple[int, str]] = dataclasses.field(
        default_factory=collections.Counter
    )


class StepAnnotations:
    """The annotations of a run, in order, at most `PER_STEP` of each level per step and
    `PER_JOB` per job; `dropped` counts the rest. Safe to feed from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: list[Annotation] = []
        self._jobs: dict[str, _Job] = {}
        self.dropped = 0

    def handle(self, event: RunEvent) -> None:
        if isinstance(event, Annotation):
            self.add(event)

    def add(self, event: Annotation) -> bool:
        """Keep `event` if its step and job are under their bounds; whether it was kept."""
        with self._lock:
            job = self._jobs.setdefault(event.job, _Job())
            slot = (event.step, level_of(event))
            if job.kept >= PER_JOB or job.per_step[slot] >= PER_STEP:
                self.dropped += 1
                return False
            job.kept += 1
            job.per_step[slot] += 1
            self._kept.append(event)
            return True

    @property
    def kept(self) -> list[Annotation]:
        with self._lock:
            return list(self._kept)

    def redacted(self, redactor: Redactor) -> list[Annotation]:
        """The kept annotations fit to write and show: the job key through the run's
        `redactor`, the text through the job's (masks registered after an annotation
        apply to it too), as `RunResult.redacted` does."""
        shown = []
        for event in self.kept:
            job = redactor.for_job(event.job)
            shown.append(
                dataclasses.replace(
                    event,
                    job=redactor(event.job),
                    message=job(event.message),
                    file=job(event.file) if event.file is not None else None,
                    title=job(event.title) if event.title is not None else None,
                )
            )
        return shown
