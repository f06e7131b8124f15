"""`Backend` on a Kubernetes cluster: every step a pod, every job two claims and a keeper.

Shape (README "Kubernetes" says why): one pod per step attempt, so that `if:`,
`${{ steps.x.outputs }}`, retries, timeouts and `continue-on-error` are decided by runner
between steps exactly as on Docker, each step gets exactly its own requests and limits,
and its image and command are known only when it is its turn. The job's files live on
its workspace claim; a keeper pod holds the claims for the job's lifetime, pins the
job's pods to its node, and is where runner runs `tar` to copy files in and out.

A step (`create` .. `remove`):
- `create` delivers the image (`images.Delivery`), then creates the pod (`manifests.
  step_pod`). Its container starts runner-init, which waits for its environment.
- `attach_output` attaches to the container as soon as it runs (stdin, stdout, stderr),
  or fails clearly within a bounded time when the pod cannot start: an image that
  cannot be pulled, a container that cannot be created, a pod no node can take
  (`StartFailed`, with the kubelet's or scheduler's reason). The iterator it returns is
  the step's output, complete (runner-init runs nothing before runner sent the
  environment, so nothing is printed before the attach) and live.
- `start` sends runner-init the environment over that stream: no value is in the pod's
  manifest, so none is in etcd.
- `wait` returns the exit code the kubelet reports in the pod's status, never anything a
  stream said: the end of the output only says when to look.
- `kill`/`remove` delete the pod at once (grace 0).

Volumes: `create_snapshot` keeps the repository's tar on runner's side (a temporary
file, for this backend's lifetime; a cluster has no copy-on-write between claims), and
`create_volume(lower=...)` streams it into the job's fresh workspace claim, where `tar`
in the keeper extracts it (never the host). `put_workspace`, `get_archive` and
`read_files` are `tar` in the keeper too, through `pods/exec`, whose exit status must
arrive or the copy fails.

Objects: everything of run R carries the label `runner.run-id=R` and names R's
ConfigMap (runner-init's program, `manifests.run_owner`) as its owner, so deleting that
ConfigMap cascades. `close` deletes every object of the runs this backend served and
waits until they are gone; Ctrl-C does the same through `list_labelled`, and `runner gc
--backend kubernetes` after a crash. A deny-all NetworkPolicy selects every pod of the
run; a job granted egress gets an egress policy of its own (`create_network`). Whether
the cluster enforces NetworkPolicy at all is probed once (`probe_network`): if it does
not, a step that relies on having no network is refused (`PolicyDenied`) unless the
policy accepts an unenforcing cluster. `describe` and `placement` are what the ledger
records of the cluster and of each step.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import posixpath
import queue
import secrets
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from runner.durable import json_digest
from runner.engine.backend import (
    LABEL_ROLE,
    LABEL_RUN,
    LABEL_STATE,
    NOBODY,
    WORKSPACE_PATH,
    BuildSpec,
    ContainerSpec,
    ImageConfig,
    ImageInfo,
    NotFound,
    check_spec,
)
from runner.engine.kubernetes import manifests
from runner.engine.kubernetes.cluster import (
    Attached,
    Cluster,
    attach,
    run,
)
from runner.engine.kubernetes.images import Delivered, Delivery, ImageEngine, helper_image
from runner.engine.stepinit import contract
from runner.engine.stepinit.image import ensure_image
from runner.errors import InvalidInput, PolicyDenied, RunnerError

START_TIMEOUT_S = 300.0  # a pod that is not running by then failed to start
UNSCHEDULABLE_S = 120.0  # a pod no node can take, for this long, failed to start
GONE_TIMEOUT_S = 90.0
POLL_S = 0.1
STATUS_EVERY_S = 2.0  # while the output streams, the status is still read this often
DEFAULT_WORKSPACE_BYTES = 1 << 30
SCRATCH_BYTES = 256 << 20
TAR = "/usr/bin/tar"
RECORD = 10240  # GNU tar's record: the stream is padded to it, so tar needs no EOF
KUBELET_PORT = 10250
START_FAILURES = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


class StartFailed(RunnerError):
    """A pod that could not start: its image, its container or its placement."""


@dataclass(frozen=True)
class Settings:
    """How runner uses the cluster: from the command line and the policy."""

    storage_class: str | None = None  # the workspace and scratch claims (None: default)
    exec_storage_class: str | None = None  # the workspace of jobs granted exec
    accept_unenforced_network_policy: bool = False
    accept_executable_termination_log: bool = False
    state_dir: str = ""


@dataclass
class _Pod:
    env: bytes
    digest: str
    image: Delivered
    workspace: str | None
    attached: Attached | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    node: str = ""
    image_id: str = ""
    checked: float = 0.0


@dataclass
class _Workspace:
    claims: tuple[str, str]
    keeper: str
    node: str
    run_id: str


def _tar_record(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """`chunks` followed by zeros up to a whole tar record."""
    size = 0
    for chunk in chunks:
        size += len(chunk)
        yield chunk
    yield b"\0" * (RECORD - size % RECORD if size % RECORD else RECORD)


def _run_of(labels: Mapping[str, str]) -> str:
    run_id = labels.get(LABEL_RUN)
    if not run_id:
        raise RunnerError("every object runner creates in a cluster belongs to a run")
    return run_id


class KubernetesBackend:
    """The Kubernetes implementation of `runner.engine.backend.Backend`."""

    def __init__(
        self,
        cluster: Cluster,
        engine: ImageEngine | None,
        delivery: Delivery | None,
        settings: Settings,
    ) -> None:
        self.cluster = cluster
        self.engine = engine
        self.delivery = delivery
        self.settings = settings
        self._lock = threading.Lock()
        self._owners: dict[str, dict[str, str]] = {}
        self._owner_locks: dict[str, threading.Lock] = {}
        self._pods: dict[str, _Pod] = {}
        self._workspaces: dict[str, _Workspace] = {}
        self._snapshots: dict[str, tuple[Path, dict[str, str]]] = {}
        self._scratch = Path(tempfile.mkdtemp(prefix="runner-k8s-"))
        self._names = itertools.count(1)
        self._listed_owners: set[str] = set()  # run ConfigMaps `list_labelled` found
        self._runner_init: bytes | None = None
        self._helper: Delivered | None = None
        self.server_version = ""
        self.network_enforced: bool | None = None

    # -- readiness -------------------------------------------------------------------------

    def prepare(self, say: Callable[[str], None] | None = None) -> None:
        """runner-init's program (from its image, built if needed), the helper image on
        the cluster, the server's version, and whether it enforces NetworkPolicy."""
        self.server_version = self.cluster.version()
        engine = self._images()
        image = ensure_image(engine, say)
        self._runner_init = _program_of(engine, image)
        self._helper = self._delivery().deliver(helper_image(engine))
        self.network_enforced = self.probe_network()

    def _images(self) -> ImageEngine:
        if self.engine is None:
            raise RunnerError("this use of the Kubernetes backend has no image engine")
        return self.engine

    def _delivery(self) -> Delivery:
        if self.delivery is None:
            raise RunnerError("this use of the Kubernetes backend delivers no images")
        return self.delivery

    def _program(self) -> bytes:
        if self._runner_init is None:
            self.prepare()
        assert self._runner_init is not None
        return self._runner_init

    def _helper_image(self) -> Delivered:
        if self._helper is None:
            self._helper = self._delivery().deliver(helper_image(self._images()))
        return self._helper

    def describe(self) -> dict[str, str]:
        """What the ledger records of the cluster this run used."""
        enforced = self.network_enforced
        return {
            "backend": "kubernetes",
            "server": self.cluster.server,
            "server_version": self.server_version,
            "namespace": self.cluster.namespace,
            "images": self.delivery.mode if self.delivery is not None else "",
            "network_policy": (
                "enforced"
                if enforced
                else "not enforced: accepted by the policy"
                if self.settings.accept_unenforced_network_policy
                else "not enforced: steps without network are refused"
            ),
            "termination_log": (
                "exempted from the mount check by the policy"
                if self.settings.accept_executable_termination_log
                else "checked"
            ),
        }

    def placement(self, cid: str) -> dict[str, str] | None:
        """Where and how step `cid` ran: its node, pod, pod spec digest and image."""
        with self._lock:
            pod = self._pods.get(cid)
        if pod is None:
            return None
        if not pod.node:
            with contextlib.suppress(RunnerError):
                self._status(cid, pod)
        return {
            "backend": "kubernetes",
            "pod": cid,
            "node": pod.node,
            "pod_spec_digest": pod.digest,
            "image": pod.image.reference,
            "image_digest": pod.image.digest,
            "image_id": pod.image_id,
        }

    def close(self) -> None:
        """Delete every object of the runs served, wait until they are gone, then let go
        of the cluster and the image engine."""
        try:
            for run_id in list(self._owners):
                self.delete_run(run_id)
        finally:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self.cluster.close()
            if self.engine is not None:
                self.engine.close()

    # -- the run's owner -------------------------------------------------------------------

    def _owner(self, run_id: str, labels: Mapping[str, str]) -> dict[str, str]:
        with self._lock:
            known = self._owners.get(run_id)
            lock = self._owner_locks.setdefault(run_id, threading.Lock())
        if known is not None:
            return known
        with lock:
            with self._lock:
                known = self._owners.get(run_id)
            if known is not None:
                return known
            base = {LABEL_RUN: run_id}
            if LABEL_STATE in labels:
                base[LABEL_STATE] = labels[LABEL_STATE]
            name = f"runner-{run_id}"
            body = manifests.run_owner(name, base, self._program())
            owner = {"name": name, "uid": self.cluster.create("configmap", body)}
            deny = manifests.deny_all(f"{name}-deny", base, owner, {LABEL_RUN: run_id})
            self.cluster.create("policy", deny)
            with self._lock:
                self._owners[run_id] = owner
            return owner

    def delete_run(self, run_id: str) -> None:
        """Delete every object of `run_id` and wait (bounded) until none is left."""
        selector = f"{LABEL_RUN}={run_id}"
        self._delete_labelled(selector)
        deadline = time.monotonic() + GONE_TIMEOUT_S
        while time.monotonic() < deadline:
            pods, volumes = self.list_labelled(selector)
            if not pods and not volumes and not self.list_networks(selector):
                break
            time.sleep(0.5)
        with self._lock:
            self._owners.pop(run_id, None)

    def _delete_labelled(self, selector: str) -> None:
        for kind in ("pod", "claim", "policy", "configmap"):
            for name, _ in self.cluster.listed(kind, selector):
                self.cluster.delete(kind, name)

    # -- containers ------------------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> str:
        if spec.network is None:
            self._require_isolation()
        name, manifest, delivered = self.pod_manifest(spec)
        pod = _Pod(
            contract.encode_env(spec.env), json_digest(manifest), delivered, spec.workspace_volume
        )
        self.cluster.create("pod", manifest)
        with self._lock:
            self._pods[name] = pod
        return name

    def pod_manifest(self, spec: ContainerSpec) -> tuple[str, dict[str, Any], Delivered]:
        """(name, manifest, image) of the pod `create` makes for `spec`: its image
        delivered, its run's owner made, its workspace's claims and node (the
        benchmark's bare pods are these manifests too)."""
        check_spec(spec)
        run_id = _run_of(spec.labels)
        owner = self._owner(run_id, spec.labels)
        delivered = self._delivery().deliver(spec.image)
        workspace = None
        if spec.workspace_volume is not None:
            with self._lock:
                workspace = self._workspaces.get(spec.workspace_volume)
            if workspace is None:
                raise NotFound(f"workspace {spec.workspace_volume} does not exist")
        prefix = spec.workspace_volume or f"runner-{run_id}"
        name = f"{prefix}-{next(self._names)}-{secrets.token_hex(2)}"
        exempt = (
            [manifests.TERMINATION_LOG] if self.settings.accept_executable_termination_log else []
        )
        manifest = manifests.step_pod(
            name,
            spec,
            image=delivered.reference,
            pull_policy=delivered.pull_policy,
            owner=owner,
            workspace=workspace.claims if workspace is not None else None,
            node=workspace.node if workspace is not None else None,
            exec_mounts=exempt,
        )
        return name, manifest, delivered

    def _require_isolation(self) -> None:
        if self.network_enforced is None:
            self.network_enforced = self.probe_network()
        if self.network_enforced or self.settings.accept_unenforced_network_policy:
            return
        raise PolicyDenied(
            f"refused: this step relies on having no network, but the cluster "
            f"({self.cluster.server}) does not enforce NetworkPolicy (runner probed it), "
            "so its deny-all policy would not hold",
            hint="run on a cluster whose network plugin enforces NetworkPolicy, or accept "
            "an unenforcing cluster in the policy (kubernetes: {accept-unenforced-network-"
            "policy: true}, docs/policy.md)",
        )

    def _pod_state(self, cid: str) -> _Pod:
        with self._lock:
            pod = self._pods.get(cid)
        if pod is None:
            raise NotFound(f"pod {cid} is not a step of this run")
        return pod

    def attach_output(self, cid: str) -> Iterator[bytes]:
        pod = self._pod_state(cid)
        pod.attached = self._attach_when_running(cid, pod)
        if pod.attached is None:
            pod.ended.set()
            return iter(())
        return self._output(pod, pod.attached)

    def _output(self, pod: _Pod, attached: Attached) -> Iterator[bytes]:
        try:
            yield from attached.output()
        finally:
            pod.ended.set()

    def _attach_when_running(self, cid: str, pod: _Pod) -> Attached | None:
        """The attach stream once the container runs; None when it already ended;
        StartFailed when it cannot start (see the module docstring)."""
        started = time.monotonic()
        unschedulable_since: float | None = None
        checked = 0.0
        while True:
            now = time.monotonic()
            if now - checked >= 0.5:
                checked = now
                found = self._read_pod(cid)
                state = _container_state(found)
                reason = _start_failure(found, state)
                if reason is not None:
                    raise StartFailed(f"the pod of this step could not start: {reason}")
                if state is not None and state.terminated is not None:
                    return None
                if _unschedulable(found) is not None:
                    unschedulable_since = unschedulable_since or now
                    if now - unschedulable_since > UNSCHEDULABLE_S:
                        raise StartFailed(
                            "no node can run the pod of this step: " + str(_unschedulable(found))
                        )
                else:
                    unschedulable_since = None
                running = state is not None and state.running is not None
            else:
                running = True
            if now - started > START_TIMEOUT_S:
                raise StartFailed(
                    f"the pod of this step was not running after {START_TIMEOUT_S:.0f}s"
                )
            if running:
                try:
                    return attach(self.cluster, cid, manifests.STEP_CONTAINER)
                except NotFound:
                    raise
                except RunnerError:
                    pass
            time.sleep(POLL_S)

    def start(self, cid: str) -> None:
        pod = self._pod_state(cid)
        if pod.attached is None and not pod.ended.is_set():
            output = self.attach_output(cid)
            threading.Thread(target=_drain, args=(output,), daemon=True).start()
        if pod.attached is not None:
            pod.attached.send(pod.env)

    def wait(self, cid: str, timeout_s: float | None) -> int | None:
        pod = self._pod_state(cid)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            streaming = pod.attached is not None and not pod.ended.is_set()
            if streaming and time.monotonic() - pod.checked < STATUS_EVERY_S:
                step = STATUS_EVERY_S if left is None else min(left, STATUS_EVERY_S)
                pod.ended.wait(step)
                continue
            code = self._status(cid, pod)
            if code is not None:
                return code
            time.sleep(POLL_S if left is None else max(0.0, min(POLL_S, left)))

    def _status(self, cid: str, pod: _Pod) -> int | None:
        """The container's exit code from the pod's status, None while it runs."""
        pod.checked = time.monotonic()
        found = self._read_pod(cid)
        pod.node = str(found.spec.node_name or "")
        statuses = found.status.container_statuses or []
        if statuses:
            pod.image_id = str(statuses[0].image_id or "")
        state = _container_state(found)
        if state is not None and state.terminated is not None:
            return int(state.terminated.exit_code)
        if found.status.phase in ("Failed", "Succeeded"):
            raise RunnerError(
                f"the pod of this step ended without an exit code: "
                f"{found.status.reason or found.status.phase} {found.status.message or ''}".strip()
            )
        reason = _start_failure(found, state)
        if reason is not None:
            raise StartFailed(f"the pod of this step could not start: {reason}")
        return None

    def _read_pod(self, cid: str) -> Any:
        return self.cluster.pod(cid)

    def kill(self, cid: str) -> None:
        self._delete_pod(cid)

    def remove(self, cid: str) -> None:
        with self._lock:
            pod = self._pods.pop(cid, None)
        if pod is not None and pod.attached is not None:
            pod.attached.close()
        self._delete_pod(cid)

    def _delete_pod(self, name: str) -> None:
        self.cluster.delete("pod", name)

    # -- files, through the keeper ---------------------------------------------------------

    def _workspace_of(self, cid: str) -> _Workspace:
        pod = self._pod_state(cid)
        with self._lock:
            workspace = self._workspaces.get(pod.workspace or "")
        if workspace is None:
            raise NotFound(f"pod {cid} has no workspace")
        return workspace

    def _inside(self, path: str) -> str:
        """`path` of a step as a path of the keeper (only the workspace is reachable)."""
        clean = posixpath.normpath(path)
        if clean != WORKSPACE_PATH and not clean.startswith(WORKSPACE_PATH + "/"):
            raise NotFound(f"{path} is not in the workspace")
        return manifests.KEEPER_WORKSPACE + clean[len(WORKSPACE_PATH) :]

    def put_archive(self, cid: str, path: str, data: bytes | IO[bytes] | Iterable[bytes]) -> None:
        self._extract(self._workspace_of(cid), self._inside(path), _chunks(data))

    def get_archive(self, cid: str, path: str) -> Iterator[bytes]:
        workspace = self._workspace_of(cid)
        inside = self._inside(path)
        parent, name = posixpath.split(inside.rstrip("/") or "/")
        return self._archive(workspace, parent, [name or "."], what=path)

    def _extract(self, workspace: _Workspace, directory: str, data: Iterable[bytes]) -> None:
        command = [TAR, "-x", "-f", "-", "-C", directory, "--no-same-owner", "--no-overwrite-dir"]
        done = run(self.cluster, workspace.keeper, "keeper", command, stdin=_tar_record(data))
        if done.code != 0:
            raise RunnerError(
                f"cannot copy files into {directory} of the workspace: "
                + done.stderr.decode("utf-8", "replace").strip()[-1000:]
            )

    def _archive(
        self, workspace: _Workspace, directory: str, names: Sequence[str], *, what: str
    ) -> Iterator[bytes]:
        """The tar `tar -c` makes of `names` in `directory` of the keeper, streamed as it
        comes (a bounded queue between the stream's thread and the reader)."""
        chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=16)
        stop = threading.Event()

        def out(chunk: bytes) -> None:
            if stop.is_set():
                raise _Stopped()
            chunks.put(chunk)

        def produce() -> None:
            try:
                command = [TAR, "-c", "-f", "-", "-C", directory, "--", *names]
                done = run(self.cluster, workspace.keeper, "keeper", command, out=out)
                if done.code != 0:
                    text = done.stderr.decode("utf-8", "replace")
                    if "No such file" in text or "Cannot stat" in text:
                        chunks.put(NotFound(f"{what} does not exist in the workspace"))
                    else:
                        chunks.put(RunnerError(f"cannot copy {what} out: {text.strip()[-1000:]}"))
                chunks.put(None)
            except _Stopped:
                chunks.put(None)
            except BaseException as exc:
                chunks.put(exc)

        worker = threading.Thread(target=produce, daemon=True)
        worker.start()
        try:
            while True:
                item = chunks.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            with contextlib.suppress(queue.Empty):
                while True:
                    chunks.get_nowait()

    # -- volumes ---------------------------------------------------------------------------

    def create_snapshot(
        self,
        name: str,
        labels: Mapping[str, str],
        tree: Callable[[str], Iterable[bytes]],
        helper_labels: Mapping[str, str],
    ) -> None:
        path = self._scratch / f"{name}.tar"
        try:
            with path.open("wb") as out:
                for chunk in tree(""):
                    out.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        with self._lock:
            self._snapshots[name] = (path, {**labels, LABEL_ROLE: "snapshot"})

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
        run_id = _run_of(labels)
        run_owner = self._owner(run_id, labels)
        claims = (name, f"{name}-tmp")
        settings = self.settings
        workspace_class = settings.exec_storage_class if exec_allowed else settings.storage_class
        for claim_name, storage_class, size, role in (
            (claims[0], workspace_class, quota_bytes or DEFAULT_WORKSPACE_BYTES, "workspace"),
            (claims[1], settings.storage_class, SCRATCH_BYTES, "scratch"),
        ):
            body = manifests.claim(
                claim_name,
                labels,
                run_owner,
                storage_class=storage_class,
                size_bytes=size,
                role=role,
            )
            self.cluster.create("claim", body)
        helper = self._helper_image()
        keeper = f"{name}-keeper"
        body = manifests.keeper_pod(
            keeper,
            labels,
            run_owner,
            image=helper.reference,
            pull_policy=helper.pull_policy,
            uid=owner,
            claims=claims,
        )
        self.cluster.create("pod", body)
        node = self._await_running(keeper, claims)
        workspace = _Workspace(claims, keeper, node, run_id)
        with self._lock:
            self._workspaces[name] = workspace
            snapshot = self._snapshots.get(lower) if lower is not None else None
        if lower is not None and snapshot is None:
            raise NotFound(f"snapshot {lower} does not exist")
        if snapshot is not None:
            with snapshot[0].open("rb") as source:
                self._extract(workspace, manifests.KEEPER_WORKSPACE, _file_chunks(source))

    def _await_running(self, pod: str, claims: Sequence[str]) -> str:
        """The node of `pod` once it runs; StartFailed with the reason when it cannot."""
        started = time.monotonic()
        while True:
            found = self._read_pod(pod)
            state = _container_state(found)
            reason = _start_failure(found, state)
            if reason is None and state is not None and state.terminated is not None:
                reason = f"it ended ({state.terminated.reason})"
            if reason is not None:
                raise StartFailed(f"the keeper pod of a workspace could not start: {reason}")
            if state is not None and state.running is not None:
                return str(found.spec.node_name)
            waited = time.monotonic() - started
            pending = _unschedulable(found)
            if (pending is not None and waited > UNSCHEDULABLE_S) or waited > START_TIMEOUT_S:
                raise StartFailed(
                    f"the workspace of this job could not be placed: {pending or 'no node'}",
                    hint=f"its claims ({', '.join(claims)}) need a storage class that can "
                    "provide them (--storage-class; README: Kubernetes, storage)",
                )
            time.sleep(0.2)

    def put_workspace(
        self, volume: str, path: str, data: Iterable[bytes], labels: Mapping[str, str]
    ) -> None:
        with self._lock:
            workspace = self._workspaces.get(volume)
        if workspace is None:
            raise NotFound(f"workspace {volume} does not exist")
        directory = posixpath.normpath(posixpath.join(manifests.KEEPER_WORKSPACE, path))
        self._extract(workspace, directory, data)

    def workspace_full(self, volume: str) -> bool:
        return False  # a claim's size is the storage's to enforce; runner cannot tell

    def read_files(
        self, volume: str, directory: str, names: Sequence[str], limit: int
    ) -> dict[str, bytes] | None:
        with self._lock:
            workspace = self._workspaces.get(volume)
        if workspace is None:
            return None
        inside = posixpath.normpath(posixpath.join(manifests.KEEPER_WORKSPACE, directory))
        listed = [n for n in names if "/" not in n]
        command = [TAR, "-c", "-f", "-", "--ignore-failed-read", "-C", inside, "--", *listed]
        received = bytearray()
        bound = limit * max(1, len(listed)) + 64 * 1024

        def out(chunk: bytes) -> None:
            received.extend(chunk)
            if len(received) > bound:
                raise InvalidInput(f"{directory}: the step's files are larger than {limit} bytes")

        done = run(self.cluster, workspace.keeper, "keeper", command, out=out)
        if done.code != 0 and "Cannot open" in done.stderr.decode("utf-8", "replace"):
            return {}
        found: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(bytes(received)), mode="r:") as tar:
            for member in tar:
                if member.name not in listed:
                    continue
                if not member.isfile():
                    raise InvalidInput(f"{directory}/{member.name} is not a regular file")
                if member.size > limit:
                    raise InvalidInput(f"{directory}/{member.name} is larger than {limit} bytes")
                handle = tar.extractfile(member)
                found[member.name] = handle.read() if handle is not None else b""
        return found

    def remove_volume(self, name: str) -> None:
        with self._lock:
            snapshot = self._snapshots.pop(name, None)
            workspace = self._workspaces.pop(name, None)
        if snapshot is not None:
            snapshot[0].unlink(missing_ok=True)
            return
        keeper = workspace.keeper if workspace is not None else f"{name}-keeper"
        claims = workspace.claims if workspace is not None else (name, f"{name}-tmp")
        if self._is_owner(name):
            self.cluster.delete("configmap", name)
            return
        self.cluster.delete("pod", keeper)
        for claim_name in claims:
            self.cluster.delete("claim", claim_name)

    def _is_owner(self, name: str) -> bool:
        with self._lock:
            return name in self._listed_owners or any(
                owner["name"] == name for owner in self._owners.values()
            )

    def list_labelled(
        self, label: str
    ) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
        key, _, value = label.partition("=")
        selector = label if key in manifests.LABELS else LABEL_RUN

        def matches(labels: Mapping[str, str]) -> bool:
            return key in labels and (not value or labels[key] == value)

        containers: dict[str, dict[str, str]] = {}
        for name, metadata in self.cluster.listed("pod", selector):
            labels = manifests.merged(metadata)
            if matches(labels) and labels.get(LABEL_ROLE) != "keeper":
                containers[name] = labels
        volumes: dict[str, dict[str, str]] = {}
        for name, metadata in self.cluster.listed("claim", selector):
            labels = manifests.merged(metadata)
            if matches(labels) and labels.get(LABEL_ROLE) == "workspace":
                volumes[name] = labels
        for name, metadata in self.cluster.listed("configmap", selector):
            labels = manifests.merged(metadata)
            if matches(labels):
                volumes[name] = labels
                with self._lock:
                    self._listed_owners.add(name)
        with self._lock:
            for name, (_, labels) in self._snapshots.items():
                if matches(labels):
                    volumes[name] = dict(labels)
        return containers, volumes

    # -- networks --------------------------------------------------------------------------

    def create_network(self, name: str, labels: Mapping[str, str], *, host_reachable: bool) -> None:
        owner = self._owner(_run_of(labels), labels)
        body = manifests.egress(name, labels, owner, host_reachable=host_reachable)
        self.cluster.create("policy", body)

    def remove_network(self, name: str) -> None:
        self.cluster.delete("policy", name)

    def list_networks(self, label: str) -> dict[str, dict[str, str]]:
        key, _, value = label.partition("=")
        selector = label if key in manifests.LABELS else LABEL_RUN
        result: dict[str, dict[str, str]] = {}
        for name, metadata in self.cluster.listed("policy", selector):
            labels = manifests.merged(metadata)
            if key in labels and (not value or labels[key] == value):
                result[name] = labels
        return result

    # -- the network probe -----------------------------------------------------------------

    def probe_network(self) -> bool:
        """Whether the cluster enforces NetworkPolicy: a pod under a deny-all policy must
        fail to reach its node's kubelet port while a pod beside it, under none, reaches
        it. Anything else (both fail, both reach) counts as not enforced."""
        probe_id = "probe-" + secrets.token_hex(4)
        labels = {LABEL_RUN: probe_id}
        if self.settings.state_dir:
            labels[LABEL_STATE] = self.settings.state_dir
        owner = self._owner(probe_id, labels)
        helper = self._helper_image()
        try:
            deny = manifests.deny_all(
                f"runner-{probe_id}-probe",
                labels,
                owner,
                {LABEL_ROLE: "probe-denied", LABEL_RUN: probe_id},
            )
            self.cluster.create("policy", deny)
            names = {}
            for role in ("probe-denied", "probe-control"):
                name = f"runner-{probe_id}-{role}"
                body = manifests.probe_pod(
                    name,
                    {**labels, LABEL_ROLE: role},
                    owner,
                    image=helper.reference,
                    pull_policy=helper.pull_policy,
                    uid=NOBODY,
                    port=KUBELET_PORT,
                )
                self.cluster.create("pod", body)
                names[role] = name
            codes = {role: self._exit_of(name) for role, name in names.items()}
        finally:
            self.delete_run(probe_id)
        return codes["probe-denied"] != 0 and codes["probe-control"] == 0

    def _exit_of(self, name: str) -> int | None:
        started = time.monotonic()
        while time.monotonic() - started < 60:
            found = self._read_pod(name)
            state = _container_state(found)
            if state is not None and state.terminated is not None:
                return int(state.terminated.exit_code)
            if _start_failure(found, state) is not None:
                return None
            time.sleep(0.2)
        return None

    # -- images (the local engine's) -------------------------------------------------------

    def inspect_image(self, image: str) -> ImageInfo | None:
        return self._images().inspect_image(image)

    def build_image(self, spec: BuildSpec, cancel: threading.Event) -> ImageInfo:
        return self._images().build_image(spec, cancel)

    def pull_image(self, reference: str) -> ImageInfo:
        return self._images().pull_image(reference)

    def import_image(self, rootfs: IO[bytes], tag: str, config: ImageConfig) -> None:
        self._images().import_image(rootfs, tag, config)

    def export_filesystem(self, image: str, out: IO[bytes]) -> None:
        self._images().export_filesystem(image, out)

    def tag_image(self, image: str, tag: str) -> None:
        self._images().tag_image(image, tag)

    def remove_image(self, image: str) -> None:
        self._images().remove_image(image)


