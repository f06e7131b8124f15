"""The event log of a run: `.runner/runs/<run-id>/events.jsonl`.

One JSON object a line: `seq` (from 1, monotonic), `ts` (RFC 3339, UTC, milliseconds),
`kind` (`run.started`, `job.started`, `step.started`, `output`, `step.finished`,
`job.finished`, `run.finished`, ...) and the event's fields (the kinds and their fields:
`runner.records.events`), every field redacted before it is written
(`redact.redact_record`): each string value through the run's `Redactor`, and a job's
text (`TEXT_FIELDS`: its output lines, annotations, group titles, reasons) through that
job's (`Redactor.for_job`: the run's secrets and the job's masks), so that one job's
masks apply to its own text only; never a key, a status or a digest. A field no event
declares is a user's mapping: `redact.redact_structure`, sensitive keys masked whole.
`write` takes a typed event, `write_all` a block of them, `emit` a kind and its fields as
they are; `read_events` gives back the stored objects, `replay` the typed events they hold.

Output at disk speed: `write_all` is how a step's output arrives, a block of lines at a
time (what one read from the container held). Each line is still its own event, redacted
on its own with its job's redactor, but a run of lines is encoded without a dict or a
`json.dumps` per line (the same bytes: `encode_basestring` is what `json.dumps` uses),
shares one timestamp (the block's, at millisecond resolution like every `ts`) and goes to
the file in one `write()`.

Durability: each line (or block of output lines) goes to the file in one `write()` on an `O_APPEND` descriptor, so a
reader (`runner logs --follow`) sees whole lines as soon as they are written. Transitions
(every kind but `output`) are also fsync'd before `emit` returns: no acknowledged
transition is lost in a crash, and the ledger, which seals the log's digest, never refers
to a transition the disk does not hold. `output` lines are not fsync'd one by one: a step
printing a million lines would otherwise wait on the disk a million times (an fsync costs
milliseconds); they reach the disk with the next transition, so a crash loses at most the
output of the step that was running, never a result.

A write or sync that fails (a full disk, an I/O error) raises `StorageFailed` (exit 4)
naming the file; a line written in part is cut off again, so the log keeps whole lines,
and the log writes nothing more (every later event raises the same error).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.durable import file_sha256
from runner.errors import InvalidInput, StorageFailed
from runner.records.events import EVENT_TYPES, OutputLine, RunEvent, UnknownEvent, parse_event
from runner.secrets.redact import Redactor, is_own_key, redact_record, redact_structure

RESERVED = frozenset({"seq", "ts", "kind"})
_encode: Callable[[str], str] = json.encoder.encode_basestring  # json.dumps's, for str
POLL_S = 0.05
TEXT_FIELDS = frozenset({"line", "message", "title", "reason", "file"})  # a job's own text
DECLARED = frozenset(f.name for cls in EVENT_TYPES for f in dataclasses.fields(cls))


_clock: tuple[int, str] = (-1, "")  # the last millisecond formatted, and its text


def now_rfc3339() -> str:
    """The time, RFC 3339 UTC to the millisecond; formatted once per millisecond."""
    global _clock
    ms = time.time_ns() // 1_000_000
    last = _clock
    if last[0] == ms:
        return last[1]
    text = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    _clock = (ms, text.replace("+00:00", "Z"))
    return _clock[1]


def _reopen(path: Path) -> int:
    """For a log written before (a resumed run): drop a torn last line left by a crash, so
    that the next event starts a line of its own, and return the last seq (0 for none)."""
    try:
        with path.open("r+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = handle.seek(max(0, size - (1 << 20)))  # lines are far shorter
            tail = handle.read()
            if tail and not tail.endswith(b"\n"):
                handle.truncate(start + tail.rfind(b"\n") + 1)
            lines = tail.split(b"\n")
    except FileNotFoundError:
        return 0
    for line in reversed(lines[:-1]):
        try:
            return int(json.loads(line)["seq"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0


class EventLog:
    """Appends redacted events; safe to call from several threads at once."""

    def __init__(self, path: Path, redactor: Redactor) -> None:
        self.path = path
        self._redactor = redactor
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._synced = 0  # every seq up to this one is on disk
        self._failed: StorageFailed | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._seq = _reopen(path)
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise self._failure(exc) from exc
        self._digest: str | None = None

    def write(self, event: RunEvent) -> int:
        """Write one event; returns its seq."""
        return self.emit(event.kind, **event.fields())

    def emit(self, kind: str, **fields: Any) -> int:
        """Write one event given as a kind and its fields; returns its seq."""
        clash = RESERVED & fields.keys()
        if clash:
            raise ValueError(f"event fields may not be named {sorted(clash)}")
        body = self._redacted(fields)
        with self._lock:
            fd = self._open()
            record = {"seq": self._seq + 1, "ts": now_rfc3339(), "kind": kind, **body}
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
            self._append(fd, (line + "\n").encode("utf-8"))
            self._seq += 1
            seq = self._seq
        if kind != "output":
            self._sync(fd, seq)
        return seq

    def write_all(self, events: Sequence[RunEvent]) -> None:
        """Write events in order; each run of output lines in one `write()`."""
        lines: list[OutputLine] = []
        for event in events:
            if isinstance(event, OutputLine):
                lines.append(event)
                continue
            self._write_lines(lines)
            lines = []
            self.write(event)
        self._write_lines(lines)

    def _write_lines(self, lines: Sequence[OutputLine]) -> None:
        """Output lines as `emit` would write them one by one (one `ts` for the block)."""
        if not lines:
            return
        run = self._redactor
        heads: dict[tuple[str, int], str] = {}  # "kind", "job", "step" of a job's step
        body: list[tuple[str, str]] = []
        for event in lines:
            head = heads.get((event.job, event.step))
            if head is None:
                job = json.dumps(run(event.job), ensure_ascii=False)
                head = heads[(event.job, event.step)] = (
                    f'","kind":"output","job":{job},"step":{int(event.step)},"line":'
                )
            body.append((head, _encode(run.for_job(event.job)(event.line))))
        with self._lock:
            fd = self._open()
            seq, ts = self._seq, now_rfc3339()
            parts = []
            for head, line in body:
                seq += 1
                parts.append(f'{{"seq":{seq},"ts":"{ts}{head}{line}}}\n')
            self._append(fd, "".join(parts).encode("utf-8"))
            self._seq = seq

    def _open(self) -> int:
        """Under the lock: the descriptor to write to, unless the log is closed or failed."""
        if self._fd is None:
            raise ValueError(f"event log {self.path} is closed")
        if self._failed is not None:
            raise self._failed
        return self._fd

    def _append(self, fd: int, data: bytes) -> None:
        """Under the lock: whole lines, or nothing (and the log fails for good)."""
        written = 0
        try:
            while written < len(data):  # short only on a full disk or a signal
                written += os.write(fd, data[written:])
        except OSError as exc:
            if written:  # keep whole lines: cut off the part that was written
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, os.fstat(fd).st_size - written)
            self._failed = self._failure(exc)
            raise self._failed from exc

    def _redacted(self, fields: dict[str, Any]) -> dict[str, Any]:
        run = self._redactor
        job = fields.get("job")
        text = run.for_job(job) if isinstance(job, str) else run
        body: dict[str, Any] = {}
        for name, value in fields.items():
            if name not in DECLARED:
                body.update(redact_structure({name: value}, run))
            elif isinstance(value, str) and not is_own_key(name):
                body[name] = (text if name in TEXT_FIELDS else run)(value)
            elif is_own_key(name) or isinstance(value, int | float | bool | None):
                body[name] = value
            else:
                body[name] = redact_record(value, text if name in TEXT_FIELDS else run)
        return body

    def _sync(self, fd: int, seq: int) -> None:
        """Group commit: one fsync covers every line written before it, so threads whose
        lines an earlier fsync already covered return at once; writers never wait on it."""
        with self._sync_lock:
            if self._synced >= seq:
                return
            with self._lock:
                target = self._seq
            try:
                os.fsync(fd)
            except OSError as exc:
                self._failed = self._failure(exc)
                raise self._failed from exc
            self._synced = target

    def close(self) -> str:
        """Make everything durable, close, and return the file's SHA-256 (hex)."""
        with self._sync_lock, self._lock:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                try:
                    os.fsync(fd)
                except OSError as exc:
                    self._failed = self._failure(exc)
                    raise self._failed from exc
                finally:
                    os.close(fd)
                self._digest = file_sha256(self.path)
            if self._digest is None:
                raise self._failed or ValueError(f"event log {self.path} is closed")
            return self._digest

    def _failure(self, exc: OSError) -> StorageFailed:
        return StorageFailed.writing(self.path, exc, "the event log")

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_events(
    path: Path,
    *,
    follow: bool = False,
    until_done: Callable[[], bool] | None = None,
    poll_s: float = POLL_S,
) -> Iterator[dict[str, Any]]:
    """The events of a log, in order. With `follow`, waits for more (and for the file to
    appear) until a `run.finished` event is read, or until `until_done()` is true and
    nothing more is there. A last line without its newline is being written: it is waited
    for when following, and left out otherwise (a torn line from a crash)."""
    while follow and not path.exists():
        if until_done is not None and until_done():
            return
        time.sleep(poll_s)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InvalidInput(f"cannot read the event log {path}: {exc.strerror}") from exc
    with handle:
        partial = b""
        number = 0
        while True:
            block = handle.read(1 << 16)
            if block:
                partial += block
                *lines, partial = partial.split(b"\n")
                for line in lines:
                    number += 1
                    if not line.strip():
                        continue
                    event = _parse(line, path, number)
                    yield event
                    if follow and event.get("kind") == "run.finished":
                        return
                continue
            if not follow:
                return
            if until_done is not None and until_done():
                # One more look: what was written before it finished is still due.
                if not handle.read(1):
                    return
                handle.seek(-1, os.SEEK_CUR)
                continue
            time.sleep(poll_s)


@dataclass(frozen=True)
class Logged:
    """One event as the log holds it: its seq and time, the typed event, and the JSON
    object as it was stored (for `--json`, which passes it on untouched)."""

    seq: int
    ts: str
    event: RunEvent | UnknownEvent
    record: dict[str, Any]


def replay(
    path: Path,
    *,
    follow: bool = False,
    until_done: Callable[[], bool] | None = None,
    poll_s: float = POLL_S,
) -> Iterator[Logged]:
    """The typed events of a log, in order; `read_events` says how it follows."""
    for record in read_events(path, follow=follow, until_done=until_done, poll_s=poll_s):
        seq = record.get("seq")
        ts = record.get("ts")
        yield Logged(
            seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else 0,
            ts=ts if isinstance(ts, str) else "",
            event=parse_event(record),
            record=record,
        )


def _parse(line: bytes, path: Path, number: int) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError as exc:
        raise InvalidInput(f"{path}:{number}: not a JSON event ({exc})") from exc
    if not isinstance(event, dict):
        raise InvalidInput(f"{path}:{number}: not a JSON object")
    return event
