"""SPEC 6 proven in real containers: each step checks many facts at once to keep the count low."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import facts, run_container

from runner.engine.backend import LABEL_RUN, NOBODY, ContainerSpec
from runner.engine.docker.backend import DockerBackend
from runner.run.snapshot import RepoSnapshot
from runner.run.workspace import Workspace

pytestmark = pytest.mark.docker

MiB = 1024 * 1024
BUSYBOX = "runner-base/busybox:latest"
DEBIAN = "debian:bookworm-slim"


def step(
    backend: DockerBackend,
    run_id: str,
    command: list[str],
    *,
    image: str = BUSYBOX,
    timeout_s: float = 60,
    **changes: object,
) -> tuple[int | None, str]:
    fields: dict[str, object] = {
        "image": image,
        "command": command,
        "env": {},
        "labels": {LABEL_RUN: run_id},
        "memory_bytes": 128 * MiB,
        "cpus": 1.0,
        "pids": 64,
    }
    fields.update(changes)
    cid = backend.create(ContainerSpec(**fields))  # type: ignore[arg-type]
    try:
        code, output = run_container(backend, cid, timeout_s)
    finally:
        backend.remove(cid)
    return code, output


def workspace(
    backend: DockerBackend, run_id: str, repo: Path, *, exec_allowed: bool, uid: int = NOBODY
) -> Workspace:
    """A workspace holding `repo` (hello.txt added), its files owned by `uid`: the tar a
    snapshot volume gets, put straight into the workspace through the engine."""
    repo.mkdir(exist_ok=True)
    (repo / "hello.txt").write_text("hello\n")
    space = Workspace(
        backend, run_id, f"job-{exec_allowed}", lower=None, exec_allowed=exec_allowed, uid=uid
    )
    space.prepare()
    backend.put_workspace(space.volume, ".", RepoSnapshot(repo, uid=uid).chunks(), space.labels)
    return space


PROBE = r"""
status() { grep "^$1:" /proc/self/status | tr -d ' \t' | cut -d: -f2; }
echo "@capeff=$(status CapEff)"; echo "@capbnd=$(status CapBnd)"; echo "@capprm=$(status CapPrm)"
echo "@nonewprivs=$(status NoNewPrivs)"; echo "@seccomp=$(status Seccomp)"
echo "@uid=$(id -u)"; echo "@gid=$(id -g)"
touch /rootfile 2>/dev/null; echo "@root_write=$?"
echo data > /tmp/f && echo "@tmp_write=ok"
cp /bin/busybox /tmp/bb; /tmp/bb true 2>/dev/null; echo "@tmp_exec=$?"
echo "@ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ',')"
echo "@env=$(env | cut -d= -f1 | sort | tr '\n' ',')"
[ -e /var/run/docker.sock ] || [ -e /run/docker.sock ]; echo "@sock=$?"
[ -e /dev/shm ]; echo "@shm=$?"
echo x > /proc/sys/kernel/core_pattern 2>/dev/null; echo "@core_pattern=$?"
unshare -n true 2>/dev/null; echo "@unshare=$?"
mount -t tmpfs none /tmp 2>/dev/null; echo "@mount=$?"
echo "@devices=$(ls /dev | tr '\n' ',')"
cat hello.txt >/dev/null && echo "@ws_read=ok"
echo new > new.txt && echo "@ws_write=ok"
cp /bin/busybox ./bb; ./bb true 2>/dev/null; echo "@ws_exec=$?"
echo "@pwd=$(pwd)"
"""


def test_a_step_runs_hardened(backend: DockerBackend, run_id: str, tmp_path: Path) -> None:
    space = workspace(backend, run_id, tmp_path / "repo", exec_allowed=False)
    code, output = step(
        backend,
        run_id,
        ["sh", "-c", PROBE],
        env={"DECLARED": "1", "OTHER": "two"},
        workspace_volume=space.volume,
    )
    got = facts(output)
    assert code == 0, output
    assert got["capeff"] == got["capbnd"] == got["capprm"] == "0000000000000000"
    assert got["nonewprivs"] == "1"
    assert got["seccomp"] == "2"
    assert (got["uid"], got["gid"]) == ("65534", "65534")
    assert got["root_write"] != "0"  # read-only root
    assert got["tmp_write"] == "ok"
    assert got["tmp_exec"] == "126"  # /tmp is noexec
    assert got["ifaces"] == "lo,"  # no network but loopback
    # only the declared variables; PATH, HOME and HOSTNAME are the engine's, PWD/SHLVL the shell's
    assert got["env"] == "DECLARED,HOME,HOSTNAME,OTHER,PATH,PWD,SHLVL,"
    assert got["sock"] == "1"
    assert got["shm"] == "1"  # ipc_mode none
    assert got["core_pattern"] != "0"
    assert got["unshare"] != "0" and got["mount"] != "0"
    assert set(got["devices"].strip(",").split(",")) <= {
        "console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random",
        "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero",
    }  # fmt: skip
    assert got["ws_read"] == got["ws_write"] == "ok"
    assert got["ws_exec"] == "126"  # workspace noexec
    assert got["pwd"] == "/workspace"


# memfd_create (x86_64 syscall 319) from an interpreter: fd number, or -1 when refused
MEMFD = """perl -e 'my $n = "x"; my $r = syscall(319, $n, 0); print "\\@memfd=$r\\n"'"""


def test_workspace_noexec_holds_against_the_loader_and_memfd(
    backend: DockerBackend, run_id: str, tmp_path: Path
) -> None:
    space = workspace(backend, run_id, tmp_path / "repo", exec_allowed=False)
    script = (
        "cp /usr/bin/true ./x; ./x; echo @direct=$?; "
        "/lib64/ld-linux-x86-64.so.2 ./x; echo @loader=$?; "
        "cp /usr/bin/true /tmp/t; /lib64/ld-linux-x86-64.so.2 /tmp/t; echo @tmp_loader=$?; " + MEMFD
    )
    code, output = step(
        backend,
        run_id,
        ["sh", "-c", script],
        image=DEBIAN,
        workspace_volume=space.volume,
        seccomp_deny_memfd=True,
    )
    got = facts(output)
    assert code == 0, output
    assert got["direct"] == "126"
    assert got["loader"] != "0" and "failed to map segment" in output
    assert got["tmp_loader"] != "0"
    assert got["memfd"] == "-1"  # memfd_create refused


def test_exec_on_the_workspace_when_granted(
    backend: DockerBackend, run_id: str, tmp_path: Path
) -> None:
    space = workspace(backend, run_id, tmp_path / "repo", exec_allowed=True)
    script = (
        "cp /usr/bin/true ./x; ./x; echo @direct=$?; "
        + MEMFD
        + "; cp /usr/bin/true /tmp/t; /tmp/t; echo @tmp=$?"
    )
    code, output = step(
        backend,
        run_id,
        ["sh", "-c", script],
        image=DEBIAN,
        workspace_volume=space.volume,
        workspace_exec=True,  # granted, so runner-init lets the executable workspace be
    )
    got = facts(output)
    assert code == 0, output
    assert got["direct"] == "0"
    assert int(got["memfd"]) >= 3  # Docker's default profile allows memfd_create
    assert got["tmp"] == "126"  # /tmp stays noexec


def test_limits_stop_a_fork_bomb_and_a_memory_hog(backend: DockerBackend, run_id: str) -> None:
    bomb = "i=0; while [ $i -lt 100 ]; do sleep 5 & i=$((i+1)); done; echo started=$i"
    code, output = step(backend, run_id, ["sh", "-c", bomb], pids=16, timeout_s=30)
    assert code != 0
    assert "can't fork" in output and "started=100" not in output
    code, _ = step(backend, run_id, ["tail", "/dev/zero"], memory_bytes=32 * MiB, timeout_s=60)
    assert code == 137  # OOM-killed


def test_a_uid_from_the_policy_owns_workspace_and_tmp(
    backend: DockerBackend, run_id: str, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.txt").write_text("a\n")
    space = workspace(backend, run_id, repo, exec_allowed=False, uid=1234)
    code, output = step(
        backend,
        run_id,
        ["sh", "-c", "id -u; echo b >> a.txt && echo t > /tmp/t && mkdir d && echo ok"],
        user=1234,
        workspace_volume=space.volume,
    )
    assert code == 0, output
    assert output.split() == ["1234", "ok"]
