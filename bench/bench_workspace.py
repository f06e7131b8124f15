"""A one-step job in a 20,000-file, 200+ MB repository against the same job in a tiny
one, measured in the same run (SPEC 9: at most 1.5x after the first seed of a commit).

    .venv/bin/python bench/bench_workspace.py [--files 20000] [--mib 220] [-n 3]

Both repositories are git repositories whose files are committed (random bytes, so that
nothing compresses). For each: the first run of a new commit (the run seeds the
commit's snapshot volume once), then `-n` runs of the same commit (the snapshot is
reused), each a whole `runner run` subprocess (interpreter, repository scan, snapshot,
workspace, step, ledger, event log). Printed: medians of the whole process and of the
job (`job.duration_ms`: workspace view, step, cleanup), and big / tiny ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import repo_with, runner

MISSION = (
    'name: ws\non: [push]\njobs:\n  one:\n    tools: [sh, "true"]\n    steps: [{run: "true"}]\n'
)
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "-c", "gc.auto=0"]


def git(repo: Path, *args: str) -> None:
    subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True)


def make_repo(root: Path, files: int, total_bytes: int) -> Path:
    repo = repo_with(root, MISSION)
    size = total_bytes // max(files, 1)
    for index in range(files):
        folder = root / "src" / f"d{index // 500:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index:05d}.bin").write_bytes(os.urandom(size))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "bench")
    return repo


def new_commit(repo: Path, number: int) -> None:
    (repo / "README").write_text(f"commit {number}\n")
    git(repo, "commit", "-q", "-a", "-m", f"commit {number}")


def measure(repo: Path, state: Path, runs: int, commit: int) -> dict[str, Any]:
    new_commit(repo, commit)
    first_wall, first = runner(repo, state)
    walls, jobs = [], []
    for _ in range(runs):
        wall, result = runner(repo, state)
        walls.append(wall)
        jobs.append(result["jobs"]["one"]["duration_ms"] / 1000)
    return {
        "first_wall": first_wall,
        "first_job": first["jobs"]["one"]["duration_ms"] / 1000,
        "wall": statistics.median(walls),
        "job": statistics.median(jobs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--mib", type=int, default=220)
    parser.add_argument("-n", type=int, default=3, help="runs of the same commit")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="runner-bench-ws-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        state = work / "state"
        started = time.perf_counter()
        tiny = make_repo(work / "tiny", 1, 1024)
        big = make_repo(work / "big", args.files, args.mib * 1024 * 1024)
        made = time.perf_counter() - started
        runner(tiny, state)  # builds the toolset image once, for both
        small = measure(tiny, state, args.n, 1)
        large = measure(big, state, args.n, 1)
    print(f"workspace: a one-step job, {args.files:,} files / {args.mib} MiB against 1 file")
    print(f"  (repositories made and committed in {made:.0f} s; load {os.getloadavg()[0]:.1f})")
    for label, key in (
        ("first run of a commit", "first"),
        (f"same commit, median of {args.n}", ""),
    ):
        wall, job = (f"{key}_wall", f"{key}_job") if key else ("wall", "job")
        print(f"  {label}:")
        print(
            f"    tiny  whole run {small[wall]:6.2f} s   job {small[job]:6.2f} s\n"
            f"    big   whole run {large[wall]:6.2f} s   job {large[job]:6.2f} s"
        )
        ratio = large[wall] / small[wall]
        target = "(target <= 1.5x)" if not key else "(seeds the snapshot once)"
        print(
            f"    ratio big / tiny  {ratio:5.2f}x whole run, {large[job] / small[job]:5.2f}x job {target}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
