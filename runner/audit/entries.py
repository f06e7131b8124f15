"""Every type of ledger entry and its fields, declared once (SPEC 7).

An entry is the envelope the ledger writes (`ENVELOPE`: `v`, `log`, `seq`, `ts`, `type`,
`run_id`, `kid`, `prev`, and `signatures` when cosigned) plus the fields of its type:

    run.started      mission, mission_path, mission_digest, policy_digest, event, commit,
                     invoker, runner_version, [ref, catalog_digest, trusted]
    policy.changed   policy_digest, patch (RFC 6902 from the last recorded policy), policy
    policy.decision  mission, policy_digest, allowed, decisions (the denials),
                     [counts, decisions_sha256, grants]
    step.started     job, step, name, attempt, image, image_digest, config_digest
    step.placed      job, step, attempt, backend, node, pod, pod_spec_digest, image,
                     image_digest (where an engine that says so ran a step: Kubernetes)
    step.finished    job, step, name, status, reason, exit_code, duration_ms, attempts,
                     [log_sha256]
    artifact.stored  job, name, path, sha256, size
    cache.restored   job, key, matched, event, ref, sha256 (actions/cache: the entry's digest)
    cache.saved      job, key, event, ref, sha256, size
    cache.evicted    key, event, ref, sha256, size, last_used, reason (`runner gc`: unused
                     for its days, or the least recently used over its size cap)
    service.started  job, service, image, image_digest, config_digest, health (a job's
                     service, started and waited for: healthy, running, unhealthy, exited,
                     timeout, cancelled)
    service.stopped  job, service, image, image_digest (removed with its job)
    job.finished     job, status, reason, duration_ms
    verify.summary   checks
    run.finished     result, reason, [duration_ms, events_sha256, artifacts] (a run denied
                     by the policy, or one that crashed or failed to start (result
                     "crashed" or "error"), has only result and reason)
    key.rotated      old, new (verifier keys; the entry is signed by both)
    key.revoked      key, by, reason (signed by `by`)
    recovery         file, offset, length, sha256, quarantined (a torn tail cut off)
    gc.pruned        runs, containers, volumes
    engine.connected backend, server_version, and what else the engine says of itself (on
                     Kubernetes: server, namespace, images, network_policy, termination_log)
    image.built      name, tag, image_id, context_sha256, bases, network (a
                     containers/<name>/Dockerfile built, in a run or by `images build`)
    ([name]: optional)

Each type is a subclass of `Declared` whose `Field`s are its fields: declaring the class
registers the type. Writing: `Ledger.append(type, run_id, fields)` calls `check(type,
fields)` first; an undeclared type, a missing required field, an undeclared field or a
value of another JSON type raises TypeError, since it is a bug in the writer, not a
user's mistake. Reading: `Entry(raw).get(RunStarted.commit)` gives the value, or None
when it is absent or of another type (an entry read back may have been tampered with);
asking an entry for a field of another type is a TypeError. mypy sees every field name
a reader uses.

Adding an entry type: a `Declared` subclass here, then `ledger.append` it; the end-to-end
test (tests/audit/test_entries.py) fails until a real run or command writes it.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

ENVELOPE = frozenset({"v", "log", "seq", "ts", "type", "run_id", "kid", "prev", "signatures"})
TYPE_NAME = re.compile(r"[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*")  # dotted lowercase

T = TypeVar("T")

_REGISTRY: dict[str, type[Declared]] = {}


class Field(Generic[T]):
    """One field of an entry type: its JSON type, whether it must be present, and whether
    it may be null. Its name is the attribute it is assigned to."""

    def __init__(self, kind: type[T], *, required: bool = True, nullable: bool = False) -> None:
        self.kind = kind
        self.required = required
        self.nullable = nullable
        self.name = ""
        self.owner: type[Declared] | None = None

    def __set_name__(self, owner: type[Declared], name: str) -> None:
        self.name = name
        self.owner = owner

    def admits(self, value: object) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, bool) and self.kind is not bool:
            return False  # JSON's true is not a number
        return isinstance(value, self.kind)

    def __repr__(self) -> str:
        owner = self.owner.TYPE if self.owner is not None else "?"
        return f"<field {self.name} of {owner}>"


class Declared:
    """Base of the entry type declarations; never instantiated."""

    TYPE: ClassVar[str]
    FIELDS: ClassVar[Mapping[str, Field[Any]]]

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls.FIELDS = {name: f for name, f in vars(cls).items() if isinstance(f, Field)}
        if not TYPE_NAME.fullmatch(cls.TYPE) or cls.TYPE in _REGISTRY:
            raise TypeError(f"entry type {cls.TYPE!r} is malformed or declared twice")
        if ENVELOPE & cls.FIELDS.keys():
            raise TypeError(f"entry type {cls.TYPE!r} declares envelope fields")
        _REGISTRY[cls.TYPE] = cls


def all_types() -> tuple[type[Declared], ...]:
    """Every declared entry type, in declaration order."""
    return tuple(_REGISTRY.values())


def check(name: str, fields: Mapping[str, Any]) -> None:
    """TypeError unless `fields` are what entry type `name` declares (see the docstring)."""
    cls = _REGISTRY.get(name)
    if cls is None:
        raise TypeError(
            f"ledger entry type {name!r} is not declared in runner.audit.entries "
            f"(declared: {', '.join(sorted(_REGISTRY))})"
        )
    unknown = sorted(set(fields) - cls.FIELDS.keys())
    if unknown:
        raise TypeError(
            f"ledger entry {name!r} has undeclared fields {unknown} "
            f"(declared: {', '.join(cls.FIELDS)})"
        )
    missing = [key for key, f in cls.FIELDS.items() if f.required and key not in fields]
    if missing:
        raise TypeError(f"ledger entry {name!r} lacks required fields {missing}")
    for key, value in fields.items():
        field = cls.FIELDS[key]
        if not field.admits(value):
            wanted = field.kind.__name__ + (" or null" if field.nullable else "")
            raise TypeError(
                f"ledger entry {name!r}: field {key!r} is {value.__class__.__name__}, not {wanted}"
            )


class Entry:
    """One entry as read back from the ledger, read through the declarations."""

    __slots__ = ("raw",)

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw

    @property
    def type(self) -> str | None:
        return _of(self.raw.get("type"), str)

    @property
    def run_id(self) -> str | None:
        return _of(self.raw.get("run_id"), str)

    @property
    def seq(self) -> int | None:
        return _of(self.raw.get("seq"), int)

    @property
    def ts(self) -> int | None:
        """Unix milliseconds."""
        return _of(self.raw.get("ts"), int)

    @property
    def log(self) -> str | None:
        return _of(self.raw.get("log"), str)

    @property
    def prev(self) -> str | None:
        return _of(self.raw.get("prev"), str)

    def is_a(self, cls: builtins.type[Declared]) -> bool:
        return self.type == cls.TYPE

    def get(self, field: Field[T]) -> T | None:
        """The field's value; None when absent, null or of another type."""
        if field.owner is None or not self.is_a(field.owner):
            raise TypeError(f"{field!r} read from a {self.type!r} entry")
        value = self.raw.get(field.name)
        return value if value is not None and field.admits(value) else None

    def fields(self) -> dict[str, Any]:
        """Everything but the envelope, as stored (declared or not)."""
        return {key: value for key, value in self.raw.items() if key not in ENVELOPE}


