from __future__ import annotations

import pytest

from runner.mission.model import InputSpec, Job, Mission, VerifyCheck
from runner.records.results import CheckStatus, JobResult, RunResult, Status
from runner.run.verify import evaluate_check, evaluate_checks

JOBS = ("build", "test", "publish", "docs")
MISSION = Mission(path="ci.yml", digest="0" * 64, name="ci", jobs={j: Job(id=j) for j in JOBS})


def _job(key: str, status: Status, reason: str = "", **outputs: str) -> JobResult:
    job_id = key.split(" ")[0]
    return JobResult(key=key, job_id=job_id, status=status, reason=reason, outputs=dict(outputs))


def _run(*jobs: JobResult) -> RunResult:
    run = RunResult(run_id="r1", mission="ci", mission_path="ci.yml", event="push")
    run.jobs = {job.key: job for job in jobs}
    return run


RUN = _run(
    _job("build", Status.SUCCESS, artifact="dist.tar"),
    _job("test (1)", Status.SUCCESS, coverage="91", flaky="a"),
    _job("test (2)", Status.FAILURE, "exit code 1", coverage="72", flaky=""),
    _job("publish", Status.SKIPPED, "dependency failed"),
)  # "docs" did not run at all (not selected)


def _status(check: str, run: RunResult = RUN) -> tuple[CheckStatus, str]:
    result = evaluate_check("c", check, MISSION, run)
    return result.status, result.detail


def test_checks_pass_or_fail_on_what_the_jobs_produced() -> None:
    assert _status("jobs.build.result == 'success'") == (
        CheckStatus.PASSED,
        "jobs.build.result = 'success'",
    )
    assert _status("jobs.build.outputs.artifact == 'other'") == (
        CheckStatus.FAILED,
        "jobs.build.outputs.artifact = 'dist.tar'",
    )
    assert _status("${{ jobs.BUILD.Outputs.ARTIFACT == 'dist.tar' }}")[0] is CheckStatus.PASSED
    assert _status("mission.event == 'push' && mission.run_id == 'r1'")[0] is CheckStatus.PASSED


def test_a_matrix_job_aggregates_like_needs() -> None:
    # one instance failed: the job failed; outputs come from the last instance setting them
    assert _status("jobs.test.result") == (CheckStatus.PASSED, "jobs.test.result = 'failure'")
    assert _status("jobs.test.result == 'failure'")[0] is CheckStatus.PASSED
    assert _status("jobs.test.outputs.coverage >= 80") == (
        CheckStatus.FAILED,
        "jobs.test.outputs.coverage = '72'",
    )
    assert _status("jobs.test.outputs.flaky == 'a'")[0] is CheckStatus.PASSED


@pytest.mark.parametrize(
    ("statuses", "result"),
    [
        ((Status.SUCCESS, Status.SUCCESS), "success"),
        ((Status.SUCCESS, Status.SKIPPED), "success"),
        ((Status.SUCCESS, Status.CANCELLED), "cancelled"),
        ((Status.CANCELLED, Status.FAILURE, Status.SUCCESS), "failure"),
    ],
)
def test_matrix_result_precedence(statuses: tuple[Status, ...], result: str) -> None:
    run = _run(*(_job(f"test ({i})", s) for i, s in enumerate(statuses)))
    assert _status(f"jobs.test.result == '{result}'", run)[0] is CheckStatus.PASSED


def test_reading_a_skipped_job_is_unresolved() -> None:
    for check in ("jobs.publish.result == 'success'", "jobs.publish.outputs.url != ''"):
        status, detail = _status(check)
        assert status is CheckStatus.UNRESOLVED
        assert detail.startswith("never produced: jobs.publish.")
        assert detail.endswith(": job 'publish' skipped: dependency failed")


