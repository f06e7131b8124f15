"""The exceptions runner raises on purpose, each carrying its SPEC 8 exit code.

    RunnerError                    1  base; never raised bare
    ├── MissionFailed              1  a job failed and did not continue-on-error
    ├── VerificationFailed         1  `audit verify` or a `verify:` check found a problem
    │   ├── audit.checkpoint.CheckpointError  a checkpoint note that is not well formed
    │   ├── audit.merkle.ProofError           a Merkle proof that does not prove its claim
    │   └── audit.findings.LedgerRefused      the writer will not sign what it cannot check
    ├── InvalidInput               2  bad input of any kind: usage, YAML, schema, semantics
    │   ├── InvalidMission         2  carries the findings of `validate`
    │   ├── InvalidPolicy          2  a policy file that is unreadable, unknown keys, bad values
    │   └── audit.canonical.CanonicalError    JSON that is not canonical (floats, dup keys)
    ├── PolicyDenied               3  a capability no policy entry grants
    ├── EngineUnavailable          4  no Docker engine (or other infrastructure) answers
    │   └── StorageFailed          4  runner cannot write its own files (disk full, I/O)
    │       └── audit.ledger.LedgerUnavailable    the ledger cannot be written
    └── Interrupted              130  SIGINT / SIGTERM

A package defines a narrower error where it raises it (the `audit.` ones drawn above;
`ExpressionError`, `BuildFailed`, `UnsafeArchive`, ... elsewhere), always under one of
these, so that it keeps its base's exit code. Third-party errors are translated where they
happen (`raise EngineUnavailable(...) from exc`); `runner.cli.main` turns any of these
into one message and its exit code.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from runner.findings import Finding


class RunnerError(Exception):
    """Base of every error runner reports to its user."""

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n  hint: {self.hint}"


class MissionFailed(RunnerError):
    exit_code = 1


class VerificationFailed(RunnerError):
    exit_code = 1


class InvalidInput(RunnerError):
    exit_code = 2


class InvalidMission(InvalidInput):
    """A mission (or workflow) that did not pass validation; `findings` says why."""

    def __init__(
        self, message: str, findings: Sequence[Finding] = (), *, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.findings = tuple(findings)


class InvalidPolicy(InvalidInput):
    """A policy that cannot be trusted to mean what it says: the run must not proceed."""

    def __init__(
        self, message: str, findings: Sequence[Finding] = (), *, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.findings = tuple(findings)


class PolicyDenied(RunnerError):
    exit_code = 3


class EngineUnavailable(RunnerError):
    exit_code = 4


class StorageFailed(EngineUnavailable):
    """A file runner writes (run.json, the event log, the ledger, an exported image) could
    not be written: a full disk or an I/O error. One message names the path and says
    what to do (it is also what a failed job shows as its reason)."""

    @classmethod
    def writing(cls, path: object, exc: OSError, what: str = "") -> StorageFailed:
        """The error for `exc` raised while writing `path` (`what` it is, for people)."""
        reason = exc.strerror or str(exc)
        subject = f"{what} {path}" if what else str(path)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            advice = "free disk space (or raise the quota) there, then run again"
        else:
            advice = "free disk space and check the disk, then run again"
        return cls(f"could not write {subject}: {reason}; {advice}")


class Interrupted(RunnerError):
    exit_code = 130
