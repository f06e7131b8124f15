"""The scheduler's semantics, pure: the real Executor and JobRunner on the in-memory engine.

Jobs along `needs`, their `if` (`success()`, `always()`, `failure()`, `cancelled()`),
skips cascading, outputs through `needs.<job>.outputs`, matrix fail-fast,
`strategy.max-parallel` and `--max-parallel`, cancellation mid-step, and nothing left
behind. tests/run/test_run.py runs the same semantics in real containers.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from fake_run import run_mission, script_of, scripted

from runner.engine.backend import ContainerSpec
from runner.engine.fake import Behaviour, Exit, FakeBackend, Hang, Script
from runner.records.results import Status


def test_outputs_env_files_and_matrix_outputs_pass_along_needs(tmp_path: Path) -> None:
    done = run_mission(
        tmp_path,
        """\
        name: flow
        on: [manual]
        jobs:
          a:
            steps:
              - id: make
                run: |
                  out word=hello
                  env FROM_A=set-by-env-file
              - run: print $FROM_A
            outputs:
              word: ${{ steps.make.outputs.word }}
          b:
            needs: [a]
            env: {GOT: "${{ needs.a.outputs.word }}"}
            steps: [{run: ok}]
          m:
            strategy:
              matrix: {shard: [1, 2], include: [{shard: 3, slow: true}]}
            steps:
              - id: s
                run: out seen=${{ matrix.shard }}-${{ matrix.slow }}
            outputs:
              seen: ${{ steps.s.outputs.seen }}
          after-m:
            needs: [m]
            env: {SEEN: "${{ needs.m.outputs.seen }}", RESULT: "${{ needs.m.result }}"}
            steps: [{run: ok}]
        """,
    )
    assert {key: job.status for key, job in done.jobs.items()} == {
        "a": Status.SUCCESS,
        "b": Status.SUCCESS,
        "m (1)": Status.SUCCESS,
        "m (2)": Status.SUCCESS,
        "m (3, true)": Status.SUCCESS,
        "after-m": Status.SUCCESS,
    }
    assert done.jobs["a"].outputs == {"word": "hello"}
    assert done.specs["a"][1].env["FROM_A"] == "set-by-env-file"  # the next step's env
    assert done.specs["b"][0].env["GOT"] == "hello"
    assert done.jobs["m (1)"].outputs == {"seen": "1-"}
    assert done.jobs["m (3, true)"].outputs == {"seen": "3-true"}
    after = done.specs["after-m"][0].env
    assert after["RESULT"] == "success" and after["SEEN"] in {"1-", "2-", "3-true"}
    assert done.left_behind() == ([], [])


def test_a_failure_skips_dependents_transitively_but_always_and_failure_run(
    tmp_path: Path,
) -> None:
    done = run_mission(
        tmp_path,
        """\
        name: fails
        on: [manual]
        jobs:
          a:
            steps:
              - run: exit 3
              - run: print never
          b: {needs: [a], steps: [{run: ok}]}
          c: {needs: [b], steps: [{run: ok}]}
          cleanup: {needs: [a], if: "${{ always() }}", steps: [{run: ok}]}
          report: {needs: [a], if: "failure()", steps: [{run: ok}]}
          on-cancel: {needs: [a], if: "cancelled()", steps: [{run: ok}]}
          soft: {continue-on-error: true, steps: [{run: exit 1}]}
          after-soft: {needs: [soft], steps: [{run: ok}]}
          fine: {steps: [{run: ok}]}
          no-failure: {needs: [fine], if: "failure()", steps: [{run: ok}]}
        """,
    )
    assert done.status() == {
        "a": ("failure", "step 'exit 3' failed: exit code 3"),
        "b": ("skipped", "dependency a did not succeed"),
        "c": ("skipped", "dependency b did not succeed"),
        "cleanup": ("success", ""),
        "report": ("success", ""),
        "on-cancel": ("skipped", "condition false"),
        "soft": ("failure", "step 'exit 1' failed: exit code 1"),
        "after-soft": ("success", ""),  # a continue-on-error job counts as a success
        "fine": ("success", ""),
        "no-failure": ("skipped", "condition false"),
    }
    assert done.jobs["soft"].continue_on_error is True
    steps = done.jobs["a"].steps
    assert [(s.status, s.reason) for s in steps] == [
        (Status.FAILURE, "exit code 3"),
        (Status.SKIPPED, "condition false"),
    ]
    ran = sorted(done.specs)
    assert ran == ["a", "after-soft", "cleanup", "fine", "report", "soft"]  # skipped: none
    assert done.left_behind() == ([], [])


def test_fail_fast_cancels_running_siblings_and_kills_their_containers(tmp_path: Path) -> None:
    mission = """\
        name: ff
        on: [manual]
        jobs:
          m:
            strategy: {fail-fast: %s, matrix: {shard: [1, 2, 3]}}
            steps: [{run: ok}]
        """
    holder: list[FakeBackend] = []

    def script(spec: ContainerSpec) -> Behaviour:
        if spec.labels["runner.job"] == "m (1)":
            wait_until_running(holder[0], 3, 3)  # fails once its siblings run
            return Exit(1)
        return Hang() if holder[0] is backend else Exit(0, seconds=30)

    backend = FakeBackend(script)
    holder.append(backend)
    done = run_mission(tmp_path, mission % "true", backend=backend)
    assert done.status() == {
        "m (1)": ("failure", "step 'ok' failed: exit code 1"),
        "m (2)": ("cancelled", "cancelled by fail-fast"),
        "m (3)": ("cancelled", "cancelled by fail-fast"),
    }
    killed = {c.spec.labels["runner.job"] for c in backend.created if c.killed}
    assert killed == {"m (2)", "m (3)"}
    assert done.left_behind() == ([], [])

    relaxed_backend = FakeBackend(script)
    holder[0] = relaxed_backend
    relaxed = run_mission(tmp_path, mission % "false", backend=relaxed_backend)
    assert [relaxed.jobs[k].status for k in ("m (1)", "m (2)", "m (3)")] == [
        Status.FAILURE,
        Status.SUCCESS,
        Status.SUCCESS,
    ]
    assert not any(c.killed for c in relaxed_backend.created)


def test_fail_fast_never_starts_queued_siblings(tmp_path: Path) -> None:
    done = run_mission(
        tmp_path,
        """\
        name: ff
        on: [manual]
        jobs:
          m:
            strategy: {max-parallel: 1, matrix: {shard: [1, 2, 3]}}
            steps: [{run: exit 1}]
        """,
    )
    assert [done.jobs[k].status.value for k in ("m (1)", "m (2)", "m (3)")] == [
        "failure",
        "cancelled",
        "cancelled",
    ]
    assert done.jobs["m (3)"].reason == "cancelled by fail-fast"
    assert len(done.backend.created) == 1  # the siblings never had a container
    assert len(done.backend.called("create_volume")) == 1


def wait_until_running(backend: FakeBackend, count: int, total: int) -> None:
    """Real time (2 s at most) until `count` containers of `backend` run at once, or all
    of the `total` that are still to finish do."""
    end = time.monotonic() + 2
    while time.monotonic() < end:
        finished = sum(c.state == "exited" for c in backend.created)
        if len(backend.running()) >= min(count, total - finished):
            return
        time.sleep(0.001)


def overlapping(holder: list[FakeBackend], count: int, total: int) -> Script:
    """A script whose containers wait until `count` run at once: the most that ran
    together is then exactly what the scheduler allowed."""

    def script(spec: ContainerSpec) -> Behaviour:
        wait_until_running(holder[0], count, total)
        return scripted(spec)

    return script


def test_strategy_max_parallel_bounds_the_instances_running_at_once(tmp_path: Path) -> None:
    holder: list[FakeBackend] = []
    backend = FakeBackend(overlapping(holder, 2, 6))
    holder.append(backend)
    done = run_mission(
        tmp_path,
        """\
        name: mp
        on: [manual]
        jobs:
          m:
            strategy: {max-parallel: 2, matrix: {shard: [1, 2, 3, 4, 5, 6]}}
            steps: [{run: ok}]
        """,
        backend=backend,
        max_parallel=8,
    )
    assert all(job.status is Status.SUCCESS for job in done.jobs.values())
    assert backend.peak_running == 2
    assert len(backend.created) == 6
    assert done.left_behind() == ([], [])


def test_max_parallel_bounds_independent_jobs(tmp_path: Path) -> None:
    holder: list[FakeBackend] = []
    backend = FakeBackend(overlapping(holder, 3, 7))
    holder.append(backend)
    jobs = "\n".join(f"  j{n}: {{steps: [{{run: ok}}]}}" for n in range(7))
    done = run_mission(
        tmp_path, f"name: p\non: [manual]\njobs:\n{jobs}\n", backend=backend, max_parallel=3
    )
    assert [job.status for job in done.jobs.values()] == [Status.SUCCESS] * 7
    assert backend.peak_running == 3


def test_cancel_mid_step_kills_removes_and_cancels_everything_unfinished(
    tmp_path: Path,
) -> None:
    cancel = threading.Event()

    def script(spec: ContainerSpec) -> Behaviour:
        if script_of(spec) == "hang":
            cancel.set()  # Ctrl-C while the step runs
            return Hang([b"working\n"])
        return scripted(spec)

    done = run_mission(
        tmp_path,
        """\
        name: c
        on: [manual]
        jobs:
          long:
            steps:
              - run: hang
              - run: ok
          next: {needs: [long], steps: [{run: ok}]}
          always: {needs: [long], if: always(), steps: [{run: ok}]}
        """,
        script,
        cancel=cancel,
    )
    assert done.status() == {
        "long": ("cancelled", "interrupted"),
        "next": ("cancelled", "interrupted"),
        "always": ("cancelled", "interrupted"),  # after a cancel nothing new starts
    }
    steps = done.jobs["long"].steps
    assert [(s.status, s.reason) for s in steps] == [
        (Status.CANCELLED, "interrupted"),
        (Status.CANCELLED, "interrupted"),
    ]
    assert steps[0].tail == ["working"]
    (hung,) = [c for c in done.backend.created if script_of(c.spec) == "hang"]
    assert hung.killed and hung.removed
    assert "next" not in done.specs and "always" not in done.specs
    assert done.left_behind() == ([], [])
    assert done.real_s < 5


def test_no_container_or_volume_outlives_its_job(tmp_path: Path) -> None:
    """Each step gets a fresh container; each job one volume; all removed, whatever the
    outcome of the job."""
    done = run_mission(
        tmp_path,
        """\
        name: tidy
        on: [manual]
        jobs:
          good: {steps: [{run: ok}, {run: ok}, {run: ok}]}
          bad: {steps: [{run: ok}, {run: exit 2}]}
          slow: {steps: [{run: hang, timeout-minutes: 0.01}]}
        """,
    )
    created = [c.spec.labels["runner.job"] for c in done.backend.created]
    assert sorted(created) == ["bad", "bad", "good", "good", "good", "slow"]
    assert all(c.removed for c in done.backend.created)
    volumes = [str(name) for name, *_ in done.backend.called("create_volume")]
    assert len(volumes) == len(set(volumes)) == 3  # one volume per job
    assert sorted(str(name) for (name,) in done.backend.called("remove_volume")) == sorted(volumes)
    assert done.left_behind() == ([], [])


def test_windows_and_macos_instances_are_skipped_and_never_run(tmp_path: Path) -> None:
    done = run_mission(
        tmp_path,
        """\
        name: m
        jobs:
          test:
            strategy: {matrix: {os: [ubuntu-latest, windows-latest, macos-latest]}}
            runs-on: ${{ matrix.os }}
            steps: [{run: print on-linux}]
          after:
            needs: [test]
            runs-on: [self-hosted, linux]
            steps: [{run: ok}]
        """,
    )
    skipped = "runner runs jobs in Linux containers only, so this job is skipped"
    assert done.status() == {
        "test (ubuntu-latest)": ("success", ""),
        "test (windows-latest)": ("skipped", f"runs-on windows-latest: {skipped}"),
        "test (macos-latest)": ("skipped", f"runs-on macos-latest: {skipped}"),
        "after": ("success", ""),  # a skipped instance fails no job that needs it
    }
    assert sorted(done.specs) == ["after", "test (ubuntu-latest)"]
