"""A job's semantics, pure: its steps through the real JobRunner on the in-memory engine.

Step conditions, `continue-on-error`, retries (attempts, `retry.on`, seeded backoff on
the clock), timeouts (step, job, policy limit) on a clock that costs no real time, the
mount refusal, outputs read back directly or out of the stopped container, artifacts.
tests/run/test_run.py runs the same semantics in real containers.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import cast

import pytest
from fake_run import run_mission, script_of, scripted

from runner.engine.backend import Boots, ContainerSpec
from runner.engine.fake import Behaviour, Exit, FakeBackend, Script
from runner.engine.stepinit import contract
from runner.policy.model import Limits
from runner.records.events import StepStarted
from runner.records.results import Status
from runner.records.sink import Recorder, Sink
from runner.run.retry import attempt_delay, step_rng
from runner.run.step import INIT_GRACE_S


def attempt_of(spec: ContainerSpec) -> int:
    """The attempt number, from the step's $RUNNER_OUTPUT name (`<step>-<attempt>.output`)."""
    name = posixpath.basename(spec.env["RUNNER_OUTPUT"])
    return int(name.split(".")[0].split("-")[1])


def flaky(until: int) -> Script:
    """Fails (exit 1) every attempt before attempt `until`."""

    def script(spec: ContainerSpec) -> Behaviour:
        attempt = attempt_of(spec)
        return Exit(0 if attempt >= until else 1, [f"attempt {attempt}\n".encode()])

    return script


RETRYING = """\
    name: r
    on: [manual]
    jobs:
      j:
        steps:
          - run: flaky
            retry: {max-attempts: 4, backoff: exponential, delay: 10s, jitter: 0.5}
    """


def test_retries_count_attempts_and_wait_the_seeded_backoff_on_the_clock(
    tmp_path: Path,
) -> None:
    done = run_mission(tmp_path, RETRYING, flaky(3), retry_seed=7)
    (step,) = done.jobs["j"].steps
    assert (step.status, step.attempts, step.tail) == (Status.SUCCESS, 3, ["attempt 3"])
    retry = done.state.mission.jobs["j"].steps[0].retry
    assert retry is not None
    rng = step_rng(7, "j", 0)
    expected = [attempt_delay(retry, 1, rng), attempt_delay(retry, 2, rng)]
    assert done.clock.waits == expected
    assert expected != [10.0, 20.0]  # jittered: the seed decides
    assert done.clock_s == pytest.approx(sum(expected))
    assert done.real_s < 2, "the backoff slept in real time"
    assert len(done.backend.created) == 3 and done.left_behind() == ([], [])
    again = run_mission(tmp_path, RETRYING, flaky(3), retry_seed=7)
    assert again.clock.waits == expected
    other = run_mission(tmp_path, RETRYING, flaky(3), retry_seed=8)
    assert other.clock.waits != expected


def test_retry_on_tells_a_timeout_from_a_failure(tmp_path: Path) -> None:
    done = run_mission(
        tmp_path,
        """\
        name: r
        on: [manual]
        jobs:
          times-out:
            steps: [{run: hang, timeout-minutes: 0.05, retry: {max-attempts: 3, on: timeout}}]
          fails:
            steps: [{run: exit 1, retry: {max-attempts: 3, on: timeout}}]
          fails-default:
            steps: [{run: exit 1, retry: {max-attempts: 2}}]
          times-out-default:
            steps: [{run: hang, timeout-minutes: 0.05, retry: {max-attempts: 2}}]
        """,
        max_parallel=1,
    )
    attempts = {key: (job.steps[0].attempts, job.steps[0].reason) for key, job in done.jobs.items()}
    assert attempts == {
        "times-out": (3, "timeout"),
        "fails": (1, "exit code 1"),
        "fails-default": (2, "exit code 1"),
        "times-out-default": (1, "timeout"),  # `on` is [failure] unless said otherwise
    }
    assert done.left_behind() == ([], [])


