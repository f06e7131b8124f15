"""A run of one mission, end to end.

validate (exit 2) -> inputs -> policy (exit 3, recorded, before any container or
volume exists) -> engine (exit 4) -> ledger `run.started` -> the run's lock and
directory (`records.rundirs`) -> jobs -> `verify:` checks -> event log sealed -> ledger
`run.finished` + checkpoint, appended to the anchor store -> run.json, JUnit, summary ->
lock released: the run is live (`runner gc`, `runs` and `logs --follow` agree) from
before its directory bears its name until run.json says how it ended.

Every event goes through one `Sink`: the redacted event log, the live view and the
ledger recorder are its subscribers.

A file runner cannot write (a full disk, an I/O error: `StorageFailed`, exit 4) ends the
run: a failure of the event log or the ledger cancels it like Ctrl-C (its containers
killed and removed), and the ledger records `run.finished` with result `crashed` and the
error when it can still be written, so that the ledger stays whole and verifiable.

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
from typing import Any

import jsonpatch

from runner import __version__
from runner.app import App
from runner.audit import anchors
from runner.audit.ledger import Ledger, last_policy, load_signer
from runner.durable import json_digest
from runner.engine.backend import LABEL_RUN, Backend, Described, run_labels
from runner.engine.images import BuildProgress, Builds, BuiltImage
from runner.errors import Interrupted, MissionFailed, PolicyDenied, RunnerError, StorageFailed
from runner.findings import Finding
from runner.mission.inputs import resolve_inputs
from runner.mission.model import Mission
from runner.mission.plan import instances, select_jobs
from runner.policy.decisions import Decision, decide, denials_message, granted
from runner.policy.model import Policy
from runner.records.eventlog import EventLog
from runner.records.events import (
    ArtifactStored,
    CacheRestored,
    CacheSaved,
    ImageBuild,
    JobFinished,
    RunEvent,
    RunFinished,
    RunStarted,
    ServiceStarted,
    ServiceStopped,
    StepFinished,
    StepPlaced,
    StepStarted,
    VerifyFinished,
)
from runner.records.results import RunResult, Status
from runner.records.rundirs import RunDir, hold_run_lock
from runner.records.sink import Sink
from runner.report.annotations import StepAnnotations
from runner.report.junit import write_junit
from runner.report.progress import make_view, summary
from runner.run.contexts import RunInfo
from runner.run.scheduler import Executor, Resolve, default_parallelism
from runner.run.services import refuse_unsupported
from runner.run.snapshot import RepoSnapshot, RunSnapshots, SnapshotCache
from runner.run.state import RunState
from runner.run.verify import evaluate_checks
from runner.secrets.redact import Redactor, redact_record
from runner.trusted import Origin, invoker_ref

LEDGER_EVENTS = (
    StepStarted,
    StepPlaced,
    StepFinished,
    ArtifactStored,
    CacheRestored,
    CacheSaved,
    ServiceStarted,
    ServiceStopped,
    JobFinished,
)


@dataclass(frozen=True)
class RunOptions:
    event: str = "manual"
    ref: str | None = None  # what policy rules match; None: git's HEAD (runner.trusted)
    trusted: tuple[Origin, ...] = ()  # where the policy and the catalog came from
    catalog_digest: str = ""
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


class Failures:
    """The first record runner could not write during a run; it cancels the run."""

    def __init__(self, cancel: threading.Event) -> None:
        self.first: RunnerError | None = None
        self._cancel = cancel
        self._lock = threading.Lock()

    def __call__(self, exc: RunnerError) -> None:
        with self._lock:
            if self.first is None:
                self.first = exc
        self._cancel.set()


class LedgerRecorder:
    """Sink subscriber: the transitions the ledger records, durable before they proceed.
    When one cannot be recorded the run is cancelled (`on_failure`), and a step whose
    start was not recorded does not start."""

    def __init__(
        self,
        ledger: Ledger,
        run_id: str,
        on_failure: Callable[[RunnerError], None] | None = None,
    ) -> None:
        self._ledger = ledger
        self._run_id = run_id
        self._on_failure = on_failure

    def handle(self, event: RunEvent) -> None:
        if isinstance(event, LEDGER_EVENTS):
            try:
                self._ledger.append(event.kind, self._run_id, event.fields())
            except RunnerError as exc:
                if self._on_failure is None:
                    raise
                self._on_failure(exc)
                if isinstance(event, StepStarted):
                    raise


class EventLogSubscriber:
    """Sink subscriber: every event, redacted, into the run's event log. A log that
    cannot be written cancels the run (`on_failure`); the output keeps being drained."""

    def __init__(
        self, log: EventLog, on_failure: Callable[[RunnerError], None] | None = None
    ) -> None:
        self._log = log
        self._on_failure = on_failure

    def handle(self, event: RunEvent) -> None:
        self.handle_all((event,))

    def handle_all(self, events: Sequence[RunEvent]) -> None:
        try:
            self._log.write_all(events)
        except StorageFailed as exc:
            if self._on_failure is None:
                raise
            self._on_failure(exc)


class RunSeal:
    """The run's part of the ledger, begun and ended once: `start` appends `run.started`;
    `finish` appends `run.finished`, a checkpoint, and that checkpoint to the anchor store
    (a store that cannot be written is a warning); `crashed` ends a started, unfinished run
    that an error ended — result `error` (a RunnerError: no engine, a bad image),
    `cancelled` (Ctrl-C) or `crashed` (a file runner could not write, e.g. a full disk, or
    anything unexpected) — if the ledger can still be written, and never masks that error
    (the ledger may be what failed)."""

    def __init__(self, app: App, ledger: Ledger, run_id: str, redactor: Redactor) -> None:
        self._app = app
        self._ledger = ledger
        self._run_id = run_id
        self._redactor = redactor
        self.started = False
        self.done = False

    def start(self, fields: Mapping[str, object]) -> None:
        self._ledger.append("run.started", self._run_id, fields)
        self.started = True

    def finish(self, fields: Mapping[str, object]) -> None:
        self._ledger.append("run.finished", self._run_id, fields)
        self.done = True
        note = self._ledger.checkpoint()
        app = self._app
        _, warning = anchors.keep(app.anchor_store, note, repo=app.root, state_dir=app.state_dir)
        if warning is not None:
            app.out.error(f"runner: warning: {warning}")

    def crashed(self, exc: BaseException) -> None:
        if not self.started or self.done:
            return
        if isinstance(exc, KeyboardInterrupt):
            result = "cancelled"
        elif isinstance(exc, RunnerError) and not isinstance(exc, StorageFailed):
            result = "error"
        else:
            result = "crashed"
        message = exc.message if isinstance(exc, RunnerError) else str(exc)
        reason = _clip(self._redactor(f"{type(exc).__name__}: {message}".strip()))
        with contextlib.suppress(Exception):
            self.finish({"result": result, "reason": reason})


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


MAX_RECORDED = 100  # denials (and distinct grants) a policy.decision entry lists in full


def record_decisions(
    ledger: Ledger, run_id: str, mission: Mission, policy: Policy, decisions: list[Decision]
) -> None:
    """`policy.changed` when the policy differs from the last recorded one, then one
    `policy.decision`: the denials in full, each distinct grant once, the counts and the
    digest of every decision, so that a mission of a thousand denied requests adds
    kilobytes to the ledger, not megabytes."""
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
    serialized = [d.serialize() for d in decisions]
    denied: dict[tuple[str, ...], dict[str, Any]] = {}  # the same denial of many instances once
    grants: dict[tuple[str, str, str], int] = {}
    for entry in serialized:
        if entry["allowed"]:
            grant = (entry["capability"], entry["value"], entry["rule"] or "")
            grants[grant] = grants.get(grant, 0) + 1
            continue
        denial = (entry["capability"], entry["value"], entry["keypath"], entry["reason"])
        first = denied.setdefault(denial, {**_clipped(entry), "instances": 0})
        first["instances"] += 1
    count = sum(1 for entry in serialized if not entry["allowed"])
    ledger.append(
        "policy.decision",
        run_id,
        {
            "mission": _clip(mission.name),
            "policy_digest": policy.digest,
            "allowed": not denied,
            "decisions": list(denied.values())[:MAX_RECORDED],
            "counts": {"allowed": len(serialized) - count, "denied": count},
            "decisions_sha256": json_digest(serialized),
            "grants": [
                {"capability": cap, "value": _clip(value), "rule": rule, "instances": n}
                for (cap, value, rule), n in list(grants.items())[:MAX_RECORDED]
            ],
        },
    )


MAX_TEXT = 512  # characters of a recorded string; the digest covers the whole


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else f"{text[:MAX_TEXT]}... ({len(text)} characters)"


def _clipped(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: _clip(v) if isinstance(v, str) else v for k, v in entry.items()}


def execute(
    app: App,
    mission: Mission,
    policy: Policy,
    options: RunOptions,
    *,
    warnings: Sequence[Finding] = (),
    redactor: Redactor,
    connect: Callable[[], Backend],
    resolve_factory: Callable[[Backend, Mission, Builds], Resolve],
) -> RunResult:
    """Run one validated mission. Raises PolicyDenied (3), EngineUnavailable (4),
    Interrupted (130) or MissionFailed (1); returns the result on success.

    Once `run.started` is in the ledger, every way out leaves a `run.finished` after it:
    an error that escapes the run records result `error` (a RunnerError: no engine, a bad
    image) or `crashed` (anything else) before it propagates."""
    root = app.root
    state_dir = app.state_dir
    run_id = new_run_id()
    inputs = resolve_inputs(mission, options.inputs or {})
    ref = invoker_ref(root, options.ref)
    decisions = decide(mission, policy, warnings, event=options.event, ref=ref)
    anchors.resolve_store(app.anchor_store, repo=root, state_dir=state_dir)
    signer = load_signer(state_dir, root, create=True, say=app.out.line)
    ledger = Ledger.open(state_dir, signer=signer, repo=root, redactor=redactor)
    seal = RunSeal(app, ledger, run_id, redactor)
    backend: Backend | None = None
    try:
        info = RunInfo.discover(run_id, mission.name, options.event, root, inputs, ref=ref)
        seal.start(
            {
                "mission": mission.name,
                "mission_path": mission.path,
                "mission_digest": mission.digest,
                "policy_digest": policy.digest,
                "event": options.event,
                "commit": info.sha,
                "invoker": info.actor or getpass.getuser(),
                "runner_version": __version__,
                "ref": ref,
                "catalog_digest": options.catalog_digest,
                "trusted": [origin.serialize() for origin in options.trusted],
            }
        )
        record_decisions(ledger, run_id, mission, policy, decisions)
        if not all(d.allowed for d in decisions):
            seal.finish({"result": "denied", "reason": "denied by policy"})
            raise PolicyDenied(denials_message(decisions))
        backend = connect()
        if isinstance(backend, Described):  # the cluster a Kubernetes run used
            ledger.append("engine.connected", run_id, backend.describe())
        chosen = select_jobs(mission, options.jobs)
        refuse_unsupported(backend, [job for job in mission.jobs.values() if job.id in chosen])
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
                seal,
            )
    except BaseException as exc:
        seal.crashed(exc)  # nothing when the run was finished (MissionFailed, Interrupted)
        raise
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
    resolve_factory: Callable[[Backend, Mission, Builds], Resolve],
    run_dir: RunDir,
    seal: RunSeal,
) -> RunResult:
    """The run proper, in `run_dir`, whose lock the caller holds until it returns."""
    run_id = info.run_id
    try:
        run_dir.artifacts.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageFailed.writing(run_dir.artifacts, exc, "the artifacts directory") from exc
    result = RunResult(
        run_id=run_id,
        mission=mission.name,
        mission_path=mission.path,
        event=options.event,
        started=rfc3339(),
    )
    run_dir.write_record(result)
    log = EventLog(run_dir.events, redactor)
    cancel = threading.Event()
    failures = Failures(cancel)
    sink = Sink([EventLogSubscriber(log, failures), LedgerRecorder(ledger, run_id, failures)])
    notes = StepAnnotations()  # for JUnit and the JSON result
    sink.subscribe(notes)
    view = make_view(app.out)
    if view is not None:
        sink.subscribe(view)
    plan = instances(mission)
    selected = select_jobs(mission, options.jobs)
    snapshots = RunSnapshots(
        RepoSnapshot(app.root, uid=policy.limits.user, exclude=app.private_paths()),
        SnapshotCache(backend, app.state_dir),
        helper_labels=run_labels(app.state_dir, run_id),
    )

    def built(image: BuiltImage) -> None:
        ledger.append("image.built", run_id, image.ledger_fields())

    def building(progress: BuildProgress) -> None:
        sink.emit(
            ImageBuild(
                name=progress.name, tag=progress.tag, phase=progress.phase, line=progress.line
            )
        )

    state = RunState(
        backend=backend,
        sink=sink,
        redactor=redactor,
        info=info,
        mission=mission,
        secrets=dict(options.secrets or {}),
        artifacts_dir=run_dir.artifacts,
        state_dir=app.state_dir,
        snapshots=snapshots,
        cancel=cancel,
        retry_seed=options.retry_seed,
        accept_egress_to_host=policy.accepts_egress_to_host,
    )
    started = time.monotonic()
    keys = [inst.key for job_id, insts in plan.items() if job_id in selected for inst in insts]
    sink.emit(
        RunStarted(run_id=run_id, mission=mission.name, event=options.event, jobs=tuple(keys))
    )
    executor = Executor(
        state,
        plan,
        resolve=resolve_factory(
            backend, mission, Builds(policy.build, cancel, built, on_progress=building)
        ),
        grants=lambda key: granted(decisions, key),
        max_parallel=options.max_parallel or default_parallelism(),
        selected=selected,
    )
    with cancel_on_signals(cancel):
        try:
            result.jobs = executor.run()
        finally:
            snapshots.close()
            closer = getattr(view, "close", None)
            if closer is not None:
                closer()
            if cancel.is_set():
                _cleanup(backend, run_id)
    if failures.first is not None:
        with contextlib.suppress(RunnerError):
            log.close()
        raise failures.first
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
    seal.finish(
        {
            "result": result.status.value,
            "reason": result.reason,
            "duration_ms": round(result.duration_s * 1000),
            "events_sha256": events_digest,
            "artifacts": sorted(state.artifacts),
        }
    )
    shown = result.redacted(redactor)
    run_dir.write_record(shown)
    shown_notes = notes.redacted(redactor)
    if options.junit is not None:
        write_junit(shown, options.junit, shown_notes)
    if app.out.json_mode:
        app.out.json({**shown.serialize(), "annotations": [n.fields() for n in shown_notes]})
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
