"""The image half of `Backend` on the Docker API: inspect, build, pull, import, export,
tag and remove.

Functions of the SDK's low-level client (`docker.APIClient`), which `DockerBackend`
delegates to. An image's filesystem is exported through a created, never started
container (labelled `runner.role=helper`, removed at once).

A build (`build`) is bounded like a step: the engine's own limits on its RUN containers
(`memory` = `memswap`, a CPU quota), no network unless the spec grants it
(`networkmode=none`), never a pull of a newer base, intermediate containers removed even
on failure, and a deadline. Its progress is read in a thread while the caller's thread
watches the deadline and the cancel event; either closes the connection
(`sdk.BuildStream.cancel`), which makes dockerd cancel the build and kill its running step.
The lines that announce a build step (`STEP_LINE`: Docker's `Step 3/7 : RUN ...`, Podman's
`STEP 3/7: RUN ...`) are handed to the caller's `on_step` as they arrive.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any, cast

import docker
import docker.errors
from docker.utils import parse_repository_tag

from runner.engine.backend import (
    LABEL_ROLE,
    BuildSpec,
    ImageBuildFailed,
    ImageCommand,
    ImageConfig,
    ImageInfo,
    NotFound,
)
from runner.engine.docker import sdk
from runner.engine.docker.dialect import DOCKER_DIALECT, Dialect
from runner.engine.docker.errors import docker_errors, explain, missing_ok
from runner.errors import Interrupted, RunnerError

EXPORT_CHUNK = 1 << 20
CPU_PERIOD_US = 100_000
WATCH_S = 0.2  # how often a build's deadline and cancel event are looked at
STEP_LINE = re.compile(r"(Step|STEP) \d+/\d+ ?:")  # a build step starts (Docker, Podman)


def _attributes(api: docker.APIClient, image: str) -> dict[str, Any] | None:
    """The engine's `GET /images/{image}/json`; None when it does not have `image`."""
    with docker_errors(f"inspecting image {image}"):
        try:
            return cast(dict[str, Any], cast(Any, api).inspect_image(image))
        except docker.errors.ImageNotFound:
            return None


def inspect(api: docker.APIClient, image: str) -> ImageInfo | None:
    attrs = _attributes(api, image)
    if attrs is None:
        return None
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    return ImageInfo(str(attrs["Id"]), int(attrs.get("Size") or 0), dict(labels))


def command(api: docker.APIClient, image: str) -> ImageCommand:
    """What `image` runs when nothing else is asked (a service's program)."""
    attrs = _attributes(api, image)
    if attrs is None:
        raise NotFound(f"image {image} does not exist")
    config = attrs.get("Config") or {}
    return ImageCommand(
        entrypoint=tuple(config.get("Entrypoint") or ()),
        cmd=tuple(config.get("Cmd") or ()),
        workdir=str(config.get("WorkingDir") or ""),
    )


def _present(api: docker.APIClient, image: str) -> ImageInfo:
    info = inspect(api, image)
    if info is None:
        raise RunnerError(f"the engine reported {image} made, but does not have it")
    return info


def build_params(spec: BuildSpec) -> dict[str, Any]:
    """The `POST /build` query of `spec` (Docker API 1.41)."""
    return {
        "t": spec.tag,
        "labels": json.dumps(dict(spec.labels)),
        "networkmode": "default" if spec.network else "none",
        "memory": spec.memory_bytes,
        "memswap": spec.memory_bytes,
        "cpuperiod": CPU_PERIOD_US,
        "cpuquota": max(1000, round(spec.cpus * CPU_PERIOD_US)),
        "rm": 1,
        "forcerm": 1,
        "pull": 0,
    }


def build(
    api: docker.APIClient,
    spec: BuildSpec,
    cancel: threading.Event,
    on_step: Callable[[str], None] | None = None,
) -> ImageInfo:
    log: list[str] = []
    failure: list[BaseException] = []
    what = f"building {spec.tag}"

    def read(stream: sdk.BuildStream) -> None:
        try:
            with docker_errors(what):
                for item in stream.items():
                    if "stream" in item:
                        lines = [ln for ln in str(item["stream"]).splitlines() if ln.strip()]
                        log.extend(lines)
                        for line in lines:
                            if on_step is not None and STEP_LINE.match(line):
                                on_step(line.strip())
                    if "error" in item or "errorDetail" in item:
                        detail = item.get("error") or item["errorDetail"].get("message", "")
                        raise ImageBuildFailed(str(detail).strip(), log)
        except BaseException as exc:  # handed to the waiting thread
            failure.append(exc)

    deadline = time.monotonic() + spec.timeout_s
    with spec.context.open("rb") as context, docker_errors(what):
        stream = sdk.build(api, build_params(spec), context)
    reader = threading.Thread(target=read, args=(stream,), name=f"build {spec.tag}", daemon=True)
    reader.start()
    stopped: RunnerError | None = None
    try:
        while reader.is_alive() and stopped is None:
            reader.join(WATCH_S)
            if cancel.is_set():
                stopped = Interrupted(f"the build of {spec.tag} was cancelled")
            elif time.monotonic() >= deadline:
                stopped = ImageBuildFailed(f"it ran past its timeout of {spec.timeout_s:g} s", log)
    finally:
        if reader.is_alive():  # cancelled, timed out, or interrupted in this thread
            stream.cancel()
            reader.join()
    if stopped is not None:
        raise stopped
    if failure:
        raise failure[0]
    return _present(api, spec.tag)


