"""The scheduler: job instances along the DAG, in parallel up to `--max-parallel`.

A job starts when every job it needs is done. Its `if` (implicitly `success() && ...`)
decides whether it runs; a job whose dependency did not succeed is skipped with the
reason. Matrix instances run up to the strategy's `max-parallel`; with `fail-fast`, one
failed instance cancels its siblings; an instance on a Windows or macOS runner label is
`skipped` with the reason (runner.mission.plan), never run on Linux. Ctrl-C / SIGTERM sets `RunState.cancel`: running
containers are killed, nothing new starts, and every unfinished job is `cancelled`.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from runner import expressions
from runner.errors import RunnerError
from runner.mission.model import Job
from runner.mission.plan import JobInstance
from runner.policy.model import Grants
from runner.records.events import JobFinished
from runner.records.results import JobResult, Status
from runner.run.contexts import implicit_success
from runner.run.job import JobRunner
from runner.run.state import ResolvedImage, RunState

Resolve = Callable[[JobInstance, Grants], ResolvedImage]


def default_parallelism() -> int:
    """Containers saturate the engine at a handful at once; more only adds latency."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def aggregate(results: list[JobResult]) -> dict[str, Any]:
    """A job's `needs.<id>` view over its instances (GitHub's rules for matrix jobs)."""
    statuses = {r.status for r in results}
    failed = any(r.status is Status.FAILURE and not r.continue_on_error for r in results)
    if failed:
        status = Status.FAILURE
    elif Status.CANCELLED in statuses:
        status = Status.CANCELLED
    elif statuses == {Status.SKIPPED}:
        status = Status.SKIPPED
    else:
        status = Status.SUCCESS
    outputs: dict[str, str] = {}
    for result in results:
        outputs.update({k: v for k, v in result.outputs.items() if v != ""})
    return {"result": status.value, "outputs": outputs}


