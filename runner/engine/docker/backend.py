"""`Backend` on the Docker API (the local socket or DOCKER_HOST; Podman's API too).

Docker and requests errors are translated where they happen (`docker_errors`): an engine
that does not answer is `EngineUnavailable` (exit 4) with how to start one.

Workspace volumes (SPEC 6: no mount both writable and executable unless granted): the
local driver ignores `noexec` on bind volumes, and a tmpfs volume loses what is put into it
before a container runs. So a workspace is an overlay volume: a plain "data" volume holds
`lower/` (empty), `upper/` (the files) and `work/`, and the workspace volume is the local
driver's `type=overlay` mount of them with `noexec,nosuid,nodev` (without `noexec` when exec
is granted). The engine mounts it only while a container uses it, but the files live on disk
in `upper/`, so they survive between steps and `put_archive`/`get_archive` work on created
or stopped containers. The layout (with the owner of `upper/`, the workspace root) comes
from a file-less image the engine copies into the fresh data volume when a never-started
helper container is created; the files then go in with one `put_archive` through it.
Rejected designs: a tmpfs volume kept mounted by a running keeper container (RAM, one more
container per job), an ext4 image file (needs a loop device set up as root on the host).
Needs an engine that may mount overlayfs (rootful Docker; not Docker-in-Docker on overlay).
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, cast

import docker
import docker.errors
import requests
from docker.models import containers as _containers
from docker.types import Mount

from runner.engine.backend import LABEL_ROLE, NOBODY, ContainerSpec, NotFound
from runner.engine.docker import volume_dir
from runner.engine.docker.hardening import container_config
from runner.errors import EngineUnavailable, InvalidInput, RunnerError

START_HINT = (
    "start one with `scripts/ensure-docker.sh` (or `sudo systemctl start docker`), "
    "or point DOCKER_HOST at a running engine"
)
DATA_SUFFIX = "-data"
POOL_SIZE = 64
DEFAULT_HOST = "unix:///var/run/docker.sock"
# Docker 20.10's API; newer engines and Podman serve it too. A fixed version also spares
# the SDK's version probe, which leaks its socket when no engine answers.
API_VERSION = "1.41"
LAYOUT_IMAGE = "runner-internal/workspace-layout"  # containers of it are never started
# Calls that make the engine work (create, start, remove, volumes) admitted at once. The
# engine saturates at a handful (shared/research: 4-8 workers reach its 6-8 containers/s;
# 50 only add latency, and 1,000 threads starting steps got ~1/s here). `--max-parallel`
# bounds the jobs running; this bounds how many of them talk to the engine's heavy paths.
ENGINE_CONCURRENCY = 8


@contextlib.contextmanager
def docker_errors(what: str) -> Iterator[None]:
    """Translate Docker SDK / requests errors raised while doing `what`."""
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise InvalidInput(
            f"{what}: image not found: {_explain(exc)}",
            hint="build it with `runner images build` (no image is pulled)",
        ) from exc
    except docker.errors.APIError as exc:
        raise RunnerError(f"{what}: the Docker engine refused: {_explain(exc)}") from exc
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise EngineUnavailable(
            f"{what}: no Docker engine answers ({_explain(exc)})", hint=START_HINT
        ) from exc
    except OSError as exc:
        raise EngineUnavailable(
            f"{what}: no Docker engine answers ({exc})", hint=START_HINT
        ) from exc


def _explain(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    text = str(explanation or exc)
    return text.strip() or type(exc).__name__


def connect(*, pool_size: int = POOL_SIZE, timeout_s: float = 120) -> DockerBackend:
    """A backend on the engine of the environment (DOCKER_HOST or the local socket)."""
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
        except BaseException:
            client.close()
            raise
    return DockerBackend(client)


def _missing_ok(exc: docker.errors.APIError) -> bool:
    """404, or a conflict that means "already being removed" / "not running"."""
    if exc.status_code == 404:
        return True
    text = _explain(exc).lower()
    return exc.status_code == 409 and ("in progress" in text or "not running" in text)


class DockerBackend:
    """The Docker implementation of `runner.backend.Backend`."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.api = client.api
        self._lock = threading.Lock()
        self._admit = threading.BoundedSemaphore(ENGINE_CONCURRENCY)
        self._layouts: set[str] = set()
        # a local engine's volume directories can be used in place (see runner.volume_dir)
        self._local = str(self.api.base_url).startswith("http+docker://")
        self._data_dirs: dict[str, Path] = {}  # workspace volume -> its data directory

    def close(self) -> None:
        self.client.close()

    def create(self, spec: ContainerSpec) -> str:
        config: dict[str, Any] = container_config(spec)
        config["version"] = self.api.api_version
        # the SDK's own split of `containers.create` kwargs, without its extra inspect call
        arguments = _containers._create_container_args(config)  # type: ignore[attr-defined]
        with self._admit, docker_errors(f"creating a container of {spec.image}"):
            created = self.api.create_container(**arguments)
        return cast(str, created["Id"])

    def put_archive(self, cid: str, path: str, data: bytes | IO[bytes]) -> None:
        with docker_errors(f"copying files into {path} of container {cid[:12]}"):
            if not self.api.put_archive(cid, path, data):
                raise RunnerError(f"the engine did not extract the archive into {path}")

    def get_archive(self, cid: str, path: str) -> Iterator[bytes]:
        with docker_errors(f"copying {path} out of container {cid[:12]}"):
            try:
                stream, _stat = self.api.get_archive(cid, path, chunk_size=1024 * 1024)
            except docker.errors.NotFound as exc:
                raise NotFound(f"{path} does not exist in container {cid[:12]}") from exc
            yield from stream

    def start(self, cid: str) -> None:
        with self._admit, docker_errors(f"starting container {cid[:12]}"):
            self.api.start(cid)

    def attach_output(self, cid: str) -> Iterator[bytes]:
        """Attach to a created container's stdout and stderr *before* it starts, as
        `docker run` does: nothing it prints can be missed, however fast it exits, and
        nothing is read back from the engine's capped log files."""
        api = cast(Any, self.api)
        with docker_errors(f"attaching to container {cid[:12]}"):
            response = api._post(
                api._url("/containers/{0}/attach", cid),
                headers={"Connection": "Upgrade", "Upgrade": "tcp"},
                params={"logs": 1, "stdout": 1, "stderr": 1, "stream": 1},
                stream=True,
            )
            api._raise_for_status(response)
            frames = api._read_from_socket(response, True, False)  # multiplexed, no TTY
        return self._frames(cid, frames, response)

    def _frames(self, cid: str, frames: Iterator[bytes], response: Any) -> Iterator[bytes]:
        try:
            with docker_errors(f"reading the output of container {cid[:12]}"):
                yield from frames
        finally:
            response.close()

    def stream_logs(self, cid: str) -> Iterator[bytes]:
        with docker_errors(f"reading the output of container {cid[:12]}"):
            yield from self.api.logs(cid, stream=True, follow=True, stdout=True, stderr=True)

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
        with docker_errors(f"killing container {cid[:12]}"):
            try:
                self.api.kill(cid)
            except docker.errors.APIError as exc:
                if not _missing_ok(exc):
                    raise

    def remove(self, cid: str) -> None:
        with self._admit, docker_errors(f"removing container {cid[:12]}"):
            try:
                self.api.remove_container(cid, force=True, v=True)
            except docker.errors.APIError as exc:
                if not _missing_ok(exc):
                    raise

    def create_volume(
        self,
        name: str,
        labels: Mapping[str, str],
        *,
        exec_allowed: bool,
        owner: int = NOBODY,
        seeds: Sequence[bytes | IO[bytes]] = (),
    ) -> None:
        data = name + DATA_SUFFIX
        with docker_errors(f"creating workspace volume {name}"):
            with self._admit:
                made = self.api.create_volume(data, labels={**labels, LABEL_ROLE: "workspace-data"})
            root = made["Mountpoint"]
            local = volume_dir.usable(root) if self._local else None
            if local is not None:
                volume_dir.lay_out(local, owner)
                for seed in seeds:
                    volume_dir.extract(seed, local / "upper")
                with self._lock:
                    self._data_dirs[name] = local
            else:
                self._seed_through_helper(data, labels, owner, seeds)
            flags = "nosuid,nodev" if exec_allowed else "noexec,nosuid,nodev"
            options = f"{flags},lowerdir={root}/lower,upperdir={root}/upper,workdir={root}/work"
            with self._admit:
                self.api.create_volume(
                    name,
                    driver="local",
                    driver_opts={"type": "overlay", "device": "overlay", "o": options},
                    labels={**labels, LABEL_ROLE: "workspace"},
                )

    def _seed_through_helper(
        self,
        data: str,
        labels: Mapping[str, str],
        owner: int,
        seeds: Sequence[bytes | IO[bytes]],
    ) -> None:
        """A remote engine's volume: lay it out and seed it through a never-started helper."""
        image = self._layout_image(owner)
        with docker_errors(f"seeding volume {data}"):
            # the engine copies the image's /data (the layout, with owners) into the empty
            # volume when the container is created; the helper is never started
            helper = self.api.create_container(
                image,
                ["/nonexistent"],
                entrypoint=[],
                labels={**labels, LABEL_ROLE: "helper"},
                network_disabled=True,
                host_config=self.api.create_host_config(
                    mounts=[Mount("/data", data, type="volume")], network_mode="none"
                ),
            )["Id"]
            try:
                for seed in seeds:
                    self.put_archive(helper, "/data/upper", seed)
            finally:
                self.remove(helper)

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
        with self._lock, docker_errors("preparing runner's workspace layout image"):
            if tag not in self._layouts:
                try:
                    cast(Any, self.api).inspect_image(tag)
                except docker.errors.ImageNotFound:
                    self.api.import_image_from_data(
                        _layout(owner),
                        repository=LAYOUT_IMAGE,
                        tag=str(owner),
                        changes=[f"LABEL {LABEL_ROLE}=layout-image"],
                    )
                self._layouts.add(tag)
        return tag

    def remove_volume(self, name: str) -> None:
        names = [name] if name.endswith(DATA_SUFFIX) else [name, name + DATA_SUFFIX]
        with self._lock:
            self._data_dirs.pop(name, None)
        with self._admit, docker_errors(f"removing volume {name}"):
            for each in names:
                try:
                    self.api.remove_volume(each, force=True)
                except docker.errors.APIError as exc:
                    if not _missing_ok(exc):
                        raise

    def host_pid(self, cid: str) -> int | None:
        if not self._local:
            return None
        with docker_errors(f"inspecting container {cid[:12]}"):
            try:
                state = cast(Any, self.api).inspect_container(cid)["State"]
            except docker.errors.NotFound:
                return None
        pid = int(state.get("Pid") or 0)
        return pid if pid > 0 and state.get("Running") else None

    def image_digest(self, image: str) -> str:
        with docker_errors(f"inspecting image {image}"):
            return cast(str, cast(Any, self.api).inspect_image(image)["Id"])

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
