"""The image half of `Backend` on the Docker API: inspect, build, pull, import, export,
tag and remove.

Functions of the SDK's low-level client (`docker.APIClient`), which `DockerBackend`
delegates to. Builds never pull a newer base (`pull=False`) and remove their intermediate
containers; an image's filesystem is exported through a created, never started container
(labelled `runner.role=helper`, removed at once).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, cast

import docker
import docker.errors
from docker.utils import parse_repository_tag

from runner.engine.backend import LABEL_ROLE, ImageBuildFailed, ImageConfig, ImageInfo, NotFound
from runner.engine.docker.errors import docker_errors, explain, missing_ok
from runner.errors import RunnerError

EXPORT_CHUNK = 1 << 20


def inspect(api: docker.APIClient, image: str) -> ImageInfo | None:
    with docker_errors(f"inspecting image {image}"):
        try:
            attrs: dict[str, Any] = cast(Any, api).inspect_image(image)
        except docker.errors.ImageNotFound:
            return None
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    return ImageInfo(str(attrs["Id"]), int(attrs.get("Size") or 0), dict(labels))


def _present(api: docker.APIClient, image: str) -> ImageInfo:
    info = inspect(api, image)
    if info is None:
        raise RunnerError(f"the engine reported {image} made, but does not have it")
    return info


def build(api: docker.APIClient, context: Path, tag: str, labels: Mapping[str, str]) -> ImageInfo:
    log: list[str] = []
    with docker_errors(f"building {context}"):
        for item in api.build(
            path=str(context),
            tag=tag,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
            labels=dict(labels),
        ):
            if "stream" in item:
                log += [line for line in str(item["stream"]).splitlines() if line.strip()]
            if "error" in item or "errorDetail" in item:
                detail = item.get("error") or item["errorDetail"].get("message", "")
                raise ImageBuildFailed(str(detail).strip(), log)
    return _present(api, tag)


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


def changes(config: ImageConfig) -> list[str]:
    """`config` as the Dockerfile instructions `docker import --change` takes."""
    out = [f"USER {config.user}"] if config.user is not None else []
    out += [f"ENV {name}={_quote(value)}" for name, value in config.env.items()]
    if config.workdir is not None:
        out.append(f"WORKDIR {config.workdir}")
    if config.labels:
        pairs = " ".join(f"{_quote(k)}={_quote(v)}" for k, v in config.labels.items())
        out.append(f"LABEL {pairs}")
    return out


def _quote(text: str) -> str:
    """A Dockerfile double-quoted word: no variable expansion, no word splitting."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def import_rootfs(
    api: docker.APIClient, rootfs: IO[bytes] | bytes, tag: str, config: ImageConfig
) -> None:
    repository, version = parse_repository_tag(tag)
    with docker_errors(f"importing {tag}"):
        api.import_image_from_data(
            rootfs, repository=repository, tag=version or "latest", changes=changes(config)
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
