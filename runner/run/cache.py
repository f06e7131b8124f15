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

Housekeeping (`collect`, run by `runner gc`), as GitHub evicts caches: an entry is last
used when it was saved or last restored (its file's mtime, touched by every restore);
entries unused for `MAX_UNUSED_DAYS` (7) are evicted, then the least recently used until
the blobs the rest need take at most `MAX_TOTAL_BYTES` (10 GiB, GitHub's per-repository
cap); blobs no entry needs and the partial blobs of a save that died go with them. A run
holds the store's lock shared while it restores or saves (`<state>/cache/lock`), and
`collect` takes it alone or does nothing, so an entry never goes while a run reads it.

Bounds: what a job stores is an artifact's, through `artifacts.store_checked` (the tar
streamed out of the stopped container, counted against `limits.artifact-size`, its
members checked by `workspace.safe_members`, so links leaving the path, devices and
too many or too deep files refuse it; a secret granted to the job or a value it masked
refuses it too, in the paths or in the key, as a cache outlives the run). A refused save is a warning, as on GitHub,
and the job's result stands. Nothing is ever extracted on the host.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import secrets
import tarfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.durable import file_sha256, flock, json_digest, write_atomic
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
MAX_UNUSED_DAYS = 7  # GitHub evicts a cache not used for 7 days
MAX_TOTAL_BYTES = 10 * 1024**3  # GitHub's cap per repository: 10 GiB
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


@contextlib.contextmanager
def _using(state: RunState) -> Iterator[None]:
    """The store's lock, shared with other runs, for a restore or a save: `collect` evicts
    nothing meanwhile."""
    root = _root(state)
    root.mkdir(parents=True, exist_ok=True)
    fd = flock(root / "lock", fcntl.LOCK_SH)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


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


def _find(state: RunState, req: Request) -> tuple[Path, dict[str, Any]] | None:
    """The entry for `req` and its file: its key in each scope in turn, then each restore
    key's newest."""
    for scope in scopes(state):
        path = _entry_path(state, scope, req.key)
        exact = _read(path)
        if exact is not None and exact["key"] == req.key:
            return path, exact
        folder = _root(state) / "scopes" / scope.id
        held = [(p, e) for p in sorted(folder.glob("*.json")) if (e := _read(p)) is not None]
        for prefix in req.restore_keys:
            matches = [(p, e) for p, e in held if e["key"].startswith(prefix)]
            if matches:
                return max(matches, key=lambda found: _created(found[1]))
    return None


def _created(entry: Mapping[str, Any]) -> float:
    created = entry.get("created", 0)
    return float(created) if isinstance(created, int | float) else 0.0


def restore(state: RunState, job_key: str, workspace: Workspace, req: Request) -> Restored:
    """Place the entry `req` finds into the workspace and mark it used now; a changed blob
    is a clear error."""
    with _using(state):
        return _restore(state, job_key, workspace, req)


def _restore(state: RunState, job_key: str, workspace: Workspace, req: Request) -> Restored:
    outputs = {"cache-primary-key": req.key, "cache-hit": "false", "cache-matched-key": ""}
    found = _find(state, req)
    if found is None:
        return Restored(outputs, hit=False)
    path, entry = found
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
    with contextlib.suppress(OSError):  # used now: `collect` keeps it longest
        os.utime(path)
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
    with _using(state):
        return _save(state, job_key, workspace, container, req, limits, scanner)


def _save(
    state: RunState,
    job_key: str,
    workspace: Workspace,
    container: str,
    req: Request,
    limits: Limits,
    scanner: Redactor,
) -> str:
    if scanner.masks(req.key):
        return (
            "cache not saved: its key holds a secret or a masked value, and a cache outlives "
            "the run (make the key from file hashes and versions instead)"
        )
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


# -- housekeeping (`runner gc`) -----------------------------------------------------------


@dataclass(frozen=True)
class Evicted:
    """An entry `collect` removed, and why: `unused` (not used for the days given) or
    `size` (the least recently used while the store was over its cap)."""

    key: str
    event: str
    ref: str
    sha256: str  # entry_digest, as `cache.saved` recorded it
    size: int  # the bytes its paths held when saved
    last_used: int  # Unix time: saved, or last restored
    reason: str

    def serialize(self) -> dict[str, str | int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Held:
    path: Path
    entry: dict[str, Any]
    last_used: float

    @property
    def blobs(self) -> set[str]:
        return {str(part["sha256"]) for part in self.entry["paths"]}


def collect(
    state_dir: Path, *, max_unused_s: float, max_bytes: int, now: float
) -> list[Evicted] | None:
    """Evict the entries of `state_dir`'s cache unused for `max_unused_s`, then the least
    recently used until what the rest need is at most `max_bytes`; remove the blobs no
    entry needs. What was evicted, oldest first, or None when a run is using the cache
    (nothing is removed then)."""
    root = state_dir / "cache"
    if not root.is_dir():
        return []
    exclusive = flock(root / "lock", fcntl.LOCK_EX | fcntl.LOCK_NB)
    if exclusive is None:
        return None
    try:
        held = sorted(_held(root), key=lambda h: h.last_used)
        evicted: list[tuple[_Held, str]] = []
        kept = [h for h in held if now - h.last_used <= max_unused_s]
        evicted += [(h, "unused") for h in held if now - h.last_used > max_unused_s]
        users = collections.Counter(digest for h in kept for digest in h.blobs)
        sizes = {digest: _size(root / "blobs" / f"{digest}.tar") for digest in users}
        total = sum(sizes.values())  # each blob once: entries share them
        while kept and total > max_bytes:
            oldest = kept.pop(0)
            evicted.append((oldest, "size"))
            for digest in oldest.blobs:
                users[digest] -= 1
                total -= sizes[digest] if users[digest] == 0 else 0
        for entry, _ in evicted:
            entry.path.unlink(missing_ok=True)
        needed = set().union(*(h.blobs for h in kept))
        _sweep(root, needed)
    finally:
        os.close(exclusive)
    return [
        Evicted(
            key=str(h.entry["key"]),
            event=str(h.entry["event"]),
            ref=str(h.entry["ref"]),
            sha256=entry_digest(h.entry),
            size=sum(int(part["size"]) for part in h.entry["paths"]),
            last_used=int(h.last_used),
            reason=reason,
        )
        for h, reason in evicted
    ]


def _held(root: Path) -> Iterator[_Held]:
    """The entries of the store that runner wrote (others are never followed: misses)."""
    for path in root.glob("scopes/*/*.json"):
        entry = _read(path)
        if entry is None:
            continue
        with contextlib.suppress(OSError):
            yield _Held(path, entry, path.stat().st_mtime)


def _size(blob: Path) -> int:
    try:
        return blob.stat().st_size
    except OSError:
        return 0  # gone: a restore of its entry fails and says so


def _sweep(root: Path, needed: set[str]) -> None:
    """Remove the blobs no kept entry needs, partial blobs (no save is running: the lock is
    held alone), and scope directories left empty."""
    for blob in (root / "blobs").glob("*.tar"):
        if blob.name.startswith(".") or blob.name.removesuffix(".tar") not in needed:
            blob.unlink(missing_ok=True)
    for folder in (root / "scopes").glob("*"):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty
