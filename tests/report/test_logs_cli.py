"""`runner logs` and `runner runs`, through the CLI on real event logs."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import invoke

from runner.records.eventlog import EventLog
from runner.records.rundirs import hold_run_lock
from runner.secrets.redact import Redactor

RUNNER = Path(sys.executable).parent / "runner"


def write_run(state: Path, run_id: str, *, secret: str = "s3cr3t-token-value") -> Path:
    log = EventLog(state / "runs" / run_id / "events.jsonl", Redactor([secret]))
    log.emit("run.started", run_id=run_id, mission="ci", event="push")
    log.emit("job.started", job="lint")
    log.emit("step.started", job="lint", step=0, name="style", attempt=1)
    log.emit("output", job="lint", step=0, line="checking 3 files")
    log.emit("output", job="lint", step=0, line=f"using {secret}")
    log.emit("step.finished", job="lint", step=0, name="style", status="success", duration_ms=1250)
    log.emit("job.finished", job="lint", status="success", reason="", duration_ms=1300)
    log.emit("job.started", job="test (shard=1)")
    log.emit("step.started", job="test (shard=1)", step=0, name="t", attempt=2)
    log.emit("output", job="test (shard=1)", step=0, line="1 failed")
    log.emit(
        "step.finished",
        job="test (shard=1)",
        step=0,
        name="t",
        status="failure",
        reason="exit code 1",
        duration_ms=300,
    )
    log.emit("annotation", job="test (shard=1)", step=0, level="error", message="boom")
    log.emit("artifact.stored", job="test (shard=1)", name="junit", size=12)
    log.emit("run.finished", result="failure", duration_ms=2000)
    log.close()
    return state / "runs" / run_id


def test_logs_replays_a_run_for_humans(tmp_path: Path) -> None:
    state = tmp_path / "state"
    write_run(state, "20261121-abc")
    result = invoke(state, "logs", "20261121-abc")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "run 20261121-abc started: ci on push",
        "[lint] started",
        "[lint/style] started",
        "[lint/style] checking 3 files",
        "[lint/style] using ***",
        "[lint/style] success in 1.2s",
        "[lint] success in 1.3s",
        "[test (shard=1)] started",
        "[test (shard=1)/t] started (attempt 2)",
        "[test (shard=1)/t] 1 failed",
        "[test (shard=1)/t] failure (exit code 1) in 0.3s",
        "[test (shard=1)/t] error: boom",
        "[test (shard=1)] artifact.stored name=junit size=12",
        "run finished: failure in 2.0s",
    ]


def test_logs_json_prints_the_stored_lines(tmp_path: Path) -> None:
    state = tmp_path / "state"
    run = write_run(state, "r-json")
    result = invoke(state, "logs", "r-json", "--json")
    assert result.code == 0
    assert result.out == (run / "events.jsonl").read_text(encoding="utf-8")


def test_logs_job_filter_takes_matrix_instances(tmp_path: Path) -> None:
    state = tmp_path / "state"
    write_run(state, "r-job")
    result = invoke(state, "--json", "logs", "r-job", "--job", "test")
    jobs = {json.loads(line)["job"] for line in result.out.splitlines()}
    assert jobs == {"test (shard=1)"}
    assert len(result.out.splitlines()) == 6


def test_logs_unknown_run_is_a_usage_error_pointing_to_runs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    write_run(state, "r-one")
    result = invoke(state, "logs", "nope")
    assert result.code == 2
    assert "no run 'nope'" in result.err and "runner runs" in result.err


def test_logs_takes_a_unique_prefix_and_refuses_an_ambiguous_one(tmp_path: Path) -> None:
    state = tmp_path / "state"
    write_run(state, "abc-1")
    write_run(state, "abd-2")
    assert invoke(state, "logs", "abc").out.startswith("run abc-1 started")
    ambiguous = invoke(state, "logs", "ab")
    assert ambiguous.code == 2 and "abc-1, abd-2" in ambiguous.err


def test_logs_follow_of_a_growing_log_stops_at_run_finished(tmp_path: Path) -> None:
    state = tmp_path / "state"
    lock = contextlib.ExitStack()
    run_dir = lock.enter_context(hold_run_lock(state, "live")).path  # as a runner does
    reader = subprocess.Popen(
        [str(RUNNER), "--state-dir", str(state), "logs", "live", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen_midway: list[str] = []

    def writer() -> None:
        time.sleep(0.3)  # the reader is started before the log exists
        log = EventLog(run_dir / "events.jsonl", Redactor(["live-secret-value"]))
        log.emit("run.started", run_id="live", mission="m")
        log.emit("step.started", job="j", step=0, name="s", attempt=1)
        for i in range(5):
            log.emit("output", job="j", step=0, line=f"tick {i} live-secret-value")
            time.sleep(0.1)
        seen_midway.append("written")
        log.emit("run.finished", result="success")
        time.sleep(0.5)
        log.emit("output", job="j", step=0, line="after the end")  # never shown
        log.close()

    thread = threading.Thread(target=writer)
    thread.start()
    out, err = reader.communicate(timeout=60)
    thread.join()
    lock.close()
    assert reader.returncode == 0, err
    assert out.splitlines() == [
        "run live started: m",
        "[j/s] started",
        *[f"[j/s] tick {i} ***" for i in range(5)],
        "run finished: success",
    ]


def test_runs_lists_newest_first(tmp_path: Path) -> None:
    state = tmp_path / "state"
    for run_id, started, finished, result in [
        ("old", "2026-11-20T10:00:00Z", "2026-11-20T10:01:30Z", "success"),
        ("new", "2026-11-21T09:00:00Z", "2026-11-21T09:00:02.5Z", "failure"),
    ]:
        (state / "runs" / run_id).mkdir(parents=True)
        record = {
            "run_id": run_id,
            "mission": "ci",
            "event": "push",
            "result": result,
            "started": started,
            "finished": finished,
            "jobs": {},
        }
        (state / "runs" / run_id / "run.json").write_text(json.dumps(record), encoding="utf-8")
    write_run(state, "crashed")  # no run.json: what its event log says
    (state / "runs" / "crashed" / "events.jsonl").write_text(
        '{"seq":1,"ts":"2026-11-22T00:00:00.000Z","kind":"run.started","mission":"nightly"}\n',
        encoding="utf-8",
    )
    lock = contextlib.ExitStack()
    lock.enter_context(hold_run_lock(state, "crashed"))  # still live: "running" (not crashed)
    result = invoke(state, "runs")
    assert result.code == 0
    assert result.out.splitlines() == [
        "RUN      MISSION  RESULT   STARTED              DURATION",
        "crashed  nightly  running  2026-11-22 00:00:00  -",
        "new      ci       failure  2026-11-21 09:00:00  2.5s",
        "old      ci       success  2026-11-20 10:00:00  1m30s",
    ]
    listed = json.loads(invoke(state, "runs", "--json").out)
    lock.close()
    assert [r["run_id"] for r in listed] == ["crashed", "new", "old"]
    assert listed[2]["duration_s"] == 90.0


def test_runs_without_any_run_says_so(tmp_path: Path) -> None:
    result = invoke(tmp_path / "state", "runs")
    assert result.code == 0 and "no runs in" in result.out
    assert json.loads(invoke(tmp_path / "state", "runs", "--json").out) == []


def test_logs_follow_of_a_crashed_run_ends_when_its_process_is_gone(tmp_path: Path) -> None:
    state = tmp_path / "state"
    run_dir = state / "runs" / "crashed"
    log = EventLog(run_dir / "events.jsonl", Redactor())
    log.emit("run.started", run_id="crashed", mission="m")
    log.emit("step.started", job="j", step=0, name="s", attempt=1)
    log.emit("output", job="j", step=0, line="last words")
    log.close()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (run_dir / "lock").write_text(dead.stdout, encoding="ascii")  # its runner died
    done = subprocess.run(
        [str(RUNNER), "--state-dir", str(state), "logs", "crashed", "--follow"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "run crashed started: m",
        "[j/s] started",
        "[j/s] last words",
    ]
    assert json.loads(invoke(state, "runs", "--json").out)[0]["result"] == "crashed"


def test_logs_shows_groups_and_cleans_what_steps_printed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    log = EventLog(state / "runs" / "grp" / "events.jsonl", Redactor())
    log.emit("step.started", job="b", step=0, name="build", attempt=1)
    log.emit("output", job="b", step=0, line="before")
    log.emit("group.started", job="b", step=0, title="Install \x1b[2Jdeps")
    log.emit("output", job="b", step=0, line="pip \x1b]0;title\x07install")
    log.emit("group.finished", job="b", step=0)
    log.emit("output", job="b", step=0, line="after")
    log.emit("step.retry", job="b", step=0, attempt=2, delay_s=0.5, reason="exit code 1")
    log.emit("artifact.stored", job="b", name="r", path="out/r", sha256="ab", size=3)
    log.close()
    result = invoke(state, "logs", "grp")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "[b/build] started",
        "[b/build] before",
        "[b/build] ▾ Install deps",
        "[b/build]   pip install",
        "[b/build] after",
        "[b/build] retry (exit code 1): attempt 2 in 0.5s",
        "[b] artifact.stored name=r path=out/r sha256=ab size=3",
    ]


def test_logs_replays_image_builds(tmp_path: Path) -> None:
    state = tmp_path / "state"
    log = EventLog(state / "runs" / "r1" / "events.jsonl", Redactor([]))
    log.emit("run.started", run_id="r1", mission="ci", event="push")
    log.emit("image.build", name="app", tag="runner/app:ab", phase="started", line="")
    log.emit("image.build", name="app", tag="runner/app:ab", phase="step", line="Step 1/1 : FROM x")
    log.emit("image.build", name="app", tag="runner/app:ab", phase="finished", line="")
    log.close()
    result = invoke(state, "logs", "r1")
    assert result.code == 0, result.err
    assert result.out.splitlines()[1:] == [
        "image app: building runner/app:ab",
        "image app: Step 1/1 : FROM x",
        "image app: built",
    ]
