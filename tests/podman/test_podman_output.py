"""A step's output is complete on Podman too, or runner says it is not: the output tests
run again on Podman's Docker API (imported from tests/engine), then fast steps many at a
time, the shape whose last lines Podman 4.3's attach used to lose under load (the
container exited and Podman closed the attach before the last bytes reached runner)."""

from __future__ import annotations

import threading
import uuid

import pytest
from engine.test_output_complete import (  # the same tests, run here against Podman
    read_all,
    spec,
    test_a_background_process_holding_stdout_neither_hangs_nor_cuts_the_output,
    test_a_run_whose_step_output_was_cut_fails_and_records_why,
    test_a_step_runner_kills_needs_no_trailer,
    test_a_steps_output_comes_out_exact_and_complete,
    test_an_acked_step_exits_at_once_and_so_does_one_nobody_reads,
    test_output_cut_by_a_container_stopped_outside_runner_is_reported,
    test_runner_init_waits_for_the_ack_and_not_beyond_its_bound,
    test_ten_megabytes_come_out_exact,
    test_the_step_never_sees_the_nonce,
    test_the_steps_deadline_still_holds_and_ends_the_output,
)
from engine.test_output_lines import (  # stdout's and stderr's lines whole, here on Podman
    test_interleaved_partial_lines_of_both_streams_come_out_whole,
)

from runner.engine.docker.backend import DockerBackend

pytestmark = [pytest.mark.docker, pytest.mark.podman]
__all__ = [  # collected here too, with DOCKER_HOST on Podman's socket
    "test_a_background_process_holding_stdout_neither_hangs_nor_cuts_the_output",
    "test_a_run_whose_step_output_was_cut_fails_and_records_why",
    "test_a_step_runner_kills_needs_no_trailer",
    "test_a_steps_output_comes_out_exact_and_complete",
    "test_an_acked_step_exits_at_once_and_so_does_one_nobody_reads",
    "test_interleaved_partial_lines_of_both_streams_come_out_whole",
    "test_output_cut_by_a_container_stopped_outside_runner_is_reported",
    "test_runner_init_waits_for_the_ack_and_not_beyond_its_bound",
    "test_ten_megabytes_come_out_exact",
    "test_the_step_never_sees_the_nonce",
    "test_the_steps_deadline_still_holds_and_ends_the_output",
]
STEPS, AT_ONCE = 32, 4
SHAPES = {  # a step that prints and exits at once, each stream's bytes as printed
    "lines": (
        "i=0; while [ $i -lt 30 ]; do echo line $i; i=$((i+1)); done",
        "".join(f"line {i}\n" for i in range(30)).encode(),
    ),
    "both": ("echo one; echo two >&2; printf three", b"one\ntwo\nthree"),
    "block": ("head -c 300000 /dev/zero | tr '\\0' x", b"x" * 300_000),
}


def test_fast_steps_many_at_a_time_print_everything(backend: DockerBackend) -> None:
    run_id = "t" + uuid.uuid4().hex[:12]
    shapes = list(SHAPES.values())
    wrong: list[str] = []
    errors: list[BaseException] = []

    def worker(first: int) -> None:
        try:
            for n in range(first, STEPS, AT_ONCE):
                script, expected = shapes[n % len(shapes)]
                cid = backend.create(spec(run_id, script))
                try:
                    code, output, error = read_all(backend, cid)
                finally:
                    backend.remove(cid)
                if (code, sorted(output), error) != (0, sorted(expected), None):
                    wrong.append(f"{script}: exit {code}, {len(output)} bytes, {error}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(AT_ONCE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert wrong == []