def test_a_step_timeout_kills_its_container_on_the_clock(tmp_path: Path) -> None:
    done = run_mission(
        tmp_path,
        """\
        name: t
        on: [manual]
        jobs:
          slow:
            steps:
              - run: |
                  print started
                  hang
                timeout-minutes: 0.05
        """,
    )
    job = done.jobs["slow"]
    (step,) = job.steps
    assert (job.status, step.status, step.reason) == (Status.FAILURE, Status.FAILURE, "timeout")
    assert step.exit_code is None and step.tail == ["started"]
    (container,) = done.backend.created
    assert container.killed and container.removed
    assert 3 <= done.clock_s < 3.5  # killed at the deadline, on the run's clock
    assert step.duration_s == pytest.approx(done.clock_s, abs=0.3)
    assert done.real_s < 2, "the timeout was waited for in real time"


def test_the_job_timeout_and_the_policy_limit_bound_every_step(tmp_path: Path) -> None:
    done = run_mission(
        tmp_path,
        """\
        name: t
        on: [manual]
        jobs:
          job-limit:
            timeout-minutes: 0.1
            steps: [{run: sleep 4}, {run: sleep 4}, {run: ok}]
          exact:
            steps: [{run: sleep 4}]
        """,
        max_parallel=1,  # one clock for all: exact times need one job at a time
    )
    steps = done.jobs["job-limit"].steps
    assert [(s.status, s.reason) for s in steps] == [
        (Status.SUCCESS, ""),
        (Status.FAILURE, "timeout"),  # 6 s for the job: 2 s were left
        (Status.SKIPPED, "condition false"),
    ]
    exact = done.jobs["exact"]
    assert exact.steps[0].duration_s == 4.0  # durations are read on the run's clock
    limited = run_mission(
        tmp_path,
        """\
        name: t
        on: [manual]
        jobs:
          j: {timeout-minutes: 10, steps: [{run: hang}]}
        """,
        limits=Limits(timeout_minutes=0.05),
    )
    assert limited.jobs["j"].steps[0].reason == "timeout"
    assert 3 <= limited.clock_s < 3.5  # the policy's 3 s, not the job's 10 min


def test_continue_on_error_keeps_the_job_going_with_outcome_and_conclusion(
    tmp_path: Path,
) -> None:
    done = run_mission(
        tmp_path,
        """\
        name: coe
        on: [manual]
        jobs:
          j:
            steps:
              - id: s
                run: exit 4
                continue-on-error: true
              - id: n
                run: out seen=${{ steps.s.outcome }}/${{ steps.s.conclusion }}
              - id: e
                run: exit 5
                continue-on-error: ${{ 1 == 2 }}
              - run: ok
            outputs:
              seen: ${{ steps.n.outputs.seen }}
        """,
    )
    job = done.jobs["j"]
    assert [(s.status, s.outcome, s.reason) for s in job.steps] == [
        (Status.SUCCESS, Status.FAILURE, "exit code 4 (continue-on-error)"),
        (Status.SUCCESS, Status.SUCCESS, ""),
        (Status.FAILURE, Status.FAILURE, "exit code 5"),
        (Status.SKIPPED, Status.SKIPPED, "condition false"),
    ]
    assert job.outputs == {"seen": "failure/success"}
    assert (job.status, job.reason) == (Status.FAILURE, "step 'e' failed: exit code 5")


def test_step_conditions_after_a_failure(tmp_path: Path) -> None:
    done = run_mission(
        tmp_path,
        """\
        name: cond
        on: [manual]
        jobs:
          j:
            steps:
              - run: exit 1
              - {run: print plain}
              - {run: print on-success, if: success()}
              - {run: print on-failure, if: failure()}
              - {run: print always, if: always()}
              - {run: print on-cancel, if: cancelled()}
        """,
    )
    steps = done.jobs["j"].steps
    assert [s.status.value for s in steps] == [
        "failure",
        "skipped",
        "skipped",
        "success",
        "success",
        "skipped",
    ]
    assert [script_of(s) for s in done.specs["j"]] == [
        "exit 1",
        "print on-failure",
        "print always",
    ]


