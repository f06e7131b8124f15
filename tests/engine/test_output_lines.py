"""A step's stdout and stderr lines stay whole when both streams are written at once, in
real containers: the two pipes reach runner merged by whole lines (`runner.engine.lines`;
without an engine: test_lines.py), whatever the engine's order of their payloads. These
tests run again on Podman (tests/podman/test_podman_output.py)."""

from __future__ import annotations

import pytest
from engine.test_output_complete import read_all, spec

from runner.engine.docker.backend import DockerBackend

pytestmark = pytest.mark.docker
ROUNDS = 200
# a stderr fragment, a whole stdout line, then the rest of stderr's line; every 20th round
# waits between the fragment and the stdout line, so stdout's line certainly arrives while
# stderr's is open, whatever the engine's pace; stdout's last line is unterminated
SCRIPT = (
    f"i=0; while [ $i -lt {ROUNDS} ]; do "
    'printf "sh: $i " >&2; '
    "[ $((i % 20)) -eq 0 ] && sleep 0.05; "
    'printf "@out=$i\\n"; '
    'printf "rest of $i\\n" >&2; '
    "i=$((i+1)); done; "
    "printf 'last out'; printf 'last err\\n' >&2"
)


def test_interleaved_partial_lines_of_both_streams_come_out_whole(
    backend: DockerBackend, run_id: str
) -> None:
    cid = backend.create(spec(run_id, SCRIPT))
    try:
        code, output, error = read_all(backend, cid)
    finally:
        backend.remove(cid)
    assert (code, error) == (0, None)
    assert_whole_lines(output)


def assert_whole_lines(output: bytes) -> None:
    """`SCRIPT`'s output, each stream's lines whole and in order (also on a cluster:
    tests/kubernetes/test_kubernetes_backend.py)."""
    lines = output.decode().split("\n")
    assert [line for line in lines if line.startswith("@")] == [f"@out={i}" for i in range(ROUNDS)]
    assert [line for line in lines if line.startswith("sh:")] == [
        f"sh: {i} rest of {i}" for i in range(ROUNDS)
    ]
    assert lines.count("last err") == 1  # where it is: the engine orders the two pipes
    assert lines[-1] == "last out"  # stdout's unterminated end comes last
    assert len(lines) == 2 * ROUNDS + 2  # nothing glued, nothing lost
