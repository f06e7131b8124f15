"""Results are values: the run record, the exit code, the JSON summary, JUnit, the ledger
and the event log are all derived from these records."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


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
