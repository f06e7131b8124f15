"""What each job instance asks for: the capabilities the policy must grant before it runs.

One job instance (after matrix expansion, `runner.mission.plan`) asks for:

    image       its container (`container:`; else its `runs-on` label's image in the
                policy's `runs-on:` map; else `base`), resolved per matrix value; and
                each service's (`services.<name>.image`: `service_of` tells them apart)
    tool        each entry of `tools:` (`${{ matrix.NAME }}` resolved per instance, as
                images are)                       tools-all   `tools: all`
    network     `permissions.network: egress`     exec        `permissions.exec: true`
    secret      each `permissions.secrets` entry and each `secrets.NAME` its expressions read
    resource    each `timeout-minutes` (job or step) it declares
    uses        each step's `uses:` (and a job-level reusable-workflow `uses:`)

`Kind` names them. Every place that must know each kind handles it with `match` and
`typing.assert_never`, so that a new member fails mypy until it is parsed (`policy.loader`
and `Rule`), granted (`Rule.grants`, `policy.decisions.granted`), explained
(`policy.decisions`) and diffed (`policy.diff`).

A request that cannot be known before the run (an image from a matrix computed at run
time, `secrets[expr]`, `toJSON(secrets)`, a timeout from an input) is `unresolved`: the
policy denies it, whatever it grants. Some requests need no grant and are marked
`builtin`: the actions runner runs itself (`BUILTIN_ACTIONS`: `actions/checkout`, the
workspace already is the checkout; `actions/upload-artifact` and `download-artifact`, on
the run's artifact store; `actions/cache`, on runner's cache, `runner.run.cache`) and `secrets.GITHUB_TOKEN` (it means nothing here and evaluates
to empty).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from runner import expressions
from runner.engine.images import is_image_reference as is_image_reference  # for the policy
from runner.expressions import find_expressions
from runner.expressions import parser as ep
from runner.mission import actions
from runner.mission.model import Job, Mission, container_problem
from runner.mission.plan import JobInstance, instances
from runner.mission.services import CREDENTIALS_REFUSED
from runner.secrets.sources import GITHUB_TOKEN, GITHUB_TOKEN_NOTE

DEFAULT_IMAGE = "base"
DYNAMIC_SECRET = "*"

_FIELD_KEYS = {"with_": "with", "if_": "if", "delay_s": "delay", "max_delay_s": "max-delay"}
_BARE_EXPRESSION_FIELDS = frozenset({"if_"})  # `if:` may be written without ${{ }}
_SECRETS = "secrets"
_UNKNOWN = "it cannot be known before the run"


class Kind(enum.StrEnum):
    """What a job may ask for. The order is the order `policy diff` lists grants in."""

    IMAGE = "image"
    TOOL = "tool"
    USES = "uses"
    SECRET = "secret"
    NETWORK = "network"
    EXEC = "exec"
    TOOLS_ALL = "tools-all"
    RESOURCE = "resource"


@dataclass(frozen=True)
class Capability:
    kind: Kind
    value: str
    keypath: str  # where in the mission it is asked for
    refused: str = ""  # non-empty: why it is denied whatever the policy grants
    builtin: str = ""  # non-empty: why it needs no grant
    minutes: float | None = None  # resource: the requested timeout


# ---------------------------------------------------------------------- expressions


def expression_sources(text: str, *, bare: bool = False) -> list[str] | None:
    """The inner sources of the expressions in `text`; None when they cannot be read."""
    try:
        found = [source for _, source in find_expressions(text)]
    except ep.ExpressionError:
        return None
    if bare and not found and text.strip():
        return [text]
    return found


def _first_key(accessors: tuple[ep.Accessor, ...]) -> str | None:
    """The name the first accessor reads (`.NAME` or `['NAME']`); None when computed."""
    if not accessors:
        return None
    first = accessors[0]
    if isinstance(first, ep.Prop):
        return first.name
    if isinstance(first, ep.Index) and isinstance(first.expr, ep.Literal):
        return first.expr.value if isinstance(first.expr.value, str) else None
    return None


@functools.lru_cache(maxsize=16384)
def context_reads(source: str, name: str) -> tuple[str | None, ...] | None:
    """The keys one expression reads from context `name` (None: the whole context or a
    computed key); None when the source does not parse."""
    try:
        members = expressions.referenced_members(source, name, bare=True)
    except ep.ExpressionError:
        return None
    return tuple(None if m == "*" else m for m in sorted(members))


def secret_names(text: str, *, bare: bool = False) -> list[str]:
    """Secret names `text` reads, upper-cased (lookups are case-insensitive, as GitHub's).

    `DYNAMIC_SECRET` stands for a read that cannot be named statically: `secrets[expr]`,
    `toJSON(secrets)`, or an expression that does not parse but mentions `secrets`.
    """
    if _SECRETS not in text.lower():
        return []
    sources = expression_sources(text, bare=bare)
    if sources is None:
        return [DYNAMIC_SECRET]
    names: list[str] = []
    for source in sources:
        if _SECRETS not in source.lower():
            continue
        reads = context_reads(source, _SECRETS)
        if reads is None:
            names.append(DYNAMIC_SECRET)
            continue
        names.extend(DYNAMIC_SECRET if key is None else key.upper() for key in reads)
    return names


def resolve(text: str, matrix: Mapping[str, Any], *, dynamic: bool) -> tuple[str, str]:
    """`text` with its `${{ matrix.* }}` expressions resolved: (value, "") or ("", why not).

    Only the `matrix` context is known before the run; anything else is unresolved.
    """
    value, why = _resolve(text, matrix, dynamic=dynamic)
    return (value, "") if not why else ("", why)


def _resolve(text: str, matrix: Mapping[str, Any], *, dynamic: bool) -> tuple[str, str]:
    try:
        found = find_expressions(text)
    except ep.ExpressionError as exc:
        return "", f"it does not parse: {exc.message}"
    if not found:
        return text, ""
    if dynamic:
        return "", f"{_UNKNOWN}: the matrix is computed at run time"
    out: list[str] = []
    last = 0
    for offset, source in found:
        value, why = _resolve_one(source, matrix)
        if why:
            return "", why
        out.append(text[last:offset])
        out.append(value)
        last = text.find("}}", offset + 3 + len(source)) + 2
    out.append(text[last:])
    result = "".join(out)
    if not result.strip():
        return "", "it resolves to an empty value"
    if "${{" in result:
        return "", "it resolves to another expression"
    return result, ""


def _resolve_one(source: str, matrix: Mapping[str, Any]) -> tuple[str, str]:
    try:
        tree = ep.parse(source)
    except ep.ExpressionError as exc:
        return "", f"it does not parse: {exc.message}"
    plain = (
        f"{_UNKNOWN}: only plain matrix values (`${{{{ matrix.NAME }}}}`) are resolved before it"
    )
    if not isinstance(tree, ep.Access) or not isinstance(tree.base, ep.Context):
        return "", plain
    if tree.base.name.lower() != "matrix":
        return "", f"{_UNKNOWN}: it reads `{tree.base.name}`"
    value: Any = matrix
    for accessor in tree.accessors:
        key = _first_key((accessor,))
        if key is None or not isinstance(value, Mapping):
            return "", plain
        lowered = {str(k).lower(): v for k, v in value.items()}
        if key.lower() not in lowered:
            return "", f"this matrix instance has no value for `{source.strip()}`"
        value = lowered[key.lower()]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return "", f"matrix value `{source.strip()}` is not a string or number"
    return str(value), ""


# ---------------------------------------------------------------------- walking records


def _key(name: str) -> str:
    return _FIELD_KEYS.get(name, name.replace("_", "-"))


@functools.cache
def _fields_of(cls: type) -> tuple[tuple[str, str, bool], ...]:
    """(attribute, YAML key, is a bare `if:`) of a record class, without ids and positions."""
    return tuple(
        (f.name, _key(f.name), f.name in _BARE_EXPRESSION_FIELDS)
        for f in dataclasses.fields(cls)
        if f.name not in ("id", "index", "positions")
    )


def strings(record: Any, keypath: str) -> Iterator[tuple[str, str, bool]]:
    """Every string in a record, with its key path and whether it is a bare `if:`."""
    if isinstance(record, str):
        yield keypath, record, False
    elif record is None or isinstance(record, bool | int | float):
        return
    elif isinstance(record, dict | Mapping):
        for key, value in record.items():
            yield from strings(value, f"{keypath}.{key}" if keypath else str(key))
    elif isinstance(record, tuple | list):
        for i, value in enumerate(record):
            yield from strings(value, f"{keypath}[{i}]")
    elif dataclasses.is_dataclass(record) and not isinstance(record, type):
        for name, key, bare in _fields_of(type(record)):
            value = getattr(record, name)
            if value is None or isinstance(value, bool | int | float):
                continue
            path = f"{keypath}.{key}" if keypath else key
            if bare and isinstance(value, str):
                yield path, value, True
            else:
                yield from strings(value, path)


# ---------------------------------------------------------------------- extraction


def _secret_requests(mission: Mission, job: Job) -> list[tuple[str, str]]:
    return list(_iter_secret_requests(mission, job))


def _iter_secret_requests(mission: Mission, job: Job) -> Iterator[tuple[str, str]]:
    """(NAME, keypath) of every secret the job asks for, permissions first."""
    if job.permissions is not None:
        base = f"jobs.{job.id}.permissions.secrets"
    else:
        base = "permissions.secrets"
    perms = mission.job_permissions(job)
    for i, name in enumerate(perms.secrets):
        yield name.upper(), f"{base}[{i}]"
    places = [*strings(mission.env, "env"), *strings(job, f"jobs.{job.id}")]
    for keypath, text, bare in places:
        for name in secret_names(text, bare=bare):
            yield name, keypath


def _uses_capability(value: str, keypath: str) -> Capability:
    if "${{" in value:
        return Capability(Kind.USES, value, keypath, refused="`uses:` cannot hold an expression")
    if value.startswith("./"):
        normal = posixpath.normpath(value)
        if normal.startswith("..") or "/../" in f"/{value}/" or "//" in value:
            return Capability(
                Kind.USES,
                value,
                keypath,
                refused="a local action path must stay inside the repository (no `..`)",
            )
        return Capability(Kind.USES, value, keypath)
    name, _, _ = value.partition("@")
    why = BUILTIN_ACTIONS.get(name.lower())
    if not why and "@" in value and actions.setup_of(value) is not None:
        why = f"{name} is built in: its version selects the job's image (`toolchains:`)"
    if why:
        return Capability(Kind.USES, value, keypath, builtin=why)
    return Capability(Kind.USES, value, keypath)


def _timeout(value: float | str | None, keypath: str, inst: JobInstance) -> Capability | None:
    if value is None:
        return None
    if isinstance(value, str):
        text, why = resolve(value, inst.matrix, dynamic=inst.dynamic)
        try:
            minutes = float(text) if not why else None
        except ValueError:
            minutes, why = None, f"{text!r} is not a number of minutes"
        if minutes is None:
            return Capability(Kind.RESOURCE, f"timeout-minutes={value}", keypath, refused=why)
        value = minutes
    return Capability(Kind.RESOURCE, f"timeout-minutes={value:g}", keypath, minutes=float(value))


def job_capabilities(
    mission: Mission,
    inst: JobInstance,
    secrets: list[tuple[str, str]] | None = None,
    runs_on: Mapping[str, str] | None = None,
    toolchains: Mapping[tuple[str, str], str] | None = None,
) -> list[Capability]:
    """Every capability one job instance asks for, in a stable order, each value once.

    `secrets`: the job's secret requests when already known (they do not depend on the
    matrix instance). `runs_on`: the policy's runner label -> image map; a job without
    `container:` whose first mapped `runs-on` label (after `${{ matrix.X }}`) is in it asks
    for that image (at `runs-on`), else for `base`. `toolchains`: the policy's (toolchain,
    version) -> image map; a job without `container:` whose setup actions (`setup-python`
    ...) ask for versions asks for the one image they map to, before its label's, and is
    refused, saying what to add, when one is not mapped or they map to different images."""
    job = inst.job
    if secrets is None:
        secrets = _secret_requests(mission, job)
    jp = f"jobs.{job.id}"
    caps: list[Capability] = []
    # image
    raw, where = job.container, f"{jp}.container"
    toolchain = _toolchain_image(job, inst, jp, toolchains or {}) if raw is None else None
    if toolchain is not None and toolchain.refused:
        caps.append(toolchain)
    elif toolchain is not None:
        raw, where = toolchain.value, toolchain.keypath
    if raw is None and toolchain is None:
        for label in job.runs_on:
            resolved, unknown = resolve(label, inst.matrix, dynamic=inst.dynamic)
            if not unknown and resolved in (runs_on or {}):
                raw, where = (runs_on or {})[resolved], f"{jp}.runs-on"
                break
    raw = raw if raw is not None else DEFAULT_IMAGE
    image, why = resolve(raw, inst.matrix, dynamic=inst.dynamic)
    if not why:
        why = container_problem(image) or ""
    if toolchain is None or not toolchain.refused:
        caps.append(Capability(Kind.IMAGE, image or raw, where, refused=why))
    # tools
    if job.tools == "all":
        caps.append(Capability(Kind.TOOLS_ALL, "all", f"{jp}.tools"))
    else:
        for i, tool in enumerate(job.tools):
            name, why = resolve(tool, inst.matrix, dynamic=inst.dynamic)
            if not why and not _TOOL_NAME.fullmatch(name):
                why = f"{name!r} (from {tool}) is not a tool name"
            caps.append(Capability(Kind.TOOL, name or tool, f"{jp}.tools[{i}]", refused=why))
    # network, secrets, exec
    perms = mission.job_permissions(job)
    pp = f"{jp}.permissions" if job.permissions is not None else "permissions"
    if perms.network == "egress":
        caps.append(Capability(Kind.NETWORK, "egress", f"{pp}.network"))
    for name, keypath in secrets:
        if name == DYNAMIC_SECRET:
            caps.append(
                Capability(
                    Kind.SECRET,
                    name,
                    keypath,
                    refused="the secret read here cannot be known before the run (secrets[...] "
                    "or the whole secrets context); name each secret as secrets.NAME",
                )
            )
        elif name == GITHUB_TOKEN:
            caps.append(
                Capability(
                    Kind.SECRET,
                    name,
                    keypath,
                    builtin=GITHUB_TOKEN_NOTE,
                )
            )
        else:
            caps.append(Capability(Kind.SECRET, name, keypath))
    if perms.exec:
        caps.append(Capability(Kind.EXEC, "workspace", f"{pp}.exec"))
    # resources
    timeouts = [_timeout(job.timeout_minutes, f"{jp}.timeout-minutes", inst)]
    for step in job.steps:
        timeouts.append(
            _timeout(step.timeout_minutes, f"{jp}.steps[{step.index}].timeout-minutes", inst)
        )
    caps.extend(cap for cap in timeouts if cap is not None)
    # uses
    if job.uses is not None:
        caps.append(_uses_capability(job.uses, f"{jp}.uses"))
    for step in job.steps:
        if step.uses is not None:
            cap = _uses_capability(step.uses, f"{jp}.steps[{step.index}].uses")
            if actions.kind_of(step.uses) is actions.ActionKind.HARDEN_RUNNER:
                cap = _harden_runner(cap, step.with_, perms.network == "egress")
            caps.append(cap)
    return [*_dedupe(caps), *_service_images(job, inst, jp)]


def _service_images(job: Job, inst: JobInstance, jp: str) -> list[Capability]:
    """The image of each of the job's services (`services.<name>.image`, its matrix values
    resolved), decided like the job's own, and `tools-all` for each (at
    `services.<name>`: a service's image is not cut to the job's tools, so it needs that
    grant; the job's steps stay cut); one with `credentials:` refused, since runner
    logs in to no registry. Each service keeps its own decision, even when two share an
    image (`granted` maps each service's name to its image)."""
    caps = []
    for name, service in job.services.items():
        keypath = f"{jp}.services.{name}.image"
        image, why = resolve(service.image, inst.matrix, dynamic=inst.dynamic)
        if not why:
            why = container_problem(image) or ""
        if not why and service.credentials:
            keypath, why = f"{jp}.services.{name}.credentials", CREDENTIALS_REFUSED
        caps.append(Capability(Kind.IMAGE, image or service.image, keypath, refused=why))
        # a service runs its image whole (its own program, or the mission's entrypoint and
        # command), never cut to the job's tools: the audited exception `tools: all` is
        caps.append(Capability(Kind.TOOLS_ALL, "all", f"{jp}.services.{name}"))
    return caps


_SERVICE_KEYPATH = re.compile(r"jobs\.[^.]+\.services\.([A-Za-z0-9_-]+)\.(?:image|credentials)")


def service_of(keypath: str) -> str | None:
    """The service whose image a decision at `keypath` is about; None for the job's."""
    found = _SERVICE_KEYPATH.fullmatch(keypath)
    return found.group(1) if found else None


def _harden_runner(cap: Capability, with_: Mapping[str, str], egress: bool) -> Capability:
    """step-security/harden-runner: built in as nothing to do, since runner's steps run
    hardened with no network unless granted; refused where it would block egress to its
    `allowed-endpoints` in a job granted egress (runner cannot narrow a grant)."""
    policy = with_.get("egress-policy", "audit").strip() or "audit"
    if policy == "block" and egress:
        return dataclasses.replace(
            cap,
            refused="harden-runner's `egress-policy: block` allows only its "
            "`allowed-endpoints`, but runner grants a job all egress or none, so it cannot "
            "keep that promise: drop `network: egress` from the job, or the step",
        )
    return dataclasses.replace(
        cap,
        builtin="step-security/harden-runner is built in as nothing to do: runner's steps "
        "already run hardened, with no network unless the policy grants it",
    )


def _dedupe(caps: list[Capability]) -> list[Capability]:
    seen: set[tuple[Kind, str]] = set()
    result = []
    for cap in caps:
        if (cap.kind, cap.value) not in seen:
            seen.add((cap.kind, cap.value))
            result.append(cap)
    return result


def _toolchain_image(
    job: Job, inst: JobInstance, jp: str, toolchains: Mapping[tuple[str, str], str]
) -> Capability | None:
    """The image the job's setup actions select (its `value`; `keypath` the first setup
    step's), a refused image request saying what to add, or None without setup actions."""
    chosen: list[tuple[str, str, str, str]] = []  # (toolchain, version, image, keypath)
    for step in job.steps:
        setup = actions.setup_of(step.uses) if step.uses and "@" in step.uses else None
        if setup is None or step.uses is None:
            continue
        keypath = f"{jp}.steps[{step.index}].uses"
        asked = actions.requested_version(step.uses, step.with_)
        version, why = resolve(asked, inst.matrix, dynamic=inst.dynamic)
        wanted = f"{setup.name} {version or asked}"
        if why:
            return Capability(Kind.IMAGE, wanted, keypath, refused=why)
        image = toolchains.get((setup.name, version))
        if image is None:
            known = sorted(v for name, v in toolchains if name == setup.name)
            listed = f" (it maps {setup.name} {', '.join(known)})" if known else ""
            return Capability(
                Kind.IMAGE,
                wanted,
                keypath,
                refused=f"no image in the policy's `toolchains:` provides {wanted}{listed}: "
                f'add `toolchains: {{{setup.name}: {{"{version}": IMAGE}}}}` to the policy, '
                "IMAGE one it allows that has it on PATH",
            )
        chosen.append((setup.name, version, image, keypath))
    if not chosen:
        return None
    images = {image for _, _, image, _ in chosen}
    if len(images) > 1:
        asked_for = ", ".join(f"{n} {v} -> {i}" for n, v, i, _ in chosen)
        return Capability(
            Kind.IMAGE,
            " + ".join(f"{n} {v}" for n, v, _, _ in chosen),
            chosen[0][3],
            refused=f"a job runs in one image, but its setup actions map to several "
            f"({asked_for}): map these versions to one image that has them all",
        )
    return Capability(Kind.IMAGE, chosen[0][2], chosen[0][3])


def mission_capabilities(
    mission: Mission,
    runs_on: Mapping[str, str] | None = None,
    toolchains: Mapping[tuple[str, str], str] | None = None,
) -> list[tuple[JobInstance, list[Capability]]]:
    """Each job instance of the mission (plan order) with what it asks for (`runs_on`: see
    `job_capabilities`); an instance that is `skipped` (a Windows or macOS runner label)
    never runs, so asks for nothing."""
    found: list[tuple[JobInstance, list[Capability]]] = []
    for insts in instances(mission).values():
        secrets = _secret_requests(mission, insts[0].job) if insts else []
        found.extend(
            (inst, job_capabilities(mission, inst, secrets, runs_on, toolchains))
            for inst in insts
            if not inst.skipped
        )
    return found


BUILTIN_ACTIONS = {  # runner runs these itself, with no network: no grant needed
    "actions/checkout": "actions/checkout is built in: the workspace already is the checkout",
    "actions/upload-artifact": "actions/upload-artifact is built in: it stores a run artifact",
    "actions/download-artifact": "actions/download-artifact is built in: it places a run artifact",
    "actions/cache": "actions/cache is built in: runner's own cache, scoped by event and ref",
    "actions/cache/restore": "actions/cache/restore is built in: it restores from runner's cache",
    "actions/cache/save": "actions/cache/save is built in: it saves to runner's cache",
}
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_TOOL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*")


def is_pinned(image: str) -> bool:
    return bool(_DIGEST.search(image))
