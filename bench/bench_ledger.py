"""Ledger benchmarks (SPEC 9): durable appends per second from one writer (target >=
2,000/s), `runner audit verify` of a 1,000,000-entry ledger (target < 10 s on 2 cores,
memory flat), and the peak memory of `audit verify` and of the writer's check when the
ledger holds one 100 MB line (memory flat in the length of a line, too).

    .venv/bin/python bench/bench_ledger.py [--appends 3000] [--entries 1000000]
                                           [--long-line-mb 100] [--dir DIR]

Appends go through `Ledger.append` (flock, tail check, one write, fdatasync) in a
directory on the disk under test (default: a temporary directory beside the repository);
for context the script also measures the bare `write + fdatasync` rate of that disk,
which bounds any durable append, and the same appends on tmpfs (/dev/shm), which shows
the ledger's own CPU cost. The 1M-entry ledger is generated directly - same line
builder (`ledger.make_line`), same leaf hashing, a signed checkpoint every 1,000 entries
- without 1M fsyncs; then `runner audit verify --json` runs as a real process, timed,
with its peak RSS from `resource.getrusage(RUSAGE_CHILDREN)`. The long line is written
into a small ledger (its fourth line replaced), and each command runs under a fresh
parent process, so that the peak RSS it reports is that command's alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runner.audit import checkpoint, ledger
from runner.audit.keys import Signer, write_public
from runner.audit.merkle import Frontier, leaf_hash

REPO = Path(__file__).resolve().parent.parent
RUNNER = Path(sys.executable).parent / "runner"


def bare_sync_rate(directory: Path, count: int) -> float:
    path = directory / "bare.bin"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    line = b"x" * 300 + b"\n"
    start = time.perf_counter()
    for _ in range(count):
        os.write(fd, line)
        os.fdatasync(fd)
    elapsed = time.perf_counter() - start
    os.close(fd)
    path.unlink()
    return count / elapsed


def append_rate(state: Path, count: int) -> float:
    signer = Signer.generate()
    fields = {
        "job": "test (shard=1)",
        "step": 3,
        "name": "unit tests",
        "status": "success",
        "reason": "",
        "exit_code": 0,
        "attempts": 1,
        "log_sha256": "ab" * 32,
    }
    started = {
        "mission": "bench",
        "mission_path": ".missions/bench.yml",
        "mission_digest": "cd" * 32,
        "policy_digest": "ef" * 32,
        "event": "manual",
        "commit": "",
        "invoker": "bench",
        "runner_version": "0",
    }
    with ledger.Ledger.open(state, signer=signer) as led:
        led.append("run.started", "bench", started)
        start = time.perf_counter()
        for i in range(count):
            led.append("step.finished", "bench", dict(fields, duration_ms=i))
        elapsed = time.perf_counter() - start
    return count / elapsed


def generate(root: Path, entries: int) -> tuple[Path, Signer, float]:
    """A repo dir with .runner/ledger of `entries` entries and policies/keys/<key>.pub."""
    signer = Signer.generate()
    write_public(root, signer.public)
    state = root / ".runner"
    directory = ledger.ledger_dir(state)
    directory.mkdir(parents=True)
    origin = f"runner/bench/{os.urandom(8).hex()}"
    (directory / ledger.ORIGIN).write_text(origin + "\n")
    kid = signer.public.key_id
    frontier = Frontier()
    prev = ledger.GENESIS
    ts = time.time_ns() // 1_000_000
    start = time.perf_counter()
    kinds = ("step.started", "step.finished", "artifact.stored")
    with (
        open(directory / ledger.ENTRIES, "wb", buffering=1 << 20) as out,
        open(directory / ledger.CHECKPOINTS, "w", encoding="utf-8") as notes,
    ):
        for seq in range(entries):
            fields = {
                "job": f"test (shard={seq % 8})",
                "step": seq % 5,
                "result": "success",
                "exit_code": 0,
                "duration_ms": seq % 9973,
                "log_digest": "ab" * 32,
            }
            line = ledger.make_line(
                origin, seq, prev, kinds[seq % 3], f"run-{seq // 500}", kid, fields, ts=ts + seq
            )
            out.write(line + b"\n")
            leaf = leaf_hash(line)
            frontier.append(leaf)
            prev = leaf.hex()
            if frontier.size % ledger.CHECKPOINT_EVERY == 0 or seq == entries - 1:
                cp = checkpoint.Checkpoint(origin, frontier.size, frontier.root())
                notes.write(checkpoint.sign(cp, signer) + "\n")
    return state, signer, time.perf_counter() - start


MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True)\n"
    "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)\n"
)


def peak_rss(repo: Path, state: Path, *args: str) -> tuple[int, int, float]:
    """(exit code, peak RSS in MiB, seconds) of `runner --state-dir STATE ARGS` in `repo`."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(RUNNER), "--state-dir", str(state), *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    code, peak = done.stdout.split()
    return int(code), int(peak), time.perf_counter() - start


