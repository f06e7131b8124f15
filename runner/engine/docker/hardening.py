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
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

from runner.engine.backend import LABEL_ROLE, ContainerSpec, check_spec
from runner.engine.stepinit import contract
from runner.engine.stepinit.image import tag as init_tag

MiB = 1024 * 1024
TMP_MAX_BYTES = 64 * MiB
DENIED_WITH_INTERPRETERS = ("memfd_create",)


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
def _seccomp_option(deny_memfd: bool) -> str:
    profile = seccomp_profile(deny_memfd=deny_memfd)
    return "seccomp=" + json.dumps(profile, separators=(",", ":"), sort_keys=True)


@cache
def init_volume() -> str:
    """The read-only volume holding runner-init: named by its image's content hash."""
    return "runner-init-" + init_tag().rsplit(":", 1)[1][:24]


def tmp_size(spec: ContainerSpec) -> int:
    """tmpfs pages count against the memory limit: keep /tmp well below it."""
    if spec.tmp_bytes is not None:
        return spec.tmp_bytes
    return max(MiB, min(TMP_MAX_BYTES, spec.memory_bytes // 4))


def container_config(spec: ContainerSpec) -> dict[str, Any]:
    """The Docker SDK `containers.create(**config)` keyword arguments of a hardened step."""
    check_spec(spec)
    uid = spec.user
    tmp = f"rw,noexec,nosuid,nodev,size={tmp_size(spec)},mode=1777,uid={uid},gid={uid}"
    mounts: list[dict[str, Any]] = [
        {
            "Type": "volume",
            "Source": init_volume(),
            "Target": contract.DIRECTORY,
            "ReadOnly": True,
            "VolumeOptions": {"NoCopy": True},
        }
    ]
    if spec.workspace_volume is not None:
        mounts.append(
            {
                "Type": "volume",
                "Source": spec.workspace_volume,
                "Target": spec.workspace_path,
                "ReadOnly": False,
                "VolumeOptions": {"NoCopy": True},
            }
        )
    extra: dict[str, Any] = {}
    if spec.network is not None:  # no IPv6, so not the host's link-local addresses either
        extra["sysctls"] = {
            "net.ipv6.conf.all.disable_ipv6": "1",
            "net.ipv6.conf.default.disable_ipv6": "1",
        }
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
        ),
        "environment": {},  # sent on stdin (`contract.encode_env`), never stored
        "working_dir": spec.workdir,
        "labels": labels,
        "user": f"{uid}:{uid}",
        "network_mode": spec.network if spec.network is not None else "none",
        "privileged": False,
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true", _seccomp_option(spec.seccomp_deny_memfd)],
        "ipc_mode": "none",
        "pids_limit": spec.pids,
        "mem_limit": spec.memory_bytes,
        "memswap_limit": spec.memory_bytes,
        "nano_cpus": round(spec.cpus * 1e9),
        "log_config": {"type": "none", "config": {}},
        "tmpfs": {"/tmp": tmp},
        "init": False,  # runner-init is the entrypoint
        "ulimits": [{"name": "core", "soft": 0, "hard": 0}],
        "mounts": mounts,
        "devices": [],
        "volumes": {},
        "stdin_open": True,  # the environment comes this way
        "tty": False,
        **extra,
    }
