"""The hardened configuration as data (SPEC 6); tests/test_isolation.py proves it in containers."""

from __future__ import annotations

import json

import pytest

from runner.engine.backend import LABEL_RUN, ContainerSpec, Healthcheck
from runner.engine.docker.dialect import PODMAN, Dialect
from runner.engine.docker.hardening import container_config, init_volume, seccomp_profile
from runner.errors import PolicyDenied

MiB = 1024 * 1024


def spec(**changes: object) -> ContainerSpec:
    base: dict[str, object] = {
        "image": "img",
        "command": ["sh", "-c", "true"],
        "env": {"A": "1"},
        "labels": {LABEL_RUN: "r1"},
        "memory_bytes": 256 * MiB,
        "cpus": 1.5,
        "pids": 128,
        "workspace_volume": "ws",
    }
    base.update(changes)
    return ContainerSpec(**base)  # type: ignore[arg-type]


def allowed(profile: dict[str, object]) -> set[str]:
    """Syscalls allowed without a capability (every step has none)."""
    rules = profile["syscalls"]
    assert isinstance(rules, list)
    return {
        n
        for r in rules
        if r["action"] == "SCMP_ACT_ALLOW" and not (r.get("includes") or {}).get("caps")
        for n in r["names"]
    }


def test_config_is_hardened() -> None:
    config = container_config(spec())
    assert config["privileged"] is False
    assert config["read_only"] is True
    assert config["cap_drop"] == ["ALL"]
    assert "cap_add" not in config
    assert config["network_mode"] == "none"
    assert config["ipc_mode"] == "none"
    assert config["user"] == "65534:65534"
    assert config["init"] is False  # runner-init is the entrypoint instead
    assert config["pids_limit"] == 128
    assert config["mem_limit"] == config["memswap_limit"] == 256 * MiB
    assert config["nano_cpus"] == 1_500_000_000
    assert config["security_opt"][0] == "no-new-privileges:true"
    assert config["log_config"] == {"type": "none", "config": {}}  # no log file on the host
    assert config["devices"] == [] and config["volumes"] == {}
    assert config["working_dir"] == "/workspace"
    # the image's entrypoint never wraps a step: runner-init does, then the command
    assert config["entrypoint"] == ["/.runner-init/runner-init", "--env-stdin", "--"]
    assert config["command"] == ["sh", "-c", "true"]
    assert config["stdin_open"] is True


def test_only_the_workspace_volume_is_mounted_and_no_host_path() -> None:
    config = container_config(spec())
    assert config["mounts"] == [
        {
            "Type": "volume",
            "Source": init_volume(),
            "Target": "/.runner-init",
            "ReadOnly": True,
            "VolumeOptions": {"NoCopy": True},
        },
        {
            "Type": "volume",
            "Source": "ws",
            "Target": "/workspace",
            "ReadOnly": False,
            "VolumeOptions": {"NoCopy": True},
        },
    ]
    assert [m["Target"] for m in container_config(spec(workspace_volume=None))["mounts"]] == [
        "/.runner-init"
    ]
    assert "docker.sock" not in json.dumps(config)


def test_tmp_is_a_small_noexec_tmpfs_the_user_owns() -> None:
    options = container_config(spec(user=1000))["tmpfs"]["/tmp"].split(",")
    assert {"noexec", "nosuid", "nodev", "uid=1000", "gid=1000"} <= set(options)
    assert "size=67108864" in options  # 64 MiB cap under a 256 MiB limit
    small = container_config(spec(memory_bytes=32 * MiB))["tmpfs"]["/tmp"]
    assert f"size={8 * MiB}" in small.split(",")  # a quarter of the memory limit


def test_no_environment_value_is_in_the_configuration() -> None:
    """The engine stores the configuration on the host's disk: the step's environment
    (secrets included) goes to runner-init on stdin instead (`DockerBackend.start`)."""
    config = container_config(spec(env={"X": "y", "TOKEN": "s3cr3t"}))
    assert config["environment"] == {}
    assert "s3cr3t" not in json.dumps(config)


