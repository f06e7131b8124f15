from __future__ import annotations

import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from runner.errors import InvalidInput
from runner.records.events import Annotation
from runner.records.results import JobResult, RunResult, Status, StepResult
from runner.report.junit import write_junit, xml_text

HOSTILE = "end ]]> <tag attr=\"x\"> & 'q' \x1b[31mred\x1b[0m bell\x07 nul\x00 ff\x0c \ufffe ok ✓"


def _run() -> RunResult:
    run = RunResult(run_id="r1", mission="ci", mission_path="ci.yml", event="push")
    run.status, run.duration_s, run.started = Status.FAILURE, 4.5, "2026-01-02T03:04:05Z"
    lint = JobResult(key="lint", job_id="lint", status=Status.SUCCESS, duration_s=1.25)
    lint.steps = [
        StepResult(index=0, name="style", status=Status.SUCCESS, duration_s=1.0, tail=["fine"]),
        StepResult(index=1, name="docs", status=Status.SKIPPED, reason="condition false"),
    ]
    test = JobResult(
        key="test (1, linux)",
        job_id="test",
        status=Status.FAILURE,
        reason="step failed",
        duration_s=2,
        image="runner-base/busybox:latest",
    )
    test.steps = [
        StepResult(
            index=0,
            name="unit <tests>",
            status=Status.FAILURE,
            reason="exit code 2",
            duration_s=0.3,
            tail=["line 1", HOSTILE],
        ),
        StepResult(index=1, name="after", status=Status.CANCELLED, reason="interrupted"),
        StepResult(index=2, name="never", status=Status.PENDING),
    ]
    denied = JobResult(key="deploy", job_id="deploy", status=Status.FAILURE, reason="denied")
    artifact = JobResult(
        key="pack", job_id="pack", status=Status.FAILURE, reason="artifact 'dist' missing"
    )
    artifact.steps = [StepResult(index=0, name="build", status=Status.SUCCESS)]
    skipped = JobResult(key="pub", job_id="pub", status=Status.SKIPPED, reason="dependency failed")
    run.jobs = {j.key: j for j in (lint, test, denied, artifact, skipped)}
    return run


def _write(tmp_path: Path) -> ET.Element:
    path = tmp_path / "reports" / "junit.xml"
    write_junit(_run(), path)
    assert path.read_bytes().startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    return ET.parse(path).getroot()


def test_one_suite_per_job_instance_one_case_per_step(tmp_path: Path) -> None:
    root = _write(tmp_path)
    assert root.tag == "testsuites"
    assert root.attrib == {
        "name": "ci",
        "tests": "9",
        "failures": "3",
        "errors": "0",
        "time": "4.500",
    }
    suites = root.findall("testsuite")
    assert sum(int(s.get("skipped", "0")) for s in suites) == 4  # counted per suite
    assert [s.get("name") for s in suites] == ["lint", "test (1, linux)", "deploy", "pack", "pub"]
    lint = suites[0]
    assert (lint.get("tests"), lint.get("failures"), lint.get("skipped")) == ("2", "0", "1")
    assert lint.get("time") == "1.250" and lint.get("timestamp") == "2026-01-02T03:04:05Z"
    assert lint[0].tag == "properties"
    props = {p.get("name"): p.get("value") for p in lint.iter("property")}
    assert props == {"status": "success", "reason": "", "image": "", "run_id": "r1"}
    style, docs = lint.findall("testcase")
    assert style.attrib == {"classname": "ci.lint", "name": "style", "time": "1.000"}
    assert list(style) == [style.find("system-out")]
    assert style.findtext("system-out") == "fine"
    skipped = docs.find("skipped")
    assert skipped is not None and skipped.get("message") == "condition false"


def test_failed_step_carries_reason_and_tail_and_other_steps_are_skipped(tmp_path: Path) -> None:
    test = _write(tmp_path).findall("testsuite")[1]
    assert (test.get("tests"), test.get("failures"), test.get("skipped")) == ("3", "1", "2")
    unit, after, never = test.findall("testcase")
    assert unit.get("name") == "unit <tests>"
    assert unit.get("classname") == "ci.test (1, linux)"
    failure = unit.find("failure")
    assert failure is not None
    assert failure.get("message") == "exit code 2"
    assert failure.text == "line 1\n" + xml_text(HOSTILE)
    after_skip, never_skip = after.find("skipped"), never.find("skipped")
    assert after_skip is not None and after_skip.get("message") == "cancelled: interrupted"
    assert never_skip is not None and never_skip.get("message") == "not run"


