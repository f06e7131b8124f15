"""Typed artifacts (SPEC 3): out of a producing job's workspace, stored under the run with
their SHA-256, and into every consuming job's workspace at the same path.

Storing (`store`) streams the tar the engine makes of the artifact's path in the stopped
container straight to `<run>/artifacts/<name>.tar`, counting the tar's real bytes as they
come (a sparse 1 GiB file is 1 GiB of tar): past the policy's `limits.artifact-size` it
stops, removes what it wrote and fails the job naming the artifact and the limit, with
runner's memory flat. The stored tar must then pass `workspace.safe_members` within
`limits.artifact-files` members and `limits.artifact-depth` path components. Placing a
consumed artifact is `Workspace.prepare` (through the engine, never on the host).
`collect` stores each produced artifact, then records it (the run's artifacts, the
`artifact.stored` event and ledger entry); a check of what an artifact holds belongs
between the two.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from runner.errors import InvalidInput
from runner.mission.model import Artifact
from runner.policy.model import Limits
from runner.records.events import ArtifactStored
from runner.run.state import RunState
from runner.run.workspace import (
    ArtifactTooLarge,
    UnsafeArchive,
    Workspace,
    binary_size,
    safe_members,
)

CHUNK = 1024 * 1024


def consumed(state: RunState, names: Sequence[str]) -> list[tuple[str, Path]]:
    """(path, stored tar) of each artifact a job consumes; all must have been produced."""
    with state.lock:
        records = [state.artifacts.get(name) for name in names]
    missing = [n for n, r in zip(names, records, strict=True) if r is None]
    if missing:
        raise InvalidInput(f"artifact(s) {', '.join(missing)} were not produced by a needed job")
    return [(str(r["path"]), Path(str(r["stored"]))) for r in records if r is not None]


def store(
    workspace: Workspace, container: str, artifact: Artifact, target: Path, limits: Limits
) -> tuple[str, int]:
    """Stream `artifact` out of the stopped `container` into the tar file `target`, within
    `limits`; (sha256, size) of what it holds (a file's bytes, or a directory's tar).
    Nothing is left at `target` when it fails."""
    shown = f"artifact {artifact.name!r} ({artifact.path})"
    partial = target.with_name(target.name + ".partial")
    written = 0
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for chunk in workspace.archive(container, artifact.path):
                written += len(chunk)
                if written > limits.artifact_bytes:
                    raise ArtifactTooLarge(
                        f"{shown} is larger than its {binary_size(limits.artifact_bytes)} "
                        "limit (limits.artifact-size in the policy)"
                    )
                out.write(chunk)
                digest.update(chunk)
        with partial.open("rb") as handle:
            result = _checked(handle, artifact, shown, limits)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return result or (digest.hexdigest(), written)


def _checked(
    handle: IO[bytes], artifact: Artifact, shown: str, limits: Limits
) -> tuple[str, int] | None:
    """Check the stored tar; for a `file` artifact, (sha256, size) of the file it holds."""
    try:
        with tarfile.open(fileobj=handle, mode="r:") as tar:
            try:
                members = safe_members(
                    tar, max_files=limits.artifact_files, max_depth=limits.artifact_depth
                )
            except ArtifactTooLarge as exc:
                raise ArtifactTooLarge(
                    f"{shown}: {exc.message} (limits.artifact-files / artifact-depth in the policy)"
                ) from None
            if artifact.type == "dir":
                return None
            if len(members) != 1 or not members[0].isfile():
                raise InvalidInput(
                    f"artifact {artifact.path!r} is not a regular file (declared type: file)"
                )
            content = tar.extractfile(members[0])
            file_digest = hashlib.sha256()
            if content is not None:
                for chunk in iter(lambda: content.read(CHUNK), b""):
                    file_digest.update(chunk)
            return file_digest.hexdigest(), members[0].size
    except tarfile.TarError as exc:
        raise UnsafeArchive(f"{shown} is not a readable tar: {exc}") from exc


def collect(
    state: RunState,
    job_key: str,
    produces: Sequence[Artifact],
    workspace: Workspace,
    container: str | None,
    limits: Limits,
) -> None:
    """Copy each produced artifact out of the job's last (stopped) container and store it."""
    if not produces:
        return
    if container is None:
        raise InvalidInput("no step ran, so no artifact was produced")
    for artifact in produces:
        stored = state.artifacts_dir / f"{artifact.name}.tar"
        digest, size = store(workspace, container, artifact, stored, limits)
        record = {
            "name": artifact.name,
            "path": artifact.path,
            "type": artifact.type,
            "sha256": digest,
            "size": size,
            "stored": str(stored),
            "job": job_key,
        }
        with state.lock:
            state.artifacts[artifact.name] = record
        state.sink.emit(
            ArtifactStored(
                job=job_key, name=artifact.name, path=artifact.path, sha256=digest, size=size
            )
        )
