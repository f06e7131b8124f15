"""`runner run` against the bare Docker SDK, measured in the same process run (SPEC 9).

    .venv/bin/python bench/bench_run.py                 # overhead + fan-out (~2 min)
    .venv/bin/python bench/bench_run.py --scale --flood # also 1,000 sleeping steps, 1 GiB output
    .venv/bin/python bench/bench_run.py --engines docker,podman  # side by side with Podman's API

overhead  one job of N (20) steps (`true`) through `runner run`, run.started..run.finished
          / N (workspace, ledger, event log included), against the bare SDK running the same N hardened
          containers one after another (create+start+wait+remove each), same image:
          per-step ratio, target <= 0.85x (SPEC 9; the older figure, <= 1.15x of one
          bare step, is printed too); --rounds rounds, runner's and the SDK's interleaved
          (which goes first alternates), the ratio the median of the rounds' ratios
fan-out   200 one-step jobs at --max-parallel 32, against 200 bare SDK steps on 32 threads
scale     1,000 jobs sleeping at once (--max-parallel 1000): all complete; runner's peak
          RSS per running step
flood     one step printing 1 GiB: the step's time in runner (its output redacted into
          the event log as it comes) against `docker logs` reading the same output of
          the same hardened container (run with the json-file log driver), throughput
          ratio (target >= 0.5x); runner's peak RSS (target < 150 MiB), lines delivered

Each figure is a median against a baseline measured in the same run; the load average
is printed with it (others may share the machine's cores).

Each engine of `--engines` (docker: DOCKER_HOST or the local socket; podman: its socket, as
scripts/ensure-podman.sh starts it) is measured against the bare SDK on that same engine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_container import (
    ENGINES,
    bare_sdk_step,
    bare_sdk_throughput,
    bench_client,
    hardened_config,
    start,
)

from runner.engine.docker.dialect import detect

POLICY = """\
version: 1
images: [base]
tools: [sh, "true", sleep, head, "yes"]
limits: {timeout-minutes: 60, memory: 256m, cpus: 1, pids: 64}
"""
TOOLS = """\
sh: {paths: [/bin/sh], interpreter: true}
"true": {paths: [/bin/true]}
sleep: {paths: [/bin/sleep]}
head: {paths: [/usr/bin/head]}
"yes": {paths: [/usr/bin/yes]}
"""


def repo_with(root: Path, mission: str) -> Path:
    (root / ".missions").mkdir(parents=True, exist_ok=True)
    (root / "policies").mkdir(exist_ok=True)
    (root / "containers").mkdir(exist_ok=True)
    (root / "policies" / "default.yml").write_text(POLICY)
    (root / "containers" / "tools.yml").write_text(TOOLS)
    (root / ".missions" / "bench.yml").write_text(mission)
    (root / "README").write_text("a small repository\n")
    return root


def runner(repo: Path, state: Path, *args: str) -> tuple[float, dict[str, Any]]:
    """Wall seconds of a whole `runner run` (a subprocess) and its JSON result."""
    env = {**os.environ, "RUNNER_STATE_DIR": str(state), "CI": "true"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "runner", "run", "--json", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"runner run failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, json.loads(done.stdout)


def python_startup() -> float:
    """What a bare `python -m runner --version` costs: not part of a step's overhead."""
    samples = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "runner", "--version"], capture_output=True, check=True
        )
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def steps_mission(n: int) -> str:
    steps = "\n".join('      - run: "true"' for _ in range(n))
    return f'name: bench\non: [push]\njobs:\n  one:\n    tools: [sh, "true"]\n    steps:\n{steps}\n'


def fanout_mission(n: int) -> str:
    jobs = "\n".join(
        f'  j{i}:\n    tools: [sh, "true"]\n    steps: [{{run: "true"}}]' for i in range(n)
    )
    return f"name: fan\non: [push]\njobs:\n{jobs}\n"


def _run_span(state: Path, run_id: str) -> float:
    """Seconds from the run's `run.started` event to its `run.finished` (ms timestamps):
    workspace, every step, ledger and event log; not interpreter start, imports, loading."""
    events = (state / "runs" / run_id / "events.jsonl").read_text().splitlines()
    first, last = json.loads(events[0]), json.loads(events[-1])
    assert (first["kind"], last["kind"]) == ("run.started", "run.finished")

    def at(event: dict[str, Any]) -> float:
        return datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()

    return at(last) - at(first)


