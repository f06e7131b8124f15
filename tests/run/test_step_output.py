"""The output pump: lines, workflow commands and masks, whatever the chunking."""

from __future__ import annotations

from runner.records.sink import Recorder, Sink
from runner.run.step_output import MAX_LINE, OutputPump
from runner.secrets.redact import Redactor


def pump_lines(chunks: list[bytes], redactor: Redactor | None = None) -> tuple[list[str], Recorder]:
    recorder = Recorder()
    pump = OutputPump(Sink([recorder]), redactor or Redactor(), "job", 0)
    for chunk in chunks:
        pump.feed(chunk)
    pump.close()
    lines = [e.fields["line"] for e in recorder.events if e.kind == "output"]
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
    (annotation,) = [e for e in recorder.events if e.kind == "annotation"]
    assert annotation.fields["level"] == "error"
    assert annotation.fields["message"] == "bad ***"
    assert lines == ["::error file=a.py::bad ***"]


def test_a_never_ending_line_is_passed_on_in_pieces() -> None:
    """A step printing without newlines must not grow the runner's memory."""
    chunks = [b"x" * 16384] * (3 * MAX_LINE // 16384) + [b"\nend\n"]
    lines, _ = pump_lines(chunks)
    assert "".join(lines[:-1]) == "x" * (3 * MAX_LINE)
    assert all(len(line) <= 2 * MAX_LINE for line in lines) and lines[-1] == "end"
