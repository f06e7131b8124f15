"""One attempt of a step in its own hardened container, and the containers of a job.

create (or take the container prepared for the attempt) -> (the previous step's
container is reaped off the critical path) -> start -> output pumped through the redactor
-> wait, killed on timeout or cancel -> the step's `$RUNNER_OUTPUT` / `$RUNNER_ENV` /
`$RUNNER_PATH` / `$RUNNER_STEP_SUMMARY` read back. The job's last container is kept until
its artifacts are collected. Deadlines are read on the run's clock.

The next steps are prepared while one runs, on a backend that `Boots` (Docker; Podman,
whose containers are created and attached ahead, never booted): a backend that cannot
hold a started container back prepares nothing (Kubernetes, where a pod starts when it is
created: the next steps' pods slowed the current one on the local cluster, 2.22x a bare
pod per step against 1.53x without them). Once the current step's container exists,
the containers of the `PREPARE_AHEAD` attempts the job expects next (`Upcoming`: as
known now) are created and attached in the background, in step order, and booted side by
side where the engine can (`Boots.boot`; not Podman): the engine starts them and
runner-init waits for its environment. So the engine's start, most of a container's cost, is off the critical
path, while a step's command cannot run, and its environment (secrets included) does not
leave runner, before `start` hands it over. A step's container is the one prepared for
its attempt only if the spec it needs now is the spec prepared (its `$RUNNER_ENV`,
outputs and command as they turned out) and runner-init's own deadline falls when the
step's needs it or at most `PREPARED_SLACK_S` later, never earlier (`_kill_time`); a
preparation that no longer matches what is known is made again. Any other prepared
container (a step skipped, cancelled or never reached, a retry no one expected) is
removed off the critical path, at the latest by `close`, its step never run. A prepared
container has recorded nothing: its `step.started` is emitted when it is used, with the
spec it was created with, before its environment is handed over.

Every step runs under runner-init (`runner.engine.stepinit`), which checks the kernel's
mount table before the step can execute anything: a refusal (`contract.refusal`) fails the
step with "refused: ..." and is never retried. Output whose end the engine lost
(`OutputIncomplete` from the backend's reader) fails the step too, saying so. The
container also carries its own deadline, the step's plus `INIT_GRACE_S`, so that it dies
even if runner does not live to kill it.
"""

from __future__ import annotations

import dataclasses
import io
import posixpath
import tarfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from runner.engine.backend import (
    Boots,
    ContainerSpec,
    Described,
    OutputIncomplete,
    check_spec,
    spec_digest,
)
from runner.engine.stepinit import contract
from runner.errors import InvalidInput, RunnerError
from runner.policy.model import Grants
from runner.records.events import StepPlaced, StepStarted
from runner.records.results import Status
from runner.run.state import ResolvedImage, RunState
from runner.run.step_output import OutputPump
from runner.run.workflow_commands import (
    MAX_SUMMARY_BYTES,
    parse_file_command,
    parse_path_file,
)
from runner.run.workspace import IO_DIR, WORKSPACE_DIR

POLL_S = 0.25
MAX_IO_BYTES = 2 * 1024 * 1024
INIT_GRACE_S = 10.0  # runner kills at the deadline; runner-init this much later, alone
HEAD_BYTES = 8192
PLACEMENT = (
    "backend",
    "node",
    "pod",
    "pod_spec_digest",
    "image",
    "image_digest",
)  # of a step's raw output, where runner-init's refusal line is
PREPARE_AHEAD = 2  # steps whose containers are prepared while one runs
PREPARED_SLACK_S = 2.0  # how much later a prepared container's runner-init may kill it
_T = TypeVar("_T")


@dataclass(frozen=True)
class Attempt:
    step: int  # the step's index in its job
    name: str
    number: int  # 1-based attempt (or composite sub-step) number
    image: ResolvedImage
    command: list[str]
    env: Mapping[str, str]
    workdir: str


@dataclass
class AttemptResult:
    status: Status
    reason: str = ""
    exit_code: int | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # from $RUNNER_ENV
    path: list[str] = field(default_factory=list)  # from $RUNNER_PATH, in the file's order
    summary: str = ""  # $RUNNER_STEP_SUMMARY's Markdown, as the step wrote it
    warnings: list[str] = field(default_factory=list)  # what runner did not keep, and why
    tail: list[str] = field(default_factory=list)
    log_sha256: str = ""


@dataclass(frozen=True)
class Upcoming:
    """The attempt a job expects to run next, as it is known before the current one ends,
    and its deadlines: the job's, and the step's own timeout (from its start) if any."""

    attempt: Attempt
    deadline: float
    timeout_s: float | None = None


