"""Disk full and other I/O faults are clear errors (issue 11, item 13): one message with
the path and "free disk space", exit 4 (or 1 when a job's own files could not be
written), the run marked crashed in the ledger when the ledger can still be written, and
`audit verify` passing afterwards. Full disks are real: a tiny tmpfs mounted for the test
(the tests run as root) and unmounted after; fault injection only where a real device is
impractical (an fsync that fails with EIO)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import runner_cli
from declared import step_finished

from runner.audit import canonical
from runner.audit.keys import Signer, TrustedKeys, load_signer
from runner.audit.ledger import ENTRIES, Ledger, LedgerUnavailable
from runner.audit.verify import verify_ledger
from runner.engine.backend import Backend
from runner.engine.rootfs import export_rootfs
from runner.errors import StorageFailed
from runner.records.eventlog import EventLog
from runner.records.results import RunResult
from runner.records.rundirs import RunDir
from runner.secrets.redact import Redactor

Mount = Callable[[Path, str], Path]
BUSYBOX = "runner-base/busybox:latest"


@pytest.fixture
def small_disk() -> Iterator[Mount]:
    """mount(path, size): a tmpfs of `size` (e.g. "64k") at `path`, unmounted after."""
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            check=True,
        )
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill the disk but `leave` bytes (rounded to pages by tmpfs); returns the filler."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with filler.open("wb") as handle:
        try:
            handle.write(b"\0" * max(0, free - leave))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


# -- the files, one by one -----------------------------------------------------------------


def test_event_log_on_a_full_disk_keeps_whole_lines_and_says_what_to_do(
    tmp_path: Path, small_disk: Mount
) -> None:
    disk = small_disk(tmp_path / "disk", "64k")
    log = EventLog(disk / "events.jsonl", Redactor())
    with pytest.raises(StorageFailed) as info:
        for i in range(100_000):
            log.emit("output", job="j", step=0, line=f"line {i} " + "x" * 200)
    message = str(info.value)
    assert str(disk / "events.jsonl") in message and "No space left on device" in message
    assert "free disk space" in message and info.value.exit_code == 4
    with pytest.raises(StorageFailed):  # nothing more is written once it failed
        log.emit("output", job="j", step=0, line="more")
    data = (disk / "events.jsonl").read_bytes()
    assert data.endswith(b"\n")
    assert [json.loads(line)["seq"] for line in data.splitlines()] == list(
        range(1, data.count(b"\n") + 1)
    )


def test_event_log_fsync_error_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = EventLog(tmp_path / "events.jsonl", Redactor())

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", eio)  # no real device fails on demand
    with pytest.raises(StorageFailed, match="Input/output error; free disk space and check"):
        log.emit("step.started", job="j", step=0)


def test_run_record_on_a_full_disk(tmp_path: Path, small_disk: Mount) -> None:
    disk = small_disk(tmp_path / "runs", "64k")
    run = RunDir(disk / "r1")
    run.path.mkdir()
    fill(disk)
    result = RunResult(run_id="r1", mission="m", mission_path="m.yml", event="manual")
    with pytest.raises(StorageFailed) as info:
        run.write_record(result)
    assert str(run.run_json) in str(info.value) and "free disk space" in str(info.value)
    assert not run.run_json.exists() and not list(run.path.iterdir())  # no temp file left


def test_ledger_on_a_full_disk_then_freed_loses_nothing(tmp_path: Path, small_disk: Mount) -> None:
    state = small_disk(tmp_path / "state", "256k")
    signer = Signer.generate()
    led = Ledger.open(state, signer=signer)
    led.append("step.finished", "r", step_finished(0))
    filler = fill(state)
    with pytest.raises(LedgerUnavailable) as info:
        for i in range(1, 1000):
            led.append("step.finished", "r", step_finished(i))
    assert info.value.exit_code == 4
    assert str(state / "ledger" / ENTRIES) in str(info.value) and "free disk space" in str(
        info.value
    )
    filler.unlink()
    led.append("step.finished", "r", step_finished(9999))
    led.close()
    entries = [canonical.loads(line) for line in (state / "ledger" / ENTRIES).read_bytes().split()]
    assert [e["seq"] for e in entries] == list(range(len(entries)))
    assert entries[-1]["step"] == 9999
    report = verify_ledger(state / "ledger", TrustedKeys([signer.public]))
    assert report.ok and report.sealed == len(entries)


def test_a_key_that_cannot_be_written_is_a_clear_error(tmp_path: Path, small_disk: Mount) -> None:
    state = small_disk(tmp_path / "state", "64k")
    fill(state)
    with pytest.raises(StorageFailed, match=r"could not write the signing key .*free disk space"):
        load_signer(state, tmp_path / "repo", create=True, say=print)


# -- whole runs ----------------------------------------------------------------------------

FLOOD = """\
name: m
on: [push]
jobs:
  j:
    steps:
      - run: |
          i=0
          while [ $i -lt 40000 ]; do
            echo "line $i of output that fills the disk quickly xxxxxxxxxxxxxxxxxxxxxxxx"
            i=$((i+1))
          done
