"""One job instance, start to end: its workspace, then each step in a fresh hardened
container, with `if`, retries, timeouts, output/env files and artifacts.

Everything the job reports goes through the run's `Sink`; everything it decides comes
from the mission records, the policy grants and the contexts: no raw dicts, no Docker
calls outside the `Backend`.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import expressions, mount_check
from runner.backend import Backend, ContainerSpec, run_labels
from runner.contexts import RunInfo, implicit_success
from runner.errors import InvalidInput, RunnerError
from runner.hardening import container_config
from runner.mission import Job, Mission, Step
from runner.plan import JobInstance
from runner.policy import Grants
from runner.redact import Redactor
from runner.results import JobResult, Status, StepResult
from runner.retry import attempt_delay, step_rng
from runner.sink import Sink
from runner.step_output import OutputPump
from runner.workflow_commands import check_env_names, parse_file_command
from runner.workspace import IO_DIR, WORKSPACE_DIR, RepoSnapshot, Workspace

POLL_S = 0.25
MAX_IO_BYTES = 2 * 1024 * 1024
SHELLS: dict[str, list[str]] = {
    "sh": ["sh", "-e", "-c"],
    "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"],
    "python": ["python3", "-c"],
    "python3": ["python3", "-c"],
}


@dataclass(frozen=True)
class ResolvedImage:
    ref: str  # what containers are created from
    digest: str  # the image id (sha256:...)
    manifest_digest: str = ""  # the toolset manifest's digest, when pruned
    interpreter: bool = True  # an interpreter among the tools: deny memfd_create


@dataclass
class RunState:
    """What all jobs of one run share."""

    backend: Backend
    sink: Sink
    redactor: Redactor
    info: RunInfo
    mission: Mission
    secrets: Mapping[str, str]
    artifacts_dir: Path
    state_dir: Path
    snapshot: RepoSnapshot
    cancel: threading.Event
    retry_seed: int | None = None
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> record
    lock: threading.Lock = field(default_factory=threading.Lock)


def _functions(success: bool, cancel: threading.Event) -> dict[str, Callable[..., Any]]:
    return {
        "success": lambda: success and not cancel.is_set(),
        "failure": lambda: not success,
        "always": lambda: True,
        "cancelled": cancel.is_set,
    }


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
        self.state = state
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
        self._last_container: str | None = None
        self._failed = False
        self._reapers: list[threading.Thread] = []
        self._mounts_checked = False
        self._reap_errors: list[str] = []

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

    def _interpolate(self, text: str, ctx: Mapping[str, Any]) -> str:
        return expressions.interpolate(text, ctx, _functions(not self._failed, self.state.cancel))

    def _env(self, step: Step | None) -> dict[str, str]:
        env: dict[str, str] = {}
        for layer in (self.state.mission.env, self.job.env):
            ctx = self.contexts(env)
            for name, value in layer.items():
                env[name] = self._interpolate(value, ctx)
        env.update(self._env_files)
        if step is not None:
            ctx = self.contexts(env)
            for name, value in step.env.items():
                env[name] = self._interpolate(value, ctx)
        return env

    # -- the job ---------------------------------------------------------------------

    def run(self) -> JobResult:
        started = time.monotonic()
        sink = self.state.sink
        sink.emit("job.started", job=self.instance.key)
        self.result.status = Status.RUNNING
        coe = self.job.continue_on_error
        workspace: Workspace | None = None
        try:
            self.result.continue_on_error = (
                expressions.truthy(
                    expressions.evaluate_condition(
                        coe, self.contexts(), _functions(True, self.state.cancel)
                    )
                )
                if isinstance(coe, str)
                else bool(coe)
            )
            deadline = started + self._timeout_s(self.job.timeout_minutes)
            workspace = Workspace(
                self.state.backend,
                self.state.info.run_id,
                self.instance.key,
                self.state.info.root,
                exec_allowed=self.grants.exec,
                labels=self._labels(),
                uid=self.grants.limits.user,
                snapshot=self.state.snapshot
                if self.state.snapshot.uid == self.grants.limits.user
                else None,
            )
            workspace.prepare(self._consumed())
            for step in self.job.steps:
                self._run_step(step, workspace, deadline)
            if not self._failed:
                self._collect_artifacts(workspace)
            self._finish_outputs()
        except RunnerError as exc:
            self._fail(self.state.redactor(exc.message))
        finally:
            for reaper in self._reapers:
                reaper.join()
            if self._reap_errors:
                self._fail(self._reap_errors[0])
            if self._last_container is not None:
                self.state.backend.remove(self._last_container)
            if workspace is not None:
                workspace.close()
        if self.result.status is Status.RUNNING:
            if self.stop.is_set():
                self.result.status, self.result.reason = Status.CANCELLED, "interrupted"
            else:
                self.result.status = Status.SUCCESS
        self.result.duration_s = time.monotonic() - started
        sink.emit(
            "job.finished",
            job=self.instance.key,
            status=self.result.status.serialize(),
            reason=self.result.reason,
            duration_ms=round(self.result.duration_s * 1000),
        )
        return self.result

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

    def _run_step(self, step: Step, workspace: Workspace, deadline: float) -> None:
        sink = self.state.sink
        sr = StepResult(index=step.index, name=step.display_name, id=step.id)
        self.result.steps.append(sr)
        env = self._env(step)
        ctx = self.contexts(env)
        functions = _functions(not self._failed, self.state.cancel)
        if self.stop.is_set():
            self._skip(sr, Status.CANCELLED, "interrupted")
            return
        if not expressions.truthy(
            expressions.evaluate_condition(implicit_success(step.if_), ctx, functions)
        ):
            self._skip(sr, Status.SKIPPED, "condition false")
            return
        started = time.monotonic()
        retry = step.retry
        attempts = retry.max_attempts if retry else 1
        rng = step_rng(self.state.retry_seed, self.instance.key, step.index)
        status, reason, code = Status.FAILURE, "", None
        outputs: dict[str, str] = {}
        for attempt in range(1, attempts + 1):
            sr.attempts = attempt
            step_deadline = deadline
            if step.timeout_minutes is not None:
                step_deadline = min(
                    deadline, time.monotonic() + self._timeout_s(step.timeout_minutes)
                )
            status, reason, code, outputs = self._attempt(
                step, sr, env, ctx, workspace, attempt, step_deadline
            )
            if status is Status.SUCCESS or self.stop.is_set() or reason.startswith("refused"):
                break
            if time.monotonic() >= deadline:
                break
            kind = "timeout" if reason == "timeout" else "failure"
            if retry is None or attempt == attempts or kind not in retry.on:
                break
            delay = attempt_delay(retry, attempt, rng)
            sink.emit(
                "step.retry",
                job=self.instance.key,
                step=step.index,
                attempt=attempt + 1,
                delay_s=round(delay, 3),
                reason=reason,
            )
            if self.stop.wait(delay):
                break
        sr.exit_code = code
        sr.outputs = outputs
        sr.outcome = status
        sr.reason = reason
        sr.duration_s = time.monotonic() - started
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
            "step.finished",
            job=self.instance.key,
            step=step.index,
            name=sr.name,
            status=sr.status.serialize(),
            reason=sr.reason,
            exit_code=sr.exit_code,
            duration_ms=round(sr.duration_s * 1000),
            attempts=sr.attempts,
            log_sha256=sr.log_sha256,
        )

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
            "step.finished",
            job=self.instance.key,
            step=sr.index,
            name=sr.name,
            status=status.serialize(),
            reason=reason,
            exit_code=None,
            duration_ms=0,
            attempts=0,
        )

    def _command(self, step: Step, ctx: Mapping[str, Any]) -> list[str]:
        if step.uses is not None:
            raise InvalidInput(
                f"step {step.display_name!r} uses {step.uses!r}, which this runner cannot run; "
                "vendor it as a local composite action (uses: ./actions/NAME) or use run:"
            )
        script = self._interpolate(step.run or "", ctx)
        shell = step.shell or self.job.defaults.shell or self.state.mission.defaults.shell or "sh"
        if shell not in SHELLS:
            raise InvalidInput(
                f"step {step.display_name!r}: shell {shell!r} is not supported "
                f"(use one of: {', '.join(sorted(SHELLS))})"
            )
        return [*SHELLS[shell], script]

    def _workdir(self, step: Step) -> str:
        wd = step.working_directory or self.job.defaults.working_directory
        wd = wd or self.state.mission.defaults.working_directory or "."
        joined = posixpath.normpath(posixpath.join(WORKSPACE_DIR, wd))
        if joined != WORKSPACE_DIR and not joined.startswith(WORKSPACE_DIR + "/"):
            raise InvalidInput(f"working-directory {wd!r} leaves the workspace")
        return joined

    def _attempt(
        self,
        step: Step,
        sr: StepResult,
        env: dict[str, str],
        ctx: Mapping[str, Any],
        workspace: Workspace,
        attempt: int,
        deadline: float,
    ) -> tuple[Status, str, int | None, dict[str, str]]:
        state = self.state
        io_name = f"{step.index}-{attempt}"
        step_env = dict(state.info.step_environment())
        step_env.update(env)
        step_env.update(
            {
                "RUNNER_OUTPUT": f"{IO_DIR}/{io_name}.output",
                "RUNNER_ENV": f"{IO_DIR}/{io_name}.env",
                "GITHUB_OUTPUT": f"{IO_DIR}/{io_name}.output",
                "GITHUB_ENV": f"{IO_DIR}/{io_name}.env",
            }
        )
        limits = self.grants.limits
        spec = ContainerSpec(
            image=self.image.ref,
            command=self._command(step, ctx),
            env=step_env,
            workdir=self._workdir(step),
            labels=self._labels(),
            user=limits.user,
            network=self.grants.network,
            workspace_volume=workspace.volume,
            workspace_exec=self.grants.exec,
            memory_bytes=limits.memory_bytes,
            cpus=limits.cpus,
            pids=limits.pids,
            seccomp_deny_memfd=self.image.interpreter,
        )
        config_digest = hashlib.sha256(
            json.dumps(container_config(spec), sort_keys=True, default=str).encode()
        ).hexdigest()
        state.sink.emit(
            "step.started",
            job=self.instance.key,
            step=step.index,
            name=sr.name,
            attempt=attempt,
            image=self.image.ref,
            image_digest=self.image.digest,
            config_digest=config_digest,
        )
        backend = state.backend
        cid = backend.create(spec)
        previous, self._last_container = self._last_container, cid
        if previous is not None:  # off the critical path; joined before the volume goes
            reaper = threading.Thread(target=self._reap, args=(previous,), daemon=True)
            reaper.start()
            self._reapers.append(reaper)
        pump = OutputPump(state.sink, state.redactor, self.instance.key, step.index)
        backend.start(cid)
        reader = threading.Thread(target=self._pump, args=(cid, pump), daemon=True)
        reader.start()
        refused = None if self._mounts_checked else self._check_mounts(cid)
        code: int | None = None
        reason = ""
        while refused is None:
            if self.stop.is_set():
                backend.kill(cid)
                reason = "interrupted"
                break
            left = deadline - time.monotonic()
            if left <= 0:
                backend.kill(cid)
                reason = "timeout"
                break
            code = backend.wait(cid, min(POLL_S, left))
            if code is not None:
                break
        if refused is not None:
            backend.kill(cid)
            reason = refused
        reader.join(timeout=10)
        pump.close()
        sr.tail = list(pump.tail)
        sr.log_sha256 = pump.digest.hexdigest()
        outputs: dict[str, str] = {}
        if reason:
            return (
                (Status.CANCELLED if reason == "interrupted" else Status.FAILURE),
                reason,
                None,
                outputs,
            )
        try:
            outputs, env_values = self._read_io(cid, workspace.volume, io_name)
        except InvalidInput as exc:
            return Status.FAILURE, state.redactor(exc.message), code, outputs
        if code != 0:
            return Status.FAILURE, f"exit code {code}", code, outputs
        self._env_files.update(env_values)
        return Status.SUCCESS, "", code, outputs

    def _check_mounts(self, cid: str) -> str | None:
        """SPEC 6 against the kernel's view, once per job: a reason to refuse, or None."""
        pid = self.state.backend.host_pid(cid)
        if pid is None:
            return None  # already gone (or a remote engine): the next step is checked
        allowed = frozenset({WORKSPACE_DIR}) if self.grants.exec else frozenset()
        found = mount_check.check_container(pid, self.grants.limits.user, allowed)
        if found is None:
            return None
        self._mounts_checked = True
        if found:
            return "refused: " + "; ".join(found)
        return None

    def _reap(self, cid: str) -> None:
        try:
            self.state.backend.remove(cid)
        except RunnerError as exc:
            self._reap_errors.append(exc.message)

    def _pump(self, cid: str, pump: OutputPump) -> None:
        try:
            for chunk in self.state.backend.stream_logs(cid):
                pump.feed(chunk)
        except RunnerError:
            return

    def _read_io(
        self, cid: str, volume: str, io_name: str
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The step's output and env files: from the volume when the engine allows it,
        else out of its stopped container."""
        files: dict[str, str] = {}
        wanted = {f"{io_name}.output": "output", f"{io_name}.env": "env"}
        direct = self.state.backend.read_files(
            volume, posixpath.relpath(IO_DIR, WORKSPACE_DIR), list(wanted), MAX_IO_BYTES
        )
        if direct is not None:
            files = {wanted[name]: data.decode("utf-8", "replace") for name, data in direct.items()}
            return self._parse_io(files)
        data = b"".join(self.state.backend.get_archive(cid, IO_DIR))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar:
                kind = wanted.get(posixpath.basename(member.name))
                if kind is None or not member.isfile():
                    continue
                if member.size > MAX_IO_BYTES:
                    raise InvalidInput(f"the step's ${kind.upper()} file is larger than 2 MiB")
                handle = tar.extractfile(member)
                if handle is not None:
                    files[kind] = handle.read().decode("utf-8", "replace")
        return self._parse_io(files)

    def _parse_io(self, files: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        outputs = parse_file_command(files.get("output", ""), what="$RUNNER_OUTPUT")
        env_values = check_env_names(
            parse_file_command(files.get("env", ""), what="$RUNNER_ENV"), what="$RUNNER_ENV"
        )
        return outputs, env_values

    # -- outputs and artifacts -------------------------------------------------------

    def _finish_outputs(self) -> None:
        ctx = self.contexts(self._env(None))
        for name, value in self.job.outputs.items():
            self.result.outputs[name] = self._interpolate(value, ctx)

    def _labels(self) -> dict[str, str]:
        return run_labels(self.state.state_dir, self.state.info.run_id, self.instance.key)

    def _consumed(self) -> list[tuple[str, Path]]:
        with self.state.lock:
            records = [self.state.artifacts.get(name) for name in self.job.consumes]
        missing = [n for n, r in zip(self.job.consumes, records, strict=True) if r is None]
        if missing:
            raise InvalidInput(
                f"artifact(s) {', '.join(missing)} were not produced by a needed job"
            )
        return [(str(r["path"]), Path(str(r["stored"]))) for r in records if r is not None]

    def _collect_artifacts(self, workspace: Workspace) -> None:
        if not self.job.produces:
            return
        if self._last_container is None:
            raise InvalidInput("no step ran, so no artifact was produced")
        for artifact in self.job.produces:
            stored = self.state.artifacts_dir / f"{artifact.name}.tar"
            data, _, _ = workspace.collect(self._last_container, artifact.path)
            digest, size = _content_digest(data, artifact.type, artifact.path)
            stored.write_bytes(data)
            record = {
                "name": artifact.name,
                "path": artifact.path,
                "type": artifact.type,
                "sha256": digest,
                "size": size,
                "stored": str(stored),
                "job": self.instance.key,
            }
            with self.state.lock:
                self.state.artifacts[artifact.name] = record
            self.state.sink.emit(
                "artifact.stored",
                job=self.instance.key,
                name=artifact.name,
                path=artifact.path,
                sha256=digest,
                size=size,
            )


def _content_digest(data: bytes, kind: str, path: str) -> tuple[str, int]:
    """SHA-256 and size of what an artifact holds: a file's bytes, or a directory's tar.

    A `file` artifact must be one regular file; anything else fails the job."""
    if kind == "dir":
        return hashlib.sha256(data).hexdigest(), len(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        if len(members) != 1 or not members[0].isfile():
            raise InvalidInput(f"artifact {path!r} is not a regular file (declared type: file)")
        handle = tar.extractfile(members[0])
        content = handle.read() if handle is not None else b""
    return hashlib.sha256(content).hexdigest(), len(content)
