from __future__ import annotations

import io
import re
import time
from collections.abc import Callable

import pytest

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
    StepFinished,
    StepRetry,
    StepStarted,
    VerifyFinished,
)
from runner.records.results import (
    CheckResult,
    CheckStatus,
    JobResult,
    RunResult,
    Status,
    StepResult,
)
from runner.records.sink import Sink
from runner.report.progress import LiveView, PlainView, make_view, summary

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class AsciiStream(io.StringIO):
    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "ascii"


def started(job: str, name: str, attempt: int) -> StepStarted:
    return StepStarted(
        job=job, step=0, name=name, attempt=attempt, image="img", image_digest="", config_digest=""
    )


def script(emit: Callable[[RunEvent], None], *, finish: bool = True) -> None:
    emit(RunStarted(run_id="r1", mission="ci", event="push", jobs=("lint", "test (1)", "pub")))
    emit(JobStarted(job="lint"))
    emit(started("lint", "style", 1))
    emit(OutputLine(job="lint", step=0, line="hello \x1b[31mred\x1b[0m"))
    emit(
        StepFinished(
            job="lint",
            step=0,
            name="style",
            status=Status.SUCCESS,
            reason="",
            exit_code=0,
            duration_ms=1200,
            attempts=1,
        )
    )
    emit(JobFinished(job="lint", status=Status.SUCCESS, reason="", duration_ms=1500))
    emit(JobStarted(job="test (1)"))
    emit(started("test (1)", "tests", 1))
    emit(OutputLine(job="test (1)", step=0, line="first try"))
    emit(StepRetry(job="test (1)", step=0, attempt=2, delay_s=1.5, reason="exit code 2"))
    emit(started("test (1)", "tests", 2))
    for i in range(12):
        emit(OutputLine(job="test (1)", step=0, line=f"line {i}"))
    emit(Annotation(job="test (1)", step=0, level="error", message="boom, 100%"))
    if not finish:
        return
    emit(
        StepFinished(
            job="test (1)",
            step=0,
            name="tests",
            status=Status.FAILURE,
            reason="exit code 2",
            exit_code=2,
            duration_ms=300,
            attempts=2,
        )
    )
    emit(JobFinished(job="test (1)", status=Status.FAILURE, reason="step failed", duration_ms=900))
    emit(JobFinished(job="pub", status=Status.SKIPPED, reason="dependency failed", duration_ms=0))
    emit(VerifyFinished(checks=()))
    emit(RunFinished(run_id="r1", result=Status.FAILURE, reason="test failed", duration_ms=3000))


# -- plain lines --------------------------------------------------------------------------


def test_plain_view_prints_one_prefixed_line_per_event() -> None:
    stream = io.StringIO()
    script(Sink([PlainView(Output(stdout=stream, color="never"))]).emit)
    lines = stream.getvalue().splitlines()
    assert lines[:9] == [
        "run r1: ci on push, 3 jobs",
        "[lint] ▶ style",
        "[lint] │ hello red",
        "[lint] ✓ style (1.2s)",
        "[lint] ✓ job succeeded (1.5s)",
        "[test (1)] ▶ tests",
        "[test (1)] │ first try",
        "[test (1)] ↻ tests: exit code 2, attempt 2 in 1.5s",
        "[test (1)] ▶ tests (attempt 2)",
    ]
    assert lines[9:21] == [f"[test (1)] │ line {i}" for i in range(12)]
    assert lines[21:] == [
        "::error title=test (1) \u203a tests::boom, 100%25",
        "[test (1)] ✗ tests: exit code 2 (0.3s, 2 attempts)",
        "[test (1)] ✗ job failed: step failed (0.9s)",
        "[pub] ↷ job skipped: dependency failed",
    ]


def test_plain_view_falls_back_to_ascii_when_the_stream_cannot_hold_unicode() -> None:
    stream = AsciiStream()
    view = PlainView(Output(stdout=stream, color="never"))
    sink = Sink([view])
    script(sink.emit)
    sink.emit(OutputLine(job="lint", step=1, line="café ✓"))
    lines = stream.getvalue().splitlines()
    assert "[lint] > style" in lines
    assert "[lint] + style (1.2s)" in lines
    assert "[test (1)] x tests: exit code 2 (0.3s, 2 attempts)" in lines
    assert "[test (1)] ~ tests: exit code 2, attempt 2 in 1.5s" in lines
    assert "[pub] - job skipped: dependency failed" in lines
    assert "::error title=test (1) > tests::boom, 100%25" in lines
    assert lines[-1] == "[lint] | caf? ?"
    stream.getvalue().encode("ascii")  # every byte fits the stream's encoding


