"""Nothing runs as root on the host over files a step or the repository shaped (issue 12
items 1 and 7), proven with `runner run` on the real engine as an attacker would try:
symlinks swapped by a producer step plus a hard link in its artifact, a sparse gigabyte
artifact, a step filling its workspace; then the repository snapshot, seeded once for
every job of a run and for the next run of the same commit, and nothing left behind but
that snapshot until `runner gc`'s rule removes it."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RUNNER, invoke, runner_cli

from runner.engine.backend import LABEL_SNAPSHOT_OF
from runner.engine.docker.backend import DockerBackend

pytestmark = pytest.mark.docker

POLICY = """\
version: 1
images: [base]
tools: [sh, cat, rm, mkdir, ln, head, tail, wc, df, sleep, truncate]
limits: {timeout-minutes: 10, memory: 256m, cpus: 1, pids: 64}
"""
TOOLS = """\
sh: {paths: [/bin/sh], interpreter: true}
cat: {paths: [/bin/cat]}
rm: {paths: [/bin/rm]}
mkdir: {paths: [/bin/mkdir]}
ln: {paths: [/bin/ln]}
head: {paths: [/usr/bin/head]}
tail: {paths: [/usr/bin/tail]}
wc: {paths: [/usr/bin/wc]}
df: {paths: [/bin/df]}
sleep: {paths: [/bin/sleep]}
truncate: {paths: [/usr/bin/truncate]}
"""
MiB = 1024 * 1024
# runner in a process of its own, and the peak resident memory of that process (KiB)
PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:])\n"
    "print('peak-rss-kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def make_repo(root: Path, mission: str, *, policy: str = POLICY) -> Path:
    (root / ".missions").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / "containers").mkdir()
    (root / ".missions" / "m.yml").write_text(textwrap.dedent(mission))
    (root / "policies" / "default.yml").write_text(policy)
    (root / "containers" / "tools.yml").write_text(TOOLS)
    return root


def printed(state: Path) -> list[str]:
    """Every line the steps of the run in `state` printed."""
    (log,) = (state / "runs").glob("*/events.jsonl")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return [str(r["line"]) for r in records if r["kind"] == "output"]


def jobs_of(done: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, str]]:
    result = json.loads(done.stdout)
    return {key: (job["status"], job["reason"]) for key, job in result["jobs"].items()}


def run_mounts(state: Path) -> list[str]:
    """Mount points of the volumes of runs of `state` in the host's mount table: a
    workspace while a step uses it, the quota of its data volume while the job lives."""
    runs = [run.name for run in (state / "runs").iterdir()]
    with open("/proc/self/mountinfo") as table:
        lines = table.read().splitlines()
    return [line.split()[4] for line in lines for run in runs if f"/runner-{run}-" in line]


# ---------------------------------------------------------------- the artifact attack


@pytest.fixture
def victims(tmp_path: Path, docker_client: Any) -> Iterator[dict[str, Path]]:
    """Three directories each holding a root-only `secret` no job may touch: one of the
    host, another job's volume (on the engine's filesystem), a layer of an image."""
    word = uuid.uuid4().hex[:12]
    host = tmp_path / "host-victim"
    host.mkdir(mode=0o700)
    (host / "secret").write_text(f"host-secret-{word}\n")
    (host / "secret").chmod(0o600)
    volume = docker_client.volumes.create(f"runner-test-victim-{word}")
    docker_client.containers.run(
        "runner-base/busybox:latest",
        ["sh", "-c", f"echo volume-secret-{word} > /v/secret && chmod 600 /v/secret"],
        volumes={volume.name: {"bind": "/v", "mode": "rw"}},
        remove=True,
    )
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        content = f"layer-secret-{word}\n".encode()
        info = tarfile.TarInfo("secret")
        info.size, info.mode = len(content), 0o600
        tar.addfile(info, io.BytesIO(content))
    tag = f"runner-test/victim:{word}"
    docker_client.api.import_image_from_data(
        layer.getvalue(), repository=tag.split(":")[0], tag=word
    )
    image = docker_client.images.get(tag)
    try:
        yield {
            "host": host,
            "volume": Path(volume.attrs["Mountpoint"]),
            "layer": Path(image.attrs["GraphDriver"]["Data"]["UpperDir"]),
        }
    finally:
        docker_client.images.remove(image.id, force=True)
        volume.remove(force=True)


def fingerprint(directory: Path) -> list[tuple[int, int, int, bytes]]:
    """Owner, group, mode (and content) of `directory` and of its `secret`."""
    out = []
    for path in (directory, directory / "secret"):
        info = path.lstat()
        content = path.read_bytes() if stat.S_ISREG(info.st_mode) else b""
        out.append((info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode), content))
    return out


ATTACK = """\
name: attack
on: [push]
jobs:
  produce:
    tools: [sh, rm, mkdir, ln]
    produces: [{name: art, path: art, type: dir}]
    steps:
      # swap the committed links: a/ becomes a directory (its secret a file of the
      # artifact), b -> L (the committed link out), and h a hard link to a/secret
      - run: |
          for i in 1 2 3; do
            cd art/$i && rm a b L && mkdir a && echo producer > a/secret
            ln -s L b && ln a/secret h && cd ../..
          done
  consume:
    needs: [produce]
    consumes: [art]
    tools: [sh, cat]
    steps:
      - run: for i in 1 2 3; do cat art/$i/h; echo pwned >> art/$i/h; done
