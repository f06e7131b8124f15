"""The events of a run: one frozen dataclass per kind, and the one way back from JSON.

The executor constructs these and emits them into the `Sink`; every consumer (the event
log, the plain and live views, the ledger recorder, `runner logs`, `runner runs`) matches
on their types, so mypy sees every field a consumer reads and every field an emitter must
give. `kind` is the string the event log stores; `fields()` gives the event's JSON
fields, in this order, after the log's own `seq`, `ts` and `kind`:

| kind              | fields                                                             |
| ----------------- | ------------------------------------------------------------------ |
| `run.started`     | run_id, mission, event, jobs (the job instance keys selected)      |
| `image.build`     | name, tag, phase (started, step, finished), line (the engine's     |
|                   | `Step 3/7 : RUN ...`; at the end, empty or why it did not build)  |
| `job.started`     | job                                                                |
| `step.started`    | job, step, name, attempt, image, image_digest, config_digest       |
| `step.placed`     | job, step, attempt, backend, node, pod, pod_spec_digest, image,    |
|                   | image_digest (where the engine ran it: Kubernetes)                 |
| `output`          | job, step, line (one redacted line the step printed)               |
| `annotation`      | job, step, level (error, warning, notice), message; file, line,    |
|                   | end_line, col, end_column, title (each only when the step gave it) |
| `group.started`   | job, step, title (`::group::title`: the lines up to the end fold)  |
| `group.finished`  | job, step (`::endgroup::`)                                         |
| `step.retry`      | job, step, attempt (the next one), delay_s, reason                 |
| `step.summary`    | job, step, markdown (the step's `$GITHUB_STEP_SUMMARY`, redacted)  |
| `step.finished`   | job, step, name, status, reason, exit_code, duration_ms, attempts, |
|                   | log_sha256 (absent for a step that never ran)                      |
| `artifact.stored` | job, name, path, sha256, size                                      |
| `cache.restored`  | job, key, matched (the key found), event, ref (its scope), sha256  |
| `cache.saved`     | job, key, event, ref (its scope), sha256 (the entry's), size       |
| `service.started` | job, service, image, image_digest, config_digest, health (how the  |
|                   | wait for it ended: healthy, running (no check), unhealthy, exited, |
|                   | timeout, cancelled)                                                |
| `service.stopped` | job, service, image, image_digest (removed with its job)           |
| `job.finished`    | job, status, reason, duration_ms                                   |
| `verify.finished` | checks (each: name, check, status, detail)                         |
| `run.finished`    | run_id, result, reason, duration_ms                                |

`status` and `result` are `Status` values (`success`, `failure`, `cancelled`, `skipped`).

`parse_event` reads a stored JSON object back into its event. It is lenient, as a log may
come from another version of runner or be cut short by a crash: a missing or mistyped
field reads as its type's zero (`""`, `0`, nothing; a status it cannot read as
`failure`, as the views always showed one), and a kind it does not know comes back as an
`UnknownEvent` holding the record as it was.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

from runner.records.results import CheckResult, CheckStatus, Status

JSONValue: TypeAlias = str | int | float | bool | list["JSONValue"] | dict[str, "JSONValue"] | None

OMIT_NONE = {"omit_none": True}  # a field left out of the JSON while it is None


@dataclass(frozen=True, kw_only=True)
class Event:
    """What every event is: a kind, and fields that serialize to JSON."""

    kind: ClassVar[str]

    def fields(self) -> dict[str, JSONValue]:
        """The event's JSON fields, in declaration order."""
        out: dict[str, JSONValue] = {}
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if value is None and spec.metadata.get("omit_none"):
                continue
            out[spec.name] = _to_json(value)
        return out


@dataclass(frozen=True, kw_only=True)
class JobEvent(Event):
    """An event of one job instance (`job` is its key: `test (shard=1)`)."""

    job: str


@dataclass(frozen=True, kw_only=True)
class StepEvent(JobEvent):
    """An event of one step of a job instance (`step` is its index in the job)."""

    step: int


# -- the run -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run.started"
    run_id: str
    mission: str
    event: str
    jobs: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ImageBuild(Event):
    """A containers/<name> image being built for the run (`runner.engine.images`)."""

    kind: ClassVar[str] = "image.build"
    name: str
    tag: str
    phase: str  # started, step, finished
    line: str = ""