class Executor:
    def __init__(
        self,
        state: RunState,
        plan: Mapping[str, list[JobInstance]],
        *,
        resolve: Resolve,
        grants: Callable[[str], Grants],
        max_parallel: int,
        selected: set[str] | None = None,
    ) -> None:
        self.state = state
        self.plan = plan
        self.resolve = resolve
        self.grants = grants
        self.max_parallel = max_parallel
        self.selected = set(plan) if selected is None else selected
        self.results: dict[str, JobResult] = {
            inst.key: JobResult(key=inst.key, job_id=inst.id, matrix=dict(inst.matrix))
            for job_id, insts in plan.items()
            if job_id in self.selected
            for inst in insts
        }
        self._stops: dict[str, threading.Event] = {}
        self._fail_fast_hit: set[str] = set()

    # -- public --------------------------------------------------------------------------

    def run(self) -> dict[str, JobResult]:
        jobs = {
            job_id: insts[0].job for job_id, insts in self.plan.items() if job_id in self.selected
        }
        done: set[str] = set()
        queued: dict[str, list[JobInstance]] = {}
        running: dict[cf.Future[JobResult], JobInstance] = {}
        with cf.ThreadPoolExecutor(self.max_parallel, thread_name_prefix="job") as pool:
            while len(done) < len(jobs):
                progress = False
                for job_id, job in jobs.items():
                    if job_id in done or job_id in queued or not self._ready(job, done):
                        continue
                    progress = True
                    if self._should_run(job):
                        queued[job_id] = list(self.plan[job_id])
                    else:
                        done.add(job_id)
                self._launch(pool, queued, running)
                for job_id in [
                    j for j, q in queued.items() if not q and not self._running(j, running)
                ]:
                    del queued[job_id]
                    done.add(job_id)
                    progress = True
                if not running:
                    if not progress and not queued:
                        self._skip_unreachable(jobs, done)
                    continue
                finished, _ = cf.wait(running, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    instance = running.pop(future)
                    self._record(instance, future, queued)
                if self.state.cancel.is_set():
                    for stop in self._stops.values():
                        stop.set()
        return self.results

    # -- scheduling ----------------------------------------------------------------------

    def _ready(self, job: Job, done: set[str]) -> bool:
        return all(need in done or need not in self.selected for need in job.needs)

    def _running(self, job_id: str, running: Mapping[cf.Future[JobResult], JobInstance]) -> bool:
        return any(inst.id == job_id for inst in running.values())

    def needs_context(self, job: Job) -> dict[str, Any]:
        return {
            need: aggregate([self.results[i.key] for i in self.plan[need]])
            for need in job.needs
            if need in self.selected
        }

    def _should_run(self, job: Job) -> bool:
        needs = self.needs_context(job)
        cancelled = self.state.cancel.is_set()
        all_ok = all(n["result"] == "success" for n in needs.values())
        functions: dict[str, Callable[..., Any]] = {
            "success": lambda: all_ok and not cancelled,
            "failure": lambda: any(n["result"] == "failure" for n in needs.values()),
            "always": lambda: True,
            "cancelled": lambda: cancelled,
        }
        contexts = self.state.info.base_contexts()
        contexts.update({"needs": needs, "env": dict(self.state.mission.env), "secrets": {}})
        try:
            run = expressions.truthy(
                expressions.evaluate_condition(implicit_success(job.if_), contexts, functions)
            )
        except RunnerError as exc:
            self._settle(job.id, Status.FAILURE, f"if: {exc.message}")
            return False
        if run:
            return True
        if cancelled:
            reason, status = "interrupted", Status.CANCELLED
        elif not all_ok and not (job.if_ and expressions.has_status_function(job.if_)):
            failed = sorted(n for n, v in needs.items() if v["result"] != "success")
            reason, status = f"dependency {', '.join(failed)} did not succeed", Status.SKIPPED
        else:
            reason, status = "condition false", Status.SKIPPED
        self._settle(job.id, status, reason)
        return False

    def _settle(self, job_id: str, status: Status, reason: str) -> None:
        for inst in self.plan[job_id]:
            result = self.results[inst.key]
            result.status, result.reason = status, reason
            self.state.sink.emit(
                JobFinished(job=inst.key, status=status, reason=reason, duration_ms=0)
            )

    def _launch(
        self,
        pool: cf.ThreadPoolExecutor,
        queued: dict[str, list[JobInstance]],
        running: dict[cf.Future[JobResult], JobInstance],
    ) -> None:
        for job_id, waiting in queued.items():
            strategy = waiting[0].job.strategy if waiting else None
            limit = (
                strategy.max_parallel
                if strategy and isinstance(strategy.max_parallel, int)
                else None
            )
            while waiting and len(running) < self.max_parallel:
                if limit is not None and sum(i.id == job_id for i in running.values()) >= limit:
                    break
                instance = waiting.pop(0)
                if instance.skipped:  # a Windows or macOS runner (runner.mission.plan)
                    self._settle_instance(instance, Status.SKIPPED, instance.skipped)
                    continue
                if self.state.cancel.is_set() or job_id in self._fail_fast_hit:
                    self._cancel_instance(
                        instance,
                        "interrupted" if self.state.cancel.is_set() else "cancelled by fail-fast",
                    )
                    continue
                self._stops[instance.key] = threading.Event()
                running[pool.submit(self._run_instance, instance)] = instance

    def _cancel_instance(self, instance: JobInstance, reason: str) -> None:
        self._settle_instance(instance, Status.CANCELLED, reason)

    def _settle_instance(self, instance: JobInstance, status: Status, reason: str) -> None:
        result = self.results[instance.key]
        result.status, result.reason = status, reason
        self.state.sink.emit(
            JobFinished(job=instance.key, status=status, reason=reason, duration_ms=0)
        )

    def _run_instance(self, instance: JobInstance) -> JobResult:
        stop = self._stops[instance.key]
        try:
            grants = self.grants(instance.key)
            image = self.resolve(instance, grants)
        except RunnerError as exc:
            result = self.results[instance.key]
            result.status, result.reason = Status.FAILURE, self.state.redactor(exc.message)
            self.state.sink.emit(
                JobFinished(
                    job=instance.key, status=Status.FAILURE, reason=result.reason, duration_ms=0
                )
            )
            return result
        needs = self.needs_context(instance.job)
        runner = JobRunner(
            self.state, instance, image, grants, needs, stop=stop, total=len(self.plan[instance.id])
        )
        return runner.run()

    def _record(
        self,
        instance: JobInstance,
        future: cf.Future[JobResult],
        queued: dict[str, list[JobInstance]],
    ) -> None:
        result = future.result()
        self.results[instance.key] = result
        if (
            result.status is Status.CANCELLED
            and instance.id in self._fail_fast_hit
            and not self.state.cancel.is_set()
        ):
            result.reason = "cancelled by fail-fast"
        strategy = instance.job.strategy
        fail_fast = strategy is None or strategy.fail_fast is not False
        if (
            result.status is Status.FAILURE
            and not result.continue_on_error
            and strategy is not None
            and fail_fast
            and len(self.plan[instance.id]) > 1
        ):
            self._fail_fast_hit.add(instance.id)
            for sibling in self.plan[instance.id]:
                if sibling.key in self._stops and sibling.key != instance.key:
                    self._stops[sibling.key].set()

    def _skip_unreachable(self, jobs: Mapping[str, Job], done: set[str]) -> None:
        for job_id in jobs:
            if job_id not in done:
                self._settle(job_id, Status.SKIPPED, "unreachable")
                done.add(job_id)
