"""`Backend` on the Docker API (the local socket or DOCKER_HOST; Podman's API too).

Step containers run under runner-init (`runner.engine.stepinit`), from a read-only volume
(`hardening.init_volume()`) that holds only the program: it is filled once per engine from
the runner-init image (built if missing) and checked against it byte for byte, so every
image (toolsets, `tools: all`, `docker://`) gets it without being rebuilt. `create` keeps
the step's environment in memory only; `start` hands it to runner-init over the attach
connection's stdin (the one `attach_output` opened, or one of its own), after the
container started, so no environment value is ever in the container's configuration.

Every step's runner-init runs with `--trailer` (`runner.engine.stepinit.contract`): it ends
stdout and stderr with a mark holding a nonce made per container, and exits only once
`attach_output`'s reader has acked it (`sdk.attach`), so the engine (Docker or Podman)
cannot end the attach before the last bytes arrived. A stream that ends without the mark
raises `OutputIncomplete` at the end of `attach_output`, unless runner killed or removed
the container itself (a timeout, a cancel: there is no end to wait for).

Docker and requests errors are translated where they happen (`errors.docker_errors`): an
engine that does not answer is `EngineUnavailable` (exit 4) with how to start one. Only
the SDK's public API is used: containers are created with the low-level client's
`create_container` + `create_host_config` from `hardening.container_config`'s keyword
arguments (`create_arguments`), and image operations live in `images`.

Workspace volumes (SPEC 6: no mount both writable and executable unless granted): the
local driver ignores `noexec` on bind volumes, and a tmpfs volume loses what is put into it
before a container runs. So a workspace is an overlay volume: a plain "data" volume holds
`upper/` (the job's writes), `work/` (overlayfs' own) and `lower/` (empty), and the
workspace volume is the local driver's `type=overlay` mount with `noexec,nosuid,nodev`
(without `noexec` when exec is granted) whose lower layer is the run's repository
snapshot (a volume of its own, see below; `lower/` when there is none). The engine mounts
it only while a container uses it, but the files live on disk in `upper/`, so they survive
between steps and `put_archive`/`get_archive` work on created or stopped containers.

Snapshots (`create_snapshot`): a plain volume the engine fills from runner's tar through a
never-started helper container and the archive API. dockerd extracts inside that
container's root (so a link in the tar resolves inside the helper, never on the host); the
tar is put at `/` with its members under `snapshot/`, the volume's mount point, so that a
committed link pointing above the repository is kept as a dangling link as it always was
instead of refusing the whole copy. Workspaces name the snapshot's directory as their
lowerdir, so a job's workspace costs the same whatever the repository's size, and no step
ever writes a snapshot (overlayfs never writes its lower layer). Consumed artifacts go in
the same way, into a helper with the job's workspace mounted (`put_workspace`).

On a local engine runner uses the data volume's directory in place for what holds no file
a step or the repository shaped (`volume_dir`): the quota (an ext4 filesystem of the
quota's size, loop-mounted over the fresh directory, unmounted before the volume is
removed), the layout, and reading a step's output files. A remote engine gets the layout
from a file-less image the engine copies into the fresh data volume when a never-started
helper container is created, and no quota (runner cannot mount on its host).
Rejected designs: a tmpfs volume kept mounted by a running keeper container (RAM charged
to the steps' memory limits, one more container per job); the local driver mounting an
image file (it cannot set up a loop device: `mount ... data: loop: invalid argument`).
Needs an engine that may mount overlayfs (rootful Docker; not Docker-in-Docker on overlay).
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, cast

import docker
import docker.errors
import requests
from docker.types import Mount

from runner.engine.backend import (
    LABEL_ROLE,
    NOBODY,
    WORKSPACE_PATH,
    BuildSpec,
    ContainerSpec,
    ImageCommand,
    ImageConfig,
    ImageInfo,
    NotFound,
    OutputIncomplete,
    ServiceState,
    check_spec,
)
from runner.engine.docker import images, networks, sdk, volume_dir
from runner.engine.docker.dialect import DOCKER_DIALECT, PODMAN_HOST, Dialect, detect
from runner.engine.docker.errors import START_HINT, docker_errors, missing_ok, not_running
from runner.engine.docker.hardening import (
    container_config,
    engine_fields,
    init_volume,
    write_seccomp_files,
)
from runner.engine.stepinit import contract
from runner.engine.stepinit.image import ensure_image
from runner.engine.stepinit.trailer import StreamEnds
from runner.errors import EngineUnavailable, RunnerError

DATA_SUFFIX = "-data"
POOL_SIZE = 64
DEFAULT_HOST = "unix:///var/run/docker.sock"
# Docker 20.10's API; newer engines and Podman serve it too. A fixed version also spares
# the SDK's version probe, which leaks its socket when no engine answers.
API_VERSION = "1.41"
INIT_CHECK_PATH = "/check"  # where a helper mounts the runner-init volume
LAYOUT_IMAGE = "runner-internal/workspace-layout"  # containers of it are never started
SNAPSHOT_MOUNT = "snapshot"  # where a helper mounts the snapshot it fills (under /)
# Calls that make the engine work (create, start, remove, volumes) admitted at once. The
# engine saturates at a handful (shared/research: 4-8 workers reach its 6-8 containers/s;
# 50 only add latency, and 1,000 threads starting steps got ~1/s here). `--max-parallel`
# bounds the jobs running; this bounds how many of them talk to the engine's heavy paths.
ENGINE_CONCURRENCY = 8
# Podman: how long a running helper (runner-init waiting for an environment that never
# comes) may live, should runner die before it removes the helper; a copy through it
# (an 8 GiB snapshot at most) takes far less
HELPER_DEADLINE_S = 600.0
GO_MODE_SYMLINK = 1 << 27  # os.ModeSymlink in the archive API's path stat


def connect(*, pool_size: int = POOL_SIZE, timeout_s: float = 120) -> DockerBackend:
    """A backend on the engine of the environment (DOCKER_HOST or the local socket):
    Docker, or Podman on this host (`dialect`)."""
    host = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    if host.startswith("unix://") and not os.path.exists(host.removeprefix("unix://")):
        raise EngineUnavailable(
            f"no Docker engine answers: its socket {host.removeprefix('unix://')} does not exist",
            hint=START_HINT,
        )
    with docker_errors("connecting to the Docker engine"):
        client = docker.from_env(
            version=API_VERSION, max_pool_size=pool_size, timeout=int(timeout_s)
        )
        try:
            client.ping()
            dialect = detect(client.version(api_version=False))
        except BaseException:
            client.close()
            raise
    if dialect.podman:
        try:
            if not host.startswith("unix://"):
                raise EngineUnavailable(
                    f"runner drives Podman only on this host's socket, not at {host}",
                    hint="run runner on the engine's host with "
                    f"DOCKER_HOST={PODMAN_HOST} (scripts/ensure-podman.sh)",
                )
            write_seccomp_files()
        except BaseException:
            client.close()
            raise
    return DockerBackend(client, dialect)


# `containers.create` keyword arguments that configure the container; every other one
# configures its host (`create_host_config`), as in the SDK's own split
CREATE_KEYS = frozenset(
    {"image", "command", "entrypoint", "environment", "working_dir", "labels", "user"}
    | {"stdin_open", "tty", "network_disabled", "hostname", "domainname", "stop_signal"}
    | {"healthcheck", "networking_config"}
)


def create_arguments(api: docker.APIClient, config: Mapping[str, Any]) -> dict[str, Any]:
    """`APIClient.create_container` keyword arguments for `containers.create(**config)`
    keyword arguments: what the SDK's high-level `create` does, through its public API
    and without the extra inspect call of its returned model. A key that belongs to
    neither is a TypeError of `create_host_config`, never silently dropped."""
    if config.get("volumes"):
        raise ValueError("bind volumes are not part of a step's configuration")
    create = {key: value for key, value in config.items() if key in CREATE_KEYS}
    host = {k: v for k, v in config.items() if k not in CREATE_KEYS and k != "volumes"}
    create["host_config"] = api.create_host_config(**host)
    return create


class DockerBackend:
    """The Docker implementation of `runner.engine.backend.Backend`."""

    def __init__(self, client: docker.DockerClient, dialect: Dialect = DOCKER_DIALECT) -> None:
        self.client = client
        self.api = client.api
        self.dialect = dialect
        self._lock = threading.Lock()
        self._admit = threading.BoundedSemaphore(ENGINE_CONCURRENCY)
        self._layouts: set[str] = set()
        # a local engine's volume directories can be used in place (see runner.engine.docker.volume_dir)
        self._local = str(self.api.base_url).startswith("http+docker://")
        self._data_dirs: dict[str, Path] = {}  # workspace volume -> its data directory
        self._init_thread: threading.Thread | None = None  # fills and checks its volume
        self._init_error: RunnerError | None = None
        self._init_lock = threading.Lock()
        self._env: dict[str, bytes] = {}  # created, not started: runner-init's stdin
        self._stdin: dict[str, sdk.Stdin] = {}  # attached, not started
        self._nonces: dict[str, str] = {}  # runner-init's trailer nonce, until removed
        self._reading: set[str] = set()  # containers whose output is being read
        self._stopped: set[str] = set()  # of those, killed or removed by runner
        self._booted: set[str] = set()  # runner-init started, waiting for its environment
        self._private: set[str] = set()  # networks made by create_private_network
        self._quotas: set[str] = set()  # workspace volumes whose data directory has a quota
        self._mountpoints: dict[str, str] = {}  # snapshot volume -> its directory
        self._image_env: dict[str, frozenset[str]] = {}  # Podman: image -> its variables
        self._init_image: str | None = None
        self._init_dir: str | None = None  # Podman: the checked init volume's directory
        self._owners: dict[str, int] = {}  # workspace volume -> the owner of its root

    def close(self) -> None:
        self.client.close()

    def create(self, spec: ContainerSpec) -> str:
        check_spec(spec)
        nonce = contract.new_nonce()
        env = contract.encode_env(spec.env, nonce=nonce)
        self._await_init()
        config = container_config(spec, self.dialect, init_dir=self._init_dir, trailer=True)
        if spec.network is not None and spec.network in self._private:
            config["dns"] = [networks.NO_UPSTREAM_DNS]  # no DNS way out (networks)
        with docker_errors(f"creating a container of {spec.image}"):
            body = self.api.create_container_config(**create_arguments(self.api, config))
            if self.dialect.podman:
                body.update(engine_fields(self.dialect, self._variables_of(spec.image)))
            with self._admit:
                created = cast(Any, self.api).create_container_from_config(body)
        cid = cast(str, created["Id"])
        with self._lock:
            self._env[cid] = env
            self._nonces[cid] = nonce
        return cid

    def _variables_of(self, image: str) -> frozenset[str]:
        """The names of the variables `image` sets (cached: asked once per image)."""
        with self._lock:
            known = self._image_env.get(image)
        if known is not None:
            return known
        attrs = cast(Any, self.api).inspect_image(image)
        env = (attrs.get("Config") or {}).get("Env") or []
        names = frozenset(str(entry).split("=", 1)[0] for entry in env)
        with self._lock:
            self._image_env[image] = names
        return names

    def prepare_init(self, say: Callable[[str], None] | None = None) -> None:
        """Make runner-init ready for steps: its image, built once per engine (`say`
        shows the progress), then the volume steps mount it from, filled and checked in
        the background (once per backend: `create` waits for it)."""
        with self._init_lock:
            if self._init_thread is not None:
                return
            image = ensure_image(self, say)
            self._init_image = image
            volume = init_volume()
            with docker_errors("preparing the runner-init volume"):
                self.api.create_volume(volume, labels={LABEL_ROLE: "init"})
            self._init_thread = threading.Thread(
                target=self._ready_in_background, args=(image, volume), daemon=True
            )
            self._init_thread.start()

    def _ready_in_background(self, image: str, volume: str) -> None:
        try:
            self._ready_volume(image, volume)
            if self.dialect.podman:
                self._init_dir = self._mountpoint(volume)
        except RunnerError as exc:
            self._init_error = exc

    def _await_init(self) -> None:
        self.prepare_init()
        assert self._init_thread is not None
        self._init_thread.join()
        if self._init_error is not None:
            raise self._init_error

    def _ready_volume(self, image: str, volume: str) -> None:
        """Make `volume` hold exactly the runner-init of `image`: one never-started helper
        of the image with the volume mounted beside the program reads both, and the volume
        is filled when it differs (empty, or damaged)."""
        with docker_errors(f"filling the runner-init volume {volume}"):
            expected, held = self._init_contents(image, volume)
            if expected is None:
                raise RunnerError(f"the runner-init image {image} holds no {contract.PATH}")
            if held == expected:
                return
            self._fill_init(image, volume, expected)
            if self._init_contents(image, volume)[1] != expected:
                raise RunnerError(
                    f"the runner-init volume {volume} does not hold runner-init",
                    hint=f"remove it (`docker volume rm {volume}`) and run again",
                )

    def _init_contents(self, image: str, volume: str) -> tuple[bytes | None, bytes | None]:
        """runner-init as the image has it, and as `volume` holds it (None: missing)."""
        mounts = [Mount(INIT_CHECK_PATH, volume, no_copy=True)]
        with self._helper(NOBODY, {}, mounts, image=image) as helper:
            name = posixpath.basename(contract.PATH)
            return (
                self._file_of(helper, contract.PATH),
                self._file_of(helper, f"{INIT_CHECK_PATH}/{name}"),
            )

    def _file_of(self, cid: str, path: str) -> bytes | None:
        try:
            stream, _ = self.api.get_archive(cid, path)
        except docker.errors.NotFound:
            return None
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            handle = tar.extractfile(member) if member is not None else None
            return handle.read() if handle is not None else None

    def _fill_init(self, image: str, volume: str, program: bytes) -> None:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(posixpath.basename(contract.PATH))
            info.size, info.mode = len(program), 0o555
            tar.addfile(info, io.BytesIO(program))
        mounts = [Mount(INIT_CHECK_PATH, volume, no_copy=True)]
        with self._helper(NOBODY, {}, mounts, image=image) as helper:
            self._put_archive(helper, INIT_CHECK_PATH, buffer.getvalue())

    def put_archive(self, cid: str, path: str, data: bytes | IO[bytes] | Iterable[bytes]) -> None:
        with self._reach(cid, path, writable=True) as target:
            self._put_archive(target, path, data)

    def _put_archive(self, cid: str, path: str, data: bytes | IO[bytes] | Iterable[bytes]) -> None:
        with docker_errors(f"copying files into {path} of container {cid[:12]}"):
            if not self.api.put_archive(cid, path, data):
                raise RunnerError(f"the engine did not extract the archive into {path}")

    def get_archive(self, cid: str, path: str) -> Iterator[bytes]:
        with (
            docker_errors(f"copying {path} out of container {cid[:12]}"),
            self._reach(cid, path, writable=False) as source,
        ):
            try:
                stream, stat = self.api.get_archive(source, path, chunk_size=1024 * 1024)
            except docker.errors.NotFound as exc:
                raise NotFound(f"{path} does not exist in container {cid[:12]}") from exc
            if self.dialect.podman and int(stat.get("mode") or 0) & GO_MODE_SYMLINK:
                stream.close()  # Podman sends what the link points at; Docker, the link
                yield _link_tar(posixpath.basename(path), str(stat.get("linkTarget") or ""))
                return
            yield from stream

    @contextlib.contextmanager
    def _reach(self, cid: str, path: str, *, writable: bool) -> Iterator[str]:
        """The container whose archive API reaches `path` of container `cid`: `cid` itself,
        except on Podman when `path` is on one of `cid`'s volumes, which Podman reaches
        only while a container runs (on a created or stopped one it would use the
        container's own root, silently): then a running helper with the same volume at
        the same place (read-only unless `writable`)."""
        if not self.dialect.podman:
            yield cid
            return
        with docker_errors(f"inspecting container {cid[:12]}"):
            attrs = self.api.inspect_container(cid)
        wanted = posixpath.normpath(path)
        for mount in attrs.get("Mounts") or []:
            target, volume = str(mount.get("Destination") or ""), str(mount.get("Name") or "")
            inside = wanted == target or wanted.startswith(target.rstrip("/") + "/")
            if mount.get("Type") == "volume" and target and volume and inside:
                labels = dict((attrs.get("Config") or {}).get("Labels") or {})
                labels.pop(LABEL_ROLE, None)
                with self._lock:
                    owner = self._owners.get(volume, NOBODY)
                mounts = [Mount(target, volume, type="volume", read_only=not writable)]
                with self._helper(owner, labels, mounts) as helper:
                    yield helper
                return
        yield cid

    def start(self, cid: str) -> None:
        """Start (unless `boot` did), then send runner-init the step's environment (it
        waits for it); the attach's reader acks its trailer later, or, when nobody reads
        the output, the ack goes with the environment."""
        with self._lock:
            env = self._env.pop(cid, None)
            stdin = self._stdin.pop(cid, None)
            booted = cid in self._booted
            self._booted.discard(cid)
        read = stdin is not None
        with docker_errors(f"starting container {cid[:12]}"):
            if env is not None and stdin is None:
                stdin = sdk.attach_stdin(self.api, cid)
            try:
                if not booted:
                    with self._admit:
                        self.api.start(cid)
            except BaseException:
                if stdin is not None:
                    stdin.close()
                raise
            if stdin is not None:
                stdin.send(env if env is not None else b"", then_ack=not read)

    def boot(self, cid: str) -> bool:
        """`Boots.boot`: the engine's start of an attached container, its environment
        kept for `start`. Only where runner-init's stdin closes with runner's connection
        (the container's `StdinOnce`, which the SDK sets for an attachable stdin): not on
        Podman, which keeps it open (a booted container would outlive a killed runner)."""
        with self._lock:
            if self.dialect.podman or cid not in self._stdin or cid in self._booted:
                return False
        with self._admit, docker_errors(f"starting container {cid[:12]}"):
            self.api.start(cid)
        with self._lock:
            self._booted.add(cid)
        return True

    def attach_output(self, cid: str) -> Iterator[bytes]:
        """Attach to a created container's stdout and stderr *before* it starts, as
        `docker run` does: nothing it prints can be missed, however fast it exits (and
        there is no log file to read back: the log driver is `none`). The same
        connection carries runner-init's environment at `start`."""
        with self._lock:
            pending = cid in self._env
            nonce = self._nonces.get(cid)
        ends = StreamEnds(nonce) if nonce is not None else None
        with docker_errors(f"attaching to container {cid[:12]}"):
            frames, stdin = sdk.attach(self.api, cid, stdin=pending, ends=ends)
        with self._lock:
            if stdin is not None:
                self._stdin[cid] = stdin
            self._reading.add(cid)
        return self._frames(cid, frames, ends)

    def _frames(
        self, cid: str, frames: Iterator[bytes], ends: StreamEnds | None
    ) -> Iterator[bytes]:
        """The output of `cid`, then `OutputIncomplete` if it lacks its end (see the
        module docstring)."""
        try:
            with docker_errors(f"reading the output of container {cid[:12]}"):
                yield from frames
        except RunnerError as exc:
            if ends is None or self._stopped_by_runner(cid):
                raise
            raise self._incomplete(cid, f"reading it failed: {exc.message}") from exc
        finally:
            stopped = self._stopped_by_runner(cid, forget=True)
        if ends is not None and ends.missing and not stopped:
            raise self._incomplete(
                cid, f"its {' and '.join(ends.missing)} ended without runner-init's trailer"
            )

    def _stopped_by_runner(self, cid: str, *, forget: bool = False) -> bool:
        with self._lock:
            stopped = cid in self._stopped
            if forget:
                self._reading.discard(cid)
                self._stopped.discard(cid)
        return stopped

    def _incomplete(self, cid: str, why: str) -> OutputIncomplete:
        return OutputIncomplete(
            f"the output of container {cid[:12]} is incomplete: {why}, so the engine "
            f"({self.dialect.describe()}) lost the end of what the step printed, or the "
            "container was stopped from outside runner",
            hint="run it again; if it happens again, the engine is losing output under load",
        )

    def wait(self, cid: str, timeout_s: float | None) -> int | None:
        with docker_errors(f"waiting for container {cid[:12]}"):
            try:
                result = self.api.wait(cid, timeout=cast(Any, timeout_s))
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                if timeout_s is None:
                    raise
                self.api.ping()  # the engine answers: the timeout was ours
                return None
        return int(result["StatusCode"])

    def kill(self, cid: str) -> None:
        with self._lock:
            if cid in self._reading:
                self._stopped.add(cid)
        with docker_errors(f"killing container {cid[:12]}"):
            try:
                self.api.kill(cid)
            except docker.errors.APIError as exc:
                if not (missing_ok(exc) or not_running(exc)):
                    raise

    def remove(self, cid: str) -> None:
        """Remove a container; one attached but never started (a step prepared and not
        used) has its attach connection closed too, which ends its output stream."""
        with self._lock:
            self._env.pop(cid, None)
            stdin = self._stdin.pop(cid, None)
            self._nonces.pop(cid, None)
            if cid in self._reading:
                self._stopped.add(cid)
            self._booted.discard(cid)
        if stdin is not None:
            stdin.abandon()
        with self._admit, docker_errors(f"removing container {cid[:12]}"):
            try:
                self.api.remove_container(cid, force=True, v=True)
            except docker.errors.APIError as exc:
                if not missing_ok(exc):
                    raise

    def create_snapshot(
        self,
        name: str,
        labels: Mapping[str, str],
        tree: Callable[[str], Iterable[bytes]],
        helper_labels: Mapping[str, str],
    ) -> None:
        with docker_errors(f"creating snapshot volume {name}"), self._admit:
            made = self.api.create_volume(name, labels={**labels, LABEL_ROLE: "snapshot"})
        try:
            mounts = [Mount(f"/{SNAPSHOT_MOUNT}", name, type="volume")]
            with self._helper(NOBODY, helper_labels, mounts) as helper:
                self._put_archive(helper, "/", tree(SNAPSHOT_MOUNT))
        except BaseException:
            self.remove_volume(name)
            raise
        with self._lock:
            self._mountpoints[name] = str(made["Mountpoint"])

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
        data = name + DATA_SUFFIX
        with self._lock:
            self._owners[name] = owner
        with docker_errors(f"creating workspace volume {name}"):
            with self._admit:
                made = self.api.create_volume(data, labels={**labels, LABEL_ROLE: "workspace-data"})
            root = made["Mountpoint"]
            local = volume_dir.usable(root) if self._local else None
            if local is not None:
                with self._lock:
                    self._data_dirs[name] = local
                if quota_bytes is not None:
                    volume_dir.mount_quota(local, quota_bytes)
                    with self._lock:
                        self._quotas.add(name)
                volume_dir.lay_out(local, owner)
            else:
                self._lay_out_through_helper(data, labels, owner)
            lowerdir = self._mountpoint(lower) if lower is not None else f"{root}/lower"
            flags = "nosuid,nodev" if exec_allowed else "noexec,nosuid,nodev"
            options = f"{flags},lowerdir={lowerdir},upperdir={root}/upper,workdir={root}/work"
            with self._admit:
                self.api.create_volume(
                    name,
                    driver="local",
                    driver_opts={"type": "overlay", "device": "overlay", "o": options},
                    labels={**labels, LABEL_ROLE: "workspace"},
                )

    def _mountpoint(self, volume: str) -> str:
        """The engine host's directory of volume `volume` (a snapshot)."""
        with self._lock:
            known = self._mountpoints.get(volume)
        if known is not None:
            return known
        with docker_errors(f"inspecting volume {volume}"):
            try:
                found = str(self.api.inspect_volume(volume)["Mountpoint"])
            except docker.errors.NotFound as exc:
                raise NotFound(f"volume {volume} does not exist") from exc
        with self._lock:
            self._mountpoints[volume] = found
        return found

    @contextlib.contextmanager
    def _helper(
        self,
        owner: int,
        labels: Mapping[str, str],
        mounts: Sequence[Mount],
        *,
        image: str | None = None,
    ) -> Iterator[str]:
        """A container with `mounts`, to read or fill files through, removed after: of
        `image`, or of the layout image of `owner`. Never started on Docker; on Podman,
        whose archive API reaches a volume only while a container runs, it runs runner-init
        (of `image`, else of its own image) waiting for an environment that never comes,
        as `owner` (Podman gives what it extracts to the container's user), hardened like
        a step and bounded by `HELPER_DEADLINE_S`."""
        labels = {**labels, LABEL_ROLE: "helper"}
        with docker_errors("creating a helper container"), self._admit:
            if self.dialect.podman:
                image = image or self._runner_init_image()
                argv = contract.argv(env_stdin=True, deadline_s=HELPER_DEADLINE_S)
                hardened: dict[str, Any] = {
                    "read_only": True,
                    "cap_drop": ["ALL"],
                    "security_opt": ["no-new-privileges:true"],
                    "ipc_mode": "none",
                    "pids_limit": 32,
                    "log_config": {"type": "none", "config": {}},
                    "ulimits": self.dialect.ulimits(),
                }
                host_config = self.api.create_host_config(
                    mounts=list(mounts), network_mode="none", **hardened
                )
                helper = str(
                    self.api.create_container(
                        image,
                        ["/nonexistent"],
                        entrypoint=argv,
                        user=f"{owner}:{owner}",
                        labels=labels,
                        stdin_open=True,
                        network_disabled=True,
                        host_config=host_config,
                    )["Id"]
                )
            else:
                helper = str(
                    self.api.create_container(
                        image or self._layout_image(owner),
                        ["/nonexistent"],
                        entrypoint=[],
                        labels=labels,
                        network_disabled=True,
                        host_config=self.api.create_host_config(
                            mounts=list(mounts), network_mode="none"
                        ),
                    )["Id"]
                )
        try:
            if self.dialect.podman:
                with docker_errors("starting a helper container"), self._admit:
                    self.api.start(helper)
            yield helper
        finally:
            self.remove(helper)

    def _runner_init_image(self) -> str:
        """The runner-init image (Podman's helpers run it)."""
        if self._init_image is None:
            self._init_image = ensure_image(self)
        return self._init_image

    def _lay_out_through_helper(self, data: str, labels: Mapping[str, str], owner: int) -> None:
        """A remote engine's data volume: the engine copies the layout image's /data (the
        layout, with owners) into the empty volume when the helper is created."""
        with self._helper(owner, labels, [Mount("/data", data, type="volume")]):
            pass

    def put_workspace(
        self, volume: str, path: str, data: Iterable[bytes], labels: Mapping[str, str]
    ) -> None:
        mounts = [Mount(WORKSPACE_PATH, volume, type="volume")]
        with self._lock:  # Podman gives the directory it extracts into to the helper's user
            owner = self._owners.get(volume, NOBODY) if self.dialect.podman else NOBODY
        with self._helper(owner, labels, mounts) as helper:
            self._put_archive(helper, posixpath.join(WORKSPACE_PATH, path), data)

    def workspace_full(self, volume: str) -> bool:
        with self._lock:
            local = self._data_dirs.get(volume) if volume in self._quotas else None
        return local is not None and volume_dir.full(local)

    def read_files(
        self, volume: str, directory: str, names: Sequence[str], limit: int
    ) -> dict[str, bytes] | None:
        with self._lock:
            local = self._data_dirs.get(volume)
        if local is None:
            return None
        return volume_dir.read_files(local / "upper", directory, names, limit)

    def _layout_image(self, owner: int) -> str:
        """A file-less image but for /data/{lower,work,upper} (upper owned by `owner`):
        created containers copy it into an empty volume. Imported once per owner."""
        tag = f"{LAYOUT_IMAGE}:{owner}"
        with self._lock:
            if tag not in self._layouts:
                if images.inspect(self.api, tag) is None:
                    config = ImageConfig(labels={LABEL_ROLE: "layout-image"})
                    images.import_rootfs(self.api, _layout(owner), tag, config)
                self._layouts.add(tag)
        return tag

    def remove_volume(self, name: str) -> None:
        names = [name] if name.endswith(DATA_SUFFIX) else [name, name + DATA_SUFFIX]
        with self._lock:
            self._data_dirs.pop(name, None)
            self._quotas.discard(name)
            self._mountpoints.pop(name, None)
            self._owners.pop(name, None)
        with self._admit, docker_errors(f"removing volume {name}"):
            for each in names:
                if each.endswith(DATA_SUFFIX):
                    self._unmount_quota(each)
                try:
                    self.api.remove_volume(each, force=True)
                except docker.errors.APIError as exc:
                    if missing_ok(exc):
                        continue
                    if exc.status_code != 409 or not self._remove_helpers_of(each):
                        raise
                    self.api.remove_volume(each, force=True)

    def _unmount_quota(self, data: str) -> None:
        """Unmount the quota of data volume `data` (left mounted by a crashed runner too)."""
        if not self._local:
            return
        try:
            root = self.api.inspect_volume(data)["Mountpoint"]
        except docker.errors.NotFound:
            return
        local = volume_dir.usable(root)
        if local is not None:
            volume_dir.unmount(local)

    def _remove_helpers_of(self, volume: str) -> bool:
        """Remove the (never-started) helper containers a crash left holding `volume`;
        whether there were any."""
        found = self.api.containers(
            all=True, filters={"volume": volume, "label": f"{LABEL_ROLE}=helper"}
        )
        for container in found:
            self.api.remove_container(container["Id"], force=True)
        return bool(found)

    # -- networks (runner.engine.docker.networks) -------------------------------------------

    def create_network(self, name: str, labels: Mapping[str, str], *, host_reachable: bool) -> None:
        with self._admit:
            networks.create(
                self.api,
                name,
                labels,
                host_reachable=host_reachable,
                local=self._local,
                dialect=self.dialect,
            )

    def remove_network(self, name: str) -> None:
        with self._admit:
            networks.remove(self.api, name)

    # -- services (backend.Sidecars) --------------------------------------------------------

    def services_refused(self) -> str | None:
        if self.dialect.podman:
            return (
                "services are not supported on Podman yet: a service's name would be served "
                "by netavark's DNS server, which runs on the host, and runner keeps every "
                "job's network away from the host"
            )
        return None

    def create_private_network(
        self, name: str, labels: Mapping[str, str], *, host_reachable: bool
    ) -> None:
        with self._admit:
            networks.create(
                self.api,
                name,
                labels,
                host_reachable=host_reachable,
                local=self._local,
                dialect=self.dialect,
                internal=True,
            )
        with self._lock:
            self._private.add(name)

    def image_command(self, image: str) -> ImageCommand:
        return images.command(self.api, image)

    def service_state(self, cid: str) -> ServiceState:
        with docker_errors(f"inspecting container {cid[:12]}"):
            try:
                state = (self.api.inspect_container(cid).get("State")) or {}
            except docker.errors.NotFound:
                return ServiceState(running=False)
        health = state.get("Health") or {}
        log = health.get("Log") or []
        running = bool(state.get("Running"))
        return ServiceState(
            running=running,
            exit_code=None if running else int(state.get("ExitCode") or 0),
            health=str(health.get("Status") or ""),
            checked=str(log[-1].get("Output") or "") if log else "",
        )

    def list_networks(self, label: str) -> dict[str, dict[str, str]]:
        return networks.labelled(self.api, label)

    def list_labelled(
        self, label: str
    ) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
        with docker_errors(f"listing containers and volumes labelled {label}"):
            found = self.api.containers(all=True, filters={"label": label})
            volumes = self.api.volumes(filters={"label": label}).get("Volumes") or []
        containers = {c["Id"]: dict(c.get("Labels") or {}) for c in found}
        # the workspace (overlay) first: its data volume holds its layers
        volumes.sort(key=lambda v: v["Name"].endswith(DATA_SUFFIX))
        return containers, {v["Name"]: dict(v.get("Labels") or {}) for v in volumes}

    # -- images (runner.engine.docker.images) -----------------------------------------------

    def inspect_image(self, image: str) -> ImageInfo | None:
        return images.inspect(self.api, image)

    def build_image(
        self,
        spec: BuildSpec,
        cancel: threading.Event,
        on_step: Callable[[str], None] | None = None,
    ) -> ImageInfo:
        return images.build(self.api, spec, cancel, on_step)

    def pull_image(self, reference: str) -> ImageInfo:
        return images.pull(self.api, reference)

    def import_image(self, rootfs: IO[bytes], tag: str, config: ImageConfig) -> None:
        with self._admit:
            images.import_rootfs(self.api, rootfs, tag, config, self.dialect)

    def export_filesystem(self, image: str, out: IO[bytes]) -> None:
        images.export_filesystem(self.api, image, out)

    def tag_image(self, image: str, tag: str) -> None:
        images.tag(self.api, image, tag)

    def save_image(self, image: str) -> Iterator[bytes]:
        """`image` as a `docker save` archive (what a Kubernetes node loads)."""
        return images.save(self.api, image)

    def push_image(self, image: str, repository: str, tag: str) -> str:
        """Push `image` as `repository:tag`; the registry's manifest digest."""
        return images.push(self.api, image, repository, tag)

    def remove_image(self, image: str) -> None:
        images.remove(self.api, image)


def _link_tar(name: str, target: str) -> bytes:
    """A tar of one symbolic link, as Docker's archive API sends a path that is one (the
    target as the engine resolved it: Podman does not say what the link holds)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        tar.addfile(info)
    return buffer.getvalue()


def _layout(owner: int) -> bytes:
    """The rootfs of the layout image: the overlay's three directories under /data."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, uid, mode in (
            ("data", 0, 0o755),
            ("data/lower", 0, 0o755),
            ("data/work", 0, 0o700),
            ("data/upper", owner, 0o755),
        ):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.uid = info.gid = uid
            info.mode = mode
            tar.addfile(info)
    return buffer.getvalue()
