"""Egress that is not the host's: a network of its own per job granted egress (and, for a
job with services but no egress, an `internal` one with no way out, firewalled alike).

Docker's default bridge lets a container reach every other container on it and every
address of the host (its bridge gateway, its other interfaces). So a job granted egress
gets a user-defined bridge network of its own (`create`, labelled with the run, removed
with the job, swept by `runner gc`): Docker isolates user-defined bridges from each other
and from the default one. What Docker does not stop, traffic to the host itself and the
link-local range (cloud metadata), runner stops with host firewall rules, put in place
*before* the network exists, on a bridge interface whose name runner chooses
(`bridge_name`):

    INPUT        -i BRIDGE -j REJECT                  nothing on this host, on any address
    DOCKER-USER  -i BRIDGE -o BRIDGE -j RETURN        (its own bridge, when bridged traffic
                                                       is filtered) is Docker's business
                 -i BRIDGE -o docker0|br-+|rn-+ -j REJECT   no other network's containers
                 -i BRIDGE -d 169.254.0.0/16 -j REJECT      no link-local services

each carrying the comment `runner-egress:BRIDGE`, by which `remove` deletes them. IPv6 is
off inside egress containers (`hardening`), so the host's link-local IPv6 addresses are
out of reach too. This is root work on runner-made data only (names runner derived), never
on attacker-shaped files. Where runner cannot do it (the engine is remote, runner is not
root, no `iptables`), `create` fails closed with `EgressUnavailable`, unless the policy
accepts a host-reachable egress (`accept: [egress-to-host]`, docs/policy.md).

On Podman runner cannot: netavark puts its own jump (`NETAVARK_FORWARD`, which accepts
its networks' traffic) ahead of `DOCKER-USER` in `FORWARD`, and runs a DNS server on each
network's gateway, on the host. So there a job granted egress is refused unless the
policy accepts a host-reachable egress; the network is then Podman's bridge, which
Podman isolates from its other networks (`isolate`).

A private network's containers get `NO_UPSTREAM_DNS` as their DNS server. Docker's
embedded resolver (127.0.0.11) still answers the network's own names (a service's
alias), and forwards other names to that address from the container's own namespace,
where the internal network drops them. Without it, an engine before Docker 26.0.0 /
25.0.4 / 23.0.11 forwards them from the host's namespace when the host's resolver is on
loopback (systemd-resolved's 127.0.0.53), so a step with no egress could leak data
through DNS lookups (CVE-2024-29018; the advisory's workaround is this one).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any, cast

import docker
import docker.errors

from runner.engine.backend import LABEL_ROLE, EgressUnavailable
from runner.engine.docker.dialect import Dialect
from runner.engine.docker.errors import docker_errors, missing_ok
from runner.errors import RunnerError

BRIDGE_OPTION = "com.docker.network.bridge.name"
PREFIX = "rn-"  # runner's bridges; Docker's own are docker0 and br-<id>
COMMENT = "runner-egress:"
LINK_LOCAL = "169.254.0.0/16"
NO_UPSTREAM_DNS = "192.0.2.1"  # TEST-NET-1 (RFC 5737): nothing answers, the network drops it
ACCEPT_HINT = (
    "run runner as root on the engine's host (with iptables), or accept a host-reachable "
    "egress in the policy: `accept: [egress-to-host]` (docs/policy.md)"
)


def bridge_name(network: str) -> str:
    """The bridge interface of `network` (at most 15 characters, as Linux allows)."""
    return PREFIX + hashlib.sha256(network.encode()).hexdigest()[:12]


def rules(bridge: str) -> list[tuple[str, list[str]]]:
    """(chain, rule) of the firewall that keeps `bridge` away from the host, in order."""
    comment = ["-m", "comment", "--comment", COMMENT + bridge]
    reject = [*comment, "-j", "REJECT"]
    return [
        ("INPUT", ["-i", bridge, *reject]),
        ("DOCKER-USER", ["-i", bridge, "-o", bridge, *comment, "-j", "RETURN"]),
        ("DOCKER-USER", ["-i", bridge, "-o", "docker0", *reject]),
        ("DOCKER-USER", ["-i", bridge, "-o", "br-+", *reject]),
        ("DOCKER-USER", ["-i", bridge, "-o", PREFIX + "+", *reject]),
        ("DOCKER-USER", ["-i", bridge, "-d", LINK_LOCAL, *reject]),
    ]


def _iptables() -> str:
    """The iptables command, or EgressUnavailable saying why it cannot be used."""
    found = shutil.which("iptables")
    if found is None:
        raise EgressUnavailable("no `iptables` on this host", hint=ACCEPT_HINT)
    if os.geteuid() != 0:
        raise EgressUnavailable(
            "runner is not root, so it cannot set firewall rules", hint=ACCEPT_HINT
        )
    return found


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)


def install(bridge: str) -> None:
    """Put `bridge`'s rules at the top of their chains (all or none)."""
    iptables = _iptables()
    done: list[tuple[str, list[str]]] = []
    for chain, rule in reversed(rules(bridge)):  # each goes first: the list's order results
        result = _run([iptables, "-w", "-I", chain, "1", *rule])
        if result.returncode != 0:
            for undo_chain, undo_rule in done:
                _run([iptables, "-w", "-D", undo_chain, *undo_rule])
            raise EgressUnavailable(
                f"cannot set the firewall rule `{chain} {' '.join(rule)}`: "
                f"{result.stderr.strip() or 'iptables failed'}",
                hint=ACCEPT_HINT,
            )
        done.append((chain, rule))