def test_the_next_step_is_prepared_while_one_runs_and_removed_unstarted_when_skipped(
    tmp_path: Path,
) -> None:
    """While a step runs, the next one's container is created and booted (runner-init
    waiting for its environment); a step that is then skipped never starts it (its
    command never runs), and it is removed with the job."""
    done = run_mission(
        tmp_path,
        """\
        name: m
        on: [manual]
        jobs:
          j:
            steps:
              - {run: hang, timeout-minutes: 0.05}
              - {run: print next}
        """,
    )
    assert [s.status for s in done.jobs["j"].steps] == [Status.FAILURE, Status.SKIPPED]
    assert [script_of(c.spec) for c in done.backend.created] == ["hang", "print next"]
    prepared = done.backend.created[1]
    assert prepared.state == "booted" and prepared.removed
    assert (prepared.id,) in done.backend.called("boot")
    assert (prepared.id,) not in done.backend.called("start")
    assert [script_of(s) for s in done.specs["j"]] == ["hang"]


class _StartsAtCreate:
    """The in-memory backend without `boot`: one that cannot hold a started container
    back, as Kubernetes, where a pod starts when it is created."""

    def __init__(self, inner: FakeBackend) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        if name == "boot":
            raise AttributeError(name)
        return getattr(self.inner, name)


def test_a_backend_that_cannot_boot_ahead_prepares_nothing(tmp_path: Path) -> None:
    inner = FakeBackend(scripted)
    backend = _StartsAtCreate(inner)
    assert not isinstance(backend, Boots)
    done = run_mission(
        tmp_path,
        """\
        name: m
        on: [manual]
        jobs:
          j:
            steps:
              - {run: sleep 0.3}
              - {run: sleep 0.2}
              - {run: print three}
        """,
        backend=cast(FakeBackend, backend),
    )
    assert [s.status for s in done.jobs["j"].steps] == [Status.SUCCESS] * 3
    # each container created when its step came: none while the one before it ran
    made = [c.method for c in inner.calls if c.method in ("create", "start")]
    assert made == ["create", "start"] * 3
    assert all(c.state != "booted" for c in inner.created)


def test_a_prepared_container_is_used_when_the_step_needs_that_spec(tmp_path: Path) -> None:
    """Steps whose specs do not change are run in the containers prepared for them; one
    whose env a step's $RUNNER_ENV changed gets a new container, the prepared one removed."""
    done = run_mission(
        tmp_path,
        """\
        name: m
        on: [manual]
        jobs:
          j:
            steps:
              - run: print one
              - run: print two
              - run: env LATE=set
              - run: print three
        """,
    )
    created = done.backend.created
    assert [script_of(c.spec) for c in created] == [
        "print one",
        "print two",
        "env LATE=set",
        "print three",  # prepared before LATE was set: not used
        "print three",
    ]
    assert [c.state for c in created] == ["exited", "exited", "exited", "booted", "exited"]
    assert [(c.id,) in done.backend.called("boot") for c in created] == [False, *[True] * 3, False]
    assert all(c.removed for c in created)
    assert "LATE" not in created[3].spec.env and created[4].spec.env["LATE"] == "set"


def test_a_prepared_container_has_the_path_runner_path_gave_the_steps_before(
    tmp_path: Path,
) -> None:
    """The container prepared for a step gets the PATH it will need: `$RUNNER_PATH`'s
    directories first, as a container made when the step comes would."""
    done = run_mission(
        tmp_path,
        """\
        name: m
        on: [manual]
        jobs:
          j:
            steps:
              - run: path /opt/tool/bin
              - run: print two
              - run: print three
        """,
    )
    kept = {(script_of(c.spec), c.state, c.removed) for c in done.backend.created}
    assert sorted(kept) == [
        ("path /opt/tool/bin", "exited", True),
        ("print three", "booted", True),  # prepared before the PATH changed: not used
        ("print three", "exited", True),  # prepared again with it, and used
        ("print two", "booted", True),
        ("print two", "exited", True),
    ]
    assert len(done.backend.created) == 5
    assert [script_of(s) for s in done.specs["j"]] == [
        "path /opt/tool/bin",
        "print two",
        "print three",
    ]
    (three,) = [
        c
        for c in done.backend.created
        if script_of(c.spec) == "print three" and c.state == "exited"
    ]
    assert (three.id,) in done.backend.called("boot")  # a prepared one
    assert three.spec.env["PATH"].startswith("/opt/tool/bin:")


