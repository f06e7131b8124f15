"""Images a mission can name: `containers/<name>/Dockerfile`, built and tagged by content.

`container: python` names `containers/python/`; its image is tagged
`runner/python:<sha256 of the build context>` (every file under the directory, sorted, with
its mode), so an unchanged directory is never rebuilt and a changed one always is. A name
with no directory (or anything with `/`, `:` or `@`) is an image reference, used as is
when the engine has it, else pulled. Everything goes through the `Backend` protocol.

Which definitions exist and what they hold come from a `TrustedSource` (runner.trusted:
the working tree read beneath the root, or `--trusted-ref`'s commit); the engine builds a
tar runner made of that copy (`context_tar`), never the repository's directory, so a link
or hard link in it never sends a host file to the engine.

A build is a step too (`build`), within `BuildRules` (the policy's `build:`): every image
its Dockerfile uses (`runner.engine.dockerfile.bases`: each `FROM`, each `COPY --from=`)
must match a pattern of `BuildRules.bases`, checked before anything is built (a cached
image too); the context holds `containers/<name>/` alone, so the Dockerfile sees nothing
else of the repository or the host; no network unless the name is in
`BuildRules.network`; memory, CPU and a timeout from the rules; and the run's cancel event
stops it. Its progress goes to `Builds.on_progress` as it happens (`BuildProgress`: the
build starts, each step the engine announces, the build ends), for the views and `runner
images build` to show. What a build can still do is Docker's builder: a `RUN` runs as root with
Docker's default capabilities inside the build container. Which Dockerfiles may be built
is trusted configuration.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from runner.engine import dockerfile
from runner.engine.backend import Backend, BuildSpec, ImageBuildFailed, ImageInfo, NotFound
from runner.errors import InvalidInput, PolicyDenied, RunnerError
from runner.trusted import BuildContext, TrustedSource, context_digest, read_context, source_of

CONTAINERS = Path("containers")
DEFAULT_CONTAINER = "base"
FALLBACK_BASE = "debian:bookworm-slim"  # `base` of a repository without containers/base
LABEL_IMAGE = "runner.image"
BUILD_LOG_TAIL = 15
MAX_DOCKERFILE_BYTES = 1024 * 1024


class BuildFailed(InvalidInput):
    """A containers/<name>/Dockerfile that does not build."""


@dataclass(frozen=True)
class BuildRules:
    """What the policy lets a `containers/<name>/Dockerfile` build do (its `build:` key):
    the image patterns its `FROM`s and `COPY --from=`s may name (fnmatch globs, matched
    literally as `images:` is; `scratch` and earlier stages need none), the names whose
    builds get the network (a package install), and the limits of its containers."""

    bases: tuple[str, ...] = ()
    network: tuple[str, ...] = ()
    memory_bytes: int = 1024**3
    cpus: float = 1.0
    timeout_s: float = 3600.0


@dataclass(frozen=True)
class BuiltImage:
    name: str
    tag: str
    id: str
    size: int  # bytes
    cached: bool  # True when the tag already existed
    bases: tuple[str, ...] = ()  # the images its Dockerfile uses
    network: bool = False  # built with the network

    def serialize(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tag": self.tag,
            "id": self.id,
            "size": self.size,
            "cached": self.cached,
        }

    def ledger_fields(self) -> dict[str, Any]:
        """The fields of the `image.built` ledger entry."""
        return {
            "name": self.name,
            "tag": self.tag,
            "image_id": self.id,
            "context_sha256": self.tag.rpartition(":")[2],
            "bases": list(self.bases),
            "network": self.network,
        }


@dataclass(frozen=True)
class BuildProgress:
    """One moment of a build: it `started`, reached a `step` (`line` is the engine's
    `Step 3/7 : RUN ...`), or `finished` (`line` is empty, or says why it did not build)."""

    name: str  # containers/<name>
    tag: str
    phase: Literal["started", "step", "finished"]
    line: str = ""


@dataclass(frozen=True)
class Builds:
    """How the images of one command are built: the rules, the cancel event, what to do
    with each image actually built (the run records it in the ledger), and with the
    progress of each build (a cached image has none)."""

    rules: BuildRules
    cancel: threading.Event = field(default_factory=threading.Event)
    on_built: Callable[[BuiltImage], None] = lambda image: None
    on_progress: Callable[[BuildProgress], None] = lambda progress: None


def available(root: Path | TrustedSource) -> list[str]:
    """The names of containers/<name>/Dockerfile images in the repository at `root`."""
    return source_of(root).image_names()


def context_hash(directory: Path) -> str:
    """sha256 over every entry under `directory`: relative path, type, mode and content
    (`runner.trusted.context_digest`, read as `runner.repo_files` reads a repository)."""
    return context_digest(read_context(directory.parent, directory.name))


def image_tag(name: str, root: Path | TrustedSource) -> str:
    return f"runner/{name}:{source_of(root).build_context(name).digest}"


def check_bases(name: str, text: str, rules: BuildRules) -> tuple[str, ...]:
    """The images the Dockerfile of `name` uses; PolicyDenied naming the first that no
    pattern of `rules.bases` allows."""
    shown = str(CONTAINERS / name / "Dockerfile")
    found = dockerfile.bases(text, shown)
    for base in found:
        if not any(fnmatchcase(base.reference, pattern) for pattern in rules.bases):
            allowed = ", ".join(rules.bases) or "none"
            raise PolicyDenied(
                f"{shown}:{base.line}: {base.instruction} {base.reference} is not an image "
                f"the policy lets a build use (build.from: {allowed})",
                hint=f"add {base.reference!r} to `build: {{from: [...]}}` in the policy",
            )
    return tuple(dict.fromkeys(base.reference for base in found))


def _dockerfile_of(context: BuildContext) -> str:
    """The Dockerfile a context holds: what the engine will build."""
    for item in context.files:
        if item.path == "Dockerfile" and item.kind == "file":
            if len(item.data) > MAX_DOCKERFILE_BYTES:
                raise InvalidInput(
                    f"{CONTAINERS / context.name / 'Dockerfile'}: larger than "
                    f"{MAX_DOCKERFILE_BYTES} bytes"
                )
            return item.data.decode("utf-8", "replace")
    raise InvalidInput(f"{CONTAINERS / context.name / 'Dockerfile'}: not a regular file")


def _check_links(context: BuildContext) -> None:
    """InvalidInput for a link that leaves `containers/<name>/`: the build sees that
    directory alone (the engine would not follow such a link, but a definition that needs
    one is not what it says it is)."""
    for item in context.files:
        if item.kind != "link":
            continue
        target = item.data.decode("utf-8", "surrogateescape")
        inside = posixpath.normpath(posixpath.join(posixpath.dirname(item.path), target))
        if posixpath.isabs(target) or inside == ".." or inside.startswith("../"):
            shown = CONTAINERS / context.name / item.path
            raise InvalidInput(f"{shown}: a link out of the build context (-> {target})")


def context_tar(context: BuildContext, out: Path) -> None:
    """The build context as the engine receives it: a tar of runner's own copy, every entry
    owned by root, no setuid bits."""
    with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for item in sorted(context.files, key=lambda f: f.path):
            info = tarfile.TarInfo(item.path)
            info.mode = item.mode & 0o777
            match item.kind:
                case "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                case "link":
                    info.type, info.linkname = (
                        tarfile.SYMTYPE,
                        item.data.decode("utf-8", "surrogateescape"),
                    )
                    tar.addfile(info)
                case "file":
                    info.size = len(item.data)
                    tar.addfile(info, io.BytesIO(item.data))


def build(backend: Backend, name: str, root: Path | TrustedSource, builds: Builds) -> BuiltImage:
    """Build containers/<name>/Dockerfile unless its content-hash tag already exists; its
    bases are checked against the rules first, either way."""
    source = source_of(root)
    dockerfile_path = CONTAINERS / name / "Dockerfile"
    known = source.image_names()
    if name not in known:
        source.check_definition(name)  # a link or special file there says so first
        raise InvalidInput(
            f"{dockerfile_path}: no such image definition (known: {', '.join(known) or 'none'})"
        )
    context = source.build_context(name)
    _check_links(context)
    rules = builds.rules
    used = check_bases(name, _dockerfile_of(context), rules)
    network = name in rules.network
    tag = f"runner/{name}:{context.digest}"
    existing = backend.inspect_image(tag)
    if existing is not None:
        return BuiltImage(name, tag, existing.id, existing.size, True, used, network)
    with tempfile.TemporaryDirectory(prefix="runner-build-") as scratch:
        tar_path = Path(scratch) / "context.tar"
        context_tar(context, tar_path)
        spec = BuildSpec(
            context=tar_path,
            tag=tag,
            labels={LABEL_IMAGE: name},
            network=network,
            memory_bytes=rules.memory_bytes,
            cpus=rules.cpus,
            timeout_s=rules.timeout_s,
        )
        progress = builds.on_progress
        progress(BuildProgress(name, tag, "started"))
        try:
            image = backend.build_image(
                spec,
                builds.cancel,
                lambda line: progress(BuildProgress(name, tag, "step", line)),
            )
        except RunnerError as exc:
            progress(BuildProgress(name, tag, "finished", exc.message))
            if not isinstance(exc, ImageBuildFailed):
                raise
            tail = "\n    ".join(exc.log[-BUILD_LOG_TAIL:])
            raise BuildFailed(
                f"{dockerfile_path}: build failed: {exc.detail}"
                + (f"\n  last build output:\n    {tail}" if tail else ""),
                hint=f"fix the Dockerfile, then `runner images build {name}`",
            ) from exc
    built = BuiltImage(name, tag, image.id, image.size, False, used, network)
    progress(BuildProgress(name, tag, "finished"))
    builds.on_built(built)
    return built


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
    name_or_ref: str | None, root: Path | TrustedSource, *, backend: Backend, builds: Builds
) -> str:
    """The image a job's `container:` names: containers/<name> built (cached by content
    hash), else an image reference present in (or pullable by) the engine."""
    name = name_or_ref or DEFAULT_CONTAINER
    source = source_of(root)
    if not is_image_reference(name) and name in source.image_names():
        return build(backend, name, source, builds).tag
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
