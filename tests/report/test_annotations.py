"""Annotations with a location in every view (runner.report.annotations and its users):
compiler style where they have a file, the old forms where they have none, hostile
values unable to pose as anything, a bounded list for the reports, old logs replayable."""

from __future__ import annotations

import io
import json

import pytest

from runner.output import Output
from runner.records.events import (
    Annotation,
    RunFinished,
    RunStarted,
    StepStarted,
    parse_event,
)
from runner.records.results import Status
from runner.records.sink import Sink
from runner.report.annotations import (
    PER_JOB,
    PER_STEP,
    StepAnnotations,
    compiler_line,
    location,
)
from runner.report.display import ASCII
from runner.report.live import LiveView
from runner.report.progress import PlainView
from runner.report.replay import ReplayView
from runner.secrets.redact import Redactor

LOCATED = Annotation(
    job="test (1)",
    step=0,
    level="error",
    message="bad\nthing",
    file="src/a.py",
    line=3,
    end_line=4,
    col=5,
    end_column=7,
    title="Bad",
)


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def started(job: str, step: int, name: str) -> StepStarted:
    return StepStarted(
        job=job, step=step, name=name, attempt=1, image="img", image_digest="", config_digest=""
    )


def test_a_located_annotation_is_compiler_style() -> None:
    assert location(LOCATED) == "src/a.py:3:5"
    assert compiler_line(LOCATED) == "src/a.py:3:5: error: Bad: bad thing"
    bare = Annotation(job="j", step=0, level="warning", message="m", file="a.py")
    assert compiler_line(bare) == "a.py: warning: m"
    no_col = Annotation(job="j", step=0, level="notice", message="m", file="a.py", line=9)
    assert compiler_line(no_col) == "a.py:9: notice: m"
    # a column without a line (an old or hostile log) is not shown as a line
    assert location(Annotation(job="j", step=0, level="error", message="m", file="a", col=4)) == "a"
    assert compiler_line(Annotation(job="j", step=0, level="error", message="m")) == ""


@pytest.mark.parametrize(
    ("file", "shown"),
    [
        ("::error ::forged", "./::error ::forged"),
        ("  ::warning ::x", "./  ::warning ::x"),
        ("##[error]x", "./##[error]x"),
        ("[lint] ✓ job succeeded", "./[lint] ✓ job succeeded"),
        ("\x1b[2Jwiped", "wiped"),
        ("\x1b[2J::error ::y", "./::error ::y"),
        ("/etc/passwd", "/etc/passwd"),
        ("../up.py", "../up.py"),
        ("é.py", "é.py"),
    ],
)
def test_a_file_can_never_make_the_line_pose_as_a_command_or_one_of_runners(
    file: str, shown: str
) -> None:
    event = Annotation(job="j", step=0, level="bogus\x1b[31m", message="m\n::error ::z", file=file)
    line = compiler_line(event)
    assert line == f"{shown}: error: m ::error ::z"
    assert "\n" not in line and "\x1b" not in line


def test_plain_view_shows_located_annotations_compiler_style_and_others_as_before() -> None:
    stream = io.StringIO()
    sink = Sink([PlainView(Output(stdout=stream, color="never"))])
    sink.emit(started("test (1)", 0, "unit"))
    sink.emit(LOCATED)
    sink.emit(Annotation(job="test (1)", step=0, level="warning", message="w", title="T"))
    sink.emit(Annotation(job="other", step=1, level="notice", message="n", file="b.py", line=2))
    assert stream.getvalue().splitlines() == [
        "[test (1)] ▶ unit",
        "src/a.py:3:5: error: Bad: bad thing [test (1) \u203a unit]",
        "::warning title=test (1) \u203a unit::T: w",
        "b.py:2: notice: n [other]",
    ]


def test_live_view_lists_located_annotations_compiler_style_after_the_run() -> None:
    stream = FakeTTY()
    view = LiveView(Output(stdout=stream, color="never"), interval=60, clock=lambda: 0.0)
    sink = Sink([view])
    sink.emit(RunStarted(run_id="r1", mission="ci", event="push", jobs=("test (1)",)))
    sink.emit(started("test (1)", 0, "unit"))
    sink.emit(LOCATED)
    sink.emit(Annotation(job="test (1)", step=0, level="warning", message="w\x1b[2J", title="T"))
    sink.emit(RunFinished(run_id="r1", result=Status.FAILURE, reason="", duration_ms=10))
    report = stream.getvalue().split(LiveView.SHOW_CURSOR)[-1].splitlines()
    assert report[-2:] == [
        "src/a.py:3:5: error: Bad: bad thing [test (1) \u203a unit]",
        "warning: test (1) \u203a unit: T: w",
    ]