def test_containers_are_prepared_two_steps_ahead_and_a_skipped_steps_is_never_started(
    tmp_path: Path,
) -> None:
    """While step 1 runs, steps 2 and 3 are prepared; step 1 fails, so step 2 is skipped
    (its container, booted, is never started and is removed) and step 3 (`always()`)
    runs in the container prepared for it."""
    done = run_mission(
        tmp_path,
        """\
        name: m
        on: [manual]
        jobs:
          j:
            steps:
              - run: exit 1
              - run: print two
              - {run: print three, if: always()}
        """,
    )
    assert [s.status for s in done.jobs["j"].steps] == [
        Status.FAILURE,
        Status.SKIPPED,
        Status.SUCCESS,
    ]
    created = done.backend.created
    assert [script_of(c.spec) for c in created] == ["exit 1", "print two", "print three"]
    assert [c.state for c in created] == ["exited", "booted", "exited"]
    assert all(c.removed for c in created)
    assert [(c.id,) in done.backend.called("boot") for c in created] == [False, True, True]
    assert [script_of(s) for s in done.specs["j"]] == ["exit 1", "print three"]


def test_a_prepared_container_is_used_only_if_runner_init_kills_it_no_earlier_than_due(
    tmp_path: Path,
) -> None:
    """A step with its own timeout counts it from its start: its container, prepared
    earlier, carries runner-init's deadline `PREPARED_SLACK_S` later than if it started
    then. Step 2 starts 1 s after: that container is used. Step 4 starts over 5 s after
    its container was prepared: runner-init would kill it before its time, so it gets a
    new one, whose deadline counts from its own start."""
    done = run_mission(
        tmp_path,
        """\
        name: m
        on: [manual]
        jobs:
          j:
            steps:
              - run: sleep 1
              - {run: print two, timeout-minutes: 1}
              - run: sleep 5
              - {run: print four, timeout-minutes: 1}
        """,
    )
    assert all(s.status is Status.SUCCESS for s in done.jobs["j"].steps)
    created = done.backend.created
    assert [script_of(c.spec) for c in created] == [
        "sleep 1",
        "print two",
        "sleep 5",
        "print four",
        "print four",
    ]
    assert [c.state for c in created] == ["exited", "exited", "exited", "booted", "exited"]
    two, four = created[1].spec.deadline_s, created[4].spec.deadline_s
    assert two is not None and 60 + INIT_GRACE_S + 1 <= two <= 60 + INIT_GRACE_S + 2
    assert four == 60 + INIT_GRACE_S


def test_a_mount_refusal_fails_the_job_and_is_never_retried(tmp_path: Path) -> None:
    backend = FakeBackend(scripted)
    backend.mount_problems = ["/workspace (overlay) is writable by uid 65534 and not noexec"]
    done = run_mission(
        tmp_path,
        """\
        name: m
        on: [manual]
        jobs:
          j: {steps: [{run: hang, retry: {max-attempts: 3}}]}
        """,
        backend=backend,
    )
    (step,) = done.jobs["j"].steps
    assert step.reason == "refused: /workspace (overlay) is writable by uid 65534 and not noexec"
    assert step.attempts == 1
    (container,) = backend.created  # refused by runner-init: the step never ran
    assert container.removed and container.code == contract.REFUSED


