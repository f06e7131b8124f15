"""The engine behind a small protocol: everything runner asks of a container engine.

`Backend` covers containers (create, attach, start, wait, kill, remove, archives in and
out), volumes (repository snapshots, and workspaces: copy-on-write views of a snapshot
with a quota), per-job egress networks, and images (build from a context runner made,
import a root filesystem, export an image's filesystem, inspect, pull, tag, remove). Its
arguments and results are plain values and the dataclasses below, never an engine's own
types, so that a second engine is one more implementation: `docker.backend.DockerBackend`
speaks the Docker API (Podman's included), `fake.FakeBackend` keeps everything in memory
for tests.

`ContainerSpec` is everything a step container is made of, before hardening (the Docker
backend turns it into its configuration: `docker.hardening`); `spec_digest` is what the
ledger records of it. Every step container runs under runner-init (`runner.engine.stepinit`):
the backend delivers the program and hands it the spec's environment at start, so that no
environment value is stored in the engine's configuration; runner-init refuses a writable
and executable mount before the step runs (SPEC 6) and kills the container at
`deadline_s`. `BuildSpec` is an image build, bounded like a step. A job's services
(runner.run.services) are containers of the same kind, hardened the same way, on a
backend that is also `Sidecars`.

Nothing a step or the repository shaped is ever written by runner on the host: a
snapshot's files and a consumed artifact enter a volume through the engine
(`create_snapshot`, `put_workspace`: a never-started helper container and the archive API,
so the engine extracts them inside that container, where every link resolves).

Every container, volume and network runner creates for a run carries `LABEL_RUN` (the run
id) and `LABEL_STATE` (the state directory of that run) so that `runner gc` can find what
a crashed run left behind and tell whether its run is still alive. Snapshot volumes
outlive runs (they are a cache): they carry `LABEL_SNAPSHOT` (their content digest) and
`LABEL_SNAPSHOT_OF` (the state directory whose cache they are) instead.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

from runner.durable import json_digest
from runner.errors import PolicyDenied, RunnerError

LABEL_RUN = "runner.run-id"
LABEL_STATE = "runner.state-dir"
LABEL_JOB = "runner.job"
LABEL_ROLE = (
    "runner.role"  # "step", "workspace", "workspace-data", "snapshot", "helper", "network", "init"
)
LABEL_SNAPSHOT = "runner.snapshot"  # a snapshot volume: the digest of what it holds
LABEL_SNAPSHOT_OF = "runner.snapshot-of"  # a snapshot volume: the state dir caching it

WORKSPACE_PATH = "/workspace"
NOBODY = 65534


class NotFound(RunnerError):
    """A container, volume, image or path inside a container that does not exist."""


class OutputIncomplete(RunnerError):
    """A step's output ended before its end: the engine lost what the step printed last
    (the step fails with this reason: never a silent success with part of its log)."""


class EgressUnavailable(RunnerError):
    """This engine or host cannot give a job egress without also giving it the host."""


class ImageBuildFailed(RunnerError):
    """A build the engine ran and that failed: `detail` is the engine's reason, `log` the
    build's output lines (the caller shows their tail)."""

    def __init__(self, detail: str, log: Sequence[str]) -> None:
        super().__init__(f"build failed: {detail}")
        self.detail = detail
        self.log = tuple(log)


def run_labels(state_dir: Path, run_id: str, job_key: str | None = None) -> dict[str, str]:
    """The labels every resource of run `run_id` carries (see `runner.run.gc`)."""
    labels = {LABEL_RUN: run_id, LABEL_STATE: str(state_dir.resolve())}
    if job_key is not None:
        labels[LABEL_JOB] = job_key
    return labels


