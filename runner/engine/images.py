"""Images a mission can name: `containers/<name>/Dockerfile`, built and tagged by content.

`container: python` names `containers/python/`; its image is tagged
`runner/python:<sha256 of the build context>` (every file under the directory, sorted, with
its mode), so an unchanged directory is never rebuilt and a changed one always is. A name
with no directory (or anything with `/`, `:` or `@`) is an image reference, used as is.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.engine.docker.backend import docker_errors
from runner.errors import InvalidInput

CONTAINERS = Path("containers")
DEFAULT_CONTAINER = "base"
FALLBACK_BASE = "debian:bookworm-slim"  # `base` of a repository without containers/base
LABEL_IMAGE = "runner.image"
BUILD_LOG_TAIL = 15


class BuildFailed(InvalidInput):
    """A containers/<name>/Dockerfile that does not build."""


@dataclass(frozen=True)
class BuiltImage:
    name: str
    tag: str
    id: str
    size: int  # bytes
    cached: bool  # True when the tag already existed

    def serialize(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tag": self.tag,
            "id": self.id,
            "size": self.size,
            "cached": self.cached,
        }


def connect() -> Any:
    """The docker SDK client of the local engine (DOCKER_HOST honoured)."""
    from runner.engine.docker.backend import connect as connect_backend

    return connect_backend().client


def client_of(client_or_backend: Any) -> Any:
    """The docker SDK client behind a backend (its `.client`), or the client itself."""
    if hasattr(client_or_backend, "images") and hasattr(client_or_backend, "api"):
        return client_or_backend
    inner = getattr(client_or_backend, "client", None)
    if inner is None or not hasattr(inner, "images"):
        raise TypeError(f"{client_or_backend!r} is neither a docker client nor has one")
    return inner


def available(root: Path) -> list[str]:
    """The names of containers/<name>/Dockerfile images in the repository at `root`."""
    base = root / CONTAINERS
    if not base.is_dir():
        return []
    return sorted(p.parent.name for p in base.glob("*/Dockerfile") if p.is_file())


def context_hash(directory: Path) -> str:
    """sha256 over every file under `directory`: relative path, type, mode and content."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*"), key=lambda p: p.relative_to(directory).as_posix()):
        info = path.lstat()
        rel = path.relative_to(directory).as_posix()
        if stat.S_ISLNK(info.st_mode):
            body = os.readlink(path).encode()
            kind = "l"
        elif stat.S_ISREG(info.st_mode):
            body = hashlib.sha256(path.read_bytes()).hexdigest().encode()
            kind = "f"
        elif stat.S_ISDIR(info.st_mode):
            body, kind = b"", "d"
        else:
            raise InvalidInput(f"{path}: not a regular file, directory or symlink")
        mode = stat.S_IMODE(info.st_mode)
        digest.update(f"{kind} {mode:o} {rel}\0".encode() + body + b"\0")
    return digest.hexdigest()


def image_tag(name: str, root: Path) -> str:
    return f"runner/{name}:{context_hash(root / CONTAINERS / name)}"


def build(client: Any, name: str, root: Path) -> BuiltImage:
    """Build containers/<name>/Dockerfile unless its content-hash tag already exists."""
    import docker.errors

    directory = root / CONTAINERS / name
    if not (directory / "Dockerfile").is_file():
        known = ", ".join(available(root)) or "none"
        raise InvalidInput(
            f"{CONTAINERS / name / 'Dockerfile'}: no such image definition (known: {known})"
        )
    tag = image_tag(name, root)
    with docker_errors(f"building {CONTAINERS / name}"):
        try:
            image = client.images.get(tag)
            return BuiltImage(name, tag, image.id, int(image.attrs.get("Size", 0)), True)
        except docker.errors.ImageNotFound:
            pass
        log: list[str] = []
        for item in client.api.build(
            path=str(directory),
            tag=tag,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
            labels={LABEL_IMAGE: name},
        ):
            if "stream" in item:
                log += [line for line in str(item["stream"]).splitlines() if line.strip()]
            if "error" in item or "errorDetail" in item:
                detail = item.get("error") or item["errorDetail"].get("message", "")
                tail = "\n    ".join(log[-BUILD_LOG_TAIL:])
                raise BuildFailed(
                    f"{CONTAINERS / name / 'Dockerfile'}: build failed: {str(detail).strip()}"
                    + (f"\n  last build output:\n    {tail}" if tail else ""),
                    hint=f"fix the Dockerfile, then `runner images build {name}`",
                )
        image = client.images.get(tag)
    return BuiltImage(name, tag, image.id, int(image.attrs.get("Size", 0)), False)


def is_reference(name: str) -> bool:
    return any(char in name for char in "/:@")


def resolve_container(name_or_ref: str | None, root: Path, *, client: Any = None) -> str:
    """The image a job's `container:` names: containers/<name> built (cached by content
    hash), else an image reference present in (or pullable by) the engine."""
    import docker.errors

    name = name_or_ref or DEFAULT_CONTAINER
    if not is_reference(name) and (root / CONTAINERS / name / "Dockerfile").is_file():
        return build(client or connect(), name, root).tag
    if name == DEFAULT_CONTAINER:
        name = FALLBACK_BASE
    client = client or connect()
    with docker_errors(f"looking up image {name}"):
        try:
            client.images.get(name)
            return name
        except docker.errors.ImageNotFound:
            pass
        try:
            client.images.pull(name)
        except docker.errors.APIError as exc:
            raise InvalidInput(
                f"container {name!r}: not in {CONTAINERS}/ and not a local image, and "
                f"pulling it failed: {exc.explanation or exc}",
                hint=f"add {CONTAINERS / name / 'Dockerfile'} or make the image available",
            ) from exc
    return name
