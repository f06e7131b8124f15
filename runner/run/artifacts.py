"""Typed artifacts (SPEC 3): out of a producing job's workspace, stored under the run with
their SHA-256, and into every consuming job's workspace at the same path.

Storing (`store`) streams the tar the engine makes of the artifact's path in the stopped
container straight to `<run>/artifacts/<name>.tar`, counting the tar's real bytes as they
come (a sparse 1 GiB file is 1 GiB of tar): past the policy's `limits.artifact-size` it
stops, removes what it wrote and fails the job naming the artifact and the limit, with
runner's memory flat. The stored tar must then pass `workspace.safe_members` within
`limits.artifact-files` members and `limits.artifact-depth` path components. Placing a
consumed artifact is `Workspace.prepare` (through the engine, never on the host).
`collect` stores each produced artifact, checks what it holds, then records it (the run's
artifacts, the `artifact.stored` event and ledger entry).

An artifact leaves its job, so it is never stored when a file name, a link target or a
file's content holds a secret granted to that job or a value the job masked
(`refuse_secrets`, in any form the redactor masks; see `runner.secrets.scan` for what it
cannot find)."""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, BinaryIO

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
        digest, size = store(workspace, container, artifact, stored, limits)
        if scanner is not None:
            try:
                with stored.open("rb") as tar:
                    refuse_secrets(tar, artifact.name, scanner)
            except BaseException:
                stored.unlink(missing_ok=True)
                raise
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
