"""Flat memory for any line length (issue 11, item 12): a 100 MB line in entries.jsonl
costs `audit verify`, the writer's tail check and torn-tail recovery no more memory than
a short one; `Ledger.append` never writes an entry over MAX_ENTRY_BYTES. Peak memory is
measured on real processes (each in a fresh parent, so that its RUSAGE_CHILDREN is the
runner's alone)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import RUNNER, invoke
from declared import run_started, step_finished
from forge import entries_path, raw_lines, write_lines

from runner.audit import canonical
from runner.audit.keys import load_signer
from runner.audit.ledger import MAX_ENTRY_BYTES, Ledger
from runner.errors import InvalidInput

HUGE = 100 << 20
MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024\n"
    "print(done.returncode, peak)\n"
    "sys.stderr.write(done.stdout + done.stderr)\n"
)


def peak_mib(repo: Path, *args: str) -> tuple[int, int, str]:
    """(exit code, peak RSS in MiB, output) of `runner ARGS` run in `repo`."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *RUNNER, "--state-dir", ".runner", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    code, peak = done.stdout.split()
    return int(code), int(peak), done.stderr


@pytest.fixture
def repo(in_tmp: Path) -> Path:
    assert invoke(in_tmp / ".runner", "keys", "init").code == 0
    signer = load_signer(in_tmp / ".runner", in_tmp, create=False, say=print)
    with Ledger.open(in_tmp / ".runner", signer=signer) as led:
        for i in range(6):
            led.append("step.finished", "r", step_finished(i))
    return in_tmp


def huge_line() -> bytes:
    return b'{"x":"' + b"a" * HUGE + b'"}'


def test_append_refuses_an_entry_over_the_limit_and_writes_nothing(repo: Path) -> None:
    state = repo / ".runner"
    before = entries_path(state).read_bytes()
    signer = load_signer(state, repo, create=False, say=print)
    with Ledger.open(state, signer=signer) as led:
        fields = run_started() | {"mission": "m" * MAX_ENTRY_BYTES}
        with pytest.raises(InvalidInput, match="over the limit of 1048576 bytes") as info:
            led.append("run.started", "r", fields)
        assert "was not recorded" in str(info.value)
        assert entries_path(state).read_bytes() == before
        led.append("step.finished", "r", step_finished(9))  # and the ledger goes on
    assert invoke(state, "audit", "verify").code == 0


def test_verify_of_a_100_mb_line_keeps_memory_flat(repo: Path) -> None:
    code, baseline, _ = peak_mib(repo, "audit", "verify")
    assert code == 0
    lines = raw_lines(repo / ".runner")
    write_lines(repo / ".runner", [*lines[:3], huge_line() + b"\n", *lines[4:]])
    offset = sum(len(line) for line in lines[:3])
    code, peak, output = peak_mib(repo, "audit", "verify", "--json")
    assert code == 1, output
    assert peak < baseline + 24, f"verify peaked at {peak} MiB (baseline {baseline} MiB)"
    result = invoke(repo / ".runner", "audit", "verify", "--json").json()
    bad = next(f for f in result["findings"] if f["code"] == "UNPARSEABLE")
    assert (bad["seq"], bad["offset"]) == (3, offset)
    assert f"{HUGE + 8} bytes long, over the {MAX_ENTRY_BYTES}-byte limit" in bad["message"]
    assert "not parsed" in bad["message"]
    chain = next(f for f in result["findings"] if f["code"] == "CHAIN_BREAK")
    assert chain["seq"] == 4  # the line after it is still linked against its real hash


def test_the_writers_tail_check_of_a_100_mb_line_keeps_memory_flat(repo: Path) -> None:
    code, baseline, _ = peak_mib(repo, "audit", "checkpoint")
    assert code == 0
    path = entries_path(repo / ".runner")
    with path.open("ab") as handle:  # appended after the last checkpoint runner signed
        handle.write(huge_line() + b"\n")
    before = (repo / ".runner" / "ledger" / "checkpoints").read_bytes()
    code, peak, output = peak_mib(repo, "audit", "checkpoint")
    assert code == 1 and "UNPARSEABLE (seq 6)" in output and "over the" in output, output
    assert peak < baseline + 24, f"the writer peaked at {peak} MiB (baseline {baseline} MiB)"
    assert (repo / ".runner" / "ledger" / "checkpoints").read_bytes() == before


def test_a_100_mb_torn_tail_is_quarantined_in_bounded_blocks(repo: Path) -> None:
    code, baseline, _ = peak_mib(repo, "audit", "checkpoint")
    assert code == 0
    path = entries_path(repo / ".runner")
    good = path.read_bytes()
    torn = huge_line()  # no newline: what a crash mid-write leaves
    with path.open("ab") as handle:
        handle.write(torn)
    code, peak, output = peak_mib(repo, "audit", "checkpoint")
    assert code == 0, output
    assert peak < baseline + 24, f"recovery peaked at {peak} MiB (baseline {baseline} MiB)"
    assert path.read_bytes().startswith(good)
    recovery = canonical.loads(raw_lines(repo / ".runner")[-1][:-1])
    assert recovery["type"] == "recovery" and recovery["length"] == len(torn)
    assert recovery["sha256"] == hashlib.sha256(torn).hexdigest()
    kept = repo / ".runner" / "ledger" / recovery["quarantined"]
    assert kept.stat().st_size == len(torn)
    assert invoke(repo / ".runner", "audit", "verify").code == 0


def test_show_reports_a_long_line_without_printing_it(repo: Path) -> None:
    lines = raw_lines(repo / ".runner")
    write_lines(repo / ".runner", [*lines, b'{"x":"' + b"b" * (2 << 20) + b'"}\n'])
    shown = invoke(repo / ".runner", "audit", "show")
    assert shown.code == 0 and "over the 1048576-byte entry limit" in shown.out
    assert len(shown.out) < 10_000
