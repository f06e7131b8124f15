"""A job's toolset: a `FROM scratch` image holding only the tools the policy allows.

From the job's source image the runner keeps each tool's executables (symlinks followed
inside the image), their shared-library closure read from the ELF headers (PT_INTERP,
DT_NEEDED searched in DT_RPATH/DT_RUNPATH, ld.so.conf and the default directories; never
`ldd`), the files the catalog declares, plus `/tmp` (1777), `/workspace` and an
`/etc/passwd` naming nobody (65534). Multi-call binaries (busybox, toybox) are refused.

A tool in no catalog, and a catalog path that is a bare name, is looked up by name in
`STANDARD_DIRS` (the toolset's PATH order). A script's interpreter (its `#!` line, and
the program `#!/usr/bin/env NAME` runs) must itself be one of the job's tools. An
executable that resolves to a known interpreter (`python3.11`, `node`) makes the toolset
an interpreter's, whatever the catalog says. `survey` reports each tool's problem on its
own (what `plan`, `policy check` and the start of a run show before anything runs,
`check_tools`); `collect` and `build_toolset` refuse a toolset with any.

The result is described by a manifest (every path with its type, mode, size and sha256,
the tools and the source image id); the sha256 of its canonical JSON tags the image
`runner-toolset:<digest>`. Builds are cached twice: the source image's exported
filesystem (per image id) and the manifest of each (image, tools, catalog entries).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import stat
import tarfile
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from runner.durable import json_digest, write_atomic
from runner.engine import elf
from runner.engine.backend import Backend, ImageConfig
from runner.engine.catalog import MULTICALL, STANDARD_DIRS, Catalog, Tool, is_interpreter
from runner.engine.images import present
from runner.engine.rootfs import ImageFS, NotInImage, export_rootfs
from runner.errors import InvalidInput

FORMAT = 1  # bump when the layout of toolset images changes
REPOSITORY = "runner-toolset"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
USER = "65534"
WORKDIR = "/workspace"
LABEL_DIGEST = "runner.toolset.digest"
LABEL_SOURCE = "runner.toolset.source"
MULTICALL_MARKERS = (b"BusyBox v", b"toybox")
PASSWD = (
    "root:x:0:0:root:/root:/usr/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GROUP = "root:x:0:\nnogroup:x:65534:\n"
MULTIARCH = {
    "x86_64": "x86_64-linux-gnu",
    "aarch64": "aarch64-linux-gnu",
    "i386": "i386-linux-gnu",
    "arm": "arm-linux-gnueabihf",
}
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@dataclass(frozen=True)
class Toolset:
    image: str  # `runner-toolset:<digest>`, or the source image id for `tools: all`
    manifest_digest: str
    manifest: Mapping[str, Any]
    interpreter: bool  # an interpreter is inside: deny memfd_create too
    cached: bool = False
    warnings: tuple[str, ...] = ()


def build_toolset(
    backend: Backend,
    source_image: str,
    tools: tuple[str, ...] | Literal["all"],
    catalog: Catalog,
    state_dir: Path,
) -> Toolset:
    """The image a job's steps run in: `source_image` cut down to `tools`."""
    source_id = present(backend, source_image).id
    if tools == "all":
        manifest: dict[str, Any] = {"format": FORMAT, "source_image": source_id, "tools": "all"}
        return Toolset(source_id, json_digest(manifest), manifest, interpreter=True)
    names = tuple(sorted(set(tools)))
    entries = [catalog.get(name) for name in names]  # multi-call names fail here
    key = _key(source_id, names, catalog)
    cache = state_dir / "cache"
    with _lock(key):
        cached = _cached(backend, cache / "toolsets" / f"{key}.json")
        if cached is not None:
            return cached
        with _lock(source_id):
            tar_path = export_rootfs(backend, source_id, cache / "rootfs")
        with ImageFS(tar_path, source_image) as fs:
            plan = collect(fs, entries)
            toolset = _materialize(backend, fs, plan, source_id, names, cache)
        _write_json(cache / "toolsets" / f"{key}.json", _cache_record(toolset))
    return toolset