class _Stopped(Exception):
    """The reader of an archive went away: stop the stream."""


def _drain(output: Iterator[bytes]) -> None:
    with contextlib.suppress(RunnerError):
        for _ in output:
            pass


def _chunks(data: bytes | IO[bytes] | Iterable[bytes]) -> Iterable[bytes]:
    if isinstance(data, bytes):
        return [data]
    if hasattr(data, "read"):
        return _file_chunks(data)  # type: ignore[arg-type]
    return data


def _file_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    return iter(lambda: handle.read(1 << 20), b"")


def _container_state(pod: Any) -> Any:
    statuses = pod.status.container_statuses or []
    return statuses[0].state if statuses else None


def _start_failure(pod: Any, state: Any) -> str | None:
    """Why a pod cannot start, from its container's waiting state, or None."""
    waiting = state.waiting if state is not None else None
    if waiting is not None and waiting.reason in START_FAILURES:
        return f"{waiting.reason}: {waiting.message or ''}".strip().rstrip(":")
    if pod.status.phase == "Failed" and (state is None or state.terminated is None):
        return f"{pod.status.reason or 'Failed'}: {pod.status.message or ''}".strip().rstrip(":")
    return None


def _unschedulable(pod: Any) -> str | None:
    for condition in pod.status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return str(condition.message or condition.reason)
    return None


def _program_of(engine: ImageEngine, image: str) -> bytes:
    """runner-init's program, read out of its image's filesystem."""
    with tempfile.TemporaryFile() as exported:
        engine.export_filesystem(image, exported)
        exported.seek(0)
        with tarfile.open(fileobj=exported, mode="r:") as tar:
            wanted = contract.PATH.lstrip("/")
            for member in tar:
                if posixpath.normpath(member.name).lstrip("/") == wanted and member.isfile():
                    handle = tar.extractfile(member)
                    if handle is not None:
                        return handle.read()
    raise RunnerError(f"the runner-init image {image} holds no {contract.PATH}")
