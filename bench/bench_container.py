"""Bare Docker SDK baseline of a hardened step (SPEC 9), for `runner run`'s benchmarks.

    .venv/bin/python bench/bench_container.py [--image IMAGE] [-n 20] [--total 64] [--threads 32]
    .venv/bin/python bench/bench_container.py --engine podman   # Podman's Docker API

`bare_sdk_step` is one create+attach+start+wait+remove of the same hardened container a step
gets (`runner.engine.docker.hardening.container_config`, without a workspace), through the
SDK's ordinary high-level calls (the attach hands runner-init its empty environment, as
runner does); `bare_sdk_throughput` is containers per second with a thread pool. On Podman
(`--engine podman`: its socket, scripts/ensure-podman.sh) the container is the one runner
makes there (`engine_config`: the same hardening in Podman's words).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker

from runner.engine.backend import LABEL_RUN, ContainerSpec
from runner.engine.docker.backend import DockerBackend
from runner.engine.docker.dialect import DOCKER_DIALECT, PODMAN_HOST, Dialect, detect
from runner.engine.docker.hardening import container_config, init_volume, write_seccomp_files
from runner.engine.stepinit import contract
from runner.run.snapshot import RepoSnapshot, SnapshotCache
from runner.run.workspace import Workspace

BENCH_LABEL = "runner.bench"
MiB = 1024 * 1024
ENGINES = {"docker": None, "podman": PODMAN_HOST}  # None: DOCKER_HOST
_engines: dict[int, tuple[Dialect, str | None]] = {}


def engine_config(client: docker.DockerClient) -> tuple[Dialect, str | None]:
    """The engine behind `client` and, on Podman, runner-init's directory (which runner
    binds there in place of its volume), asked once per client."""
    if id(client) not in _engines:
        dialect, init_dir = detect(client.version()), None
        if dialect.podman:
            write_seccomp_files()
            init_dir = str(client.api.inspect_volume(init_volume())["Mountpoint"])
        _engines[id(client)] = (dialect, init_dir)
    return _engines[id(client)]


def hardened_config(
    image: str, cmd: list[str], run_id: str = "bench", client: docker.DockerClient | None = None
) -> dict[str, Any]:
    """The SDK's `containers.create` arguments of the hardened step, on `client`'s engine."""
    spec = ContainerSpec(
        image=image,
        command=cmd,
        env={},
        labels={LABEL_RUN: run_id, BENCH_LABEL: "1"},
        memory_bytes=1024 * MiB,
        cpus=1.0,
        pids=256,
    )
    dialect, init_dir = engine_config(client) if client is not None else (DOCKER_DIALECT, None)
    config = container_config(spec, dialect, init_dir=init_dir)
    if "binds" in config:  # the high-level `create` takes binds as `volumes`, options whole
        config["volumes"] = {
            source: {"bind": target, "mode": mode}
            for source, target, mode in (bind.split(":") for bind in config.pop("binds"))
        }
    return config


def start(container: Any) -> None:
    """Start a container made by `hardened_config`: runner-init waits for the step's
    environment on stdin (Podman keeps it open), so it is handed an empty one."""
    stdin = container.attach_socket(params={"stdin": 1, "stream": 1})
    try:
        container.start()
        raw = getattr(stdin, "_sock", stdin)
        raw.sendall(contract.encode_env({}))
        raw.shutdown(socket.SHUT_WR)
    finally:
        stdin.close()


def bare_sdk_step(client: docker.DockerClient, image: str, cmd: list[str]) -> float:
    """Seconds for one create+start+wait+remove of a hardened container (exit code 0 required)."""
    config = hardened_config(image, cmd, client=client)
    started = time.perf_counter()
    container = client.containers.create(**config)
    try:
        start(container)
        code = container.wait()["StatusCode"]
    finally:
        container.remove(force=True)
    elapsed = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"benchmark step {cmd} exited {code}")
    return elapsed


def bare_sdk_throughput(
    client: docker.DockerClient, image: str, n: int, threads: int, cmd: list[str] | None = None
) -> float:
    """Containers per second: `n` hardened steps on `threads` threads."""
    command = cmd or ["true"]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda _: bare_sdk_step(client, image, command), range(n)))
    return n / (time.perf_counter() - started)


def backend_step(backend: DockerBackend, image: str, cmd: list[str]) -> float:
    """The same step through runner's DockerBackend (low-level API, no extra inspect)."""
    spec = ContainerSpec(
        image=image,
        command=cmd,
        env={},
        labels={LABEL_RUN: "bench", BENCH_LABEL: "1"},
        memory_bytes=1024 * MiB,
        cpus=1.0,
        pids=256,
    )
    started = time.perf_counter()
    cid = backend.create(spec)
    try:
        backend.start(cid)
        code = backend.wait(cid, None)
    finally:
        backend.remove(cid)
    if code != 0:
        raise RuntimeError(f"benchmark step {cmd} exited {code}")
    return time.perf_counter() - started


