"""Which engine answers the Docker API (Docker or Podman), detected once per connection.

Podman serves the Docker API too (`podman system service`, `DOCKER_HOST` pointing at its
socket), with differences runner handles where they matter, keyed on `Dialect.podman`
(measured on Debian's Podman 4.3):

- the seccomp profile is taken as a file name, never inline (`hardening.seccomp_file`);
- tmpfs options: `uid=`/`gid=` are unknown; Podman copies the image's directory into a
  tmpfs unless told `notmpcopyup`; and it adds writable, executable tmpfs mounts of its own
  on /run and /var/tmp, which runner covers with noexec ones the step cannot write
  (`hardening.container_config`), so that runner-init does not refuse every step;
- a named volume mounted through `Mounts` loses `noexec`: the workspace goes through
  `Binds`, whose options Podman applies (`hardening.container_config`);
- the step environment gets `container=podman` and `TERM=xterm` unless the body's
  `UnsetEnv` (a Podman extension of the create call) names them (`hardening.engine_fields`);
- as root Podman raises each container's open-files and process limits to 1048576, which
  a host without CAP_SYS_RESOURCE refuses at start; runner passes the limits a process of
  this host gets instead (`ulimits`);
- the archive API reaches a volume only while a container runs (on a created or stopped
  one it reads and writes the container's own root instead, silently): the backend reads
  and fills volumes through a running helper (`backend.DockerBackend._helper`);
- killing an exited container is a 500 "container state improper" (`errors.not_running`);
- its networks (netavark) put their own firewall rules ahead of Docker's `DOCKER-USER`
  chain, so runner cannot keep an egress network away from the host
  (`networks.create` fails closed).
- its attach (4.3) could end as the container exited, before the last bytes of a fast
  step reached runner: on both engines runner-init ends each stream with a trailer and
  exits only once runner acked it (`sdk.attach`, `runner.engine.stepinit.trailer`), and a
  stream without it is `OutputIncomplete`, never a silent success.

Everything else (hardening, limits, attach, wait, images) is the same calls on both.
"""

from __future__ import annotations

import resource
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DOCKER = "docker"
PODMAN = "podman"
# where scripts/ensure-podman.sh serves Podman's API (rootful): DOCKER_HOST for runner
PODMAN_HOST = "unix:///run/podman/podman.sock"
PODMAN_COMPONENT = "Podman Engine"  # how Podman names itself in `GET /version`
# what Podman adds to every container's environment, unless the image sets it itself
PODMAN_ENV = ("TERM", "container")
# Podman 4.3 runs itself (and so conmon and runc) with RLIMIT_NPROC 32768: a container may
# get at most that without CAP_SYS_RESOURCE
PODMAN_NPROC = 32768
PODMAN_NOFILE = 1 << 20  # what Podman would give a container as root


@dataclass(frozen=True)
class Dialect:
    """The engine behind the Docker API: `name` ("docker" or "podman") and its version;
    on Podman, the open-files and process limits every container gets (`ulimits`)."""

    name: str = DOCKER
    version: str = ""
    limits: tuple[tuple[str, int], ...] = field(default=())

    @property
    def podman(self) -> bool:
        return self.name == PODMAN

    def ulimits(self) -> list[dict[str, Any]]:
        """The `ulimits` a container needs on this engine besides runner's own (none on
        Docker: its containers inherit dockerd's)."""
        return [{"name": name, "soft": value, "hard": value} for name, value in self.limits]

    def describe(self) -> str:
        return f"{'Podman' if self.podman else 'Docker'} {self.version}".strip()


DOCKER_DIALECT = Dialect()


def detect(version: Mapping[str, Any]) -> Dialect:
    """The dialect of the engine whose `GET /version` answer is `version`."""
    for component in version.get("Components") or []:
        if component.get("Name") == PODMAN_COMPONENT:
            return Dialect(PODMAN, str(component.get("Version") or ""), _podman_limits())
    return Dialect(DOCKER, str(version.get("Version") or ""))


def _podman_limits() -> tuple[tuple[str, int], ...]:
    """This host's limits, as Docker's containers inherit them from dockerd: the hard
    limits of this process (the engine's host: runner only supports a local Podman),
    capped at what Podman itself would set or may set."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    return (
        ("nofile", _capped(nofile, PODMAN_NOFILE)),
        ("nproc", _capped(nproc, PODMAN_NPROC)),
    )


def _capped(limit: int, cap: int) -> int:
    return cap if limit == resource.RLIM_INFINITY or limit > cap else limit
