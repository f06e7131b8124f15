"""The mission's `verify:` post-conditions, checked against the results of a run.

Each check is an expression over `needs`-style results of every job:
`jobs.<id>.result` and `jobs.<id>.outputs.<name>` (and `mission.name|run_id|event`).
A matrix job is aggregated as GitHub aggregates it for `needs`: `failure` when any
instance failed, else `cancelled` when any was cancelled, else `success`; its outputs come
from the last instance (in plan order) that set them.

A check is `passed` or `failed` by the truth of its value, or `unresolved` when it read
something the run never produced: anything of a job that was skipped or did not run, or an
output no instance set. `github`, `inputs` and `vars` are there too, as validation
allows them in a check. The contexts handed to the evaluator record every lookup, so a
read of a missing value is known even though the expression language turns it into null.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass, field
from typing import Any

from runner.expressions import ExpressionError, evaluate_condition, to_string
from runner.mission.model import Mission
from runner.records.results import CheckResult, CheckStatus, JobResult, RunResult, Status


@dataclass
class _Reads:
    """What one evaluation read: leaf values by path, and the lookups that found nothing."""

    values: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # path -> why it is not there


class _Tracked(Mapping[str, Any]):
    """A read-only object of the expression language that records what is looked up in it.

    Keys match case-insensitively (as in GitHub's contexts). A key that is not there is
    recorded as missing with `why` before the usual KeyError; `absent=True` makes every
    lookup missing (the object of a job that was never run).
    """

    def __init__(
        self,
        path: str,
        data: Mapping[str, Any],
        reads: _Reads,
        *,
        why: str,
        absent: bool = False,
    ) -> None:
        self._path = path
        self._data = dict(data)
        self._folded = {key.casefold(): key for key in self._data}
        self._reads = reads
        self._why = why
        self._absent = absent

    def __getitem__(self, key: str) -> Any:
        name = self._folded.get(key.casefold()) if isinstance(key, str) else None
        if name is None or self._absent:
            self._reads.missing.setdefault(f"{self._path}.{key}", self._why)
            raise KeyError(key)
        value = self._data[name]
        if not isinstance(value, Mapping):
            self._reads.values.setdefault(f"{self._path}.{name}", value)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(() if self._absent else self._data)

    def __len__(self) -> int:
        return 0 if self._absent else len(self._data)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and not self._absent and key.casefold() in self._folded

    # Iterating (`toJSON()`, `*` filters, the evaluator's case-insensitive fallback) must
    # not count as reading every value: these views bypass __getitem__.
    def keys(self) -> KeysView[str]:
        return ({} if self._absent else self._data).keys()

    def items(self) -> ItemsView[str, Any]:
        return ({} if self._absent else self._data).items()

    def values(self) -> ValuesView[Any]:
        """A `*` filter (`jobs.*.result`) sees only what was produced, as GitHub's filters
        drop what is missing; reading a skipped job by name is what makes a check unresolved."""
        if self._absent:
            return {}.values()
        present = {
            k: v for k, v in self._data.items() if not (isinstance(v, _Tracked) and v._absent)
        }
        return present.values()


def _aggregate(instances: list[JobResult]) -> Status | None:
    """needs.<job>.result over a job's instances; None when none of them produced one."""
    produced = [i.status for i in instances if i.status.done and i.status is not Status.SKIPPED]
    for status in (Status.FAILURE, Status.CANCELLED, Status.SUCCESS):
        if status in produced:
            return status
    return None


def _job_object(job_id: str, instances: list[JobResult], reads: _Reads) -> _Tracked:
    path = f"jobs.{job_id}"
    result = _aggregate(instances)
    if result is None:
        if not instances:
            why = f"job '{job_id}' did not run"
        else:
            last = instances[-1]
            state = last.status.serialize() if last.status.done else "not finished"
            why = f"job '{job_id}' {state}" + (f": {last.reason}" if last.reason else "")
        return _Tracked(path, {}, reads, why=why, absent=True)
    outputs: dict[str, Any] = {}
    for instance in instances:
        if instance.status.done and instance.status is not Status.SKIPPED:
            outputs.update({k: v for k, v in instance.outputs.items() if v != ""})
    return _Tracked(
        path,
        {
            "result": result.serialize(),
            "outputs": _Tracked(
                f"{path}.outputs", outputs, reads, why=f"job '{job_id}' did not set it"
            ),
        },
        reads,
        why="not a property of a job result",
    )


def _contexts(
    mission: Mission, run: RunResult, reads: _Reads, base: Mapping[str, Any] | None
) -> dict[str, Any]:
    by_job: dict[str, list[JobResult]] = {job_id: [] for job_id in mission.jobs}
    for job in run.jobs.values():
        by_job.setdefault(job.job_id, []).append(job)
    jobs = {job_id: _job_object(job_id, found, reads) for job_id, found in by_job.items()}
    contexts: dict[str, Any] = {
        "github": {"event_name": run.event, "run_id": run.run_id},
        "mission": {"name": mission.name, "run_id": run.run_id, "event": run.event},
        "inputs": {name: spec.default for name, spec in mission.inputs.items()},
        "vars": {},
    }
    contexts.update(base or {})
    contexts["jobs"] = _Tracked("jobs", jobs, reads, why="no such job")
    return contexts


def _shown(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else to_string(value)


def evaluate_check(
    name: str,
    check: str,
    mission: Mission,
    run: RunResult,
    *,
    base: Mapping[str, Any] | None = None,
) -> CheckResult:
    reads = _Reads()
    error: ExpressionError | None = None
    passed = False
    try:
        passed = evaluate_condition(check, _contexts(mission, run, reads, base), None)
    except ExpressionError as exc:
        error = exc
    if reads.missing:
        detail = "; ".join(f"{path}: {why}" for path, why in reads.missing.items())
        return CheckResult(name, check, CheckStatus.UNRESOLVED, f"never produced: {detail}")
    if error is not None:
        return CheckResult(name, check, CheckStatus.FAILED, f"error: {error.message}")
    detail = ", ".join(f"{path} = {_shown(value)}" for path, value in reads.values.items())
    return CheckResult(name, check, CheckStatus.PASSED if passed else CheckStatus.FAILED, detail)


def evaluate_checks(
    mission: Mission, run: RunResult, *, base: Mapping[str, Any] | None = None
) -> list[CheckResult]:
    """Every `verify:` check of the mission, in file order.

    `base`: the run's other contexts (`RunInfo.base_contexts()`: github, mission, inputs,
    vars); without it, what the run result and the mission tell (input defaults)."""
    return [evaluate_check(v.name, v.check, mission, run, base=base) for v in mission.verify]
