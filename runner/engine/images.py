"""Images a mission can name: `containers/<name>/Dockerfile`, built and tagged by content.

`container: python` names `containers/python/`; its image is tagged
`runner/python:<sha256 of the build context>` (every file under the directory, sorted, with
its mode), so an unchanged directory is never rebuilt and a changed one always is. A name
with no directory (or anything with `/`, `:` or `@`) is an image reference, used as is
when the engine has it, else pulled. Everything goes through the `Backend` protocol.

Which definitions exist and what they hold come from a `TrustedSource` (runner.trusted:
the working tree read beneath the root, or `--trusted-ref`'s commit); the engine builds a
copy runner made of them (`materialized`), never the repository's directory, so a link or
hard link in it never sends a host file to the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.engine.backend import Backend, ImageBuildFailed, ImageInfo, NotFound
from runner.errors import InvalidInput
from runner.trusted import TrustedSource, context_digest, materialized, read_context, source_of

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


def available(root: Path | TrustedSource) -> list[str]:
    """The names of containers/<name>/Dockerfile images in the repository at `root`."""
    return source_of(root).image_names()


def context_hash(directory: Path) -> str:
    """sha256 over every entry under `directory`: relative path, type, mode and content
    (`runner.trusted.context_digest`, read as `runner.repo_files` reads a repository)."""
    return context_digest(read_context(directory.parent, directory.name))


def image_tag(name: str, root: Path | TrustedSource) -> str:
    return f"runner/{name}:{source_of(root).build_context(name).digest}"


def build(backend: Backend, name: str, root: Path | TrustedSource) -> BuiltImage:
    """Build containers/<name>/Dockerfile unless its content-hash tag already exists."""
    source = source_of(root)
    dockerfile = CONTAINERS / name / "Dockerfile"
    known = source.image_names()
    if name not in known:
        raise InvalidInput(
            f"{dockerfile}: no such image definition (known: {', '.join(known) or 'none'})"
        )
    context = source.build_context(name)
    tag = f"runner/{name}:{context.digest}"
    existing = backend.inspect_image(tag)
    if existing is not None:
        return BuiltImage(name, tag, existing.id, existing.size, True)
    try:
        with materialized(context) as directory:
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


def resolve_container(
    name_or_ref: str | None, root: Path | TrustedSource, *, backend: Backend
) -> str:
    """The image a job's `container:` names: containers/<name> built (cached by content
    hash), else an image reference present in (or pullable by) the engine."""
    name = name_or_ref or DEFAULT_CONTAINER
    source = source_of(root)
    if not is_image_reference(name) and name in source.image_names():
        return build(backend, name, source).tag
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
