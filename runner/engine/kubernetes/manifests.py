"""Every object runner creates in a cluster, as data (SPEC 6 and 10 as pod spec).

Pure functions from engine-neutral values (`ContainerSpec`, limits, names) to the
manifests the API server receives, so that tests read the hardening as data before they
prove it inside a real pod. Nothing here talks to a cluster.

A step is a pod of one container (`step_pod`): runner-init (`runner.engine.stepinit`) is
its entrypoint, from the run's ConfigMap mounted read-only (`run_owner`: the program as
binary data, and the object every other object of the run names as its owner, so that
deleting it cascades). The step's environment is not in the manifest: runner-init reads
it from stdin, which runner writes over the attach stream, so no environment value (and
no secret) is ever stored in etcd. The pod runs as the policy's user with no
privilege escalation, every capability dropped, a read-only root, the RuntimeDefault
seccomp profile, no service-account token, no service links, no host namespace and no
host path, the policy's CPU and memory as requests and limits, and a deadline of its own
(`activeDeadlineSeconds`, after runner-init's).

Volumes: a job has two PersistentVolumeClaims (`claim`): its workspace at `/workspace`
and its scratch space at `/tmp`, each mounted whole, because a `subPath` mount does not
keep the volume's `noexec` (the kubelet bind-mounts it afresh) and an `emptyDir` cannot be
mounted `noexec` at all. Their storage classes mount them `noexec,nosuid,nodev` (the
workspace's class without `noexec` when the job is granted exec); runner-init's mount
check refuses a step whose mounts say otherwise, whatever the class promised. A keeper
pod (`keeper_pod`) holds both claims for the job's lifetime: runner copies files in and
out of the workspace by running `tar` in it (never on the host), and it pins the job's
steps to its node (`node`).

Network: `deny_all` selects every pod of the run (no ingress, no egress); `egress` adds
egress for the pods of one granted job, to anywhere but the private, link-local and
loopback ranges unless the policy accepts the host being reachable.

Names and labels: Kubernetes label values are at most 63 characters of `[A-Za-z0-9_.-]`,
so only the run id, the role and the egress network are labels (`LABELS`, what selectors
use); the state directory, the job key and the rest are annotations, which runner reads
back merged with the labels (`merged`).
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from runner.engine.backend import LABEL_ROLE, LABEL_RUN, ContainerSpec, check_spec
from runner.engine.stepinit import contract

LABEL_NETWORK = "runner.network"  # the egress NetworkPolicy of a granted job selects it
LABELS = frozenset({LABEL_RUN, LABEL_ROLE, LABEL_NETWORK})
INIT_KEY = "runner-init"
INIT_VOLUME = "runner-init"
WORKSPACE_VOLUME = "workspace"
SCRATCH_VOLUME = "scratch"
SCRATCH_PATH = "/tmp"
KEEPER_WORKSPACE = "/workspace"
TERMINATION_LOG = "/dev/termination-log"
STEP_CONTAINER = "step"
GRACE_S = 1  # terminationGracePeriodSeconds: runner kills steps, it never asks them
KEEPER_CPU = "10m"  # it sleeps; runner's tar runs in it now and then
# A step's CPU limit is the policy's `cpus`, as on Docker, where it reserves nothing; its
# request (what the scheduler reserves) is this fraction of it, so a node runs as many
# steps at once as Docker would. Memory is requested whole: it cannot be overcommitted.
CPU_RESERVED = 0.01
KEEPER_MEMORY = 64 * 1024 * 1024  # tar's, for the copies it makes
DEFAULT_DEADLINE_S = 6 * 3600  # a pod runner did not give a deadline dies after this
PRIVATE_RANGES = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "127.0.0.0/8",
)
_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def split_labels(labels: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations): the keys selectors use, when their values are valid label
    values, and everything else."""
    kept: dict[str, str] = {}
    annotations: dict[str, str] = {}
    for key, value in labels.items():
        if key in LABELS and len(value) <= 63 and _VALUE.fullmatch(value):
            kept[key] = value
        else:
            annotations[key] = value
    return kept, annotations


def merged(metadata: Mapping[str, Any]) -> dict[str, str]:
    """An object's runner labels: its labels and annotations together."""
    found = dict(metadata.get("annotations") or {})
    found.update(metadata.get("labels") or {})
    return {k: v for k, v in found.items() if k.startswith("runner.")}


