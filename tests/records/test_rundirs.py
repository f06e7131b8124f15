"""`.runner/runs/<id>/`: the layout, run.json, finding and listing runs, and the lock that
is taken before a run's directory bears its name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runner.errors import InvalidInput
from runner.records.eventlog import EventLog
from runner.records.results import RunResult, Status
from runner.records.rundirs import (
    RunDir,
    find_run,
    hold_run_lock,
    list_runs,
    run_dirs,
    summarize,
)
from runner.secrets.redact import Redactor


def test_the_layout_of_a_run_directory(tmp_path: Path) -> None:
    run = RunDir.of(tmp_path, "20261122-001206-571b42")
    assert run.path == tmp_path / "runs" / "20261122-001206-571b42"
    assert (run.run_json, run.events, run.artifacts, run.lock) == (
        run.path / "run.json",
        run.path / "events.jsonl",
        run.path / "artifacts",
        run.path / "lock",
    )
    for bad in ("../etc", ".hidden", "a/b", ""):
        with pytest.raises(InvalidInput, match="not a run id"):
            RunDir.of(tmp_path, bad)


def test_run_json_is_written_redacted_and_read_back(tmp_path: Path) -> None:
    with hold_run_lock(tmp_path, "r1") as run:
        result = RunResult(run_id="r1", mission="ci", mission_path="m.yml", event="push")
        result.reason = "failed with hunter22"
        run.write_record(result, Redactor(["hunter22"]))
    record = run.read_record()
    assert record is not None
    assert record["reason"] == "failed with ***" and record["result"] == "running"
    assert json.loads(run.run_json.read_text()) == record
    run.run_json.write_text("[1, 2]")
    assert run.read_record() is None


def test_the_directory_appears_under_its_name_already_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, bool]] = []
    rename = Path.rename

    def spy(self: Path, target: str | os.PathLike[str]) -> Path:
        seen.append((self.name, RunDir(self).is_live()))
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", spy)
    with hold_run_lock(tmp_path, "r1") as run:
        assert run.is_live()
        assert [p.name for p in (tmp_path / "runs").iterdir()] == ["r1"]
    ((hidden, locked),) = seen
    assert hidden.startswith(".r1.") and locked
    assert not run.is_live()
    assert run.lock.read_text() == f"{os.getpid()}\n"


def test_find_takes_an_id_or_a_unique_prefix(tmp_path: Path) -> None:
    for run_id in ("abc-1", "abd-2", "x"):
        (tmp_path / "runs" / run_id).mkdir(parents=True)
    (tmp_path / "runs" / ".x.tmp").mkdir()  # a run being made: not a run yet
    assert find_run(tmp_path, "abc").run_id == "abc-1"
    assert find_run(tmp_path, "x").run_id == "x"
    with pytest.raises(InvalidInput, match="ambiguous: it starts abc-1, abd-2"):
        find_run(tmp_path, "ab")
    for missing in (".x", "", "../runs"):
        with pytest.raises(InvalidInput, match="no run"):
            find_run(tmp_path, missing)
    assert sorted(r.run_id for r in run_dirs(tmp_path)) == ["abc-1", "abd-2", "x"]


def _record(run: RunDir, started: str, result: str) -> None:
    run.path.mkdir(parents=True)
    run.run_json.write_text(json.dumps({"started": started, "result": result}))


def test_list_runs_newest_first_by_start_then_by_last_change(tmp_path: Path) -> None:
    _record(RunDir.of(tmp_path, "old"), "2026-11-20T10:00:00Z", "success")
    _record(RunDir.of(tmp_path, "new"), "2026-11-21T10:00:00Z", "failure")
    quiet = RunDir.of(tmp_path, "quiet")  # says nothing of when it started
    quiet.path.mkdir()
    os.utime(quiet.path, (1.0, 1.0))
    assert [s.run.run_id for s in list_runs(tmp_path)] == ["new", "old", "quiet"]
    os.utime(quiet.path, None)  # it changed just now
    assert [s.run.run_id for s in list_runs(tmp_path)] == ["quiet", "new", "old"]


def test_a_run_without_run_json_says_what_its_event_log_says(tmp_path: Path) -> None:
    run = RunDir.of(tmp_path, "r")
    with EventLog(run.events, Redactor()) as log:
        log.emit("run.started", run_id="r", mission="ci", event="push", jobs=[])
        log.emit("run.finished", run_id="r", result="success", reason="", duration_ms=1500)
    summary = summarize(run)
    assert summary.result == "success" and not summary.live
    assert summary.document["mission"] == "ci" and summary.document["event"] == "push"
    assert summary.duration_s == 1.5
    run.events.write_bytes(b"not json\n")
    assert summarize(run).result == "unreadable"


def test_an_unfinished_run_is_running_while_live_and_crashed_once_not(tmp_path: Path) -> None:
    with hold_run_lock(tmp_path, "r") as run:
        run.write_record(RunResult(run_id="r", mission="m", mission_path="m", event="e"))
        live = summarize(run)
        assert (live.live, live.result) == (True, "running")
        assert live.serialize()["result"] == "running"
    dead = summarize(run)
    assert (dead.live, dead.result) == (False, "crashed")
    assert dead.serialize()["result"] == "crashed"
    finished = RunResult(run_id="r", mission="m", mission_path="m", event="e")
    finished.status = Status.SUCCESS
    run.write_record(finished)
    assert summarize(run).result == "success"