def pull(api: docker.APIClient, reference: str) -> ImageInfo:
    with docker_errors(f"pulling {reference}"):
        try:
            for item in api.pull(reference, stream=True, decode=True):
                if "error" in item or "errorDetail" in item:
                    detail = item.get("error") or item["errorDetail"].get("message", "")
                    raise NotFound(f"pulling {reference} failed: {str(detail).strip()}")
        except docker.errors.APIError as exc:
            raise NotFound(f"pulling {reference} failed: {explain(exc)}") from exc
    return _present(api, reference)


def changes(config: ImageConfig, dialect: Dialect = DOCKER_DIALECT) -> list[str]:
    """`config` as the Dockerfile instructions `docker import --change` takes, one variable
    or label each. Docker unescapes a double-quoted word; Podman strips one pair of quotes
    and takes the rest as it is (`_literal`)."""
    quote = _literal if dialect.podman else _quote
    out = [f"USER {config.user}"] if config.user is not None else []
    out += [f"ENV {name}={quote(value)}" for name, value in config.env.items()]
    if config.workdir is not None:
        out.append(f"WORKDIR {config.workdir}")
    for key, value in config.labels.items():
        if dialect.podman and "=" in key:
            raise RunnerError(f"Podman cannot import an image label whose key holds '=': {key!r}")
        out.append(f"LABEL {quote(key)}={quote(value)}")
    return out


def _quote(text: str) -> str:
    """A Dockerfile double-quoted word: no variable expansion, no word splitting."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def _literal(text: str) -> str:
    """A word as Podman reads it: between one pair of double quotes, taken literally."""
    if "\n" in text:
        raise RunnerError(f"Podman cannot import an image setting that holds a newline: {text!r}")
    return f'"{text}"'


def import_rootfs(
    api: docker.APIClient,
    rootfs: IO[bytes] | bytes,
    tag: str,
    config: ImageConfig,
    dialect: Dialect = DOCKER_DIALECT,
) -> None:
    """Import `rootfs` as `tag`, passed whole as the repository: Podman ignores the
    import's `tag` parameter (its images would all be `:latest`), Docker parses both."""
    repository, version = parse_repository_tag(tag)
    with docker_errors(f"importing {tag}"):
        api.import_image_from_data(
            rootfs,
            repository=f"{repository}:{version or 'latest'}",
            changes=changes(config, dialect),
        )


def export_filesystem(api: docker.APIClient, image: str, out: IO[bytes]) -> None:
    with docker_errors(f"exporting the filesystem of {image}"):
        created = api.create_container(
            image,
            ["/nonexistent"],  # never started: only its filesystem is read
            entrypoint=[],
            network_disabled=True,
            labels={LABEL_ROLE: "helper"},
        )
        cid = str(created["Id"])
        try:
            for chunk in api.export(cid, chunk_size=EXPORT_CHUNK):
                out.write(chunk)
        finally:
            api.remove_container(cid, force=True)


def save(api: docker.APIClient, image: str) -> Iterator[bytes]:
    """`image` as a `docker save` archive, in chunks (delivered to a Kubernetes node)."""
    with docker_errors(f"saving image {image}"):
        yield from api.get_image(image, chunk_size=EXPORT_CHUNK)


def push(api: docker.APIClient, image: str, repository: str, version: str) -> str:
    """Tag `image` as `repository:version`, push it, and return the manifest digest the
    registry answered (`sha256:...`)."""
    with docker_errors(f"pushing {image} to {repository}"):
        api.tag(image, repository, version)
        digest = ""
        for item in api.push(repository, version, stream=True, decode=True):
            if "error" in item:
                raise RunnerError(f"cannot push {image} to {repository}: {item['error']}")
            digest = str((item.get("aux") or {}).get("Digest") or digest)
    if not digest.startswith("sha256:"):
        raise RunnerError(f"the registry answered no digest for {repository}:{version}")
    return digest


def tag(api: docker.APIClient, image: str, new_tag: str) -> None:
    repository, version = parse_repository_tag(new_tag)
    with docker_errors(f"tagging {image} as {new_tag}"):
        api.tag(image, repository, version or "latest")


def remove(api: docker.APIClient, image: str) -> None:
    with docker_errors(f"removing image {image}"):
        try:
            api.remove_image(image, force=True)
        except docker.errors.APIError as exc:
            if not missing_ok(exc):
                raise
