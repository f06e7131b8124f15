"""`actions/cache`, built in (SPEC 3): a content-addressed cache under the state dir, with
no network and no code from the marketplace.

    actions/cache@*   `key` (at most 512 characters, no `,`), `path` (one workspace path a
                      line), `restore-keys` (prefixes, one a line). At the step: the
                      entry whose key is `key`, else the newest whose key starts with a
                      restore key (each prefix in turn), is placed into the workspace
                      through the engine as download-artifact places an artifact; outputs
                      `cache-hit` (`true` only for `key` itself), `cache-primary-key`,
                      `cache-matched-key`. At the end of the job, as GitHub's post step:
                      when the job succeeded and `key` missed, each path is stored out of
                      the job's last container. `actions/cache/restore@*` only
                      restores; `actions/cache/save@*` (`key`, `path`) saves at its step.

Layout: `<state>/cache/blobs/<sha256>.tar`, each path's tar named by its digest (checked
again when it is restored: a changed blob restores nothing), and
`<state>/cache/scopes/<scope>/<sha256 of key>.json`, the entry: key, scope, paths with
their blobs, and its digest (`entry_digest`), which the ledger records for every save
(`cache.saved`) and restore (`cache.restored`). An entry not of the shape runner writes
(a path leaving the workspace, a digest that is not one) is a miss, never followed.

Scopes, as GitHub scopes caches: a run writes only to its own, its (event, ref); it reads
its own, then the push caches of the default branch (`refs/remotes/origin/HEAD`'s branch,
else `refs/heads/main`). So a pull_request run may restore what a push to main saved,
never the other way: nothing it writes is where a push run reads.

Bounds: what a job stores is an artifact's, through `artifacts.store_checked` (the tar
streamed out of the stopped container, counted against `limits.artifact-size`, its
members checked by `workspace.safe_members`, so links leaving the path, devices and
too many or too deep files refuse it; a secret granted to the job or a value it masked
refuses it too, as a cache outlives the run). A refused save is a warning, as on GitHub,
and the job's result stands. Nothing is ever extracted on the host.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.durable import file_sha256, json_digest, write_atomic
from runner.errors import InvalidInput
from runner.mission.model import Artifact
from runner.policy.model import Limits
from runner.records.events import CacheRestored, CacheSaved
from runner.run import artifacts
from runner.run.state import RunState
from runner.run.workspace import (
    WORKSPACE_DIR,
    ArtifactMissing,
    ArtifactTooLarge,
    UnsafeArchive,
    Workspace,
    check_relative,
    rewrite_archive,
)
from runner.secrets.redact import Redactor
from runner.trusted import git_text

MAX_KEY = 512  # GitHub's
DEFAULT_BRANCH = "refs/heads/main"
_PATTERN = re.compile(r"[*?\[\]!{}]")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Scope:
    """Where caches are written: the event and ref of the run that wrote them."""

    event: str
    ref: str

    @property
    def id(self) -> str:
        return hashlib.sha256(f"{self.event}\0{self.ref}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Request:
    """A cache step's inputs, checked: what to save at the end of the job on a miss."""

    key: str
    paths: tuple[str, ...]  # workspace-relative
    restore_keys: tuple[str, ...]


@dataclass(frozen=True)
class Restored:
    outputs: Mapping[str, str]
    hit: bool  # `key` itself was found: nothing to save


def default_branch(root: Path) -> str:
    """The repository's default branch as a ref: origin's HEAD, else `refs/heads/main`."""
    remote = git_text(root, "symbolic-ref", "-q", "refs/remotes/origin/HEAD")
    if remote.startswith("refs/remotes/origin/"):
        return "refs/heads/" + remote.removeprefix("refs/remotes/origin/")
    return DEFAULT_BRANCH


def scopes(state: RunState) -> tuple[Scope, ...]:
    """Where a run reads caches, in order: its own scope, then the default branch's push."""
    own = Scope(state.info.event, state.info.ref)
    base = Scope("push", default_branch(state.info.root))
    return (own,) if own == base else (own, base)


def request(with_: Mapping[str, str]) -> Request:
    """The step's `with:`, checked; InvalidInput saying what to change."""
    key = with_.get("key", "").strip()
    if not key:
        raise InvalidInput("actions/cache needs `with: {key: ...}`")
    if len(key) > MAX_KEY or "," in key:
        raise InvalidInput(
            f"cache key {key[:80]!r} is longer than {MAX_KEY} characters or holds a ','"
            " (GitHub refuses both)"
        )
    lines = [line.strip() for line in with_.get("path", "").splitlines() if line.strip()]
    if not lines:
        raise InvalidInput("actions/cache needs `with: {path: ...}`")
    paths = []
    for line in lines:
        text = line
        if text == WORKSPACE_DIR or text.startswith(WORKSPACE_DIR + "/"):
            text = text[len(WORKSPACE_DIR) :].lstrip("/") or "."
        if text.startswith(("~", "/")) or _PATTERN.search(text):
            raise InvalidInput(
                f"cache path {line!r} is not a path inside the workspace",
                hint="only the workspace lasts from one step to the next here: cache a "
                "directory in it (e.g. `path: .cache/pip` with `PIP_CACHE_DIR: "
                "${{ github.workspace }}/.cache/pip` in the job's env)",
            )
        paths.append(check_relative(text, "cache path"))
    restore = [k.strip() for k in with_.get("restore-keys", "").splitlines() if k.strip()]
    return Request(key, tuple(paths), tuple(restore))


def entry_digest(entry: Mapping[str, Any]) -> str:
    """What the ledger records of an entry: the digest of its key, scope and blobs."""
    return json_digest({k: entry[k] for k in ("key", "event", "ref", "paths")})


