"""The real Executor and JobRunner on the in-memory engine (`runner.engine.fake`).

`run_mission(tmp_path, yaml)` runs a mission's jobs as `runner run` does after the policy
(workspaces, containers, outputs, artifacts, retries, timeouts, cancellation), on a
`FakeBackend` whose clock is the run's clock. `scripted` is a container script reading
the step's `run:` text as a tiny language, one command a line:

    ok | exit N        exit 0 / N
    sleep S            run S seconds of clock time (then exit as the other lines say)
    print TEXT         print a line
    out K=V / env K=V  write K=V to $RUNNER_OUTPUT / $RUNNER_ENV
    path DIR           write DIR to $RUNNER_PATH
    write PATH TEXT    write TEXT to the workspace file PATH
    hang               run until killed

What the fake cannot show (real containers, isolation, the engine's own output streams)
is what tests/run/test_run.py proves on Docker.
"""

from __future__ import annotations

import shlex
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from runner.engine.backend import LABEL_SNAPSHOT, WORKSPACE_PATH, ContainerSpec
from runner.engine.fake import Behaviour, Exit, FakeBackend, FakeClock, Hang, Script
from runner.mission.loader import parse_mission
from runner.mission.plan import instances
from runner.policy.model import Grants, Limits
from runner.records.results import JobResult
from runner.records.sink import Sink
from runner.run.contexts import RunInfo
from runner.run.scheduler import Executor
from runner.run.snapshot import RepoSnapshot, RunSnapshots, SnapshotCache
from runner.run.state import ResolvedImage, RunState
from runner.secrets.redact import Redactor

IMAGE = "runner-toolset:fake"


def script_of(spec: ContainerSpec) -> str:
    """The step's `run:` text (the shell's last argument)."""
    return spec.command[-1]


def scripted(spec: ContainerSpec) -> Behaviour:
    code, seconds = 0, 0.0
    output: list[bytes] = []
    writes: dict[str, bytes] = {}
    for line in script_of(spec).splitlines():
        verb, _, rest = line.strip().partition(" ")
        if verb == "hang":
            return Hang(output)
        if verb == "exit":
            code = int(rest)
        elif verb == "sleep":
            seconds += float(rest)
        elif verb == "print":
            output.append(rest.encode() + b"\n")
        elif verb in ("out", "env", "path"):
            path = spec.env[{"out": "RUNNER_OUTPUT", "env": "RUNNER_ENV"}.get(verb, "RUNNER_PATH")]
            writes[path] = writes.get(path, b"") + rest.encode() + b"\n"
        elif verb == "write":
            name, text = shlex.split(rest)
            writes[f"{WORKSPACE_PATH}/{name}"] = text.encode()
        elif verb not in ("ok", ""):
            raise AssertionError(f"unknown fake command {line!r}")
    return Exit(code, output, seconds, writes)


def grants(
    limits: Limits | None = None,
    *,
    network: bool = False,
    secrets: frozenset[str] = frozenset(),
) -> Grants:
    return Grants(
        image="base",
        tools=("sh",),
        network=network,
        secrets=secrets,
        exec=False,
        limits=limits or Limits(),
    )


@dataclass
class Outcome:
    jobs: dict[str, JobResult]
    backend: FakeBackend
    state: RunState
    real_s: float  # wall-clock time the run took
    clock_s: float  # time that passed on the run's clock
    specs: dict[str, list[ContainerSpec]] = field(default_factory=dict)  # job -> started ones

    @property
    def clock(self) -> FakeClock:
        return self.backend.clock

    def status(self) -> dict[str, tuple[str, str]]:
        return {key: (job.status.value, job.reason) for key, job in self.jobs.items()}

    def left_behind(self) -> tuple[list[str], list[str]]:
        """(containers, volumes) the run did not remove (the repository snapshot is a
        cache that outlives runs: `snapshots`)."""
        volumes = [name for name in self.backend.volumes if name not in self.snapshots()]
        return list(self.backend.containers), volumes

    def snapshots(self) -> list[str]:
        """The repository snapshot volumes (`runner.run.snapshot`)."""
        _, volumes = self.backend.list_labelled(LABEL_SNAPSHOT)
        return list(volumes)


def run_mission(
    tmp_path: Path,
    mission: str,
    script: Script = scripted,
    *,
    max_parallel: int = 4,
    retry_seed: int | None = None,
    cancel: threading.Event | None = None,
    backend: FakeBackend | None = None,
    limits: Limits | None = None,
    network: bool = False,
    accept_egress_to_host: bool = False,
    secrets: dict[str, str] | None = None,
    sink: Sink | None = None,
) -> Outcome:
    """Run every job of `mission` (YAML, dedented) through the real Executor; `secrets`
    are the run's, granted to every job; `sink` sees the events."""
    loaded, _ = parse_mission(textwrap.dedent(mission).encode(), "m.yml")
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    (repo / "data.txt").write_text("from the repository\n")
    engine = backend if backend is not None else FakeBackend(script)
    image = engine.add_image(IMAGE)
    snapshots = RunSnapshots(
        RepoSnapshot(repo), SnapshotCache(engine, tmp_path / "state"), helper_labels={}
    )
    (tmp_path / "artifacts").mkdir(exist_ok=True)
    state = RunState(
        backend=engine,
        sink=sink if sink is not None else Sink(),
        redactor=Redactor((secrets or {}).values()),
        info=RunInfo(run_id="r1", mission=loaded.name, event="manual", root=repo),
        mission=loaded,
        secrets=dict(secrets or {}),
        artifacts_dir=tmp_path / "artifacts",
        state_dir=tmp_path / "state",
        snapshots=snapshots,
        cancel=cancel if cancel is not None else threading.Event(),
        retry_seed=retry_seed,
        clock=engine.clock,
        accept_egress_to_host=accept_egress_to_host,
    )
    granted = grants(limits, network=network, secrets=frozenset(secrets or {}))
    executor = Executor(
        state,
        instances(loaded),
        resolve=lambda instance, grants: ResolvedImage(IMAGE, image.id, interpreter=False),
        grants=lambda key: granted,
        max_parallel=max_parallel,
    )
    started, clock_started = time.monotonic(), engine.clock.monotonic()
    try:
        jobs = executor.run()
    finally:
        snapshots.close()
    outcome = Outcome(
        jobs,
        engine,
        state,
        time.monotonic() - started,
        engine.clock.monotonic() - clock_started,
    )
    for container in engine.created:
        if container.state in ("created", "booted"):  # prepared, never started
            continue
        job = container.spec.labels.get("runner.job", "")
        outcome.specs.setdefault(job, []).append(container.spec)
    return outcome
