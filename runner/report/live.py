"""The live view of a run on a terminal: one row per job instance (status symbol, elapsed
time, the step it is on and the `::group::` it is in), and one per image being built (the
build step it is on), redrawn in place with ANSI
cursor-up + clear-line by a background ticker at most `1 / interval` times a second, so
that durations tick while steps run. After the run it prints the last output lines of
every failed step and the annotations: one with a file compiler style,
`src/a.py:3:5: error: Title: message [job > step]`, so that an editor jumps to it, at most
as many as GitHub keeps (`runner.report.annotations`), saying how many more there were.

Groups fold as on GitHub: in a failed step's last lines, a group that ended is one line,
its header and how many lines it held (`▸ Install (120 lines)`); the group the step was in
when it failed stays open, its header kept above its lines, indented under it.
"""

from __future__ import annotations

import atexit
import collections
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from runner.output import Output
from runner.records.events import (
    Annotation,
    GroupFinished,
    GroupStarted,
    ImageBuild,
    JobFinished,
    JobStarted,
    OutputLine,
    RunEvent,
    RunFinished,
    RunStarted,
    ServiceStarted,
    StepFinished,
    StepRetry,
    StepStarted,
)
from runner.records.results import Status
from runner.report.annotations import (
    PER_JOB,
    PER_STEP,
    StepAnnotations,
    headline,
    level_of,
    location,
)
from runner.report.display import (
    STATUS_COLOR,
    STATUS_VERB,
    Glyphs,
    OpenGroups,
    build_progress,
    clean_line,
    encodable,
    format_duration,
    glyphs_for,
    stream_encoding,
)

TAIL_LINES = 10  # output lines of a failed step shown after the run


@dataclass
class _Row:
    key: str
    status: Status = Status.PENDING
    started: float | None = None
    duration_s: float | None = None
    step: str = ""
    attempt: int = 1
    reason: str = ""
    retry_at: float | None = None
    group: str = ""  # the `::group::` the running step is in


@dataclass
class _Fold:
    title: str
    lines: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=TAIL_LINES)
    )
    count: int = 0  # every line the group held
    open: bool = True


class _Tail:
    """The last output of one step: lines, and groups (each holding its own last lines)."""

    def __init__(self) -> None:
        self._blocks: collections.deque[str | _Fold] = collections.deque(maxlen=TAIL_LINES)
        self._fold: _Fold | None = None

    def line(self, text: str) -> None:
        if self._fold is None:
            self._blocks.append(text)
        else:
            self._fold.lines.append(text)
            self._fold.count += 1

    def start_group(self, title: str) -> None:
        self.end_group()  # groups do not nest
        self._fold = _Fold(title)
        self._blocks.append(self._fold)

    def end_group(self) -> None:
        if self._fold is not None:
            self._fold.open = False
            self._fold = None

    def rows(self, glyphs: Glyphs) -> list[str]:
        """At most `TAIL_LINES` rows: lines, folded groups, the open group unfolded."""
        rows: list[str] = []
        header: tuple[int, str] | None = None  # the open group's row and its text
        for block in self._blocks:
            if isinstance(block, str):
                rows.append(block)
            elif block.open:
                header = (len(rows), f"{glyphs.group_open} {block.title}")
                rows.append(header[1])
                rows.extend(OpenGroups.INDENT + line for line in block.lines)
            else:
                held = f"{block.count} line{'' if block.count == 1 else 's'}"
                rows.append(f"{glyphs.group_closed} {block.title} ({held})")
        cut = max(len(rows) - TAIL_LINES, 0)
        if header is not None and header[0] < cut:  # keep its title above its lines
            return [header[1], *rows[cut + 1 :]]
        return rows[cut:]


@dataclass
class _Failure:
    job: str
    step: str
    reason: str
    lines: list[str] = field(default_factory=list)


def _terminal_width(stream: TextIO) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        size = shutil.get_terminal_size((100, 24))
    return max(size.columns, 20), max(size.lines, 5)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


