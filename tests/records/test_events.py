from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from runner.records.eventlog import EventLog, read_events
from runner.records.events import OutputLine, RunEvent, StepFinished
from runner.records.results import Status
from runner.secrets.redact import Redactor

SECRET = "Sup3r$ecret/Value+é"
MULTILINE = "-----line-one-of-it\nsecond-line-of-it"


def encoded_forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    forms = [
        secret,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        *secret.splitlines(),
    ]
    return [f.encode() for f in forms]


def test_events_are_numbered_stamped_and_redacted(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "r1" / "events.jsonl"
    log = EventLog(path, Redactor([SECRET]))
    assert log.emit("run.started", run_id="r1", mission="ci") == 1
    assert log.emit("output", job="test", step=0, line=f"token is {SECRET}") == 2
    assert log.emit("step.finished", job="test", step=0, status="success", password="pw") == 3
    log.close()
    events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert [e["kind"] for e in events] == ["run.started", "output", "step.finished"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["ts"]) for e in events)
    assert events[1]["line"] == "token is ***"
    assert events[2]["password"] == "***" and events[2]["status"] == "success"


def test_no_byte_of_a_secret_or_its_encodings_lands_under_the_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    redactor = Redactor([SECRET, MULTILINE])
    log = EventLog(state / "runs" / "r1" / "events.jsonl", redactor)
    log.emit("run.started", run_id="r1", env={"DEPLOY": SECRET}, args=[SECRET])
    stream = redactor.stream()
    printed = "".join(
        f"{form.decode()} | " for s in (SECRET, MULTILINE) for form in encoded_forms(s)
    )
    pending = ""
    for start in range(0, len(printed), 7):  # the step prints in small pieces
        pending += stream.feed(printed[start : start + 7])
        *lines, pending = pending.split("\n")
        for line in lines:
            log.emit("output", job="j", step=0, line=line)
    for line in (pending + stream.flush()).split("\n"):
        log.emit("output", job="j", step=0, line=line)
    log.emit("step.finished", job="j", step=0, reason=f"failed with {SECRET!r}")
    log.emit("annotation", job="j", step=0, message=MULTILINE)
    log.close()
    everything = b"".join(p.read_bytes() for p in state.rglob("*") if p.is_file())
    assert b"***" in everything
    for secret in (SECRET, MULTILINE):
        for form in encoded_forms(secret):
            assert form not in everything, form
            assert json.dumps(form.decode())[1:-1].encode() not in everything