def workspace_cost(backend: DockerBackend, lower: str, exec_allowed: bool) -> float:
    """Seconds to prepare and close one job's workspace volume: a copy-on-write view of
    the snapshot volume `lower` (made once, as a run does), with the default quota."""
    started = time.perf_counter()
    space = Workspace(
        backend,
        "bench" + uuid.uuid4().hex[:8],
        "job",
        lower=lower,
        exec_allowed=exec_allowed,
        labels={LABEL_RUN: "bench", BENCH_LABEL: "1"},
        quota_bytes=2 * 1024**3,
    )
    space.prepare()
    space.close()
    return time.perf_counter() - started


def bench_client(pool_size: int = 64, engine: str = "docker") -> docker.DockerClient:
    """A client of `engine`: "docker" (DOCKER_HOST or the local socket) or "podman"."""
    host = ENGINES[engine]
    if host is None:
        return docker.from_env(max_pool_size=pool_size, timeout=300)
    return docker.DockerClient(base_url=host, max_pool_size=pool_size, timeout=300)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="runner-base/busybox:latest")
    parser.add_argument("-n", type=int, default=20, help="sequential steps for the median")
    parser.add_argument("--total", type=int, default=64, help="containers for the throughput")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--engine", choices=sorted(ENGINES), default="docker")
    args = parser.parse_args(argv)
    client = bench_client(engine=args.engine)
    try:
        backend = DockerBackend(client, engine_config(client)[0])
        backend_step(backend, args.image, ["true"])  # warm-up: runner-init made ready
        bare_sdk_step(client, args.image, ["true"])
        samples = [bare_sdk_step(client, args.image, ["true"]) for _ in range(args.n)]
        median_ms = statistics.median(samples) * 1000
        rate = bare_sdk_throughput(client, args.image, args.total, args.threads)
        ours = [backend_step(backend, args.image, ["true"]) for _ in range(args.n)]
        repo = Path(__file__).resolve().parent.parent
        with tempfile.TemporaryDirectory() as state:
            cache = SnapshotCache(backend, Path(state))
            lower = cache.ensure(RepoSnapshot(repo), {LABEL_RUN: "bench", BENCH_LABEL: "1"})
            spaces = [workspace_cost(backend, lower, False) for _ in range(5)]
            cache.collect(keep=0, older_than_s=0, now=time.time())
    finally:
        leftovers = client.containers.list(all=True, filters={"label": BENCH_LABEL})
        for container in leftovers:
            container.remove(force=True)
        for volume in client.volumes.list(filters={"label": BENCH_LABEL}):
            volume.remove(force=True)
        client.close()
    run = uuid.uuid4().hex[:6]
    print(f"bench {run}: image {args.image} on {engine_config(client)[0].describe()}")
    print(
        f"bare SDK hardened step: median {median_ms:.1f} ms over {args.n} "
        f"(min {min(samples) * 1000:.1f}, max {max(samples) * 1000:.1f})"
    )
    print(
        f"bare SDK throughput: {rate:.2f} containers/s ({args.total} containers, {args.threads} threads)"
    )
    print(f"DockerBackend step (no workspace): median {statistics.median(ours) * 1000:.1f} ms")
    print(
        f"workspace prepare+close (view of this repository's snapshot, noexec overlay, quota): "
        f"median {statistics.median(spaces) * 1000:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
