"""What runner writes of a run keeps its own keys and statuses: masks apply to a job's
text, secrets to values, sensitive-key masking to a user's mappings only."""

from __future__ import annotations

import json
from pathlib import Path

from runner.audit import canonical
from runner.audit.keys import Signer
from runner.audit.ledger import ENTRIES, Ledger
from runner.mission.loader import parse_mission
from runner.policy.decisions import decide
from runner.policy.loader import load_policy
from runner.records.eventlog import EventLog, read_events
from runner.records.events import JobFinished, OutputLine, StepFinished
from runner.records.results import JobResult, RunResult, Status, StepResult
from runner.records.rundirs import hold_run_lock
from runner.run.session import record_decisions
from runner.secrets.redact import Redactor

SECRET = "run-secret-hunter22"


def test_a_jobs_mask_reaches_neither_another_job_nor_names_statuses_or_keys(
    tmp_path: Path,
) -> None:
    run = Redactor([SECRET])
    run.for_job("a").add("status")  # a job masks a word every record holds
    run.for_job("a").add("success")
    path = tmp_path / "events.jsonl"
    with EventLog(path, run) as log:
        log.write(OutputLine(job="a", step=0, line="status success " + SECRET))
        log.write(OutputLine(job="b", step=0, line="status success " + SECRET))
        for job in ("a", "b"):
            log.write(JobFinished(job=job, status=Status.SUCCESS, reason="", duration_ms=1))
    events = list(read_events(path))
    assert [e.get("line") for e in events[:2]] == ["*** *** ***", "status success ***"]
    assert [(e["job"], e["status"]) for e in events[2:]] == [("a", "success"), ("b", "success")]
    assert all("status" in e for e in events[2:])


def test_a_job_named_for_a_secret_keeps_its_entry_in_run_json(tmp_path: Path) -> None:
    run = Redactor([SECRET])
    result = RunResult(run_id="r1", mission="m", mission_path="m.yml", event="manual")
    for key in ("use-secret", "publish-token", "password-rotation"):
        job = JobResult(key=key, job_id=key, status=Status.SUCCESS)
        job.steps.append(StepResult(index=0, name="session-token", status=Status.SUCCESS))
        job.outputs = {"api_token": "plain-value", "url": f"https://x/{SECRET}"}
        result.jobs[key] = job
    result.status = Status.SUCCESS
    with hold_run_lock(tmp_path, "r1") as run_dir:
        run_dir.write_record(result.redacted(run))
    record = json.loads((tmp_path / "runs" / "r1" / "run.json").read_text())
    assert sorted(record["jobs"]) == ["password-rotation", "publish-token", "use-secret"]
    for key, job in record["jobs"].items():
        assert (job["key"], job["status"], job["steps"][0]["name"]) == (
            key,
            "success",
            "session-token",
        )
        assert job["outputs"] == {"api_token": "***", "url": "https://x/***"}  # a user's
    assert record["result"] == "success"


def test_every_string_value_appended_to_the_ledger_is_redacted(tmp_path: Path) -> None:
    run = Redactor([SECRET])
    with Ledger.open(tmp_path / "state", signer=Signer.generate(), redactor=run) as ledger:
        fields = StepFinished(
            job="deploy-token",
            step=0,
            name="uses the secret",
            status=Status.FAILURE,
            reason=f"fromJSON(): not valid JSON: '{SECRET}'",
            exit_code=1,
            duration_ms=3,
            attempts=1,
            log_sha256="e" * 64,
        ).fields()
        ledger.append("step.finished", "r1", fields)
    (line,) = (tmp_path / "state" / "ledger" / ENTRIES).read_bytes().splitlines()
    entry = canonical.loads(line)
    assert SECRET.encode() not in line
    assert entry["reason"] == "fromJSON(): not valid JSON: '***'"
    assert (entry["job"], entry["status"], entry["log_sha256"]) == (
        "deploy-token",
        "failure",
        "e" * 64,
    )


def test_a_policy_the_redactor_touches_is_not_recorded_as_changed_at_every_run(
    tmp_path: Path,
) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "default.yml").write_text(
        "version: 1\nimages: [base]\ntools: [sh]\n"
        "rules:\n  - name: deploy\n    description: 'the deploy token: rotated weekly'\n"
        "    match: {path: m.yml, job: d}\n    allow: {secrets: [DEPLOY_TOKEN]}\n"
    )
    policy = load_policy(None, tmp_path)
    mission, _ = parse_mission(b"name: m\non: [manual]\njobs:\n  d: {steps: [{run: x}]}\n", "m.yml")
    state = tmp_path / "state"
    for run_id in ("r1", "r2"):
        with Ledger.open(state, signer=Signer.generate(), redactor=Redactor()) as ledger:
            record_decisions(ledger, run_id, mission, policy, decide(mission, policy, ()))
    lines = (state / "ledger" / ENTRIES).read_text().split("\n")[:-1]
    types = [json.loads(line)["type"] for line in lines]
    assert types.count("policy.changed") == 1
    assert "rotated weekly" not in (state / "ledger" / ENTRIES).read_text()
