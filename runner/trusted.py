"""Where the trusted configuration comes from, and saying so.

The repository's working tree is untrusted input: a pull request's author writes its
missions, actions and scripts, and could write its policy too. What decides what a
mission may do is the trusted part (SPEC 5):

    policies/default.yml    the policy              (--policy FILE)
    containers/tools.yml    the tool catalog        (--catalog FILE)
    policies/keys/*.pub     the trusted public keys (--trusted-keys DIR)
    containers/<name>/      which images may be built, and from what

A `TrustedSource` reads each of them from where the invoker says: by default the working
tree (read beneath the root by `runner.repo_files`, so at least no link leads out of it);
with `--trusted-ref REF` the git objects of that ref (`git ls-tree`, `git cat-file`: the
ref's content, never the working tree, and a symlink there is refused, never followed);
or a path the invoker names. Every read returns its `Origin`: where it came from (working
tree, ref and commit, path, built in), the digest of what was read, and whether the working
tree's copy differs from it, which `plan`, `policy check` and the ledger show.

Git runs as `git -C ROOT` with the repository's hooks and fsmonitor disabled; `.git/` is
the invoker's checkout, trusted like the ref it holds (a working tree never contains it).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from runner import repo_files
from runner.errors import InvalidInput
from runner.repo_files import RepoFileError, shown

POLICY_PATH = "policies/default.yml"
CATALOG_PATH = "containers/tools.yml"
KEYS_DIR = "policies/keys"
CONTAINERS_DIR = "containers"

POLICY_BYTES = 1024 * 1024
CATALOG_BYTES = 1024 * 1024
KEY_BYTES = 64 * 1024
MAX_KEYS = 1000
CONTEXT_BYTES = 256 * 1024 * 1024  # one containers/<name>/ build context, in all (in memory)
CONTEXT_ENTRIES = 10_000

GIT = ("git", "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null")
_GIT_TIMEOUT = 60

OriginKind = Literal["working-tree", "ref", "path", "builtin"]


@dataclass(frozen=True)
class Origin:
    """Where one trusted input came from."""

    what: str  # "policy", "catalog", "keys", "image python"
    kind: OriginKind
    path: str  # repository-relative, or the invoker's path
    ref: str = ""
    commit: str = ""
    digest: str = ""  # sha256 of what was read; "" when there was nothing
    differs: bool | None = None  # whether the working tree's copy differs (ref, path)

    def describe(self) -> str:
        """`policies/default.yml at origin/main (commit 1a2b3c4d5e6f); the working tree's
        copy differs` and the like."""
        match self.kind:
            case "working-tree":
                where = f"{self.path} (working tree)"
            case "ref":
                where = f"{self.path} at {self.ref} (commit {self.commit[:12]})"
            case "path":
                where = f"{self.path} (given by the invoker)"
            case "builtin":
                where = "built into runner"
        if not self.digest and self.kind != "builtin":
            where += ", missing"
        if self.differs:
            where += "; the working tree's copy differs"
        elif self.differs is False:
            where += "; the working tree's copy is the same"
        return where

    def serialize(self) -> dict[str, Any]:
        out: dict[str, Any] = {"what": self.what, "source": self.kind, "path": self.path}
        if self.kind == "ref":
            out |= {"ref": self.ref, "commit": self.commit}
        out["sha256"] = self.digest
        if self.differs is not None:
            out["working_tree_differs"] = self.differs
        return out


@dataclass(frozen=True)
class Loaded:
    """A trusted file: its bytes (None when it does not exist) and where they came from."""

    data: bytes | None
    origin: Origin


@dataclass(frozen=True)
class ContextFile:
    path: str  # relative to the context directory
    kind: Literal["file", "dir", "link"]
    mode: int = 0o644  # 0o644 or 0o755 for files, 0o755 for directories
    data: bytes = b""  # a file's content, a link's target


@dataclass(frozen=True)
class BuildContext:
    """A `containers/<name>/` directory as the engine will see it."""

    name: str
    files: tuple[ContextFile, ...]
    origin: Origin

    @property
    def digest(self) -> str:
        return self.origin.digest

    def materialize(self, directory: Path) -> None:
        """Write the context into the empty directory `directory` (runner's own)."""
        for item in self.files:
            target = directory / item.path
            match item.kind:
                case "dir":
                    target.mkdir(mode=0o755)
                case "link":
                    os.symlink(item.data, target)
                case "file":
                    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                    fd = os.open(target, flags, item.mode)
                    with os.fdopen(fd, "wb") as out:
                        out.write(item.data)


def context_digest(files: tuple[ContextFile, ...]) -> str:
    """sha256 over every entry of a build context: kind, mode, path and content, in path
    order; the same content gives the same digest from a ref or from the working tree."""
    digest = hashlib.sha256()
    for item in sorted(files, key=lambda f: f.path):
        body = hashlib.sha256(item.data).hexdigest().encode() if item.kind == "file" else item.data
        digest.update(
            f"{item.kind[0]} {item.mode:o} {item.path}\0".encode("utf-8", "surrogateescape")
        )
        digest.update(body + b"\0")
    return digest.hexdigest()


def _sha256(data: bytes | None) -> str:
    return hashlib.sha256(data).hexdigest() if data is not None else ""


# ---------------------------------------------------------------------- git


def git(root: Path, *args: str, stdin: bytes | None = None) -> bytes | None:
    """`git -C root ARGS` output, or None when git fails or is missing."""
    try:
        done = subprocess.run(
            [*GIT, "-C", str(root), *args],
            input=stdin,
            capture_output=True,
            timeout=_GIT_TIMEOUT,
            check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_text(root: Path, *args: str) -> str:
    """`git` output as text, stripped; "" when git fails (outside a repository)."""
    out = git(root, *args)
    return out.decode("utf-8", "replace").strip() if out is not None else ""


def invoker_ref(root: Path, given: str | None) -> str:
    """The ref a run is for, as policy rules match it: `--ref` when given, else the branch
    git's HEAD names (`refs/heads/main`), else "" (a detached HEAD, no repository)."""
    if given is not None:
        return given
    return git_text(root, "symbolic-ref", "-q", "HEAD")


@dataclass(frozen=True)
class _TreeEntry:
    mode: str
    type: str
    oid: str
    size: int
    path: str


class _GitRef:
    """The objects of one commit, read with `git ls-tree` and `git cat-file`."""

    def __init__(self, root: Path, ref: str) -> None:
        self.root = root
        self.ref = ref
        commit = git(
            root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"
        )
        if not commit:
            raise InvalidInput(
                f"--trusted-ref {shown(ref)}: not a commit in the repository at {root}",
                hint="name a branch or tag that holds the trusted policy (e.g. origin/main); "
                "fetch it first in CI",
            )
        self.commit = commit.decode().strip()

    def _ls(self, path: str, *, recursive: bool = False) -> list[_TreeEntry]:
        args = ["ls-tree", "-z", "-l", "--full-tree"]
        if recursive:
            args += ["-r", "-t"]
        out = git(self.root, *args, self.commit, "--", path)
        if out is None:
            raise InvalidInput(f"{path} at {shown(self.ref)}: git ls-tree failed")
        entries = []
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _, name = record.partition(b"\t")
            mode, kind, oid, size = meta.decode().split()
            entries.append(
                _TreeEntry(
                    mode,
                    kind,
                    oid,
                    int(size) if size != "-" else 0,
                    name.decode("utf-8", "surrogateescape"),
                )
            )
        return entries

    def entry(self, path: str) -> _TreeEntry | None:
        return next((e for e in self._ls(path) if e.path == path), None)

    def blob(self, entry: _TreeEntry, *, limit: int) -> bytes:
        where = f"{entry.path} at {self.ref}"
        if entry.mode == "120000":
            raise RepoFileError(where, "is a symlink; a trusted file must be a regular file")
        if entry.type != "blob":
            raise RepoFileError(where, f"is a {entry.type}, not a regular file")
        if entry.size > limit:
            raise RepoFileError(where, f"is {entry.size} bytes; the limit is {limit} bytes")
        data = git(self.root, "cat-file", "blob", entry.oid)
        if data is None:
            raise RepoFileError(where, "git cat-file failed")
        return data

    def read(self, path: str, *, limit: int) -> bytes | None:
        entry = self.entry(path)
        return None if entry is None else self.blob(entry, limit=limit)

    def tree(self, path: str) -> list[_TreeEntry]:
        """Every entry under the directory `path` (paths relative to it)."""
        prefix = path.rstrip("/") + "/"
        return [
            replace(e, path=e.path[len(prefix) :])
            for e in self._ls(prefix, recursive=True)
            if e.path.startswith(prefix)
        ]


# ---------------------------------------------------------------------- the source


@dataclass
class TrustedSource:
    """Where `policy`, `catalog`, `keys` and `containers/<name>/` are read from."""

    root: Path
    ref: str | None = None  # --trusted-ref
    policy: Path | None = None  # --policy
    catalog: Path | None = None  # --catalog
    keys: Path | None = None  # --trusted-keys
    _git: _GitRef | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.ref is not None:
            self._git = _GitRef(self.root, self.ref)

    @property
    def commit(self) -> str:
        return self._git.commit if self._git is not None else ""

    def describe(self) -> str:
        if self._git is not None:
            return f"{shown(self.ref or '')} (commit {self.commit[:12]})"
        return "the working tree"

    # -- files --------------------------------------------------------------------------

    def _origin(self, what: str, kind: OriginKind, path: str, data: bytes | None) -> Origin:
        ref, commit = (self.ref or "", self.commit) if kind == "ref" else ("", "")
        return Origin(what, kind, path, ref, commit, _sha256(data))

    def _file(self, what: str, rel: str, given: Path | None, *, limit: int) -> Loaded:
        if given is not None:
            where = repo_files.locate(
                self.root, given if given.is_absolute() else self.root / given
            )
            if where is None:  # the invoker's own file, outside the repository
                data = _optional(lambda: repo_files.read_outside(given, limit=limit))
                origin = self._origin(what, "path", str(given), data)
                return Loaded(data, self._compare(origin, rel, data, limit))
            rel = where
        elif self._git is not None:
            data = self._git.read(rel, limit=limit)
            origin = self._origin(what, "ref", rel, data)
            return Loaded(data, self._compare(origin, rel, data, limit))
        data = repo_files.read_optional(self.root, rel, limit=limit)
        return Loaded(data, self._origin(what, "working-tree", rel, data))

    def _compare(self, origin: Origin, rel: str, data: bytes | None, limit: int) -> Origin:
        """`origin` with whether the working tree's `rel` differs from what was read."""
        try:
            mine = repo_files.read_optional(self.root, rel, limit=limit)
        except RepoFileError:
            return replace(origin, differs=True)
        return replace(origin, differs=mine != data)

    def policy_file(self) -> Loaded:
        return self._file("policy", POLICY_PATH, self.policy, limit=POLICY_BYTES)

    def catalog_file(self) -> Loaded:
        return self._file("catalog", CATALOG_PATH, self.catalog, limit=CATALOG_BYTES)

    def key_files(self) -> tuple[list[tuple[str, bytes]], Origin]:
        """(shown name, bytes) of every `*.pub` of the trusted keys directory."""
        if self.keys is not None:
            where = repo_files.locate(
                self.root, self.keys if self.keys.is_absolute() else self.root / self.keys
            )
            if where is None:
                found = _outside_keys(self.keys)
                return found, self._keys_origin("path", str(self.keys), found)
            return self._tree_keys(where)
        if self._git is not None:
            entries = [e for e in self._git_list(KEYS_DIR) if e.path.endswith(".pub")]
            if len(entries) > MAX_KEYS:
                raise RepoFileError(KEYS_DIR, f"holds more than {MAX_KEYS} keys")
            found = [
                (
                    f"{KEYS_DIR}/{e.path} at {self.ref}",
                    self._git.blob(replace(e, path=f"{KEYS_DIR}/{e.path}"), limit=KEY_BYTES),
                )
                for e in entries
            ]
            origin = self._keys_origin("ref", KEYS_DIR, found)
            mine = _optional_keys(lambda: self._tree_keys(KEYS_DIR)[0])
            differs = mine is None or sorted(d for _, d in mine) != sorted(d for _, d in found)
            return found, replace(origin, differs=differs)
        return self._tree_keys(KEYS_DIR)

    def _tree_keys(self, rel: str) -> tuple[list[tuple[str, bytes]], Origin]:
        entries = repo_files.list_dir(self.root, rel) or []
        pubs = [e for e in entries if e.rel.endswith(".pub")]
        if len(pubs) > MAX_KEYS:
            raise RepoFileError(rel, f"holds more than {MAX_KEYS} keys")
        found = [(e.rel, repo_files.read_file(self.root, e.rel, limit=KEY_BYTES)) for e in pubs]
        return found, self._keys_origin("working-tree", rel, found)

    def _keys_origin(self, kind: OriginKind, path: str, found: list[tuple[str, bytes]]) -> Origin:
        digest = hashlib.sha256(b"".join(sorted(_sha256(d).encode() for _, d in found)))
        return replace(self._origin("keys", kind, path, None), digest=digest.hexdigest())

    def _git_list(self, rel: str) -> list[_TreeEntry]:
        assert self._git is not None
        return [e for e in self._git.tree(rel) if "/" not in e.path]

    # -- images -------------------------------------------------------------------------

    def image_names(self) -> list[str]:
        """The `containers/<name>/` directories holding a `Dockerfile`."""
        if self._git is not None:
            tree = self._git.tree(CONTAINERS_DIR)
            return sorted(
                e.path.split("/")[0]
                for e in tree
                if e.path.count("/") == 1 and e.path.endswith("/Dockerfile")
            )
        names = []
        for entry in repo_files.list_dir(self.root, CONTAINERS_DIR) or []:
            if entry.kind == "dir":
                dockerfile = repo_files.lookup(self.root, f"{entry.rel}/Dockerfile")
                if dockerfile.kind == "file":
                    names.append(entry.rel.split("/", 1)[1])
        return names

    def check_definition(self, name: str) -> None:
        """RepoFileError saying why `containers/<name>` of the working tree is not an image
        definition when it exists but is no plain directory (a link out of the
        repository, a FIFO ...); nothing when it is missing or read from a ref."""
        if self._git is not None:
            return
        entry = repo_files.lookup(self.root, f"{CONTAINERS_DIR}/{name}")
        if entry.kind not in ("dir", "missing"):
            why = repo_files.refusal(entry) or f"is {entry.kind}"
            raise RepoFileError(entry.rel, why)

    def has_image(self, name: str) -> bool:
        return name in self.image_names()

    def build_context(self, name: str) -> BuildContext:
        """Every file of `containers/<name>/`: from the ref, or read beneath the root
        (regular files, directories and links only; links kept as links, for the engine
        resolves them inside the context), within `CONTEXT_BYTES` and `CONTEXT_ENTRIES`."""
        rel = f"{CONTAINERS_DIR}/{name}"
        if self._git is not None:
            files = self._ref_context(rel)
            kind: OriginKind = "ref"
        else:
            files = read_context(self.root, rel)
            kind = "working-tree"
        origin = replace(
            self._origin(f"image {name}", kind, rel, None), digest=context_digest(files)
        )
        if kind == "ref":
            try:
                mine = context_digest(read_context(self.root, rel))
            except RepoFileError:
                mine = ""
            origin = replace(origin, differs=mine != origin.digest)
        return BuildContext(name, files, origin)

    def _ref_context(self, rel: str) -> tuple[ContextFile, ...]:
        assert self._git is not None
        entries = self._git.tree(rel)
        if len(entries) > CONTEXT_ENTRIES:
            raise RepoFileError(rel, f"holds more than {CONTEXT_ENTRIES} entries")
        total = sum(e.size for e in entries if e.type == "blob")
        if total > CONTEXT_BYTES:
            raise RepoFileError(rel, f"holds {total} bytes; the limit is {CONTEXT_BYTES}")
        files: list[ContextFile] = []
        for entry in entries:
            path = f"{rel}/{entry.path} at {self.ref}"
            if entry.type == "tree":
                files.append(ContextFile(entry.path, "dir", 0o755))
            elif entry.mode == "120000":
                target = git(self.root, "cat-file", "blob", entry.oid) or b""
                files.append(ContextFile(entry.path, "link", 0o777, target))
            elif entry.type == "blob":
                data = self._git.blob(replace(entry, path=path), limit=CONTEXT_BYTES)
                mode = 0o755 if entry.mode == "100755" else 0o644
                files.append(ContextFile(entry.path, "file", mode, data))
            else:
                raise RepoFileError(path, f"is a {entry.type} (a submodule?), not a file")
        return tuple(files)


def _optional(read: Any) -> bytes | None:
    try:
        data: bytes = read()
    except RepoFileError as exc:
        if exc.problem == "no such file":
            return None
        raise
    return data


def _optional_keys(read: Any) -> list[tuple[str, bytes]] | None:
    with contextlib.suppress(RepoFileError):
        found: list[tuple[str, bytes]] = read()
        return found
    return None


def _outside_keys(directory: Path) -> list[tuple[str, bytes]]:
    if not directory.is_dir():
        return []
    names = sorted(p for p in os.listdir(directory) if p.endswith(".pub"))
    if len(names) > MAX_KEYS:
        raise RepoFileError(str(directory), f"holds more than {MAX_KEYS} keys")
    return [
        (str(directory / n), repo_files.read_outside(directory / n, limit=KEY_BYTES)) for n in names
    ]


def read_context(root: Path, rel: str) -> tuple[ContextFile, ...]:
    """Every entry of the directory `rel` beneath `root`, as a build context holds it."""
    files: list[ContextFile] = []
    total = 0
    for item in repo_files.walk(root, rel, max_entries=CONTEXT_ENTRIES):
        where = f"{rel}/{item.rel}"
        match item.kind:
            case "dir":
                files.append(ContextFile(item.rel, "dir", 0o755))
            case "link":
                files.append(ContextFile(item.rel, "link", 0o777, os.fsencode(item.target)))
            case "file":
                total += item.size
                if total > CONTEXT_BYTES:
                    raise RepoFileError(rel, f"holds more than {CONTEXT_BYTES} bytes")
                data = repo_files.read_walked(item, limit=CONTEXT_BYTES, shown_as=where)
                mode = 0o755 if item.mode & 0o111 else 0o644
                files.append(ContextFile(item.rel, "file", mode, data))
            case _:
                why = repo_files.refusal(repo_files.Entry(where, where, item.kind))
                raise RepoFileError(where, why or "is not a regular file")
    return tuple(files)


def source_of(root: Path | TrustedSource) -> TrustedSource:
    """`root` as a source: a bare path is its working tree."""
    return root if isinstance(root, TrustedSource) else TrustedSource(root)


@contextlib.contextmanager
def materialized(context: BuildContext, parent: Path | None = None) -> Iterator[Path]:
    """A fresh directory under `parent` holding `context`, removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix=f"context-{context.name}-", dir=parent))
    try:
        context.materialize(directory)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
