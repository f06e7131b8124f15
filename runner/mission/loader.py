"""The one way in for a mission: read -> safe YAML -> Cerberus schema -> semantic checks ->
frozen records (`runner.mission`).

`load_mission(path)` returns `(Mission, warnings_and_notes)` or raises `InvalidMission`
carrying every error of the file at once (YAML, schema and semantic), sorted. The same
function validates GitHub workflows (`.github/workflows/*.yml`).

Choices where the SPEC is silent:
- no `name`: a warning, and the mission is named after its file's stem (a GitHub
  workflow without a name must validate);
- no `on`: `Mission.on == ()`; the mission is selected by no event, only by naming it;
- `env`, `with` and `outputs` values are strings, as on GitHub: numbers, booleans and
  null keep their source text (`1.0` -> "1.0", `true` -> "true", `~` -> "");
- `container:` as a mapping -> its `image`, and its `env` is the job's env under the job's
  own `env` (which wins, as a step's `docker exec` env wins on GitHub);
- `tools` defaults to the shells of the job's run steps (step `shell`, else the job's,
  else the mission's `defaults.run.shell`, else `sh`), first word only: `("sh",)`;
- `permissions: read-all|write-all` -> `github_scopes == {"*": "read"|"write"}`;
- inputs come from the top-level `inputs` (ext), then `on.workflow_dispatch.inputs` and
  `on.workflow_call.inputs`; an `environment` input is a string;
- a matrix given (wholly or in part: an axis, include or exclude) as an expression is
  `Matrix.expression` (its first such text) and is expanded at run time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, cast

from runner import repo_files
from runner.errors import InvalidMission
from runner.findings import Finding, Severity, errors_in, sort_findings
from runner.mission import schema
from runner.mission.checks.checker import Checker
from runner.mission.durations import parse_duration
from runner.mission.model import (
    ALL_TOOLS,
    Artifact,
    InputSpec,
    Job,
    Matrix,
    MatrixValue,
    Mission,
    Permissions,
    Retry,
    RunDefaults,
    Service,
    Step,
    Strategy,
    VerifyCheck,
)
from runner.mission.services import ParsedOptions, command_words, parse_options
from runner.mission.yaml_loader import YamlDocument, join, parse_yaml, read_bytes

__all__ = ["discover_missions", "load_mission", "parse_mission", "unique_names"]

MISSIONS_DIR = ".missions"


def discover_missions(root: Path) -> list[Path]:
    """`root/.missions/*.yml` and `*.yaml`, sorted by name; [] when there is none.

    Every such name that is not a directory is a mission, whatever it is: a link out of the
    repository, a FIFO or a device is then refused by name when it is read
    (`runner.repo_files`), never silently skipped; `.missions` itself is resolved beneath
    the root."""
    entries = repo_files.list_dir(root, MISSIONS_DIR) or []
    return [
        root / entry.rel
        for entry in entries
        if entry.rel.endswith((".yml", ".yaml")) and entry.kind != "dir"
    ]


def load_mission(
    path: Path, *, display_path: str | None = None, root: Path | None = None
) -> tuple[Mission, list[Finding]]:
    """Load and validate one mission file; see the module docstring.

    With the repository `root`, a file inside it is read beneath it and named by its
    repository-relative path (`.missions/ci.yml`, what policy rules match), one outside
    it by the path as given; a name with control characters or undecodable bytes is
    shown escaped (`repo_files.shown`), never printed raw."""
    rel = repo_files.locate(root, path) if root is not None else None
    display = display_path if display_path is not None else repo_files.shown(rel or str(path))
    return parse_mission(read_bytes(path, display, root), display, stem=path.stem)


def unique_names(missions: Iterable[Mission]) -> list[Finding]:
    """An error for each mission that declares the `name:` of an earlier one: the ledger,
    `--job` and the policy's messages name missions by it, so two must never share one."""
    first: dict[str, Mission] = {}
    findings = []
    for mission in missions:
        other = first.setdefault(mission.name, mission)
        if other is mission:
            continue
        line, col = mission.where("name")
        findings.append(
            Finding(
                mission.path,
                line,
                col,
                f'mission name "{mission.name}" is also the name of {other.path}: each '
                "mission needs its own name",
                "name",
                "name",
            )
        )
    return findings