@dataclass(frozen=True)
class ToolProblem:
    """Why one tool cannot be had from an image."""

    tool: str
    message: str
    kind: Literal["missing", "interpreter", "other"] = "other"
    needs: str = ""  # "interpreter": the tool the job must ask for too


def check_tools(
    backend: Backend,
    source_image: str,
    tools: tuple[str, ...],
    catalog: Catalog,
    state_dir: Path,
    *,
    shown: str = "",
) -> list[ToolProblem]:
    """Each tool of `tools` that `source_image` (present in the engine) cannot provide,
    without building anything: nothing when its toolset is already cached. Messages name
    the image `shown` (default: `source_image`)."""
    source_id = present(backend, source_image).id
    names = tuple(sorted(set(tools)))
    problems: list[ToolProblem] = []
    entries: list[Tool] = []
    for name in names:
        try:
            entries.append(catalog.get(name))
        except InvalidInput as exc:
            problems.append(ToolProblem(name, exc.message))
    cache = state_dir / "cache"
    if not problems and _cached(
        backend, cache / "toolsets" / f"{_key(source_id, names, catalog)}.json"
    ):
        return []
    with _lock(source_id):
        tar_path = export_rootfs(backend, source_id, cache / "rootfs")
    with ImageFS(tar_path, shown or source_image) as fs:
        _plan, found = survey(fs, entries)
    return [*problems, *found]


def _key(source_id: str, names: tuple[str, ...], catalog: Catalog) -> str:
    return json_digest(
        {"format": FORMAT, "source": source_id, "tools": names, "catalog": catalog.digest(names)}
    )


# -- what goes in -------------------------------------------------------------------------


@dataclass
class Plan:
    """The toolset's filesystem: real path -> ("dir", mode) | ("link", target) | ("file", mode)."""

    entries: dict[str, tuple[str, Any]] = field(default_factory=dict)
    interpreter: bool = False
    warnings: list[str] = field(default_factory=list)


def collect(fs: ImageFS, tools: list[Tool]) -> Plan:
    """Everything `tools` need from the image `fs`, without touching the engine;
    InvalidInput naming every tool that cannot be had."""
    plan, problems = survey(fs, tools)
    if problems:
        raise InvalidInput(
            "\n".join(p.message for p in problems),
            hint="fix the job's `tools:` or its image (see `runner plan`)",
        )
    return plan


class _Refused(InvalidInput):
    """A tool's problem with its kind (see ToolProblem)."""

    def __init__(self, message: str, kind: Literal["missing", "interpreter"], needs: str = ""):
        super().__init__(message)
        self.kind = kind
        self.needs = needs


