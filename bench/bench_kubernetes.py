"""`runner run --backend kubernetes` against bare pods, beside the Docker backend's figures.

    .venv/bin/python bench/bench_kubernetes.py            # ~4 min on ../shared/k8s

Needs ../shared/k8s (started if it does not answer; runner runs as its administrator
here, the tests run it under docs/kubernetes/role.yaml) and the local Docker engine.

overhead  one job of N steps (`true`): runner's per-step time (its step events, and the
          whole run / N), against bare pods of the very manifest runner creates for such
          a step (`KubernetesBackend.pod_manifest`: the same image, hardening, claims,
          node), without runner-init's environment on stdin, each created, polled until
          its container terminated, and deleted, one after another through the same
          client; then the same job on the Docker backend against the bare Docker SDK
fan-out   20 one-step jobs at --max-parallel 20, against 20 bare pods of the same
          manifest created at once; then the same on Docker against 20 bare SDK steps
          on 20 threads

The bare Docker step is bench_container's hardened configuration with runner-init told
not to wait for an environment on stdin, as the bare pods are.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "kubernetes"))
from bench_container import hardened_config  # noqa: E402
from bench_run import _run_span, fanout_mission, repo_with, runner, steps_mission  # noqa: E402
from localpv import ADMIN, ensure_pool, kubectl  # noqa: E402

from runner.engine.backend import LABEL_RUN, ContainerSpec  # noqa: E402
from runner.engine.docker.backend import connect as connect_docker  # noqa: E402
from runner.engine.kubernetes.backend import KubernetesBackend, Settings  # noqa: E402
from runner.engine.kubernetes.cluster import Cluster, connect  # noqa: E402
from runner.engine.kubernetes.images import Delivery  # noqa: E402

SHARED = REPO.parent / "shared" / "k8s"
SOCKET = "/tmp/k8s/containerd/containerd.sock"
NAMESPACE = "runner-bench"
ACCEPT = "accept: [unenforced-network-policy, executable-termination-log]\n"
KUBE_ARGS = (
    "--backend",
    "kubernetes",
    "--namespace",
    NAMESPACE,
    "--load-images",
    SOCKET,
    "--storage-class",
    "runner-noexec",
)
MiB = 1024 * 1024


def cluster_ready() -> None:
    os.environ["KUBECONFIG"] = ADMIN
    os.environ["PATH"] = f"/tmp/k8s/bin:{os.environ['PATH']}"
    try:
        kubectl("get", "--raw", "/readyz")
    except subprocess.CalledProcessError:
        subprocess.run([str(SHARED / "up.sh")], check=True, capture_output=True)
    if f"namespace/{NAMESPACE}" not in kubectl("get", "namespaces", "-o", "name").split():
        kubectl("create", "namespace", NAMESPACE)
    ensure_pool({"runner-noexec": 64})


def kube_repo(root: Path, mission: str) -> Path:
    repo = repo_with(root, mission)
    policy = repo / "policies" / "default.yml"
    policy.write_text(policy.read_text() + ACCEPT)
    return repo


def bare_pod(cluster: Cluster, manifest: dict[str, Any]) -> float:
    """Seconds from creating `manifest` to its container's exit code in the pod's status,
    plus its deletion."""
    started = time.perf_counter()
    name = manifest["metadata"]["name"]
    cluster.create("pod", manifest)
    try:
        while True:
            statuses = cluster.pod(name).status.container_statuses or []
            state = statuses[0].state if statuses else None
            if state is not None and state.terminated is not None:
                if state.terminated.exit_code != 0:
                    raise RuntimeError(f"bare pod {name} exited {state.terminated.exit_code}")
                break
            time.sleep(0.05)
    finally:
        cluster.delete("pod", name)
    return time.perf_counter() - started


def bare_manifest(
    backend: KubernetesBackend, image: str, run_id: str, volume: str | None
) -> dict[str, Any]:
    spec = ContainerSpec(
        image=image,
        command=["sh", "-e", "-c", "true"],
        env={},
        labels={LABEL_RUN: run_id},
        memory_bytes=256 * MiB,
        cpus=1.0,
        pids=64,
        workspace_volume=volume,
        deadline_s=600,
    )
    _, manifest, _ = backend.pod_manifest(spec)
    container = manifest["spec"]["containers"][0]
    container["command"] = [w for w in container["command"] if w != "--env-stdin"]
    container["stdin"] = container["stdinOnce"] = False
    return manifest


def bare_docker_step(client: docker.DockerClient, image: str) -> float:
    """One create+start+wait+remove of the hardened container a step gets, through the
    bare SDK, with runner-init told not to wait for an environment on stdin (as the bare
    pods are)."""
    config = hardened_config(image, ["sh", "-e", "-c", "true"])
    config["entrypoint"] = [w for w in config["entrypoint"] if w != "--env-stdin"]
    config["stdin_open"] = False
    started = time.perf_counter()
    container = client.containers.create(**config)
    try:
        container.start()
        code = container.wait()["StatusCode"]
    finally:
        container.remove(force=True)
    if code != 0:
        raise RuntimeError(f"bare Docker step exited {code}")
    return time.perf_counter() - started


def open_backend() -> KubernetesBackend:
    images = connect_docker()
    settings = Settings(
        storage_class="runner-noexec",
        accept_unenforced_network_policy=True,
        accept_executable_termination_log=True,
    )
    backend = KubernetesBackend(
        connect(NAMESPACE), images, Delivery(images, socket=SOCKET), settings
    )
    backend.prepare()
    return backend


def bench_overhead(work: Path, n: int) -> None:
    repo = kube_repo(work / "overhead", steps_mission(n))
    state = work / "state"
    _, warm = runner(repo, state, *KUBE_ARGS)
    image = warm["jobs"]["one"]["image"]
    spans, steps = [], []
    for _ in range(2):
        _, result = runner(repo, state, *KUBE_ARGS)
        spans.append(_run_span(state, result["run_id"]) / n)
        steps += [s["duration_ms"] / 1000 for s in result["jobs"]["one"]["steps"]]
    backend = open_backend()
    run_id = f"bench-{int(time.time())}"
    try:
        volume = f"runner-{run_id}-ws"
        backend.create_volume(volume, {LABEL_RUN: run_id}, exec_allowed=False)
        bare_manifest(backend, image, run_id, volume)  # warm
        bares = [
            bare_pod(backend.cluster, bare_manifest(backend, image, run_id, volume))
            for _ in range(2 * n)
        ]
    finally:
        backend.close()
    ensure_pool({"runner-noexec": 64})
    bare, step, span = statistics.median(bares), statistics.median(steps), statistics.median(spans)
    print(f"overhead on Kubernetes: {n} steps, image {image}")
    print(f"  bare pod, same manifest       median {bare * 1000:7.0f} ms  ({len(bares)} samples)")
    print(f"  runner step (event to event)  median {step * 1000:7.0f} ms")
    print(
        f"  runner run, per step          median {span * 1000:7.0f} ms  (run span / {n}: claims, keeper, seed in)"
    )
    print(f"  ratio step / bare pod            {step / bare:7.2f}x")
    client = docker.from_env()
    try:
        docker_repo = repo_with(work / "overhead-docker", steps_mission(n))
        runner(docker_repo, state)
        _, result = runner(docker_repo, state)
        d_step = statistics.median(s["duration_ms"] / 1000 for s in result["jobs"]["one"]["steps"])
        d_span = _run_span(state, result["run_id"]) / n
        d_image = result["jobs"]["one"]["image"]
        d_bare = statistics.median(bare_docker_step(client, d_image) for _ in range(2 * n))
    finally:
        client.close()
    print("overhead on Docker (same mission)")
    print(f"  bare SDK hardened step        median {d_bare * 1000:7.0f} ms")
    print(f"  runner step (event to event)  median {d_step * 1000:7.0f} ms")
    print(f"  runner run, per step          median {d_span * 1000:7.0f} ms")
    print(f"  ratio step / bare SDK            {d_step / d_bare:7.2f}x")


def bench_fanout(work: Path, jobs: int) -> None:
    repo = kube_repo(work / "fanout", fanout_mission(jobs))
    state = work / "state"
    wall, result = runner(repo, state, *KUBE_ARGS, "--max-parallel", str(jobs))
    span = _run_span(state, result["run_id"])
    image = result["jobs"]["j0"]["image"]
    ensure_pool({"runner-noexec": 64})
    backend = open_backend()
    run_id = f"bench-{int(time.time())}"
    try:
        manifests = [bare_manifest(backend, image, run_id, None) for _ in range(jobs)]
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(lambda m: bare_pod(backend.cluster, m), manifests))
        bare = time.perf_counter() - started
    finally:
        backend.close()
    print(f"fan-out on Kubernetes: {jobs} one-step jobs, --max-parallel {jobs}")
    print(f"  bare pods, all at once        {bare:6.1f} s   ({jobs / bare:5.2f} pods/s)")
    print(
        f"  runner run                    {span:6.1f} s   ({jobs / span:5.2f} jobs/s; {wall:.1f} s with the process)"
    )
    client = docker.from_env()
    try:
        docker_repo = repo_with(work / "fanout-docker", fanout_mission(jobs))
        runner(docker_repo, state, "--max-parallel", str(jobs))
        _, d_result = runner(docker_repo, state, "--max-parallel", str(jobs))
        d_span = _run_span(state, d_result["run_id"])
        image = d_result["jobs"]["j0"]["image"]
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(lambda _: bare_docker_step(client, image), range(jobs)))
        d_bare = jobs / (time.perf_counter() - started)
    finally:
        client.close()
    print(f"fan-out on Docker: {jobs} one-step jobs, --max-parallel {jobs}")
    print(
        f"  bare SDK, {jobs} threads          {jobs / d_bare:6.1f} s   ({d_bare:5.2f} containers/s)"
    )
    print(f"  runner run                    {d_span:6.1f} s   ({jobs / d_span:5.2f} jobs/s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="steps of the overhead job")
    parser.add_argument("--jobs", type=int, default=20, help="jobs of the fan-out")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-fanout", action="store_true")
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        print("bench_kubernetes: needs ../shared/k8s", file=sys.stderr)
        return 2
    cluster_ready()
    with tempfile.TemporaryDirectory(prefix="runner-bench-k8s-") as scratch:
        work = Path(scratch)
        if not args.skip_overhead:
            bench_overhead(work, args.n)
        if not args.skip_fanout:
            bench_fanout(work, args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
