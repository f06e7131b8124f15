"""Egress that is not the host's, in real containers: a job's network reaches "the
outside" (a network namespace this test makes, with its own veth link) but not the host
on any of its addresses, nor another job's containers. Where runner cannot set the
firewall, it fails closed."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import facts, run_container

from runner.engine.backend import LABEL_RUN, ContainerSpec, EgressUnavailable
from runner.engine.docker import networks
from runner.engine.docker.backend import DockerBackend

pytestmark = pytest.mark.docker
BUSYBOX = "runner-base/busybox:latest"


def spec(run_id: str, command: list[str], network: str) -> ContainerSpec:
    return ContainerSpec(
        image=BUSYBOX,
        command=command,
        env={},
        labels={LABEL_RUN: run_id},
        memory_bytes=64 * 1024 * 1024,
        cpus=1,
        pids=32,
        network=network,
    )


def sh(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


@dataclass
class Outside:
    address: str  # a host of "the outside": its own namespace, its own link
    port: int


@pytest.fixture
def outside() -> Iterator[Outside]:
    """A network namespace that stands for the outside, answering "outside" on a port."""
    tag = secrets.token_hex(3)
    ns, veth = f"rtout-{tag}", f"rto{tag}"
    subnet = ipaddress.ip_network(f"198.51.100.{4 * secrets.randbelow(64)}/30")
    host_ip, ns_ip = (str(a) for a in list(subnet.hosts())[:2])
    sh("ip", "netns", "add", ns)
    server: subprocess.Popen[str] | None = None
    try:
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "addr", "add", f"{host_ip}/30", "dev", veth)
        sh("ip", "link", "set", veth, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ns_ip}/30", "dev", "eth0")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        sh("ip", "netns", "exec", ns, "ip", "route", "add", "default", "via", host_ip)
        code = (
            "import socket\n"
            "s = socket.socket(); s.bind(('0.0.0.0', 8080)); s.listen(8); s.settimeout(60)\n"
            "print('ready', flush=True)\n"
            "for _ in range(8):\n"
            "    c, _ = s.accept(); c.sendall(b'outside\\n'); c.close()\n"
        )
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdout.readline() == "ready\n"
        yield Outside(ns_ip, 8080)
    finally:
        if server is not None:
            server.kill()
            server.wait()
            if server.stdout is not None:
                server.stdout.close()
        subprocess.run(["ip", "link", "del", veth], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


class HostListener:
    """A TCP listener on every address of the host; `hits` counts who got through."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("0.0.0.0", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.hits = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                connection, _ = self.socket.accept()
                self.hits += 1
                connection.sendall(b"host\n")
                connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


@pytest.fixture
def host_listener() -> Iterator[HostListener]:
    listener = HostListener()
    yield listener
    listener.close()


def host_addresses() -> list[str]:
    """The host's own IPv4 addresses on its other interfaces (docker0's among them), not on
    runner's bridges or this test's link."""
    found = []
    for line in sh("ip", "-4", "-o", "addr", "show", "scope", "global").splitlines():
        name, address = line.split()[1], line.split()[3].split("/")[0]
        if not re.match(r"(rn-|br-|veth|rto)", name):
            found.append(address)
    return found


def gateway(backend: DockerBackend, network: str) -> str:
    config = backend.api.inspect_network(network)["IPAM"]["Config"]
    return str(config[0]["Gateway"])


def probe(targets: dict[str, tuple[str, int]]) -> str:
    """A step script: connect to each target, print `@name=<exit code>:<what it heard>`."""
    return "; ".join(
        f"echo @{name}=$(nc -w 3 {address} {port} </dev/null 2>&1; echo :$?)"
        for name, (address, port) in targets.items()
    )


def firewall() -> str:
    return sh("iptables", "-w", "-S") + sh("iptables", "-w", "-S", "DOCKER-USER")