@dataclass(frozen=True, kw_only=True)
class ContainerSpec:
    """One step container, before hardening. `env` is exactly what the step sees (over
    the image's own), handed to runner-init at start and never stored by the engine."""

    image: str
    command: list[str]
    env: Mapping[str, str]
    labels: Mapping[str, str]
    memory_bytes: int
    cpus: float
    pids: int
    workdir: str = WORKSPACE_PATH
    user: int = NOBODY
    network: str | None = None  # the job's egress network (`create_network`); None: none
    workspace_volume: str | None = None
    workspace_path: str = WORKSPACE_PATH
    workspace_exec: bool = False
    # a snapshot volume mounted read-only at the workspace's .git (runner.run.history)
    history_volume: str | None = None
    seccomp_deny_memfd: bool = False
    tmp_bytes: int | None = None  # size of the noexec /tmp; None = min(64 MiB, memory / 4)
    # seconds after its start when runner-init kills the whole container, runner or not
    deadline_s: float | None = None
    # a service (`Sidecars`): its names on `network`, and the engine's health check
    aliases: tuple[str, ...] = ()
    health: Healthcheck | None = None


@dataclass(frozen=True, kw_only=True)
class Healthcheck:
    """The engine's own health check of a service: `cmd` through the image's `/bin/sh -c`
    inside the container, every `interval_s`, unhealthy after `retries` failures in a
    row (failures within `start_period_s` of the start do not count)."""

    cmd: str
    interval_s: float
    timeout_s: float
    retries: int
    start_period_s: float


def check_spec(spec: ContainerSpec) -> None:
    """Refuse what no policy may grant, whatever the engine: root, and limits that are not
    limits. Every backend calls it before it creates a container."""
    if spec.user == 0:
        raise PolicyDenied(
            f"a step of image {spec.image!r} would run as uid 0 (root)",
            hint="runner never runs steps as root; set `limits.user` in the policy to a non-zero uid",
        )
    if spec.user < 0:
        raise PolicyDenied(f"uid {spec.user} is not a valid user for a step")
    if spec.memory_bytes <= 0 or spec.pids <= 0 or spec.cpus <= 0:
        raise PolicyDenied(
            f"limits must be positive (memory {spec.memory_bytes}, pids {spec.pids}, cpus {spec.cpus})"
        )
    if not spec.command:
        raise PolicyDenied(f"a step of image {spec.image!r} has no command")


def spec_digest(spec: ContainerSpec) -> str:
    """The digest of a step container's configuration that `step.started` records.

    It is taken over every field of the engine-neutral spec, so it means the same whatever
    engine ran the step (the hardening an engine derives from a spec is a function of the
    spec and of runner's version, which `run.started` records). The spec's env holds the
    values of the secrets granted to the step, so the document digested holds each env
    value only as its own SHA-256: no secret is ever in it in clear, and the digest still
    changes whenever any value does. (Like any digest, it cannot stop a guessed
    low-entropy value from being confirmed; the ledger holds the digest only.)"""
    document: dict[str, object] = {f.name: getattr(spec, f.name) for f in fields(spec)}
    document["command"] = list(spec.command)
    document["env"] = {name: _sha256(value) for name, value in spec.env.items()}
    document["labels"] = dict(spec.labels)
    document["aliases"] = list(spec.aliases)
    if spec.health is not None:
        document["health"] = {f.name: getattr(spec.health, f.name) for f in fields(spec.health)}
    return json_digest(document)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, kw_only=True)
class BuildSpec:
    """One image build, bounded like a step: `context` is a tar runner made (the
    Dockerfile at its root), built without network unless `network`, within
    `memory_bytes` (swap included) and `cpus`, for at most `timeout_s`."""

    context: Path
    tag: str
    labels: Mapping[str, str]
    memory_bytes: int
    cpus: float
    timeout_s: float
    network: bool = False


@dataclass(frozen=True)
class ImageInfo:
    """What the engine knows of an image: `id` is its content id (`sha256:...`), the
    digest runner records for the steps that ran in it."""

    id: str
    size: int  # bytes
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageConfig:
    """The configuration an imported root filesystem runs with."""

    user: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


