"""The output pump: lines, workflow commands and masks, whatever the chunking."""

from __future__ import annotations

import hashlib

from runner.records.events import Annotation, GroupFinished, GroupStarted, OutputLine
from runner.records.sink import Recorder, Sink
from runner.run.step_output import MAX_LINE, OutputPump
from runner.secrets.redact import Redactor


def pump_lines(chunks: list[bytes], redactor: Redactor | None = None) -> tuple[list[str], Recorder]:
    recorder = Recorder()
    pump = OutputPump(Sink([recorder]), redactor or Redactor(), "job", 0)
    for chunk in chunks:
        pump.feed(chunk)
    pump.close()
    lines = [e.line for e in recorder.events if isinstance(e, OutputLine)]
    return lines, recorder


def test_a_mask_applies_to_the_line_that_registers_it_and_after() -> None:
    text = b"before hunter2\n::add-mask::hunter2\nafter hunter2\n"
    for cut in range(1, len(text)):
        lines, _ = pump_lines([text[:cut], text[cut:]])
        assert lines == ["before hunter2", "::add-mask::***", "after ***"], cut


def test_utf8_split_across_chunks_and_a_last_line_without_newline() -> None:
    data = "héllo wörld\nlast".encode()
    lines, _ = pump_lines([data[:2], data[2:9], data[9:]])
    assert lines == ["héllo wörld", "last"]


def test_annotations_are_emitted_redacted() -> None:
    redactor = Redactor()
    redactor.add("t0ken-value")
    lines, recorder = pump_lines([b"::error file=a.py::bad t0ken-value\n"], redactor)
    (annotation,) = [e for e in recorder.events if isinstance(e, Annotation)]
    assert annotation.level == "error"
    assert annotation.message == "bad ***"
    assert lines == ["::error file=a.py::bad ***"]


def test_a_never_ending_line_is_passed_on_in_pieces() -> None:
    """A step printing without newlines must not grow the runner's memory."""
    chunks = [b"x" * 16384] * (3 * MAX_LINE // 16384) + [b"\nend\n"]
    lines, _ = pump_lines(chunks)
    assert "".join(lines[:-1]) == "x" * (3 * MAX_LINE)
    assert all(len(line) <= 2 * MAX_LINE for line in lines) and lines[-1] == "end"


def test_groups_are_events_in_line_order_with_redacted_titles() -> None:
    redactor = Redactor()
    redactor.add("hunter2")
    text = b"before\n::group::Build hunter2\ninside\n::endgroup::\nafter\n::group::Last"
    for cut in range(1, len(text)):
        lines, recorder = pump_lines([text[:cut], text[cut:]], redactor)
        assert recorder.events == [
            OutputLine(job="job", step=0, line="before"),
            GroupStarted(job="job", step=0, title="Build ***"),
            OutputLine(job="job", step=0, line="inside"),
            GroupFinished(job="job", step=0),
            OutputLine(job="job", step=0, line="after"),
            GroupStarted(job="job", step=0, title="Last"),
        ], cut
        assert lines == ["before", "inside", "after"]


def test_group_lines_count_in_the_digest_and_the_tail() -> None:
    recorder = Recorder()
    pump = OutputPump(Sink([recorder]), Redactor(), "job", 0)
    pump.feed(b"::group::g\nx\n::endgroup::\n")
    pump.close()
    assert pump.digest.hexdigest() == hashlib.sha256(b"::group::g\nx\n::endgroup::\n").hexdigest()
    assert list(pump.tail) == ["::group::g", "x", "::endgroup::"]


def test_a_piece_of_an_overlong_line_is_never_read_as_a_group() -> None:
    """Only a whole line is a workflow command, not what follows a cut in a long one."""
    chunks = [b"x" * (MAX_LINE + 1), b"::group::not a group\n", b"::group::real\n"]
    _, recorder = pump_lines(chunks)
    groups = [e for e in recorder.events if isinstance(e, GroupStarted)]
    assert groups == [GroupStarted(job="job", step=0, title="real")]


def test_a_mask_shorter_than_four_characters_is_refused_with_a_warning() -> None:
    lines, recorder = pump_lines([b"::add-mask::abc\nabc and status success\n"])
    assert lines == ["::add-mask::abc", "abc and status success"]
    (warning,) = [e for e in recorder.events if isinstance(e, Annotation)]
    assert warning.level == "warning" and "shorter than 4 characters" in warning.message
    assert "abc" not in warning.message


def test_a_mask_registers_with_the_jobs_redactor_only() -> None:
    run = Redactor(["run-secret-value"])
    lines, _ = pump_lines(
        [b"::add-mask::job-mask\njob-mask run-secret-value\n"], run.for_job("build")
    )
    assert lines == ["::add-mask::***", "*** ***"]
    assert run("job-mask") == "job-mask" and run.for_job("test")("job-mask") == "job-mask"


def test_a_warning_with_an_escaped_secret_is_masked_in_its_line_and_its_annotation() -> None:
    secret = "50%+\r\nline-two-of-it"
    escaped = secret.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    lines, recorder = pump_lines([f"::warning::got {escaped}\n".encode()], Redactor([secret]))
    (annotation,) = [e for e in recorder.events if isinstance(e, Annotation)]
    assert lines == ["::warning::got ***"]
    assert annotation.message == "got ***"