@pytest.mark.parametrize("local", [True, False])
def test_outputs_come_back_from_the_volume_or_the_stopped_container(
    tmp_path: Path, local: bool
) -> None:
    backend = FakeBackend(scripted)
    backend.local_volumes = local  # False: as a remote engine, through get_archive
    done = run_mission(
        tmp_path,
        """\
        name: o
        on: [manual]
        jobs:
          j:
            steps:
              - {id: s, run: "out a=1\\nout b=two words\\nenv NEXT=yes"}
              - {id: t, run: "out c=${{ steps.s.outputs.b }}"}
            outputs: {a: "${{ steps.s.outputs.a }}", c: "${{ steps.t.outputs.c }}"}
        """,
        backend=backend,
    )
    assert done.jobs["j"].outputs == {"a": "1", "c": "two words"}
    assert done.specs["j"][1].env["NEXT"] == "yes"
    archived = [path for _, path in backend.called("get_archive")]
    assert archived == ([] if local else ["/workspace/.runner/io"] * 2)


def test_artifacts_leave_the_producer_and_seed_the_consumer(tmp_path: Path) -> None:
    holder: list[FakeBackend] = []

    def script(spec: ContainerSpec) -> Behaviour:
        if script_of(spec) == "show":
            assert spec.workspace_volume is not None
            files = holder[0].volumes[spec.workspace_volume].files
            return Exit(0, [files.get("out/app.txt", b"missing") + b"\n", files["data.txt"]])
        return scripted(spec)

    backend = FakeBackend(script)
    holder.append(backend)
    done = run_mission(
        tmp_path,
        """\
        name: a
        on: [manual]
        jobs:
          build:
            steps: [{run: write out/app.txt built}]
            produces: [{name: app, path: out/app.txt}]
          use:
            needs: [build]
            consumes: [app]
            steps: [{run: show}]
        """,
        backend=backend,
    )
    assert done.jobs["use"].status is Status.SUCCESS
    assert done.jobs["use"].steps[0].tail == ["built", "from the repository"]
    record = done.state.artifacts["app"]
    assert (record["job"], record["path"], record["size"]) == ("build", "out/app.txt", 5)
    assert done.left_behind() == ([], [])


def test_a_step_name_shows_its_expressions_evaluated(tmp_path: Path) -> None:
    recorder = Recorder()
    done = run_mission(
        tmp_path,
        """\
        name: m
        on: [push]
        env: {WHO: ci}
        jobs:
          test:
            strategy: {matrix: {shard: [1, 2]}}
            steps:
              - {name: "shard ${{ matrix.shard }} for ${{ env.WHO }}", run: ok}
              - {name: "broken ${{ fromJSON(env.WHO) }}", run: ok}
        """,
        sink=Sink([recorder]),
    )
    assert [s.name for s in done.jobs["test (2)"].steps] == [
        "shard 2 for ci",
        "broken ${{ fromJSON(env.WHO) }}",  # as written when it cannot be evaluated
    ]
    started = [
        e.name for e in recorder.events if isinstance(e, StepStarted) and e.job == "test (1)"
    ]
    assert started == ["shard 1 for ci", "broken ${{ fromJSON(env.WHO) }}"]


def test_a_step_that_could_not_execute_a_workspace_file_names_the_grant(tmp_path: Path) -> None:
    done = run_mission(
        tmp_path,
        """\
        name: m
        jobs:
          direct: {steps: [{run: exit 126}]}
          make:
            steps:
              - run: |
                  print make: ./test_binary: Permission denied
                  exit 2
          other: {steps: [{run: exit 1}]}
        """,
    )
    hint = (
        "; the workspace is mounted noexec, so a file checked out or built in it cannot be "
        "executed: run a script through its interpreter (`sh ./scripts/build.sh`), or grant "
        "the job `permissions: {exec: true}` (which the policy must allow: `allow: {exec: "
        "true}`)"
    )
    assert done.status() == {
        "direct": ("failure", f"step 'exit 126' failed: exit code 126{hint}"),
        "make": (
            "failure",
            f"step 'print make: ./test_binary: Permission denied' failed: exit code 2{hint}",
        ),
        "other": ("failure", "step 'exit 1' failed: exit code 1"),
    }
