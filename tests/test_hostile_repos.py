"""Hostile repositories fed to `validate`, `plan`, `policy check` and `run`, as a pull
request's author would shape one: links to outside (files and directories) at every path
runner reads, hard links to a host file, FIFOs, device files, a 10 GiB sparse file, 10,000
nested directories, names with newlines and undecodable bytes.

Whatever the shape, each command ends within its timeout (nothing blocks) with an exit
code of SPEC 8 and no traceback or internal error, and a canary file outside the
repository is never read (its access time is set before its modification time, so that
any read moves it on a relatime mount), never changed, and its content appears in no
output and nowhere in the state dir; nothing is written into the host directory.

One shape at a time, every command runs in-process, `run` against an engine that does not
answer (so everything before the engine runs: loading, policy, catalog, keys, ledger).
On the real engine, one repository holds every shape at once where a run gets past its
checks: hashFiles() over them, local actions made of them, a build context holding them,
`audit verify` reading keys made of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CliResult, invoke, runner_cli

CANARY = "canary-3f1d9a77-host-secret"
DEEP = 10_000
COMMANDS = {
    "validate": ("validate",),
    "plan": ("plan", ".missions/ok.yml"),
    "policy check": ("policy", "check"),
    "run": ("run", ".missions/ok.yml"),
}

MISSION = """\
name: ok
on: [push]
jobs:
  hash:
    steps:
      - run: echo "${{ hashFiles('**/*.lock') }}"
"""
POLICY = 'version: 1\nimages: [base]\ntools: [sh]\nuses: ["./actions/*"]\n'
ACTION = "runs: {using: composite, steps: [{run: id, shell: sh}]}\n"


@dataclass(frozen=True)
class Host:
    """A directory outside the repository, holding the canary in every shape a reader
    might want: a file, a mission, an action, an image definition."""

    dir: Path
    file: Path

    def stamp(self) -> list[tuple[str, int, int]]:
        found = []
        for path in sorted(self.dir.rglob("*")):
            st = path.lstat()
            found.append((str(path), st.st_atime_ns, st.st_mtime_ns))
        return found


@pytest.fixture
def host(tmp_path: Path) -> Host:
    directory = tmp_path / "host"
    (directory / "ok").mkdir(parents=True)
    (directory / "base").mkdir()
    canary = directory / "canary"
    canary.write_text(f"name: {CANARY}\njobs: {{{CANARY}: 1}}\n")
    (directory / "canary.yml").write_text(f"name: {CANARY}\n")
    (directory / "ok" / "action.yml").write_text(f"# {CANARY}\n{ACTION}")
    (directory / "base" / "Dockerfile").write_text(f"FROM scratch\n# {CANARY}\n")
    for path in [directory, *directory.rglob("*")]:
        st = path.lstat()
        os.utime(path, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns))  # atime before mtime
    return Host(directory, canary)


def fifo(path: Path, host: Host) -> None:
    os.mkfifo(path)


def device(path: Path, host: Host) -> None:
    os.mknod(path, 0o600 | 0o020000, os.makedev(1, 5))  # /dev/zero


def devlink(path: Path, host: Host) -> None:
    os.symlink("/dev/zero", path)


def link_out(path: Path, host: Host) -> None:
    os.symlink(host.file, path)


def link_up(path: Path, host: Host) -> None:
    depth = len(path.relative_to(path.parents[len(path.parts) - 2]).parts)
    os.symlink("../" * (depth + 3) + str(host.file).lstrip("/"), path)


def hard(path: Path, host: Host) -> None:
    os.link(host.file, path)


def sparse(path: Path, host: Host) -> None:
    with open(path, "wb") as handle:
        handle.truncate(10 * 1024**3)


Shape = Callable[[Path, Host], None]
FILE_SHAPES: dict[str, Shape] = {
    "symlink": link_out,
    "relative-symlink": link_up,
    "hardlink": hard,
    "fifo": fifo,
    "device": device,
    "devlink": devlink,
    "sparse": sparse,
}
# every file runner reads from a repository
FILES = {
    "mission": ".missions/evil.yml",
    "policy": "policies/default.yml",
    "key": "policies/keys/evil.pub",
    "catalog": "containers/tools.yml",
    "dockerfile": "containers/base/Dockerfile",
    "context": "containers/base/extra",
    "action": "actions/ok/action.yml",
    "hashed": "data.lock",
}
# every directory runner reads from a repository
DIRS = {
    "missions-dir": (".missions", "."),
    "policies-dir": ("policies", "."),
    "containers-dir": ("containers", "."),
    "context-dir": ("containers/base", "base"),
    "action-dir": ("actions/ok", "ok"),
}


def deep_tree(repo: Path, host: Host) -> None:
    fd = os.open(repo, os.O_RDONLY)
    for _ in range(DEEP):
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.symlink(host.file, "x.lock", dir_fd=fd)
    os.close(fd)


def weird_names(repo: Path, host: Host) -> None:
    for name in (b"evil\n\x1b[2J\xff.yml", b"\xfe\xff.lock"):
        os.symlink(host.file, os.path.join(os.fsencode(repo / ".missions"), name))
    os.symlink(host.file, os.path.join(os.fsencode(repo), b"new\nline.lock"))


CASES: dict[str, Callable[[Path, Host], None]] = {}
for what, rel in FILES.items():
    for shape, make in FILE_SHAPES.items():

        def case(repo: Path, host: Host, rel: str = rel, make: Shape = make) -> None:
            target = repo / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            make(target, host)

        CASES[f"{what}-{shape}"] = case
for what, (rel, inside) in DIRS.items():

    def dir_case(repo: Path, host: Host, rel: str = rel, inside: str = inside) -> None:
        target = repo / rel
        subprocess.run(["rm", "-rf", str(target)], check=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(host.dir / inside if inside != "." else host.dir, target)

    CASES[what] = dir_case
CASES["deep-tree"] = deep_tree
CASES["weird-names"] = weird_names


def make_repo(root: Path) -> Path:
    for rel, text in {
        ".missions/ok.yml": MISSION,
        "policies/default.yml": POLICY,
        "actions/ok/action.yml": ACTION,
        "containers/base/Dockerfile": "FROM debian:bookworm-slim\nUSER 65534\n",
        "README": "a repository\n",
    }.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


@pytest.fixture
def hostile(request: pytest.FixtureRequest, tmp_path: Path, host: Host) -> Iterator[Path]:
    repo = make_repo(tmp_path / "repo")
    CASES[request.param](repo, host)
    yield repo
    subprocess.run(["rm", "-rf", str(repo)], check=True)  # deep trees defeat shutil


def check(code: int, text: str, host: Host, before: object, state: Path) -> None:
    assert code in (0, 1, 2, 3, 4), text
    assert "Traceback" not in text and "internal error" not in text, text
    assert CANARY not in text
    for path in state.rglob("*") if state.exists() else ():
        if path.is_file() and not path.is_symlink():
            assert CANARY.encode() not in path.read_bytes(), path
    assert host.stamp() == before, "a file outside the repository was read or written"


def bounded(state: Path, *args: str, timeout: float = 60) -> CliResult:
    """`invoke` (in-process, through the one error handler), failing if it blocks."""
    done: list[CliResult] = []
    worker = threading.Thread(target=lambda: done.append(invoke(state, *args)), daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"runner {' '.join(args)} blocked for {timeout} s"
    return done[0]


@pytest.mark.parametrize("hostile", sorted(CASES), indirect=True)
def test_hostile_repository_up_to_the_engine(
    hostile: Path, host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(hostile)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    state = tmp_path / "state"
    before = host.stamp()
    for command in COMMANDS.values():
        done = bounded(state, *command)
        check(done.code, done.out + done.err, host, before, state)


def kitchen_sink(repo: Path, host: Host, shapes: dict[str, Shape]) -> None:
    """Every shape at once wherever a run reads past its checks; a job per local action."""
    jobs = ["jobs:", "  hash:", "    steps: [{run: 'echo ${{ hashFiles(''**/*.lock'') }}'}]"]
    for shape, make in shapes.items():
        for rel in (
            f"data-{shape}.lock",
            f"containers/base/extra-{shape}",
            f"actions/{shape}/action.yml",
            f"policies/keys/{shape}.pub",
        ):
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            make(repo / rel, host)
        jobs += [f"  action-{shape}:", f"    steps: [{{uses: ./actions/{shape}}}]"]
    os.symlink(host.dir / "ok", repo / "actions" / "outside")
    jobs += ["  action-outside:", "    steps: [{uses: ./actions/outside}]"]
    deep_tree(repo, host)
    weird_names(repo, host)
    (repo / ".missions" / "ok.yml").write_text("name: ok\non: [push]\n" + "\n".join(jobs) + "\n")


# Workspace seeding refuses these before copying anything (runner.run.snapshot): a hard
# link to a host file, and a 10 GiB sparse file (refused by its size, never read).
SEEDING = ("hardlink", "sparse")
SINKS = {
    "every-other-shape": {k: v for k, v in FILE_SHAPES.items() if k not in SEEDING},
    "hard-links": {"hardlink": hard},
    "sparse": {"sparse": sparse},
}
SEEDING_SINKS = {
    "hard-links": "hard links: it may be a file from outside the repository",
    "sparse": "a workspace file may be at most",
}


@pytest.mark.docker
@pytest.mark.parametrize(
    "sink",
    [
        "every-other-shape",
        "hard-links",
        "sparse",
    ],
)
def test_hostile_repository_run(sink: str, host: Host, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    kitchen_sink(repo, host, SINKS[sink])
    state = tmp_path / "state"
    before = host.stamp()
    try:
        done = runner_cli(repo, state, "run", ".missions/ok.yml", "--json", timeout=600)
        check(done.returncode, done.stdout + done.stderr, host, before, state)
        if sink in SEEDING_SINKS:  # refused before any workspace is seeded, naming the file
            assert done.returncode == 2, done.stderr
            assert SEEDING_SINKS[sink] in done.stderr
        else:
            assert done.returncode == 1, done.stderr  # the jobs made of hostile files failed
            jobs = json.loads(done.stdout)["jobs"]
            statuses = {key: job["status"] for key, job in jobs.items()}
            assert statuses == dict.fromkeys(jobs, "failure")
        verify = runner_cli(repo, state, "audit", "verify", timeout=60)
        check(verify.returncode, verify.stdout + verify.stderr, host, before, state)
        assert verify.returncode == 2
    finally:
        subprocess.run(["rm", "-rf", str(repo)], check=True)
