"""A pool of local PersistentVolumes for a development cluster with no provisioner
(../shared/k8s): what an administrator does once (docs/kubernetes/local-storage.yaml
shows the classes), done here by the tests with the cluster's admin credentials.

`ensure_pool(count)` makes sure `count` volumes of each of runner's two classes are
Available: volumes a finished job released are deleted with their directories and made
afresh (a local volume is never handed to a second job with the first one's files).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path("/tmp/k8s-runner-pv")
NODE = "k8s-local"
CLASSES = {
    "runner-noexec": ["noexec", "nosuid", "nodev"],
    "runner-exec": ["nosuid", "nodev"],
}


ADMIN = "/tmp/k8s/kubeconfig/admin.kubeconfig"
# kubectl caches discovery under $HOME/.kube/cache, and under ./.kube/cache (the
# repository) when HOME is unset as in the environment below: never in the repository.
CACHE = Path(tempfile.gettempdir()) / "runner-tests-kubectl-cache"


def kubectl(*args: str, data: str | None = None, kubeconfig: str = ADMIN) -> str:
    """kubectl of the development cluster, as its administrator unless told otherwise."""
    done = subprocess.run(
        ["kubectl", "--cache-dir", str(CACHE), *args],
        input=data,
        capture_output=True,
        text=True,
        check=True,
        env={"KUBECONFIG": kubeconfig, "PATH": "/tmp/k8s/bin:/usr/bin:/bin"},
    )
    return done.stdout


def _class(name: str, options: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Retain",
        "mountOptions": options,
    }


def _volume(name: str, storage_class: str, options: list[str], path: Path) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {"runner-test-pool": storage_class}},
        "spec": {
            "capacity": {"storage": "20Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": storage_class,
            "mountOptions": options,
            "local": {"path": str(path)},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [NODE],
                                }
                            ]
                        }
                    ]
                }
            },
        },
    }


def ensure_pool(counts: dict[str, int]) -> None:
    documents = [_class(name, options) for name, options in CLASSES.items()]
    kubectl("apply", "-f", "-", data=yaml.safe_dump_all(documents))
    listed = yaml.safe_load(kubectl("get", "pv", "-l", "runner-test-pool", "-o", "yaml"))
    available: dict[str, int] = dict.fromkeys(CLASSES, 0)
    used: list[str] = []
    for volume in listed["items"]:
        phase = volume["status"].get("phase")
        storage_class = volume["spec"]["storageClassName"]
        if phase in ("Released", "Failed"):
            used.append(volume["metadata"]["name"])
        elif phase == "Available" and storage_class in available:
            available[storage_class] += 1
    if used:
        kubectl("delete", "pv", "--wait=true", "--ignore-not-found", *used)
        for name in used:
            shutil.rmtree(ROOT / name, ignore_errors=True)
    documents = []
    for storage_class, options in CLASSES.items():
        for _ in range(counts.get(storage_class, 0) - available[storage_class]):
            name = f"{storage_class}-{secrets.token_hex(4)}"
            path = ROOT / name
            path.mkdir(parents=True)
            documents.append(_volume(name, storage_class, options, path))
    if documents:
        kubectl("apply", "-f", "-", data=yaml.safe_dump_all(documents))