@dataclass(frozen=True, kw_only=True)
class VerifyFinished(Event):
    kind: ClassVar[str] = "verify.finished"
    checks: tuple[CheckResult, ...]


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run.finished"
    run_id: str
    result: Status
    reason: str
    duration_ms: int


# -- jobs --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class JobStarted(JobEvent):
    kind: ClassVar[str] = "job.started"


@dataclass(frozen=True, kw_only=True)
class ArtifactStored(JobEvent):
    kind: ClassVar[str] = "artifact.stored"
    name: str
    path: str
    sha256: str
    size: int


@dataclass(frozen=True, kw_only=True)
class CacheRestored(JobEvent):
    """`actions/cache` placed entry `matched` (saved by a run of `event` on `ref`)."""

    kind: ClassVar[str] = "cache.restored"
    key: str
    matched: str
    event: str
    ref: str
    sha256: str  # runner.run.cache.entry_digest


@dataclass(frozen=True, kw_only=True)
class CacheSaved(JobEvent):
    """`actions/cache` stored `key` for runs of `event` on `ref` at the end of the job."""

    kind: ClassVar[str] = "cache.saved"
    key: str
    event: str
    ref: str
    sha256: str  # runner.run.cache.entry_digest
    size: int


@dataclass(frozen=True, kw_only=True)
class ServiceStarted(JobEvent):
    """A service of the job (runner.run.services) was started and waited for; `health`
    says how the wait ended (only "healthy" and "running" let the steps start)."""

    kind: ClassVar[str] = "service.started"
    service: str
    image: str
    image_digest: str
    config_digest: str  # runner.engine.backend.spec_digest
    health: str


@dataclass(frozen=True, kw_only=True)
class ServiceStopped(JobEvent):
    """A service of the job was removed with it."""

    kind: ClassVar[str] = "service.stopped"
    service: str
    image: str
    image_digest: str


@dataclass(frozen=True, kw_only=True)
class JobFinished(JobEvent):
    """A job instance ended: ran, or was skipped, cancelled or refused before it ran
    (then `duration_ms` is 0)."""

    kind: ClassVar[str] = "job.finished"
    status: Status
    reason: str
    duration_ms: int


# -- steps -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StepStarted(StepEvent):
    kind: ClassVar[str] = "step.started"
    name: str
    attempt: int
    image: str
    image_digest: str
    config_digest: str  # SHA-256 of the backend-neutral container configuration


@dataclass(frozen=True, kw_only=True)
class StepPlaced(StepEvent):
    """Where an engine that says so ran an attempt (`backend.Described`): the backend,
    node, pod, pod spec digest and delivered image of a Kubernetes step."""

    kind: ClassVar[str] = "step.placed"
    attempt: int
    backend: str
    node: str
    pod: str
    pod_spec_digest: str  # SHA-256 of the pod's manifest as runner created it
    image: str  # the reference the pod ran (a registry digest, or a loaded tag)
    image_digest: str


@dataclass(frozen=True, kw_only=True)
class OutputLine(StepEvent):
    kind: ClassVar[str] = "output"
    line: str


@dataclass(frozen=True, kw_only=True)
class Annotation(StepEvent):
    """`::error ::msg`, `::warning ::msg` or `::notice ::msg` (its line is output too),
    with where it points when the step said so (`::error file=a.py,line=3,col=5,title=T::`):
    `file` repository-relative as far as runner could make it (a name to show, never a
    path runner opens), positions from 1. Each location field is left out of the JSON
    while it is None, so an annotation without one is stored as before."""

    kind: ClassVar[str] = "annotation"
    level: str
    message: str
    file: str | None = field(default=None, metadata=OMIT_NONE)
    line: int | None = field(default=None, metadata=OMIT_NONE)
    end_line: int | None = field(default=None, metadata=OMIT_NONE)
    col: int | None = field(default=None, metadata=OMIT_NONE)
    end_column: int | None = field(default=None, metadata=OMIT_NONE)
    title: str | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, kw_only=True)
class GroupStarted(StepEvent):
    """`::group::title`: the step's lines up to the next group event belong to it."""

    kind: ClassVar[str] = "group.started"
    title: str


@dataclass(frozen=True, kw_only=True)
class GroupFinished(StepEvent):
    """`::endgroup::`."""

    kind: ClassVar[str] = "group.finished"


