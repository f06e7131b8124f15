"""The expanded plan of a mission: matrix instances and DAG levels.

Matrix expansion follows GitHub's documented semantics: the cartesian product of the
axes (first axis varying slowest), minus every combination that matches an `exclude`
entry (partially), then each `include` entry is merged into every combination whose
*original* axis values it does not contradict (values added by an earlier include may
be overwritten); an include that fits no product combination becomes a combination of its own
(later includes are never merged into it).
A matrix given as one expression (`matrix: ${{ fromJSON(...) }}`) cannot be expanded
statically: it yields one instance marked `dynamic`.

An instance whose `runs-on` names a Windows or macOS runner (after `${{ matrix.X }}`) is
`skipped`, with the reason: runner runs Linux containers, and running such a job there
would pass or fail for the wrong reason. It asks the policy for nothing and never runs.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.mission.model import Job, Mission


@dataclass(frozen=True)
class JobInstance:
    job: Job
    key: str  # "test" or "test (1, linux)": unique within the mission
    matrix: Mapping[str, Any] = field(default_factory=dict)
    index: int = 0  # position among the job's instances
    dynamic: bool = False  # matrix known only at run time
    skipped: str = ""  # why it never runs (a runner label no Linux container stands for)

    @property
    def id(self) -> str:
        return self.job.id


def _thaw(value: Any) -> Any:
    """Records hold tuples and read-only mappings; expressions see lists and dicts."""
    if isinstance(value, Mapping):
        return {str(k): _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    return value


MAX_INSTANCES = 256  # job instances one matrix may make, as GitHub's limit
MAX_PRODUCT = 4096  # axis combinations expanded to count them; more is refused unexpanded


def expand_matrix(job: Job) -> list[dict[str, Any]]:
    """Every combination of the job's matrix, GitHub's way; `[{}]` without a matrix."""
    if job.strategy is None or job.strategy.matrix.expression is not None:
        return [{}]
    matrix = job.strategy.matrix
    axes = {name: [_thaw(v) for v in values] for name, values in matrix.axes.items()}
    include = [_thaw(entry) for entry in matrix.include]
    exclude = [_thaw(entry) for entry in matrix.exclude]
    return combinations(axes, include, exclude) or [{}]


def product_size(axes: Mapping[str, list[Any]]) -> int:
    """How many combinations the axes make before exclude and include (0 without axes)."""
    if not axes:
        return 0
    size = 1
    for values in axes.values():
        size *= len(values)
    return size


def combinations(
    axes: Mapping[str, list[Any]], include: list[dict[str, Any]], exclude: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The combinations of a matrix given as plain values (see the module docstring); the
    caller keeps `product_size(axes)` within `MAX_PRODUCT` (validation refuses more)."""
    combos: list[dict[str, Any]] = []
    if axes and all(axes.values()):
        names = list(axes)
        combos = [
            dict(zip(names, values, strict=True)) for values in itertools.product(*axes.values())
        ]
    for wanted in exclude:
        combos = [c for c in combos if not all(c.get(k) == v for k, v in wanted.items())]
    original = set(axes)
    added: list[dict[str, Any]] = []  # includes that fit no product combination
    for extra in include:
        merged = False
        for combo in combos:
            if all(combo.get(k) == v for k, v in extra.items() if k in original):
                combo.update(extra)
                merged = True
        if not merged:
            added.append(dict(extra))
    return combos + added


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


_NOT_LINUX = re.compile(r"(windows|macos|osx)([-_ .\d].*)?", re.IGNORECASE)
_MATRIX_REF = re.compile(r"\$\{\{\s*matrix\.([A-Za-z_][A-Za-z0-9_-]*)\s*\}\}")


def not_linux(job: Job, matrix: Mapping[str, Any]) -> str:
    """Why an instance of `job` with `matrix` cannot run here ("" when it can): the first
    of its `runs-on` labels that names a Windows or macOS runner."""
    for label in job.runs_on:
        resolved = _MATRIX_REF.sub(lambda m: _label(matrix.get(m.group(1))), label).strip()
        if _NOT_LINUX.fullmatch(resolved):
            return (
                f"runs-on {resolved}: runner runs jobs in Linux containers only, so this job "
                "is skipped"
            )
    return ""


def job_instances(job: Job) -> list[JobInstance]:
    if job.strategy is not None and job.strategy.matrix.expression is not None:
        return [JobInstance(job=job, key=job.id, dynamic=True)]
    combos = expand_matrix(job)
    if combos == [{}]:
        return [JobInstance(job=job, key=job.id, skipped=not_linux(job, {}))]
    seen: set[str] = set()
    result = []
    for index, combo in enumerate(combos):
        key = f"{job.id} ({', '.join(_label(v) for v in combo.values())})"
        if key in seen:
            key = f"{job.id} #{index + 1}"
        seen.add(key)
        skipped = not_linux(job, combo)
        result.append(JobInstance(job=job, key=key, matrix=combo, index=index, skipped=skipped))
    return result


def instances(mission: Mission) -> dict[str, list[JobInstance]]:
    """Job id -> its instances, in file order."""
    return {job_id: job_instances(job) for job_id, job in mission.jobs.items()}


def levels(mission: Mission) -> list[list[str]]:
    """Job ids by DAG level: level 0 needs nothing; level n needs only lower levels.

    Jobs on a cycle or needing a missing job (already rejected by validation) are left
    out rather than looping.
    """
    jobs = mission.jobs
    waiting = {job_id: sum(1 for n in job.needs if n in jobs) for job_id, job in jobs.items()}
    dependents: dict[str, list[str]] = {job_id: [] for job_id in jobs}
    for job_id, job in jobs.items():
        for need in job.needs:
            if need in dependents:
                dependents[need].append(job_id)
    depth: dict[str, int] = {}
    ready = [job_id for job_id, count in waiting.items() if count == 0]
    if any(n not in jobs for job in jobs.values() for n in job.needs):
        ready = [j for j in ready if all(n in jobs for n in jobs[j].needs)]
    while ready:
        job_id = ready.pop()
        depth[job_id] = 1 + max((depth[n] for n in jobs[job_id].needs), default=-1)
        for dependent in dependents[job_id]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0 and all(n in jobs for n in jobs[dependent].needs):
                ready.append(dependent)
    grouped: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for job_id in mission.jobs:
        if job_id in depth:
            grouped[depth[job_id]].append(job_id)
    return grouped


def needs_closure(mission: Mission, job_id: str) -> set[str]:
    """Every job `job_id` transitively needs (not including itself)."""
    seen: set[str] = set()
    stack = list(mission.jobs[job_id].needs)
    while stack:
        need = stack.pop()
        if need in seen or need not in mission.jobs:
            continue
        seen.add(need)
        stack.extend(mission.jobs[need].needs)
    return seen


def select_jobs(mission: Mission, wanted: tuple[str, ...]) -> set[str]:
    """`--job` selection: the named jobs and everything they need."""
    if not wanted:
        return set(mission.jobs)
    selected: set[str] = set()
    for job_id in wanted:
        selected.add(job_id)
        selected |= needs_closure(mission, job_id)
    return selected
