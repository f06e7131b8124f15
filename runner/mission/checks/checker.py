"""Semantic checks of a mission, after the schema: every finding with its exact position.

They run even when the schema found errors (so that a file's problems are all reported at
once), and so never trust a value's type. Rules and message formats:

    id          job id "x y" is not valid: ids start with a letter or _ and hold only
                letters, digits, _ and -
                job id "TEST" duplicates "test" (line 3, col 3): ids are case-insensitive
                step id "S" duplicates "s" (line 7, col 13) in job "test": ...
    needs       job "a" needs "nope", which is not a job in this mission
                job "a" needs "b" twice (line 5, col 12)
    cycle       dependency cycle in needs: a -> b -> a
    job         job "x" has no steps / has both steps and uses / steps must not be empty
    step        a step needs exactly one of run or uses
                "with" is for a `uses:` step ... / "shell" applies to a `run:` step ...
    shell       shell "pwsh" cannot run here / needs {0} where the script goes (see
                runner.mission.shells); shell "bash" runs bash, which is not among the
                job's tools (sh): add it to jobs.j.tools
    schema      (also) workflow_dispatch input "x" has type "text"; GitHub's types are ...
    uses        "x" is not a valid uses: ./path, docker://image or owner/repo@ref
    matrix      matrix key "FOO" duplicates "foo" (line 8, col 9): keys are case-insensitive
                matrix is empty: it needs at least one axis or include entry
                matrix axis "os" has no values
                "platform" in exclude is not a matrix key (keys: node, os)
                (warning) value 13 in exclude matches no value of axis "node"
                (warning) value 14 appears twice in axis "node"
    value       timeout-minutes must be greater than 0, not 0
                timeout-minutes must be a number or one ${{ }} expression, not "3.5"
    duration    "1x" is not a duration: a number of seconds or 500ms, 30s, 2m, 1h
    env-var     environment variable name "A=B" is not valid: it must not be empty or
                contain "=", whitespace or NUL
    artifact, credential   see runner.mission.checks.content
    expression, if-cond    see runner.mission.checks.expressions
    github-only (note) "concurrency" is GitHub-only and means nothing to a local runner;
                ignored; "runs-on" picks no machine: a Windows or macOS label skips the job
    container   container "." is neither the name of a containers/<name> image nor an
                image reference; container.options / .volumes are errors (they would undo
                the hardening); .credentials / .ports are notes (not used); .env is applied
                as the job's env (the job's own env wins)
    service     service name "a.b" is not valid (a host name: letters, digits, _ and -);
                a service needs an image; services.x.volumes is an error, .credentials a
                warning (the policy refuses it), .ports a note, services itself a note
                saying how they run; an option other than the health ones is an error at the
                option itself (runner.mission.services)
    limit       more than MAX_JOBS jobs, MAX_STEPS steps in a job, MAX_SERVICES services
                in a job, MAX_MISSION_INSTANCES job instances; matrix: more than 256
                instances (counted, never expanded)
    name        (warning) no "name": the mission is named after its file, "ci"

The checks of what a mission holds (artifacts, credentials) and of its expressions live
in runner.mission.checks.content and .expressions; `Checker` runs them all.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from runner.expressions import ExpressionError, find_expressions
from runner.findings import Finding, Severity
from runner.mission import services as svc
from runner.mission import shells
from runner.mission.checks.base import dict_of, list_of, names_of, one_expression, show
from runner.mission.checks.content import ContentChecks
from runner.mission.checks.expressions import ExpressionChecks
from runner.mission.durations import parse_duration
from runner.mission.model import container_problem
from runner.mission.plan import MAX_INSTANCES, MAX_PRODUCT, combinations, product_size
from runner.mission.yaml_loader import YamlDocument, join

ID_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
TOOL_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*\Z")
USES_RE = re.compile(r"(\./[^\s]*|docker://\S+|[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@\S+)\Z")

MAX_JOBS = 1000  # jobs in one mission (SPEC 9 plans a 1,000-job mission in under 1 s)
MAX_STEPS = 1000  # steps in one job
MAX_MISSION_INSTANCES = 4096  # job instances of one mission, matrices expanded
CONTAINER_REFUSED = {
    "options": "container.options passes `docker run` flags (--privileged, --cap-add, "
    "--network, -v ...), which could undo the step's hardening; runner takes none: ask the "
    "policy for what the job needs (permissions, limits)",
    "volumes": "container.volumes mounts host paths or volumes into the step; runner mounts "
    "nothing but the job's workspace: pass files between jobs as artifacts "
    "(produces/consumes)",
}
CONTAINER_NOTES = {
    "credentials": "container.credentials log in to a registry to pull the image; runner "
    "pulls with no credentials, so they are not used: make the image available to the engine",
    "ports": "container.ports publishes ports on the host; runner publishes none, so they are "
    "not used",
}
GITHUB_ONLY_TOP = ("run-name", "concurrency")
INPUT_TYPES = {  # the input types GitHub knows for each event that takes inputs
    "workflow_dispatch": ("boolean", "choice", "environment", "number", "string"),
    "workflow_call": ("boolean", "number", "string"),
}
GITHUB_ONLY_JOB = ("runs-on", "environment", "concurrency", "snapshot")
EXT_PERMISSIONS = frozenset({"network", "secrets", "exec"})


class Checker(ExpressionChecks, ContentChecks):
    """Collects the semantic findings of one document."""

    def __init__(self, doc: YamlDocument) -> None:
        super().__init__(doc)
        self._lowered_jobs: frozenset[str] | None = None
        self.instances = 0  # job instances of the whole mission, matrices expanded

    # -- the whole document ---------------------------------------------------------------

    def run(self, stem: str) -> list[Finding]:
        top = self.doc.value
        if "name" not in top:
            self.add(
                "",
                f'no "name": the mission is named after its file, "{stem}"',
                "name",
                Severity.WARNING,
                at=(1, 1),
            )
        self.inputs = self._declared_inputs(top)
        for key in GITHUB_ONLY_TOP:
            if key in top:
                self.note(
                    key, f'"{key}" is GitHub-only and means nothing to a local runner; ignored'
                )
        self._on(top.get("on"))
        self._permissions(top.get("permissions"), "permissions")
        self._env(top.get("env"), "env")
        self._inputs(top.get("inputs"))
        jobs = dict_of(top.get("jobs"))
        self._jobs(jobs)
        self._artifacts(jobs)
        self._credentials(top, "")
        self._expressions(top, jobs)
        return self.findings

    def _declared_inputs(self, top: dict[str, Any]) -> frozenset[str] | None:
        names: set[str] = set(dict_of(top.get("inputs")))
        on = dict_of(top.get("on"))
        declared = "inputs" in top
        for event in ("workflow_dispatch", "workflow_call"):
            event_inputs = dict_of(on.get(event)).get("inputs")
            if event_inputs is not None:
                declared = True
                names.update(dict_of(event_inputs))
        return frozenset(names) if declared else None

    def _on(self, on: Any) -> None:
        for event, value in dict_of(on).items():
            keypath = join("on", event)
            if event in ("workflow_dispatch", "workflow_call") and value is not None:
                self._trigger_with_inputs(value, keypath)
            types = INPUT_TYPES.get(event, ())
            for name, spec in dict_of(dict_of(value).get("inputs")).items():
                kind = dict_of(spec).get("type")
                if types and isinstance(kind, str) and kind not in types:
                    self.add(
                        f"{keypath}.inputs.{name}.type",
                        f'{event} input "{name}" has type "{kind}"; its types are '
                        f"{', '.join(types)}",
                        "schema",
                    )
            if event == "schedule":
                self.note(keypath, "schedules are GitHub-only; runner runs a mission when asked")
            elif isinstance(value, dict):
                filters = sorted(k for k in value if k not in ("inputs",))
                if filters:
                    self.note(
                        keypath,
                        f"{event} filters ({', '.join(filters)}) are GitHub-only; "
                        "runner selects missions by event name only",
                    )

    def _trigger_with_inputs(self, value: Any, keypath: str) -> None:
        """`workflow_dispatch:` / `workflow_call:` is empty or a mapping whose `inputs` is a
        mapping of input names (GitHub's form); anything else declares no input."""
        if not isinstance(value, dict):
            self.add(
                keypath,
                "must be empty or a mapping, e.g. `inputs: {name: {type: string}}`; "
                "a list or a value here declares nothing",
                "schema",
            )
        elif value.get("inputs") is not None and not isinstance(value["inputs"], dict):
            self.add(
                join(keypath, "inputs"),
                "must be a mapping of input names to their specs, "
                "e.g. `inputs: {name: {type: string}}`",
                "schema",
            )

    def _permissions(self, value: Any, keypath: str) -> None:
        if isinstance(value, str):
            if value in ("read-all", "write-all"):
                self.note(keypath, f'"{value}" is a GitHub token scope, which means nothing here')
            else:
                self.add(
                    keypath,
                    f'"{value}" is not a permissions value; expected read-all, write-all or a mapping',
                    "schema",
                )
        elif isinstance(value, dict):
            scopes = sorted(k for k in value if k not in EXT_PERMISSIONS)
            if scopes:
                self.note(
                    keypath,
                    f"GitHub token scopes ({', '.join(scopes)}) mean nothing here; "
                    "runner's permissions are network, secrets and exec",
                )
            for index, name in enumerate(list_of(value.get("secrets"))):
                if isinstance(name, str) and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                    self.add(
                        f"{keypath}.secrets[{index}]",
                        f'secret name "{name}" is not valid: letters, digits and _ only',
                        "id",
                    )

    def _env(self, env: Any, keypath: str) -> None:
        if isinstance(env, str):
            if one_expression(env):
                self.add(
                    keypath,
                    "env given as one ${{ }} expression is not supported by runner yet; "
                    "it is ignored (list the variables instead)",
                    "unsupported",
                    Severity.WARNING,
                )
            else:
                self.add(keypath, "env must be a mapping or one ${{ }} expression", "schema")
        for name in dict_of(env):
            # a name computed at run time, as GitHub allows: its expressions are checked as
            # such, the text around them here
            if not name or re.search(r"[=\s\x00]", _outside_expressions(name)):
                self.add(
                    join(keypath, name),
                    f'environment variable name "{name}" is not valid: it must not be empty '
                    'or contain "=", whitespace or NUL',
                    "env-var",
                    key=True,
                )

    def _inputs(self, inputs: Any) -> None:
        for name, spec in dict_of(inputs).items():
            keypath = join("inputs", name)
            if not ID_RE.match(name):
                self.add(keypath, f'input name "{name}" is not valid: {_ID_RULE}', "id", key=True)
            spec = dict_of(spec)
            options = list_of(spec.get("options"))
            if spec.get("type") == "choice" and not options:
                self.add(keypath, f'input "{name}" is a choice without options', "schema", key=True)
            default = spec.get("default")
            if options and default is not None and default not in options:
                self.add(
                    f"{keypath}.default",
                    f'default "{default}" is not one of the options of input "{name}"',
                    "schema",
                )

    # -- jobs -----------------------------------------------------------------------------

    def _jobs(self, jobs: dict[str, Any]) -> None:
        if len(jobs) > MAX_JOBS:
            self.add(
                "jobs",
                f"the mission has {len(jobs)} jobs; a mission holds at most {MAX_JOBS}",
                "limit",
                key=True,
            )
        seen: dict[str, str] = {}
        for job_id, job in jobs.items():
            keypath = join("jobs", job_id)
            if not ID_RE.match(job_id):
                self.add(keypath, f'job id "{job_id}" is not valid: {_ID_RULE}', "id", key=True)
            folded = job_id.lower()
            if folded in seen:
                line, col = self.doc.key_at(join("jobs", seen[folded]))
                self.add(
                    keypath,
                    f'job id "{job_id}" duplicates "{seen[folded]}" (line {line}, col {col}): '
                    "job ids are case-insensitive",
                    "id",
                    key=True,
                )
            else:
                seen[folded] = job_id
            if isinstance(job, dict):
                self._job(job_id, job, jobs)
        if self.instances > MAX_MISSION_INSTANCES:
            self.add(
                "jobs",
                f"the mission makes {self.instances} job instances (matrices expanded); a "
                f"mission makes at most {MAX_MISSION_INSTANCES}",
                "limit",
                key=True,
            )
        self._cycles(jobs)

    def _lowered(self, jobs: dict[str, Any]) -> frozenset[str]:
        if self._lowered_jobs is None:
            self._lowered_jobs = frozenset(j.lower() for j in jobs)
        return self._lowered_jobs

    def _job(self, job_id: str, job: dict[str, Any], jobs: dict[str, Any]) -> None:
        keypath = join("jobs", job_id)
        for key in GITHUB_ONLY_JOB:
            if key in job:
                self.note(
                    join(keypath, key),
                    '"runs-on" picks no machine here: the job runs in its container (a '
                    "Windows or macOS label skips it)"
                    if key == "runs-on"
                    else f'"{key}" is GitHub-only and means nothing to a local runner; ignored',
                )
        lowered = self._lowered(jobs)
        needs_value = job.get("needs")
        first_need: dict[str, str] = {}
        for index, name in enumerate(names_of(needs_value)):
            sub = (
                f"{keypath}.needs" if isinstance(needs_value, str) else f"{keypath}.needs[{index}]"
            )
            if name.lower() in first_need:
                line, col = self.doc.at(first_need[name.lower()])
                self.add(
                    sub,
                    f'job "{job_id}" needs "{name}" twice (line {line}, col {col}); list it once',
                    "needs",
                )
                continue
            first_need[name.lower()] = sub
            if name not in jobs and name.lower() not in lowered:
                self.add(
                    sub,
                    f'job "{job_id}" needs "{name}", which is not a job in this mission',
                    "needs",
                )
        steps, uses = job.get("steps"), job.get("uses")
        if uses is not None and steps is not None:
            self.add(
                keypath,
                f'job "{job_id}" has both steps and uses (a reusable workflow)',
                "job",
                key=True,
            )
        elif uses is None and steps is None:
            self.add(keypath, f'job "{job_id}" has no steps', "job", key=True)
        elif isinstance(steps, list) and not steps:
            self.add(f"{keypath}.steps", "steps must not be empty", "job", key=True)
        if isinstance(uses, str):
            self.note(
                f"{keypath}.uses",
                "a reusable workflow call is well-formed but cannot run locally",
            )
        secrets = job.get("secrets")
        if isinstance(secrets, str) and secrets != "inherit":
            self.add(
                f"{keypath}.secrets",
                f'"{secrets}" is not allowed; expected inherit or a mapping',
                "schema",
            )
        tools = job.get("tools")
        if isinstance(tools, str) and tools != "all":
            self.add(
                f"{keypath}.tools",
                f'"{tools}" is not allowed; expected all or a list of tool names',
                "schema",
            )
        for index, tool in enumerate(list_of(tools)):
            if isinstance(tool, str) and not TOOL_RE.match(tool) and not one_expression(tool):
                self.add(
                    f"{keypath}.tools[{index}]",
                    f'"{tool}" is not a tool name (a file name in /bin, no /) nor one '
                    "${{ matrix.NAME }} expression",
                    "schema",
                )
        self._permissions(job.get("permissions"), f"{keypath}.permissions")
        self._env(job.get("env"), f"{keypath}.env")
        container = job.get("container")
        if isinstance(container, dict):
            self._env(container.get("env"), f"{keypath}.container.env")
        self._container(container, f"{keypath}.container")
        self._services(job.get("services"), f"{keypath}.services")
        self._number(job, keypath, "timeout-minutes")
        self._flag(job, keypath, "continue-on-error")
        self.instances += self._strategy(job.get("strategy"), f"{keypath}.strategy")
        self._steps(job_id, job.get("steps"), keypath)
        self._shells(job, keypath)

    def _shells(self, job: dict[str, Any], keypath: str) -> None:
        """Each `run:` step's shell (its own, or the job's or mission's `defaults.run.shell`)
        is one runner can run, and its program is among the job's `tools:` when they are
        listed: a missing one would fail only when the step starts. Reported once, where the
        shell is written."""
        places = [
            (f"{keypath}.defaults.run.shell", dict_of(dict_of(job.get("defaults")).get("run"))),
            ("defaults.run.shell", dict_of(dict_of(self.doc.value.get("defaults")).get("run"))),
        ]
        default = next(
            ((k, d["shell"]) for k, d in places if isinstance(d.get("shell"), str)), None
        )
        tools = job.get("tools")
        listed = (
            [t for t in tools if isinstance(t, str)]
            if isinstance(tools, list) and all(isinstance(t, str) and "${{" not in t for t in tools)
            else None
        )
        reported: set[str] = set()
        for index, step in enumerate(list_of(job.get("steps"))):
            if not isinstance(step, dict) or "run" not in step:
                continue
            own = step.get("shell")
            where, shell = (
                (f"{keypath}.steps[{index}].shell", own)
                if own is not None
                else (default or (None, None))
            )
            if not isinstance(shell, str) or where is None or where in reported or "${{" in shell:
                continue
            reported.add(where)
            try:
                program = shells.program(shell)
            except shells.ShellError as exc:
                level = Severity.WARNING if exc.windows else Severity.ERROR
                self.add(where, exc.message, "shell", level)
                continue
            if listed is not None and program not in listed:
                self.add(
                    where,
                    f'shell "{shell}" runs {program}, which is not among the job\'s tools '
                    f"({', '.join(listed) or 'none'}): add it to {keypath}.tools",
                    "shell",
                )

    def _container(self, container: Any, keypath: str) -> None:
        """`container:` names an image runner can build or find; the docker-run keys that
        would change what the step's container is are errors, the others notes."""
        image = container.get("image") if isinstance(container, dict) else container
        image_at = f"{keypath}.image" if isinstance(container, dict) else keypath
        if isinstance(image, str) and "${{" not in image:
            if not image.strip():
                self.add(image_at, "container must not be empty", "schema")
            else:
                problem = container_problem(image)
                if problem is not None:
                    self.add(image_at, problem, "container")
        if not isinstance(container, dict):
            return
        for key, message in CONTAINER_REFUSED.items():
            if key in container:
                self.add(join(keypath, key), message, "container", key=True)
        for key, message in CONTAINER_NOTES.items():
            if key in container:
                self.add(join(keypath, key), message, "container", Severity.NOTE, key=True)

    def _services(self, services: Any, keypath: str) -> None:
        """Each service of `services:` (runner.mission.services): a host name, an image
        runner can find, no host mounts, only health options (and `--entrypoint`); a
        registry login is a warning here (GitHub runs it) and a denial of the policy."""
        if isinstance(services, dict) and services:
            self.add(keypath, svc.SERVICES_NOTE, "service", Severity.NOTE, key=True)
        if isinstance(services, dict) and len(services) > svc.MAX_SERVICES:
            self.add(
                keypath,
                f"the job has {len(services)} services; a job has at most {svc.MAX_SERVICES}",
                "limit",
                key=True,
            )
        for name, service in dict_of(services).items():
            sub = join(keypath, name)
            if not svc.NAME_RE.match(name):
                self.add(
                    sub, f'service name "{name}" is not valid: {svc.NAME_RULE}', "service", key=True
                )
            if not isinstance(service, dict):
                continue
            image = service.get("image")
            if image is None:
                self.add(sub, f'service "{name}" needs an image', "service", key=True)
            elif isinstance(image, str) and "${{" not in image:
                problem = container_problem(image)
                if problem is not None:
                    self.add(join(sub, "image"), problem, "service")
            if "volumes" in service:
                self.add(join(sub, "volumes"), svc.VOLUMES_REFUSED, "service", key=True)
            if "credentials" in service:
                self.add(
                    join(sub, "credentials"),
                    svc.CREDENTIALS_REFUSED,
                    "service",
                    Severity.WARNING,
                    key=True,
                )
            if "ports" in service:
                self.add(
                    join(sub, "ports"),
                    svc.PORTS_NOTE.format(name=name),
                    "service",
                    Severity.NOTE,
                    key=True,
                )
            self._env(service.get("env"), join(sub, "env"))
            command = service.get("command")
            if isinstance(command, str):
                try:
                    svc.command_words(command)
                except ValueError as exc:
                    self.add(
                        join(sub, "command"), f"command does not split into words: {exc}", "service"
                    )
            options = service.get("options")
            if isinstance(options, str):
                at = join(sub, "options")
                for bad in svc.parse_options(options)[1]:
                    where = self.doc.locate(at, bad.offset)
                    self.add(at, bad.message, "service", at=where)

    def _number(self, mapping: dict[str, Any], keypath: str, key: str) -> None:
        value = mapping.get(key)
        sub = join(keypath, key)
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, int | float):
            if not value > 0:
                self.add(sub, f"{key} must be greater than 0, not {value}", "value")
        elif isinstance(value, str) and not one_expression(value):
            self.add(
                sub, f'{key} must be a number or one ${{{{ }}}} expression, not "{value}"', "value"
            )

    def _flag(self, mapping: dict[str, Any], keypath: str, key: str) -> None:
        value = mapping.get(key)
        if isinstance(value, str) and not one_expression(value):
            self.add(
                join(keypath, key),
                f'{key} must be true, false or one ${{{{ }}}} expression, not "{value}"',
                "value",
            )

    def _strategy(self, strategy: Any, keypath: str) -> int:
        """Checks a job's strategy; returns how many instances its matrix makes."""
        strategy = dict_of(strategy)
        self._flag(strategy, keypath, "fail-fast")
        parallel = strategy.get("max-parallel")
        if isinstance(parallel, int) and not isinstance(parallel, bool) and parallel < 1:
            self.add(
                f"{keypath}.max-parallel",
                f"max-parallel must be at least 1, not {parallel}",
                "value",
            )
        elif isinstance(parallel, str) and not one_expression(parallel):
            self.add(
                f"{keypath}.max-parallel",
                f'max-parallel must be a number or one ${{{{ }}}} expression, not "{parallel}"',
                "value",
            )
        matrix = strategy.get("matrix")
        if isinstance(matrix, str):
            if not one_expression(matrix):
                self.add(
                    f"{keypath}.matrix",
                    "matrix must be a mapping or one ${{ }} expression",
                    "matrix",
                )
            return 1
        if not isinstance(matrix, dict):
            return 1
        self._matrix(matrix, f"{keypath}.matrix")
        return self._matrix_size(matrix, f"{keypath}.matrix")

    def _matrix_size(self, matrix: dict[str, Any], keypath: str) -> int:
        """The job instances a static matrix makes (1 for one computed at run time), or an
        error when more than `MAX_INSTANCES`: counted before anything is expanded, so a
        40x40x40x40 matrix in 500 bytes is refused in microseconds."""
        axes = {k: v for k, v in matrix.items() if k not in ("include", "exclude")}
        include, exclude = matrix.get("include", []), matrix.get("exclude", [])
        lists = [*axes.values(), include, exclude]
        if not all(isinstance(v, list) for v in lists):
            return 1  # part of it is an expression: one instance until run time
        size = product_size(axes)
        if size <= MAX_PRODUCT:
            entries = [[e for e in x if isinstance(e, dict)] for x in (include, exclude)]
            size = len(combinations(axes, entries[0], entries[1])) or 1
        if size > MAX_INSTANCES:
            shape = " x ".join(str(len(v)) for v in axes.values()) or "0"
            self.add(
                keypath,
                f"the matrix makes {size} job instances ({shape} axis values"
                f"{', before exclude and include' if size > MAX_PRODUCT else ''}); a matrix "
                f"makes at most {MAX_INSTANCES} (as on GitHub): split the job or narrow its axes",
                "matrix",
                key=True,
            )
        return size

    def _matrix(self, matrix: dict[str, Any], keypath: str) -> None:
        axes = {k: v for k, v in matrix.items() if k not in ("include", "exclude")}
        seen: dict[str, str] = {}
        for name, values in axes.items():
            sub = join(keypath, name)
            folded = name.lower()
            if folded in seen:
                line, col = self.doc.key_at(join(keypath, seen[folded]))
                self.add(
                    sub,
                    f'matrix key "{name}" duplicates "{seen[folded]}" (line {line}, col {col}): '
                    "matrix keys are case-insensitive",
                    "matrix",
                    key=True,
                )
            else:
                seen[folded] = name
            if isinstance(values, list):
                if not values:
                    self.add(sub, f'matrix axis "{name}" has no values', "matrix", key=True)
                shown: list[Any] = []
                for index, value in enumerate(values):
                    if value in shown and not isinstance(value, dict | list):
                        self.add(
                            f"{sub}[{index}]",
                            f'value {show(value)} appears twice in axis "{name}"',
                            "matrix",
                            Severity.WARNING,
                        )
                    shown.append(value)
            elif isinstance(values, str) and not one_expression(values):
                self.add(
                    sub,
                    f'matrix axis "{name}" must be a list or one ${{{{ }}}} expression',
                    "matrix",
                )
        include = matrix.get("include")
        if not axes and (not isinstance(include, list | str) or include == []):
            self.add(
                keypath,
                "matrix is empty: it needs at least one axis or include entry",
                "matrix",
                key=True,
            )
        for index, entry in enumerate(list_of(matrix.get("exclude"))):
            for key, value in dict_of(entry).items():
                sub = f"{keypath}.exclude[{index}].{key}"
                if key not in axes:
                    known = ", ".join(axes) or "none"
                    self.add(
                        sub,
                        f'"{key}" in exclude is not a matrix key (keys: {known})',
                        "matrix",
                        key=True,
                    )
                elif isinstance(axes[key], list) and value not in axes[key]:
                    self.add(
                        sub,
                        f'value {show(value)} in exclude matches no value of axis "{key}"',
                        "matrix",
                        Severity.WARNING,
                    )

    def _steps(self, job_id: str, steps: Any, keypath: str) -> None:
        if isinstance(steps, list) and len(steps) > MAX_STEPS:
            self.add(
                f"{keypath}.steps",
                f'job "{job_id}" has {len(steps)} steps; a job holds at most {MAX_STEPS}',
                "limit",
                key=True,
            )
        seen: dict[str, int] = {}
        for index, step in enumerate(list_of(steps)):
            sub = f"{keypath}.steps[{index}]"
            if not isinstance(step, dict):
                continue
            step_id = step.get("id")
            if isinstance(step_id, str):
                if not ID_RE.match(step_id) and not one_expression(step_id):
                    self.add(f"{sub}.id", f'step id "{step_id}" is not valid: {_ID_RULE}', "id")
                folded = step_id.lower()
                if folded in seen:
                    first = f"{keypath}.steps[{seen[folded]}].id"
                    line, col = self.doc.at(first)
                    self.add(
                        f"{sub}.id",
                        f'step id "{step_id}" duplicates "{steps[seen[folded]]["id"]}" (line {line}, col {col}) '
                        f'in job "{job_id}": step ids are case-insensitive',
                        "id",
                    )
                else:
                    seen[folded] = index
            run, uses = step.get("run"), step.get("uses")
            if (run is None) == (uses is None):
                self.add(sub, "a step needs exactly one of run or uses", "step")
            elif run is not None and "with" in step:
                self.add(
                    f"{sub}.with",
                    '"with" is for a `uses:` step; a `run:` step ignores it: pass values '
                    "through env: and read them as $NAME",
                    "step",
                    key=True,
                )
            elif uses is not None:
                for key in ("shell", "working-directory"):
                    if key in step:
                        self.add(
                            f"{sub}.{key}",
                            f'"{key}" applies to a `run:` step; a `uses:` step runs the '
                            "action's own steps, which ignore it",
                            "step",
                            key=True,
                        )
            if isinstance(uses, str) and not USES_RE.match(uses):
                self.add(
                    f"{sub}.uses",
                    f'"{uses}" is not a valid uses: ./path, docker://image or owner/repo@ref',
                    "uses",
                )
            self._env(step.get("env"), f"{sub}.env")
            self._number(step, sub, "timeout-minutes")
            self._flag(step, sub, "continue-on-error")
            self._retry(step.get("retry"), f"{sub}.retry")

    def _retry(self, retry: Any, keypath: str) -> None:
        retry = dict_of(retry)
        delays: dict[str, float] = {}
        for key in ("delay", "max-delay"):
            if key not in retry or isinstance(retry[key], bool):
                continue
            seconds = parse_duration(retry[key])
            if seconds is None:
                self.add(
                    f"{keypath}.{key}",
                    f'"{retry[key]}" is not a duration: a number of seconds or 500ms, 30s, 2m, 1h',
                    "duration",
                )
            else:
                delays[key] = seconds
        if "delay" in delays and "max-delay" in delays and delays["max-delay"] < delays["delay"]:
            self.add(f"{keypath}.max-delay", "max-delay is shorter than delay", "duration")

    def _cycles(self, jobs: dict[str, Any]) -> None:
        graph = {
            job_id: [n for n in names_of(dict_of(job).get("needs")) if n in jobs]
            for job_id, job in jobs.items()
        }
        state: dict[str, int] = {}  # 1 = on the path, 2 = done
        reported: set[frozenset[str]] = set()
        for start in jobs:
            if state.get(start):
                continue
            path: list[str] = [start]
            state[start] = 1
            stack: list[Iterator[str]] = [iter(graph[start])]
            while stack:
                child = next(stack[-1], None)
                if child is None:
                    state[path.pop()] = 2
                    stack.pop()
                    continue
                if state.get(child) == 1:
                    cycle = path[path.index(child) :]
                    members = frozenset(cycle)
                    if members not in reported:
                        reported.add(members)
                        first = min(cycle, key=list(jobs).index)
                        at = cycle.index(first)
                        ordered = [*cycle[at:], *cycle[:at], first]
                        self.add(
                            join("jobs", first),
                            f"dependency cycle in needs: {' -> '.join(ordered)}",
                            "cycle",
                            key=True,
                        )
                elif not state.get(child):
                    state[child] = 1
                    path.append(child)
                    stack.append(iter(graph[child]))


_ID_RULE = "ids start with a letter or _ and hold only letters, digits, _ and -"


def _outside_expressions(text: str) -> str:
    """`text` without its `${{ }}` expressions (as is when they do not parse)."""
    if "${{" not in text:
        return text
    try:
        found = find_expressions(text)
    except ExpressionError:
        return text
    kept, last = [], 0
    for start, inner in found:
        kept.append(text[last:start])
        last = text.index("}}", start + 3 + len(inner)) + 2
    return "".join(kept) + text[last:]