def bench_overhead(client: docker.DockerClient, work: Path, n: int, rounds: int) -> None:
    repo = repo_with(work / "overhead", steps_mission(n))
    state = work / "state"
    _, warm = runner(repo, state)  # builds the toolset image; cached afterwards
    image = warm["jobs"]["one"]["image"]
    startup = python_startup()
    bare_sdk_step(client, image, ["sh", "-e", "-c", "true"])
    spans, walls, bares, sequences, ratios, step_ms = [], [], [], [], [], []
    loads = []

    def ours() -> float:
        wall, result = runner(repo, state)
        walls.append(wall / n)
        step_ms.extend(s["duration_ms"] for s in result["jobs"]["one"]["steps"])
        return _run_span(state, result["run_id"]) / n

    def theirs() -> float:
        started = time.perf_counter()
        bares.extend(bare_sdk_step(client, image, ["sh", "-e", "-c", "true"]) for _ in range(n))
        return (time.perf_counter() - started) / n

    for round_ in range(rounds):  # interleaved, the order alternating: load hits both
        loads.append(os.getloadavg()[0])
        if round_ % 2:
            sequence, span = theirs(), ours()
        else:
            span, sequence = ours(), theirs()
        spans.append(span)
        sequences.append(sequence)
        ratios.append(span / sequence)
    per_step, sequence = statistics.median(spans), statistics.median(sequences)
    bare = statistics.median(bares)
    print(f"overhead: image {image}; load {min(loads):.1f}-{max(loads):.1f}")
    print(f"  bare SDK hardened step        median {bare * 1000:7.1f} ms  ({len(bares)} samples)")
    print(
        f"  bare SDK, {n} one after another median {sequence * 1000:6.1f} ms per step "
        f"({rounds} rounds, {_spread(sequences)})"
    )
    print(
        f"  runner run, per step          median {per_step * 1000:7.1f} ms  "
        f"({_spread(spans)}; run.started..run.finished / {n} steps, {rounds} runs: workspace, "
        "ledger, event log in)"
    )
    print(f"  runner step (event to event)  median {statistics.median(step_ms):7.1f} ms")
    print(
        f"  whole process, per step       median {statistics.median(walls) * 1000:7.1f} ms  "
        f"(+ interpreter, imports ~{startup * 1000:.0f} ms+, loading, policy, key, per run)"
    )
    print(
        f"  ratio runner / bare {n} in a row {statistics.median(ratios):7.2f}x   (target <= 0.85x; "
        f"per round {min(ratios):.2f}-{max(ratios):.2f}x)"
    )
    print(f"  ratio runner / one bare step     {per_step / bare:7.2f}x   (earlier target <= 1.15x)")


def _spread(seconds: list[float]) -> str:
    return f"{min(seconds) * 1000:.0f}-{max(seconds) * 1000:.0f} ms"


def bench_fanout(client: docker.DockerClient, work: Path, jobs: int, parallel: int) -> None:
    repo = repo_with(work / "fanout", fanout_mission(jobs))
    state = work / "state"
    runner(repo_with(work / "fanout-warm", fanout_mission(1)), state)
    wall, result = runner(repo, state, "--max-parallel", str(parallel))
    image = result["jobs"]["j0"]["image"]
    ours = jobs / wall
    bare = bare_sdk_throughput(client, image, jobs, parallel, ["sh", "-e", "-c", "true"])
    print(f"fan-out: {jobs} one-step jobs, --max-parallel {parallel}")
    print(f"  bare SDK, {parallel} threads   {bare:6.2f} containers/s")
    print(f"  runner run               {ours:6.2f} jobs/s  ({wall:.1f} s for the whole run)")
    print(f"  ratio runner / bare      {ours / bare * 100:6.1f} %   (target >= 80 %)")


