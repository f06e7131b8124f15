"""The expression contexts a run exposes (`github`, `runner`, `mission`, `env`, ...).

Built once per run (`RunInfo`), then per job and per step; the values are plain dicts
and lists so that `runner.expressions` can index them.
"""

from __future__ import annotations

import fnmatch
import functools
import getpass
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import expressions
from runner import repo_files as files
from runner.engine.backend import WORKSPACE_PATH as WORKSPACE
from runner.expressions import ExpressionError
from runner.run.workspace import repo_files
from runner.trusted import git_text, invoker_ref


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    mission: str
    event: str
    root: Path
    sha: str = ""
    ref: str = ""
    actor: str = ""
    inputs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def discover(
        cls,
        run_id: str,
        mission: str,
        event: str,
        root: Path,
        inputs: Mapping[str, Any],
        *,
        ref: str | None = None,
    ) -> RunInfo:
        """The run's facts; `ref` is the invoker's (`--ref`), else git's HEAD."""
        return cls(
            run_id=run_id,
            mission=mission,
            event=event,
            root=root,
            sha=git_text(root, "rev-parse", "HEAD"),
            ref=invoker_ref(root, ref),
            actor=_invoker(),
            inputs=dict(inputs),
        )

    def github(self) -> dict[str, Any]:
        ref = self.ref
        return {
            "event_name": self.event,
            "ref": ref,
            "ref_name": ref.rsplit("/", 1)[-1] if ref else "",
            "sha": self.sha,
            "workspace": WORKSPACE,
            "repository": self.root.name,
            "run_id": self.run_id,
            "actor": self.actor,
            "event": {},
        }

    def base_contexts(self) -> dict[str, Any]:
        return {
            "github": self.github(),
            "runner": {"os": "Linux", "arch": _arch(), "name": "runner", "temp": "/tmp"},
            "mission": {"run_id": self.run_id, "event": self.event, "name": self.mission},
            "inputs": dict(self.inputs),
            "vars": {},
        }

    def step_environment(self) -> dict[str, str]:
        """The variables every step sees besides the declared env (GitHub's defaults)."""
        github = self.github()
        return {
            "CI": "true",
            "HOME": "/tmp",
            "RUNNER_TEMP": "/tmp",
            "RUNNER_WORKSPACE": WORKSPACE,
            "GITHUB_WORKSPACE": WORKSPACE,
            "GITHUB_RUN_ID": self.run_id,
            "GITHUB_EVENT_NAME": self.event,
            "GITHUB_SHA": self.sha,
            "GITHUB_REF": self.ref,
            "GITHUB_REF_NAME": github["ref_name"],
            "GITHUB_REPOSITORY": github["repository"],
            "GITHUB_ACTOR": self.actor,
            "RUNNER_MISSION": self.mission,
        }


def _invoker() -> str:
    try:
        return os.environ.get("GITHUB_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


@functools.cache
def _arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "X64", "aarch64": "ARM64", "arm64": "ARM64"}.get(machine, machine.upper())


HASH_FILES_BYTES = 1024**3  # hashFiles() reads at most this much, in all
HASH_FILES_COUNT = 100_000  # and at most this many files


def hash_files(root: Path, patterns: tuple[str, ...]) -> str:
    """GitHub's hashFiles(): one SHA-256 over the SHA-256 of every matching file, in path
    order ("" when none match). Patterns are globs over the repository's files (git's
    view, as the workspace copy); `!pattern` excludes; `**/x` also matches a top-level x.

    Files are read beneath the root (`runner.repo_files`): a directory that matches is
    skipped, as on GitHub; a link leaving the repository, a FIFO, a device or a hard link
    is an error naming it; what is hashed is bounded (`HASH_FILES_BYTES`, `_COUNT`), each
    file read in blocks."""
    include = [p for p in patterns if not p.startswith("!")]
    exclude = [p[1:] for p in patterns if p.startswith("!")]

    def matches(path: str, globs: list[str]) -> bool:
        return any(
            fnmatch.fnmatchcase(path, g)
            or (g.startswith("**/") and fnmatch.fnmatchcase(path, g[3:]))
            for g in globs
        )

    try:
        listed = repo_files(root)
    except (OSError, RecursionError) as exc:
        raise HashFilesError(f"hashFiles(): cannot list the repository's files: {exc}") from None
    chosen = [f for f in listed if matches(f, include) and not matches(f, exclude)]
    entries: list[files.Entry] = []
    total = 0
    for name in sorted(chosen):
        try:
            entry = files.lookup(root, name)
        except files.RepoFileError as exc:
            raise HashFilesError(f"hashFiles(): {exc}") from None
        if entry.kind in ("dir", "missing"):
            continue  # a directory (or a link to one), or a file gone since it was listed
        why = files.refusal(entry)
        if why is not None:
            raise HashFilesError(f"hashFiles(): {files.shown(name)}: {why}")
        total += entry.size
        if len(entries) >= HASH_FILES_COUNT or total > HASH_FILES_BYTES:
            raise HashFilesError(
                f"hashFiles({', '.join(patterns)}): the matching files are more than "
                f"{HASH_FILES_COUNT} or {HASH_FILES_BYTES} bytes; narrow the patterns"
            )
        entries.append(entry)
    if not entries:
        return ""
    outer = hashlib.sha256()
    for entry in entries:
        data = files.read_file(root, entry.rel, limit=HASH_FILES_BYTES)
        outer.update(hashlib.sha256(data).digest())
    return outer.hexdigest()


class HashFilesError(ExpressionError):
    """hashFiles() refusing a file: the step's expression fails with this message."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 0)


def implicit_success(condition: str | None) -> str:
    """GitHub's rule: an `if` without a status function means `success() && (if)`."""
    if condition is None or not condition.strip():
        return "success()"
    text = condition.strip()
    if text.startswith("${{") and text.endswith("}}") and text.count("${{") == 1:
        text = text[3:-2].strip()
    if expressions.has_status_function(text):
        return text
    return f"success() && ({text})"