class Backend(Protocol):
    """What runner needs from a container engine. Ids are the engine's own; images are
    named by reference (`name:tag`) or id. Engine failures are `RunnerError`s:
    `EngineUnavailable` when the engine does not answer."""

    def close(self) -> None:
        """Release the connection; the backend is not used afterwards."""
        ...

    # -- containers ------------------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> str:
        """Create (not start) the hardened container; returns its id."""
        ...

    def put_archive(self, cid: str, path: str, data: bytes | IO[bytes] | Iterable[bytes]) -> None:
        """Extract a tar (whole, a file, or streamed in chunks) into `path` (an existing
        directory) of a container."""
        ...

    def get_archive(self, cid: str, path: str) -> Iterator[bytes]:
        """A tar of `path` of a (stopped) container, in chunks; NotFound when it is missing."""
        ...

    def start(self, cid: str) -> None:
        """Start the container and hand runner-init the spec's environment."""
        ...

    def attach_output(self, cid: str) -> Iterator[bytes]:
        """Connect to a created container's stdout and stderr; call before `start` so
        that nothing is missed. The iterator ends when the container exits; it raises
        `OutputIncomplete` when the engine lost the end of the output (unless runner killed
        or removed the container)."""
        ...

    def wait(self, cid: str, timeout_s: float | None) -> int | None:
        """The exit code, or None when `timeout_s` passed first (the container still runs)."""
        ...

    def kill(self, cid: str) -> None:
        """SIGKILL; a container that is gone or not running is not an error."""
        ...

    def remove(self, cid: str) -> None:
        """Force-remove with its anonymous volumes; a missing container is not an error."""
        ...

    # -- volumes ---------------------------------------------------------------------------

    def create_snapshot(
        self,
        name: str,
        labels: Mapping[str, str],
        tree: Callable[[str], Iterable[bytes]],
        helper_labels: Mapping[str, str],
    ) -> None:
        """A volume holding the tar `tree(prefix)` (its members named under `prefix`, the
        place the engine asks for), extracted by the engine inside a never-started helper
        container labelled `helper_labels`: links in it resolve inside that container,
        never on the host. Snapshots are the read-only lower layer of workspaces
        (`create_volume(lower=name)`), or a job's history, which its steps mount
        read-only (`ContainerSpec.history_volume`); no container mounts one writable. A
        failed copy leaves no volume."""
        ...

    def create_volume(
        self,
        name: str,
        labels: Mapping[str, str],
        *,
        exec_allowed: bool,
        owner: int = NOBODY,
        lower: str | None = None,
        quota_bytes: int | None = None,
    ) -> None:
        """A workspace volume: a copy-on-write view of the snapshot volume `lower` (empty
        when None) whose root belongs to `owner` and whose writes go to a layer of its
        own, of at most `quota_bytes` when the engine can enforce it (a write past it
        fails with ENOSPC). Files on it can be executed only when `exec_allowed`."""
        ...

    def put_workspace(
        self, volume: str, path: str, data: Iterable[bytes], labels: Mapping[str, str]
    ) -> None:
        """Extract the tar `data` into `path` (workspace-relative, an existing directory)
        of workspace `volume`, through a never-started helper container labelled
        `labels` with the workspace mounted: the engine extracts it, never the host."""
        ...

    def workspace_full(self, volume: str) -> bool:
        """Whether workspace `volume` is at its quota (no space or no inode left); False
        when it has none or the engine cannot tell."""
        ...

    def read_files(
        self, volume: str, directory: str, names: Sequence[str], limit: int
    ) -> dict[str, bytes] | None:
        """Regular files `names` of `directory` (workspace-relative) of workspace volume
        `volume`, read without a container (missing ones left out); None when the engine
        cannot do that, and the caller copies them out of a stopped container instead."""
        ...

    def remove_volume(self, name: str) -> None:
        """Remove a volume made by `create_volume` (and its parts) or `create_snapshot`;
        missing is fine."""
        ...

    def list_labelled(
        self, label: str
    ) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
        """(containers, volumes) carrying `label` ("key" or "key=value"): id/name -> labels."""
        ...

    # -- networks --------------------------------------------------------------------------

    def create_network(self, name: str, labels: Mapping[str, str], *, host_reachable: bool) -> None:
        """A network of its own for one job granted egress: it reaches the outside, never
        another job's containers, and, unless `host_reachable`, not this host (any of its
        addresses) nor the engine's other networks. `EgressUnavailable` when the host
        cannot be kept out (no firewall to set, not root, a remote engine)."""
        ...

    def remove_network(self, name: str) -> None:
        """Remove a network made by `create_network` (and its firewall rules); missing is
        fine."""
        ...

    def list_networks(self, label: str) -> dict[str, dict[str, str]]:
        """Networks carrying `label` ("key" or "key=value"): name -> labels."""
        ...

    # -- images ----------------------------------------------------------------------------

    def inspect_image(self, image: str) -> ImageInfo | None:
        """The image's id and size, or None when the engine does not have it."""
        ...

    def build_image(
        self,
        spec: BuildSpec,
        cancel: threading.Event,
        on_step: Callable[[str], None] | None = None,
    ) -> ImageInfo:
        """Build `spec` (never pulling a newer base) and tag it; ImageBuildFailed when the
        build fails or runs past its timeout, `Interrupted` when `cancel` is set first:
        either way the engine stops the build. `on_step` is called with each build step
        as the engine announces it (`Step 3/7 : RUN ...`), from any thread, while the
        build runs."""
        ...

    def pull_image(self, reference: str) -> ImageInfo:
        """Fetch `reference` from its registry; NotFound (with the registry's reason) when
        it cannot be had."""
        ...

    def import_image(self, rootfs: IO[bytes], tag: str, config: ImageConfig) -> None:
        """An image of one layer, the tar `rootfs`, running with `config`, tagged `tag`."""
        ...

    def export_filesystem(self, image: str, out: IO[bytes]) -> None:
        """Write the merged filesystem of `image` to `out` as an uncompressed tar."""
        ...

    def tag_image(self, image: str, tag: str) -> None: ...

    def remove_image(self, image: str) -> None:
        """Remove the image (or this tag of it); a missing image is not an error."""
        ...