@dataclass(frozen=True, kw_only=True)
class StepRetry(StepEvent):
    """The step failed and runs again (`attempt`, the next one) after `delay_s`."""

    kind: ClassVar[str] = "step.retry"
    attempt: int
    delay_s: float
    reason: str


@dataclass(frozen=True, kw_only=True)
class StepSummary(StepEvent):
    """What the step wrote to `$GITHUB_STEP_SUMMARY` (Markdown, redacted by its job)."""

    kind: ClassVar[str] = "step.summary"
    markdown: str


@dataclass(frozen=True, kw_only=True)
class StepFinished(StepEvent):
    kind: ClassVar[str] = "step.finished"
    name: str
    status: Status
    reason: str
    exit_code: int | None
    duration_ms: int
    attempts: int
    log_sha256: str | None = field(default=None, metadata=OMIT_NONE)  # None: never ran


RunEvent: TypeAlias = (
    RunStarted
    | ImageBuild
    | JobStarted
    | StepStarted
    | StepPlaced
    | OutputLine
    | Annotation
    | GroupStarted
    | GroupFinished
    | StepRetry
    | StepSummary
    | StepFinished
    | ArtifactStored
    | CacheRestored
    | CacheSaved
    | ServiceStarted
    | ServiceStopped
    | JobFinished
    | VerifyFinished
    | RunFinished
)
"""Every event a run emits."""

EVENT_TYPES: tuple[type[RunEvent], ...] = typing.get_args(RunEvent)
_BY_KIND: dict[str, type[RunEvent]] = {cls.kind: cls for cls in EVENT_TYPES}
_HINTS: dict[type[RunEvent], dict[str, Any]] = {
    cls: typing.get_type_hints(cls) for cls in EVENT_TYPES
}


@dataclass(frozen=True)
class UnknownEvent:
    """A stored record of a kind this version of runner does not know."""

    kind: str
    record: Mapping[str, Any]

    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.record.items() if k not in ("seq", "ts", "kind")}


# -- JSON --------------------------------------------------------------------------------


def _to_json(value: object) -> JSONValue:
    if isinstance(value, Status):
        return value.serialize()
    if isinstance(value, CheckResult):
        return dict(value.serialize())
    if isinstance(value, tuple):
        return [_to_json(item) for item in value]
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"an event field holds a {type(value).__name__}")  # pragma: no cover


def parse_event(record: Mapping[str, Any]) -> RunEvent | UnknownEvent:
    """The event a stored JSON object (`seq`, `ts`, `kind` and fields) holds."""
    kind = record.get("kind")
    cls = _BY_KIND.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return UnknownEvent(str(kind or ""), record)
    hints = _HINTS[cls]
    values = {
        spec.name: _from_json(hints[spec.name], record.get(spec.name))
        for spec in dataclasses.fields(cls)
    }
    return cls(**values)


def _from_json(hint: Any, value: Any) -> Any:
    """`value` read as a field of type `hint`; its zero when it is missing or mistyped."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None
        if value is None:
            return None
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _from_json(inner, value)
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return tuple(_from_json(item, v) for v in value) if isinstance(value, list) else ()
    if hint is str:
        return value if isinstance(value, str) else "" if value is None else str(value)
    if hint is int:
        return _number(value, int)
    if hint is float:
        return _number(value, float)
    if hint is Status:
        return _enum(Status, value, Status.FAILURE)
    if hint is CheckResult:
        check = value if isinstance(value, Mapping) else {}
        return CheckResult(
            name=_from_json(str, check.get("name")),
            check=_from_json(str, check.get("check")),
            status=_enum(CheckStatus, check.get("status"), CheckStatus.UNRESOLVED),
            detail=_from_json(str, check.get("detail")),
        )
    raise TypeError(f"no JSON reading for an event field of type {hint}")  # pragma: no cover


_N = typing.TypeVar("_N", int, float)
_E = typing.TypeVar("_E", Status, CheckStatus)


def _number(value: Any, kind: type[_N]) -> _N:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return kind(0)
    try:
        return kind(value)
    except (ValueError, OverflowError):
        return kind(0)


def _enum(kind: type[_E], value: Any, unreadable: _E) -> _E:
    try:
        return kind(value)
    except ValueError:
        return unreadable
