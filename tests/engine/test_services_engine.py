"""A job's services on the real engine (backend.Sidecars): hardened like a step, their
environment never in the engine's configuration, Docker's own health check, and a
private network on which they answer to their names but reach neither the outside nor
the host (runner.run.services starts them; tests/run/test_run_services.py runs whole jobs)."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from conftest import facts, run_container
from test_egress import (  # the egress tests' outside world, host listener and probes
    HostListener,
    Outside,
    gateway,
    host_addresses,
    host_listener,
    outside,
    probe,
)

from runner.engine.backend import (
    LABEL_ROLE,
    LABEL_RUN,
    ContainerSpec,
    EgressUnavailable,
    Healthcheck,
    ServiceState,
    Sidecars,
)
from runner.engine.docker import networks
from runner.engine.docker.backend import DockerBackend

pytestmark = pytest.mark.docker
BUSYBOX = "runner-base/busybox:latest"
SECRET = "s3cr\"et'\\$(x)`y` %s\nline two"
__all__ = ["host_listener", "outside"]  # fixtures, imported to be used here


def service(
    run_id: str,
    command: list[str],
    network: str,
    *,
    alias: str,
    env: dict[str, str] | None = None,
    health: Healthcheck | None = None,
) -> ContainerSpec:
    return ContainerSpec(
        image=BUSYBOX,
        command=command,
        env=env or {},
        labels={LABEL_RUN: run_id, LABEL_ROLE: "service"},
        memory_bytes=64 * 1024 * 1024,
        cpus=1,
        pids=32,
        workdir="/",
        network=network,
        seccomp_deny_memfd=True,
        aliases=(alias,),
        health=health,
    )


def wait_health(backend: DockerBackend, cid: str, timeout_s: float = 30) -> ServiceState:
    deadline = time.monotonic() + timeout_s
    state = backend.service_state(cid)
    while state.running and state.health not in ("healthy", "unhealthy"):
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
        state = backend.service_state(cid)
    return state


def test_a_service_is_hardened_like_a_step_and_its_env_is_never_in_its_configuration(
    backend: DockerBackend, run_id: str
) -> None:
    assert isinstance(backend, Sidecars) and backend.services_refused() is None
    network = f"runner-{run_id}-svc"
    backend.create_private_network(network, {LABEL_RUN: run_id}, host_reachable=False)
    cid = None
    try:
        check = Healthcheck(
            cmd='test -n "$HOSTNAME" && echo checked',
            interval_s=0.5,
            timeout_s=5,
            retries=3,
            start_period_s=0,
        )
        spec = service(
            run_id,
            ["sh", "-c", 'printf "%s" "$TOKEN" | sha256sum; id -u; sleep 60'],
            network,
            alias="db",
            env={"TOKEN": SECRET},
            health=check,
        )
        cid = backend.create(spec)
        frames = backend.attach_output(cid)
        backend.start(cid)
        state = wait_health(backend, cid)
        assert state == ServiceState(running=True, health="healthy", checked="checked\n")
        attrs = backend.api.inspect_container(cid)
        # what the engine stored (config.v2.json on the host's disk) holds no value of env
        assert SECRET not in json.dumps(attrs) and "s3cr" not in json.dumps(attrs)
        assert not any(entry.startswith("TOKEN=") for entry in attrs["Config"]["Env"] or [])
        host = attrs["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and host["ReadonlyRootfs"] is True
        assert host["Privileged"] is False and host["NetworkMode"] == network
        assert "no-new-privileges:true" in host["SecurityOpt"]
        assert any(opt.startswith("seccomp=") for opt in host["SecurityOpt"])
        assert "noexec" in host["Tmpfs"]["/tmp"] and host["PidsLimit"] == 32
        assert not host.get("Binds") and not [m for m in attrs["Mounts"] if m["RW"]]
        assert attrs["Config"]["User"] == "65534:65534"
        assert attrs["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", check.cmd]
        assert "db" in attrs["NetworkSettings"]["Networks"][network]["Aliases"]
        # names not the network's are forwarded from the container's namespace, where the
        # internal network drops them, never from the host's (CVE-2024-29018)
        assert host["Dns"] == [networks.NO_UPSTREAM_DNS]
        backend.kill(cid)
        output = b"".join(frames).decode()
        assert hashlib.sha256(SECRET.encode()).hexdigest() in output  # it did get it
        assert "65534" in output
    finally:
        if cid is not None:
            backend.remove(cid)
        backend.remove_network(network)


def test_a_failing_check_turns_the_service_unhealthy_with_its_output(
    backend: DockerBackend, run_id: str
) -> None:
    network = f"runner-{run_id}-svc"
    backend.create_private_network(network, {LABEL_RUN: run_id}, host_reachable=False)
    cid = None
    try:
        check = Healthcheck(
            cmd="echo not yet; exit 1", interval_s=0.3, timeout_s=2, retries=2, start_period_s=0
        )
        cid = backend.create(service(run_id, ["sleep", "60"], network, alias="db", health=check))
        run = backend.attach_output(cid)
        backend.start(cid)
        state = wait_health(backend, cid)
        assert (state.health, state.checked) == ("unhealthy", "not yet\n")
        backend.kill(cid)
        list(run)
        assert backend.service_state(cid).running is False
    finally:
        if cid is not None:
            backend.remove(cid)
        backend.remove_network(network)


def test_a_private_network_reaches_its_services_by_name_but_not_the_outside_nor_the_host(
    backend: DockerBackend, run_id: str, outside: Outside, host_listener: HostListener
) -> None:
    network = f"runner-{run_id}-svc"
    backend.create_private_network(network, {LABEL_RUN: run_id}, host_reachable=False)
    made: list[str] = []
    try:
        assert f"runner-egress:{networks.bridge_name(network)}" in (
            networks._run(["iptables", "-w", "-S"]).stdout
        )
        assert backend.api.inspect_network(network)["Internal"] is True
        serve = "while :; do echo web | nc -l -p 8080; done"
        web = backend.create(service(run_id, ["sh", "-c", serve], network, alias="web"))
        made.append(web)
        backend.start(web)
        targets: dict[str, tuple[str, int]] = {
            "web": ("web", 8080),
            "outside": (outside.address, outside.port),
            "gateway": (gateway(backend, network), host_listener.port),
        }
        for index, address in enumerate(host_addresses()):
            targets[f"host{index}"] = (address, host_listener.port)
        # the prober is a service too: what a service cannot reach, a step cannot either
        prober = backend.create(
            service(run_id, ["sh", "-c", probe(targets) + "; ip route"], network, alias="probe")
        )
        made.append(prober)
        code, output = run_container(backend, prober, 60)
        assert code == 0, output
        got = facts(output)
        assert got.pop("web") == "web :0", output
        assert got and all(not value.endswith(":0") for value in got.values()), output
        assert host_listener.hits == 0
    finally:
        for cid in made:
            backend.remove(cid)
        backend.remove_network(network)
    assert f"runner-egress:{networks.bridge_name(network)}" not in (
        networks._run(["iptables", "-w", "-S"]).stdout
    )
    assert backend.list_networks(f"{LABEL_RUN}={run_id}") == {}


def test_without_root_a_private_network_fails_closed_and_leaves_nothing(
    backend: DockerBackend, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(networks.os, "geteuid", lambda: 1000)
    name = f"runner-{run_id}-svc"
    with pytest.raises(EgressUnavailable, match="runner is not root") as caught:
        backend.create_private_network(name, {LABEL_RUN: run_id}, host_reachable=False)
    assert "accept: [egress-to-host]" in str(caught.value)
    assert backend.list_networks(f"{LABEL_RUN}={run_id}") == {}