@dataclass
class _Prepared:
    step: int  # of the attempt it is for
    number: int
    spec: ContainerSpec
    deadline: float  # what its runner-init's counts to (plus the grace), on the run's clock
    made: threading.Event = field(default_factory=threading.Event)  # its create returned
    ready: threading.Event = field(default_factory=threading.Event)  # its preparation ended
    cid: str | None = None
    output: Iterator[bytes] | None = None
    booted_at: float | None = None  # on the run's clock, just before the engine's start


def _same_but_deadline(prepared: ContainerSpec, needed: ContainerSpec) -> bool:
    """Whether a container made with `prepared` is one `needed` describes: every field
    equal but runner-init's deadline, which `_take_prepared` checks on its own."""
    return dataclasses.replace(prepared, deadline_s=needed.deadline_s) == needed


def io_paths(step: int, number: int) -> dict[str, str]:
    """The step's file-command paths, under names GitHub's steps know too."""
    base = f"{IO_DIR}/{step}-{number}"
    return {
        "RUNNER_OUTPUT": f"{base}.output",
        "RUNNER_ENV": f"{base}.env",
        "RUNNER_PATH": f"{base}.path",
        "RUNNER_STEP_SUMMARY": f"{base}.summary",
        "GITHUB_OUTPUT": f"{base}.output",
        "GITHUB_ENV": f"{base}.env",
        "GITHUB_PATH": f"{base}.path",
        "GITHUB_STEP_SUMMARY": f"{base}.summary",
    }


