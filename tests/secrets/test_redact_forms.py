"""Every form a secret may be printed in is masked, through every channel that writes it,
for secrets over the full Unicode range (quotes, backslashes, `%`, `&`, `+`, spaces,
control characters, escape sequences) and any chunking of the output."""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from leaks import RENDERINGS, filler_st, leaked, secrets_st

from runner.audit import canonical
from runner.audit.entries import ENVELOPE
from runner.audit.keys import Signer
from runner.audit.ledger import ENTRIES, Ledger
from runner.expressions import ExpressionError, evaluate
from runner.records.eventlog import EventLog
from runner.records.events import Annotation, JobFinished, OutputLine, StepFinished
from runner.records.results import JobResult, RunResult, Status, StepResult
from runner.records.sink import Recorder, Sink
from runner.report.junit import write_junit
from runner.run.step_output import OutputPump
from runner.run.workflow_commands import FileCommandError, parse_file_command
from runner.secrets.redact import Redactor

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
names_st = st.sampled_from(sorted(RENDERINGS))


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def pumped(redactor: Redactor, chunks: list[bytes]) -> tuple[str, list[str]]:
    """What the output pump writes of `chunks`: the lines, and the annotations."""
    recorder = Recorder()
    pump = OutputPump(Sink([recorder]), redactor, "job", 0)
    for chunk in chunks:
        pump.feed(chunk)
    pump.close()
    lines = [e.line for e in recorder.events if isinstance(e, OutputLine)]
    notes = [e.message for e in recorder.events if isinstance(e, Annotation)]
    return "\n".join(lines), notes


@SETTINGS
@given(
    secret=secrets_st,
    names=st.lists(names_st, min_size=1, max_size=4),
    before=filler_st,
    after=filler_st,
    cuts=st.lists(st.integers(0, 100_000), max_size=12),
)
def test_every_form_is_masked_in_the_step_output_whatever_the_chunking(
    secret: str, names: list[str], before: str, after: str, cuts: list[int]
) -> None:
    redactor = Redactor([secret])
    printed = before + "\n".join(RENDERINGS[name][0](secret) for name in names) + after + "\n"
    lines, notes = pumped(redactor, chunked(printed.encode(), cuts))
    whole, _ = pumped(redactor, [printed.encode()])
    assert lines == whole
    assert leaked(lines, secret) == [], (names, lines)
    for note in notes:
        assert leaked(note, secret) == [], note


@SETTINGS
@given(secret=secrets_st, text=filler_st, cuts=st.lists(st.integers(0, 10_000), max_size=10))
def test_a_stream_equals_the_whole_text_with_escapes_and_wrapped_base64(
    secret: str, text: str, cuts: list[int]
) -> None:
    encoded = base64.b64encode(text.encode() + secret.encode()).decode()
    printed = f"{text}\x1b[3{len(text) % 8}m{secret}\x1b[0m\n" + "\n".join(
        encoded[i : i + 7 + len(text)] for i in range(0, len(encoded), 7 + len(text))
    )
    redactor = Redactor([secret])
    stream = redactor.stream()
    pieces = [printed[a:b] for a, b in _spans(len(printed), cuts)]
    streamed = "".join(stream.feed(piece) for piece in pieces) + stream.flush()
    assert streamed == redactor(printed)
    assert leaked(streamed, secret) == []


def _spans(size: int, cuts: list[int]) -> list[tuple[int, int]]:
    points = sorted({c % (size + 1) for c in cuts})
    return list(zip([0, *points], [*points, size], strict=True))