def test_live_view_lists_at_most_as_many_as_github_keeps_and_says_how_many_more() -> None:
    stream = FakeTTY()
    view = LiveView(Output(stdout=stream, color="never"), interval=60, clock=lambda: 0.0)
    sink = Sink([view])
    sink.emit(RunStarted(run_id="r1", mission="ci", event="push", jobs=("j",)))
    for i in range(PER_STEP + 5):
        sink.emit(Annotation(job="j", step=0, level="error", message=f"e{i}", file="a", line=1))
    sink.emit(RunFinished(run_id="r1", result=Status.FAILURE, reason="", duration_ms=10))
    report = stream.getvalue().split(LiveView.SHOW_CURSOR)[-1].splitlines()
    shown = [line for line in report if line.startswith("a:1: error: ")]
    assert len(shown) == PER_STEP
    assert report[-1].startswith("··· 5 more annotations (at most 10 of each level a step")


def test_replay_shows_located_annotations_compiler_style_under_their_step() -> None:
    view = ReplayView(ASCII)
    assert view.line(started("test (1)", 0, "unit")) == "[test (1)/unit] started"
    assert view.line(LOCATED) == "[test (1)/unit] src/a.py:3:5: error: Bad: bad thing"
    titled = Annotation(job="test (1)", step=0, level="warning", message="a\nb", title="T")
    assert view.line(titled) == "[test (1)/unit] warning: T: a b"


def test_the_located_fields_are_stored_and_read_back_and_old_logs_still_replay() -> None:
    stored = json.loads(json.dumps(LOCATED.fields()))
    assert stored == {
        "job": "test (1)",
        "step": 0,
        "level": "error",
        "message": "bad\nthing",
        "file": "src/a.py",
        "line": 3,
        "end_line": 4,
        "col": 5,
        "end_column": 7,
        "title": "Bad",
    }
    assert parse_event({"kind": "annotation", **stored}) == LOCATED
    old = {"seq": 4, "ts": "t", "kind": "annotation", "job": "j", "step": 1, "level": "error"}
    read = parse_event({**old, "message": "m"})
    assert read == Annotation(job="j", step=1, level="error", message="m")
    assert Annotation(job="j", step=1, level="error", message="m").fields() == {
        "job": "j",
        "step": 1,
        "level": "error",
        "message": "m",
    }
    hostile = parse_event({**old, "message": "m", "line": "x", "col": [1], "file": 7})
    assert isinstance(hostile, Annotation)
    assert (hostile.file, hostile.line, hostile.col) == ("7", 0, 0)
    assert location(hostile) == "7"  # a position runner could not read is not shown


def test_step_annotations_keep_github_bounds_per_step_and_job() -> None:
    notes = StepAnnotations()
    for step in range(8):
        for i in range(PER_STEP + 2):
            notes.handle(Annotation(job="j", step=step, level="error", message=f"{step}.{i}"))
    notes.handle(Annotation(job="k", step=0, level="warning", message="other job"))
    kept = notes.kept
    assert sum(1 for a in kept if a.job == "j") == PER_JOB
    assert [a.message for a in kept if (a.job, a.step) == ("j", 0)] == [
        f"0.{i}" for i in range(PER_STEP)
    ]
    assert [a.message for a in kept if a.job == "k"] == ["other job"]
    assert notes.dropped == 8 * (PER_STEP + 2) - PER_JOB


def test_step_annotations_are_redacted_by_their_jobs_masks_when_shown() -> None:
    run = Redactor(["run-secret-1"])
    run.for_job("j").add("job-mask-value")
    notes = StepAnnotations()
    notes.handle(
        Annotation(
            job="j",
            step=0,
            level="error",
            message="m job-mask-value run-secret-1",
            file="src/job-mask-value.py",
            title="T job-mask-value",
        )
    )
    notes.handle(Annotation(job="k", step=0, level="error", message="job-mask-value"))
    first, other = notes.redacted(run)
    assert (first.message, first.file, first.title) == ("m *** ***", "src/***.py", "T ***")
    assert other.message == "job-mask-value"  # another job's mask is not this one's
