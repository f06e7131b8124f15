"""The hardened configuration of a step container, as data (SPEC 6).

`container_config(spec)` is a pure function returning the keyword arguments of the Docker
SDK's `containers.create`; tests check it as data and then prove it in real containers.
What no engine may do whatever the policy says (root, no limits) is refused before, by the
engine-neutral `backend.check_spec`.

The entrypoint is runner-init (`runner.engine.stepinit`), from a read-only volume at
`/.runner-init` (`init_volume()`, filled once per engine from its image by the backend), in
place of Docker's own init: it receives the step's environment on stdin, so the
configuration holds no environment at all (`config.v2.json` on the host's disk never
holds a secret), checks the mounts before the step runs, and kills the container at the
step's deadline. The json-file log driver is off (`none`): runner reads the output through
the attach stream, and nothing the step prints is written to the host's disk by Docker.

Seccomp: `seccomp_default.json` is Docker's own default profile (see
seccomp_default.NOTICE). It is always passed explicitly, so that an engine started with a
weaker default cannot weaken a step; where an interpreter is allowed, `memfd_create` is
taken out of its allow list (the profile's default action then refuses it with EPERM),
so that an interpreter cannot write an ELF into anonymous memory and execute it.

Podman (`dialect`) takes the same configuration with a few words changed, all here:
the profile as a file (`seccomp_file`: content-addressed under `SECCOMP_DIR`, a directory
only root can write, written by `write_seccomp_files` before the first step), the volumes
as `Binds` (so that the workspace keeps `noexec`), its own /run and /var/tmp covered by
empty read-only tmpfs mounts, no `uid=` on /tmp, the open-files and process limits of
this host, and `engine_fields` (the create body's `UnsetEnv`: Podman's own variables out
of the step's environment). runner-init refuses whatever writable, executable mount is
left, on any engine.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import stat
from collections.abc import Collection
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from runner.durable import write_atomic
from runner.engine.backend import LABEL_ROLE, ContainerSpec, Healthcheck, check_spec
from runner.engine.docker.dialect import DOCKER_DIALECT, PODMAN_ENV, Dialect
from runner.engine.stepinit import contract
from runner.engine.stepinit.image import tag as init_tag
from runner.errors import RunnerError

MiB = 1024 * 1024
TMP_MAX_BYTES = 64 * MiB
DENIED_WITH_INTERPRETERS = ("memfd_create",)
SECCOMP_DIR = Path("/run/runner/seccomp")  # Podman: the profiles, as files (root's only)
PODMAN_COVERED = ("/run", "/var/tmp")  # Podman's own writable, executable tmpfs mounts
COVER = "ro,noexec,nosuid,nodev,size=4k,notmpcopyup"  # empty, read-only in their place


@cache
def seccomp_profile(*, deny_memfd: bool) -> dict[str, Any]:
    """Docker's default profile; without `memfd_create` when `deny_memfd`."""
    text = (
        resources.files("runner.engine.docker").joinpath("seccomp_default.json").read_text("utf-8")
    )
    profile: dict[str, Any] = json.loads(text)
    if not deny_memfd:
        return profile
    profile = copy.deepcopy(profile)
    kept = []
    for rule in profile["syscalls"]:
        if rule["action"] == "SCMP_ACT_ALLOW":
            rule["names"] = [n for n in rule["names"] if n not in DENIED_WITH_INTERPRETERS]
            if not rule["names"]:
                continue
        kept.append(rule)
    profile["syscalls"] = kept
    return profile


@cache
def _seccomp_text(deny_memfd: bool) -> str:
    profile = seccomp_profile(deny_memfd=deny_memfd)
    return json.dumps(profile, separators=(",", ":"), sort_keys=True)


def _seccomp_option(deny_memfd: bool, dialect: Dialect) -> str:
    if dialect.podman:
        return f"seccomp={seccomp_file(deny_memfd=deny_memfd)}"
    return "seccomp=" + _seccomp_text(deny_memfd)


@cache
def seccomp_file(*, deny_memfd: bool) -> Path:
    """Where Podman reads the profile from: named by its SHA-256, so that a file there is
    either exactly the profile or detected as damaged (`write_seccomp_files`)."""
    digest = hashlib.sha256(_seccomp_text(deny_memfd).encode()).hexdigest()
    return SECCOMP_DIR / f"{digest}.json"


def write_seccomp_files() -> None:
    """Make `SECCOMP_DIR` hold both profiles (Podman reads the file when a container is
    created). The directory is this user's alone, never a link, so nobody else can put a
    weaker profile where a step's is read; a file that differs is rewritten."""
    try:
        SECCOMP_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(SECCOMP_DIR)
        if (
            not stat.S_ISDIR(info.st_mode)
            or info.st_uid != os.geteuid()
            or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        ):
            raise RunnerError(
                f"{SECCOMP_DIR} is not a directory only this user can write",
                hint=f"remove it (`rm -rf {SECCOMP_DIR}`) and run again",
            )
        for deny_memfd in (False, True):
            path, text = seccomp_file(deny_memfd=deny_memfd), _seccomp_text(deny_memfd).encode()
            try:
                held = path.read_bytes()
            except FileNotFoundError:
                held = None
            if held != text:
                write_atomic(path, text, mode=0o600)
    except OSError as exc:
        raise RunnerError(
            f"cannot write the seccomp profiles Podman reads into {SECCOMP_DIR}: {exc}",
            hint="runner drives Podman as root on the engine's own host",
        ) from exc


@cache
def init_volume() -> str:
    """The read-only volume holding runner-init: named by its image's content hash."""
    return "runner-init-" + init_tag().rsplit(":", 1)[1][:24]