def test_egress_reaches_the_outside_but_not_the_host_nor_another_job(
    backend: DockerBackend, run_id: str, outside: Outside, host_listener: HostListener
) -> None:
    mine, theirs = f"runner-{run_id}-a-net", f"runner-{run_id}-b-net"
    labels = {LABEL_RUN: run_id}
    backend.create_network(mine, labels, host_reachable=False)
    backend.create_network(theirs, labels, host_reachable=False)
    other: str | None = None
    try:
        assert f"runner-egress:{networks.bridge_name(mine)}" in firewall()
        serve = "while :; do echo other | nc -l -p 8080; done"
        other = backend.create(spec(run_id, ["sh", "-c", serve], theirs))
        backend.start(other)
        other_ip = backend.api.inspect_container(other)["NetworkSettings"]["Networks"][theirs][
            "IPAddress"
        ]
        targets: dict[str, tuple[str, int]] = {
            "outside": (outside.address, outside.port),
            "gateway": (gateway(backend, mine), host_listener.port),
            "other": (other_ip, 8080),
        }
        for index, address in enumerate(host_addresses()):
            targets[f"host{index}"] = (address, host_listener.port)
        cid = backend.create(spec(run_id, ["sh", "-c", probe(targets) + "; ip route"], mine))
        code, output = run_container(backend, cid, 60)
        backend.remove(cid)
        assert code == 0, output
        got = facts(output)
        assert got.pop("outside") == "outside :0", output
        assert all(not value.endswith(":0") for value in got.values()), output
        assert host_listener.hits == 0
        assert f"default via {gateway(backend, mine)}" in output
        # the other job's container was listening all along: its own network reaches it
        control = backend.create(
            spec(run_id, ["sh", "-c", probe({"other": (other_ip, 8080)})], theirs)
        )
        code, output = run_container(backend, control, 30)
        backend.remove(control)
        assert facts(output) == {"other": "other :0"}, output
    finally:
        if other is not None:
            backend.remove(other)
        backend.remove_network(mine)
        backend.remove_network(theirs)
    assert f"runner-egress:{networks.bridge_name(mine)}" not in firewall()
    assert backend.list_networks(f"{LABEL_RUN}={run_id}") == {}


def test_accepted_host_reachable_egress_sets_no_firewall_and_reaches_the_host(
    backend: DockerBackend, run_id: str, host_listener: HostListener
) -> None:
    """The control: without the rules, the same probe reaches the host (so the first test
    is not vacuous), which is what `accept: [egress-to-host]` accepts."""
    name = f"runner-{run_id}-open-net"
    backend.create_network(name, {LABEL_RUN: run_id}, host_reachable=True)
    try:
        assert f"runner-egress:{networks.bridge_name(name)}" not in firewall()
        targets = {"gateway": (gateway(backend, name), host_listener.port)}
        cid = backend.create(spec(run_id, ["sh", "-c", probe(targets)], name))
        _, output = run_container(backend, cid, 30)
        backend.remove(cid)
        assert facts(output) == {"gateway": "host :0"}, output
    finally:
        backend.remove_network(name)


def test_without_root_egress_fails_closed_and_leaves_nothing(
    backend: DockerBackend, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(networks.os, "geteuid", lambda: 1000)
    name = f"runner-{run_id}-net"
    with pytest.raises(EgressUnavailable, match="runner is not root") as caught:
        backend.create_network(name, {LABEL_RUN: run_id}, host_reachable=False)
    assert "accept: [egress-to-host]" in str(caught.value)
    assert backend.list_networks(f"{LABEL_RUN}={run_id}") == {}


def test_a_remote_engine_fails_closed(
    backend: DockerBackend, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backend, "_local", False)
    with pytest.raises(EgressUnavailable, match="not on this host"):
        backend.create_network(f"runner-{run_id}-net", {LABEL_RUN: run_id}, host_reachable=False)
    assert backend.list_networks(f"{LABEL_RUN}={run_id}") == {}


def test_the_rules_are_the_documented_ones() -> None:
    rules: list[tuple[str, list[str]]] = networks.rules("rn-abc")
    chains = [chain for chain, _ in rules]
    assert chains == ["INPUT"] + ["DOCKER-USER"] * 5
    assert all(rule[:2] == ["-i", "rn-abc"] for _, rule in rules)
    text: Any = [" ".join(rule) for _, rule in rules]
    assert any("-o docker0" in line and line.endswith("REJECT") for line in text)
    assert len(networks.bridge_name("runner-20260101-000000-abcdef-0123456789ab-net")) <= 15