def parse_mission(
    data: bytes, path: str, *, stem: str = "mission"
) -> tuple[Mission, list[Finding]]:
    """Validate a mission given as bytes (`path` is for messages)."""
    doc = parse_yaml(data, path, strict=False)
    findings = list(doc.findings)
    findings.extend(schema.validate(doc))
    findings.extend(Checker(doc).run(stem))
    ordered = sort_findings(findings)
    errors = errors_in(ordered)
    if errors:
        count = len(errors)
        raise InvalidMission(
            f"{path}: {count} error{'s' if count != 1 else ''}; the mission was not loaded",
            ordered,
        )
    return _build(doc, stem), [f for f in ordered if f.severity is not Severity.ERROR]


# -- records ------------------------------------------------------------------------------


def _text(doc: YamlDocument, keypath: str, value: Any) -> str:
    """A scalar as GitHub gives it to a step: strings as they are, others as written."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return doc.raw.get(keypath, str(value))


def _strings(doc: YamlDocument, keypath: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: _text(doc, join(keypath, k), v) for k, v in value.items()}


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(v for v in value or () if isinstance(v, str))


def _freeze(value: Any) -> MatrixValue:
    if isinstance(value, dict):
        return {str(k): _freeze(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return cast(MatrixValue, value)


def _defaults(value: Any) -> RunDefaults:
    run = (value or {}).get("run") or {}
    return RunDefaults(shell=run.get("shell"), working_directory=run.get("working-directory"))


def _permissions(value: Any) -> Permissions:
    if isinstance(value, str):
        return Permissions(github_scopes={"*": value.split("-")[0]})
    value = value or {}
    return Permissions(
        network=value.get("network", "none"),
        secrets=tuple(value.get("secrets") or ()),
        exec=bool(value.get("exec", False)),
        github_scopes={k: v for k, v in value.items() if k not in ("network", "secrets", "exec")},
    )


def _on(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, dict):
        return tuple(value)
    return ()


def _inputs(top: dict[str, Any]) -> dict[str, InputSpec]:
    specs: dict[str, Any] = {}
    on: dict[str, Any] = top["on"] if isinstance(top.get("on"), dict) else {}
    for event in ("workflow_call", "workflow_dispatch"):
        trigger = on.get(event)
        if isinstance(trigger, dict) and isinstance(trigger.get("inputs"), dict):
            specs.update(trigger["inputs"])
    specs.update(top.get("inputs") or {})
    result: dict[str, InputSpec] = {}
    for name, spec in specs.items():
        spec = spec if isinstance(spec, dict) else {}
        kind = spec.get("type", "string")
        result[name] = InputSpec(
            name=name,
            type=kind if kind in ("string", "number", "boolean", "choice") else "string",
            default=spec.get("default"),
            required=bool(spec.get("required", False)),
            description=spec.get("description", ""),
            options=tuple(str(o) for o in spec.get("options") or ()),
        )
    return result


def _matrix(value: Any) -> Matrix:
    if isinstance(value, str):
        return Matrix(expression=value)
    value = value or {}
    axes: dict[str, tuple[MatrixValue, ...]] = {}
    expression: str | None = None
    for key, values in value.items():
        if key in ("include", "exclude"):
            continue
        if isinstance(values, str):
            expression = expression or values
        else:
            axes[key] = tuple(_freeze(v) for v in values)
    entries: dict[str, tuple[Mapping[str, MatrixValue], ...]] = {}
    for key in ("include", "exclude"):
        items = value.get(key)
        if isinstance(items, str):
            expression = expression or items
            items = None
        entries[key] = tuple(
            cast(Mapping[str, MatrixValue], _freeze(item))
            for item in items or ()
            if isinstance(item, dict)
        )
        for item in items or ():
            if isinstance(item, str):
                expression = expression or item
    return Matrix(
        axes=axes, include=entries["include"], exclude=entries["exclude"], expression=expression
    )


def _strategy(value: Any) -> Strategy | None:
    if value is None:
        return None
    return Strategy(
        matrix=_matrix(value.get("matrix")),
        fail_fast=value.get("fail-fast", True),
        max_parallel=value.get("max-parallel"),
    )


def _retry(value: Any) -> Retry | None:
    if value is None:
        return None
    on = value.get("on", ["failure"])
    max_delay = value.get("max-delay")
    return Retry(
        max_attempts=value["max-attempts"],
        backoff=value.get("backoff", "fixed"),
        delay_s=parse_duration(value.get("delay", 0)) or 0.0,
        max_delay_s=parse_duration(max_delay) if max_delay is not None else None,
        jitter=float(value.get("jitter", 0.0)),
        on=tuple(cast(list[Literal["failure", "timeout"]], [on] if isinstance(on, str) else on)),
    )


def _condition(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _step(doc: YamlDocument, keypath: str, index: int, value: dict[str, Any]) -> Step:
    return Step(
        index=index,
        id=value.get("id"),
        name=value.get("name"),
        run=value.get("run"),
        uses=value.get("uses"),
        with_=_strings(doc, f"{keypath}.with", value.get("with")),
        env=_strings(doc, f"{keypath}.env", value.get("env")),
        if_=_condition(value.get("if")),
        shell=value.get("shell"),
        working_directory=value.get("working-directory"),
        timeout_minutes=value.get("timeout-minutes"),
        continue_on_error=value.get("continue-on-error", False),
        retry=_retry(value.get("retry")),
    )


def _tools(value: Any, steps: tuple[Step, ...], shells: tuple[str | None, ...]) -> Any:
    if value == ALL_TOOLS:
        return ALL_TOOLS
    if isinstance(value, list):
        return tuple(value)
    default = next((s for s in shells if s), None) or "sh"
    found: list[str] = []
    for step in steps:
        if step.run is not None:
            shell = (step.shell or default).split()[0] if (step.shell or default).split() else "sh"
            if shell not in found:
                found.append(shell)
    return tuple(found) or (default.split()[0] if default.split() else "sh",)


def _job(doc: YamlDocument, job_id: str, value: dict[str, Any], mission_shell: str | None) -> Job:
    keypath = join("jobs", job_id)
    steps = tuple(
        _step(doc, f"{keypath}.steps[{i}]", i, s) for i, s in enumerate(value.get("steps") or ())
    )
    defaults = _defaults(value.get("defaults"))
    container = value.get("container")
    container_env: dict[str, str] = {}
    if isinstance(container, dict):
        container_env = _strings(doc, f"{keypath}.container.env", container.get("env"))
        container = container.get("image")
    consumes = tuple(c if isinstance(c, str) else c["name"] for c in value.get("consumes") or ())
    return Job(
        id=job_id,
        name=value.get("name"),
        needs=_names(value.get("needs")),
        if_=_condition(value.get("if")),
        container=container,
        tools=_tools(value.get("tools"), steps, (defaults.shell, mission_shell)),
        strategy=_strategy(value.get("strategy")),
        timeout_minutes=value.get("timeout-minutes"),
        continue_on_error=value.get("continue-on-error", False),
        env={**container_env, **_strings(doc, f"{keypath}.env", value.get("env"))},
        defaults=defaults,
        steps=steps,
        outputs=_strings(doc, f"{keypath}.outputs", value.get("outputs")),
        produces=tuple(
            Artifact(name=a["name"], path=a["path"], type=a.get("type", "file"))
            for a in value.get("produces") or ()
        ),
        consumes=consumes,
        permissions=_permissions(value["permissions"]) if "permissions" in value else None,
        uses=value.get("uses"),
        with_=_strings(doc, f"{keypath}.with", value.get("with")),
        runs_on=_runner_labels(value.get("runs-on")),
        services={
            name: _service(doc, f"{keypath}.services.{name}", name, service)
            for name, service in (value.get("services") or {}).items()
        },
    )


def _service(doc: YamlDocument, keypath: str, name: str, value: dict[str, Any]) -> Service:
    """One `services.<name>` (runner.mission.services): ports and volumes were noted or
    refused by the checks and are not kept; credentials only as being there (the policy
    refuses them)."""
    options = value.get("options")
    parsed = parse_options(options)[0] if isinstance(options, str) else ParsedOptions()
    command = value.get("command")
    return Service(
        name=name,
        image=value["image"],
        env=_strings(doc, f"{keypath}.env", value.get("env")),
        command=command_words(command) if command is not None else None,
        entrypoint=value.get("entrypoint") or parsed.entrypoint,
        health=parsed.health,
        credentials="credentials" in value,
    )


def _runner_labels(value: Any) -> tuple[str, ...]:
    """`runs-on` as its labels: a label, a list of them, or `{group, labels}`."""
    if isinstance(value, dict):
        value = value.get("labels")
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def _build(doc: YamlDocument, stem: str) -> Mission:
    top = doc.value
    defaults = _defaults(top.get("defaults"))
    return Mission(
        path=doc.path,
        digest=hashlib.sha256(doc.data).hexdigest(),
        name=top.get("name") or stem,
        on=_on(top.get("on")),
        inputs=_inputs(top),
        env=_strings(doc, "env", top.get("env")),
        defaults=defaults,
        permissions=_permissions(top.get("permissions")),
        jobs={
            job_id: _job(doc, job_id, job, defaults.shell) for job_id, job in top["jobs"].items()
        },
        verify=tuple(
            VerifyCheck(name=v["name"], check=v["check"]) for v in top.get("verify") or ()
        ),
        positions=doc.positions,
    )
