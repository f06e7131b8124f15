"""Images for the cluster: built by the local engine as on Docker, then delivered.

Toolset images, `containers/<name>` images and runner's own are built by the local image
engine (a `Backend`, Docker's) exactly as for a Docker run; the cluster gets each one the
first time a pod needs it, one of two ways (`Delivery`):

- `registry(prefix)` (`--image-registry`): the image is tagged `<prefix>/<name>:<tag>`,
  pushed, and pods name it by the digest the registry answered
  (`<prefix>/<name>@sha256:...`, pulled `IfNotPresent`), so a tag moved in the registry
  cannot change what a step runs;
- `node(socket)` (`--load-images`): the image is streamed from the engine (`docker save`)
  into the containerd of a single development node (`ctr -n k8s.io images import`, as
  `../shared/k8s/` needs; runner must run on that node), and pods use it with
  `imagePullPolicy: Never`, so the kubelet never asks a registry for it.

Every `Delivered` reference carries the digest the ledger records for it. The helper
image (`helper_image`) is runner's own: GNU tar, cat, sleep and bash with their shared
libraries, copied out of `debian:bookworm-slim` into a `FROM scratch` image tagged by the
hash of its Dockerfile; keeper pods run `tar` in it, the network probe runs `bash`.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

from runner.engine.backend import LABEL_ROLE, Backend, BuildSpec, ImageBuildFailed, NotFound
from runner.errors import InvalidInput, RunnerError

HELPER_REPOSITORY = "runner-internal/k8s-helper"
HELPER_DOCKERFILE = "helper.Dockerfile"
NAMESPACE = "k8s.io"  # the containerd namespace of the kubelet's images
LOAD_TIMEOUT_S = 600.0


class ImageArchives(Protocol):
    """What delivery needs of the image engine beyond `Backend`: an image as a
    `docker save` archive, and a push that answers the registry's digest."""

    def save_image(self, image: str) -> Iterator[bytes]: ...

    def push_image(self, image: str, repository: str, tag: str) -> str: ...


class ImageEngine(Backend, ImageArchives, Protocol):
    """The local engine that builds images and hands them over (Docker's backend)."""


@dataclass(frozen=True)
class Delivered:
    """How pods name an image, and what the ledger records of it."""

    reference: str
    pull_policy: str
    digest: str  # the registry's manifest digest, or the image's content id


def normalized(reference: str) -> str:
    """`reference` as containerd names it (`docker.io/library/name:tag`)."""
    name, _, tag = (
        reference.rpartition(":")
        if ":" in reference.split("/")[-1]
        else (
            reference,
            "",
            "latest",
        )
    )
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    return f"{name}:{tag}"


class Delivery:
    """Brings images from the engine to the cluster, once each per backend."""

    def __init__(
        self, engine: ImageEngine, *, registry: str | None = None, socket: str | None = None
    ) -> None:
        if (registry is None) == (socket is None):
            raise InvalidInput(
                "the Kubernetes backend needs one way to deliver images: "
                "--image-registry PREFIX or --load-images CONTAINERD_SOCKET",
                hint="--load-images /tmp/k8s/containerd/containerd.sock for ../shared/k8s",
            )
        self.engine = engine
        self.registry = registry.rstrip("/") if registry is not None else None
        self.socket = socket
        self._done: dict[str, Delivered] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        if socket is not None and not Path(socket).exists():
            raise InvalidInput(
                f"--load-images {socket}: no containerd socket there",
                hint="start the development cluster (../shared/k8s/up.sh) or name its socket",
            )

    @property
    def mode(self) -> str:
        return "registry" if self.registry is not None else "node"

    def deliver(self, image: str) -> Delivered:
        with self._lock:
            done = self._done.get(image)
            lock = self._locks.setdefault(image, threading.Lock())
        if done is not None:
            return done
        with lock:
            with self._lock:
                done = self._done.get(image)
            if done is None:
                done = self._push(image) if self.registry is not None else self._load(image)
                with self._lock:
                    self._done[image] = done
        return done

    def _push(self, image: str) -> Delivered:
        assert self.registry is not None
        name, tag = _name_and_tag(image)
        repository = f"{self.registry}/{name.split('/')[-1]}"
        digest = self.engine.push_image(image, repository, tag)
        return Delivered(f"{repository}@{digest}", "IfNotPresent", digest)

    def _load(self, image: str) -> Delivered:
        assert self.socket is not None
        info = self.engine.inspect_image(image)
        if info is None:
            raise NotFound(f"image {image} is not in the local engine")
        if normalized(image) not in self._node_images():
            ctr = shutil.which("ctr")
            if ctr is None:
                raise RunnerError(
                    "--load-images needs containerd's `ctr` on this machine",
                    hint="apt-get install containerd",
                )
            with tempfile.TemporaryFile() as archive:
                for chunk in self.engine.save_image(image):
                    archive.write(chunk)
                archive.seek(0)
                done = subprocess.run(
                    [ctr, "-a", self.socket, "-n", NAMESPACE, "images", "import", "-"],
                    stdin=archive,
                    capture_output=True,
                    timeout=LOAD_TIMEOUT_S,
                    check=False,
                )
            if done.returncode != 0:
                raise RunnerError(
                    f"cannot load image {image} into the node's containerd ({self.socket}): "
                    + done.stderr.decode("utf-8", "replace").strip()[-2000:]
                )
        return Delivered(image, "Never", info.id)

    def _node_images(self) -> set[str]:
        assert self.socket is not None
        ctr = shutil.which("ctr") or "ctr"
        try:
            done = subprocess.run(
                [ctr, "-a", self.socket, "-n", NAMESPACE, "images", "ls", "-q"],
                capture_output=True,
                timeout=60,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return set()
        return set(done.stdout.decode().split())


def _name_and_tag(image: str) -> tuple[str, str]:
    last = image.split("/")[-1]
    if ":" in last:
        name, _, tag = image.rpartition(":")
        return name, tag
    return image, "latest"


def helper_tag() -> str:
    data = resources.files("runner.engine.kubernetes").joinpath(HELPER_DOCKERFILE).read_bytes()
    return f"{HELPER_REPOSITORY}:{hashlib.sha256(data).hexdigest()}"


_build_lock = threading.Lock()


def helper_image(engine: Backend) -> str:
    """runner's helper image (tar, cat, sleep, bash), built once per engine."""
    tag = helper_tag()
    with _build_lock:
        if engine.inspect_image(tag) is not None:
            return tag
        data = resources.files("runner.engine.kubernetes").joinpath(HELPER_DOCKERFILE).read_bytes()
        with tempfile.TemporaryDirectory(prefix="runner-k8s-helper-") as scratch:
            context = Path(scratch) / "context.tar"
            with tarfile.open(context, mode="w") as tar:
                info = tarfile.TarInfo("Dockerfile")
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
            spec = BuildSpec(
                context=context,
                tag=tag,
                labels={LABEL_ROLE: "k8s-helper-image"},
                memory_bytes=512 * 1024 * 1024,
                cpus=1.0,
                timeout_s=300.0,
            )
            try:
                engine.build_image(spec, threading.Event())
            except ImageBuildFailed as exc:
                raise RunnerError(
                    f"cannot build runner's Kubernetes helper image: {exc.detail}",
                    hint="it is made from debian:bookworm-slim (scripts/base-images.sh)",
                ) from exc
    return tag