def _of(value: object, kind: type[T]) -> T | None:
    if isinstance(value, bool) and kind is not bool:
        return None
    return value if isinstance(value, kind) else None


# ---------------------------------------------------------------------- the declarations


class RunStarted(Declared):
    TYPE = "run.started"
    mission = Field(str)
    mission_path = Field(str)
    mission_digest = Field(str)
    policy_digest = Field(str)
    event = Field(str)
    commit = Field(str)  # "" outside a git repository
    invoker = Field(str)
    runner_version = Field(str)
    ref = Field(str, required=False)  # the ref policy rules matched ("" when unknown)
    catalog_digest = Field(str, required=False)  # the tool catalog's (Catalog.full_digest)
    trusted = Field(list, required=False)  # where the policy and catalog came from (Origin)


class PolicyChanged(Declared):
    TYPE = "policy.changed"
    policy_digest = Field(str)
    patch = Field(list)  # RFC 6902 operations from the last recorded policy
    policy = Field(dict)  # the whole new document


class PolicyDecision(Declared):
    TYPE = "policy.decision"
    mission = Field(str)
    policy_digest = Field(str)
    allowed = Field(bool)
    decisions = Field(list)  # the denials (at most 100), Decision.serialize() of each
    counts = Field(dict, required=False)  # {"allowed": N, "denied": N}
    decisions_sha256 = Field(str, required=False)  # of every decision, serialized in order
    grants = Field(list, required=False)  # each distinct (capability, value, rule) allowed


class StepStarted(Declared):
    TYPE = "step.started"
    job = Field(str)
    step = Field(int)
    name = Field(str)
    attempt = Field(int)
    image = Field(str)
    image_digest = Field(str)
    config_digest = Field(str)  # of the backend-neutral container configuration