def test_hostile_output_is_escaped_and_forbidden_characters_removed(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit(_run(), path)
    raw = path.read_text(encoding="utf-8")
    assert "]]>" not in raw  # as text, ElementTree escapes '>' (no CDATA to break out of)
    assert '&lt;tag attr="x"&gt; &amp;' in raw
    for bad in ("\x1b", "\x07", "\x00", "\x0c", "\ufffe"):
        assert bad not in raw
    text = ET.parse(path).getroot().findtext(".//failure")
    assert text == "line 1\nend ]]> <tag attr=\"x\"> & 'q' red bell nul ff  ok ✓"


def test_a_job_failing_without_a_failing_step_still_fails_in_the_report(tmp_path: Path) -> None:
    suites = {s.get("name"): s for s in _write(tmp_path).findall("testsuite")}
    for key, reason in (("deploy", "denied"), ("pack", "artifact 'dist' missing")):
        suite = suites[key]
        assert suite.get("failures") == "1"
        case = suite.findall("testcase")[-1]
        assert case.get("name") == f"job {key}"
        failure = case.find("failure")
        assert failure is not None and failure.get("message") == reason
    pub = suites["pub"]
    (case,) = pub.findall("testcase")
    skipped = case.find("skipped")
    assert skipped is not None and skipped.get("message") == "dependency failed"
    assert (pub.get("tests"), pub.get("skipped"), pub.get("failures")) == ("1", "1", "0")


def test_report_is_replaced_whole_and_readable(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / "junit.xml"
    path.write_text("old")
    write_junit(_run(), path)
    assert ET.parse(path).getroot().tag == "testsuites"
    assert stat.S_IMODE(path.stat().st_mode) & 0o444 == 0o444
    assert [p.name for p in path.parent.iterdir()] == ["junit.xml"]  # no temporary left


def test_unwritable_path_is_a_clear_user_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InvalidInput, match=r"cannot write the JUnit report .*file/junit\.xml"):
        write_junit(_run(), blocker / "junit.xml")


# junit-10.xsd (the strict schema CI systems validate against): what each element may carry
XSD_ATTRIBUTES = {
    "testsuites": {"name", "time", "tests", "failures", "disabled", "errors"},
    "testsuite": {
        "name",
        "tests",
        "failures",
        "errors",
        "time",
        "disabled",
        "skipped",
        "timestamp",
        "hostname",
        "id",
        "package",
        "file",
        "log",
        "url",
        "version",
        "group",
    },
    "testcase": {"name", "assertions", "time", "classname", "status", "group", "file", "line"},
    "property": {"name", "value"},
    "failure": {"message", "type"},
    "skipped": {"message"},
}


def test_every_attribute_is_one_strict_junit_10_xsd_allows(tmp_path: Path) -> None:
    root = _write(tmp_path)
    for element in root.iter():
        allowed = XSD_ATTRIBUTES.get(element.tag, set())
        assert set(element.attrib) <= allowed, (element.tag, set(element.attrib) - allowed)


NOTES = [
    Annotation(job="test (1, linux)", step=0, level="warning", message="slow", title="Perf"),
    Annotation(
        job="test (1, linux)",
        step=0,
        level="error",
        message="bad <x> \x1b[31m&",
        file="src/a.py",
        line=3,
        col=5,
        title="Bad",
    ),
    Annotation(job="lint", step=0, level="notice", message="n", file="docs/x.md", line=7),
    Annotation(job="nobody", step=0, level="error", message="of no job", file="z.py", line=1),
]


def test_annotations_name_their_location_in_the_steps_testcase(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit(_run(), path, NOTES)
    root = ET.parse(path).getroot()
    lint, test = root.findall("testsuite")[:2]
    unit = test.findall("testcase")[0]
    failure = unit.find("failure")
    assert failure is not None
    assert failure.get("message") == "exit code 2 (src/a.py:3:5: error: Bad: bad <x> &)"
    assert failure.text == "\n".join(
        [
            "warning: Perf: slow",
            "src/a.py:3:5: error: Bad: bad <x> &",
            "line 1",
            xml_text(HOSTILE),
        ]
    )
    assert (unit.get("file"), unit.get("line")) == ("src/a.py", "3")  # the first error's
    style = lint.findall("testcase")[0]
    assert style.findtext("system-out") == "docs/x.md:7: notice: n\nfine"
    assert (style.get("file"), style.get("line")) == ("docs/x.md", "7")
    assert "of no job" not in path.read_text()
    for element in root.iter():  # still only what strict junit-10.xsd allows
        allowed = XSD_ATTRIBUTES.get(element.tag, set())
        assert set(element.attrib) <= allowed, (element.tag, set(element.attrib) - allowed)
    for case in root.iter("testcase"):
        assert case.get("line") is None or case.get("line", "").isdigit()
