"""An engine in memory: `FakeBackend` implements the whole `Backend` protocol without a
container, for tests of what runs on top of it (as httpx ships `MockTransport`).

What a container does is scripted: when one starts, `script(spec)` says how it behaves,
`Exit` (prints `output`, writes `writes` into its workspace, exits with `code` after
`seconds`) or `Hang` (runs until it is killed). The script may also raise a `RunnerError`
(an engine failing at start), or block on the test's own synchronisation. Volumes hold
real tar contents: a snapshot what its tree holds, a workspace a copy of its lower
snapshot (`put_archive`, `put_workspace`, `get_archive` and `read_files` work on them; a
test marks one at its quota with `full_volumes`); images are records (`add_image`,
`build_image` reads the Dockerfile of its context tar, `import_image` ...).

Time is a `FakeClock`, shared with the executor through `RunState.clock`: it passes only
when someone waits. Waiting for a container lets it run to its exit, or lets the wait's
whole timeout pass at once, so deadlines and retry delays cost no real time; a hanging
container yields a millisecond of real time per wait so that another thread can cancel it.

Every call is recorded (`calls`), and so are the containers ever created (`created`), the
most that ran at once (`peak_running`) and what is left (`containers`, `volumes`,
`networks`). A container can be booted (`Boots.boot`: state "booted", its script not
run until `start`). runner-init's contract is kept: with `mount_problems` set, a started
container refuses as runner-init does (its line, exit `contract.REFUSED`) before its
script runs; with `egress_unavailable` set, `create_network` fails closed unless the host
may be reachable. What the fake cannot show (hardening, isolation, the kernel's mounts,
the firewall, real output streams) is proven by the Docker tests.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import posixpath
import tarfile
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from runner.engine.backend import (
    NOBODY,
    BuildSpec,
    ContainerSpec,
    EgressUnavailable,
    ImageConfig,
    ImageInfo,
    NotFound,
    check_spec,
)
from runner.engine.stepinit import contract
from runner.errors import Interrupted, InvalidInput, RunnerError

HANG_SLICE_S = 0.001  # real time a hanging container's wait yields to other threads
KILLED = 137  # 128 + SIGKILL, as an engine reports it


class FakeClock:
    """Monotonic time that passes only when someone waits (thread-safe). `waits` holds
    every `wait`'s timeout, in order: the retry delays of a run. There is one time for
    all threads: while jobs run at once, each one's waits move the others' time too, so
    exact times are for one job at a time."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.waits: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)

    def advance_to(self, moment: float) -> None:
        with self._lock:
            self._now = max(self._now, moment)

    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        with self._lock:
            self.waits.append(timeout_s)
        if event.is_set():
            return True
        self.advance(timeout_s)
        return event.is_set()


@dataclass(frozen=True)
class Exit:
    """A container that prints `output`, writes `writes` (container path -> content, under
    its workspace) and exits with `code` after `seconds` of clock time."""

    code: int = 0
    output: bytes | Sequence[bytes] = b""
    seconds: float = 0.0
    writes: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Hang:
    """A container that prints `output` and runs until it is killed."""

    output: bytes | Sequence[bytes] = b""


Behaviour = Exit | Hang
Script = Callable[[ContainerSpec], Behaviour]


def succeed(spec: ContainerSpec) -> Behaviour:
    """The default script: every container exits 0 at once, printing nothing."""
    return Exit()


@dataclass(frozen=True)
class Call:
    method: str
    args: tuple[object, ...]