def test_plain_view_neutralises_hostile_step_output() -> None:
    stream = io.StringIO()
    sink = Sink([PlainView(Output(stdout=stream, color="never"))])
    sink.emit(OutputLine(job="j", step=0, line="::error ::forged"))
    sink.emit(OutputLine(job="j", step=0, line="\x1b[2J\x1b]0;title\x07wiped\x00\x07 ok\tx"))
    sink.emit(OutputLine(job="j", step=0, line="10%\r50%\r100%"))
    sink.emit(Annotation(job="j", step=3, level="warning", message="two\nlines: a,b"))
    sink.emit(Annotation(job="j", step=3, level="bogus", message="x"))
    assert stream.getvalue().splitlines() == [
        "[j] │ ::error ::forged",
        "[j] │ wiped ok\tx",
        "[j] │ 100%",
        "::warning title=j::two%0Alines: a,b",
        "::error title=j::x",
    ]


def test_plain_view_shows_a_group_as_a_header_with_its_lines_indented() -> None:
    stream = io.StringIO()
    sink = Sink([PlainView(Output(stdout=stream, color="never"))])
    sink.emit(started("b", "build", 1))
    sink.emit(OutputLine(job="b", step=0, line="before"))
    sink.emit(GroupStarted(job="b", step=0, title="Install \x1b[31mdeps"))
    sink.emit(OutputLine(job="b", step=0, line="pip install"))
    sink.emit(OutputLine(job="c", step=0, line="another job's line"))
    sink.emit(GroupFinished(job="b", step=0))
    sink.emit(OutputLine(job="b", step=0, line="after"))
    sink.emit(GroupStarted(job="b", step=0, title="Test"))
    sink.emit(OutputLine(job="b", step=0, line="1 failed"))
    sink.emit(StepRetry(job="b", step=0, attempt=2, delay_s=0.5, reason="exit code 1"))
    sink.emit(started("b", "build", 2))  # a new attempt starts outside any group
    sink.emit(OutputLine(job="b", step=0, line="again"))
    assert stream.getvalue().splitlines() == [
        "[b] ▶ build",
        "[b] │ before",
        "[b] │ ▾ Install deps",
        "[b] │   pip install",
        "[c] │ another job's line",
        "[b] │ after",
        "[b] │ ▾ Test",
        "[b] │   1 failed",
        "[b] ↻ build: exit code 1, attempt 2 in 0.5s",
        "[b] ▶ build (attempt 2)",
        "[b] │ again",
    ]


def test_plain_view_colours_the_marks_when_asked() -> None:
    stream = io.StringIO()
    sink = Sink([PlainView(Output(stdout=stream, color="always"))])
    sink.emit(JobFinished(job="j", status=Status.FAILURE, reason="exit code 1", duration_ms=50))
    assert stream.getvalue() == "[j] \x1b[31m✗\x1b[0m job failed: exit code 1 (0.1s)\n"


def test_make_view_picks_by_mode_and_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    assert make_view(Output(json_mode=True, stdout=FakeTTY())) is None
    assert isinstance(make_view(Output(stdout=FakeTTY())), PlainView)  # CI=true (conftest)
    assert isinstance(make_view(Output(stdout=io.StringIO())), PlainView)
    monkeypatch.delenv("CI")
    view = make_view(Output(stdout=FakeTTY()))
    assert isinstance(view, LiveView)
    assert isinstance(make_view(Output(stdout=io.StringIO())), PlainView)
    view.close()


def test_json_mode_has_no_live_output_and_the_summary_prints_nothing() -> None:
    stream = io.StringIO()
    out = Output(json_mode=True, stdout=stream)
    assert make_view(out) is None
    summary(_run(), out)
    assert stream.getvalue() == ""


# -- live table ---------------------------------------------------------------------------


def _last_frame(text: str) -> list[str]:
    frames = re.split(r"\x1b\[\d+A", text)
    last = frames[-1].split(LiveView.SHOW_CURSOR)[0]
    return [line for line in ANSI.sub("", last).replace("\r", "").splitlines() if line]