def survey(fs: ImageFS, tools: list[Tool]) -> tuple[Plan, list[ToolProblem]]:
    """Everything `tools` need from the image `fs`, and each tool's problem, one per tool
    (a tool with one brings nothing into the plan's interpreter verdict)."""
    plan = Plan()
    closure = _Closure(fs, plan)
    problems: dict[str, ToolProblem] = {}

    def refuse(tool: str, exc: InvalidInput) -> None:
        if isinstance(exc, _Refused):
            problems.setdefault(tool, ToolProblem(tool, exc.message, exc.kind, exc.needs))
        else:
            problems.setdefault(tool, ToolProblem(tool, exc.message))

    executables: dict[str, str] = {}  # real path -> tool name
    names: dict[str, str] = {}  # every name a tool's executable answers to -> tool name
    for tool in tools:
        found: dict[str, str] = {}
        try:
            for path in tool.paths:
                located = _locate(fs, tool.name, path)
                real = closure.add(located, what=f"tool {tool.name}")
                member = fs.get(real)
                if member is None or not (member.isfile() or member.islnk()):
                    raise InvalidInput(
                        f"tool {tool.name}: {located} is not a regular file in {fs.image}"
                    )
                _refuse_multicall(fs, tool.name, located, real)
                found[real] = posixpath.basename(located)
        except InvalidInput as exc:
            refuse(tool.name, exc)
            continue
        plan.interpreter |= tool.interpreter or any(
            is_interpreter(posixpath.basename(real)) for real in found
        )
        for real, shown in found.items():
            executables[real] = tool.name
            names[shown] = names[posixpath.basename(real)] = tool.name
        names[tool.name] = tool.name
    for real, name in sorted(executables.items()):
        try:
            closure.executable(real, name, executables, names)
        except InvalidInput as exc:
            refuse(name, exc)
    closure.programs = set(executables)
    for tool in tools:
        if tool.name in problems:
            continue
        closure.data_only = not tool.builtin  # a repository's files are data, never programs
        try:
            for pattern in tool.files:
                closure.add_files(pattern, what=f"tool {tool.name}", required=True)
            for pattern in tool.optional:
                closure.add_files(pattern, what=f"tool {tool.name}", required=False)
        except InvalidInput as exc:
            refuse(tool.name, exc)
    closure.data_only = False
    closure.finish()
    return plan, [problems[t.name] for t in tools if t.name in problems]


def _locate(fs: ImageFS, tool: str, path: str) -> str:
    """`path` itself, or for a bare name the first of STANDARD_DIRS that holds it."""
    if path.startswith("/"):
        try:
            fs.resolve(path)
        except NotInImage:
            raise _Refused(f"tool {tool!r}: {path} is not in image {fs.image}", "missing") from None
        return path
    for directory in STANDARD_DIRS:
        candidate = posixpath.join(directory, path)
        try:
            real = fs.resolve(candidate).path
        except NotInImage:
            continue
        member = fs.get(real)
        if member is not None and (member.isfile() or member.islnk()):
            return candidate
    what = f"tool {tool!r}" if tool == path else f"tool {tool!r}: {path}"
    raise _Refused(
        f"{what} is not in image {fs.image} (looked in {', '.join(STANDARD_DIRS)})", "missing"
    )


def _refuse_multicall(fs: ImageFS, tool: str, path: str, real: str) -> None:
    name = posixpath.basename(real)
    content = fs.read(real)
    marker = next((m for m in MULTICALL_MARKERS if m in content), None)
    if name in MULTICALL:
        why = f"it is {name}"
    elif marker is not None:
        why = f"it contains {marker.decode()!r}"
    else:
        return
    raise InvalidInput(
        f"tool {tool}: {path} resolves to {real}, a multi-call binary ({why}): it would "
        "run every applet it contains, so it cannot be a tool",
        hint="use an image whose tools are separate binaries (e.g. containers/base)",
    )


def _env_program(words: list[str]) -> str | None:
    """The program a `#!/usr/bin/env [-S] NAME ...` line runs (None when it names none)."""
    for word in words[1:]:
        if word.startswith("-") or "=" in word:
            continue
        return posixpath.basename(word)
    return None


def _is_program(data: bytes, name: str) -> bool:
    """An ELF executable (ET_EXEC, or a PIE: an interpreter and no soname), not a library."""
    try:
        info = elf.parse(data, name)
    except elf.ElfError:
        return False
    return info.type == 2 or (info.interpreter is not None and info.soname is None)