def tmp_size(spec: ContainerSpec) -> int:
    """tmpfs pages count against the memory limit: keep /tmp well below it."""
    if spec.tmp_bytes is not None:
        return spec.tmp_bytes
    return max(MiB, min(TMP_MAX_BYTES, spec.memory_bytes // 4))


def container_config(
    spec: ContainerSpec,
    dialect: Dialect = DOCKER_DIALECT,
    *,
    init_dir: str | None = None,
    trailer: bool = False,
) -> dict[str, Any]:
    """The Docker SDK `containers.create(**config)` keyword arguments of a hardened step,
    on the engine `dialect` speaks for. On Podman, `init_dir` is the runner-init volume's
    directory on the host, bound in place of the volume: Podman 4.3 can deadlock when
    containers set up at the same time share named volumes (containers/podman#20313), and
    every step of every job would share that one. `trailer`: runner-init ends the output
    with its trailer and waits for the ack (the backend's steps; the bare baseline of
    bench/ without it)."""
    check_spec(spec)
    uid = spec.user
    tmp = f"rw,noexec,nosuid,nodev,size={tmp_size(spec)},mode=1777"
    tmpfs = {"/tmp": f"{tmp},notmpcopyup" if dialect.podman else f"{tmp},uid={uid},gid={uid}"}
    if dialect.podman:
        tmpfs.update(dict.fromkeys(PODMAN_COVERED, COVER))
    init = init_dir if dialect.podman and init_dir is not None else init_volume()
    volumes = [(init, contract.DIRECTORY, False, False)]
    if spec.workspace_volume is not None:
        volumes.append((spec.workspace_volume, spec.workspace_path, True, spec.workspace_exec))
        if spec.history_volume is not None:  # mounted after the workspace, read-only
            volumes.append((spec.history_volume, f"{spec.workspace_path}/.git", False, False))
    extra: dict[str, Any] = {}
    if spec.network is not None:  # no IPv6, so not the host's link-local addresses either
        extra["sysctls"] = {
            "net.ipv6.conf.all.disable_ipv6": "1",
            "net.ipv6.conf.default.disable_ipv6": "1",
        }
    if dialect.podman:
        extra["binds"] = [_bind(*volume) for volume in volumes]
    if spec.aliases and spec.network is not None:  # a service: its names on the network
        extra["networking_config"] = {
            "EndpointsConfig": {spec.network: {"Aliases": list(spec.aliases)}}
        }
    if spec.health is not None:
        extra["healthcheck"] = healthcheck(spec.health)
    labels = dict(spec.labels)
    labels.setdefault(LABEL_ROLE, "step")
    labels["runner.workspace-exec"] = "true" if spec.workspace_exec else "false"
    return {
        "image": spec.image,
        "command": list(spec.command),
        "entrypoint": contract.argv(
            env_stdin=True,
            deadline_s=spec.deadline_s,
            exec_mounts=[spec.workspace_path] if spec.workspace_exec else [],
            trailer=trailer,
        ),
        "environment": {},  # sent on stdin (`contract.encode_env`), never stored
        "working_dir": spec.workdir,
        "labels": labels,
        "user": f"{uid}:{uid}",
        "network_mode": spec.network if spec.network is not None else "none",
        "privileged": False,
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": [
            "no-new-privileges:true",
            _seccomp_option(spec.seccomp_deny_memfd, dialect),
        ],
        "ipc_mode": "none",
        "pids_limit": spec.pids,
        "mem_limit": spec.memory_bytes,
        "memswap_limit": spec.memory_bytes,
        "nano_cpus": round(spec.cpus * 1e9),
        "log_config": {"type": "none", "config": {}},
        "tmpfs": tmpfs,
        "init": False,  # runner-init is the entrypoint
        "ulimits": [{"name": "core", "soft": 0, "hard": 0}, *dialect.ulimits()],
        "mounts": [] if dialect.podman else [_mount(*volume) for volume in volumes],
        "devices": [],
        "volumes": {},
        "stdin_open": True,  # the environment comes this way
        "tty": False,
        **extra,
    }


def healthcheck(health: Healthcheck) -> dict[str, Any]:
    """A service's health check as the create call's `Healthcheck` (durations in ns)."""
    return {
        "test": ["CMD-SHELL", health.cmd],
        "interval": _ns(health.interval_s),
        "timeout": _ns(health.timeout_s),
        "retries": health.retries,
        "start_period": _ns(health.start_period_s),
    }


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


def _mount(source: str, target: str, writable: bool, exec_allowed: bool) -> dict[str, Any]:
    """A volume as Docker mounts it (`noexec` is the workspace volume's own option)."""
    return {
        "Type": "volume",
        "Source": source,
        "Target": target,
        "ReadOnly": not writable,
        "VolumeOptions": {"NoCopy": True},
    }


def _bind(source: str, target: str, writable: bool, exec_allowed: bool) -> str:
    """A volume as Podman mounts it with the options it applies: a volume mounted through
    `Mounts` would lose `noexec`."""
    flags = ["rw" if writable else "ro", "nosuid", "nodev", "nocopy"]
    if writable and not exec_allowed:
        flags.append("noexec")
    return f"{source}:{target}:{','.join(flags)}"


def engine_fields(dialect: Dialect, image_env: Collection[str]) -> dict[str, Any]:
    """Fields of the create call's body beyond the Docker SDK's: on Podman, `UnsetEnv`
    naming the variables it would add to the step's environment that the image (whose
    variable names are `image_env`) does not set itself."""
    if not dialect.podman:
        return {}
    return {"UnsetEnv": [name for name in PODMAN_ENV if name not in image_env]}