def uninstall(bridge: str) -> None:
    """Delete every rule of `bridge` (each may be missing)."""
    iptables = shutil.which("iptables")
    if iptables is None or os.geteuid() != 0:
        return
    for chain, rule in rules(bridge):
        while _run([iptables, "-w", "-D", chain, *rule]).returncode == 0:
            pass  # a rule installed twice goes twice


def create(
    api: docker.APIClient,
    name: str,
    labels: Mapping[str, str],
    *,
    host_reachable: bool,
    local: bool,
    dialect: Dialect,
    internal: bool = False,
) -> None:
    """The job's network; `internal`: with no way out at all (a job with services but no
    egress: its steps and services reach each other only), firewalled from the host the
    same way."""
    bridge = bridge_name(name)
    if not host_reachable:
        if dialect.podman:
            raise EgressUnavailable(
                "on Podman runner cannot keep an egress network away from the host: "
                "netavark's firewall rules and DNS server come before runner's rules",
                hint="accept a host-reachable egress in the policy: `accept: "
                "[egress-to-host]` (docs/policy.md), or run this job on Docker",
            )
        if not local:
            raise EgressUnavailable(
                "the engine is not on this host, so runner cannot keep its egress "
                "networks away from the engine's host",
                hint=ACCEPT_HINT,
            )
        install(bridge)
    try:
        with docker_errors(f"creating network {name}"):
            api.create_network(
                name,
                driver="bridge",
                options={BRIDGE_OPTION: bridge},
                labels={**labels, LABEL_ROLE: "network"},
                check_duplicate=True,
                internal=internal,
            )
    except RunnerError:
        if not host_reachable:
            uninstall(bridge)
        raise


def remove(api: docker.APIClient, name: str) -> None:
    with docker_errors(f"removing network {name}"):
        try:
            api.remove_network(name)
        except docker.errors.APIError as exc:
            if not missing_ok(exc):
                raise
    uninstall(bridge_name(name))


def labelled(api: docker.APIClient, label: str) -> dict[str, dict[str, str]]:
    with docker_errors(f"listing networks labelled {label}"):
        found: list[dict[str, Any]] = cast(Any, api).networks(filters={"label": label})
    return {n["Name"]: dict(n.get("Labels") or {}) for n in found}
