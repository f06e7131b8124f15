"""Benchmark: load and validate (and plan, runner.mission.plan) a 1,000-job mission.

Generates a mission of 1,000 jobs in 10 needs chains, every tenth job with a 2x3 matrix,
expressions in env/if/run/outputs, then prints the median of 5 timed runs of
`load_mission` (read + YAML + schema + semantic checks + records) and of planning.
Target (SPEC 9): under 1 s for validation and planning together.

    .venv/bin/python bench/bench_validate.py [--jobs N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def generate(jobs: int) -> str:
    lines = ["name: big", "on: [push, manual]", "env: {LEVEL: fast}", "jobs:"]
    for index in range(jobs):
        job = f"j{index}"
        lines.append(f"  {job}:")
        if index >= 10:
            lines.append(f"    needs: [j{index - 10}]")
            lines.append(
                "    if: ${{ success() && needs." + f"j{index - 10}" + ".result == 'success' }}"
            )
        if index % 10 == 0:
            lines += [
                "    strategy:",
                "      matrix:",
                "        os: [linux, mac]",
                "        shard: [1, 2, 3]",
                "        include: [{os: linux, extra: true}]",
                "        exclude: [{os: mac, shard: 3}]",
            ]
        lines += [
            "    env:",
            f"      JOB: {job}",
            "      SHARD: ${{ matrix.shard }}" if index % 10 == 0 else "      SHARD: none",
            "    outputs:",
            "      out: ${{ steps.s1.outputs.value }}",
            "    steps:",
            "      - id: s1",
            '        run: echo "value=${{ env.JOB }}" >> "$RUNNER_OUTPUT"',
            "      - name: second",
            "        if: ${{ steps.s1.outcome == 'success' }}",
            "        run: |",
            "          echo ${{ steps.s1.outputs.value }}",
            '          test -n "$JOB"',
            "        retry: {max-attempts: 2, delay: 1s, on: [failure]}",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from runner.mission.loader import load_mission

    try:
        from runner.mission import plan
    except ImportError:  # pragma: no cover - plan.py not written yet
        plan = None  # type: ignore[assignment]

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.yml"
        path.write_text(generate(args.jobs), encoding="utf-8")
        size = path.stat().st_size
        load_times: list[float] = []
        cpu_times: list[float] = []
        plan_times: list[float] = []
        for _ in range(args.repeat):
            start, cpu = time.perf_counter(), time.process_time()
            mission, _findings = load_mission(path)
            load_times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu)
            if plan is not None:
                start = time.perf_counter()
                plan.instances(mission)
                plan.levels(mission)
                plan_times.append(time.perf_counter() - start)
    load = statistics.median(load_times)
    print(f"mission: {args.jobs} jobs ({size} bytes)")
    print(
        f"load+validate: median {load:.3f} s of {args.repeat} "
        f"(first, cold caches: {load_times[0]:.3f} s; CPU median {statistics.median(cpu_times):.3f} s)"
    )
    if plan_times:
        planned = statistics.median(plan_times)
        print(f"plan:          median {planned:.3f} s of {args.repeat}")
        print(f"total:         {load + planned:.3f} s (target < 1 s)")


if __name__ == "__main__":
    main()
