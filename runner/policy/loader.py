"""Reading a policy file, failing closed (SPEC 5; the format is in docs/policy.md).

    load_policy(path, root) -> Policy
    missing, unreadable, empty, or not a mapping   -> a deny-all Policy saying why
    malformed YAML, unknown key, bad value,
    another version, duplicate rule names          -> InvalidPolicy (exit 2), every problem
                                                      as `path:line:col: keypath: message`

A policy is never read as a looser one. The YAML is read by `runner.mission.yaml_loader`
(YAML 1.2 core, no tags, no duplicate keys) and checked against the Cerberus schema
`schemas/policy.yml` (`runner.schemas`); a rule's `allow:` becomes a `Rule`, one field per
capability kind (`runner.policy.model.allow_key`).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cerberus
import yaml

from runner.durable import json_digest
from runner.engine.images import BuildRules
from runner.errors import InvalidMission, InvalidPolicy
from runner.findings import Finding, sort_findings
from runner.mission.schema import validation_errors
from runner.mission.yaml_loader import parse_yaml
from runner.policy.capabilities import Kind
from runner.policy.model import (
    BASE,
    BUILTIN,
    RULE,
    VERSION,
    LimitRaise,
    Limits,
    Policy,
    Rule,
    allow_key,
)
from runner.policy.security_checks import SecurityCheck
from runner.repo_files import RepoFileError, shown
from runner.trusted import POLICY_PATH, TrustedSource

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_MEMORY = re.compile(r"(?i)^([0-9]+) ?([bkmgt]?)(?:i?b)?$")
_MIN_MEMORY = 6 * 1024**2  # Docker refuses less
_MAX_MEMORY = 1024**5
# the smallest workspace quota (an ext4 filesystem of that size) and artifact bound
_MIN_SIZES = {"workspace-size": 16 * 1024**2, "artifact-size": 1024**2}


class PolicyValidator(cerberus.Validator):  # type: ignore[misc]
    types_mapping = cerberus.Validator.types_mapping.copy()
    types_mapping["count"] = cerberus.TypeDefinition("count", (int,), (bool,))
    types_mapping["real"] = cerberus.TypeDefinition("real", (int, float), (bool,))


@functools.cache
def schema() -> dict[str, Any]:
    text = importlib.resources.files("runner.schemas").joinpath("policy.yml").read_text("utf-8")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


_MAX_INT = 2**53 - 1


def ledger_safe(value: Any) -> Any:
    """The policy document as the ledger can store it (its canonical JSON has no floats):
    an integral float becomes an int; another float, or an int beyond 2**53, its text."""
    if isinstance(value, dict):
        return {k: ledger_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [ledger_safe(v) for v in value]
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) <= _MAX_INT else repr(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_INT:
        return str(value)
    return value


def deny_all(display: str, why: str) -> Policy:
    return Policy(path=display, document={}, digest=json_digest({}), denied=why)


def load_policy(path: Path | None, root: Path) -> Policy:
    """The policy at `path` (default `root/policies/default.yml`), failing closed."""
    return load_trusted_policy(TrustedSource(root, policy=path))


def load_trusted_policy(source: TrustedSource) -> Policy:
    """The policy `source` says (the working tree's, a ref's, or the invoker's file),
    failing closed; `Policy.origin` says where it came from."""
    hint = "write one (see docs/policy.md)"
    try:
        loaded = source.policy_file()
    except RepoFileError as exc:
        where = source.policy if source.policy is not None else POLICY_PATH
        display = shown(str(where))
        return deny_all(
            display, f"cannot read the policy {display} ({exc.problem}): everything is denied"
        )
    origin = loaded.origin
    display = shown(origin.path)
    data = loaded.data
    if data is None:
        return replace(
            deny_all(display, f"no policy at {display}: everything is denied; {hint}"),
            origin=origin,
        )
    kind = _top_level(data)
    if kind == "empty":
        why = f"the policy {display} is empty: everything is denied; {hint}"
        return replace(deny_all(display, why), origin=origin)
    if kind != "mapping":
        why = f"the policy {display} is {kind}, not a mapping: everything is denied; {hint}"
        return replace(deny_all(display, why), origin=origin)
    try:
        doc = parse_yaml(data, display)
    except InvalidMission as exc:
        raise _invalid(display, list(exc.findings)) from None
    return replace(_build(display, doc.value, doc.at, doc.key_at), origin=origin)


def _top_level(data: bytes) -> str:
    """ "empty", "mapping", or what else the document is ("mapping" when it does not parse:
    the strict loader then says why)."""
    try:
        node = yaml.compose(data, Loader=yaml.BaseLoader)
    except yaml.YAMLError:
        return "mapping"
    if node is None:
        return "empty"
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    if isinstance(node, yaml.ScalarNode):
        return "empty" if node.value.strip() in ("", "~", "null", "Null", "NULL") else "a scalar"
    return "a list"


def _invalid(display: str, findings: Sequence[Finding]) -> InvalidPolicy:
    count = len(findings)
    return InvalidPolicy(
        f"{display}: {count} problem{'s' if count != 1 else ''} in the policy; it is not used "
        "(nothing runs until it is fixed)",
        sort_findings(findings),
    )


def _keypath(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out = f"{out}[{part}]" if isinstance(part, int) else (f"{out}.{part}" if out else str(part))
    return out


def _message(error: Any) -> str:
    code, value, constraint = error.code, error.value, error.constraint
    if code == 0x03:
        return "unknown key; a policy holds only the keys documented in docs/policy.md"
    if code == 0x02:
        return "required key is missing"
    if code == 0x24:
        kinds = constraint if isinstance(constraint, list) else [constraint]
        names = {"count": "an integer", "real": "a number", "dict": "a mapping", "list": "a list"}
        wanted = " or ".join(names.get(k, f"a {k}") for k in kinds)
        return f"must be {wanted}, not {json.dumps(value, default=str)}"
    if code == 0x44:
        allowed = ", ".join(str(c) for c in constraint)
        return f"{json.dumps(value, default=str)} is not allowed; one of: {allowed}"
    if code == 0x41:
        return f"{json.dumps(value)} is not a valid value here"
    if code in (0x42, 0x43):
        return f"{value} is {'below' if code == 0x42 else 'above'} the bound {constraint}"
    if code == 0x22:
        return "must not be empty"
    return str(cerberus.errors.BasicErrorHandler.messages.get(code, "invalid value")).format(
        constraint=constraint, value=value, field=error.field
    )


def _leaves(errors: Iterable[Any]) -> Iterable[Any]:
    for error in errors:
        if error.is_group_error:
            yield from _leaves(error.child_errors)
        else:
            yield error


def _build(display: str, doc: dict[str, Any], at: Any, key_at: Any) -> Policy:
    findings: list[Finding] = []

    def problem(keypath: str, message: str, *, key: bool = False) -> None:
        line, col = key_at(keypath) if key else at(keypath)
        findings.append(Finding(display, line, col, message, RULE, keypath))

    version = doc.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version != VERSION:
        problem("version", f"unsupported policy version {version}; this runner reads version 1")
    validator = PolicyValidator(schema())
    if not validator.validate(doc):
        for error in _leaves(validation_errors(validator)):
            problem(_keypath(error.document_path), _message(error), key=error.code == 0x03)
    limits = Limits()
    build = BuildRules()
    if not findings:
        limits = _base_limits(_limits(doc.get("limits") or {}, "limits", problem))
        limits = _storage_limits(doc.get("limits") or {}, limits, problem)
        build = _build_rules(doc.get("build") or {}, limits, problem)
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    raw_rules = (doc.get("rules") or []) if not findings else []
    for i, raw in enumerate(raw_rules):
        name = raw["name"]
        if name in (BASE, BUILTIN):
            problem(f"rules[{i}].name", f'"{name}" is reserved; give the rule another name')
        if name in seen:
            problem(
                f"rules[{i}].name", f'duplicate rule name "{name}" (first: rules[{seen[name]}])'
            )
        seen.setdefault(name, i)
        allow = raw["allow"]
        match = raw["match"]
        if match.get("mission", "*").strip("*") and not match.get("path", "*").strip("*"):
            problem(
                f"rules[{i}].match.mission",
                "`mission:` matches the name a mission declares, which any file can declare "
                "(a .missions/lint.yml may say `name: release`); match the mission's file "
                f"instead: `path: .missions/{match['mission']}.yml`",
            )
        limits_at = f"rules[{i}].allow.{allow_key(Kind.RESOURCE)}"
        rules.append(
            Rule(
                name=name,
                mission=match.get("mission", "*"),
                job=match["job"],
                path=match.get("path", "*"),
                event=match.get("event", "*"),
                ref=match.get("ref", "*"),
                images=tuple(_allowed(allow, Kind.IMAGE, ())),
                tools=tuple(_allowed(allow, Kind.TOOL, ())),
                uses=tuple(_allowed(allow, Kind.USES, ())),
                secrets=frozenset(s.upper() for s in _allowed(allow, Kind.SECRET, ())),
                network=_allowed(allow, Kind.NETWORK) == "egress",
                exec=_allowed(allow, Kind.EXEC) is True,
                tools_all=_allowed(allow, Kind.TOOLS_ALL) is True,
                limits=_limits(_allowed(allow, Kind.RESOURCE) or {}, limits_at, problem),
                description=raw.get("description", ""),
            )
        )
    if findings:
        raise _invalid(display, findings)
    document = ledger_safe(doc)
    return Policy(
        path=display,
        document=document,
        digest=json_digest(document),
        images=tuple(doc.get("images", ())),
        tools=tuple(doc.get("tools", ())),
        uses=tuple(doc.get("uses", ())),
        limits=limits,
        rules=tuple(rules),
        enforce=frozenset(SecurityCheck(name) for name in doc.get("enforce", ())),
        accept=frozenset(doc.get("accept", ())),
        build=build,
        runs_on=tuple((str(k), str(v)) for k, v in doc.get("runs-on", {}).items()),
        toolchains=tuple(
            (str(name), str(version), str(image))
            for name, versions in doc.get("toolchains", {}).items()
            for version, image in versions.items()
        ),
    )


def _allowed(allow: Mapping[str, Any], kind: Kind, default: Any = None) -> Any:
    """What a validated rule's `allow:` says about `kind`."""
    return allow.get(allow_key(kind), default)


def memory_bytes(value: int | str) -> int | None:
    if isinstance(value, int):
        return value
    match = _MEMORY.match(value.strip())
    return int(match.group(1)) * _UNITS[match.group(2).lower()] if match else None


def _limits(raw: Mapping[str, Any], keypath: str, problem: Any) -> LimitRaise:
    """The limits given in a validated mapping (top-level `limits` or a rule's)."""
    mem = raw.get("memory")
    size = memory_bytes(mem) if mem is not None else None
    if mem is not None and (size is None or size < _MIN_MEMORY):
        problem(f"{keypath}.memory", f"{mem!r} is less than the 6m Docker needs at least")
    elif size is not None and size > _MAX_MEMORY:
        problem(f"{keypath}.memory", f"{mem!r} is more than 1024t; write a real limit")
    return LimitRaise(
        timeout_minutes=float(raw["timeout-minutes"]) if "timeout-minutes" in raw else None,
        memory=str(mem) if mem is not None else None,
        memory_bytes=size,
        cpus=float(raw["cpus"]) if "cpus" in raw else None,
        pids=raw.get("pids"),
        user=raw.get("user"),
    )


def _storage_limits(raw: Mapping[str, Any], limits: Limits, problem: Any) -> Limits:
    """The workspace quota and artifact bounds of the validated top-level `limits`."""

    def size(key: str, default: int) -> int:
        if key not in raw:
            return default
        found = memory_bytes(raw[key])
        if found is None or found < _MIN_SIZES[key]:
            least = _MIN_SIZES[key] // 1024**2
            problem(f"limits.{key}", f"{raw[key]!r} is less than the {least}m it needs")
        elif found > _MAX_MEMORY:
            problem(f"limits.{key}", f"{raw[key]!r} is more than 1024t; write a real limit")
        else:
            return found
        return default

    return replace(
        limits,
        workspace_bytes=size("workspace-size", limits.workspace_bytes),
        artifact_bytes=size("artifact-size", limits.artifact_bytes),
        artifact_files=int(raw.get("artifact-files", limits.artifact_files)),
        artifact_depth=int(raw.get("artifact-depth", limits.artifact_depth)),
    )


def _build_rules(raw: Mapping[str, Any], limits: Limits, problem: Any) -> BuildRules:
    """The validated `build:` key; its limits default to the jobs' (top-level `limits`)."""
    given = _limits(raw.get("limits") or {}, "build.limits", problem)
    return BuildRules(
        bases=tuple(raw.get("from", ())),
        network=tuple(raw.get("network", ())),
        memory_bytes=given.memory_bytes or limits.memory_bytes,
        cpus=given.cpus or limits.cpus,
        timeout_s=(given.timeout_minutes or limits.timeout_minutes) * 60,
    )


def _base_limits(given: LimitRaise) -> Limits:
    limits = Limits()
    if given.timeout_minutes is not None:
        limits = replace(limits, timeout_minutes=given.timeout_minutes)
    if given.memory is not None and given.memory_bytes is not None:
        limits = replace(limits, memory=given.memory, memory_bytes=given.memory_bytes)
    if given.cpus is not None:
        limits = replace(limits, cpus=given.cpus)
    if given.pids is not None:
        limits = replace(limits, pids=given.pids)
    if given.user is not None:
        limits = replace(limits, user=given.user)
    return limits