class _Closure:
    def __init__(self, fs: ImageFS, plan: Plan) -> None:
        self.fs = fs
        self.plan = plan
        self.elf_done: set[str] = set()
        self.pending_elves: list[str] = []  # ELF files from `files`: closure is best effort
        self._search: list[str] | None = None
        self.data_only = False  # refuse ELF programs among the files being added
        self.programs: set[str] = set()  # the tools' own executables, never refused

    def add(self, path: str, *, what: str) -> str:
        """Add `path` (and the symlinks leading to it, and parents); return its real path."""
        try:
            resolved = self.fs.resolve(path)
        except NotInImage as exc:
            raise InvalidInput(f"{what}: {exc.message}") from exc
        for link in resolved.links:
            self._parents(link)
            self.plan.entries[link] = ("link", self.fs.members[link].linkname)
        self._parents(resolved.path)
        member = self.fs.members.get(resolved.path)
        if member is not None and member.isdir():
            self.plan.entries[resolved.path] = ("dir", stat.S_IMODE(member.mode))
        elif member is not None and (member.isfile() or member.islnk()):
            self._file(resolved.path, member)
        return resolved.path

    def _file(self, real: str, member: tarfile.TarInfo) -> None:
        mode = stat.S_IMODE(member.mode) & ~(stat.S_ISUID | stat.S_ISGID)
        self.plan.entries[real] = ("file", mode)

    def _parents(self, path: str) -> None:
        parent = posixpath.dirname(path)
        while parent != "/" and parent not in self.plan.entries:
            member = self.fs.members.get(parent)
            self.plan.entries[parent] = ("dir", stat.S_IMODE(member.mode) if member else 0o755)
            parent = posixpath.dirname(parent)

    def add_files(self, pattern: str, *, what: str, required: bool) -> None:
        matches = self.fs.glob(pattern)
        if not matches:
            if required:
                raise InvalidInput(f"{what}: {pattern} matches nothing in image {self.fs.image}")
            return
        for match in matches:
            real = self.add(match, what=what)
            if self.fs.is_dir(real):
                self._tree(real, what)
            else:
                self._maybe_elf(real)

    def _tree(self, directory: str, what: str) -> None:
        for path in self.fs.walk(directory):
            member = self.fs.members[path]
            if member.isdir():
                self.plan.entries[path] = ("dir", stat.S_IMODE(member.mode))
            elif member.issym():
                self.plan.entries[path] = ("link", member.linkname)
                with contextlib.suppress(NotInImage):  # a dangling link stays dangling
                    target = self.fs.resolve(path).path
                    if not self.fs.is_dir(target):  # never pull in whole linked trees
                        self.add(path, what=what)
                        self._maybe_elf(target)
            elif member.isfile() or member.islnk():
                self._file(path, member)
                self._maybe_elf(path)

    def _maybe_elf(self, real: str) -> None:
        member = self.fs.members.get(real)
        if member is not None and elf.is_elf(self.fs.head(real, 4)):
            program = self.data_only and real not in self.programs
            if program and _is_program(self.fs.read(real), real):
                raise InvalidInput(
                    f"{real} is a program (an ELF executable), and a repository catalog's "
                    "files are data: list it as a tool's `paths` so that a policy grants it"
                )
            self.pending_elves.append(real)

    def executable(
        self,
        real: str,
        tool: str,
        executables: Mapping[str, str],
        names: Mapping[str, str] | None = None,
    ) -> None:
        """A tool's executable: an ELF (its whole closure, strictly) or a #! script whose
        interpreter (and the program `env` runs) is one of the job's tools."""
        head = self.fs.head(real, 256)
        if head.startswith(b"#!"):
            line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
            interp = line[0] if line else ""
            try:
                interp_real = self.fs.resolve(interp).path if interp.startswith("/") else ""
            except NotInImage:
                interp_real = ""
            if interp_real not in executables:
                wanted = posixpath.basename(interp) or "(nothing)"
                raise _Refused(
                    f"tool {tool}: {real} is a script run by {interp or '(nothing)'}, which "
                    f"is not one of the job's tools: add {wanted} to `tools:` too",
                    "interpreter",
                    wanted,
                )
            program = _env_program(line) if posixpath.basename(interp_real) == "env" else None
            if program is not None and names is not None and program not in names:
                raise _Refused(
                    f"tool {tool}: {real} is a script run by `{' '.join(line)}`, and "
                    f"{program} is not one of the job's tools: add {program} to `tools:` too",
                    "interpreter",
                    program,
                )
            return
        if not elf.is_elf(head):
            raise InvalidInput(f"tool {tool}: {real} is neither an ELF executable nor a script")
        self._elf(real, strict=True, what=f"tool {tool}")

    def finish(self) -> None:
        while self.pending_elves:
            path = self.pending_elves.pop()
            try:
                self._elf(path, strict=False, what=path)
            except InvalidInput as exc:
                self.plan.warnings.append(exc.message)
        if any(path == "/etc/ld.so.cache" for path in self.plan.entries):
            return
        if self.fs.get("/etc/ld.so.cache") is not None and self.elf_done:
            self.add("/etc/ld.so.cache", what="the loader cache")

    def _elf(self, real: str, *, strict: bool, what: str) -> None:
        queue: list[tuple[str, tuple[str, ...]]] = [(real, ())]
        while queue:
            path, rpaths = queue.pop()
            if path in self.elf_done:
                continue
            self.elf_done.add(path)
            info = elf.parse(self.fs.read(path), f"{self.fs.image}:{path}")
            if info.interpreter:
                interp = self.add(info.interpreter, what=f"{what}: PT_INTERP of {path}")
                queue.append((interp, ()))
            # DT_RPATH of the object and of its loaders applies unless it has DT_RUNPATH
            chain = (*self._expand(info.rpath, path, info), *rpaths)
            for needed in info.needed:
                lib = self._find(needed, path, info, () if info.runpath else chain)
                if lib is None:
                    message = (
                        f"{what}: library {needed} needed by {path} is not in image {self.fs.image}"
                    )
                    if strict:
                        raise InvalidInput(message)
                    self.plan.warnings.append(message)
                    continue
                queue.append((lib, chain))

    def _find(
        self, needed: str, path: str, info: elf.ElfInfo, rpaths: tuple[str, ...]
    ) -> str | None:
        if "/" in needed:
            candidates = [needed if needed.startswith("/") else posixpath.join("/", needed)]
        else:
            dirs = [*rpaths, *self._expand(info.runpath, path, info), *self._dirs(info)]
            candidates = [posixpath.join(d, needed) for d in dirs]
        for candidate in candidates:
            try:
                resolved = self.fs.resolve(candidate)
            except NotInImage:
                continue
            member = self.fs.members[resolved.path]
            if not (member.isfile() or member.islnk()):
                continue
            data = self.fs.read(resolved.path)
            if not elf.is_elf(data):
                continue
            try:
                if not info.compatible(elf.parse(data, resolved.path)):
                    continue  # the loader skips libraries of another class or machine
            except elf.ElfError:
                continue
            return self.add(candidate, what=path)
        return None

    def _expand(self, paths: tuple[str, ...], origin: str, info: elf.ElfInfo) -> list[str]:
        lib = "lib64" if info.bits == 64 else "lib"
        out = []
        for entry in paths:
            entry = entry.replace("${ORIGIN}", "$ORIGIN").replace(
                "$ORIGIN", posixpath.dirname(origin)
            )
            entry = entry.replace("${LIB}", lib).replace("$LIB", lib)
            entry = entry.replace("${PLATFORM}", info.machine_name)
            entry = entry.replace("$PLATFORM", info.machine_name)
            if entry.startswith("/"):
                out.append(posixpath.normpath(entry))
        return out

    def _dirs(self, info: elf.ElfInfo) -> list[str]:
        if self._search is None:
            self._search = self._ld_so_conf("/etc/ld.so.conf", depth=0)
        triplet = MULTIARCH.get(info.machine_name)
        defaults = [f"/lib/{triplet}", f"/usr/lib/{triplet}"] if triplet else []
        bits = ["/lib64", "/usr/lib64"] if info.bits == 64 else ["/lib32", "/usr/lib32"]
        defaults += [*bits, "/lib", "/usr/lib"]
        return [*self._search, *(d for d in defaults if d not in self._search)]

    def _ld_so_conf(self, path: str, depth: int) -> list[str]:
        if depth > 8:
            return []
        try:
            real = self.fs.resolve(path).path
            text = self.fs.read(real).decode("utf-8", "replace")
        except (NotInImage, KeyError):
            return []
        dirs: list[str] = []
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line or line.startswith("hwcap"):
                continue
            if line.startswith("include"):
                for pattern in line.split()[1:]:
                    if not pattern.startswith("/"):
                        pattern = posixpath.join(posixpath.dirname(path), pattern)
                    for included in self.fs.glob(pattern):
                        dirs += self._ld_so_conf(included, depth + 1)
            else:
                dirs += [d for d in line.replace(",", " ").split() if d.startswith("/")]
        return dirs


