"""The engine behind a small protocol: what the executor asks of a container backend.

`ContainerSpec` is everything a step container is made of; `runner.hardening` turns it into
an engine configuration. `docker_backend.DockerBackend` implements `Backend` on the local
Docker API (Podman's included); a cluster engine would be a second implementation.

Every container and volume runner creates carries `LABEL_RUN` (the run id) and
`LABEL_STATE` (the state directory of that run) so that `runner gc` can find what a
crashed run left behind and tell whether its run is still alive.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from runner.errors import RunnerError

LABEL_RUN = "runner.run-id"
LABEL_STATE = "runner.state-dir"
LABEL_JOB = "runner.job"
LABEL_ROLE = "runner.role"  # "step", "workspace", "workspace-data", "helper"

WORKSPACE_PATH = "/workspace"
NOBODY = 65534


class NotFound(RunnerError):
    """A container, volume or path inside a container that does not exist."""


def run_labels(state_dir: Path, run_id: str, job_key: str | None = None) -> dict[str, str]:
    """The labels every resource of run `run_id` carries (see `runner.gc`)."""
    labels = {LABEL_RUN: run_id, LABEL_STATE: str(state_dir.resolve())}
    if job_key is not None:
        labels[LABEL_JOB] = job_key
    return labels


@dataclass(frozen=True, kw_only=True)
class ContainerSpec:
    """One step container, before hardening. `env` is exactly what the step sees."""

    image: str
    command: list[str]
    env: Mapping[str, str]
    labels: Mapping[str, str]
    memory_bytes: int
    cpus: float
    pids: int
    workdir: str = WORKSPACE_PATH
    user: int = NOBODY
    network: bool = False
    workspace_volume: str | None = None
    workspace_path: str = WORKSPACE_PATH
    workspace_exec: bool = False
    seccomp_deny_memfd: bool = False
    tmp_bytes: int | None = None  # size of the noexec /tmp; None = min(64 MiB, memory / 4)
    log_max_bytes: int = 16 * 1024 * 1024  # per json-file, 2 files are kept


class Backend(Protocol):
    """What the executor needs from a container engine. Ids are the engine's own."""

    def create(self, spec: ContainerSpec) -> str:
        """Create (not start) the hardened container; returns its id."""
        ...

    def put_archive(self, cid: str, path: str, data: bytes | IO[bytes]) -> None:
        """Extract a tar into `path` (an existing directory) of a container."""
        ...

    def get_archive(self, cid: str, path: str) -> Iterator[bytes]:
        """A tar of `path` of a (stopped) container, in chunks; NotFound when it is missing."""
        ...

    def start(self, cid: str) -> None: ...

    def attach_output(self, cid: str) -> Iterator[bytes]:
        """Connect to a created container's stdout and stderr; call before `start` so
        that nothing is missed. The iterator ends when the container exits."""
        ...

    def stream_logs(self, cid: str) -> Iterator[bytes]:
        """stdout and stderr as they come, until the container exits."""
        ...

    def wait(self, cid: str, timeout_s: float | None) -> int | None:
        """The exit code, or None when `timeout_s` passed first (the container still runs)."""
        ...

    def kill(self, cid: str) -> None:
        """SIGKILL; a container that is gone or not running is not an error."""
        ...

    def remove(self, cid: str) -> None:
        """Force-remove with its anonymous volumes; a missing container is not an error."""
        ...

    def create_volume(
        self,
        name: str,
        labels: Mapping[str, str],
        *,
        exec_allowed: bool,
        owner: int = NOBODY,
        seeds: Sequence[bytes | IO[bytes]] = (),
    ) -> None:
        """A workspace volume whose root belongs to `owner`, holding the tars `seeds`
        extracted in order at its root. Files on it can be executed only when
        `exec_allowed`."""
        ...

    def read_files(
        self, volume: str, directory: str, names: Sequence[str], limit: int
    ) -> dict[str, bytes] | None:
        """Regular files `names` of `directory` (workspace-relative) of workspace volume
        `volume`, read without a container (missing ones left out); None when the engine
        cannot do that, and the caller copies them out of a stopped container instead."""
        ...

    def remove_volume(self, name: str) -> None:
        """Remove a volume made by `create_volume` (and its parts); missing is fine."""
        ...

    def image_digest(self, image: str) -> str: ...

    def host_pid(self, cid: str) -> int | None:
        """The host pid of a running container's first process, when the engine runs on
        this host and the container still runs; else None."""
        ...

    def list_labelled(
        self, label: str
    ) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
        """(containers, volumes) carrying `label` ("key" or "key=value"): id/name -> labels."""
        ...
