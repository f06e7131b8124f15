"""What runner does differently on Podman, as data (no engine): detection from the version
endpoint, the hardened configuration's Podman words, the import's `--change` lines."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import docker
import pytest

from runner.engine.backend import LABEL_RUN, ContainerSpec, ImageConfig
from runner.engine.docker import hardening
from runner.engine.docker.backend import create_arguments
from runner.engine.docker.dialect import DOCKER_DIALECT, PODMAN_NPROC, Dialect, detect
from runner.engine.docker.hardening import (
    container_config,
    engine_fields,
    init_volume,
    seccomp_file,
    seccomp_profile,
    write_seccomp_files,
)
from runner.engine.docker.images import changes
from runner.errors import RunnerError

MiB = 1024 * 1024
PODMAN = Dialect("podman", "4.3.1", (("nofile", 20000), ("nproc", PODMAN_NPROC)))
# `GET /version` of Debian's Podman 4.3 (trimmed) and of a Docker engine
PODMAN_VERSION = {
    "Platform": {"Name": "linux/amd64/debian-12"},
    "Components": [
        {"Name": "Podman Engine", "Version": "4.3.1", "Details": {"APIVersion": "4.3.1"}},
        {"Name": "Conmon", "Version": "conmon version 2.1.6"},
    ],
    "Version": "4.3.1",
    "ApiVersion": "1.41",
}
DOCKER_VERSION = {
    "Platform": {"Name": "Docker Engine - Community"},
    "Components": [{"Name": "Engine", "Version": "20.10.24"}],
    "Version": "20.10.24",
}


def spec(**changes: object) -> ContainerSpec:
    base: dict[str, object] = {
        "image": "img",
        "command": ["sh", "-c", "true"],
        "env": {"A": "1"},
        "labels": {LABEL_RUN: "r1"},
        "memory_bytes": 256 * MiB,
        "cpus": 1.0,
        "pids": 64,
        "workspace_volume": "ws",
    }
    base.update(changes)
    return ContainerSpec(**base)  # type: ignore[arg-type]


def test_the_engine_is_told_by_its_version_endpoint() -> None:
    podman = detect(PODMAN_VERSION)
    assert (podman.name, podman.version, podman.podman) == ("podman", "4.3.1", True)
    assert {name for name, _ in podman.limits} == {"nofile", "nproc"}
    assert dict(podman.limits)["nproc"] <= PODMAN_NPROC
    docker_engine = detect(DOCKER_VERSION)
    assert (docker_engine.name, docker_engine.podman, docker_engine.limits) == (
        "docker",
        False,
        (),
    )
    assert detect({}) == Dialect("docker", "")


def test_podman_gets_the_same_hardening_in_its_own_words() -> None:
    on_docker = container_config(spec())
    on_podman = container_config(spec(), PODMAN)
    same = {k for k in on_docker if k not in {"tmpfs", "mounts", "ulimits", "security_opt"}}
    assert {k: on_podman[k] for k in same} == {k: on_docker[k] for k in same}
    # volumes as binds, whose options Podman applies: the workspace keeps noexec
    assert on_podman["mounts"] == []
    assert on_podman["binds"] == [
        f"{init_volume()}:/.runner-init:ro,nosuid,nodev,nocopy",
        "ws:/workspace:rw,nosuid,nodev,nocopy,noexec",
    ]
    # runner-init's volume bound by its directory: no named volume shared by every step
    bound = container_config(spec(), PODMAN, init_dir="/var/lib/x/runner-init/_data")
    assert bound["binds"][0] == "/var/lib/x/runner-init/_data:/.runner-init:ro,nosuid,nodev,nocopy"
    assert container_config(spec(), init_dir="/ignored")["mounts"] == on_docker["mounts"]
    granted = container_config(spec(workspace_exec=True), PODMAN)
    assert granted["binds"][1] == "ws:/workspace:rw,nosuid,nodev,nocopy"
    # /tmp without the uid= Podman does not know; its own /run and /var/tmp covered
    tmpfs = on_podman["tmpfs"]
    assert tmpfs["/tmp"] == "rw,noexec,nosuid,nodev,size=67108864,mode=1777,notmpcopyup"
    assert tmpfs["/run"] == tmpfs["/var/tmp"] == "ro,noexec,nosuid,nodev,size=4k,notmpcopyup"
    assert on_podman["ulimits"] == [
        {"name": "core", "soft": 0, "hard": 0},
        {"name": "nofile", "soft": 20000, "hard": 20000},
        {"name": "nproc", "soft": PODMAN_NPROC, "hard": PODMAN_NPROC},
    ]
    # the profile as a file, never inline; no-new-privileges as on Docker
    assert on_podman["security_opt"][0] == on_docker["security_opt"][0]
    assert on_podman["security_opt"][1] == f"seccomp={seccomp_file(deny_memfd=False)}"
    denied = container_config(spec(seccomp_deny_memfd=True), PODMAN)["security_opt"][1]
    assert denied == f"seccomp={seccomp_file(deny_memfd=True)}"
    assert seccomp_file(deny_memfd=True) != seccomp_file(deny_memfd=False)


def test_the_podman_config_reaches_the_engine_whole() -> None:
    api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")  # no I/O
    host = create_arguments(api, container_config(spec(), PODMAN))["host_config"]
    assert host["Binds"][1] == "ws:/workspace:rw,nosuid,nodev,nocopy,noexec"
    assert "Mounts" not in host or host["Mounts"] == []
    assert host["Tmpfs"]["/run"] == "ro,noexec,nosuid,nodev,size=4k,notmpcopyup"
    assert {u["Name"] for u in host["Ulimits"]} == {"core", "nofile", "nproc"}


def test_podman_s_own_variables_are_unset_unless_the_image_sets_them() -> None:
    assert engine_fields(DOCKER_DIALECT, ()) == {}
    assert engine_fields(PODMAN, ()) == {"UnsetEnv": ["TERM", "container"]}
    assert engine_fields(PODMAN, {"PATH", "TERM"}) == {"UnsetEnv": ["container"]}


def test_the_seccomp_files_are_the_profiles_in_a_directory_only_root_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "run" / "runner" / "seccomp"
    monkeypatch.setattr(hardening, "SECCOMP_DIR", directory)
    seccomp_file.cache_clear()
    try:
        write_seccomp_files()
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        for deny in (False, True):
            path = seccomp_file(deny_memfd=deny)
            assert path.parent == directory
            assert json.loads(path.read_bytes()) == seccomp_profile(deny_memfd=deny)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        weakened = seccomp_file(deny_memfd=True)
        weakened.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}))
        write_seccomp_files()  # a file that is not the profile is rewritten
        assert json.loads(weakened.read_bytes()) == seccomp_profile(deny_memfd=True)
        os.chmod(directory, 0o777)  # anyone could swap a profile: refused
        with pytest.raises(RunnerError, match="not a directory only this user can write"):
            write_seccomp_files()
    finally:
        seccomp_file.cache_clear()


def test_an_image_config_is_imported_literally_on_podman() -> None:
    """Podman strips one pair of quotes and takes the rest as it is; Docker unescapes."""
    config = ImageConfig(
        user="65534",
        env={"PATH": "/bin", "ODD": 'a $HOME "b" \\ c'},
        workdir="/work",
        labels={"runner.test": "r1", "with space": "x y"},
    )
    assert changes(config, PODMAN) == [
        "USER 65534",
        'ENV PATH="/bin"',
        'ENV ODD="a $HOME "b" \\ c"',
        "WORKDIR /work",
        'LABEL "runner.test"="r1"',
        'LABEL "with space"="x y"',
    ]
    assert changes(config)[2] == 'ENV ODD="a \\$HOME \\"b\\" \\\\ c"'
    with pytest.raises(RunnerError, match="label whose key holds '='"):
        changes(ImageConfig(labels={"a=b": "c"}), PODMAN)
    with pytest.raises(RunnerError, match="holds a newline"):
        changes(ImageConfig(env={"X": "a\nb"}), PODMAN)