class PeakRss:
    """Samples a process's VmRSS (and running containers) until it exits."""

    def __init__(self, pid: int, label: str | None = None, cli: str = "docker") -> None:
        self.pid, self.label, self.cli = pid, label, cli
        self.peak_kib = 0
        self.peak_running = 0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while True:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak_kib = max(self.peak_kib, int(line.split()[1]))
            except (OSError, ValueError):
                return
            if self.label:
                out = subprocess.run(
                    [self.cli, "ps", "-q", "--filter", f"label={self.label}"],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout
                self.peak_running = max(self.peak_running, len(out.split()))
            time.sleep(0.5)

    def join(self) -> None:
        self._thread.join(timeout=5)


def watched_run(
    repo: Path, state: Path, *args: str, label: bool = False, cli: str = "docker"
) -> tuple[float, PeakRss, str]:
    env = {**os.environ, "RUNNER_STATE_DIR": str(state), "CI": "true"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", "--json", *args],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    rss = PeakRss(proc.pid, f"runner.state-dir={state.resolve()}" if label else None, cli)
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    rss.join()
    if proc.returncode != 0:
        raise RuntimeError(f"runner run failed ({proc.returncode}): {err[-2000:]}")
    return wall, rss, out


def bench_scale(work: Path, jobs: int, sleep_s: int, cli: str = "docker") -> None:
    mission = "name: scale\non: [push]\njobs:\n" + "\n".join(
        f"  s{i}:\n    tools: [sh, sleep]\n    steps: [{{run: sleep {sleep_s}}}]"
        for i in range(jobs)
    )
    repo = repo_with(work / "scale", mission + "\n")
    state = work / "state"
    wall, rss, out = watched_run(repo, state, "--max-parallel", str(jobs), label=True, cli=cli)
    result = json.loads(out)
    ok = sum(j["status"] == "success" for j in result["jobs"].values())
    per = rss.peak_kib / 1024 / max(rss.peak_running, 1)
    print(f"scale: {jobs} jobs each sleeping {sleep_s} s, --max-parallel {jobs}")
    print(f"  completed {ok}/{jobs} in {wall:.0f} s; peak running containers {rss.peak_running}")
    print(
        f"  runner peak RSS {rss.peak_kib / 1024:.0f} MiB = {per:.2f} MiB per running step "
        "(target < 5 MiB)"
    )


def docker_logs_rate(client: docker.DockerClient, image: str, command: list[str]) -> float:
    """Seconds `docker logs` takes to read the output of the same hardened container
    (run to its end first, with the json-file log driver in place of `none`)."""
    config = hardened_config(image, command)
    config["log_config"] = {"type": "json-file", "config": {}}
    container = client.containers.create(**config)
    try:
        start(container)
        if container.wait()["StatusCode"] != 0:
            raise RuntimeError("the flood container failed")
        started = time.perf_counter()
        subprocess.run(
            ["docker", "logs", container.id], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return time.perf_counter() - started
    finally:
        container.remove(force=True)


def bench_flood(client: docker.DockerClient, work: Path, gib: float) -> None:
    size = int(gib * 1024**3)
    script = f'yes "a line of output that is about sixty bytes long, repeated" | head -c {size}'
    mission = textwrap.dedent(
        f"""\
        name: flood
        on: [push]
        jobs:
          loud:
            tools: [sh, "yes", head]
            steps:
              - run: {script}
        """
    )
    repo = repo_with(work / "flood", mission)
    state = work / "state"
    load = os.getloadavg()[0]
    wall, rss, out = watched_run(repo, state)
    result = json.loads(out)
    step_s = result["jobs"]["loud"]["steps"][0]["duration_ms"] / 1000
    events = state / "runs" / result["run_id"] / "events.jsonl"
    lines = sum(1 for line in events.open("rb") if b'"kind":"output"' in line)
    line = b"a line of output that is about sixty bytes long, repeated\n"
    expected = -(-size // len(line))  # the last line may be cut short
    image = result["jobs"]["loud"]["image"]
    logs_s = docker_logs_rate(client, image, ["sh", "-e", "-c", script])
    ours, theirs = size / step_s / 1024**2, size / logs_s / 1024**2
    print(
        f"flood: one step printing {gib:g} GiB; load {load:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print(f"  docker logs of the same container  {logs_s:6.1f} s  {theirs:6.1f} MiB/s")
    print(
        f"  runner step (redacted, event log)  {step_s:6.1f} s  {ours:6.1f} MiB/s  "
        f"(whole run {wall:.1f} s)"
    )
    print(f"  ratio runner / docker logs         {ours / theirs:6.2f}x   (target >= 0.5x)")
    print(f"  runner peak RSS {rss.peak_kib / 1024:.0f} MiB (target < 150 MiB)")
    print(f"  output lines recorded {lines:,} of ~{expected:,} printed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="steps in the overhead job")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds of overhead")
    parser.add_argument("--jobs", type=int, default=200, help="jobs in the fan-out")
    parser.add_argument("--parallel", type=int, default=32)
    parser.add_argument("--scale", action="store_true", help="also 1,000 sleeping steps")
    parser.add_argument("--scale-jobs", type=int, default=1000)
    parser.add_argument("--sleep", type=int, default=240)
    parser.add_argument("--flood", action="store_true", help="also a step printing 1 GiB")
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument(
        "--engines", default="docker", help="comma-separated: docker, podman (side by side)"
    )
    args = parser.parse_args(argv)
    for engine in args.engines.split(","):
        client = bench_client(engine=engine)
        with on_engine(engine), tempfile.TemporaryDirectory(prefix="runner-bench-") as tmp:
            print(f"== {detect(client.version()).describe()} ==")
            work = Path(tmp)
            if not args.skip_overhead:
                bench_overhead(client, work, args.n, args.rounds)
            if not args.skip_fanout:
                bench_fanout(client, work, args.jobs, args.parallel)
            if args.scale:
                bench_scale(work, args.scale_jobs, args.sleep, engine)
            if args.flood:
                bench_flood(client, work, args.gib)
        client.close()
    return 0


@contextlib.contextmanager
def on_engine(engine: str) -> Iterator[None]:
    """`runner run` (a subprocess) on `engine`: DOCKER_HOST at its socket meanwhile."""
    saved = os.environ.get("DOCKER_HOST")
    host = ENGINES[engine]
    if host is not None:
        os.environ["DOCKER_HOST"] = host
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = saved


if __name__ == "__main__":
    raise SystemExit(main())