def _root(state: RunState) -> Path:
    return state.state_dir / "cache"


def _entry_path(state: RunState, scope: Scope, key: str) -> Path:
    name = hashlib.sha256(key.encode()).hexdigest()
    return _root(state) / "scopes" / scope.id / f"{name}.json"


def _blob(state: RunState, digest: str) -> Path:
    return _root(state) / "blobs" / f"{digest}.tar"


def _read(path: Path) -> dict[str, Any] | None:
    """The entry at `path`; None when there is none, or none runner wrote (unreadable, or
    not of the shape `save` writes: a changed entry is never followed out of its paths)."""
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or not all(
        isinstance(entry.get(k), str) for k in ("key", "event", "ref")
    ):
        return None
    parts = entry.get("paths")
    if not isinstance(parts, list) or not parts or not all(_part_ok(p) for p in parts):
        return None
    return entry


def _part_ok(part: object) -> bool:
    if not isinstance(part, dict) or part.get("type") not in ("file", "dir"):
        return False
    path, digest = part.get("path"), part.get("sha256")
    if not isinstance(path, str) or not isinstance(digest, str) or not _DIGEST.match(digest):
        return False
    try:
        return check_relative(path, "cache path") == path and isinstance(part.get("size"), int)
    except InvalidInput:
        return False


def _find(state: RunState, req: Request) -> dict[str, Any] | None:
    """The entry for `req`: its key in each scope in turn, then each restore key's newest."""
    for scope in scopes(state):
        exact = _read(_entry_path(state, scope, req.key))
        if exact is not None and exact["key"] == req.key:
            return exact
        folder = _root(state) / "scopes" / scope.id
        held = [e for p in sorted(folder.glob("*.json")) if (e := _read(p)) is not None]
        for prefix in req.restore_keys:
            matches = [e for e in held if e["key"].startswith(prefix)]
            if matches:
                return max(matches, key=lambda e: float(e.get("created", 0)))
    return None


def restore(state: RunState, job_key: str, workspace: Workspace, req: Request) -> Restored:
    """Place the entry `req` finds into the workspace; a changed blob is a clear error."""
    outputs = {"cache-primary-key": req.key, "cache-hit": "false", "cache-matched-key": ""}
    entry = _find(state, req)
    if entry is None:
        return Restored(outputs, hit=False)
    for part in entry["paths"]:
        blob = _blob(state, str(part["sha256"]))
        if not blob.is_file() or file_sha256(blob) != part["sha256"]:
            raise InvalidInput(
                f"cache {entry['key']!r}: its stored {part['path']!r} is missing or changed "
                f"since it was saved ({blob}), so nothing was restored",
                hint="remove the cache directory under the state dir to start afresh",
            )
    for part in entry["paths"]:
        where, is_dir = str(part["path"]), part["type"] == "dir"
        prefix = where if is_dir else os.path.dirname(where) or "."
        with _blob(state, str(part["sha256"])).open("rb") as source:
            tar = rewrite_archive(source, prefix, workspace.uid, contents=is_dir)
            workspace.backend.put_workspace(workspace.volume, ".", tar, workspace.labels)
    state.sink.emit(
        CacheRestored(
            job=job_key,
            key=req.key,
            matched=entry["key"],
            event=str(entry["event"]),
            ref=str(entry["ref"]),
            sha256=entry_digest(entry),
        )
    )
    hit = entry["key"] == req.key
    outputs.update({"cache-hit": "true" if hit else "false", "cache-matched-key": entry["key"]})
    return Restored(outputs, hit=hit)


def save(
    state: RunState,
    job_key: str,
    workspace: Workspace,
    container: str,
    req: Request,
    limits: Limits,
    scanner: Redactor,
) -> str:
    """Store `req`'s paths out of the stopped `container` in the run's own scope, unless
    the key is there already; "" or a warning saying why nothing was saved."""
    scope = Scope(state.info.event, state.info.ref)
    target = _entry_path(state, scope, req.key)
    if target.exists():
        return ""  # another job of this run (or another run) saved it first, as GitHub
    (_root(state) / "blobs").mkdir(parents=True, exist_ok=True)
    parts: list[dict[str, Any]] = []
    for path in req.paths:
        partial = _root(state) / "blobs" / f".{secrets.token_hex(8)}.partial.tar"
        artifact = Artifact(name=f"cache {req.key}", path=path, type="dir")
        try:
            digest, size = artifacts.store_checked(
                workspace, container, artifact, partial, limits, scanner
            )
        except ArtifactMissing:
            return f"cache {req.key!r} not saved: no {path!r} in the workspace"
        except (InvalidInput, UnsafeArchive, ArtifactTooLarge) as exc:
            return f"cache {req.key!r} not saved: {exc.message}"
        kind = _kind(partial)
        os.replace(partial, _blob(state, digest))
        parts.append({"path": path, "sha256": digest, "size": size, "type": kind})
    entry = {
        "key": req.key,
        "event": scope.event,
        "ref": scope.ref,
        "paths": parts,
        "created": time.time(),  # wall time: "newest" across runs
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    with state.lock:
        if target.exists():
            return ""
        write_atomic(target, json.dumps(entry, sort_keys=True).encode(), durable=True)
    state.sink.emit(
        CacheSaved(
            job=job_key,
            key=req.key,
            event=scope.event,
            ref=scope.ref,
            sha256=entry_digest(entry),
            size=sum(int(p["size"]) for p in parts),
        )
    )
    return ""


def _kind(stored: Path) -> str:
    """`file` when the engine's tar of a path holds one regular file, else `dir`."""
    with tarfile.open(stored, mode="r:") as tar:
        members = tar.getmembers()
    return "file" if len(members) == 1 and members[0].isfile() else "dir"
