"""Results are values: the run record, the exit code, the JSON summary, JUnit, the ledger
and the event log are all derived from these records.

What is written or shown is `RunResult.redacted`: a copy with every string redacted by
what it is, never by its key's name: runner's own values (job keys, step names, statuses)
through the run's redactor (its secrets), a job's text (reasons, last lines) through that
job's (`Redactor.for_job`: also its masks), and the mappings a user gave (outputs, matrix
values) through `redact_structure`, where a sensitive key's value is masked whole."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

from runner.secrets.redact import Redactor, redact_structure


class Status(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def done(self) -> bool:
        return self not in (Status.PENDING, Status.RUNNING)

    def serialize(self) -> str:
        return self.value


@dataclass
class StepResult:
    index: int
    name: str
    id: str | None = None
    status: Status = Status.PENDING
    reason: str = ""  # "exit code 2", "timeout", "condition false", "interrupted", ...
    exit_code: int | None = None
    attempts: int = 0
    duration_s: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)
    outcome: Status = Status.PENDING  # before continue-on-error (GitHub's steps.x.outcome)
    tail: list[str] = field(default_factory=list)  # last output lines (redacted) for reports
    log_sha256: str = ""  # digest of the last attempt's redacted output
    summary: str = ""  # its $GITHUB_STEP_SUMMARY (Markdown, redacted by its job)

    def redacted(self, run: Redactor, job: Redactor) -> StepResult:
        return dataclasses.replace(
            self,
            summary=job(self.summary),
            name=run(self.name),
            id=run(self.id) if self.id is not None else None,
            reason=job(self.reason),
            outputs=redact_structure(self.outputs, job),
            tail=[job(line) for line in self.tail],
        )

    def serialize(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "id": self.id,
            "status": self.status.serialize(),
            "outcome": self.outcome.serialize(),
            "reason": self.reason,
            "exit_code": self.exit_code,
            "attempts": self.attempts,
            "duration_ms": round(self.duration_s * 1000),
            "outputs": dict(self.outputs),
            "log_sha256": self.log_sha256,
        }


@dataclass
class JobResult:
    key: str
    job_id: str
    matrix: dict[str, Any] = field(default_factory=dict)
    status: Status = Status.PENDING
    reason: str = ""
    steps: list[StepResult] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    continue_on_error: bool = False
    image: str = ""

    def redacted(self, run: Redactor) -> JobResult:
        job = run.for_job(self.key)
        return dataclasses.replace(
            self,
            key=run(self.key),
            job_id=run(self.job_id),
            matrix=redact_structure(self.matrix, run),
            reason=job(self.reason),
            steps=[step.redacted(run, job) for step in self.steps],
            outputs=redact_structure(self.outputs, job),
            image=run(self.image),
        )

    def serialize(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "job": self.job_id,
            "matrix": self.matrix,
            "status": self.status.serialize(),
            "reason": self.reason,
            "duration_ms": round(self.duration_s * 1000),
            "continue_on_error": self.continue_on_error,
            "image": self.image,
            "outputs": dict(self.outputs),
            "steps": [s.serialize() for s in self.steps],
        }


class CheckStatus(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    UNRESOLVED = "unresolved"


@dataclass(frozen=True)
class CheckResult:
    name: str
    check: str
    status: CheckStatus
    detail: str = ""

    def redacted(self, run: Redactor) -> CheckResult:
        return dataclasses.replace(
            self, name=run(self.name), check=run(self.check), detail=run(self.detail)
        )

    def serialize(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "check": self.check,
            "status": self.status.value,
            "detail": self.detail,
        }


@dataclass
class RunResult:
    run_id: str
    mission: str
    mission_path: str
    event: str
    status: Status = Status.RUNNING
    reason: str = ""
    started: str = ""  # RFC 3339
    finished: str = ""
    duration_s: float = 0.0
    jobs: dict[str, JobResult] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)

    def redacted(self, redactor: Redactor) -> RunResult:
        """A copy fit to write and show (see the module docstring); the keys of `jobs`
        stay the job keys."""
        return dataclasses.replace(
            self,
            mission=redactor(self.mission),
            mission_path=redactor(self.mission_path),
            event=redactor(self.event),
            reason=redactor(self.reason),
            jobs={key: job.redacted(redactor) for key, job in self.jobs.items()},
            checks=[check.redacted(redactor) for check in self.checks],
        )

    def serialize(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "mission": self.mission,
            "mission_path": self.mission_path,
            "event": self.event,
            "result": self.status.serialize(),
            "reason": self.reason,
            "started": self.started,
            "finished": self.finished,
            "duration_ms": round(self.duration_s * 1000),
            "jobs": {key: job.serialize() for key, job in self.jobs.items()},
            "verify": [c.serialize() for c in self.checks],
        }
