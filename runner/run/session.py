"""A run of one mission, end to end.

validate (exit 2) -> inputs -> policy (exit 3, recorded, before any container or
volume exists) -> engine (exit 4) -> ledger `run.started` -> the run's lock and
directory (`records.rundirs`) -> jobs -> `verify:` checks -> event log sealed -> ledger
`run.finished` + checkpoint -> run.json, JUnit, summary -> lock released: the run is live
(`runner gc`, `runs` and `logs --follow` agree) from before its directory bears its name
until run.json says how it ended.

Every event goes through one `Sink`: the redacted event log, the live view and the
ledger recorder are its subscribers.

One redactor holds the run's secrets; each job redacts with its child
(`Redactor.for_job`: also the masks it registers). The event log, the ledger (every
entry's string values), run.json, JUnit and the summary are written through them.
"""

from __future__ import annotations

import contextlib
import getpass
import secrets as pysecrets
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import jsonpatch

from runner import __version__
from runner.app import App
from runner.audit.ledger import Ledger, last_policy, load_signer
from runner.engine.backend import LABEL_RUN, Backend
from runner.errors import Interrupted, MissionFailed, PolicyDenied
from runner.findings import Finding
from runner.mission.inputs import resolve_inputs
from runner.mission.model import Mission
from runner.mission.plan import instances, select_jobs
from runner.policy.decisions import Decision, decide, denials_message, granted
from runner.policy.model import Policy
from runner.records.eventlog import EventLog
from runner.records.events import (
    ArtifactStored,
    JobFinished,
    RunEvent,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    VerifyFinished,
)
from runner.records.results import RunResult, Status
from runner.records.rundirs import RunDir, hold_run_lock
from runner.records.sink import Sink
from runner.report.junit import write_junit
from runner.report.progress import make_view, summary
from runner.run.contexts import RunInfo
from runner.run.scheduler import Executor, Resolve, default_parallelism
from runner.run.state import RunState
from runner.run.verify import evaluate_checks
from runner.run.workspace import RepoSnapshot
from runner.secrets.redact import Redactor, redact_record

LEDGER_EVENTS = (StepStarted, StepFinished, ArtifactStored, JobFinished)


@dataclass(frozen=True)
class RunOptions:
    event: str = "manual"
    jobs: tuple[str, ...] = ()
    inputs: Mapping[str, str] | None = None
    secrets: Mapping[str, str] | None = None
    max_parallel: int | None = None
    retry_seed: int | None = None
    junit: Path | None = None


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + pysecrets.token_hex(3)


