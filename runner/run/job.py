"""One job instance, start to end: its workspace (and, when granted egress, a network of
its own; when it asks for the history, a read-only `.git`: runner.run.history; its
services, started and ready before the first step: runner.run.services), then each step
in a fresh hardened container, with `if`, retries, timeouts, output/env files and
artifacts. While a step runs, the containers of the next ones are prepared (`_upcoming`:
the next `run` steps as they would run if nothing changed, while their `if:` holds now;
`StepContainers` uses one only if that is what its step turns out to need).

Everything the job reports goes through the run's `Sink`; everything it decides comes
from the mission records, the policy grants and the contexts: no raw dicts, no Docker
calls outside the `Backend`, no time but the run's `Clock`.

Secrets stay in the job: the job redacts with its own redactor (the run's secrets and
the masks its steps register, `Redactor.for_job`); a job output that holds any of them is
not passed on (a warning names it, as GitHub's "Skip output 'x' since it may contain
secret"); `$RUNNER_ENV` values and `$RUNNER_PATH` directories reach only the job's own
later steps; a step's `$RUNNER_STEP_SUMMARY` is kept redacted; an artifact holding a
secret granted to the job, or one of its masks, is not stored (`artifacts.refuse_secrets`).
"""

from __future__ import annotations

import dataclasses
import posixpath
import shlex
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runner import expressions
from runner.engine.backend import EgressUnavailable, run_labels
from runner.engine.catalog import load_catalog
from runner.engine.images import present
from runner.engine.toolsets import PATH, build_toolset
from runner.errors import InvalidInput, RunnerError
from runner.mission import actions, shells
from runner.mission.model import Job, Service, Step
from runner.mission.plan import JobInstance
from runner.policy.model import Grants
from runner.records.events import (
    Annotation,
    JobFinished,
    JobStarted,
    StepFinished,
    StepRetry,
    StepSummary,
)
from runner.records.results import JobResult, Status, StepResult
from runner.run import artifacts, builtin_actions, cache
from runner.run.contexts import hash_files, implicit_success
from runner.run.history import History, wants_history
from runner.run.retry import attempt_delay, step_rng
from runner.run.services import JobServices
from runner.run.state import ResolvedImage, RunState
from runner.run.step import PREPARE_AHEAD, Attempt, AttemptResult, StepContainers, Upcoming
from runner.run.workspace import WORKSPACE_DIR, Workspace, volume_name
from runner.secrets.redact import MIN_MASK, Redactor

NOEXEC_HINT = (
    "; the workspace is mounted noexec, so a file checked out or built in it cannot be "
    "executed: run a script through its interpreter (`sh ./scripts/build.sh`), or grant "
    "the job `permissions: {exec: true}` (which the policy must allow: `allow: {exec: true}`)"
)


def _denied_exec(outcome: AttemptResult) -> bool:
    """Whether a failed step looks like it tried to execute a workspace file: exit 126
    ("cannot execute"), or a last line saying `Permission denied` (make's way)."""
    if outcome.exit_code == 126:
        return True
    return any("Permission denied" in line for line in outcome.tail[-5:])