class StepPlaced(Declared):
    TYPE = "step.placed"
    job = Field(str)
    step = Field(int)
    attempt = Field(int)
    backend = Field(str)
    node = Field(str)
    pod = Field(str)
    pod_spec_digest = Field(str)  # SHA-256 of the pod's manifest (it holds no env value)
    image = Field(str)  # the reference the pod ran: a registry digest, or a loaded tag
    image_digest = Field(str)


class StepFinished(Declared):
    TYPE = "step.finished"
    job = Field(str)
    step = Field(int)
    name = Field(str)
    status = Field(str)
    reason = Field(str)
    exit_code = Field(int, nullable=True)  # null: it never ran
    duration_ms = Field(int)
    attempts = Field(int)
    log_sha256 = Field(str, required=False)  # of the redacted output; absent: never ran


class ArtifactStored(Declared):
    TYPE = "artifact.stored"
    job = Field(str)
    name = Field(str)
    path = Field(str)
    sha256 = Field(str)
    size = Field(int)


class CacheRestored(Declared):
    TYPE = "cache.restored"
    job = Field(str)
    key = Field(str)
    matched = Field(str)  # the key of the entry placed (a restore key's match)
    event = Field(str)  # the scope it was saved in
    ref = Field(str)
    sha256 = Field(str)  # runner.run.cache.entry_digest


class CacheSaved(Declared):
    TYPE = "cache.saved"
    job = Field(str)
    key = Field(str)
    event = Field(str)
    ref = Field(str)
    sha256 = Field(str)
    size = Field(int)


class CacheEvicted(Declared):
    TYPE = "cache.evicted"
    key = Field(str)
    event = Field(str)
    ref = Field(str)
    sha256 = Field(str)  # the entry's, as `cache.saved` recorded it
    size = Field(int)
    last_used = Field(int)  # Unix time it was saved or last restored
    reason = Field(str)  # unused (for --cache-days) or size (over --cache-max-size)


class ServiceStarted(Declared):
    TYPE = "service.started"
    job = Field(str)
    service = Field(str)
    image = Field(str)
    image_digest = Field(str)
    config_digest = Field(str)
    health = Field(str)


class ServiceStopped(Declared):
    TYPE = "service.stopped"
    job = Field(str)
    service = Field(str)
    image = Field(str)
    image_digest = Field(str)


class JobFinished(Declared):
    TYPE = "job.finished"
    job = Field(str)
    status = Field(str)
    reason = Field(str)
    duration_ms = Field(int)


class VerifySummary(Declared):
    TYPE = "verify.summary"
    checks = Field(list)


class RunFinished(Declared):
    TYPE = "run.finished"
    result = Field(str)
    reason = Field(str)
    duration_ms = Field(int, required=False)  # these three are absent when the policy
    events_sha256 = Field(str, required=False)  # denied the run: nothing ran
    artifacts = Field(list, required=False)


class KeyRotated(Declared):
    TYPE = "key.rotated"
    old = Field(str)  # verifier keys (`<name>+<hash>+<base64 key>`)
    new = Field(str)


class KeyRevoked(Declared):
    TYPE = "key.revoked"
    key = Field(str)
    by = Field(str)
    reason = Field(str)


class Recovery(Declared):
    TYPE = "recovery"
    file = Field(str)  # entries.jsonl or checkpoints
    offset = Field(int)
    length = Field(int)
    sha256 = Field(str)
    quarantined = Field(str)  # where the torn bytes were kept


class GcPruned(Declared):
    TYPE = "gc.pruned"
    runs = Field(list)
    containers = Field(int)
    volumes = Field(int)


class ImageBuilt(Declared):
    TYPE = "image.built"
    name = Field(str)  # containers/<name>
    tag = Field(str)
    image_id = Field(str)  # the engine's content id (sha256:...)
    context_sha256 = Field(str)  # of the build context, as the tag says
    bases = Field(list)  # the images its Dockerfile used (FROM, COPY --from)
    network = Field(bool)  # built with the network (the policy's build.network)


class EngineConnected(Declared):
    TYPE = "engine.connected"
    backend = Field(str)  # "kubernetes"
    server_version = Field(str)  # the cluster's (git version)
    server = Field(str, required=False)  # the API server's address
    namespace = Field(str, required=False)
    images = Field(str, required=False)  # how images reached it: "registry" or "node"
    network_policy = Field(str, required=False)  # enforced, or what runner did instead
    termination_log = Field(str, required=False)  # checked, or exempted by the policy