def test_runner_init_carries_the_deadline_and_the_granted_exec_mount() -> None:
    config = container_config(spec(deadline_s=70.2, workspace_exec=True))
    assert config["entrypoint"] == [
        "/.runner-init/runner-init",
        "--env-stdin",
        "--deadline",
        "71",
        "--exec-mount",
        "/workspace",
        "--",
    ]


def test_network_only_when_granted_and_only_the_jobs_own() -> None:
    assert container_config(spec())["network_mode"] == "none"
    config = container_config(spec(network="runner-r1-abc-net"))
    assert config["network_mode"] == "runner-r1-abc-net"  # never Docker's default bridge
    assert config["sysctls"]["net.ipv6.conf.all.disable_ipv6"] == "1"


def test_labels_carry_the_run_id() -> None:
    labels = container_config(spec())["labels"]
    assert labels[LABEL_RUN] == "r1"
    assert labels["runner.role"] == "step"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"user": 0}, "uid 0"),
        ({"user": -1}, "not a valid user"),
        ({"pids": 0}, "limits must be positive"),
        ({"memory_bytes": 0}, "limits must be positive"),
        ({"command": []}, "no command"),
    ],
)
def test_refuses_root_and_unlimited(changes: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyDenied, match=message) as caught:
        container_config(spec(**changes))
    assert caught.value.exit_code == 3


def test_seccomp_is_dockers_default_passed_explicitly() -> None:
    option = container_config(spec())["security_opt"][1]
    assert option.startswith("seccomp=")
    profile = json.loads(option.removeprefix("seccomp="))
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    names = allowed(profile)
    assert {"read", "write", "execve", "memfd_create"} <= names
    assert not {"mount", "unshare", "bpf", "kexec_load", "open_by_handle_at"} & names


def test_seccomp_without_memfd_create_where_an_interpreter_is_allowed() -> None:
    option = container_config(spec(seccomp_deny_memfd=True))["security_opt"][1]
    profile = json.loads(option.removeprefix("seccomp="))
    assert allowed(seccomp_profile(deny_memfd=False)) - allowed(profile) == {"memfd_create"}
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"


def test_config_is_deterministic() -> None:
    first = json.dumps(container_config(spec()), sort_keys=True)
    assert first == json.dumps(container_config(spec()), sort_keys=True)


def test_a_history_volume_is_mounted_read_only_at_the_workspace_git_and_podman_too() -> None:
    config = container_config(spec(history_volume="hist"))
    assert config["mounts"][1:] == [
        {
            "Type": "volume",
            "Source": "ws",
            "Target": "/workspace",
            "ReadOnly": False,
            "VolumeOptions": {"NoCopy": True},
        },
        {
            "Type": "volume",
            "Source": "hist",
            "Target": "/workspace/.git",
            "ReadOnly": True,
            "VolumeOptions": {"NoCopy": True},
        },
    ]
    podman = container_config(spec(history_volume="hist"), Dialect(PODMAN), init_dir="/i")
    assert podman["binds"][-1] == "hist:/workspace/.git:ro,nosuid,nodev,nocopy"


def test_a_service_is_a_step_with_its_names_on_the_network_and_a_health_check() -> None:
    check = Healthcheck(
        cmd="pg_isready", interval_s=1.5, timeout_s=0.5, retries=4, start_period_s=2
    )
    service = spec(
        workspace_volume=None, network="net1", aliases=("db",), health=check, env={"PW": "s"}
    )
    config = container_config(service)
    step = container_config(spec(workspace_volume=None, network="net1", env={"PW": "s"}))
    extra = {key: config[key] for key in config.keys() - step.keys()}
    assert extra == {
        "networking_config": {"EndpointsConfig": {"net1": {"Aliases": ["db"]}}},
        "healthcheck": {
            "test": ["CMD-SHELL", "pg_isready"],
            "interval": 1_500_000_000,
            "timeout": 500_000_000,
            "retries": 4,
            "start_period": 2_000_000_000,
        },
    }
    assert {key: config[key] for key in step} == step  # hardened exactly like a step
    assert config["environment"] == {}
