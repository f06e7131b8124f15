"""A step's output on its way out of the container: decoded, split into lines, workflow
commands honoured, redacted, digested, and emitted as `output` events.

`::error`, `::warning` and `::notice` lines are emitted as `annotation` events too (and
stay output), with their location and title (`workflow_commands.annotation`).
`::group::title` and `::endgroup::` lines are emitted as `group.started` and
`group.finished` events instead of output, in line order, so that a view can fold the
lines between them; they are read from the redacted line (a title shows `***` where it
held a secret) and only from a whole line, never from a piece of an overlong one. Every
line counts in the output's digest, group lines included.

A `::add-mask::` line registers its value with the job's redactor *before* that line is
redacted and written, so the registering line itself shows `::add-mask::***`; the mask
applies to this job's text only. A value shorter than `MIN_MASK` (4) characters is refused
with a warning annotation: it would mask every occurrence of a common string. Lines longer than `MAX_LINE` are
passed on in pieces through the stream redactor, which holds back any tail that could be
the start of a secret, so memory stays flat whatever the step prints.

`feed` (the reader thread) and `close` (the step, once the container is gone) take one
lock, and a chunk fed after `close` is dropped: a reader that outlives the step's wait
for it can never interleave with `close` and emit a line twice or out of order.

Blocks, not lines: what one read from the container holds goes through the redactor as one
text, and its events go to the sink as one block (`Sink.emit_all`: the event log writes a
block in one `write()`), in line order. The block is delivered before a `::add-mask::`
registers its value, so every line is written under the masks it was redacted with.
"""

from __future__ import annotations

import codecs
import collections
import hashlib
import re
import threading

from runner.records.events import (
    Annotation,
    GroupFinished,
    GroupStarted,
    OutputLine,
    RunEvent,
)
from runner.records.sink import Sink
from runner.run.workflow_commands import (
    ANNOTATION_LEVELS,
    annotation,
    parse_workflow_command,
)
from runner.secrets.redact import MIN_MASK, Redactor

MAX_LINE = 64 * 1024
COMMAND_LINE = re.compile(r"(?m)^::.*\n")
TAIL_LINES = 20


class OutputPump:
    def __init__(self, sink: Sink, redactor: Redactor, job: str, step: int) -> None:
        self._sink = sink
        self._redactor = redactor
        self._stream = redactor.stream()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._job = job
        self._step = step
        self._pending = ""  # raw text of the current, unfinished line
        self._emitted = ""  # redacted text not yet ended by a newline
        self._midline = False  # a piece of an overlong line was emitted, not its end
        self._block: list[RunEvent] = []  # events not yet delivered, in order
        self.digest = hashlib.sha256()
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()
        self._closed = False

    def feed(self, chunk: bytes) -> None:
        with self._lock:
            if not self._closed:
                self._consume(self._decoder.decode(chunk))
                self._deliver()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._finish()

    def _finish(self) -> None:
        self._consume(self._decoder.decode(b"", final=True))
        if self._pending:
            self._pass(self._pending)
            self._pending = ""
        self._write(self._stream.flush())
        if self._emitted:
            self._line(self._emitted, whole=not self._midline)
            self._emitted = ""
        self._deliver()

    def _deliver(self) -> None:
        if self._block:
            block, self._block = self._block, []
            self._sink.emit_all(block)

    def _consume(self, text: str) -> None:
        if not text:
            return
        self._pending += text
        end = self._pending.rfind("\n") + 1
        if end:
            block, self._pending = self._pending[:end], self._pending[end:]
            start = 0
            # Complete lines go to the redactor as one block, cut at each workflow command
            # so that a mask it registers applies before its own line is redacted.
            for command in COMMAND_LINE.finditer(block):
                self._pass(block[start : command.start()])
                self._command(command.group())
                self._pass(command.group())
                start = command.end()
            self._pass(block[start:])
        if len(self._pending) > MAX_LINE:
            self._pass(self._pending)
            self._pending = ""

    def _command(self, line: str) -> None:
        command = parse_workflow_command(line.rstrip("\n"))
        if command is None:
            return
        if command.name == "add-mask" and command.value:
            if len(command.value.strip()) >= MIN_MASK:
                self._deliver()  # the lines before it are written without its mask
                self._redactor.add(command.value)
            else:
                self._block.append(
                    Annotation(
                        job=self._job,
                        step=self._step,
                        level="warning",
                        message=f"::add-mask:: refused a value shorter than {MIN_MASK} "
                        "characters (it would mask every occurrence of it): not masked",
                    )
                )
        elif command.name in ANNOTATION_LEVELS:
            note = annotation(
                line.rstrip("\n"), job=self._job, step=self._step, redact=self._redactor
            )
            if note is not None:
                self._block.append(note)

    def _pass(self, raw: str) -> None:
        if raw:
            self._write(self._stream.feed(raw))

    def _write(self, safe: str) -> None:
        if not safe:
            return
        self.digest.update(safe.encode("utf-8"))
        text = self._emitted + safe
        lines = text.split("\n")
        self._emitted = lines.pop()
        if lines and self._midline:  # the end of a line whose pieces went before
            self._line(lines.pop(0), whole=False)
            self._midline = False
        if "\r" in text:
            lines = [line.rstrip("\r") for line in lines]
        job, step, block = self._job, self._step, self._block
        for line in lines:  # the hot loop: one event a line, nothing else
            if line.startswith("::"):
                self._event(line)
            else:
                block.append(OutputLine(job=job, step=step, line=line))
        self.tail.extend(lines[-TAIL_LINES:])
        if len(self._emitted) > MAX_LINE:
            self._line(self._emitted, whole=False)
            self._emitted = ""
            self._midline = True

    def _line(self, line: str, *, whole: bool) -> None:
        line = line.rstrip("\r")
        self.tail.append(line)
        if whole:
            self._event(line)
        else:
            self._block.append(OutputLine(job=self._job, step=self._step, line=line))

    def _event(self, line: str) -> None:
        """A whole line's event: a group's start or end, or output."""
        command = parse_workflow_command(line)
        if command is not None and command.name == "group":
            self._block.append(GroupStarted(job=self._job, step=self._step, title=command.value))
        elif command is not None and command.name == "endgroup":
            self._block.append(GroupFinished(job=self._job, step=self._step))
        else:
            self._block.append(OutputLine(job=self._job, step=self._step, line=line))