"""
QUIET = """\
name: m
on: [push]
jobs:
  j: {steps: [{run: echo hi}]}
"""
POLICY = """\
version: 1
images: [base]
tools: [sh]
limits: {timeout-minutes: 10, memory: 256m, cpus: 1, pids: 64}
"""


def make_repo(root: Path, mission: str) -> Path:
    (root / ".missions").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / ".missions" / "m.yml").write_text(mission)
    (root / "policies" / "default.yml").write_text(POLICY)
    return root


def ledger_results(state: Path) -> list[dict[str, object]]:
    lines = (state / "ledger" / ENTRIES).read_bytes().splitlines()
    return [e for e in map(canonical.loads, lines) if e["type"] == "run.finished"]


def labelled(state: Path) -> list[str]:
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=runner.state-dir={state.resolve()}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def assert_one_clear_error(stderr: str, path: str) -> None:
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert "no Docker engine answers" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("runner: error:")]
    assert len(errors) == 1 and path in errors[0] and "free disk space" in errors[0], stderr


@pytest.mark.docker
def test_a_full_disk_under_the_event_log_crashes_the_run_cleanly(
    tmp_path: Path, small_disk: Mount
) -> None:
    repo = make_repo(tmp_path / "repo", FLOOD)
    state = repo / ".runner"
    small_disk(state / "runs", "256k")
    done = runner_cli(repo, state, "run")
    assert done.returncode == 4, done.stderr
    assert_one_clear_error(done.stderr, "events.jsonl")
    finished = ledger_results(state)
    assert [f["result"] for f in finished] == ["crashed"]
    assert "No space left on device" in str(finished[0]["reason"])
    assert labelled(state) == []  # the run was cancelled: its containers are gone
    events = next((state / "runs").glob("*/events.jsonl")).read_bytes()
    assert all(json.loads(line) for line in events.splitlines())  # whole lines only
    verified = runner_cli(repo, state, "audit", "verify")
    assert verified.returncode == 0, verified.stdout
    listed = runner_cli(repo, state, "runs", "--json")
    assert json.loads(listed.stdout)[0]["result"] == "crashed"


@pytest.mark.docker
def test_a_run_record_that_cannot_be_written_crashes_the_run_cleanly(
    tmp_path: Path, small_disk: Mount
) -> None:
    repo = make_repo(tmp_path / "repo", QUIET)
    state = repo / ".runner"
    fill(small_disk(state / "runs", "64k"))
    done = runner_cli(repo, state, "run")
    assert done.returncode == 4, done.stderr
    assert_one_clear_error(done.stderr, "run.json")
    assert [f["result"] for f in ledger_results(state)] == ["crashed"]
    assert runner_cli(repo, state, "audit", "verify").returncode == 0


@pytest.mark.docker
def test_a_full_state_dir_is_a_clear_error_and_the_ledger_verifies_once_freed(
    tmp_path: Path, small_disk: Mount
) -> None:
    repo = make_repo(tmp_path / "repo", QUIET)
    state = small_disk(repo / ".runner", "1m")
    assert runner_cli(repo, state, "keys", "init").returncode == 0
    filler = fill(state, leave=96 << 10)  # the ledger fits; the image export does not
    done = runner_cli(repo, state, "run")
    assert done.returncode in (1, 4), done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert "no Docker engine answers" not in done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert "could not write" in said and "free disk space" in said, said
    filler.unlink()
    verified = runner_cli(repo, state, "audit", "verify")
    assert verified.returncode == 0, verified.stdout


@pytest.mark.docker
def test_exporting_a_rootfs_to_a_full_disk_is_not_blamed_on_the_engine(
    tmp_path: Path, small_disk: Mount, backend: Backend
) -> None:
    cache = small_disk(tmp_path / "cache", "256k")  # the image's filesystem is ~2 MB
    image = backend.inspect_image(BUSYBOX)
    assert image is not None
    with pytest.raises(StorageFailed) as info:
        export_rootfs(backend, image.id, cache)
    message = str(info.value)
    assert str(cache) in message and "free disk space" in message
    assert "engine" not in message and info.value.exit_code == 4
    assert list(cache.iterdir()) == []  # the partial export was removed
