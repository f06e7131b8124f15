"""The typed events: each kind through the event log's JSON and back, the same bytes the
free-form events wrote, and a lenient reading of logs written by other versions."""

from __future__ import annotations

import inspect
import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest

from runner.records import events
from runner.records.eventlog import EventLog, replay
from runner.records.events import (
    EVENT_TYPES,
    Annotation,
    ArtifactStored,
    CacheRestored,
    CacheSaved,
    Event,
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
    ServiceStopped,
    StepFinished,
    StepPlaced,
    StepRetry,
    StepStarted,
    StepSummary,
    UnknownEvent,
    VerifyFinished,
    parse_event,
)
from runner.records.results import CheckResult, CheckStatus, Status
from runner.secrets.redact import Redactor

# Each kind as the executor emits it, and the fields (in their order) that the free-form
# `emit(kind, **fields)` of the emitters wrote for it before events were typed.
SAMPLES: list[tuple[RunEvent, dict[str, Any]]] = [
    (
        RunStarted(run_id="r1", mission="ci", event="push", jobs=("lint", "test (os=a)")),
        {"run_id": "r1", "mission": "ci", "event": "push", "jobs": ["lint", "test (os=a)"]},
    ),
    (
        ImageBuild(name="app", tag="runner/app:ab", phase="step", line="Step 1/2 : FROM x"),
        {"name": "app", "tag": "runner/app:ab", "phase": "step", "line": "Step 1/2 : FROM x"},
    ),
    (JobStarted(job="lint"), {"job": "lint"}),
    (
        StepStarted(
            job="lint",
            step=0,
            name="style",
            attempt=1,
            image="runner-toolset/abc",
            image_digest="sha256:1",
            config_digest="c0ffee",
        ),
        {
            "job": "lint",
            "step": 0,
            "name": "style",
            "attempt": 1,
            "image": "runner-toolset/abc",
            "image_digest": "sha256:1",
            "config_digest": "c0ffee",
        },
    ),
    (
        StepPlaced(
            job="lint",
            step=0,
            attempt=1,
            backend="kubernetes",
            node="k8s-local",
            pod="runner-r1-1",
            pod_spec_digest="d1",
            image="runner-toolset/abc",
            image_digest="sha256:1",
        ),
        {
            "job": "lint",
            "step": 0,
            "attempt": 1,
            "backend": "kubernetes",
            "node": "k8s-local",
            "pod": "runner-r1-1",
            "pod_spec_digest": "d1",
            "image": "runner-toolset/abc",
            "image_digest": "sha256:1",
        },
    ),
    (
        OutputLine(job="lint", step=0, line="héllo \t\x1b[31m"),
        {"job": "lint", "step": 0, "line": "héllo \t\x1b[31m"},
    ),
    (
        Annotation(job="lint", step=0, level="warning", message="two\nlines"),
        {"job": "lint", "step": 0, "level": "warning", "message": "two\nlines"},
    ),
    (
        GroupStarted(job="lint", step=0, title="Install"),
        {"job": "lint", "step": 0, "title": "Install"},
    ),
    (GroupFinished(job="lint", step=0), {"job": "lint", "step": 0}),
    (
        StepRetry(job="lint", step=0, attempt=2, delay_s=1.25, reason="timeout"),
        {"job": "lint", "step": 0, "attempt": 2, "delay_s": 1.25, "reason": "timeout"},
    ),
    (
        CacheRestored(
            job="lint", key="k-2", matched="k-1", event="push", ref="refs/heads/main", sha256="c"
        ),
        {
            "job": "lint",
            "key": "k-2",
            "matched": "k-1",
            "event": "push",
            "ref": "refs/heads/main",
            "sha256": "c",
        },
    ),
    (
        CacheSaved(job="lint", key="k-2", event="push", ref="refs/heads/main", sha256="d", size=9),
        {
            "job": "lint",
            "key": "k-2",
            "event": "push",
            "ref": "refs/heads/main",
            "sha256": "d",
            "size": 9,
        },
    ),
    (
        ServiceStarted(
            job="lint",
            service="db",
            image="postgres:16",
            image_digest="sha256:e",
            config_digest="f",
            health="healthy",
        ),
        {
            "job": "lint",
            "service": "db",
            "image": "postgres:16",
            "image_digest": "sha256:e",
            "config_digest": "f",
            "health": "healthy",
        },
    ),
    (
        ServiceStopped(job="lint", service="db", image="postgres:16", image_digest="sha256:e"),
        {"job": "lint", "service": "db", "image": "postgres:16", "image_digest": "sha256:e"},
    ),
    (
        StepSummary(job="lint", step=0, markdown="## Tests\n- 3 passed\n"),
        {"job": "lint", "step": 0, "markdown": "## Tests\n- 3 passed\n"},
    ),
    (
        StepFinished(
            job="lint",
            step=0,
            name="style",
            status=Status.SUCCESS,
            reason="",
            exit_code=0,
            duration_ms=1200,
            attempts=1,
            log_sha256="ab" * 32,
        ),
        {
            "job": "lint",
            "step": 0,
            "name": "style",
            "status": "success",
            "reason": "",
            "exit_code": 0,
            "duration_ms": 1200,
            "attempts": 1,
            "log_sha256": "ab" * 32,
        },
    ),
    (  # a step that never ran: no exit code, no log digest
        StepFinished(
            job="lint",
            step=1,
            name="deploy",
            status=Status.SKIPPED,
            reason="condition false",
            exit_code=None,
            duration_ms=0,
            attempts=0,
        ),
        {
            "job": "lint",
            "step": 1,
            "name": "deploy",
            "status": "skipped",
            "reason": "condition false",
            "exit_code": None,
            "duration_ms": 0,
            "attempts": 0,
        },
    ),
    (
        ArtifactStored(job="lint", name="report", path="out/r.txt", sha256="cd" * 32, size=12),
        {"job": "lint", "name": "report", "path": "out/r.txt", "sha256": "cd" * 32, "size": 12},
    ),
    (
        JobFinished(job="lint", status=Status.FAILURE, reason="step failed", duration_ms=1500),
        {"job": "lint", "status": "failure", "reason": "step failed", "duration_ms": 1500},
    ),
    (
        VerifyFinished(
            checks=(
                CheckResult("built", "jobs.lint.result == 'success'", CheckStatus.PASSED),
                CheckResult("cov", "x >= 80", CheckStatus.UNRESOLVED, "skipped"),
            )
        ),
        {
            "checks": [
                {
                    "name": "built",
                    "check": "jobs.lint.result == 'success'",
                    "status": "passed",
                    "detail": "",
                },
                {"name": "cov", "check": "x >= 80", "status": "unresolved", "detail": "skipped"},
            ]
        },
    ),
    (
        RunFinished(run_id="r1", result=Status.CANCELLED, reason="interrupted", duration_ms=9),
        {"run_id": "r1", "result": "cancelled", "reason": "interrupted", "duration_ms": 9},
    ),
]