def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_live_view_redraws_in_place_and_reports_the_failing_tail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI")
    stream = FakeTTY()
    view = make_view(Output(stdout=stream, color="never"))
    assert isinstance(view, LiveView)
    sink = Sink([view])
    script(sink.emit, finish=False)
    # the ticker draws by itself while a step runs, and ticks again (durations move)
    assert _wait_for(lambda: view.frames >= 2)
    text = stream.getvalue()
    assert text.startswith(LiveView.HIDE_CURSOR)
    assert "\x1b[4A" in text  # moved back over the 4 lines (header + 3 jobs) of a frame
    running = _last_frame(text)
    assert running[0].startswith("ci (push) run r1")
    assert re.fullmatch(r"✓ lint\s+1\.5s", running[1])
    assert re.fullmatch(r". test \(1\)\s+\d+\.\ds  tests \(attempt 2\)", running[2])
    assert re.fullmatch(r"○ pub\s+waiting", running[3])

    sink.emit(
        StepFinished(
            job="test (1)",
            step=0,
            name="tests",
            status=Status.FAILURE,
            reason="exit code 2",
            exit_code=2,
            duration_ms=300,
            attempts=2,
        )
    )
    sink.emit(
        JobFinished(job="test (1)", status=Status.FAILURE, reason="step failed", duration_ms=900)
    )
    sink.emit(
        JobFinished(job="pub", status=Status.SKIPPED, reason="dependency failed", duration_ms=0)
    )
    sink.emit(RunFinished(run_id="r1", result=Status.FAILURE, reason="x", duration_ms=3000))

    assert view._thread is not None and not view._thread.is_alive()
    text = stream.getvalue()
    frame, report = text.rsplit(LiveView.SHOW_CURSOR, 1)
    assert _last_frame(frame + LiveView.SHOW_CURSOR) == [
        "ci (push) run r1 · 3.0s",
        "✓ lint         1.5s",
        "✗ test (1)     0.9s  step failed",
        "↷ pub                dependency failed",
    ]
    assert report.splitlines() == [
        "",
        "✗ test (1) \u203a tests: exit code 2, last 10 lines",
        *[f"  │ line {i}" for i in range(2, 12)],
        "",
        "error: test (1) \u203a tests: boom, 100%",
    ]
    time.sleep(0.3)
    assert stream.getvalue() == text  # nothing redraws after the run
    view.close()  # idempotent
    assert stream.getvalue() == text


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_live_view_durations_tick_and_retries_show_their_countdown() -> None:
    clock = Clock()
    stream = FakeTTY()
    view = LiveView(Output(stdout=stream, color="never"), interval=60, clock=clock)
    sink = Sink([view])
    sink.emit(RunStarted(run_id="r", mission="m", event="manual", jobs=("build",)))
    sink.emit(JobStarted(job="build"))
    sink.emit(started("build", "compile", 1))
    clock.now = 102.5
    assert ANSI.sub("", view.render()[1]).endswith("build     2.5s  compile")
    sink.emit(StepRetry(job="build", step=0, attempt=2, delay_s=4.0, reason="timeout"))
    clock.now = 103.5
    assert ANSI.sub("", view.render()[1]).endswith(
        "build     3.5s  ↻ compile: timeout, attempt 2 in 3.0s"
    )
    clock.now = 75.0 + 100
    assert view.render()[0] == "m (manual) run r · 1m15s"
    view.close()
    assert stream.getvalue().endswith(LiveView.SHOW_CURSOR)


def test_live_view_shows_the_group_a_step_is_in_and_folds_groups_in_a_failed_tail() -> None:
    clock = Clock()
    stream = FakeTTY()
    view = LiveView(Output(stdout=stream, color="never"), interval=60, clock=clock)
    sink = Sink([view])
    sink.emit(RunStarted(run_id="r", mission="m", event="push", jobs=("build",)))
    sink.emit(JobStarted(job="build"))
    sink.emit(started("build", "compile", 1))
    sink.emit(OutputLine(job="build", step=0, line="before"))
    sink.emit(GroupStarted(job="build", step=0, title="Install"))
    assert ANSI.sub("", view.render()[1]).endswith("build     0.0s  compile \u203a Install")
    for i in range(3):
        sink.emit(OutputLine(job="build", step=0, line=f"pip {i}"))
    sink.emit(GroupFinished(job="build", step=0))
    assert ANSI.sub("", view.render()[1]).endswith("build     0.0s  compile")
    sink.emit(OutputLine(job="build", step=0, line="between"))
    sink.emit(GroupStarted(job="build", step=0, title="Test"))
    sink.emit(OutputLine(job="build", step=0, line="1 failed"))
    failed = StepFinished(
        job="build",
        step=0,
        name="compile",
        status=Status.FAILURE,
        reason="exit code 1",
        exit_code=1,
        duration_ms=10,
        attempts=1,
    )
    sink.emit(failed)
    sink.emit(JobFinished(job="build", status=Status.FAILURE, reason="x", duration_ms=20))
    sink.emit(RunFinished(run_id="r", result=Status.FAILURE, reason="x", duration_ms=30))
    report = stream.getvalue().rsplit(LiveView.SHOW_CURSOR, 1)[1]
    assert report.splitlines() == [
        "",
        "✗ build \u203a compile: exit code 1, last 5 lines",
        "  │ before",
        "  │ ▸ Install (3 lines)",
        "  │ between",
        "  │ ▾ Test",
        "  │   1 failed",
    ]


