"""Image builds are steps too (issue 12 item 5): only the bases the policy allows, a
context of containers/<name>/ alone, no network unless granted, limits, a timeout, and a
Ctrl-C or SIGTERM that stops the build in the engine; each image built is in the ledger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import RUNNER

from runner.engine.backend import BuildSpec, ImageInfo
from runner.engine.fake import FakeBackend
from runner.engine.images import (
    BuildFailed,
    BuildProgress,
    BuildRules,
    Builds,
    build,
    image_tag,
)
from runner.errors import Interrupted, InvalidInput, PolicyDenied

if TYPE_CHECKING:
    from runner.engine.docker.backend import DockerBackend

DEBIAN = "debian:bookworm-slim"
MiB = 1024 * 1024


def definition(root: Path, name: str, dockerfile: str, **files: str) -> Path:
    directory = root / "containers" / name
    directory.mkdir(parents=True)
    (directory / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    for file, text in files.items():
        (directory / file).write_text(text)
    return directory


def built_specs(backend: FakeBackend) -> list[BuildSpec]:
    return [args[0] for args in backend.called("build_image") if isinstance(args[0], BuildSpec)]


def test_a_base_the_policy_does_not_allow_is_refused_before_building(tmp_path: Path) -> None:
    definition(
        tmp_path,
        "app",
        """\
        ARG BASE=alpine:3
        FROM debian:bookworm-slim AS build
        FROM ${BASE}
        COPY --from=build /etc/hostname /x
        """,
    )
    backend = FakeBackend()
    rules = BuildRules(bases=("debian:*",))
    with pytest.raises(PolicyDenied) as caught:
        build(backend, "app", tmp_path, Builds(rules))
    assert caught.value.message == (
        "containers/app/Dockerfile:3: FROM alpine:3 is not an image the policy lets a build "
        "use (build.from: debian:*)"
    )
    assert caught.value.exit_code == 3
    assert backend.called("build_image") == [] and backend.called("inspect_image") == []
    (tmp_path / "containers" / "app" / "Dockerfile").write_text(
        "FROM debian:bookworm-slim\nCOPY --from=busybox:1 /bin/sh /sh\n"
    )
    with pytest.raises(PolicyDenied, match=r"Dockerfile:2: COPY --from busybox:1 is not"):
        build(backend, "app", tmp_path, Builds(rules))
    backend.add_image(image_tag("app", tmp_path))  # a cached image is no way around it
    with pytest.raises(PolicyDenied):
        build(backend, "app", tmp_path, Builds(rules))
    assert backend.called("build_image") == []


def test_the_context_is_the_definition_directory_alone(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("repository file outside the definition\n")
    directory = definition(tmp_path, "app", "FROM scratch\nCOPY . /\n", **{"run.sh": "#!/bin/sh\n"})
    (directory / "sub").mkdir()
    (directory / "sub" / "data").write_text("d\n")
    (directory / "sub" / "inside").symlink_to("data")
    (directory / "run.sh").chmod(0o4755)
    seen: dict[str, tarfile.TarInfo] = {}

    class Reading(FakeBackend):
        def build_image(
            self,
            spec: BuildSpec,
            cancel: threading.Event,
            on_step: Callable[[str], None] | None = None,
        ) -> ImageInfo:
            with tarfile.open(spec.context) as tar:
                seen.update({m.name: m for m in tar})
            return super().build_image(spec, cancel, on_step)

    built = build(Reading(), "app", tmp_path, Builds(BuildRules()))
    assert built.network is False and built.bases == ()
    assert sorted(seen) == ["Dockerfile", "run.sh", "sub", "sub/data", "sub/inside"]
    assert seen["run.sh"].mode == 0o755  # no setuid bit reaches the builder
    assert seen["sub/inside"].issym() and seen["sub/inside"].linkname == "data"
    assert (seen["run.sh"].uid, seen["run.sh"].gid) == (0, 0)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ("link-out", r"a link out of the build context \(-> /etc\)"),
        ("link-up", r"a link out of the build context \(-> \.\./\.\./secret\.txt\)"),
        (
            "symlinked-definition",
            "containers/app: is a symlink to .*: runner reads only regular files inside the repository",
        ),
        ("fifo", "containers/app/pipe: is a FIFO, not a regular file"),
    ],
)
def test_nothing_of_the_host_reaches_a_build(tmp_path: Path, shape: str, message: str) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "secret.txt").write_text("repository file\n")
    if shape == "symlinked-definition":
        outside = tmp_path / "host-dir"
        outside.mkdir()
        (outside / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
        (outside / "host-secret").write_text("not the repository's\n")
        (repo / "containers").mkdir()
        (repo / "containers" / "app").symlink_to(outside)
    else:
        directory = definition(repo, "app", "FROM scratch\nCOPY . /\n")
        if shape == "link-out":
            (directory / "etc").symlink_to("/etc")
        elif shape == "link-up":
            (directory / "up").symlink_to("../../secret.txt")
        else:
            os.mkfifo(directory / "pipe")
    backend = FakeBackend()
    with pytest.raises(InvalidInput, match=message):
        build(backend, "app", repo, Builds(BuildRules()))
    assert backend.called("build_image") == []


def test_network_and_limits_come_from_the_rules_and_a_cancel_stops_it(tmp_path: Path) -> None:
    definition(tmp_path, "app", "FROM debian:bookworm-slim\n")
    definition(tmp_path, "other", "FROM debian:bookworm-slim\nLABEL x=y\n")
    rules = BuildRules(bases=(DEBIAN,), network=("app",), memory_bytes=300 * MiB, cpus=0.5)
    recorded: list[str] = []
    backend = FakeBackend()
    builds = Builds(rules, on_built=lambda image: recorded.append(image.name))
    assert build(backend, "app", tmp_path, builds).network is True
    assert build(backend, "other", tmp_path, builds).network is False
    assert build(backend, "app", tmp_path, builds).cached is True
    assert [(s.network, s.memory_bytes, s.cpus) for s in built_specs(backend)] == [
        (True, 300 * MiB, 0.5),
        (False, 300 * MiB, 0.5),
    ]
    assert recorded == ["app", "other"]  # built, not found cached
    cancelled = Builds(rules)
    cancelled.cancel.set()
    (tmp_path / "containers" / "app" / "Dockerfile").write_text("FROM debian:bookworm-slim\n#\n")
    with pytest.raises(Interrupted):
        build(backend, "app", tmp_path, cancelled)


# ---------------------------------------------------------------------- on the engine


def containers_running(marker: str) -> list[str]:
    """Ids of the engine's containers (build steps included) whose command has `marker`."""
    listed = subprocess.run(
        ["docker", "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Command}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [line.split()[0] for line in listed if marker in line]


def gone(marker: str, within_s: float) -> bool:
    end = time.monotonic() + within_s
    while containers_running(marker):
        if time.monotonic() > end:
            return False
        time.sleep(0.2)
    return True


@pytest.fixture
def marker() -> Iterator[str]:
    """A word unique to this test's Dockerfiles; whatever carries it is removed after."""
    word = f"runner-build-{uuid.uuid4().hex[:12]}"
    yield word
    for cid in containers_running(word):
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, check=False)
    images = subprocess.run(
        ["docker", "image", "ls", "-q", "--filter", f"label=runner.test={word}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for image in images:
        subprocess.run(["docker", "rmi", "-f", image], capture_output=True, check=False)


def build_output(failure: BuildFailed, marker: str) -> list[str]:
    """The lines the failed build's RUN printed after `marker`, up to the engine's own."""
    lines = [line.strip() for line in failure.message.split("last build output:")[1].splitlines()]
    after = lines[lines.index(marker) + 1 :]
    return [line for line in after if line and not line.startswith("Removing")]


@pytest.mark.docker
def test_a_build_has_no_network_unless_granted_and_the_policy_limits(
    backend: DockerBackend, tmp_path: Path, marker: str
) -> None:
    definition(
        tmp_path,
        "probe",
        f"""\
        FROM {DEBIAN}
        RUN echo {marker}; ls /sys/class/net; cat /sys/fs/cgroup/memory/memory.limit_in_bytes \\
            /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us; \\
            exit 7
        """,
    )
    limits = {"memory_bytes": 256 * MiB, "cpus": 0.5}
    found = {}
    for granted in (False, True):
        rules = BuildRules(bases=(DEBIAN,), network=("probe",) if granted else (), **limits)
        with pytest.raises(BuildFailed) as caught:
            build(backend, "probe", tmp_path, Builds(rules))
        assert "returned a non-zero code: 7" in caught.value.message
        found[granted] = build_output(caught.value, marker)
    memory = str(256 * MiB)
    assert found[False] == ["lo", memory, memory, "50000"]
    assert found[True] == ["eth0", "lo", memory, memory, "50000"]


@pytest.mark.docker
def test_a_build_past_its_timeout_is_stopped_in_the_engine(
    backend: DockerBackend, tmp_path: Path, marker: str
) -> None:
    definition(tmp_path, "slow", f"FROM {DEBIAN}\nRUN echo {marker} && sleep 120\n")
    started = time.monotonic()
    with pytest.raises(BuildFailed, match="it ran past its timeout of 4 s"):
        build(backend, "slow", tmp_path, Builds(BuildRules(bases=(DEBIAN,), timeout_s=4)))
    assert time.monotonic() - started < 30
    assert gone(marker, within_s=10), "the build's RUN container outlived the timeout"


POLICY = f"""\
version: 1
images: [slow, stamp]
tools: [sh]
limits: {{timeout-minutes: 10, memory: 256m, cpus: 1, pids: 64}}
build: {{from: [{DEBIAN}]}}
"""


def slow_repo(root: Path, marker: str, container: str = "slow") -> Path:
    (root / ".missions").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / "policies" / "default.yml").write_text(POLICY)
    (root / ".missions" / "m.yml").write_text(
        f"name: m\non: [push]\njobs:\n  j:\n    container: {container}\n"
        "    tools: [sh]\n    steps: [{run: echo step-ran}]\n"
    )
    definition(root, "slow", f"FROM {DEBIAN}\nRUN echo {marker} && sleep 300\n")
    definition(root, "stamp", f"FROM {DEBIAN}\nLABEL runner.test={marker}\nUSER 65534\n")
    return root


@pytest.mark.docker
@pytest.mark.parametrize(
    ("command", "sig"),
    [(("run",), signal.SIGINT), (("images", "build", "slow"), signal.SIGTERM)],
    ids=["run-ctrl-c", "images-build-sigterm"],
)
def test_ctrl_c_or_sigterm_stops_a_build_in_the_engine(
    tmp_path: Path, marker: str, command: tuple[str, ...], sig: signal.Signals
) -> None:
    repo = slow_repo(tmp_path / "repo", marker)
    env = {**os.environ, "RUNNER_STATE_DIR": str(tmp_path / "state"), "CI": "true"}
    proc = subprocess.Popen(
        [*RUNNER, *command], cwd=repo, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        end = time.monotonic() + 120
        while not containers_running(marker):
            assert proc.poll() is None and time.monotonic() < end, "the build never started"
            time.sleep(0.2)
        sent = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert time.monotonic() - sent < 15
        assert "Traceback" not in err
        assert gone(marker, within_s=10), "the build went on in the engine"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.docker
def test_a_run_records_each_image_it_built_in_the_ledger(
    tmp_path: Path, marker: str, docker_client: Any
) -> None:
    repo = slow_repo(tmp_path / "repo", marker, container="stamp")
    state = tmp_path / "state"
    env = {**os.environ, "RUNNER_STATE_DIR": str(state), "CI": "true"}
    for _ in range(2):
        done = subprocess.run(
            [*RUNNER, "run"], cwd=repo, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
    ledger = (state / "ledger" / "entries.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in ledger]
    built = [e for e in entries if e["type"] == "image.built"]
    assert len(built) == 1, "the second run found the image cached"
    tag = image_tag("stamp", repo)
    assert {k: built[0][k] for k in ("name", "tag", "bases", "network")} == {
        "name": "stamp",
        "tag": tag,
        "bases": [DEBIAN],
        "network": False,
    }
    assert built[0]["image_id"] == docker_client.images.get(tag).id
    assert built[0]["run_id"] == entries[0]["run_id"]


def test_a_build_reports_its_start_each_step_and_its_end(tmp_path: Path) -> None:
    definition(tmp_path, "app", f"# comment\nFROM {DEBIAN}\nRUN make\n")
    seen: list[BuildProgress] = []
    builds = Builds(BuildRules(bases=(DEBIAN,)), on_progress=seen.append)
    tag = image_tag("app", tmp_path)
    build(FakeBackend(), "app", tmp_path, builds)
    assert seen == [
        BuildProgress("app", tag, "started"),
        BuildProgress("app", tag, "step", f"Step 1/2 : FROM {DEBIAN}"),
        BuildProgress("app", tag, "step", "Step 2/2 : RUN make"),
        BuildProgress("app", tag, "finished"),
    ]
    backend = FakeBackend()
    backend.add_image(tag)
    seen.clear()
    build(backend, "app", tmp_path, builds)  # cached: nothing is built, nothing to show
    assert seen == []

    class Failing(FakeBackend):
        def build_image(
            self,
            spec: BuildSpec,
            cancel: threading.Event,
            on_step: Callable[[str], None] | None = None,
        ) -> ImageInfo:
            raise Interrupted(f"the build of {spec.tag} was cancelled")

    with pytest.raises(Interrupted):
        build(Failing(), "app", tmp_path, builds)
    assert seen[-1] == BuildProgress("app", tag, "finished", f"the build of {tag} was cancelled")


@pytest.mark.docker
def test_a_run_and_images_build_show_each_build_step_as_the_engine_runs_it(
    tmp_path: Path, marker: str
) -> None:
    repo = slow_repo(tmp_path / "repo", marker, container="stamp")
    env = {**os.environ, "RUNNER_STATE_DIR": str(tmp_path / "state"), "CI": "true"}
    done = subprocess.run(
        [*RUNNER, "run"], cwd=repo, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    tag = image_tag("stamp", repo)
    lines = done.stdout.splitlines()
    progress = [line for line in lines if line.startswith("image stamp: ")]
    assert progress == [
        f"image stamp: building {tag}",
        f"image stamp: Step 1/4 : FROM {DEBIAN}",
        f"image stamp: Step 2/4 : LABEL runner.test={marker}",
        "image stamp: Step 3/4 : USER 65534",
        "image stamp: Step 4/4 : LABEL runner.image=stamp",  # the engine's step for the label
        "image stamp: built",
    ]
    first_step = next(i for i, line in enumerate(lines) if line.startswith("[j] "))
    assert lines.index(progress[-1]) < first_step
    (repo / "containers" / "stamp" / "more").write_text("a new context: built again\n")
    done = subprocess.run(
        [*RUNNER, "images", "build", "stamp"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    tag = image_tag("stamp", repo)
    assert done.stderr.splitlines() == [
        f"image stamp: building {tag}",
        f"image stamp: Step 1/4 : FROM {DEBIAN}",
        f"image stamp: Step 2/4 : LABEL runner.test={marker}",
        "image stamp: Step 3/4 : USER 65534",
        "image stamp: Step 4/4 : LABEL runner.image=stamp",  # the engine's step for the label
    ]
    assert done.stdout.startswith(f"stamp -> {tag}  ")  # the result alone on stdout