# -- the image ----------------------------------------------------------------------------


def _materialize(
    backend: Backend, fs: ImageFS, plan: Plan, source_id: str, tools: tuple[str, ...], cache: Path
) -> Toolset:
    generated = {
        "/etc/passwd": PASSWD.encode(),
        "/etc/group": GROUP.encode(),
    }
    entries = dict(plan.entries)
    entries.setdefault("/etc", ("dir", 0o755))
    entries["/tmp"] = ("dir", 0o1777)
    entries[WORKDIR] = ("dir", 0o777)
    for path in generated:
        entries[path] = ("file", 0o644)
    cache.mkdir(parents=True, exist_ok=True)
    files: list[dict[str, Any]] = []
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=".toolset-", suffix=".tar")
    try:
        with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w") as tar:
            for path in sorted(entries):
                kind, value = entries[path]
                info = tarfile.TarInfo(path.lstrip("/"))
                info.mtime = 0
                record: dict[str, Any] = {"path": path, "type": kind}
                if kind == "dir":
                    info.type, info.mode = tarfile.DIRTYPE, value
                    record["mode"] = f"{value:04o}"
                    tar.addfile(info)
                elif kind == "link":
                    info.type, info.linkname = tarfile.SYMTYPE, value
                    record["target"] = value
                    tar.addfile(info)
                else:
                    data = generated[path] if path in generated else fs.read(path)
                    info.mode, info.size = value, len(data)
                    record |= {
                        "mode": f"{value:04o}",
                        "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                    }
                    tar.addfile(info, io.BytesIO(data))
                files.append(record)
        manifest = {
            "format": FORMAT,
            "source_image": source_id,
            "tools": list(tools),
            "interpreter": plan.interpreter,
            "config": {"user": USER, "env": {"PATH": PATH}, "workdir": WORKDIR},
            "files": files,
        }
        digest = json_digest(manifest)
        tag = f"{REPOSITORY}:{digest}"
        config = ImageConfig(
            user=USER,
            env={"PATH": PATH},
            workdir=WORKDIR,
            labels={LABEL_DIGEST: digest, LABEL_SOURCE: source_id},
        )
        if backend.inspect_image(tag) is None:  # same manifest, same image: never twice
            with open(tmp, "rb") as layer:
                backend.import_image(layer, tag, config)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return Toolset(tag, digest, manifest, plan.interpreter, False, tuple(plan.warnings))


def _cached(backend: Backend, record_path: Path) -> Toolset | None:
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        manifest = record["manifest"]
        digest = record["digest"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if json_digest(manifest) != digest:
        return None  # a damaged cache record is rebuilt, never trusted
    tag = f"{REPOSITORY}:{digest}"
    if backend.inspect_image(tag) is None:
        return None
    warnings = tuple(str(w) for w in record.get("warnings", ()))
    return Toolset(tag, digest, manifest, bool(manifest["interpreter"]), True, warnings)


def _cache_record(toolset: Toolset) -> dict[str, Any]:
    return {
        "digest": toolset.manifest_digest,
        "manifest": toolset.manifest,
        "warnings": list(toolset.warnings),
    }


def _write_json(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(document, sort_keys=True).encode("utf-8"))


@contextlib.contextmanager
def _lock(key: str) -> Iterator[None]:
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        yield