@SETTINGS
@given(secret=secrets_st.filter(lambda s: len(s) > 20), names=st.lists(names_st, max_size=2))
def test_messages_about_a_step_mask_before_they_shorten(secret: str, names: list[str]) -> None:
    """fromJSON() of a secret-bearing value, a bad $RUNNER_OUTPUT line, a bad $RUNNER_ENV
    name, an unclosed heredoc: each message quotes nothing of the secret, not even the
    first characters of a long one."""
    redactor = Redactor([secret])
    value = "".join(RENDERINGS[name][0](secret) for name in names) + secret
    messages: list[str] = []
    try:
        evaluate("fromJSON(steps.s.outputs.v)", {"steps": {"s": {"outputs": {"v": value}}}})
    except ExpressionError as exc:
        messages.append(redactor.message(exc.message))
    for text, env in (
        (f"{value}\n", False),  # neither name=value nor a heredoc
        (f"{value}=1\n", True),  # not a variable name
        (f"x<<{value}\nvalue\n", False),  # a heredoc that never ends
        (f"{value}<<EOF\nvalue\n", True),
    ):
        try:
            parse_file_command(text, what="$RUNNER_ENV", redact=redactor, env=env)
        except FileCommandError as exc:
            messages.append(exc.message)
    assert messages
    for message in messages:
        assert leaked(message, secret) == [], message
        for i in range(len(secret) - 7):
            assert secret[i : i + 8] not in message, message


@SETTINGS
@given(secret=secrets_st, name=names_st)
def test_the_event_log_ledger_run_record_and_junit_hold_nothing_of_it(
    secret: str, name: str
) -> None:
    rendered = RENDERINGS[name][0](secret)
    redactor = Redactor([secret])
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        with EventLog(root / "events.jsonl", redactor) as log:
            log.write(OutputLine(job="j", step=0, line=rendered))
            log.write(Annotation(job="j", step=0, level="error", message=rendered))
            log.write(
                StepFinished(
                    job="j",
                    step=0,
                    name="s",
                    status=Status.FAILURE,
                    reason=f"failed: {rendered}",
                    exit_code=1,
                    duration_ms=1,
                    attempts=1,
                )
            )
        with Ledger.open(root / "state", signer=Signer.generate(), redactor=redactor) as ledger:
            ledger.append(
                "job.finished",
                "r1",
                JobFinished(
                    job="j", status=Status.FAILURE, reason=rendered, duration_ms=1
                ).fields(),
            )
        run = RunResult(run_id="r1", mission="m", mission_path="m.yml", event="manual")
        step = StepResult(index=0, name="s", status=Status.FAILURE, reason=rendered)
        step.tail = [rendered, "last"]
        job = JobResult(key="j", job_id="j", status=Status.FAILURE, reason=rendered)
        job.steps.append(step)
        job.outputs = {"out": rendered}
        run.jobs["j"] = job
        run.reason = rendered
        shown = run.redacted(redactor)
        (root / "run.json").write_text(json.dumps(shown.serialize(), ensure_ascii=False))
        write_junit(shown, root / "junit.xml")
        for path in (root / "events.jsonl", root / "run.json", root / "junit.xml"):
            text = path.read_bytes().decode("utf-8", "replace")
            assert leaked(text, secret) == [], (path.name, text)
            if path.suffix != ".xml":
                for line in filter(None, text.split("\n")):
                    for value in strings(json.loads(line)):
                        assert leaked(value, secret) == [], (path.name, value)
        for line in (root / "state" / "ledger" / ENTRIES).read_text().split("\n")[:-1]:
            fields = {k: v for k, v in json.loads(line).items() if k not in ENVELOPE}
            for value in strings(fields):
                assert leaked(value, secret) == [], value
            assert leaked(json.dumps(fields, ensure_ascii=False), secret) == []
        entries = (root / "state" / "ledger" / ENTRIES).read_bytes().splitlines()
        assert canonical.loads(entries[-1])["status"] == "failure"


def strings(document: Any) -> Iterator[str]:
    """Every string of a JSON document, keys too."""
    if isinstance(document, str):
        yield document
    elif isinstance(document, dict):
        for key, value in document.items():
            yield key
            yield from strings(value)
    elif isinstance(document, list):
        for item in document:
            yield from strings(item)