class JobRunner:
    def __init__(
        self,
        state: RunState,
        instance: JobInstance,
        image: ResolvedImage,
        grants: Grants,
        needs: Mapping[str, Any],
        *,
        stop: threading.Event | None = None,
        total: int = 1,
    ) -> None:
        # The job's redactor: the run's secrets and this job's masks, for all it writes.
        self.redactor = state.redactor.for_job(instance.key)
        self.state = dataclasses.replace(state, redactor=self.redactor)
        self.stop = stop if stop is not None else state.cancel
        self.total = total
        self.instance = instance
        self.job: Job = instance.job
        self.image = image
        self.grants = grants
        self.needs = needs
        self.result = JobResult(
            key=instance.key,
            job_id=instance.id,
            matrix=dict(instance.matrix),
            continue_on_error=False,
            image=image.ref,
        )
        self._steps_ctx: dict[str, Any] = {}
        self._env_files: dict[str, str] = {}
        self._path: list[str] = []  # from $RUNNER_PATH, the newest first, before PATH
        self._caches: list[cache.Request] = []  # actions/cache misses, saved at the end
        self._failed = False
        self.containers: StepContainers | None = None  # set once the workspace exists
        self._position = 0  # of the step running, in the job's steps
        self.workspace: Workspace | None = None

    # -- contexts --------------------------------------------------------------------

    def contexts(self, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        ctx = self.state.info.base_contexts()
        ctx.update(
            {
                "env": dict(env if env is not None else {}),
                "matrix": dict(self.instance.matrix),
                "strategy": self._strategy(),
                "needs": dict(self.needs),
                "steps": self._steps_ctx,
                "job": {"status": "failure" if self._failed else "success", "container": {}},
                "secrets": {
                    name: value
                    for name, value in self.state.secrets.items()
                    if name in self.grants.secrets
                },
            }
        )
        return ctx

    def _strategy(self) -> dict[str, Any]:
        strategy = self.job.strategy
        fail_fast = strategy.fail_fast if strategy is not None else True
        max_parallel = strategy.max_parallel if strategy is not None else None
        return {
            "fail-fast": fail_fast,
            "job-index": self.instance.index,
            "job-total": self.total,
            "max-parallel": max_parallel if max_parallel is not None else self.total,
        }

    @property
    def _containers(self) -> StepContainers:
        assert self.containers is not None, "steps run only once the workspace exists"
        return self.containers

    def _functions(self, success: bool) -> dict[str, Callable[..., Any]]:
        """The status functions (`success` = no earlier step failed) and hashFiles(),
        which hashes the repository the workspace was copied from."""
        cancel, root = self.state.cancel, self.state.info.root
        return {
            "success": lambda: success and not cancel.is_set(),
            "failure": lambda: not success,
            "always": lambda: True,
            "cancelled": cancel.is_set,
            "hashFiles": lambda *patterns: hash_files(root, patterns),
        }

    def _named(self, step: Step, ctx: Mapping[str, Any]) -> Step:
        """`step` with the expressions of its `name:` evaluated, as GitHub shows it (the
        name as written when one cannot be evaluated)."""
        if not step.name or "${{" not in step.name:
            return step
        try:
            return dataclasses.replace(step, name=self._interpolate(step.name, ctx))
        except RunnerError:
            return step

    def _interpolate(self, text: str, ctx: Mapping[str, Any]) -> str:
        return expressions.interpolate(text, ctx, self._functions(not self._failed))

    def _env(self, step: Step | None) -> dict[str, str]:
        env: dict[str, str] = {}
        for layer in (self.state.mission.env, self.job.env):
            ctx = self.contexts(env)
            for name, value in layer.items():
                env[self._interpolate(name, ctx)] = self._interpolate(value, ctx)
        env.update(self._env_files)
        if step is not None:
            ctx = self.contexts(env)
            for name, value in step.env.items():
                env[self._interpolate(name, ctx)] = self._interpolate(value, ctx)
        return env

    # -- the job ---------------------------------------------------------------------

    def run(self) -> JobResult:
        clock = self.state.clock
        started = clock.monotonic()
        sink = self.state.sink
        sink.emit(JobStarted(job=self.instance.key))
        self.result.status = Status.RUNNING
        coe = self.job.continue_on_error
        workspace: Workspace | None = None
        network: str | None = None
        services: JobServices | None = None
        history = History(
            self.state.backend,
            volume_name(self.state.info.run_id, self.instance.key) + "-git",
            self._labels(),
        )
        try:
            self.result.continue_on_error = (
                expressions.truthy(
                    expressions.evaluate_condition(coe, self.contexts(), self._functions(True))
                )
                if isinstance(coe, str)
                else bool(coe)
            )
            deadline = started + self._timeout_s(self.job.timeout_minutes)
            workspace = Workspace(
                self.state.backend,
                self.state.info.run_id,
                self.instance.key,
                lower=self.state.snapshots.volume(self.grants.limits.user),
                exec_allowed=self.grants.exec,
                labels=self._labels(),
                uid=self.grants.limits.user,
                quota_bytes=self.grants.limits.workspace_bytes,
            )
            self.workspace = workspace
            workspace.prepare(self._consumed())
            if self.grants.network:
                network = self._create_network()
            steps_network = network
            if self.job.services:  # runner.run.services: on the job's network, or their own
                services = JobServices(
                    self.state,
                    self.instance.key,
                    self.job.services,
                    self.image.services,
                    self.grants,
                    self._labels(),
                    self.stop,
                )
                private = volume_name(self.state.info.run_id, self.instance.key) + "-svc"
                steps_network = services.open(network, private, self._evaluated, deadline)
            if wants_history(self.job):  # runner.run.history
                history.open(self.state.info.root, self.grants.limits.user)
            self.containers = StepContainers(
                self.state,
                self.instance.key,
                self.grants,
                workspace.volume,
                self._labels(),
                self.stop,
                steps_network,
                history.volume,
            )
            for position, step in enumerate(self.job.steps):
                self._position = position
                self._run_step(step, deadline)
            if not self._failed:
                self._collect_artifacts(workspace)
                self._save_caches(workspace)
            self._finish_outputs()
        except RunnerError as exc:
            self._fail(self.redactor.message(exc.message))
        finally:
            problem = self.containers.close() if self.containers is not None else None
            if problem is not None:
                self._fail(problem)
            problem = services.close() if services is not None else None
            if problem is not None:
                self._fail(problem)
            if network is not None:
                try:
                    self.state.backend.remove_network(network)
                except RunnerError as exc:
                    self._fail(exc.message)
            try:
                history.close()
            except RunnerError as exc:
                self._fail(exc.message)
            if workspace is not None:
                workspace.close()
        if self.result.status is Status.RUNNING:
            if self.stop.is_set():
                self.result.status, self.result.reason = Status.CANCELLED, "interrupted"
            else:
                self.result.status = Status.SUCCESS
        self.result.duration_s = clock.monotonic() - started
        sink.emit(
            JobFinished(
                job=self.instance.key,
                status=self.result.status,
                reason=self.result.reason,
                duration_ms=round(self.result.duration_s * 1000),
            )
        )
        return self.result

    def _create_network(self) -> str:
        """The job's own egress network, kept off the host unless the policy accepts
        otherwise; a host that cannot keep it off refuses the job (fail closed)."""
        name = volume_name(self.state.info.run_id, self.instance.key) + "-net"
        accepted = self.state.accept_egress_to_host
        try:
            self.state.backend.create_network(name, self._labels(), host_reachable=accepted)
        except EgressUnavailable as exc:
            how = f"; {exc.hint}" if exc.hint else ""
            raise EgressUnavailable(
                f"refused: job {self.instance.key!r} is granted egress, but {exc.message}{how}"
            ) from exc
        return name

    def _evaluated(self, service: Service) -> Service:
        """A service with the expressions of its `env:`, `command:` and `entrypoint:`
        evaluated, as the job's env is (`env` the job's)."""
        ctx = self.contexts(self._env(None))
        return dataclasses.replace(
            service,
            env={
                self._interpolate(name, ctx): self._interpolate(value, ctx)
                for name, value in service.env.items()
            },
            command=None
            if service.command is None
            else tuple(self._interpolate(word, ctx) for word in service.command),
            entrypoint=None
            if service.entrypoint is None
            else self._interpolate(service.entrypoint, ctx),
        )

    def _fail(self, reason: str) -> None:
        self._failed = True
        if self.result.status is Status.RUNNING:
            cancelled = self.stop.is_set()
            self.result.status = Status.CANCELLED if cancelled else Status.FAILURE
            self.result.reason = "interrupted" if cancelled else reason

    def _timeout_s(self, minutes: float | str | None) -> float:
        limit = self.grants.limits.timeout_minutes * 60
        if minutes is None:
            return limit
        if isinstance(minutes, str):
            evaluated = expressions.evaluate(
                minutes.strip().removeprefix("${{").removesuffix("}}"), self.contexts()
            )
            try:
                minutes = float(evaluated)
            except (TypeError, ValueError):
                raise InvalidInput(f"timeout-minutes evaluated to {evaluated!r}") from None
        return min(limit, float(minutes) * 60)

    # -- steps -----------------------------------------------------------------------

    def _run_step(self, step: Step, deadline: float) -> None:
        sink = self.state.sink
        env = self._env(step)
        ctx = self.contexts(env)
        step = self._named(step, ctx)
        sr = StepResult(index=step.index, name=step.display_name, id=step.id)
        self.result.steps.append(sr)
        functions = self._functions(not self._failed)
        if self.stop.is_set():
            self._skip(sr, Status.CANCELLED, "interrupted")
            return
        if not expressions.truthy(
            expressions.evaluate_condition(implicit_success(step.if_), ctx, functions)
        ):
            self._skip(sr, Status.SKIPPED, "condition false")
            return
        clock = self.state.clock
        started = clock.monotonic()
        retry = step.retry
        attempts = retry.max_attempts if retry else 1
        rng = step_rng(self.state.retry_seed, self.instance.key, step.index)
        outcome = AttemptResult(Status.FAILURE)
        upcoming = self._upcoming(deadline)
        for attempt in range(1, attempts + 1):
            sr.attempts = attempt
            step_deadline = deadline
            if step.timeout_minutes is not None:
                step_deadline = min(
                    deadline, clock.monotonic() + self._timeout_s(step.timeout_minutes)
                )
            try:
                outcome = self._attempt(step, env, ctx, attempt, step_deadline, upcoming)
            except InvalidInput as exc:  # a step the runner cannot start: never retried
                outcome = AttemptResult(Status.FAILURE, self.redactor.message(exc.message))
                break
            quota = self._quota_hit() if outcome.status is Status.FAILURE else None
            if quota is not None:
                outcome.reason = f"{quota} ({outcome.reason})"
                break  # a retry would meet the same full workspace
            reason = outcome.reason
            if outcome.status is Status.SUCCESS or self.stop.is_set():
                break
            if reason.startswith("refused") or clock.monotonic() >= deadline:
                break
            kind = "timeout" if reason == "timeout" else "failure"
            if retry is None or attempt == attempts or kind not in retry.on:
                break
            delay = attempt_delay(retry, attempt, rng)
            sink.emit(
                StepRetry(
                    job=self.instance.key,
                    step=step.index,
                    attempt=attempt + 1,
                    delay_s=round(delay, 3),
                    reason=reason,
                )
            )
            if clock.wait(self.stop, delay):
                break
        status, reason, outputs = outcome.status, outcome.reason, outcome.outputs
        if status is Status.FAILURE and not self.grants.exec and _denied_exec(outcome):
            reason += NOEXEC_HINT
        sr.exit_code, sr.outputs, sr.outcome, sr.reason = outcome.exit_code, outputs, status, reason
        sr.tail, sr.log_sha256 = outcome.tail, outcome.log_sha256
        sr.duration_s = clock.monotonic() - started
        if status is Status.SUCCESS:
            self._env_files.update(outcome.env)
            self._prepend_path(outcome.path)
        self._file_commands(step, sr, outcome)
        continue_on_error = step.continue_on_error
        if isinstance(continue_on_error, str):
            continue_on_error = expressions.truthy(
                expressions.evaluate_condition(continue_on_error, ctx, functions)
            )
        sr.status = status
        if status is not Status.SUCCESS:
            if status is Status.FAILURE and continue_on_error:
                sr.status = Status.SUCCESS
                sr.reason = f"{reason} (continue-on-error)"
            else:
                self._fail(f"step {step.display_name!r} failed: {reason}")
        if step.id:
            self._steps_ctx[step.id] = {
                "outputs": dict(outputs),
                "outcome": sr.outcome.serialize(),
                "conclusion": sr.status.serialize(),
            }
        sink.emit(
            StepFinished(
                job=self.instance.key,
                step=step.index,
                name=sr.name,
                status=sr.status,
                reason=sr.reason,
                exit_code=sr.exit_code,
                duration_ms=round(sr.duration_s * 1000),
                attempts=sr.attempts,
                log_sha256=sr.log_sha256,
            )
        )

    def _prepend_path(self, directories: list[str]) -> None:
        """GitHub's order: each directory goes before those added earlier."""
        for directory in directories:
            if directory in self._path:
                self._path.remove(directory)
            self._path.insert(0, directory)

    def _file_commands(self, step: Step, sr: StepResult, outcome: AttemptResult) -> None:
        """The step's summary, redacted by the job, kept with the run (its event and its
        result); what runner did not keep, as warnings."""
        for warning in outcome.warnings:
            self.state.sink.emit(
                Annotation(job=self.instance.key, step=step.index, level="warning", message=warning)
            )
        if outcome.summary.strip():
            sr.summary = self.redactor(outcome.summary)
            self.state.sink.emit(
                StepSummary(job=self.instance.key, step=step.index, markdown=sr.summary)
            )

    def _upcoming(self, deadline: float) -> list[Upcoming]:
        """The steps after the current one (up to `PREPARE_AHEAD`), as they would run if
        nothing changed: `run` steps whose `if:` holds now, in a row (their containers
        are prepared while this one runs)."""
        upcoming: list[Upcoming] = []
        for step in self.job.steps[self._position + 1 : self._position + 1 + PREPARE_AHEAD]:
            if step.uses is not None:
                break
            try:
                env = self._env(step)
                ctx = self.contexts(env)
                functions = self._functions(not self._failed)
                if not expressions.truthy(
                    expressions.evaluate_condition(implicit_success(step.if_), ctx, functions)
                ):
                    break
                shell = self.job.defaults.shell or self.state.mission.defaults.shell or "sh"
                attempt = Attempt(
                    step.index,
                    step.display_name,
                    1,
                    self.image,
                    self._command(step, ctx, shell),
                    self._step_env(env),
                    self._workdir(step),
                )
                minutes = step.timeout_minutes
                timeout = None if minutes is None else self._timeout_s(minutes)
            except RunnerError:
                break  # it fails the same way when it comes
            upcoming.append(Upcoming(attempt, deadline, timeout))
        return upcoming

    def _quota_hit(self) -> str | None:
        return self.workspace.quota_hit() if self.workspace is not None else None

    def _skip(self, sr: StepResult, status: Status, reason: str) -> None:
        sr.status = sr.outcome = status
        sr.reason = reason
        if sr.id:
            self._steps_ctx[sr.id] = {
                "outputs": {},
                "outcome": status.value,
                "conclusion": status.value,
            }
        self.state.sink.emit(
            StepFinished(
                job=self.instance.key,
                step=sr.index,
                name=sr.name,
                status=status,
                reason=reason,
                exit_code=None,
                duration_ms=0,
                attempts=0,
            )
        )

    def _command(self, step: Step, ctx: Mapping[str, Any], default_shell: str) -> list[str]:
        script = self._interpolate(step.run or "", ctx)
        shell = step.shell or default_shell
        try:
            return [*shells.command(shell), script]
        except shells.ShellError as exc:
            raise InvalidInput(f"step {step.display_name!r}: {exc.message}") from None

    def _workdir(self, step: Step) -> str:
        wd = step.working_directory or self.job.defaults.working_directory
        wd = wd or self.state.mission.defaults.working_directory or "."
        joined = posixpath.normpath(posixpath.join(WORKSPACE_DIR, wd))
        if joined != WORKSPACE_DIR and not joined.startswith(WORKSPACE_DIR + "/"):
            raise InvalidInput(f"working-directory {wd!r} leaves the workspace")
        return joined

    def _step_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """What a step's container gets: runner's variables, `env`, and `$RUNNER_PATH`'s
        directories before the image's (or the step's) PATH."""
        step_env = {**self.state.info.step_environment(), **env}
        if self._path:
            step_env["PATH"] = ":".join([*self._path, step_env.get("PATH", PATH)])
        return step_env

    def _attempt(
        self,
        step: Step,
        env: dict[str, str],
        ctx: Mapping[str, Any],
        attempt: int,
        deadline: float,
        upcoming: Sequence[Upcoming] = (),
    ) -> AttemptResult:
        """One attempt of a step: a `run` step, or what its `uses:` means (runner.mission.actions)."""
        base_env = self._step_env(env)
        if step.uses is None:
            default_shell = self.job.defaults.shell or self.state.mission.defaults.shell or "sh"
            return self._containers.run(
                Attempt(
                    step.index,
                    step.display_name,
                    attempt,
                    self.image,
                    self._command(step, ctx, default_shell),
                    base_env,
                    self._workdir(step),
                ),
                deadline,
                upcoming,
            )
        kind = actions.kind_of(step.uses)
        if kind is actions.ActionKind.CHECKOUT:
            if self.containers is not None and self.containers.history is not None:
                return AttemptResult(
                    Status.SUCCESS, "built in: the workspace is the checkout, its history at .git"
                )
            return AttemptResult(Status.SUCCESS, "built in: the workspace is the checkout")
        if kind is actions.ActionKind.HARDEN_RUNNER:
            return AttemptResult(Status.SUCCESS, "built in: the steps already run hardened")
        if kind is actions.ActionKind.MARKETPLACE:
            return AttemptResult(Status.FAILURE, actions.marketplace_refusal(step.uses))
        with_ = {k: self._interpolate(v, ctx) for k, v in step.with_.items()}
        if kind in (actions.ActionKind.UPLOAD_ARTIFACT, actions.ActionKind.DOWNLOAD_ARTIFACT):
            return self._builtin(step, kind, with_)
        if kind is actions.ActionKind.CACHE:
            return self._cache(step, with_)
        if kind is actions.ActionKind.SETUP:
            return self._setup(step.uses, with_)
        if kind is actions.ActionKind.DOCKER:
            image = self._docker_image(step.uses.removeprefix("docker://"))
            command = shlex.split(with_.get("args", ""))
            return self._containers.run(
                Attempt(
                    step.index,
                    step.display_name,
                    attempt,
                    image,
                    command,
                    base_env,
                    self._workdir(step),
                ),
                deadline,
            )
        return self._composite(step, with_, base_env, attempt, deadline)

    def _setup(self, uses: str, with_: Mapping[str, str]) -> AttemptResult:
        """A setup action: the policy's `toolchains:` already chose the job's image by the
        version it asks for (runner.policy.capabilities); it sets GitHub's output."""
        toolchain = actions.setup_of(uses)
        assert toolchain is not None
        version = actions.requested_version(uses, with_)
        outputs = {toolchain.output: version} if toolchain.output else {}
        return AttemptResult(
            Status.SUCCESS,
            f"built in: {toolchain.name} {version} is the job's image's",
            outputs=outputs,
        )

    def _builtin(
        self, step: Step, kind: actions.ActionKind, with_: Mapping[str, str]
    ) -> AttemptResult:
        """An artifact action, run by runner itself (runner.run.builtin_actions)."""
        assert self.workspace is not None
        try:
            if kind is actions.ActionKind.UPLOAD_ARTIFACT:
                done = builtin_actions.upload(
                    self.state,
                    self.instance.key,
                    self.workspace,
                    self._containers.last,
                    with_,
                    self.grants.limits,
                    self._scanner(),
                )
            else:
                done = builtin_actions.download(self.state, self.workspace, with_)
        except RunnerError as exc:
            said = exc.message if exc.hint is None else f"{exc.message} ({exc.hint})"
            return AttemptResult(Status.FAILURE, self.redactor.message(said))
        if done.warning:
            self.state.sink.emit(
                Annotation(
                    job=self.instance.key, step=step.index, level="warning", message=done.warning
                )
            )
        return AttemptResult(Status.SUCCESS, outputs=dict(done.outputs))

    def _cache(self, step: Step, with_: Mapping[str, str]) -> AttemptResult:
        """actions/cache (runner.run.cache): restore here, and save a miss when the job
        ends; actions/cache/restore only restores; actions/cache/save saves here."""
        assert self.workspace is not None
        action = (step.uses or "").partition("@")[0].lower()
        try:
            request = cache.request(with_)
            if action == "actions/cache/save":
                self._save_cache(self.workspace, request, step.index)
                return AttemptResult(Status.SUCCESS)
            restored = cache.restore(self.state, self.instance.key, self.workspace, request)
        except RunnerError as exc:
            said = exc.message if exc.hint is None else f"{exc.message} ({exc.hint})"
            return AttemptResult(Status.FAILURE, self.redactor.message(said))
        if not restored.hit and action == "actions/cache":
            self._caches.append(request)
        return AttemptResult(Status.SUCCESS, outputs=dict(restored.outputs))

    def _save_caches(self, workspace: Workspace) -> None:
        """GitHub's post step of actions/cache: each missed key, stored out of the job's
        last container; what could not be saved is a warning, the job's result stands."""
        last = self.job.steps[-1].index if self.job.steps else 0
        for request in self._caches:
            self._save_cache(workspace, request, last)

    def _save_cache(self, workspace: Workspace, request: cache.Request, step: int) -> None:
        """Save `request` out of the job's last container; a warning (at `step`) when it
        cannot be saved."""
        last = self.containers.last if self.containers is not None else None
        warning = f"cache {request.key!r} not saved: no step ran before, nothing was written"
        if last is not None:
            warning = cache.save(
                self.state,
                self.instance.key,
                workspace,
                last,
                request,
                self.grants.limits,
                self._scanner(),
            )
        if warning:
            self.state.sink.emit(
                Annotation(
                    job=self.instance.key,
                    step=step,
                    level="warning",
                    message=self.redactor.message(warning),
                )
            )

    def _docker_image(self, ref: str) -> ResolvedImage:
        """A `docker://` step's image, cut down to the job's tools like its own image
        (`tools: all`, which needs its grant, keeps it whole)."""
        toolset = build_toolset(
            self.state.backend,
            ref,
            self.grants.tools,
            load_catalog(self.state.info.root),
            self.state.state_dir,
        )
        return ResolvedImage(
            ref=toolset.image,
            digest=present(self.state.backend, toolset.image).id,
            manifest_digest=toolset.manifest_digest,
            interpreter=toolset.interpreter,
        )

    def _composite(
        self,
        step: Step,
        with_: Mapping[str, str],
        env: dict[str, str],
        attempt: int,
        deadline: float,
    ) -> AttemptResult:
        """A local composite action: its steps in order, each in its own container."""
        assert step.uses is not None
        action = actions.load_composite(self.state.info.root, step.uses)
        inputs = action.inputs(with_)
        env = {**env, **{f"INPUT_{k.upper().replace(' ', '_')}": v for k, v in inputs.items()}}
        inner_steps: dict[str, Any] = {}
        failed = False
        result = AttemptResult(Status.SUCCESS)
        for number, inner in enumerate(action.steps, start=1):
            ctx = {**self.contexts(env), "inputs": inputs, "steps": inner_steps}
            functions = self._functions(not failed)
            if not expressions.truthy(
                expressions.evaluate_condition(implicit_success(inner.if_), ctx, functions)
            ):
                continue
            inner_env = {**env, **{k: self._interpolate(v, ctx) for k, v in inner.env.items()}}
            outcome = self._containers.run(
                Attempt(
                    step.index,
                    f"{step.display_name} / {inner.display_name}",
                    attempt * 100 + number,
                    self.image,
                    self._command(inner, ctx, "sh"),
                    inner_env,
                    self._workdir(inner),
                ),
                deadline,
            )
            env.update(outcome.env)
            result.env.update(outcome.env)
            result.path.extend(outcome.path)
            result.summary += outcome.summary
            result.warnings.extend(outcome.warnings)
            result.tail, result.log_sha256 = outcome.tail, outcome.log_sha256
            if inner.id:
                inner_steps[inner.id] = {
                    "outputs": outcome.outputs,
                    "outcome": outcome.status.value,
                }
            if outcome.status is not Status.SUCCESS and not inner.continue_on_error:
                failed = True
                result.status, result.reason = outcome.status, f"{action.path}: {outcome.reason}"
                result.exit_code = outcome.exit_code
                if outcome.status is Status.CANCELLED:
                    return result
        ctx = {**self.contexts(env), "inputs": inputs, "steps": inner_steps}
        result.outputs = {k: self._interpolate(v, ctx) for k, v in action.outputs.items()}
        return result

    # -- outputs and artifacts -------------------------------------------------------

    def _finish_outputs(self) -> None:
        """The job's outputs, but none that holds a secret or a mask: another job may read
        them, and it was granted neither."""
        ctx = self.contexts(self._env(None))
        for name, value in self.job.outputs.items():
            output = self._interpolate(value, ctx)
            if self.redactor.masks(output):
                last = self.job.steps[-1].index if self.job.steps else 0
                self.state.sink.emit(
                    Annotation(
                        job=self.instance.key,
                        step=last,
                        level="warning",
                        message=f"Skip output {name!r} since it may contain secret (job "
                        f"{self.instance.key} does not pass it on)",
                    )
                )
                continue
            self.result.outputs[name] = output

    def _labels(self) -> dict[str, str]:
        return run_labels(self.state.state_dir, self.state.info.run_id, self.instance.key)

    def _consumed(self) -> list[tuple[str, Path]]:
        return artifacts.consumed(self.state, self.job.consumes)

    def _collect_artifacts(self, workspace: Workspace) -> None:
        last = self.containers.last if self.containers is not None else None
        artifacts.collect(
            self.state,
            self.instance.key,
            self.job.produces,
            workspace,
            last,
            self.grants.limits,
            self._scanner(),
        )

    def _scanner(self) -> Redactor:
        """What an artifact of this job must not hold: the secrets granted to it and the
        values it masked (those shorter than `MIN_MASK` would refuse most files)."""
        granted = [v for k, v in self.state.secrets.items() if k in self.grants.secrets]
        values = [v for v in (*granted, *self.redactor.values) if len(v.strip()) >= MIN_MASK]
        return Redactor(values, credentials=False)
