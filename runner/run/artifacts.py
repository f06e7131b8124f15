"""Typed artifacts (SPEC 3): out of a producing job's workspace, stored under the run with
their SHA-256, and into every consuming job's workspace at the same path.

An artifact leaves its job, so it is never stored when a file name, a link target or a
file's content holds a secret granted to that job or a value the job masked
(`refuse_secrets`, in any form the redactor masks; see `runner.secrets.scan` for what it
cannot find)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, BinaryIO

from runner.errors import InvalidInput
from runner.mission.model import Artifact
from runner.records.events import ArtifactStored
from runner.run.state import RunState
from runner.run.workspace import Workspace
from runner.secrets.redact import Redactor
from runner.secrets.scan import CHUNK, holds_secret


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
    scanner: Redactor | None = None,
) -> None:
    """Copy each produced artifact out of the job's last (stopped) container and store it,
    unless `scanner` finds in it what the job must not pass on (`refuse_secrets`)."""
    if not produces:
        return
    if container is None:
        raise InvalidInput("no step ran, so no artifact was produced")
    for artifact in produces:
        stored = state.artifacts_dir / f"{artifact.name}.tar"
        data, _, _ = workspace.collect(container, artifact.path)
        if scanner is not None:
            refuse_secrets(io.BytesIO(data), artifact.name, scanner)
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


def refuse_secrets(tar: BinaryIO, artifact: str, scanner: Redactor) -> None:
    """InvalidInput naming the artifact and the file (masked) when a member's name, link
    target or content holds what `scanner` masks. Reads `tar` as a stream, a file's
    content in `CHUNK`s: memory stays flat."""
    try:
        with tarfile.open(fileobj=tar, mode="r|") as archive:
            for member in archive:
                names = (member.name, member.linkname)
                found = any(scanner.masks(name) for name in names if name)
                if not found and member.isfile():
                    found = holds_secret(_chunks(archive.extractfile(member)), scanner)
                if found:
                    raise InvalidInput(
                        f"artifact {artifact!r}: {scanner(member.name)!r} holds a secret "
                        "granted to its job or a value the job masked, so it was not stored",
                        hint="an artifact leaves its job: keep secrets out of the files it "
                        "holds and out of their names",
                    )
    except tarfile.TarError as exc:
        raise InvalidInput(f"artifact {artifact!r} is not a readable tar: {exc}") from exc


def _chunks(handle: IO[bytes] | None) -> Iterator[bytes]:
    while handle is not None and (chunk := handle.read(CHUNK)):
        yield chunk