def test_live_view_keeps_the_open_group_header_above_its_last_lines() -> None:
    stream = FakeTTY()
    view = LiveView(Output(stdout=stream, color="never"), interval=60, clock=Clock())
    sink = Sink([view])
    sink.emit(RunStarted(run_id="r", mission="m", event="push", jobs=("build",)))
    sink.emit(started("build", "compile", 1))
    sink.emit(GroupStarted(job="build", step=0, title="Test"))
    for i in range(12):
        sink.emit(OutputLine(job="build", step=0, line=f"t{i}"))
    sink.emit(
        StepFinished(
            job="build",
            step=0,
            name="compile",
            status=Status.FAILURE,
            reason="",
            exit_code=1,
            duration_ms=10,
            attempts=1,
        )
    )
    sink.emit(RunFinished(run_id="r", result=Status.FAILURE, reason="x", duration_ms=30))
    report = stream.getvalue().rsplit(LiveView.SHOW_CURSOR, 1)[1]
    assert report.splitlines()[2:] == ["  │ ▾ Test", *[f"  │   t{i}" for i in range(3, 12)]]


def test_live_view_keeps_the_frame_within_the_terminal() -> None:
    clock = Clock()
    jobs = [f"job-{i}" for i in range(10)]
    view = LiveView(
        Output(stdout=FakeTTY(), color="never"), interval=60, clock=clock, size=lambda: (40, 6)
    )
    sink = Sink([view])
    sink.emit(RunStarted(run_id="r", mission="m", event="push", jobs=tuple(jobs)))
    for key in jobs[:4]:
        sink.emit(JobFinished(job=key, status=Status.SUCCESS, reason="", duration_ms=10))
    sink.emit(JobStarted(job="job-7"))
    sink.emit(started("job-7", "x" * 80, 1))
    frame = [ANSI.sub("", line) for line in view.render(width=39, height=5)]
    assert len(frame) == 5
    # running (and failed) rows first, then plan order; the rest counted on one line
    assert [line.split()[1] for line in frame[1:4]] == ["job-0", "job-1", "job-7"]
    assert frame[3].startswith("⠋ job-7")
    assert frame[-1] == "··· 7 more (2 done, 5 waiting)"
    assert all(len(line) <= 39 for line in frame)
    assert frame[3].endswith("x…")
    view.close()


def test_live_view_abandoned_at_exit_gives_the_cursor_back_and_stops() -> None:
    stream = FakeTTY()
    view = LiveView(Output(stdout=stream, color="never"), interval=0.01)
    sink = Sink([view])
    sink.emit(RunStarted(run_id="r", mission="m", event="push", jobs=("a",)))
    sink.emit(JobStarted(job="a"))
    assert _wait_for(lambda: view.frames >= 1)
    view._abandon()  # what atexit does when the command died without closing the view
    text = stream.getvalue()
    assert text.endswith(LiveView.SHOW_CURSOR)
    time.sleep(0.1)
    view.close()
    sink.emit(JobFinished(job="a", status=Status.SUCCESS, reason="", duration_ms=1))
    assert stream.getvalue() == text  # no redraw over what was printed after the table


def test_live_view_closed_before_any_event_writes_nothing() -> None:
    stream = FakeTTY()
    view = LiveView(Output(stdout=stream))
    view.close()
    assert stream.getvalue() == ""


# -- summary ------------------------------------------------------------------------------


