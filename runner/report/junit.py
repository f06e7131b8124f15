"""A JUnit XML report of a run (`runner run --junit PATH`), for CI systems that show them.

One `<testsuite>` per job instance, one `<testcase>` per step: `<failure>` carrying the
reason and the step's annotations and last output lines, `<skipped>` for a skipped (or
cancelled, or never started) step; a step's annotations are lines of its failure (the
first error's also in its message) or of its `<system-out>`, compiler style when they have
a file (`src/a.py:3:5: error: Title: message`), and the first error's file and line are
the testcase's `file` and `line` attributes (both in junit-10.xsd); `<testsuites>` carries only the totals strict junit-10.xsd allows there
(tests, failures, errors: no `skipped`). A job that failed without a failing step (denied, a missing artifact, ...)
gets a testcase of its own so that the failure is not lost. ElementTree escapes markup;
characters XML 1.0 cannot hold at all (most control characters) are removed first, with
the escape sequences the redactor saw through (`runner.secrets.normalise`), once the text
is masked: the report is written from `RunResult.redacted`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from runner.durable import atomic_output
from runner.errors import InvalidInput
from runner.records.events import Annotation
from runner.records.results import JobResult, RunResult, Status, StepResult
from runner.report.annotations import compiler_line, headline, level_of
from runner.secrets.normalise import ESCAPE_SEQUENCE

# everything outside XML 1.0's Char production
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# The totals `<testsuites>` carries: strict junit-10.xsd allows name, time, tests,
# failures, disabled and errors there, not `skipped` (each `<testsuite>` has its own).
TESTSUITES_TOTALS = ("tests", "failures", "errors")


def xml_text(text: str) -> str:
    """`text` without terminal escape sequences and the characters XML 1.0 forbids."""
    return _NOT_XML.sub("", ESCAPE_SEQUENCE.sub("", text))


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def _testcase(parent: ET.Element, classname: str, name: str, seconds: float) -> ET.Element:
    return ET.SubElement(
        parent,
        "testcase",
        {"classname": xml_text(classname), "name": xml_text(name), "time": _seconds(seconds)},
    )


def _note(event: Annotation) -> str:
    return compiler_line(event) or f"{level_of(event)}: {headline(event)}"


def _step_case(
    suite: ET.Element, classname: str, step: StepResult, notes: Sequence[Annotation]
) -> str:
    """Adds the step's testcase; returns its outcome: passed, failure or skipped."""
    case = _testcase(suite, classname, step.name, step.duration_s)
    shown = [_note(event) for event in notes]
    first = next((e for e in notes if level_of(e) == "error"), notes[0] if notes else None)
    if first is not None and first.file:  # the schema's own location attributes
        case.set("file", xml_text(first.file))
        if first.line is not None and first.line > 0:
            case.set("line", str(first.line))
    if step.status is Status.FAILURE:
        message = step.reason or "failed"
        if first is not None:
            message += f" ({_note(first)})"
        failure = ET.SubElement(case, "failure", {"message": xml_text(message), "type": "failure"})
        failure.text = xml_text("\n".join([*shown, *step.tail]))
        return "failure"
    if step.status is Status.SUCCESS:
        if step.tail or shown:
            ET.SubElement(case, "system-out").text = xml_text("\n".join([*shown, *step.tail]))
        return "passed"
    why = step.reason or step.status.serialize()
    if step.status is Status.CANCELLED:
        why = f"cancelled: {step.reason}" if step.reason else "cancelled"
    elif step.status is not Status.SKIPPED:
        why = "not run"
    ET.SubElement(case, "skipped", {"message": xml_text(why)})
    return "skipped"


def _suite(run: RunResult, job: JobResult, notes: Sequence[Annotation]) -> ET.Element:
    suite = ET.Element("testsuite", {"name": xml_text(job.key)})
    properties = ET.SubElement(suite, "properties")  # first, as the schema wants
    for name, value in (
        ("status", job.status.serialize()),
        ("reason", job.reason),
        ("image", job.image),
        ("run_id", run.run_id),
    ):
        ET.SubElement(properties, "property", {"name": name, "value": xml_text(value)})
    classname = f"{run.mission}.{job.key}"
    outcomes = [
        _step_case(suite, classname, step, [n for n in notes if n.step == step.index])
        for step in job.steps
    ]
    if job.status is Status.FAILURE and "failure" not in outcomes:
        case = _testcase(suite, classname, f"job {job.key}", job.duration_s)
        failure = ET.SubElement(
            case, "failure", {"message": xml_text(job.reason or "failed"), "type": "failure"}
        )
        failure.text = xml_text(job.reason)
        outcomes.append("failure")
    elif not job.steps and job.status is not Status.SUCCESS:
        case = _testcase(suite, classname, f"job {job.key}", job.duration_s)
        reason = job.reason or job.status.serialize()
        ET.SubElement(case, "skipped", {"message": xml_text(reason)})
        outcomes.append("skipped")
    suite.set("tests", str(len(outcomes)))
    suite.set("failures", str(outcomes.count("failure")))
    suite.set("errors", "0")
    suite.set("skipped", str(outcomes.count("skipped")))
    suite.set("time", _seconds(job.duration_s))
    if run.started:
        suite.set("timestamp", run.started)
    return suite


def build_junit(run: RunResult, notes: Sequence[Annotation] = ()) -> ET.ElementTree[ET.Element]:
    root = ET.Element("testsuites", {"name": xml_text(run.mission)})
    for job in run.jobs.values():
        root.append(_suite(run, job, [n for n in notes if n.job == job.key]))
    for attribute in TESTSUITES_TOTALS:
        root.set(attribute, str(sum(int(suite.get(attribute, "0")) for suite in root)))
    root.set("time", _seconds(run.duration_s))
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(run: RunResult, path: Path, notes: Sequence[Annotation] = ()) -> None:
    """Writes the report of `run` and its annotations `notes` (redacted by the caller:
    `RunResult.redacted`, `StepAnnotations.redacted`) to `path` (atomically; missing
    parent folders are created)."""
    tree = build_junit(run, notes)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as handle:
            tree.write(handle, encoding="utf-8", xml_declaration=True)
    except OSError as exc:
        raise InvalidInput(
            f"cannot write the JUnit report {path}: {exc.strerror or exc}",
            hint="give --junit a path in a writable folder",
        ) from exc