class _Output:
    """A container's stdout+stderr: chunks appended while it runs, closed when it exits."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._closed = False
        self._changed = threading.Condition()

    def add(self, chunks: bytes | Sequence[bytes]) -> None:
        with self._changed:
            self._chunks += [chunks] if isinstance(chunks, bytes) else list(chunks)
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def __iter__(self) -> Iterator[bytes]:
        index = 0
        while True:
            with self._changed:
                while index >= len(self._chunks) and not self._closed:
                    self._changed.wait()
                if index >= len(self._chunks):
                    return
                chunk = self._chunks[index]
            index += 1
            yield chunk


@dataclass
class FakeContainer:
    id: str
    spec: ContainerSpec
    state: str = "created"  # created -> (booted ->) running -> exited
    behaviour: Behaviour | None = None
    ends_at: float | None = None  # clock time an `Exit` container exits
    code: int | None = None
    killed: bool = False
    removed: bool = False
    files: dict[str, bytes] = field(default_factory=dict)  # outside the workspace
    output: _Output = field(default_factory=_Output)
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class FakeVolume:
    name: str
    labels: dict[str, str]
    exec_allowed: bool
    owner: int
    files: dict[str, bytes] = field(default_factory=dict)  # workspace-relative path -> data
    dirs: set[str] = field(default_factory=set)
    lower: str | None = None  # the snapshot a workspace was made from
    quota_bytes: int | None = None


@dataclass
class FakeImage:
    info: ImageInfo
    rootfs: bytes = b""
    config: ImageConfig = field(default_factory=ImageConfig)


class FakeBackend:
    """`Backend` in memory; see the module docstring."""

    def __init__(self, script: Script = succeed, *, clock: FakeClock | None = None) -> None:
        self.script = script
        self.clock = clock if clock is not None else FakeClock()
        self.calls: list[Call] = []
        self.containers: dict[str, FakeContainer] = {}  # not removed yet
        self.created: list[FakeContainer] = []  # every container ever created
        self.volumes: dict[str, FakeVolume] = {}
        self.images: dict[str, FakeImage] = {}  # reference and id -> image
        self.pullable: dict[str, bytes] = {}  # what `pull_image` can fetch: ref -> rootfs
        self.mount_problems: list[str] = []  # what runner-init refuses a started one for
        self.networks: dict[str, dict[str, str]] = {}  # name -> labels
        self.egress_unavailable: str | None = None  # why the host cannot be kept out
        self.local_volumes = True  # False: `read_files` says None, as a remote engine does
        self.full_volumes: set[str] = set()  # workspaces `workspace_full` says are at quota
        self.peak_running = 0
        self.closed = False
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    # -- bookkeeping -----------------------------------------------------------------------

    def _record(self, method: str, *args: object) -> None:
        with self._lock:
            self.calls.append(Call(method, args))

    def called(self, method: str) -> list[tuple[object, ...]]:
        """The arguments of every call of `method`, in order."""
        with self._lock:
            return [call.args for call in self.calls if call.method == method]

    def running(self) -> list[FakeContainer]:
        with self._lock:
            return [c for c in self.containers.values() if c.state == "running"]

    def _container(self, cid: str) -> FakeContainer:
        with self._lock:
            container = self.containers.get(cid)
        if container is None:
            raise NotFound(f"no container {cid}")
        return container

    def close(self) -> None:
        self._record("close")
        self.closed = True

    # -- containers ------------------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> str:
        self._record("create", spec)
        check_spec(spec)
        if self.inspect_image(spec.image) is None:
            raise InvalidInput(f"creating a container of {spec.image}: image not found")
        with self._lock:
            if spec.workspace_volume is not None and spec.workspace_volume not in self.volumes:
                raise NotFound(f"no volume {spec.workspace_volume}")
            cid = f"fake{next(self._ids):04d}"
            container = FakeContainer(cid, spec)
            self.containers[cid] = container
            self.created.append(container)
        return cid

    def put_archive(self, cid: str, path: str, data: bytes | IO[bytes] | Iterable[bytes]) -> None:
        self._record("put_archive", cid, path)
        container = self._container(cid)
        raw = _whole(data)
        with self._lock:
            volume, rel = self._where(container, path)
            if volume is None:
                _extract(raw, rel, container.files, set())
            else:
                _extract(raw, rel, volume.files, volume.dirs)

    def get_archive(self, cid: str, path: str) -> Iterator[bytes]:
        self._record("get_archive", cid, path)
        container = self._container(cid)
        with self._lock:
            volume, rel = self._where(container, path)
            if volume is None:
                data = _archive(container.files, set(), rel)
            else:
                data = _archive(volume.files, volume.dirs, rel)
        if data is None:
            raise NotFound(f"{path} does not exist in container {cid}")
        yield data

    def _where(self, container: FakeContainer, path: str) -> tuple[FakeVolume | None, str]:
        """The volume holding container path `path` (None: the container's own files),
        and the path relative to that volume's root."""
        spec = container.spec
        clean = posixpath.normpath(path)
        mount = posixpath.normpath(spec.workspace_path)
        if spec.workspace_volume is not None and (clean == mount or clean.startswith(mount + "/")):
            rel = posixpath.relpath(clean, mount)
            return self.volumes[spec.workspace_volume], "" if rel == "." else rel
        return None, clean.lstrip("/")

    def boot(self, cid: str) -> bool:
        """runner-init started, waiting for its environment: the script runs at `start`."""
        self._record("boot", cid)
        container = self._container(cid)
        with self._lock:
            if container.state != "created":
                raise RunnerError(f"container {cid} was booted twice or after it started")
            container.state = "booted"
        return True

    def start(self, cid: str) -> None:
        self._record("start", cid)
        container = self._container(cid)
        with self._lock:
            if container.state not in ("created", "booted"):
                raise RunnerError(f"container {cid} was started twice")
            container.state = "running"
            self.peak_running = max(self.peak_running, len(self.running()))
        if self.mount_problems:  # runner-init refuses before the step runs
            line = contract.REFUSAL_PREFIX + "; ".join(self.mount_problems).encode() + b"\n"
            with self._lock:
                container.behaviour = Exit(contract.REFUSED, line)
                container.output.add(line)
                container.ends_at = self.clock.monotonic()
            return
        behaviour = self.script(container.spec)  # may block on the test's synchronisation
        with self._lock:
            container.behaviour = behaviour
            if container.state != "running":  # killed while the script ran
                return
            container.output.add(behaviour.output)
            if isinstance(behaviour, Exit):
                container.ends_at = self.clock.monotonic() + behaviour.seconds
                for path, content in behaviour.writes.items():
                    volume, rel = self._where(container, path)
                    target = container.files if volume is None else volume.files
                    target[rel] = content
                    if volume is not None:
                        volume.dirs.update(_parents(posixpath.dirname(rel)))

    def attach_output(self, cid: str) -> Iterator[bytes]:
        self._record("attach_output", cid)
        return iter(self._container(cid).output)

    def wait(self, cid: str, timeout_s: float | None) -> int | None:
        container = self._container(cid)
        if container.state in ("created", "booted"):
            raise RunnerError(f"waiting for container {cid}, which was never started")
        while container.behaviour is None and container.state == "running":
            container.done.wait(HANG_SLICE_S)  # its script still runs
        if container.state == "exited":
            return container.code
        behaviour = container.behaviour
        if isinstance(behaviour, Hang):
            if timeout_s is None:
                container.done.wait()
                return container.code
            container.done.wait(HANG_SLICE_S)  # a moment for another thread to kill it
            if container.state == "exited":
                return container.code
            self.clock.advance(timeout_s)
            return None
        assert isinstance(behaviour, Exit) and container.ends_at is not None
        if timeout_s is not None and container.ends_at - self.clock.monotonic() > timeout_s:
            self.clock.advance(timeout_s)
            return None
        self.clock.advance_to(container.ends_at)
        self._exit(container, behaviour.code)
        return container.code

    def _exit(self, container: FakeContainer, code: int) -> None:
        with self._lock:
            if container.state != "running":
                return
            container.state, container.code = "exited", code
        container.output.close()
        container.done.set()

    def kill(self, cid: str) -> None:
        self._record("kill", cid)
        with self._lock:
            container = self.containers.get(cid)
        if container is not None and container.state == "running":
            container.killed = True
            self._exit(container, KILLED)

    def remove(self, cid: str) -> None:
        self._record("remove", cid)
        with self._lock:
            container = self.containers.pop(cid, None)
        if container is None:
            return
        container.removed = True
        if container.state == "running":
            self._exit(container, KILLED)
        container.output.close()

    # -- volumes ---------------------------------------------------------------------------

    def create_snapshot(
        self,
        name: str,
        labels: Mapping[str, str],
        tree: Callable[[str], Iterable[bytes]],
        helper_labels: Mapping[str, str],
    ) -> None:
        self._record("create_snapshot", name, dict(labels))
        volume = FakeVolume(name, dict(labels), False, NOBODY)
        _extract(_whole(tree("")), "", volume.files, volume.dirs)
        with self._lock:
            self.volumes[name] = volume

    def create_volume(
        self,
        name: str,
        labels: Mapping[str, str],
        *,
        exec_allowed: bool,
        owner: int = NOBODY,
        lower: str | None = None,
        quota_bytes: int | None = None,
    ) -> None:
        self._record("create_volume", name, dict(labels), exec_allowed, owner, lower, quota_bytes)
        with self._lock:
            if lower is not None and lower not in self.volumes:
                raise NotFound(f"no volume {lower}")
            volume = self.volumes.setdefault(
                name, FakeVolume(name, dict(labels), exec_allowed, owner, lower=lower)
            )
            volume.quota_bytes = quota_bytes
            if lower is not None:  # copy-on-write, modelled as a copy
                volume.files.update(self.volumes[lower].files)
                volume.dirs.update(self.volumes[lower].dirs)

    def put_workspace(
        self, volume: str, path: str, data: Iterable[bytes], labels: Mapping[str, str]
    ) -> None:
        self._record("put_workspace", volume, path)
        with self._lock:
            if volume not in self.volumes:
                raise NotFound(f"no volume {volume}")
            target = self.volumes[volume]
            _extract(_whole(data), posixpath.normpath(path), target.files, target.dirs)

    def workspace_full(self, volume: str) -> bool:
        self._record("workspace_full", volume)
        return volume in self.full_volumes

    def read_files(
        self, volume: str, directory: str, names: Sequence[str], limit: int
    ) -> dict[str, bytes] | None:
        self._record("read_files", volume, directory, tuple(names))
        if not self.local_volumes:
            return None
        with self._lock:
            files = self.volumes[volume].files if volume in self.volumes else {}
            found: dict[str, bytes] = {}
            for name in names:
                data = files.get(posixpath.normpath(posixpath.join(directory, name)))
                if data is None:
                    continue
                if len(data) > limit:
                    raise InvalidInput(f"{directory}/{name} is larger than {limit} bytes")
                found[name] = data
        return found

    def remove_volume(self, name: str) -> None:
        self._record("remove_volume", name)
        with self._lock:
            users = [c.id for c in self.containers.values() if c.spec.workspace_volume == name]
            if users:
                raise RunnerError(f"removing volume {name}: in use by {', '.join(users)}")
            self.volumes.pop(name, None)

    def list_labelled(
        self, label: str
    ) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
        self._record("list_labelled", label)
        key, _, value = label.partition("=")

        def matches(labels: Mapping[str, str]) -> bool:
            return key in labels and (not value or labels[key] == value)

        with self._lock:
            containers = {
                c.id: dict(c.spec.labels)
                for c in self.containers.values()
                if matches(c.spec.labels)
            }
            volumes = {v.name: dict(v.labels) for v in self.volumes.values() if matches(v.labels)}
        return containers, volumes

    # -- networks --------------------------------------------------------------------------

    def create_network(self, name: str, labels: Mapping[str, str], *, host_reachable: bool) -> None:
        self._record("create_network", name, dict(labels), host_reachable)
        if self.egress_unavailable is not None and not host_reachable:
            raise EgressUnavailable(self.egress_unavailable, hint="the fake's hint")
        with self._lock:
            if name in self.networks:
                raise RunnerError(f"creating network {name}: it exists")
            self.networks[name] = dict(labels)

    def remove_network(self, name: str) -> None:
        self._record("remove_network", name)
        with self._lock:
            users = [c.id for c in self.containers.values() if c.spec.network == name]
            if users:
                raise RunnerError(f"removing network {name}: in use by {', '.join(users)}")
            self.networks.pop(name, None)

    def list_networks(self, label: str) -> dict[str, dict[str, str]]:
        self._record("list_networks", label)
        key, _, value = label.partition("=")
        with self._lock:
            return {
                name: dict(labels)
                for name, labels in self.networks.items()
                if key in labels and (not value or labels[key] == value)
            }

    # -- images ----------------------------------------------------------------------------

    def add_image(
        self, reference: str, rootfs: bytes = b"", labels: Mapping[str, str] | None = None
    ) -> ImageInfo:
        """An image the engine has (as if built or pulled before the test)."""
        return self._store(reference, rootfs, ImageConfig(labels=dict(labels or {})))

    def _store(self, reference: str, rootfs: bytes, config: ImageConfig) -> ImageInfo:
        digest = hashlib.sha256(rootfs + repr(config).encode()).hexdigest()  # by content
        info = ImageInfo(f"sha256:{digest}", len(rootfs), dict(config.labels))
        image = FakeImage(info, rootfs, config)
        with self._lock:
            self.images[reference] = image
            self.images[info.id] = image
        return info

    def inspect_image(self, image: str) -> ImageInfo | None:
        self._record("inspect_image", image)
        with self._lock:
            found = self.images.get(image)
        return found.info if found is not None else None

    def build_image(
        self,
        spec: BuildSpec,
        cancel: threading.Event,
        on_step: Callable[[str], None] | None = None,
    ) -> ImageInfo:
        """Announces a step per line of the Dockerfile (comments aside), in Docker's words."""
        self._record("build_image", spec)
        if cancel.is_set():
            raise Interrupted(f"the build of {spec.tag} was cancelled")
        with tarfile.open(spec.context) as context:
            handle = context.extractfile("Dockerfile")
            dockerfile = handle.read() if handle is not None else b""
        instructions = [
            line.strip()
            for line in dockerfile.decode("utf-8", "replace").splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        for number, instruction in enumerate(instructions, start=1):
            if on_step is not None:
                on_step(f"Step {number}/{len(instructions)} : {instruction}")
        return self._store(spec.tag, dockerfile, ImageConfig(labels=dict(spec.labels)))

    def pull_image(self, reference: str) -> ImageInfo:
        self._record("pull_image", reference)
        if reference not in self.pullable:
            raise NotFound(f"pulling {reference} failed: no such image in the fake registry")
        return self._store(reference, self.pullable[reference], ImageConfig())

    def import_image(self, rootfs: IO[bytes], tag: str, config: ImageConfig) -> None:
        self._record("import_image", tag, config)
        self._store(tag, rootfs.read(), config)

    def export_filesystem(self, image: str, out: IO[bytes]) -> None:
        self._record("export_filesystem", image)
        with self._lock:
            found = self.images.get(image)
        if found is None:
            raise NotFound(f"no image {image}")
        out.write(found.rootfs)

    def tag_image(self, image: str, tag: str) -> None:
        self._record("tag_image", image, tag)
        with self._lock:
            found = self.images.get(image)
            if found is None:
                raise NotFound(f"no image {image}")
            self.images[tag] = found

    def remove_image(self, image: str) -> None:
        self._record("remove_image", image)
        with self._lock:
            found = self.images.pop(image, None)
            if found is not None and image == found.info.id:  # by id: every tag goes
                for name in [n for n, i in self.images.items() if i is found]:
                    del self.images[name]


def _whole(data: bytes | IO[bytes] | Iterable[bytes]) -> bytes:
    """A tar given whole, as a file or in chunks, as bytes."""
    if isinstance(data, bytes):
        return data
    if hasattr(data, "read"):
        return bytes(data.read())
    return b"".join(data)


def _parents(directory: str) -> list[str]:
    parts = [p for p in directory.split("/") if p not in ("", ".")]
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _extract(raw: bytes, base: str, files: dict[str, bytes], dirs: set[str]) -> None:
    """The regular files and directories of the tar `raw`, under `base`."""
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for member in tar:
            path = posixpath.normpath(posixpath.join(base, member.name))
            if member.isdir():
                dirs.update(_parents(path))
            elif member.isfile():
                handle = tar.extractfile(member)
                files[path] = handle.read() if handle is not None else b""
                dirs.update(_parents(posixpath.dirname(path)))


def _archive(files: Mapping[str, bytes], dirs: Collection[str], rel: str) -> bytes | None:
    """A tar of `rel` as an engine's archive API returns it (members named from its
    basename), or None when there is nothing at `rel`."""
    top = posixpath.basename(rel) or "."
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if rel in files:
            _add_file(tar, top, files[rel])
        elif rel in dirs or rel == "":
            prefix = f"{rel}/" if rel else ""
            _add_dir(tar, top)
            for path in sorted(d for d in dirs if d.startswith(prefix)):
                _add_dir(tar, posixpath.join(top, path[len(prefix) :]))
            for path in sorted(f for f in files if f.startswith(prefix)):
                _add_file(tar, posixpath.join(top, path[len(prefix) :]), files[path])
        else:
            return None
    return buffer.getvalue()


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))
