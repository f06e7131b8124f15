"""The Kubernetes backend on a real cluster, below `runner run`: what the API server stores
of a step with a secret, the output stream's completeness and its lines kept whole when
stdout and stderr are written at once, a pod that cannot start, and no stream's socket
left open once it ended.

runner talks to the cluster as the ServiceAccount bound to docs/kubernetes/role.yaml
(tests/kubernetes/kubecluster.py); the administrator's kubeconfig only reads back what
the API server stored.
"""

from __future__ import annotations

import gc
import json
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine.test_output_lines import SCRIPT, assert_whole_lines
from kubecluster import Kube, kube_fixture  # noqa: F401  (the session's cluster: `kube`)
from localpv import kubectl

from runner.engine.backend import LABEL_RUN, ContainerSpec
from runner.engine.docker.backend import connect as connect_docker
from runner.engine.kubernetes.backend import KubernetesBackend, Settings, StartFailed
from runner.engine.kubernetes.cluster import connect
from runner.engine.kubernetes.images import Delivered, Delivery, helper_tag

pytestmark = [pytest.mark.docker, pytest.mark.kubernetes]

SECRET = "s3cr3t-'quoted'\\back\"slash-" + uuid.uuid4().hex
MiB = 1024 * 1024


@pytest.fixture
def backend(kube: Kube, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubernetesBackend]:
    if kube.admin is None:
        pytest.skip("needs the development cluster's administrator to read back")
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    images = connect_docker()
    settings = Settings(
        storage_class="runner-noexec",
        accept_unenforced_network_policy=True,
        accept_executable_termination_log=True,
    )
    socket = kube.args[kube.args.index("--load-images") + 1]
    engine = KubernetesBackend(
        connect(kube.namespace), images, Delivery(images, socket=socket), settings
    )
    engine.prepare()
    yield engine
    engine.close()


def step(image: str, script: str, run_id: str, **env: str) -> ContainerSpec:
    """A step in runner's helper image (its bash: a small image every run has)."""
    return ContainerSpec(
        image=image,
        command=["/usr/bin/bash", "-e", "-c", script],
        env=env,
        labels={LABEL_RUN: run_id},
        memory_bytes=128 * MiB,
        cpus=0.5,
        pids=64,
        deadline_s=120,
    )


def test_no_secret_reaches_etcd_and_the_whole_output_comes_back(
    backend: KubernetesBackend, kube: Kube
) -> None:
    run_id = "t" + uuid.uuid4().hex[:10]
    script = 'printf "%s\\n" "$TOKEN"; i=0; while [ $i -lt 2000 ]; do echo "line $i of the output"; i=$((i+1)); done; printf "last line"'
    spec = step(helper_tag(), script, run_id, TOKEN=SECRET)
    cid = backend.create(spec)
    stored = kubectl(
        "-n",
        kube.namespace,
        "get",
        "pods,configmaps",
        "-l",
        f"{LABEL_RUN}={run_id}",
        "-o",
        "json",
        kubeconfig=kube.admin or "",
    )
    assert "s3cr3t" not in stored and SECRET not in stored
    assert json.loads(stored)["items"], "the pod was not where runner said it was"
    output = backend.attach_output(cid)
    backend.start(cid)
    received = b"".join(output)
    assert backend.wait(cid, 60) == 0
    lines = received.decode().split("\n")
    assert lines[0] == SECRET  # it did reach the step: over the attach stream
    assert lines[1:-1] == [f"line {i} of the output" for i in range(2000)]
    assert lines[-1] == "last line"  # the tail, printed just before the exit, is there
    placed = backend.placement(cid)
    assert placed is not None and placed["node"] and len(placed["pod_spec_digest"]) == 64
    backend.remove(cid)


def test_interleaved_partial_lines_of_stdout_and_stderr_come_out_whole(
    backend: KubernetesBackend,
) -> None:
    """A stderr fragment, a stdout line, the rest of stderr's line, 200 times: the attach
    stream's two channels are merged by whole lines, as on Docker."""
    cid = backend.create(step(helper_tag(), SCRIPT, "t" + uuid.uuid4().hex[:10]))
    try:
        output = backend.attach_output(cid)
        backend.start(cid)
        received = b"".join(output)
        assert backend.wait(cid, 60) == 0
    finally:
        backend.remove(cid)
    assert_whole_lines(received)


def test_a_pod_whose_image_the_node_lacks_fails_clearly_and_soon(
    backend: KubernetesBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = Delivered("runner-test/not-on-the-node:" + uuid.uuid4().hex[:8], "Never", "")
    assert backend.delivery is not None
    monkeypatch.setattr(backend.delivery, "deliver", lambda image: missing)
    cid = backend.create(step("anything", "true", "t" + uuid.uuid4().hex[:10]))
    started = time.monotonic()
    with pytest.raises(StartFailed, match="ErrImageNeverPull"):
        backend.attach_output(cid)
    assert time.monotonic() - started < 30
    backend.remove(cid)


def test_the_run_objects_go_with_the_backend(
    backend: KubernetesBackend, kube: Kube, tmp_path: Path
) -> None:
    run_id = "t" + uuid.uuid4().hex[:10]
    volume = f"runner-{run_id}-ws"
    backend.create_volume(volume, {LABEL_RUN: run_id}, exec_allowed=False)
    assert kube.objects(f"{LABEL_RUN}={run_id}")
    backend.delete_run(run_id)
    assert kube.objects(f"{LABEL_RUN}={run_id}") == []


def test_every_stream_shuts_its_socket_when_it_ends(backend: KubernetesBackend) -> None:
    """An exec (tar in the keeper) and a step's attach stream each end with the server's
    close frame, after which the websocket client's own `close` does nothing: its socket
    stayed open until the garbage collector found it, one per step and copy."""
    run_id = "t" + uuid.uuid4().hex[:10]
    volume = f"runner-{run_id}-ws"
    try:
        backend.create_volume(volume, {LABEL_RUN: run_id}, exec_allowed=False)
        gc.collect()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                assert backend.read_files(volume, ".", ["absent"], 1024) == {}
            cid = backend.create(step(helper_tag(), "echo attached", run_id))
            output = backend.attach_output(cid)
            backend.start(cid)
            assert b"".join(output) == b"attached\n"
            assert backend.wait(cid, 60) == 0
            backend.remove(cid)
            gc.collect()
    finally:
        backend.delete_run(run_id)
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaked == []
