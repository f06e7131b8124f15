"""A job's read-only `.git`: the repository's history, without remotes, hooks or config.

The workspace never holds `.git/` (`runner.run.workspace`): it is the invoker's, with
hooks that run code and a config that may hold credentials (CI checkouts persist a token
in `http.extraheader` or a remote's URL). A job that asks for the history, as GitHub's
`actions/checkout` with `fetch-depth: 0` does (`wants_history`), gets a copy of it
instead, made by runner as the invoking user (`copy_history`): `git clone --bare
--no-local` of the repository's branches and tags into a directory of runner's own, with
no template (so no hooks), a config git writes afresh (so nothing of the invoker's) whose
one remote is then removed, and an index read from HEAD, so that `git status` compares
the workspace with HEAD. The engine holds the copy in a volume of its own (a snapshot
volume, `Backend.create_snapshot`: the engine extracts it, every entry owned by the step
user, since git refuses a repository someone else owns), which every step of the job
mounts read-only at `/workspace/.git` (`ContainerSpec.history_volume`): `git describe`,
`git log` and `git status` work, and nothing a step does can change it. The volume
carries the run's labels, so it goes with the job, and `runner gc` sweeps what a crashed
run left.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from runner.engine.backend import Backend
from runner.errors import InvalidInput
from runner.mission import actions
from runner.mission.model import Job
from runner.run import tarstream

FULL_HISTORY = "0"  # actions/checkout's fetch-depth for all of it
GIT_TIMEOUT_S = 600.0


def wants_history(job: Job) -> bool:
    """Whether a step of `job` is `actions/checkout` with `fetch-depth: 0`."""
    return any(
        step.uses is not None
        and actions.kind_of(step.uses) is actions.ActionKind.CHECKOUT
        and str(step.with_.get("fetch-depth", "")).strip() == FULL_HISTORY
        for step in job.steps
    )


def _git_env() -> dict[str, str]:
    """The invoker's environment without git's own variables (a `GIT_DIR` there would
    point git elsewhere) and without the system and global configs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0")
    return env


def _git(*args: str, what: str, check: bool = True) -> int:
    """Run git as the invoker; InvalidInput saying `what` failed (unless not `check`)."""
    git = shutil.which("git")
    if git is None:
        raise InvalidInput(
            f"{what}: git is not installed on this host",
            hint="install git, or drop `fetch-depth: 0` from actions/checkout",
        )
    try:
        done = subprocess.run(
            [git, *args],
            env=_git_env(),
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise InvalidInput(f"{what}: git took more than {GIT_TIMEOUT_S:g} s") from None
    if done.returncode != 0 and check:
        said = done.stderr.strip().splitlines()
        raise InvalidInput(f"{what}: {said[-1] if said else f'git exit code {done.returncode}'}")
    return done.returncode


def copy_history(repo: Path, into: Path) -> None:
    """Clone the history of `repo` into the new directory `into`: its branches and tags,
    with no hooks, no remote and no config of the invoker's, and an index of HEAD."""
    what = f"copying the history of {repo} (actions/checkout with fetch-depth: 0)"
    if not (repo / ".git").is_dir():
        raise InvalidInput(
            f"{what}: {repo} is not a git repository (no .git directory)",
            hint="run runner in a git checkout, or drop `fetch-depth: 0`",
        )
    _git(
        "clone", "--bare", "--no-local", "--template=", "--quiet", "--", str(repo), str(into),
        what=what,
    )  # fmt: skip
    _git("--git-dir", str(into), "remote", "remove", "origin", what=what)
    _git("--git-dir", str(into), "config", "core.bare", "false", what=what)
    head = _git(
        "--git-dir", str(into), "rev-parse", "--verify", "-q", "HEAD", what=what, check=False
    )
    if head == 0:  # an index of HEAD: `git status` shows what the steps changed
        with tempfile.TemporaryDirectory(prefix="runner-worktree-") as empty:
            _git("--git-dir", str(into), "--work-tree", empty, "read-tree", "HEAD", what=what)


def history_tar(directory: Path, uid: int) -> Callable[[str], Iterator[bytes]]:
    """The tree `create_snapshot` takes: `directory` (runner's own copy, made by
    `copy_history`: directories and regular files only) as a tar under the prefix the
    engine asks for, every entry owned by `uid`, no bits but rwx."""

    def info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
        member = tarfile.TarInfo(name)
        member.type, member.mode, member.size = kind, mode & 0o755, size
        member.uid = member.gid = uid
        return member

    def tree(prefix: str) -> Iterator[bytes]:
        yield tarstream.header(info(prefix, tarfile.DIRTYPE, 0o755))
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            here = Path(root)
            base = prefix + "/" + here.relative_to(directory).as_posix()
            base = base.removesuffix("/.")
            for name in dirs:
                yield tarstream.header(info(f"{base}/{name}", tarfile.DIRTYPE, 0o755))
            for name in sorted(files):
                path = here / name
                with path.open("rb") as handle:
                    size = os.fstat(handle.fileno()).st_size
                    mode = os.fstat(handle.fileno()).st_mode
                    yield tarstream.header(info(f"{base}/{name}", tarfile.REGTYPE, mode, size))
                    yield from tarstream.content(handle, size, str(path))
        yield tarstream.END

    return tree


class History:
    """The read-only history volume of one job: made by `open`, removed by `close`."""

    def __init__(self, backend: Backend, name: str, labels: Mapping[str, str]) -> None:
        self.backend = backend
        self.name = name
        self.labels = dict(labels)
        self.volume: str | None = None

    def open(self, repo: Path, uid: int) -> str:
        with tempfile.TemporaryDirectory(prefix="runner-history-") as scratch:
            copy = Path(scratch) / "git"
            copy_history(repo, copy)
            self.backend.create_snapshot(
                self.name, self.labels, history_tar(copy, uid), self.labels
            )
        self.volume = self.name
        return self.name

    def close(self) -> None:
        if self.volume is not None:
            self.backend.remove_volume(self.volume)
            self.volume = None