def long_line(base: Path, megabytes: int) -> None:
    """Peak memory of verify and of the writer's check with one huge line in the ledger."""
    repo = base / "long"
    repo.mkdir()
    signer = Signer.generate()
    write_public(repo, signer.public)
    state = repo / ".runner"
    with ledger.Ledger.open(state, signer=signer) as led:
        for i in range(8):
            led.append("gc.pruned", None, {"runs": [f"r{i}"], "containers": 0, "volumes": 0})
    keys = state / "keys"
    (keys / "current").write_text(signer.name + "\n")
    pem = keys / f"{signer.name}.pem"
    pem.write_bytes(signer.pem())
    pem.chmod(0o600)
    _, small, _ = peak_rss(repo, state, "audit", "verify", "--json")
    path = ledger.ledger_dir(state) / ledger.ENTRIES
    lines = path.read_bytes().splitlines(keepends=True)
    huge = b'{"x":"' + b"a" * (megabytes << 20) + b'"}\n'
    with path.open("wb") as out:
        out.write(b"".join(lines[:3]) + huge + b"".join(lines[4:]))
    code, peak, took = peak_rss(repo, state, "audit", "verify", "--json")
    print(
        f"audit verify with a {megabytes} MB line: peak RSS {peak} MiB "
        f"(an 8-entry ledger: {small} MiB), {took:.2f} s, exit {code} (UNPARSEABLE, as it should)"
    )
    with path.open("ab") as out:
        out.write(huge)  # a torn tail after the damage: the writer refuses before reading it
    code, peak, took = peak_rss(repo, state, "audit", "checkpoint")
    print(
        f"writer's check (audit checkpoint) of that ledger: peak RSS {peak} MiB, {took:.2f} s, "
        f"exit {code} (refused: the entries no longer make what runner signed)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--appends", type=int, default=3000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--long-line-mb", type=int, default=100)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (a disk to test)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-ledger-", dir=args.dir or REPO.parent))
    try:
        print(f"disk under test: {base}")
        bare = bare_sync_rate(base, min(args.appends, 1000))
        print(
            f"bare write+fdatasync on this disk:   {bare:8.0f}/s (the ceiling for durable appends)"
        )
        rate = append_rate(base / "appends" / ".runner", args.appends)
        print(
            f"durable appends, one writer:         {rate:8.0f}/s "
            f"({100 * rate / bare:.0f}% of bare; target >= 2,000/s)"
        )
        shm = Path("/dev/shm")
        if shm.is_dir():
            scratch = Path(tempfile.mkdtemp(prefix="bench-ledger-", dir=shm))
            try:
                cpu = append_rate(scratch / ".runner", args.appends)
                print(f"same appends on tmpfs (CPU cost):    {cpu:8.0f}/s")
            finally:
                shutil.rmtree(scratch)
        repo = base / "repo"
        repo.mkdir()
        state, _, took = generate(repo, args.entries)
        size = (ledger.ledger_dir(state) / ledger.ENTRIES).stat().st_size
        print(f"generated {args.entries:,} entries ({size / 1e6:.0f} MB) in {took:.1f} s")
        env = {**os.environ, "RUNNER_STATE_DIR": str(state)}
        start = time.perf_counter()
        proc = subprocess.run(
            [str(RUNNER), "audit", "verify", "--json"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        report = json.loads(proc.stdout)
        print(
            f"audit verify of {report['entries']:,} entries: {elapsed:.2f} s wall "
            f"(target < 10 s), exit {proc.returncode}, ok={report['ok']}, "
            f"{report['checkpoints']} checkpoints, peak RSS {peak:.0f} MiB"
        )
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-2000:])
        long_line(base, args.long_line_mb)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
