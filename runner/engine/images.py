"""Images a mission can name: `containers/<name>/Dockerfile`, built and tagged by content.

`container: python` names `containers/python/`; its image is tagged
`runner/python:<sha256 of the build context>` (every file under the directory, sorted, with
its mode), so an unchanged directory is never rebuilt and a changed one always is. A name
with no directory (or anything with `/`, `:` or `@`) is an image reference, used as is
when the engine has it, else pulled. Everything goes through the `Backend` protocol.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.engine.backend import Backend, ImageBuildFailed, ImageInfo, NotFound
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


def build(backend: Backend, name: str, root: Path) -> BuiltImage:
    """Build containers/<name>/Dockerfile unless its content-hash tag already exists."""
    directory = root / CONTAINERS / name
    dockerfile = CONTAINERS / name / "Dockerfile"
    if not (directory / "Dockerfile").is_file():
        known = ", ".join(available(root)) or "none"
        raise InvalidInput(f"{dockerfile}: no such image definition (known: {known})")
    tag = image_tag(name, root)
    existing = backend.inspect_image(tag)
    if existing is not None:
        return BuiltImage(name, tag, existing.id, existing.size, True)
    try:
        image = backend.build_image(directory, tag, {LABEL_IMAGE: name})
    except ImageBuildFailed as exc:
        tail = "\n    ".join(exc.log[-BUILD_LOG_TAIL:])
        raise BuildFailed(
            f"{dockerfile}: build failed: {exc.detail}"
            + (f"\n  last build output:\n    {tail}" if tail else ""),
            hint=f"fix the Dockerfile, then `runner images build {name}`",
        ) from exc
    return BuiltImage(name, tag, image.id, image.size, False)


def is_image_reference(name: str) -> bool:
    """Whether `name` is an image reference (`/`, `:` or `@` in it) rather than the name of
    a containers/<name> directory."""
    return any(char in name for char in "/:@")


def present(backend: Backend, image: str) -> ImageInfo:
    """What the engine knows of `image`; InvalidInput when it does not have it."""
    info = backend.inspect_image(image)
    if info is None:
        raise InvalidInput(
            f"image {image!r} is not present in the engine",
            hint="build it with `runner images build` (no image is pulled)",
        )
    return info


def resolve_container(name_or_ref: str | None, root: Path, *, backend: Backend) -> str:
    """The image a job's `container:` names: containers/<name> built (cached by content
    hash), else an image reference present in (or pullable by) the engine."""
    name = name_or_ref or DEFAULT_CONTAINER
    if not is_image_reference(name) and (root / CONTAINERS / name / "Dockerfile").is_file():
        return build(backend, name, root).tag
    if name == DEFAULT_CONTAINER:
        name = FALLBACK_BASE
    if backend.inspect_image(name) is not None:
        return name
    try:
        backend.pull_image(name)
    except NotFound as exc:
        raise InvalidInput(
            f"container {name!r}: not in {CONTAINERS}/ and not a local image, and {exc.message}",
            hint=f"add {CONTAINERS / name / 'Dockerfile'} or make the image available",
        ) from exc
    return name
