"""The cluster the Kubernetes backend's tests run on, and runner's user on it (the
`kube` fixture, imported by each test module: a second conftest.py would shadow the
`conftest` module the other tests import).

With `../shared/k8s` beside the repository (CI has it too), the session starts that
single-node cluster (`up.sh`, idempotent) unless it answers already, and, as its
administrator, makes what an administrator of a real cluster makes once: the namespace
`runner-test`, the Role of docs/kubernetes/role.yaml bound to a ServiceAccount
(docs/kubernetes/role-binding.yaml), a kubeconfig holding that account's token, and a
pool of local volumes of the classes of docs/kubernetes/local-storage.yaml
(`localpv.ensure_pool`). runner itself only ever runs with that kubeconfig: a verb the
Role lacks fails the tests. Without `../shared/k8s`, a `KUBECONFIG` of the environment
is used as it is (its namespace and `RUNNER_STORAGE_CLASS` / `RUNNER_EXEC_STORAGE_CLASS`
from the environment); with neither, every test here is skipped with one message.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from localpv import ADMIN, ensure_pool, kubectl

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "k8s"
NAMESPACE = "runner-test"
SOCKET = "/tmp/k8s/containerd/containerd.sock"
POOL = {"runner-noexec": 64, "runner-exec": 8}  # two noexec claims a job
# The setup and the pool are made by one session at a time (pytest -n workers each have
# their session): two would both create the namespace, or delete the same volumes.
LOCK = Path(tempfile.gettempdir()) / "runner-tests-kube.lock"


@dataclass(frozen=True)
class Kube:
    kubeconfig: Path  # runner's own: the ServiceAccount bound to docs/kubernetes/role.yaml
    namespace: str
    args: tuple[str, ...]  # `runner run` options that pick this cluster
    admin: str | None  # the administrator's kubeconfig, where the tests made the cluster

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig), "PATH": f"/tmp/k8s/bin:{os.environ['PATH']}"}

    def objects(self, selector: str = "runner.run-id") -> list[str]:
        """Every object runner could have left in the namespace (as the administrator)."""
        kinds = "pods,persistentvolumeclaims,configmaps,networkpolicies"
        listed = kubectl(
            "-n",
            self.namespace,
            "get",
            kinds,
            "-l",
            selector,
            "-o",
            "name",
            kubeconfig=self.admin or str(self.kubeconfig),
        )
        return listed.split()


@contextlib.contextmanager
def _alone() -> Iterator[None]:
    with LOCK.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)


def _answers() -> bool:
    try:
        kubectl("get", "--raw", "/readyz")
    except (subprocess.CalledProcessError, OSError):
        return False
    return True


def _token_kubeconfig(path: Path) -> None:
    """A kubeconfig for ServiceAccount runner of NAMESPACE (its token secret)."""
    secret = ""
    for _ in range(100):
        secret = kubectl(
            "-n", NAMESPACE, "get", "sa", "runner", "-o", "jsonpath={.secrets[0].name}"
        )
        if secret:
            break
        time.sleep(0.1)
    token = base64.b64decode(
        kubectl("-n", NAMESPACE, "get", "secret", secret, "-o", "jsonpath={.data.token}")
    ).decode()
    admin = yaml.safe_load(Path(ADMIN).read_text())
    cluster = admin["clusters"][0]
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "runner", "user": {"token": token}}],
        "contexts": [
            {
                "name": "runner",
                "context": {"cluster": cluster["name"], "user": "runner", "namespace": NAMESPACE},
            }
        ],
        "current-context": "runner",
    }
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)


@pytest.fixture(scope="session", name="kube")
def kube_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    if not SHARED.is_dir():
        given = os.environ.get("KUBECONFIG")
        if not given:
            pytest.skip("no Kubernetes: neither ../shared/k8s nor KUBECONFIG exists")
        args = ["--backend", "kubernetes"]
        for option, name in (
            ("--storage-class", "RUNNER_STORAGE_CLASS"),
            ("--exec-storage-class", "RUNNER_EXEC_STORAGE_CLASS"),
            ("--image-registry", "RUNNER_IMAGE_REGISTRY"),
            ("--load-images", "RUNNER_LOAD_IMAGES"),
        ):
            if os.environ.get(name):
                args += [option, os.environ[name]]
        namespace = os.environ.get("RUNNER_NAMESPACE", "default")
        yield Kube(Path(given), namespace, (*args, "--namespace", namespace), None)
        return
    with _alone():
        if not _answers():
            subprocess.run([str(SHARED / "up.sh")], check=True, capture_output=True, timeout=300)
        existing = kubectl("get", "namespaces", "-o", "name").split()
        if f"namespace/{NAMESPACE}" not in existing:
            kubectl("create", "namespace", NAMESPACE)
        docs = REPO / "docs" / "kubernetes"
        for manifest in ("role.yaml", "role-binding.yaml"):
            kubectl("-n", NAMESPACE, "apply", "-f", str(docs / manifest))
        ensure_pool(POOL)
        kubeconfig = tmp_path_factory.mktemp("kube") / "runner.kubeconfig"
        _token_kubeconfig(kubeconfig)
    args = (
        "--backend",
        "kubernetes",
        "--namespace",
        NAMESPACE,
        "--load-images",
        SOCKET,
        "--storage-class",
        "runner-noexec",
        "--exec-storage-class",
        "runner-exec",
    )
    yield Kube(kubeconfig, NAMESPACE, args, ADMIN)
    with _alone():
        ensure_pool(POOL)  # released volumes go now, with the files their jobs left
