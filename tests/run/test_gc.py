"""Run liveness by flock, pruning of old runs, `runner gc` after a crash, and `runner gc`
and `runner runs` agreeing on which runs are live."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from conftest import invoke

from runner.engine.backend import LABEL_RUN, run_labels
from runner.engine.docker.backend import connect
from runner.errors import InvalidInput
from runner.records.results import RunResult, Status
from runner.records.rundirs import RunDir, RunLocked, hold_run_lock, is_live, run_dirs
from runner.run.gc import parse_age, prune_runs, sweep

REPO = Path(__file__).resolve().parents[2]


def holder(state: Path, run_id: str, extra: str = "") -> subprocess.Popen[str]:
    """A process that takes the run's lock (and does `extra`), says ready and sleeps."""
    body = textwrap.indent(textwrap.dedent(extra).strip() or "pass", "    ")
    code = (
        "import time\n"
        "from pathlib import Path\n"
        "from runner.records.rundirs import hold_run_lock\n"
        f"with hold_run_lock(Path({str(state)!r}), {run_id!r}):\n"
        f"{body}\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(120)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    assert process.stdout is not None
    process.stdout.close()


def test_a_run_is_alive_while_its_lock_is_held(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert not is_live(state, "r1")
    with hold_run_lock(state, "r1") as directory:
        assert directory.path == state / "runs" / "r1"
        assert is_live(state, "r1")
        with pytest.raises(RunLocked, match="already running"), hold_run_lock(state, "r1"):
            pass
    assert not is_live(state, "r1")
    assert not is_live(state, "../etc")  # not a run id: never alive, never a path


def test_a_sigkilled_run_is_dead(tmp_path: Path) -> None:
    state = tmp_path / "state"
    process = holder(state, "r2")
    try:
        assert is_live(state, "r2")
    finally:
        kill(process)
    assert not is_live(state, "r2")


def test_parse_age() -> None:
    assert parse_age("30s") == 30
    assert parse_age("1.5h") == 5400
    assert parse_age("7d") == 7 * 86400
    assert parse_age("2w") == 14 * 86400
    with pytest.raises(InvalidInput, match="not a duration"):
        parse_age("7 days")


def make_runs(state: Path, ages_h: dict[str, float], now: float) -> None:
    for run_id, age in ages_h.items():
        directory = state / "runs" / run_id
        directory.mkdir(parents=True)
        (directory / "events.jsonl").write_text("{}\n")
        when = now - age * 3600
        os.utime(directory / "events.jsonl", (when, when))
        os.utime(directory, (when, when))


def test_prune_by_age_and_count_never_the_ledger_nor_a_live_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    now = time.time()
    make_runs(state, {"a": 1, "b": 30, "c": 50, "d": 100, "e": 200}, now)
    (state / "ledger").mkdir()
    (state / "ledger" / "entries.jsonl").write_text("{}\n")
    assert prune_runs(state, older_than_s=None, keep=None, now=now) == []
    with hold_run_lock(state, "e") as held:
        old = now - 200 * 3600
        os.utime(held.lock, (old, old))
        os.utime(held.path, (old, old))
        assert prune_runs(state, older_than_s=48 * 3600, keep=None, now=now) == ["c", "d"]
    assert prune_runs(state, older_than_s=None, keep=1, now=now) == ["b", "e"]
    assert sorted(p.name for p in (state / "runs").iterdir()) == ["a"]
    assert (state / "ledger" / "entries.jsonl").read_text() == "{}\n"


def test_prune_keeps_the_newest_among_old_ones(tmp_path: Path) -> None:
    state = tmp_path / "state"
    now = time.time()
    make_runs(state, {"a": 30, "b": 40, "c": 50}, now)
    assert prune_runs(state, older_than_s=3600, keep=2, now=now) == ["c"]


@pytest.mark.docker
def test_gc_after_a_sigkilled_run_leaves_nothing_of_it(tmp_path: Path) -> None:
    state = (tmp_path / "state").resolve()
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "f.txt").write_text("f\n")
    dead, alive, unlabelled, foreign = ("t" + uuid.uuid4().hex[:12] for _ in range(4))
    extra = textwrap.dedent(
        f"""
        from runner.engine.backend import ContainerSpec, run_labels
        from runner.engine.docker.backend import connect
        from runner.run.workspace import Workspace
        backend = connect()
        labels = run_labels(Path({str(state)!r}), {dead!r}, "job")
        space = Workspace(backend, {dead!r}, "job", lower=None, exec_allowed=False, labels=labels)
        space.prepare()
        cid = backend.create(ContainerSpec(image="runner-base/busybox:latest", command=["sleep", "120"],
            env={{}}, labels=labels, memory_bytes=32 << 20, cpus=1, pids=16, workspace_volume=space.volume))
        backend.start(cid)
        """
    )
    backend = connect()
    client = backend.api
    try:
        process = holder(state, dead, extra)
        kill(process)
        # a dead run of this state dir whose resources lack the state-dir label
        (state / "runs" / unlabelled).mkdir(parents=True)
        client.create_volume(f"runner-{unlabelled}", labels={LABEL_RUN: unlabelled})
        # a run of another state dir (another repository, machine): never judged from here
        client.create_volume(
            f"runner-{foreign}", labels=run_labels(tmp_path / "other-state", foreign)
        )
        with hold_run_lock(state, alive):
            client.create_volume(f"runner-{alive}", labels=run_labels(state, alive))
            result = invoke(state, "gc", "--json")
            assert result.code == 0, result.err
            report = result.json()
            assert backend.list_labelled(f"{LABEL_RUN}={dead}") == ({}, {})
            assert backend.list_labelled(f"{LABEL_RUN}={unlabelled}") == ({}, {})
            _, kept = backend.list_labelled(f"{LABEL_RUN}={alive}")
            assert list(kept) == [f"runner-{alive}"]
            _, kept = backend.list_labelled(f"{LABEL_RUN}={foreign}")
            assert list(kept) == [f"runner-{foreign}"]
        assert len(report["containers"]) == 1
        assert f"runner-{unlabelled}" in report["volumes"]
        assert len([v for v in report["volumes"] if dead in v]) == 2  # workspace + its data
        assert report["alive_runs"] == [alive]
        assert report["pruned_runs"] == []
        entries = (state / "ledger" / "entries.jsonl").read_text().splitlines()
        recorded = [json.loads(line) for line in entries if '"gc.pruned"' in line]
        assert len(recorded) == 1
        assert recorded[0]["containers"] == 1 and recorded[0]["runs"] == []
    finally:
        for run_id in (dead, alive, unlabelled, foreign):
            containers, volumes = backend.list_labelled(f"{LABEL_RUN}={run_id}")
            for cid in containers:
                backend.remove(cid)
            for name in volumes:
                backend.remove_volume(name)
        backend.close()


def test_gc_without_an_engine_is_exit_4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    result = invoke(tmp_path / "state", "gc")
    assert result.code == 4, result.err


@pytest.mark.docker
def test_gc_prunes_old_runs_and_records_it(tmp_path: Path) -> None:
    state = (tmp_path / "state").resolve()
    make_runs(state, {"old1": 50, "new1": 1}, time.time())
    result = invoke(state, "gc", "--older-than", "2d")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "removed 0 container(s) and 0 volume(s) of dead runs; pruned 1 run(s)",
        "  pruned run old1",
    ]
    assert sorted(p.name for p in (state / "runs").iterdir()) == ["new1"]
    entries = (state / "ledger" / "entries.jsonl").read_text().splitlines()
    assert [json.loads(e)["runs"] for e in entries if '"gc.pruned"' in e] == [["old1"]]


