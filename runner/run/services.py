"""A job's services (`jobs.<id>.services`): sidecar containers started before its first
step and removed with it.

Each service is a container made by the backend's `create`, so it is hardened exactly
like a step (runner.engine.docker.hardening: no capabilities, no new privileges, the
seccomp profile without `memfd_create`, a read-only root with a noexec /tmp, the policy's
limits and user, nothing of the host mounted, labelled with the run for `runner gc`), and
runs under runner-init like a step: its environment (secrets included, granted like any
secret) is handed over on stdin at start, never written into the engine's configuration,
and runner-init kills it at the job's deadline should runner die first. It runs its
image's entrypoint and command (or the service's own `entrypoint:`/`command:`).

Its network is the job's: the job's egress network when it is granted egress, else a
private one with no way out (`Sidecars.create_private_network`), which the steps join
too; on it the service answers to its name (a network alias). Readiness: with a health
check (`--health-cmd` ...), Docker's own, and the job waits for `healthy`, at most
`wait_bound` (start period + retries x (interval + timeout), capped at `MAX_WAIT_S`, and
the job's deadline); without one, a service is ready once it runs (as on GitHub). A
service that turns unhealthy, exits or does not become healthy in time fails the job
before any step runs, naming the service, its last check's output and the last lines it
printed (redacted by the job: they may echo its secrets). Its output is otherwise only
kept in memory (`TAIL_LINES`), never streamed into the run's log.

Every service started and stopped is an event the ledger records (`service.started` with
its image, image digest, configuration digest and how the wait ended; `service.stopped`).
A backend that is not `Sidecars` (Kubernetes), or one that says it cannot run services
(Podman), refuses every job with services before anything runs (`refuse_unsupported`).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass

from runner.engine.backend import (
    LABEL_ROLE,
    ContainerSpec,
    Described,
    EgressUnavailable,
    Healthcheck,
    ServiceState,
    Sidecars,
    spec_digest,
)
from runner.errors import PolicyDenied, RunnerError
from runner.mission.model import Job, Service
from runner.policy.model import Grants
from runner.records.events import ServiceStarted, ServiceStopped
from runner.run.state import ResolvedImage, RunState

LABEL_SERVICE = "runner.service"
TAIL_LINES = 20  # a failed service's last lines, in the job's failure message
TAIL_LINE_CHARS = 500
MAX_WAIT_S = 600.0  # the longest any service's health is waited for
POLL_S = 0.25
HEALTHY, RUNNING = "healthy", "running"  # the outcomes of a wait that let steps start


def refuse_unsupported(backend: object, jobs: Collection[Job]) -> None:
    """PolicyDenied when one of `jobs` has services and the backend cannot run them:
    called before anything runs (fail closed)."""
    _refuse(backend, [job.id for job in jobs if job.services])


def _refuse(backend: object, with_services: list[str]) -> None:
    if not with_services:
        return
    if isinstance(backend, Sidecars):
        why = backend.services_refused()
    else:
        name = backend.describe().get("backend", "") if isinstance(backend, Described) else ""
        why = f"services: are not supported on the {name or 'chosen'} backend yet"
    if why is not None:
        listed = ", ".join(repr(job) for job in with_services)
        raise PolicyDenied(
            f"refused: job{'s' if len(with_services) > 1 else ''} {listed} "
            f"{'have' if len(with_services) > 1 else 'has'} services, but {why}",
            hint="run it on the Docker backend (the default), or drop its `services:`",
        )


def wait_bound(service: Service) -> float:
    """How long the job waits for `service` to be ready, at most."""
    health = service.health
    if health is None:
        return 30.0  # to be running
    bound = health.start_period_s + health.retries * (health.interval_s + health.timeout_s)
    return min(MAX_WAIT_S, bound + 5.0)


@dataclass
class _Running:
    service: Service
    image: ResolvedImage
    cid: str
    tail: collections.deque[str]
    reader: threading.Thread
    digest: str = ""  # its configuration's (runner.engine.backend.spec_digest)


class JobServices:
    """The services of one job instance: `open` starts them and waits until each is
    ready (a RunnerError saying why not); `close` removes them, whatever happened."""

    def __init__(
        self,
        state: RunState,
        job_key: str,
        services: Mapping[str, Service],
        images: Mapping[str, ResolvedImage],
        grants: Grants,
        labels: Mapping[str, str],
        stop: threading.Event,
    ) -> None:
        self.state = state
        self.job_key = job_key
        self.services = services
        self.images = images
        self.grants = grants
        self.labels = labels
        self.stop = stop
        self.network: str | None = None  # a private network this made (removed by close)
        self._running: list[_Running] = []

    def _sidecars(self) -> Sidecars:
        backend = self.state.backend
        if not isinstance(backend, Sidecars) or backend.services_refused() is not None:
            _refuse(backend, [self.job_key])
        assert isinstance(backend, Sidecars)
        return backend

    def open(
        self,
        network: str | None,
        name: str,
        evaluate: Callable[[Service], Service],
        deadline: float,
    ) -> str:
        """Start every service (`evaluate`d: its expressions replaced by their values) on
        `network` (the job's egress network), or on a private network called `name` made
        here when None; wait until each is ready. Returns the network the steps join."""
        sidecars = self._sidecars()
        if network is None:
            try:
                sidecars.create_private_network(
                    name, self.labels, host_reachable=self.state.accept_egress_to_host
                )
            except EgressUnavailable as exc:
                how = f"; {exc.hint}" if exc.hint else ""
                raise EgressUnavailable(
                    f"refused: job {self.job_key!r} has services, whose network must be kept "
                    f"away from the host, but {exc.message}{how}"
                ) from exc
            self.network = network = name
        for service in self.services.values():
            self._start(sidecars, evaluate(service), network, deadline)
        self._await_ready(sidecars, deadline)
        return network

    def _start(
        self,
        sidecars: Sidecars,
        service: Service,
        network: str,
        deadline: float,
    ) -> None:
        backend = self.state.backend
        image = self.images[service.name]
        spec = self._spec(sidecars, service, image, network, deadline)
        cid = backend.create(spec)
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        try:
            frames = backend.attach_output(cid)
        except BaseException:
            backend.remove(cid)
            raise
        reader = threading.Thread(target=_keep_tail, args=(frames, tail), daemon=True)
        running = _Running(service, image, cid, tail, reader, spec_digest(spec))
        self._running.append(running)
        reader.start()
        backend.start(cid)

    def _spec(
        self,
        sidecars: Sidecars,
        service: Service,
        image: ResolvedImage,
        network: str,
        deadline: float,
    ) -> ContainerSpec:
        """The container of `service`: its image's program (or its own entrypoint and
        command) under runner-init, hardened and limited as the job's steps are."""
        own = sidecars.image_command(image.ref)
        if service.entrypoint is not None:
            entrypoint: tuple[str, ...] = (service.entrypoint,)
            cmd = service.command or ()
        else:
            entrypoint, cmd = own.entrypoint, service.command or own.cmd
        command = [*entrypoint, *cmd]
        if not command:
            raise RunnerError(
                f"service {service.name!r}: image {image.ref} names no program to run",
                hint=f"give the service a `command:` (jobs.<id>.services.{service.name})",
            )
        limits = self.grants.limits
        health = service.health
        return ContainerSpec(
            image=image.ref,
            command=command,
            env=dict(service.env),
            labels={**self.labels, LABEL_ROLE: "service", LABEL_SERVICE: service.name},
            memory_bytes=limits.memory_bytes,
            cpus=limits.cpus,
            pids=limits.pids,
            workdir=own.workdir or "/",
            user=limits.user,
            network=network,
            seccomp_deny_memfd=True,  # a whole image: interpreters included
            deadline_s=max(1.0, deadline - self.state.clock.monotonic()),
            aliases=(service.name,),
            health=Healthcheck(
                cmd=health.cmd,
                interval_s=health.interval_s,
                timeout_s=health.timeout_s,
                retries=health.retries,
                start_period_s=health.start_period_s,
            )
            if health is not None
            else None,
        )

    def _await_ready(self, sidecars: Sidecars, deadline: float) -> None:
        clock = self.state.clock
        started = clock.monotonic()
        waiting = list(self._running)
        while waiting:
            for running in list(waiting):
                service = running.service
                state = sidecars.service_state(running.cid)
                outcome = _outcome(state, service)
                late = clock.monotonic() - started > wait_bound(service)
                if outcome is None and (late or clock.monotonic() >= deadline):
                    outcome = "timeout"
                if outcome is None and self.stop.is_set():
                    outcome = "cancelled"
                if outcome is None:
                    continue
                waiting.remove(running)
                self._emit_started(running, outcome)
                if outcome not in (HEALTHY, RUNNING) and not exited_cleanly(service, state):
                    raise RunnerError(self._failure(running, outcome, state))
            if waiting:
                self.stop.wait(POLL_S)

    def _emit_started(self, running: _Running, outcome: str) -> None:
        self.state.sink.emit(
            ServiceStarted(
                job=self.job_key,
                service=running.service.name,
                image=running.image.ref,
                image_digest=running.image.digest,
                config_digest=running.digest,
                health=outcome,
            )
        )

    def _failure(self, running: _Running, outcome: str, state: ServiceState) -> str:
        service = running.service
        said = {
            "unhealthy": "turned unhealthy",
            "exited": f"exited with code {state.exit_code}",
            "timeout": f"was not ready within {wait_bound(service):g}s",
            "cancelled": "was cancelled before it was ready",
        }[outcome]
        image = self.grants.services.get(service.name, running.image.ref)
        parts = [f"service {service.name!r} ({image}) {said}"]
        if state.checked.strip():
            parts.append(f"its last health check said: {state.checked.strip()[-TAIL_LINE_CHARS:]}")
        running.reader.join(timeout=1.0 if outcome == "exited" else 0.0)
        lines = list(running.tail)
        if lines:
            parts.append("its last lines: " + " | ".join(lines))
        return self.state.redactor.message("; ".join(parts))

    def close(self) -> str | None:
        """Remove every service (and the private network); what could not be, or None."""
        backend = self.state.backend
        problem: str | None = None
        for running in self._running:
            try:
                backend.kill(running.cid)
                backend.remove(running.cid)
            except RunnerError as exc:
                problem = problem or exc.message
            running.reader.join(timeout=5.0)
            self.state.sink.emit(
                ServiceStopped(
                    job=self.job_key,
                    service=running.service.name,
                    image=running.image.ref,
                    image_digest=running.image.digest,
                )
            )
        self._running.clear()
        if self.network is not None:
            try:
                backend.remove_network(self.network)
            except RunnerError as exc:
                problem = problem or exc.message
            self.network = None
        return problem


def _outcome(state: ServiceState, service: Service) -> str | None:
    """How waiting for a service ends on `state`; None: not yet."""
    if not state.running:
        return "exited"
    if service.health is None:
        return RUNNING
    if state.health in (HEALTHY, "unhealthy"):
        return state.health
    return None


def exited_cleanly(service: Service, state: ServiceState) -> bool:
    """A service with no health check that exited with code 0 before the first step: the
    job goes on, as GitHub's runner checks only a declared health check (a workflow's
    service may be a container it never talks to); a non-zero exit is a crash and fails
    the job with the service's last lines."""
    return service.health is None and not state.running and state.exit_code == 0


def _keep_tail(frames: Iterator[bytes], tail: collections.deque[str]) -> None:
    """Read a service's output to its end, keeping its last lines (in memory only)."""
    pending = b""
    try:
        for chunk in frames:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                tail.append(line.decode("utf-8", "replace").rstrip("\r")[:TAIL_LINE_CHARS])
            pending = pending[-64 * 1024 :]
    except RunnerError:
        pass
    if pending:
        tail.append(pending.decode("utf-8", "replace")[:TAIL_LINE_CHARS])