def _pod(
    name: str,
    labels: Mapping[str, str],
    owner: Mapping[str, str],
    role: str,
    spec: dict[str, Any],
    volumes: list[dict[str, Any]],
) -> dict[str, Any]:
    """A Pod of `role` (step, keeper, probe) with `spec` and its `volumes`."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(name, labels, owner, role),
        "spec": {**spec, "volumes": volumes},
    }


def _metadata(
    name: str, labels: Mapping[str, str], owner: Mapping[str, str] | None, role: str
) -> dict[str, Any]:
    kept, annotations = split_labels({**labels, LABEL_ROLE: labels.get(LABEL_ROLE, role)})
    metadata: dict[str, Any] = {"name": name, "labels": kept, "annotations": annotations}
    if owner is not None:
        metadata["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": owner["name"], "uid": owner["uid"]}
        ]
    return metadata


def run_owner(name: str, labels: Mapping[str, str], runner_init: bytes) -> dict[str, Any]:
    """The run's ConfigMap: runner-init for its steps, and the owner of its objects."""
    metadata = _metadata(name, labels, None, "run")
    binary = {INIT_KEY: base64.b64encode(runner_init).decode("ascii")}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "binaryData": binary}


def claim(
    name: str,
    labels: Mapping[str, str],
    owner: Mapping[str, str],
    *,
    storage_class: str | None,
    size_bytes: int,
    role: str,
) -> dict[str, Any]:
    """A ReadWriteOnce claim of `size_bytes` (a request: whether it is also a limit is
    the storage's business) from `storage_class` (None: the cluster's default)."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": str(size_bytes)}},
    }
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(name, labels, owner, role),
        "spec": spec,
    }


def _security(uid: int) -> dict[str, Any]:
    return {
        "runAsUser": uid,
        "runAsGroup": uid,
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_security(uid: int) -> dict[str, Any]:
    return {
        "runAsUser": uid,
        "runAsGroup": uid,
        "runAsNonRoot": True,
        "fsGroup": uid,  # the claims' roots become writable by the step user
        "supplementalGroups": [],
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_spec(
    uid: int, deadline_s: float | None, node: str | None, containers: list[dict[str, Any]]
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "dnsPolicy": "Default",
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "shareProcessNamespace": False,
        "terminationGracePeriodSeconds": GRACE_S,
        "activeDeadlineSeconds": max(1, math.ceil(deadline_s or DEFAULT_DEADLINE_S)),
        "securityContext": _pod_security(uid),
        "containers": containers,
    }
    if node is not None:
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [node],
                                }
                            ]
                        }
                    ]
                }
            }
        }
    return spec


def init_volume(owner: str) -> dict[str, Any]:
    return {
        "name": INIT_VOLUME,
        "configMap": {
            "name": owner,
            "items": [{"key": INIT_KEY, "path": INIT_KEY, "mode": 0o555}],
            "defaultMode": 0o555,
        },
    }


def step_pod(
    name: str,
    spec: ContainerSpec,
    *,
    image: str,
    pull_policy: str,
    owner: Mapping[str, str],
    workspace: tuple[str, str] | None,
    node: str | None,
    exec_mounts: Sequence[str] = (),
) -> dict[str, Any]:
    """The pod of one step attempt. `workspace` is (workspace claim, scratch claim);
    `exec_mounts` are the mount points runner-init lets be writable and executable (the
    workspace when granted, the termination log when the policy accepts it)."""
    check_spec(spec)
    uid = spec.user
    labels = dict(spec.labels)
    if spec.network is not None:
        labels[LABEL_NETWORK] = spec.network
    labels.setdefault(LABEL_ROLE, "step")
    labels["runner.workspace-exec"] = "true" if spec.workspace_exec else "false"
    memory = str(spec.memory_bytes)
    cpu = f"{max(1, round(spec.cpus * 1000))}m"
    reserved = f"{max(10, round(spec.cpus * 1000 * CPU_RESERVED))}m"
    volumes = [init_volume(owner["name"])]
    mounts: list[dict[str, Any]] = [
        {"name": INIT_VOLUME, "mountPath": contract.DIRECTORY, "readOnly": True}
    ]
    if workspace is not None:
        volumes += [
            {"name": WORKSPACE_VOLUME, "persistentVolumeClaim": {"claimName": workspace[0]}},
            {"name": SCRATCH_VOLUME, "persistentVolumeClaim": {"claimName": workspace[1]}},
        ]
        mounts += [
            {"name": WORKSPACE_VOLUME, "mountPath": spec.workspace_path},
            {"name": SCRATCH_VOLUME, "mountPath": SCRATCH_PATH},
        ]
    exempt = [*([spec.workspace_path] if spec.workspace_exec else []), *exec_mounts]
    container = {
        "name": STEP_CONTAINER,
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": [
            *contract.argv(env_stdin=True, deadline_s=spec.deadline_s, exec_mounts=exempt),
            *spec.command,
        ],
        "workingDir": spec.workdir,
        "stdin": True,  # runner-init's environment comes this way, once
        "stdinOnce": True,
        "tty": False,
        "securityContext": _security(uid),
        "resources": {
            "limits": {"memory": memory, "cpu": cpu},
            "requests": {"memory": memory, "cpu": reserved},
        },
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
    }
    grace = 0.0 if spec.deadline_s is None else spec.deadline_s + 5
    pod_spec = _pod_spec(uid, grace or None, node, [container])
    return _pod(name, labels, owner, "step", pod_spec, volumes)


def keeper_pod(
    name: str,
    labels: Mapping[str, str],
    owner: Mapping[str, str],
    *,
    image: str,
    pull_policy: str,
    uid: int,
    claims: tuple[str, str],
) -> dict[str, Any]:
    """The pod that holds a job's claims: `sleep` in runner's helper image (tar, cat,
    sleep), in which runner runs `tar` to copy files in and out of the workspace."""
    resources = {"cpu": KEEPER_CPU, "memory": str(KEEPER_MEMORY)}
    container = {
        "name": "keeper",
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": ["/usr/bin/sleep", str(DEFAULT_DEADLINE_S)],
        "securityContext": _security(uid),
        "resources": {"limits": resources, "requests": resources},
        "volumeMounts": [
            {"name": WORKSPACE_VOLUME, "mountPath": KEEPER_WORKSPACE},
            {"name": SCRATCH_VOLUME, "mountPath": "/scratch"},
        ],
    }
    spec = _pod_spec(uid, None, None, [container])
    volumes = [
        {"name": WORKSPACE_VOLUME, "persistentVolumeClaim": {"claimName": claims[0]}},
        {"name": SCRATCH_VOLUME, "persistentVolumeClaim": {"claimName": claims[1]}},
    ]
    return _pod(name, labels, owner, "keeper", spec, volumes)


def probe_pod(
    name: str,
    labels: Mapping[str, str],
    owner: Mapping[str, str],
    *,
    image: str,
    pull_policy: str,
    uid: int,
    port: int,
) -> dict[str, Any]:
    """A pod that exits 0 when it can open a TCP connection to its node's `port` within
    a few seconds (`bash`'s /dev/tcp under runner-init's deadline)."""
    container = {
        "name": "probe",
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": [
            *contract.argv(env_stdin=False, deadline_s=4, exec_mounts=[TERMINATION_LOG]),
            "/usr/bin/bash",
            "-c",
            f'exec 3<>"/dev/tcp/$NODE_IP/{port}"',
        ],
        "env": [{"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}],
        "securityContext": _security(uid),
        "resources": {
            "limits": {"cpu": KEEPER_CPU, "memory": str(KEEPER_MEMORY)},
            "requests": {"cpu": KEEPER_CPU, "memory": str(KEEPER_MEMORY)},
        },
        "volumeMounts": [{"name": INIT_VOLUME, "mountPath": contract.DIRECTORY, "readOnly": True}],
    }
    spec = _pod_spec(uid, 30, None, [container])
    return _pod(name, labels, owner, "probe", spec, [init_volume(owner["name"])])


def deny_all(
    name: str, labels: Mapping[str, str], owner: Mapping[str, str], selector: Mapping[str, str]
) -> dict[str, Any]:
    """No ingress and no egress for every pod `selector` matches."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(name, labels, owner, "network"),
        "spec": {
            "podSelector": {"matchLabels": dict(selector)},
            "policyTypes": ["Ingress", "Egress"],
        },
    }


def egress(
    name: str, labels: Mapping[str, str], owner: Mapping[str, str], *, host_reachable: bool
) -> dict[str, Any]:
    """Egress for the pods of one granted job (label `LABEL_NETWORK`=`name`): anywhere
    but the private, link-local and loopback ranges (the cluster, the node, the cloud's
    metadata service) unless `host_reachable`; DNS anywhere."""
    block: dict[str, Any] = {"cidr": "0.0.0.0/0"}
    if not host_reachable:
        block["except"] = list(PRIVATE_RANGES)
    dns = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(name, labels, owner, "network"),
        "spec": {
            "podSelector": {"matchLabels": {LABEL_NETWORK: name}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": block}]}, {"ports": dns}],
        },
    }
