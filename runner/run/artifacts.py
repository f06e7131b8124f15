"""Typed artifacts (SPEC 3): out of a producing job's workspace, stored under the run with
their SHA-256, and into every consuming job's workspace at the same path."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Sequence
from pathlib import Path

from runner.errors import InvalidInput
from runner.mission.model import Artifact
from runner.records.events import ArtifactStored
from runner.run.state import RunState
from runner.run.workspace import Workspace


def consumed(state: RunState, names: Sequence[str]) -> list[tuple[str, Path]]:
    """(path, stored tar) of each artifact a job consumes; all must have been produced."""
    with state.lock:
        records = [state.artifacts.get(name) for name in names]
    missing = [n for n, r in zip(names, records, strict=True) if r is None]
    if missing:
        raise InvalidInput(f"artifact(s) {', '.join(missing)} were not produced by a needed job")
    return [(str(r["path"]), Path(str(r["stored"]))) for r in records if r is not None]


def collect(
    state: RunState,
    job_key: str,
    produces: Sequence[Artifact],
    workspace: Workspace,
    container: str | None,
) -> None:
    """Copy each produced artifact out of the job's last (stopped) container and store it."""
    if not produces:
        return
    if container is None:
        raise InvalidInput("no step ran, so no artifact was produced")
    for artifact in produces:
        stored = state.artifacts_dir / f"{artifact.name}.tar"
        data, _, _ = workspace.collect(container, artifact.path)
        digest, size = content_digest(data, artifact.type, artifact.path)
        stored.write_bytes(data)
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


def content_digest(data: bytes, kind: str, path: str) -> tuple[str, int]:
    """SHA-256 and size of what an artifact holds: a file's bytes, or a directory's tar.

    A `file` artifact must be one regular file; anything else fails the job."""
    if kind == "dir":
        return hashlib.sha256(data).hexdigest(), len(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        if len(members) != 1 or not members[0].isfile():
            raise InvalidInput(f"artifact {path!r} is not a regular file (declared type: file)")
        handle = tar.extractfile(members[0])
        content = handle.read() if handle is not None else b""
    return hashlib.sha256(content).hexdigest(), len(content)