def rfc3339(at: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


class LedgerRecorder:
    """Sink subscriber: the transitions the ledger records, durable before they proceed."""

    def __init__(self, ledger: Ledger, run_id: str) -> None:
        self._ledger = ledger
        self._run_id = run_id

    def handle(self, event: RunEvent) -> None:
        if isinstance(event, LEDGER_EVENTS):
            self._ledger.append(event.kind, self._run_id, event.fields())


class EventLogSubscriber:
    """Sink subscriber: every event, redacted, into the run's event log."""

    def __init__(self, log: EventLog) -> None:
        self._log = log

    def handle(self, event: RunEvent) -> None:
        self._log.write(event)


@contextlib.contextmanager
def cancel_on_signals(cancel: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM cancel the run (containers killed, results recorded)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        cancel.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def record_decisions(
    ledger: Ledger, run_id: str, mission: Mission, policy: Policy, decisions: list[Decision]
) -> None:
    # The ledger holds the policy as its redactor leaves it: compare like with like, or a
    # policy with a `token: ...` in a description would be "changed" at every run.
    document = policy.document
    if ledger.redactor is not None:
        document = redact_record(document, ledger.redactor)
    previous = last_policy(ledger.directory)
    if previous != document:
        patch = jsonpatch.make_patch(previous or {}, document).patch
        ledger.append(
            "policy.changed",
            run_id,
            {"policy_digest": policy.digest, "patch": patch, "policy": document},
        )
    ledger.append(
        "policy.decision",
        run_id,
        {
            "mission": mission.name,
            "policy_digest": policy.digest,
            "allowed": all(d.allowed for d in decisions),
            "decisions": [d.serialize() for d in decisions],
        },
    )


def execute(
    app: App,
    mission: Mission,
    policy: Policy,
    options: RunOptions,
    *,
    warnings: Sequence[Finding] = (),
    redactor: Redactor,
    connect: Callable[[], Backend],
    resolve_factory: Callable[[Backend, Mission], Resolve],
) -> RunResult:
    """Run one validated mission. Raises PolicyDenied (3), EngineUnavailable (4),
    Interrupted (130) or MissionFailed (1); returns the result on success."""
    root = app.root
    state_dir = app.state_dir
    run_id = new_run_id()
    inputs = resolve_inputs(mission, options.inputs or {})
    decisions = decide(mission, policy, warnings)
    signer = load_signer(state_dir, root, create=True, say=app.out.line)
    ledger = Ledger.open(state_dir, signer=signer, redactor=redactor)
    backend: Backend | None = None
    try:
        info = RunInfo.discover(run_id, mission.name, options.event, root, inputs)
        ledger.append(
            "run.started",
            run_id,
            {
                "mission": mission.name,
                "mission_path": mission.path,
                "mission_digest": mission.digest,
                "policy_digest": policy.digest,
                "event": options.event,
                "commit": info.sha,
                "invoker": info.actor or getpass.getuser(),
                "runner_version": __version__,
            },
        )
        record_decisions(ledger, run_id, mission, policy, decisions)
        if not all(d.allowed for d in decisions):
            ledger.append(
                "run.finished", run_id, {"result": "denied", "reason": "denied by policy"}
            )
            ledger.checkpoint()
            raise PolicyDenied(denials_message(decisions))
        backend = connect()
        with hold_run_lock(state_dir, run_id) as run:
            return _run(
                app,
                mission,
                policy,
                options,
                info,
                ledger,
                decisions,
                redactor,
                backend,
                resolve_factory,
                run,
            )
    finally:
        if backend is not None:
            backend.close()
        ledger.close()


def _run(
    app: App,
    mission: Mission,
    policy: Policy,
    options: RunOptions,
    info: RunInfo,
    ledger: Ledger,
    decisions: list[Decision],
    redactor: Redactor,
    backend: Backend,
    resolve_factory: Callable[[Backend, Mission], Resolve],
    run_dir: RunDir,
) -> RunResult:
    """The run proper, in `run_dir`, whose lock the caller holds until it returns."""
    run_id = info.run_id
    run_dir.artifacts.mkdir(parents=True, exist_ok=True)
    result = RunResult(
        run_id=run_id,
        mission=mission.name,
        mission_path=mission.path,
        event=options.event,
        started=rfc3339(),
    )
    run_dir.write_record(result)
    log = EventLog(run_dir.events, redactor)
    sink = Sink([EventLogSubscriber(log), LedgerRecorder(ledger, run_id)])
    view = make_view(app.out)
    if view is not None:
        sink.subscribe(view)
    plan = instances(mission)
    selected = select_jobs(mission, options.jobs)
    cancel = threading.Event()
    snapshot = RepoSnapshot(app.root, uid=policy.limits.user)
    state = RunState(
        backend=backend,
        sink=sink,
        redactor=redactor,
        info=info,
        mission=mission,
        secrets=dict(options.secrets or {}),
        artifacts_dir=run_dir.artifacts,
        state_dir=app.state_dir,
        snapshot=snapshot,
        cancel=cancel,
        retry_seed=options.retry_seed,
    )
    started = time.monotonic()
    keys = [inst.key for job_id, insts in plan.items() if job_id in selected for inst in insts]
    sink.emit(
        RunStarted(run_id=run_id, mission=mission.name, event=options.event, jobs=tuple(keys))
    )
    executor = Executor(
        state,
        plan,
        resolve=resolve_factory(backend, mission),
        grants=lambda key: granted(decisions, key),
        max_parallel=options.max_parallel or default_parallelism(),
        selected=selected,
    )
    with cancel_on_signals(cancel):
        try:
            result.jobs = executor.run()
        finally:
            snapshot.close()
            closer = getattr(view, "close", None)
            if closer is not None:
                closer()
            if cancel.is_set():
                _cleanup(backend, run_id)
    result.status, result.reason = _overall(result, cancel.is_set())
    if not cancel.is_set() and mission.verify:
        result.checks = evaluate_checks(mission, result, base=info.base_contexts())
        sink.emit(VerifyFinished(checks=tuple(result.checks)))
        ledger.append("verify.summary", run_id, {"checks": [c.serialize() for c in result.checks]})
        if result.status is Status.SUCCESS and any(
            c.status.value == "failed" for c in result.checks
        ):
            result.status, result.reason = Status.FAILURE, "a verify check failed"
    result.duration_s = time.monotonic() - started
    result.finished = rfc3339()
    sink.emit(
        RunFinished(
            run_id=run_id,
            result=result.status,
            reason=result.reason,
            duration_ms=round(result.duration_s * 1000),
        )
    )
    events_digest = log.close()
    ledger.append(
        "run.finished",
        run_id,
        {
            "result": result.status.value,
            "reason": result.reason,
            "duration_ms": round(result.duration_s * 1000),
            "events_sha256": events_digest,
            "artifacts": sorted(state.artifacts),
        },
    )
    ledger.checkpoint()
    shown = result.redacted(redactor)
    run_dir.write_record(shown)
    if options.junit is not None:
        write_junit(shown, options.junit)
    if app.out.json_mode:
        app.out.json(shown.serialize())
    else:
        summary(shown, app.out)
    if result.status is Status.CANCELLED:
        raise Interrupted(f"run {run_id} interrupted")
    if result.status is not Status.SUCCESS:
        raise MissionFailed(
            f"mission {mission.name!r} {result.status.value}: {shown.reason} (run {run_id})"
        )
    return result


def _overall(result: RunResult, cancelled: bool) -> tuple[Status, str]:
    if cancelled:
        return Status.CANCELLED, "interrupted"
    failed = [
        j.key
        for j in result.jobs.values()
        if j.status is Status.FAILURE and not j.continue_on_error
    ]
    if failed:
        return Status.FAILURE, f"job(s) failed: {', '.join(failed)}"
    if any(j.status is Status.CANCELLED for j in result.jobs.values()):
        return Status.CANCELLED, "cancelled"
    return Status.SUCCESS, ""


def _cleanup(backend: Backend, run_id: str) -> None:
    containers, volumes = backend.list_labelled(f"{LABEL_RUN}={run_id}")
    for cid in containers:
        backend.remove(cid)
    for volume in volumes:
        backend.remove_volume(volume)