def _run() -> RunResult:
    run = RunResult(run_id="r9", mission="ci", mission_path=".missions/ci.yml", event="push")
    run.status, run.reason, run.duration_s = Status.FAILURE, "job 'test (1)' failed", 12.34
    lint = JobResult(key="lint", job_id="lint", status=Status.SUCCESS, duration_s=1.5)
    test = JobResult(
        key="test (1)", job_id="test", status=Status.FAILURE, reason="step failed", duration_s=3
    )
    test.steps = [
        StepResult(index=0, name="setup", status=Status.SUCCESS),
        StepResult(index=1, name="tests", status=Status.FAILURE, reason="exit code 2"),
    ]
    pub = JobResult(key="pub", job_id="pub", status=Status.SKIPPED, reason="dependency failed")
    run.jobs = {"lint": lint, "test (1)": test, "pub": pub}
    run.checks = [
        CheckResult("built", "jobs.lint.result == 'success'", CheckStatus.PASSED),
        CheckResult(
            "cov", "jobs.test.outputs.cov >= 80", CheckStatus.FAILED, "jobs.test.outputs.cov = '7'"
        ),
        CheckResult("shipped", "jobs.pub.result == 'success'", CheckStatus.UNRESOLVED, "skipped"),
    ]
    return run


def test_summary_lists_jobs_checks_and_the_result() -> None:
    stream = io.StringIO()
    summary(_run(), Output(stdout=stream, color="never"))
    assert stream.getvalue().splitlines() == [
        "jobs:",
        "  ✓ lint      success (1.5s)",
        "  ✗ test (1)  failure: step failed (3.0s)",
        "              ✗ tests: exit code 2",
        "  ↷ pub       skipped: dependency failed",
        "verify: 1 passed, 1 failed, 1 unresolved",
        "  ✗ cov: failed: jobs.test.outputs.cov >= 80 (jobs.test.outputs.cov = '7')",
        "  ? shipped: unresolved: jobs.pub.result == 'success' (skipped)",
        "✗ ci: failure: job 'test (1)' failed (12.3s) · run r9",
    ]


def test_summary_in_ascii_marks_continue_on_error() -> None:
    run = _run()
    run.checks = []
    run.jobs["test (1)"].continue_on_error = True
    run.status, run.reason = Status.SUCCESS, ""
    stream = AsciiStream()
    summary(run, Output(stdout=stream, color="never"))
    lines = stream.getvalue().splitlines()
    assert "  x test (1)  failure: step failed (3.0s) [continue-on-error]" in lines
    assert not any(line.startswith("verify") for line in lines)
    assert lines[-1] == "+ ci: success (12.3s) - run r9"


def build_events(tag: str) -> list[RunEvent]:
    return [
        ImageBuild(name="app", tag=tag, phase="started"),
        ImageBuild(name="app", tag=tag, phase="step", line="Step 1/2 : FROM debian"),
        ImageBuild(name="app", tag=tag, phase="step", line="Step 2/2 : RUN make \x1b[2Jall"),
    ]


def test_plain_view_shows_which_image_is_built_and_each_build_step() -> None:
    stream = io.StringIO()
    sink = Sink([PlainView(Output(stdout=stream, color="never"))])
    for event in build_events("runner/app:abc"):
        sink.emit(event)
    sink.emit(ImageBuild(name="app", tag="runner/app:abc", phase="finished"))
    sink.emit(ImageBuild(name="bad", tag="runner/bad:d", phase="finished", line="build failed: x"))
    assert stream.getvalue().splitlines() == [
        "image app: building runner/app:abc",
        "image app: Step 1/2 : FROM debian",
        "image app: Step 2/2 : RUN make all",  # a Dockerfile's escapes never reach a terminal
        "image app: built",
        "image bad: build failed: x",
    ]


def test_live_view_shows_an_image_build_on_its_step_until_it_is_built() -> None:
    stream = FakeTTY()
    view = LiveView(Output(stdout=stream, color="never"), interval=60, clock=Clock())
    sink = Sink([view])
    sink.emit(RunStarted(run_id="r", mission="m", event="push", jobs=("build",)))
    for event in build_events("runner/app:abc"):
        sink.emit(event)
    frame = [ANSI.sub("", line) for line in view.render()]
    assert len(frame) == 3
    assert frame[1].endswith(" image app: Step 2/2 : RUN make all")
    assert frame[2].endswith("waiting")
    sink.emit(ImageBuild(name="app", tag="runner/app:abc", phase="finished"))
    frame = [ANSI.sub("", line) for line in view.render()]
    assert len(frame) == 2 and "image app" not in "".join(frame)
    view.close()
