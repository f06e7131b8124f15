"""Images a mission can name: `containers/<name>/Dockerfile`, built and tagged by content.

`container: python` names `containers/python/`; its image is tagged
`runner/python:<sha256 of the build context>` (every file under the directory, sorted, with
its mode), so an unchanged directory is never rebuilt and a changed one always is. A name
with no directory (or anything with `/`, `:` or `@`) is an image reference, used as is
when the engine has it, else pulled. Everything goes through the `Backend` protocol.

A build is a step too (`build`), within `BuildRules` (the policy's `build:`): every image
its Dockerfile uses (`runner.engine.dockerfile.bases`: each `FROM`, each `COPY --from=`)
must match a pattern of `BuildRules.bases`, checked before anything is built (a cached
image too); the context is a tar runner makes from `containers/<name>/` alone (regular
files, directories, and links that stay inside it; nothing through a symlinked
directory), so the Dockerfile sees nothing else of the repository or the host; no network
unless the name is in `BuildRules.network`; memory, CPU and a timeout from the rules; and
the run's cancel event stops it. What a build can still do is Docker's builder: a `RUN`
runs as root with Docker's default capabilities inside the build container. Which
Dockerfiles may be built is trusted configuration.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tarfile
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from runner.engine import dockerfile
from runner.engine.backend import Backend, BuildSpec, ImageBuildFailed, ImageInfo, NotFound
from runner.errors import InvalidInput, PolicyDenied

CONTAINERS = Path("containers")
DEFAULT_CONTAINER = "base"
FALLBACK_BASE = "debian:bookworm-slim"  # `base` of a repository without containers/base
LABEL_IMAGE = "runner.image"
BUILD_LOG_TAIL = 15
MAX_DOCKERFILE_BYTES = 1024 * 1024
MAX_CONTEXT_BYTES = 1024**3


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
class Builds:
    """How the images of one command are built: the rules, the cancel event, and what to
    do with each image actually built (the run records it in the ledger)."""

    rules: BuildRules
    cancel: threading.Event = field(default_factory=threading.Event)
    on_built: Callable[[BuiltImage], None] = lambda image: None


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


def _definition(root: Path, name: str) -> Path:
    """containers/<name>/ of `root`, a real directory holding a regular Dockerfile (no
    symlink on the way: a link would make the context something else of the host)."""
    directory = root / CONTAINERS / name
    shown = CONTAINERS / name / "Dockerfile"
    if not (directory / "Dockerfile").is_file():
        known = ", ".join(available(root)) or "none"
        raise InvalidInput(f"{shown}: no such image definition (known: {known})")
    for path in (root / CONTAINERS, directory, directory / "Dockerfile"):
        if path.is_symlink():
            raise InvalidInput(
                f"{shown}: {path.relative_to(root)} is a symbolic link; an image definition "
                "must be files of the repository"
            )
    return directory


def _read_dockerfile(directory: Path, shown: Path) -> str:
    try:
        fd = os.open(directory / "Dockerfile", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        why = "is a symbolic link" if exc.errno == errno.ELOOP else (exc.strerror or str(exc))
        raise InvalidInput(f"{shown}: cannot read it: {why}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise InvalidInput(f"{shown}: not a regular file")
        data = handle.read(MAX_DOCKERFILE_BYTES + 1)
    if len(data) > MAX_DOCKERFILE_BYTES:
        raise InvalidInput(f"{shown}: larger than {MAX_DOCKERFILE_BYTES} bytes")
    return data.decode("utf-8", "replace")


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


def write_context(directory: Path, out: Path) -> None:
    """The build context: a tar of every file under `directory` (see the module
    docstring), owned by root, without setuid bits; InvalidInput naming what is refused."""
    total = 0
    with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for top, dirs, files, top_fd in os.fwalk(directory, follow_symlinks=False):
            rel_top = os.path.relpath(top, directory)
            dirs.sort()
            for name in sorted(files) + [d for d in dirs if _is_link(d, top_fd)]:
                rel = os.path.normpath(os.path.join(rel_top, name))
                total += _add(tar, directory, rel, name, top_fd)
                if total > MAX_CONTEXT_BYTES:
                    raise InvalidInput(
                        f"{directory}: the build context is larger than {MAX_CONTEXT_BYTES} bytes"
                    )
            for name in dirs:
                if not _is_link(name, top_fd):
                    info = tarfile.TarInfo(os.path.normpath(os.path.join(rel_top, name)))
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            dirs[:] = [d for d in dirs if not _is_link(d, top_fd)]


def _is_link(name: str, dir_fd: int) -> bool:
    return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)


def _add(tar: tarfile.TarFile, directory: Path, rel: str, name: str, dir_fd: int) -> int:
    shown = directory / rel
    st = os.lstat(name, dir_fd=dir_fd)
    info = tarfile.TarInfo(rel)
    info.mode = stat.S_IMODE(st.st_mode) & 0o777
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(name, dir_fd=dir_fd)
        inside = os.path.normpath(os.path.join(os.path.dirname(rel), target))
        if os.path.isabs(target) or inside == ".." or inside.startswith("../"):
            raise InvalidInput(f"{shown}: a link out of the build context (-> {target})")
        info.type, info.linkname = tarfile.SYMTYPE, target
        tar.addfile(info)
        return 0
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInput(f"{shown}: not a regular file, directory or symlink")
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as handle:
        info.size = os.fstat(handle.fileno()).st_size
        tar.addfile(info, handle)
    return info.size


def _dockerfile_in(context: Path, shown: Path) -> str:
    """The Dockerfile the context tar `context` holds: what the engine will build."""
    with tarfile.open(context) as tar:
        handle = tar.extractfile("Dockerfile")
        if handle is None:
            raise InvalidInput(f"{shown}: not a regular file")
        return handle.read(MAX_DOCKERFILE_BYTES + 1).decode("utf-8", "replace")


def build(backend: Backend, name: str, root: Path, builds: Builds) -> BuiltImage:
    """Build containers/<name>/Dockerfile unless its content-hash tag already exists; its
    bases are checked against the rules first, either way."""
    directory = _definition(root, name)
    dockerfile_path = CONTAINERS / name / "Dockerfile"
    rules = builds.rules
    used = check_bases(name, _read_dockerfile(directory, dockerfile_path), rules)
    network = name in rules.network
    tag = image_tag(name, root)
    existing = backend.inspect_image(tag)
    if existing is not None:
        return BuiltImage(name, tag, existing.id, existing.size, True, used, network)
    with tempfile.TemporaryDirectory(prefix="runner-build-") as scratch:
        context = Path(scratch) / "context.tar"
        write_context(directory, context)
        if check_bases(name, _dockerfile_in(context, dockerfile_path), rules) != used:
            raise InvalidInput(f"{dockerfile_path}: changed while runner read it; build again")
        spec = BuildSpec(
            context=context,
            tag=tag,
            labels={LABEL_IMAGE: name},
            network=network,
            memory_bytes=rules.memory_bytes,
            cpus=rules.cpus,
            timeout_s=rules.timeout_s,
        )
        try:
            image = backend.build_image(spec, builds.cancel)
        except ImageBuildFailed as exc:
            tail = "\n    ".join(exc.log[-BUILD_LOG_TAIL:])
            raise BuildFailed(
                f"{dockerfile_path}: build failed: {exc.detail}"
                + (f"\n  last build output:\n    {tail}" if tail else ""),
                hint=f"fix the Dockerfile, then `runner images build {name}`",
            ) from exc
    built = BuiltImage(name, tag, image.id, image.size, False, used, network)
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
    name_or_ref: str | None, root: Path, *, backend: Backend, builds: Builds
) -> str:
    """The image a job's `container:` names: containers/<name> built (cached by content
    hash), else an image reference present in (or pullable by) the engine."""
    name = name_or_ref or DEFAULT_CONTAINER
    if not is_image_reference(name) and (root / CONTAINERS / name / "Dockerfile").is_file():
        return build(backend, name, root, builds).tag
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