def test_every_event_type_is_a_run_event_with_a_kind_of_its_own_and_a_sample() -> None:
    declared = {
        cls
        for _, cls in inspect.getmembers(events, inspect.isclass)
        if issubclass(cls, Event) and "kind" in vars(cls)
    }
    assert declared == set(EVENT_TYPES) == set(typing.get_args(RunEvent))
    assert len({cls.kind for cls in EVENT_TYPES}) == len(EVENT_TYPES)
    assert {type(event) for event, _ in SAMPLES} == set(EVENT_TYPES)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_event_goes_through_the_event_log_and_comes_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path, Redactor()) as log:
        for event, _ in SAMPLES:
            log.write(event)
    back = list(replay(path))
    assert [logged.event for logged in back] == [event for event, _ in SAMPLES]
    assert [logged.seq for logged in back] == list(range(1, len(SAMPLES) + 1))
    assert [logged.record for logged in back] == _lines(path)


def test_the_json_of_a_typed_event_is_the_json_of_the_free_form_one(tmp_path: Path) -> None:
    typed, free = tmp_path / "typed.jsonl", tmp_path / "free.jsonl"
    with EventLog(typed, Redactor()) as a, EventLog(free, Redactor()) as b:
        for event, fields in SAMPLES:
            a.write(event)
            b.emit(event.kind, **fields)

    def without_time(path: Path) -> list[str]:
        return [re.sub(r'"ts":"[^"]*"', '"ts":""', line) for line in path.read_text().splitlines()]

    assert without_time(typed) == without_time(free)  # the same bytes, in the same order


def test_the_event_log_redacts_typed_events(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path, Redactor(["hunter22"])) as log:
        log.write(GroupStarted(job="j", step=0, title="deploy with hunter22"))
    assert _lines(path)[0]["title"] == "deploy with ***"


def test_reading_is_lenient_with_missing_mistyped_and_unknown_fields() -> None:
    assert parse_event({"kind": "step.finished", "job": "j", "step": "2", "status": "odd"}) == (
        StepFinished(
            job="j",
            step=2,
            name="",
            status=Status.FAILURE,  # a status it cannot read: shown as a failure
            reason="",
            exit_code=None,
            duration_ms=0,
            attempts=0,
        )
    )
    assert parse_event({"kind": "run.started", "jobs": "not a list", "extra": 1}) == RunStarted(
        run_id="", mission="", event="", jobs=()
    )
    record = {"seq": 3, "ts": "t", "kind": "from.the.future", "job": "j", "x": [1]}
    unknown = parse_event(record)
    assert unknown == UnknownEvent("from.the.future", record)
    assert unknown.fields() == {"job": "j", "x": [1]}


@pytest.mark.parametrize(("event", "fields"), SAMPLES, ids=[e.kind for e, _ in SAMPLES])
def test_fields_are_the_documented_ones_in_order(event: RunEvent, fields: dict[str, Any]) -> None:
    assert list(event.fields().items()) == list(fields.items())
    assert f"`{event.kind}`" in (events.__doc__ or "")