class LiveView:
    """A table of jobs redrawn in place on a terminal while the run goes on."""

    CURSOR_UP = "\x1b[{n}A"
    CLEAR_LINE = "\x1b[2K"
    CLEAR_BELOW = "\x1b[J"
    HIDE_CURSOR = "\x1b[?25l"
    SHOW_CURSOR = "\x1b[?25h"

    def __init__(
        self,
        out: Output,
        *,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        size: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self._out = out
        self._glyphs = glyphs_for(out.stdout)
        self._encoding = stream_encoding(out.stdout)
        self._interval = interval
        self._clock = clock
        self._size = size or (lambda: _terminal_width(out.stdout))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rows: dict[str, _Row] = {}
        self._builds: dict[str, str] = {}  # image name -> its build's line, while it builds
        self._header = ""
        self._run_started: float | None = None
        self._run_duration: float | None = None
        self._tails: dict[tuple[str, int], _Tail] = {}
        self._step_names: dict[tuple[str, int], str] = {}
        self._failures: list[_Failure] = []
        self._annotations = StepAnnotations()  # shown after the run, bounded
        self._drawn = 0  # lines of the last frame, to move back over
        self._dirty = False
        self._closed = False
        self.frames = 0  # frames drawn: for tests and curiosity

    # -- events (delivered one at a time by the Sink, from any worker thread) --

    def handle(self, event: RunEvent) -> None:
        with self._lock:
            if self._closed:
                return
            self._apply(event)
            self._dirty = True
            finished = isinstance(event, RunFinished)
        if finished:
            self.close()
        else:
            self._start_ticker()

    def _row(self, key: str) -> _Row:
        if key not in self._rows:
            self._rows[key] = _Row(key)
        return self._rows[key]

    def _apply(self, event: RunEvent) -> None:
        now = self._clock()
        match event:
            case RunStarted():
                self._header = f"{event.mission} ({event.event}) run {event.run_id}"
                self._run_started = now
                for key in event.jobs:
                    self._row(key)
            case ImageBuild(name=name, tag=tag, phase=phase, line=line):
                if phase == "finished":
                    self._builds.pop(name, None)
                else:
                    self._builds[name] = build_progress(name, tag, phase, line)
            case JobStarted(job=job):
                row = self._row(job)
                row.status, row.started = Status.RUNNING, now
            case StepStarted(job=job, step=index):
                row = self._row(job)
                if row.status is Status.PENDING:
                    row.status, row.started = Status.RUNNING, now
                row.step, row.attempt, row.retry_at, row.group = event.name, event.attempt, None, ""
                self._step_names[(job, index)] = row.step
                self._tails[(job, index)] = _Tail()
            case OutputLine(job=job, step=index, line=line):
                self._tail(job, index).line(clean_line(line))
            case GroupStarted(job=job, step=index, title=title):
                self._tail(job, index).start_group(clean_line(title))
                self._row(job).group = clean_line(title)
            case GroupFinished(job=job, step=index):
                self._tail(job, index).end_group()
                self._row(job).group = ""
            case Annotation():
                self._annotations.add(event)
            case ServiceStarted(job=job, service=service, health=health):
                self._row(job).step = f"service {service}: {health}"
            case StepRetry(job=job):
                row = self._row(job)
                row.retry_at = now + event.delay_s
                row.attempt, row.reason, row.group = event.attempt, event.reason, ""
            case StepFinished(job=job, step=index):
                tail = self._tails.pop((job, index), None)
                self._row(job).group = ""
                if event.status is Status.FAILURE:
                    name = event.name or self._step_names.get((job, index), "")
                    rows = tail.rows(self._glyphs) if tail is not None else []
                    self._failures.append(_Failure(job, name, event.reason, rows))
            case JobFinished(job=job):
                row = self._row(job)
                row.status = event.status
                row.duration_s = event.duration_ms / 1000
                row.reason = event.reason
                row.step, row.retry_at, row.group = "", None, ""
            case RunFinished():
                self._run_duration = event.duration_ms / 1000
            case _:
                pass

    def _tail(self, job: str, step: int) -> _Tail:
        return self._tails.setdefault((job, step), _Tail())

    # -- drawing --

    def _start_ticker(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._out.raw(self.HIDE_CURSOR)
            atexit.register(self._abandon)
            self._thread = threading.Thread(target=self._tick, name="runner-live-view", daemon=True)
            self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                if self._closed:
                    return
                running = bool(self._builds) or any(
                    r.status is Status.RUNNING for r in self._rows.values()
                )
                if self._dirty or running:
                    self._draw()

    def refresh(self) -> None:
        """Draw a frame now (the ticker does this by itself)."""
        with self._lock:
            if not self._closed:
                self._draw()

    def _draw(self) -> None:
        columns, lines = self._size()
        frame = self.render(width=columns - 1, height=lines - 1)
        parts = [self.CURSOR_UP.format(n=self._drawn)] if self._drawn else []
        parts.append("\r")
        parts.extend(f"{self.CLEAR_LINE}{line}\n" for line in frame)
        parts.append(self.CLEAR_BELOW)
        self._out.raw(encodable("".join(parts), self._encoding))
        self._drawn = len(frame)
        self._dirty = False
        self.frames += 1

    def render(self, *, width: int = 100, height: int = 24) -> list[str]:
        """The current frame: a header, one row per image being built and one per job
        (painted, fitted to `width`)."""
        now = self._clock()
        g = self._glyphs
        out = self._out
        elapsed = self._run_duration
        if elapsed is None and self._run_started is not None:
            elapsed = now - self._run_started
        header = self._header + (f" {g.dot} {format_duration(elapsed)}" if elapsed else "")
        frame = [out.paint(_fit(header, width), "bold")]
        spinner = g.spinner[int(now / 0.1) % len(g.spinner)]
        for line in self._builds.values():
            frame.append(
                f"{out.paint(spinner, STATUS_COLOR[Status.RUNNING])} {_fit(line, width - 2)}"
            )
        height -= len(self._builds)
        rows = list(self._rows.values())
        hidden: list[_Row] = []
        if len(rows) > height - 1:  # keep the frame on screen: drop finished rows first
            keep = max(height - 2, 1)
            order = sorted(
                range(len(rows)),
                key=lambda i: (
                    rows[i].status not in (Status.RUNNING, Status.FAILURE),
                    rows[i].status is not Status.RUNNING,
                    i,
                ),
            )
            shown = set(order[:keep])
            hidden = [r for i, r in enumerate(rows) if i not in shown]
            rows = [r for i, r in enumerate(rows) if i in shown]
        key_width = min(max((len(r.key) for r in rows), default=0), 40)
        for row in rows:
            if row.status is Status.RUNNING:
                symbol = g.spinner[int(now / 0.1) % len(g.spinner)]
            else:
                symbol = g.status(row.status)
            if row.status is Status.SKIPPED:
                clock = ""
            elif row.duration_s is not None:
                clock = format_duration(row.duration_s)
            elif row.started is not None:
                clock = format_duration(now - row.started)
            else:
                clock = ""
            text = f"{_fit(row.key, key_width):<{key_width}}  {clock:>7}  {self._detail(row, now)}"
            text = _fit(text.rstrip(), width - 2)
            frame.append(f"{out.paint(symbol, STATUS_COLOR[row.status])} {text}")
        if hidden:
            done = sum(1 for r in hidden if r.status.done)
            more = f"{g.dot}{g.dot}{g.dot} {len(hidden)} more ({done} done, {len(hidden) - done} waiting)"
            frame.append(out.paint(_fit(more, width), "dim"))
        return frame

    def _detail(self, row: _Row, now: float) -> str:
        if row.status is Status.PENDING:
            return "waiting"
        if row.status is Status.RUNNING:
            if row.retry_at is not None and row.retry_at > now:
                why = f": {row.reason}" if row.reason else ""
                return (
                    f"{self._glyphs.retry} {row.step}{why}, attempt {row.attempt} "
                    f"in {format_duration(row.retry_at - now)}"
                )
            again = f" (attempt {row.attempt})" if row.attempt > 1 else ""
            group = f" {self._glyphs.arrow} {row.group}" if row.group else ""
            return f"{row.step}{again}{group}"
        if row.status is Status.SUCCESS:
            return ""
        return row.reason or STATUS_VERB[row.status]

    # -- the end --

    def _abandon(self) -> None:
        """At exit without `close()` (the run crashed): stop drawing, give the cursor back,
        and leave whatever was printed below the table alone."""
        self._stop.set()
        with self._lock:
            if not self._closed:
                self._closed = True
                self._out.raw(self.SHOW_CURSOR)

    def close(self) -> None:
        """Stop the ticker, draw the last frame, print what failed. Idempotent."""
        atexit.unregister(self._abandon)
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if not self._rows and not self._header:
                return  # nothing happened: leave the terminal as it was
            self._draw()
            self._out.raw(self.SHOW_CURSOR)
            self._report()

    def _report(self) -> None:
        g = self._glyphs
        out = self._out
        for failure in self._failures:
            where = f"{failure.job} {g.arrow} {failure.step}"
            reason = f": {failure.reason}" if failure.reason else ""
            count = len(failure.lines)
            shown = f", last {count} line{'' if count == 1 else 's'}" if count else ", no output"
            out.line("")
            out.line(
                encodable(f"{out.paint(g.failure, 'red')} {where}{reason}{shown}", self._encoding)
            )
            for line in failure.lines:
                out.line(encodable(f"  {out.paint(g.bar, 'dim')} {line}", self._encoding))
        annotations = self._annotations.kept
        if annotations:
            out.line("")
        colors = {"error": "red", "warning": "yellow"}
        for event in annotations:
            where = event.job
            if (event.job, event.step) in self._step_names:
                where = f"{event.job} {g.arrow} {self._step_names[(event.job, event.step)]}"
            level = level_of(event)
            label = out.paint(level, colors.get(level, "blue"))
            located = location(event)
            if located:
                text = f"{located}: {label}: {headline(event)} [{where}]"
            else:
                text = f"{label}: {where}: {headline(event)}"
            out.line(encodable(text, self._encoding))
        if self._annotations.dropped:
            more = self._annotations.dropped
            out.line(
                encodable(
                    f"{g.dot}{g.dot}{g.dot} {more} more annotation{'' if more == 1 else 's'} "
                    f"(at most {PER_STEP} of each level a step and {PER_JOB} a job are "
                    "listed here; `runner logs` shows them all)",
                    self._encoding,
                )
            )