@dataclass(frozen=True)
class ImageCommand:
    """What an image runs when nothing else is asked: its entrypoint, command and working
    directory (a service runs them under runner-init)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    workdir: str = ""


@dataclass(frozen=True)
class ServiceState:
    """A service container as the engine sees it: `health` is "starting", "healthy" or
    "unhealthy" (its check's verdict), or "" without a check; `checked` the output of its
    last check."""

    running: bool
    exit_code: int | None = None
    health: str = ""
    checked: str = ""


@runtime_checkable
class Sidecars(Protocol):
    """A backend that can run a job's services (runner.run.services): containers made by
    `create` from a spec with `aliases` and `health`, on a private network of the job. A
    backend without it refuses every job with services before anything runs."""

    def services_refused(self) -> str | None:
        """Why this engine cannot run services (None: it can)."""
        ...

    def create_private_network(
        self, name: str, labels: Mapping[str, str], *, host_reachable: bool
    ) -> None:
        """A network of one job's steps and services with no way out (no egress), never
        another job's containers, and, unless `host_reachable`, not this host;
        `EgressUnavailable` when the host cannot be kept out. `remove_network` removes it."""
        ...

    def image_command(self, image: str) -> ImageCommand:
        """The entrypoint, command and working directory of `image` (present)."""
        ...

    def service_state(self, cid: str) -> ServiceState:
        """Whether the started container runs, its exit code, and its health."""
        ...


@runtime_checkable
class Described(Protocol):
    """A backend that says what the ledger should know of where steps ran beyond the
    image and the configuration digest (the Kubernetes backend: the cluster, the node,
    the pod spec's digest, the delivered image); Docker's needs nothing more."""

    def describe(self) -> dict[str, str]:
        """The engine a run used (recorded once per run: `engine.connected`)."""
        ...

    def placement(self, cid: str) -> dict[str, str] | None:
        """Where and how container `cid` ran (recorded per attempt: `step.placed`)."""
        ...


@runtime_checkable
class Boots(Protocol):
    """A backend that can start a created container's runner-init ahead of its step
    (`boot`), so that the engine's start is off a job's critical path: runner-init then
    waits for the environment `start` hands it, and the step's command cannot run, nor
    see its environment, before that. A container booted and never started is removed
    without its step ever running; and its runner-init exits by itself when runner dies
    meanwhile (its stdin closes with runner's connection)."""

    def boot(self, cid: str) -> bool:
        """Start runner-init in container `cid`, created and attached (`attach_output`)
        but not started, without the step's environment; False (nothing done) when the
        engine cannot keep the promises above: then `start` does it all."""
        ...