"""


def test_swapped_symlinks_and_a_hard_link_in_an_artifact_reach_nothing_outside(
    tmp_path: Path, victims: dict[str, Path]
) -> None:
    """The red team's escape (issue 12 item 1): committed `a -> b`, `b -> bb`, `L ->
    <victim>`; the producer turns `a` into a directory, `b` into a link to `L`, and
    hard-links `a/secret`. Extracted as root on the host, the consumer's copy chowned
    the victims to the step user through the swapped chain and linked their `secret`
    into the workspace, where the step read and appended to it. Through the engine, the
    links resolve inside a helper container: every victim stays as it was."""
    repo = make_repo(tmp_path / "repo", ATTACK)
    for n, name in enumerate(("host", "volume", "layer"), start=1):
        chain = repo / "art" / str(n)
        (chain / "bb").mkdir(parents=True)
        (chain / "bb" / "keep").write_text("committed\n")
        (chain / "a").symlink_to("b")
        (chain / "b").symlink_to("bb")
        (chain / "L").symlink_to(victims[name])
    before = {name: fingerprint(path) for name, path in victims.items()}
    state = tmp_path / "state"
    done = runner_cli(repo, state, "run", "--json")
    assert "Traceback" not in done.stderr
    assert {name: fingerprint(path) for name, path in victims.items()} == before
    output = printed(state)
    assert not [line for line in output if "secret-" in line], output
    assert done.returncode == 0, done.stderr  # the artifact landed inside, as produced
    assert output == ["producer"] * 3


# ------------------------------------------------------------------- bounded artifacts


def test_a_sparse_gigabyte_artifact_is_refused_with_runners_memory_flat(tmp_path: Path) -> None:
    """A 1 GiB sparse file is 1 GiB of tar: over the default 1 GiB limit, refused while
    it streams, with runner's memory flat (it once took runner to 3 GiB)."""
    repo = make_repo(
        tmp_path / "repo",
        """\
        name: big
        on: [push]
        jobs:
          make:
            tools: [sh, truncate]
            produces: [{name: blob, path: out/blob.bin}]
            steps: [{run: truncate -s 1G out/blob.bin}]
        """,
    )
    (repo / "out").mkdir()
    (repo / "out" / ".keep").write_text("")
    state = tmp_path / "state"
    env = {**os.environ, "RUNNER_STATE_DIR": str(state), "CI": "true"}
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *RUNNER, "run", "--json"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stderr
    assert jobs_of(done)["make"] == (
        "failure",
        "artifact 'blob' (out/blob.bin) is larger than its 1 GiB limit "
        "(limits.artifact-size in the policy)",
    )
    peak_kib = int(done.stderr.split("peak-rss-kib")[1].split()[0])
    assert peak_kib < 200 * 1024, f"runner peaked at {peak_kib // 1024} MiB"
    assert not list((state / "runs").glob("*/artifacts/*")), "nothing of it is kept"


# -------------------------------------------------------------------- the workspace quota

QUOTA_POLICY = POLICY.replace("pids: 64}", "pids: 64, workspace-size: 48m}")


def test_a_step_writing_past_the_quota_fails_saying_so_and_the_disk_holds_no_more(
    tmp_path: Path,
) -> None:
    repo = make_repo(
        tmp_path / "repo",
        """\
        name: fill
        on: [push]
        jobs:
          fill:
            tools: [sh, head, tail, wc, df]
            steps:
              - run: head -c 200000000 /dev/zero > big
              - if: always()
                run: wc -c < big; df -k . | tail -n 1
        """,
        policy=QUOTA_POLICY,
    )
    state = tmp_path / "state"
    done = runner_cli(repo, state, "run", "--json")
    assert done.returncode == 1, done.stderr
    status, reason = jobs_of(done)["fill"]
    assert status == "failure"
    assert reason.startswith(
        "step 'head -c 200000000 /dev/zero > big' failed: job fill wrote more than its "
        "48 MiB workspace quota (limits.workspace-size in the policy) (exit code 1)"
    ), reason
    written, df = printed(state)[-2:]
    assert int(written) < 48 * MiB  # what the step managed to write
    size_kib = int(df.split()[1])
    assert size_kib <= 48 * 1024, df  # the workspace is a 48 MiB filesystem
    assert run_mounts(state) == [], "the quota is unmounted with the job's volume"


# ------------------------------------------------- the snapshot: once, shared, collected

THREE_JOBS = """\
name: three
on: [push]
jobs:
  a: {tools: [sh, cat], steps: [{run: cat data.txt}]}
  b: {tools: [sh, cat], steps: [{run: cat data.txt}]}
  c: {needs: [a], tools: [sh, cat], steps: [{run: cat data.txt}]}
"""


def test_one_snapshot_serves_every_job_and_the_next_run_of_the_same_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: DockerBackend
) -> None:
    repo = make_repo(tmp_path / "repo", THREE_JOBS)
    (repo / "data.txt").write_text("from the repository\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    state = (tmp_path / "state").resolve()
    seeded: list[str] = []
    lowers: list[str | None] = []
    create_snapshot, create_volume = DockerBackend.create_snapshot, DockerBackend.create_volume

    def counting_snapshot(self: DockerBackend, name: str, *args: Any) -> None:
        seeded.append(name)
        create_snapshot(self, name, *args)

    def recording_volume(self: DockerBackend, name: str, *args: Any, **kwargs: Any) -> None:
        lowers.append(kwargs.get("lower"))
        create_volume(self, name, *args, **kwargs)

    monkeypatch.setattr(DockerBackend, "create_snapshot", counting_snapshot)
    monkeypatch.setattr(DockerBackend, "create_volume", recording_volume)
    monkeypatch.chdir(repo)
    for _ in range(2):
        done = invoke(state, "run")
        assert done.code == 0, done.err
    assert len(seeded) == 1, "the second run of the same tree copied the repository again"
    assert lowers == seeded * 6  # every job of both runs on that one snapshot
    (repo / "data.txt").write_text("changed\n")
    assert invoke(state, "run").code == 0
    assert len(seeded) == 2 and seeded[0] != seeded[1]

    def snapshots() -> list[str]:
        _, volumes = backend.list_labelled(f"{LABEL_SNAPSHOT_OF}={state}")
        return sorted(volumes)

    assert snapshots() == sorted(seeded)
    assert sorted(p.name for p in (state / "snapshots").glob("*.json")) == sorted(
        f"{name}.json" for name in seeded
    )
    kept = invoke(state, "gc", "--keep", "1", "--json")
    assert kept.code == 0, kept.err
    assert kept.json()["snapshots"] == [seeded[0]] and snapshots() == [seeded[1]]
    long_ago = time.time() - 60  # its last use (the record's mtime), a minute ago
    os.utime(state / "snapshots" / f"{seeded[1]}.json", (long_ago, long_ago))
    removed = invoke(state, "gc", "--older-than", "30s", "--json")
    assert removed.json()["snapshots"] == [seeded[1]] and snapshots() == []
    assert not list((state / "snapshots").glob("*.json"))
    ledger = (state / "ledger" / "entries.jsonl").read_text().splitlines()
    assert [json.loads(e)["volumes"] for e in ledger if '"gc.pruned"' in e] == [1, 1]


def test_gc_leaves_the_snapshots_of_a_live_run_alone(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        """\
        name: sleeper
        on: [push]
        jobs:
          long: {tools: [sh, sleep], steps: [{run: sleep 60}]}
        """,
    )
    state = (tmp_path / "state").resolve()
    env = {**os.environ, "RUNNER_STATE_DIR": str(state), "CI": "true"}
    proc = subprocess.Popen([*RUNNER, "run"], cwd=repo, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_step(state)
        swept = runner_cli(repo, state, "gc", "--keep", "0", "--json")
        assert swept.returncode == 0, swept.stderr
        assert json.loads(swept.stdout)["snapshots"] == []
        assert any(m.endswith("-data/_data") for m in run_mounts(state)), "no quota mounted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert run_mounts(state) == [], "Ctrl-C leaves no quota mounted"
    labelled = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"label={LABEL_SNAPSHOT_OF}={state}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(labelled) == 1  # the cache outlives the run...
    swept = runner_cli(repo, state, "gc", "--keep", "0", "--json")
    assert json.loads(swept.stdout)["snapshots"] == labelled  # ...until gc's rule says


def wait_for_step(state: Path, deadline_s: float = 120) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        running = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"label=runner.state-dir={state}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if running:
            return
        time.sleep(0.2)
    raise AssertionError("no step container started")


def test_a_killed_runner_leaves_its_quota_mounted_until_gc(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        """\
        name: sleeper
        on: [push]
        jobs:
          long: {tools: [sh, sleep], steps: [{run: sleep 60}]}
        """,
    )
    state = (tmp_path / "state").resolve()
    env = {**os.environ, "RUNNER_STATE_DIR": str(state), "CI": "true"}
    proc = subprocess.Popen([*RUNNER, "run"], cwd=repo, env=env, stderr=subprocess.PIPE, text=True)
    wait_for_step(state)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert any(m.endswith("-data/_data") for m in run_mounts(state)), "no quota left mounted"
    swept = runner_cli(repo, state, "gc", "--keep", "0")
    assert swept.returncode == 0, swept.stderr
    assert run_mounts(state) == []


def test_a_step_cannot_make_runner_read_through_its_output_files(tmp_path: Path) -> None:
    """runner reads `$RUNNER_OUTPUT` / `$RUNNER_ENV` in place, as root: a link there is
    refused, symbolic (to a host file) or hard (a second name of any file)."""
    repo = make_repo(
        tmp_path / "repo",
        """\
        name: links
        on: [push]
        jobs:
          symbolic: {tools: [sh, ln], steps: [{run: ln -s /etc/shadow "$RUNNER_OUTPUT"}]}
          hard: {tools: [sh, ln], steps: [{run: echo K=v > f && ln f "$RUNNER_ENV"}]}
        """,
    )
    done = runner_cli(repo, tmp_path / "state", "run", "--json")
    assert done.returncode == 1, done.stderr
    jobs = jobs_of(done)
    assert jobs["symbolic"][1].endswith(
        "failed: .runner/io/0-1.output is a symbolic link; a step must write a file"
    )
    assert jobs["hard"][1].endswith(
        "failed: .runner/io/0-1.env is a hard link; a step must write a file"
    )