def test_reading_a_job_that_did_not_run_or_a_missing_output_is_unresolved() -> None:
    assert _status("jobs.docs.result == 'success'") == (
        CheckStatus.UNRESOLVED,
        "never produced: jobs.docs.result: job 'docs' did not run",
    )
    assert _status("jobs.build.outputs.coverage >= 80") == (
        CheckStatus.UNRESOLVED,
        "never produced: jobs.build.outputs.coverage: job 'build' did not set it",
    )
    # an empty output is one no instance set
    only_empty = _run(_job("test (1)", Status.SUCCESS, flaky=""))
    assert _status("jobs.test.outputs.flaky == ''", only_empty)[0] is CheckStatus.UNRESOLVED
    # a job still pending when the run ended produced nothing either
    pending = _run(_job("build", Status.PENDING))
    status, detail = _status("jobs.build.result != 'failure'", pending)
    assert status is CheckStatus.UNRESOLVED
    assert detail == "never produced: jobs.build.result: job 'build' not finished"


def test_short_circuit_reads_only_what_decides() -> None:
    assert _status("jobs.build.result == 'success' || jobs.publish.result == 'success'")[0] is (
        CheckStatus.PASSED
    )
    assert _status("jobs.build.result == 'failure' && jobs.publish.result == 'success'")[0] is (
        CheckStatus.FAILED
    )
    assert _status("jobs.build.result == 'failure' || jobs.publish.result == 'success'")[0] is (
        CheckStatus.UNRESOLVED
    )


def test_filters_and_json_see_only_produced_jobs() -> None:
    assert _status("contains(jobs.*.result, 'failure')")[0] is CheckStatus.PASSED
    assert _status("join(jobs.*.result, ',') == 'success,failure'")[0] is CheckStatus.PASSED
    status, _ = _status("contains(toJSON(jobs), 'dist.tar')")
    assert status is CheckStatus.PASSED


def test_an_evaluation_error_fails_the_check_unless_its_input_was_missing() -> None:
    status, detail = _status("fromJSON(jobs.build.outputs.artifact)")
    assert status is CheckStatus.FAILED
    assert detail.startswith("error: ")
    assert _status("fromJSON(jobs.build.outputs.json).ok")[0] is CheckStatus.UNRESOLVED
    status, detail = _status("success()")
    assert status is CheckStatus.FAILED
    assert "success()" in detail


def test_evaluate_checks_follows_the_mission_order() -> None:
    mission = Mission(
        path="ci.yml",
        digest="0" * 64,
        name="ci",
        jobs=MISSION.jobs,
        verify=(
            VerifyCheck("built", "jobs.build.result == 'success'"),
            VerifyCheck("covered", "jobs.test.outputs.coverage >= 80"),
            VerifyCheck("shipped", "jobs.publish.result == 'success'"),
        ),
    )
    results = evaluate_checks(mission, RUN)
    assert [(r.name, r.check, r.status) for r in results] == [
        ("built", "jobs.build.result == 'success'", CheckStatus.PASSED),
        ("covered", "jobs.test.outputs.coverage >= 80", CheckStatus.FAILED),
        ("shipped", "jobs.publish.result == 'success'", CheckStatus.UNRESOLVED),
    ]
    assert results[1].serialize() == {
        "name": "covered",
        "check": "jobs.test.outputs.coverage >= 80",
        "status": "failed",
        "detail": "jobs.test.outputs.coverage = '72'",
    }


def test_checks_see_the_run_contexts_validation_allows() -> None:
    mission = Mission(
        path="ci.yml",
        digest="0" * 64,
        name="ci",
        jobs=MISSION.jobs,
        inputs={"level": InputSpec(name="level", type="string", default="fast")},
        verify=(
            VerifyCheck("a", "inputs.level == 'fast' && github.event_name == 'push'"),
            VerifyCheck("b", "inputs.level == 'full' && github.ref == 'refs/heads/main'"),
            VerifyCheck("c", "vars.x == ''"),
        ),
    )
    assert [r.status for r in evaluate_checks(mission, RUN)] == [
        CheckStatus.PASSED,
        CheckStatus.FAILED,
        CheckStatus.PASSED,
    ]
    base = {"inputs": {"level": "full"}, "github": {"ref": "refs/heads/main"}, "vars": {}}
    assert [r.status for r in evaluate_checks(mission, RUN, base=base)] == [
        CheckStatus.FAILED,
        CheckStatus.PASSED,
        CheckStatus.PASSED,
    ]
    # the run's contexts never replace the tracked job results
    shadow = {"jobs": {"build": {"result": "failure"}}}
    check = "jobs.build.result == 'success'"
    assert evaluate_check("x", check, mission, RUN, base=shadow).status is CheckStatus.PASSED