def test_concurrent_emitters_get_distinct_contiguous_seqs_and_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, Redactor())

    def work(name: str) -> None:
        for i in range(200):
            log.emit("output", job=name, step=0, line=f"{name} {i} " + "x" * (i % 50))

    threads = [threading.Thread(target=work, args=(f"job{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    events = [json.loads(line) for line in path.read_bytes().split(b"\n") if line]
    assert [e["seq"] for e in events] == list(range(1, 801))
    for n in range(4):
        mine = [int(e["line"].split()[1]) for e in events if e["job"] == f"job{n}"]
        assert mine == list(range(200))


def test_transitions_are_fsynced_output_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    log = EventLog(tmp_path / "events.jsonl", Redactor())
    log.emit("step.started", job="j", step=0)
    assert len(synced) == 1
    for i in range(50):
        log.emit("output", job="j", step=0, line=str(i))
    assert len(synced) == 1
    log.emit("step.finished", job="j", step=0)
    assert len(synced) == 2


def test_close_returns_the_sha256_of_the_file_and_the_log_refuses_more(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, Redactor())
    log.emit("run.started")
    digest = log.close()
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert log.close() == digest
    with pytest.raises(ValueError, match="closed"):
        log.emit("output", line="late")


def test_reopening_continues_the_sequence(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    first = EventLog(path, Redactor())
    first.emit("run.started")
    first.emit("job.started", job="a")
    first.close()
    again = EventLog(path, Redactor())
    assert again.emit("job.finished", job="a") == 3
    again.close()


def test_reserved_field_names_are_refused(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", Redactor())
    with pytest.raises(ValueError, match="seq"):
        log.emit("output", seq=9)
    log.close()


def test_read_without_follow_leaves_out_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"seq":1,"kind":"run.started"}\n{"seq":2,"kind":"outp')
    assert [e["seq"] for e in read_events(path)] == [1]


def test_follow_waits_for_the_file_and_for_a_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    got: list[dict[str, object]] = []
    reader = threading.Thread(target=lambda: got.extend(read_events(path, follow=True)))
    reader.start()
    time.sleep(0.2)  # the reader waits for the file to appear
    with path.open("ab") as handle:
        handle.write(b'{"seq":1,"kind":"run.started"}\n{"seq":2,"kind":"out')
        handle.flush()
        time.sleep(0.3)  # a half-written line: the reader must wait, not fail
        assert got == [{"seq": 1, "kind": "run.started"}]
        handle.write(b'put","line":"x"}\n')
        handle.write(b'{"seq":3,"kind":"run.finished"}\n{"seq":4,"kind":"after"}\n')
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert [e["seq"] for e in got] == [1, 2, 3]  # stops at run.finished


def test_follow_stops_when_until_done_says_so_after_draining(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"seq":1,"kind":"run.started"}\n')
    done = threading.Event()
    got: list[dict[str, object]] = []
    reader = threading.Thread(
        target=lambda: got.extend(read_events(path, follow=True, until_done=done.is_set))
    )
    reader.start()
    time.sleep(0.2)
    with path.open("ab") as handle:
        handle.write(b'{"seq":2,"kind":"output"}\n')
    done.set()
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert [e["seq"] for e in got] == [1, 2]


def test_reopening_after_a_crash_drops_the_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"seq":1,"kind":"run.started"}\n{"seq":2,"kind":"outp')
    log = EventLog(path, Redactor())
    assert log.emit("run.finished") == 2
    log.close()
    assert [e["kind"] for e in read_events(path)] == ["run.started", "run.finished"]


def test_a_block_of_output_is_written_as_its_lines_would_be_one_by_one(tmp_path: Path) -> None:
    """`write_all` encodes output lines itself: the same records as `emit` line by line
    (but for `ts`), each redacted with its job's masks, transitions in between in order."""
    hostile = [
        f'quote " backslash \\ {SECRET} tab \t nul \x00 esc \x1b[31m',
        "é ✓ \u2028 \ufeff",
        f"{json.dumps(SECRET)[1:-1]} and {base64.b64encode(SECRET.encode()).decode()}",
        "the job's own mask: m4sk-of-a",
        "",
    ]
    events: list[RunEvent] = []
    for job in ("a", f"b {SECRET}"):
        events += [OutputLine(job=job, step=3, line=line) for line in hostile]
        events.append(
            StepFinished(
                job=job,
                step=3,
                name="s",
                status=Status.SUCCESS,
                reason="",
                exit_code=0,
                duration_ms=5,
                attempts=1,
            )
        )
    records = []
    for name, write in (("one", "emit"), ("block", "write_all")):
        redactor = Redactor([SECRET])
        redactor.for_job("a").add("m4sk-of-a")
        log = EventLog(tmp_path / name / "events.jsonl", redactor)
        if write == "emit":
            for event in events:
                log.write(event)
        else:
            log.write_all(events[:6])
            log.write_all(events[6:])
        log.close()
        lines = (tmp_path / name / "events.jsonl").read_bytes().splitlines()
        records.append([re.sub(rb'"ts":"[^"]*"', b"", line) for line in lines])
    assert records[0] == records[1]
    text = b"\n".join(records[1])
    assert SECRET.encode() not in text and b"Sup3r" not in text
    assert text.count(b"own mask: ***") == 1  # job a's mask is a's only
    assert text.count(b"own mask: m4sk-of-a") == 1