class Labelled:
    """The backend seam `sweep` uses: labelled containers and volumes, and their removal."""

    def __init__(
        self,
        labels: dict[str, dict[str, str]],
        networks: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.containers = {f"c-{key}": value for key, value in labels.items()}
        self.volumes = {f"v-{key}": value for key, value in labels.items()}
        self.networks = {f"n-{key}": value for key, value in (networks or {}).items()}

    def list_labelled(
        self, label: str
    ) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
        assert label == LABEL_RUN
        return dict(self.containers), dict(self.volumes)

    def remove(self, cid: str) -> None:
        del self.containers[cid]

    def remove_volume(self, name: str) -> None:
        del self.volumes[name]

    def list_networks(self, label: str) -> dict[str, dict[str, str]]:
        assert label == LABEL_RUN
        return dict(self.networks)

    def remove_network(self, name: str) -> None:
        del self.networks[name]


def test_gc_and_runs_agree_on_which_runs_are_live(tmp_path: Path) -> None:
    """Live iff the run's lock is held, whatever pid its lock file names: `runner runs` once
    asked whether that pid was alive, `runner gc` whether the lock was held."""
    state = (tmp_path / "state").resolve()

    def record(run_id: str, status: Status = Status.RUNNING) -> RunResult:
        result = RunResult(run_id=run_id, mission="ci", mission_path="ci.yml", event="push")
        result.status = status
        return result

    dead_pid = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for run_id in ("crashed", "finished"):
        with hold_run_lock(state, run_id) as run:
            run.write_record(record(run_id))  # "running", as a run starts
    RunDir.of(state, "crashed").lock.write_text(f"{os.getpid()}\n")  # a pid alive again
    RunDir.of(state, "finished").write_record(record("finished", Status.SUCCESS))
    backend = Labelled(
        {run_id: run_labels(state, run_id) for run_id in ("live", "crashed", "finished")}
    )
    with hold_run_lock(state, "live") as live:
        live.write_record(record("live"))
        live.lock.write_text(dead_pid)  # a pid of another pid namespace, say
        listed = invoke(state, "runs", "--json")
        assert listed.code == 0, listed.err
        results = {run["run_id"]: run["result"] for run in listed.json()}
        swept = sweep(backend, state)  # type: ignore[arg-type]
        pruned = prune_runs(state, older_than_s=None, keep=0, now=time.time())
    assert results == {"live": "running", "crashed": "crashed", "finished": "success"}
    assert swept.alive_runs == ["live", "live"]  # its container and its volume, kept
    assert sorted(swept.containers) == ["c-crashed", "c-finished"]
    assert sorted(swept.volumes) == ["v-crashed", "v-finished"]
    assert pruned == ["crashed", "finished"]
    assert [run.run_id for run in run_dirs(state)] == ["live"]


def test_gc_removes_the_egress_networks_of_dead_runs_only(tmp_path: Path) -> None:
    state = (tmp_path / "state").resolve()
    with hold_run_lock(state, "crashed") as run:
        run.write_record(RunResult(run_id="crashed", mission="m", mission_path="m.yml", event="x"))
    labels = {run_id: run_labels(state, run_id) for run_id in ("live", "crashed")}
    backend = Labelled(labels, networks=labels)
    with hold_run_lock(state, "live"):
        swept = sweep(backend, state)  # type: ignore[arg-type]
    assert swept.networks == ["n-crashed"]
    assert sorted(backend.networks) == ["n-live"]
    assert swept.serialize()["networks"] == ["n-crashed"]