class StepContainers:
    def __init__(
        self,
        state: RunState,
        job_key: str,
        grants: Grants,
        volume: str,
        labels: Mapping[str, str],
        stop: threading.Event,
        network: str | None = None,
        history: str | None = None,
    ) -> None:
        self.state = state
        self.job_key = job_key
        self.grants = grants
        self.volume = volume
        self.labels = dict(labels)
        self.stop = stop
        self.network = network  # the job's egress network, when granted
        self.history = history  # the job's read-only .git volume, when it asks for one
        self.last: str | None = None  # kept for the artifacts
        self._reapers: list[threading.Thread] = []
        self._reap_errors: list[str] = []
        self._preparing: list[_Prepared] = []  # in step order

    def _spec(self, attempt: Attempt, deadline: float) -> ContainerSpec:
        limits = self.grants.limits
        return ContainerSpec(
            image=attempt.image.ref,
            command=attempt.command,
            env={**attempt.env, **io_paths(attempt.step, attempt.number)},
            workdir=attempt.workdir,
            labels=self.labels,
            user=limits.user,
            network=self.network,
            workspace_volume=self.volume,
            workspace_exec=self.grants.exec,
            history_volume=self.history,
            memory_bytes=limits.memory_bytes,
            cpus=limits.cpus,
            pids=limits.pids,
            seccomp_deny_memfd=attempt.image.interpreter,
            deadline_s=self._deadline_s(deadline),
        )

    def _deadline_s(self, deadline: float) -> float:
        """runner-init's own deadline, from now: the step's `deadline`, plus its grace."""
        return max(0.0, deadline - self.state.clock.monotonic()) + INIT_GRACE_S

    def run(
        self, attempt: Attempt, deadline: float, upcoming: Sequence[Upcoming] = ()
    ) -> AttemptResult:
        """Run one attempt, and meanwhile prepare the containers of `upcoming` (the
        attempts expected next, in order) in the background."""
        state, backend, clock = self.state, self.state.backend, self.state.clock
        spec = self._spec(attempt, deadline)
        check_spec(spec)  # refused before it is recorded as started
        prepared = self._take_prepared(attempt, spec, deadline)
        if prepared is not None:
            spec = prepared.spec  # what the container was created with
        try:
            state.sink.emit(
                StepStarted(
                    job=self.job_key,
                    step=attempt.step,
                    name=attempt.name,
                    attempt=attempt.number,
                    image=attempt.image.ref,
                    image_digest=attempt.image.digest,
                    config_digest=spec_digest(spec),
                )
            )
        except BaseException:
            if prepared is not None:
                self._discard(prepared)
            raise
        if prepared is not None and prepared.cid is not None and prepared.output is not None:
            cid, output = prepared.cid, prepared.output
        else:
            cid, output = backend.create(spec), None
        for expected in upcoming:  # from now on, beside this one
            self._prepare(expected)
        previous, self.last = self.last, cid
        if previous is not None:  # off the critical path; joined before the volume goes
            self._reap_later(previous)
        pump = OutputPump(state.sink, state.redactor, self.job_key, attempt.step)
        if output is None:
            output = backend.attach_output(cid)
        head = bytearray()
        lost: list[str] = []  # the engine lost the end of the output (OutputIncomplete)
        reader = threading.Thread(target=self._pump, args=(output, pump, head, lost), daemon=True)
        reader.start()
        backend.start(cid)
        reason = ""
        code: int | None = None
        while not reason:
            if self.stop.is_set():
                reason = "interrupted"
            elif deadline - clock.monotonic() <= 0:
                reason = "timeout"
            else:
                code = backend.wait(cid, min(POLL_S, deadline - clock.monotonic()))
                if code is not None:
                    break
        if reason:
            backend.kill(cid)
        elif isinstance(backend, Described):
            self._placed(backend, cid, attempt)
        reader.join(timeout=10)
        pump.close()
        refused = None if reason else contract.refusal(code, bytes(head))
        if refused is not None:  # a step could print such a line itself: redacted as output
            reason = state.redactor(refused)
        result = AttemptResult(Status.FAILURE, reason, None if reason else code)
        result.tail, result.log_sha256 = list(pump.tail), pump.digest.hexdigest()
        if reason:
            result.status = Status.CANCELLED if reason == "interrupted" else Status.FAILURE
            return result
        try:
            self._read_io(cid, f"{attempt.step}-{attempt.number}", result)
        except InvalidInput as exc:
            result.reason = state.redactor(exc.message)
            return result
        if lost:  # never a success with part of its output
            result.reason = state.redactor(lost[0])
            return result
        if code != 0:
            result.reason = f"exit code {code}"
            return result
        result.status = Status.SUCCESS
        return result

    def _placed(self, backend: Described, cid: str, attempt: Attempt) -> None:
        """Where the engine ran the attempt, when it says (the ledger's `step.placed`)."""
        placed = backend.placement(cid)
        if placed is not None:
            self.state.sink.emit(
                StepPlaced(
                    job=self.job_key,
                    step=attempt.step,
                    attempt=attempt.number,
                    **{name: placed.get(name, "") for name in PLACEMENT},
                )
            )

    def _prepare(self, upcoming: Upcoming) -> None:
        """Create, attach and boot `upcoming`'s container in the background, unless one
        of that spec is being prepared already (one of another spec, made with what was
        known earlier, is replaced). A step with its own timeout counts it from its
        start, unknown yet: its runner-init deadline is set `PREPARED_SLACK_S` later than
        if it started now, so that the container is still the one it needs if it starts
        within that time."""
        if self.stop.is_set() or not isinstance(self.state.backend, Boots):
            return  # only a backend that can hold a container back prepares one (module doc)
        deadline = upcoming.deadline
        if upcoming.timeout_s is not None:
            timeout = upcoming.timeout_s + PREPARED_SLACK_S
            deadline = min(deadline, self.state.clock.monotonic() + timeout)
        spec = self._spec(upcoming.attempt, deadline)
        try:
            check_spec(spec)
        except RunnerError:
            return  # refused when it comes, by `run`
        prepared = _Prepared(upcoming.attempt.step, upcoming.attempt.number, spec, deadline)
        after = self._preparing[-1] if self._preparing else None
        for at, earlier in enumerate(self._preparing):
            if (earlier.step, earlier.number) == (prepared.step, prepared.number):
                if _same_but_deadline(earlier.spec, spec):
                    return
                self._discard(earlier)
                self._preparing[at] = prepared
                after = self._preparing[at - 1] if at else None
                break
        else:
            self._preparing.append(prepared)
        threading.Thread(target=self._create, args=(prepared, after), daemon=True).start()

    def _create(self, prepared: _Prepared, after: _Prepared | None) -> None:
        """The prepared container, in the background, created once the one prepared for
        the step before it is (the engine gets them in step order; they boot side by
        side); what fails is left to `run`, which creates the step's container itself."""
        backend, clock = self.state.backend, self.state.clock
        if after is not None:
            after.made.wait()
        # counted from now, not from when it was asked for
        prepared.spec = dataclasses.replace(
            prepared.spec, deadline_s=self._deadline_s(prepared.deadline)
        )
        try:
            try:
                prepared.cid = backend.create(prepared.spec)
            finally:
                prepared.made.set()
            prepared.output = backend.attach_output(prepared.cid)
            if isinstance(backend, Boots) and not self.stop.is_set():
                booted_at = clock.monotonic()
                if backend.boot(prepared.cid):
                    prepared.booted_at = booted_at
        except RunnerError:
            return
        finally:
            prepared.ready.set()

    def _take_prepared(
        self, attempt: Attempt, spec: ContainerSpec, deadline: float
    ) -> _Prepared | None:
        """The container prepared for `attempt` if it is the one `spec` (due at
        `deadline`) needs. Those prepared for it or for earlier steps are discarded
        otherwise (a step skipped, a retry: an attempt no one expected); those of later
        steps are kept for them."""
        found = None
        while self._preparing and self._preparing[0].step <= attempt.step:
            prepared = self._preparing.pop(0)
            if (prepared.step, prepared.number) == (attempt.step, attempt.number):
                found = prepared
                break
            self._discard(prepared)
        if found is None:
            return None
        found.ready.wait()
        if _same_but_deadline(found.spec, spec) and found.output is not None:
            due = deadline + INIT_GRACE_S  # when runner-init must kill, on the run's clock
            if due <= self._kill_time(found) <= due + PREPARED_SLACK_S:
                return found
        self._discard(found)
        return None

    def _kill_time(self, prepared: _Prepared) -> float:
        """When runner-init kills the prepared container, on the run's clock: its
        deadline counts from its start, which was at boot, or is now."""
        started = prepared.booted_at
        if started is None:
            started = self.state.clock.monotonic()
        return started + (prepared.spec.deadline_s or 0.0)

    def _discard(self, prepared: _Prepared) -> None:
        """Remove a prepared container off the critical path, once its preparation ends."""
        self._reaper(self._reap_prepared, prepared)

    def _reap_prepared(self, prepared: _Prepared) -> None:
        prepared.ready.wait()
        if prepared.cid is not None:
            self._reap(prepared.cid)

    def _reap_later(self, cid: str) -> None:
        self._reaper(self._reap, cid)

    def _reaper(self, target: Callable[[_T], None], arg: _T) -> None:
        """Run `target(arg)` off the critical path; `close` joins it."""
        reaper = threading.Thread(target=target, args=(arg,), daemon=True)
        reaper.start()
        self._reapers.append(reaper)

    def close(self) -> str | None:
        """Remove every container of the job (the prepared ones too); the first error, if
        any."""
        while self._preparing:
            self._discard(self._preparing.pop(0))
        for reaper in self._reapers:
            reaper.join()
        if self.last is not None:
            try:
                self.state.backend.remove(self.last)
            except RunnerError as exc:
                self._reap_errors.append(exc.message)
        return self._reap_errors[0] if self._reap_errors else None

    def _reap(self, cid: str) -> None:
        """Remove a container (the backend closes the attach of one never started)."""
        try:
            self.state.backend.remove(cid)
        except RunnerError as exc:
            self._reap_errors.append(exc.message)

    def _pump(
        self, output: Iterator[bytes], pump: OutputPump, head: bytearray, lost: list[str]
    ) -> None:
        try:
            for chunk in output:
                if len(head) < HEAD_BYTES:
                    head += chunk[: HEAD_BYTES - len(head)]
                pump.feed(chunk)
        except OutputIncomplete as exc:
            lost.append(exc.message)
        except RunnerError:
            return

    def _read_io(self, cid: str, io_name: str, result: AttemptResult) -> None:
        """The step's file commands into `result`: from the volume when the engine allows
        it, else out of its stopped container. A summary over `MAX_SUMMARY_BYTES` is not
        kept (GitHub's limit; a warning says so), as GitHub does not fail the step for it."""
        kinds = ("output", "env", "path", "summary")
        wanted = {f"{io_name}.{kind}": kind for kind in kinds}
        direct = self.state.backend.read_files(
            self.volume, posixpath.relpath(IO_DIR, WORKSPACE_DIR), list(wanted), MAX_IO_BYTES
        )
        files: dict[str, bytes] = {}
        if direct is not None:
            files = {wanted[name]: data for name, data in direct.items()}
        else:
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
                        files[kind] = handle.read()
        text = {kind: data.decode("utf-8", "replace") for kind, data in files.items()}
        redact = self.state.redactor
        result.outputs = parse_file_command(
            text.get("output", ""), what="$RUNNER_OUTPUT", redact=redact
        )
        result.env = parse_file_command(
            text.get("env", ""), what="$RUNNER_ENV", redact=redact, env=True
        )
        result.path = parse_path_file(text.get("path", ""), redact=redact)
        summary = files.get("summary", b"")
        if len(summary) > MAX_SUMMARY_BYTES:
            result.warnings.append(
                f"$GITHUB_STEP_SUMMARY not kept: it holds {len(summary)} bytes, more than "
                f"the {MAX_SUMMARY_BYTES // 1024} KiB a step may write (GitHub's limit too)"
            )
        else:
            result.summary = text.get("summary", "")
