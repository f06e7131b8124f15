"""The artifact actions runner runs itself (SPEC 3): GitHub's `with:` inputs on the run's
artifact store (runner.run.artifacts), with no network and no code from the marketplace.

    actions/upload-artifact@*    `name` (default `artifact`), `path` (one file or directory
                                 in the workspace), `if-no-files-found` (`warn`, the
                                 default, `error` or `ignore`): stored from the job's last
                                 step container at this step, as `produces:` stores an
                                 artifact (the same limits and secret scan; `artifact.stored`
                                 in the event log and the ledger). So an upload under
                                 `if: failure()` or `always()` keeps a failed job's files.
                                 Output `artifact-digest`: its SHA-256.
    actions/download-artifact@*  `name` (default: every artifact of the run, each in a
                                 directory of its name), `path` (default the workspace):
                                 placed through the engine as GitHub places it, a
                                 directory's contents or a file by its name. Output
                                 `download-path`.

What they cannot do here says so before anything is stored: several paths or a pattern in
`path` (GitHub's globs), a name GitHub refuses (`/`, `\\`, `"`, `:`, `<`, `>`, `|`, `*`,
`?`, line breaks), a name the run already holds (GitHub refuses it too), a path leaving the
workspace. An artifact is the run's: one from another run is not found.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from runner.errors import InvalidInput
from runner.mission.model import Artifact
from runner.policy.model import Limits
from runner.run import artifacts
from runner.run.state import RunState
from runner.run.workspace import (
    WORKSPACE_DIR,
    ArtifactMissing,
    Workspace,
    check_relative,
    rewrite_archive,
)
from runner.secrets.redact import Redactor
from runner.secrets.scan import CHUNK

DEFAULT_NAME = "artifact"
_BAD_NAME = re.compile(r'[/\\":<>|*?\r\n]')
_PATTERN = re.compile(r"[*?\[\]!{}]")


@dataclass(frozen=True)
class Done:
    """What a built-in step did: its outputs, and a warning to show (or "")."""

    outputs: Mapping[str, str]
    warning: str = ""


def _path(value: str, what: str) -> str:
    """A workspace-relative path: GitHub's `${{ github.workspace }}/x` is `x`."""
    text = value.strip()
    if text == WORKSPACE_DIR or text.startswith(WORKSPACE_DIR + "/"):
        text = text[len(WORKSPACE_DIR) :].lstrip("/") or "."
    return check_relative(text or ".", what)


def _name(value: str) -> str:
    name = value.strip() or DEFAULT_NAME
    if _BAD_NAME.search(name):
        raise InvalidInput(
            f"artifact name {name!r} holds a character GitHub refuses in one "
            '(/ \\ " : < > | * ? or a line break)'
        )
    return name


def upload(
    state: RunState,
    job_key: str,
    workspace: Workspace,
    container: str | None,
    with_: Mapping[str, str],
    limits: Limits,
    scanner: Redactor,
) -> Done:
    """Store `with_['path']` of the stopped `container` as the run's artifact `name`."""
    name = _name(with_.get("name", ""))
    raw = with_.get("path", "").strip()
    if not raw:
        raise InvalidInput("actions/upload-artifact needs `with: {path: ...}`")
    lines = [line.strip() for line in raw.splitlines() if line.strip()]
    if len(lines) > 1 or _PATTERN.search(raw):
        raise InvalidInput(
            f"actions/upload-artifact here takes one file or directory, not {raw!r}",
            hint="upload the directory that holds the files (path: dist), or one upload "
            "step per path",
        )
    missing = with_.get("if-no-files-found", "warn").strip() or "warn"
    if missing not in ("warn", "error", "ignore"):
        raise InvalidInput(
            f"if-no-files-found: {missing!r} is none of warn, error, ignore (upload of {name!r})"
        )
    path = _path(lines[0], "upload-artifact path")
    if container is None:
        raise InvalidInput(f"upload of {name!r}: no step ran before it, so nothing was written")
    unique = hashlib.sha256(f"{name}\0{job_key}".encode()).hexdigest()[:24]
    stored = state.artifacts_dir / f"upload-{unique}.tar"
    artifact = Artifact(name=name, path=path, type="dir")
    try:
        digest_size = artifacts.store_checked(
            workspace, container, artifact, stored, limits, scanner
        )
    except ArtifactMissing:
        said = f"no file or directory {path!r} in the workspace: artifact {name!r} not uploaded"
        if missing == "error":
            raise InvalidInput(said) from None
        return Done({}, said if missing == "warn" else "")
    single = _single_file(stored)
    if single is not None:
        artifact, digest_size = Artifact(name=name, path=path, type="file"), single
    artifacts.keep(state, job_key, artifact, stored, digest_size, unique=True)
    return Done({"artifact-digest": digest_size[0]})


def _single_file(stored: Path) -> tuple[str, int] | None:
    """(sha256, size) of the one regular file the stored tar holds, or None (a directory)."""
    with tarfile.open(stored, mode="r:") as tar:
        members = tar.getmembers()
        if len(members) != 1 or not members[0].isfile():
            return None
        content = tar.extractfile(members[0])
        digest = hashlib.sha256()
        while content is not None and (chunk := content.read(CHUNK)):
            digest.update(chunk)
        return digest.hexdigest(), members[0].size


def download(state: RunState, workspace: Workspace, with_: Mapping[str, str]) -> Done:
    """Place the run's artifact `name` (or every one, each under its name) at `path`."""
    path = _path(with_.get("path", "") or ".", "download-artifact path")
    name = with_.get("name", "").strip()
    with state.lock:
        held = dict(state.artifacts)
    if name:
        if name not in held:
            known = ", ".join(sorted(held)) or "none yet"
            raise InvalidInput(
                f"no artifact named {name!r} in this run (stored so far: {known})",
                hint="download-artifact reads this run's artifacts: the job that uploads "
                "it must be one this job `needs`",
            )
        chosen = [(path, held[name])]
    else:
        chosen = [(posixpath.join(path, n), held[n]) for n in sorted(held)]
    for where, record in chosen:
        _place(workspace, where, record)
    return Done({"download-path": posixpath.normpath(posixpath.join(WORKSPACE_DIR, path))})


def _place(workspace: Workspace, where: str, record: Mapping[str, Any]) -> None:
    kind: Literal["file", "dir"] = "dir" if record["type"] == "dir" else "file"
    with Path(str(record["stored"])).open("rb") as source:
        tar = rewrite_archive(source, where, workspace.uid, contents=kind == "dir")
        workspace.backend.put_workspace(workspace.volume, ".", tar, workspace.labels)
