"""Frozen records of a validated mission: what the core holds after the loading boundary.

`runner.mission.loader.load_mission(path)` is the one way in: safe YAML with positions ->
Cerberus schema -> semantic checks -> these records. Nothing after that boundary touches
raw dicts. Expression strings stay strings here (`${{ ... }}` included); they are parsed
by `runner.expressions` where they are checked and evaluated.

Positions: `Mission.positions` maps a key path (`jobs.test.steps[1].run`) to the
(line, col) of that node in the file, so that any later stage (policy, plan, run) can
point at the source of what it reports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Scalar = str | int | float | bool | None
MatrixValue = Scalar | Mapping[str, "MatrixValue"] | tuple["MatrixValue", ...]

ALL_TOOLS: Literal["all"] = "all"
NAME_WIDTH = 60  # a step named by its script shows at most this much of it, then "…"
CONTAINER_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")  # a containers/<name> directory


def container_problem(name: str) -> str | None:
    """Why `name` cannot be a job's `container:` (None when it can): a containers/<name>
    directory's name, or an image reference (one with `/`, `:` or `@`)."""
    if not name.strip() or re.search(r"\s|[\x00-\x1f]", name):
        return f"container {name!r} is empty or holds whitespace or control characters"
    if any(char in name for char in "/:@") or CONTAINER_NAME.fullmatch(name):
        return None
    return (
        f"container {name!r} is neither the name of a containers/<name> image (lowercase "
        "letters and digits, with . _ - between them) nor an image reference "
        "(name:tag, registry/name@sha256:...)"
    )


def nearest_position(positions: Mapping[str, tuple[int, int]], keypath: str) -> tuple[int, int]:
    """(line, col) of `keypath` (`jobs.test.steps[1].run`), else of its nearest ancestor
    that has one, else (1, 1)."""
    key = keypath
    while key:
        if key in positions:
            return positions[key]
        cut = max(key.rfind("."), key.rfind("["))
        key = key[:cut] if cut > 0 else ""
    return positions.get("", (1, 1))


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: Literal["string", "number", "boolean", "choice"]
    default: Scalar = None
    required: bool = False
    description: str = ""
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Permissions:
    """Capabilities requested (ext keys) plus GitHub token scopes, which mean nothing here."""

    network: Literal["none", "egress"] = "none"
    secrets: tuple[str, ...] = ()
    exec: bool = False  # exec on the workspace (writable + executable mount)
    github_scopes: Mapping[str, str] = field(default_factory=dict)  # notes only


@dataclass(frozen=True)
class Retry:
    max_attempts: int = 1
    backoff: Literal["fixed", "linear", "exponential"] = "fixed"
    delay_s: float = 0.0
    max_delay_s: float | None = None
    jitter: float = 0.0  # fraction of the delay, 0..1
    on: tuple[Literal["failure", "timeout"], ...] = ("failure",)


@dataclass(frozen=True)
class Step:
    index: int
    id: str | None = None
    name: str | None = None
    run: str | None = None
    uses: str | None = None  # "./actions/x", "docker://image", "owner/repo@ref"
    with_: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    if_: str | None = None
    shell: str | None = None
    working_directory: str | None = None
    timeout_minutes: float | str | None = None  # str when an expression
    continue_on_error: bool | str = False  # str when an expression
    retry: Retry | None = None

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.id:
            return self.id
        if self.uses:
            return self.uses
        first = (self.run or "").strip().splitlines()
        if not first:
            return f"step {self.index + 1}"
        line = first[0].rstrip()  # as GitHub names a step by its script's first line
        return line if len(line) <= NAME_WIDTH else line[: NAME_WIDTH - 1] + "…"


@dataclass(frozen=True)
class Matrix:
    axes: Mapping[str, tuple[MatrixValue, ...]] = field(default_factory=dict)
    include: tuple[Mapping[str, MatrixValue], ...] = ()
    exclude: tuple[Mapping[str, MatrixValue], ...] = ()
    expression: str | None = None  # `matrix: ${{ fromJSON(...) }}`: expanded at run time


@dataclass(frozen=True)
class Strategy:
    matrix: Matrix = field(default_factory=Matrix)
    fail_fast: bool | str = True
    max_parallel: int | str | None = None


@dataclass(frozen=True)
class Artifact:
    name: str
    path: str
    type: Literal["file", "dir"] = "file"


@dataclass(frozen=True)
class RunDefaults:
    shell: str | None = None
    working_directory: str | None = None


@dataclass(frozen=True)
class Health:
    """A service's health check, from its `--health-*` options (Docker's own check: the
    engine runs `cmd` through the image's `/bin/sh -c` inside the service's container)."""

    cmd: str
    interval_s: float = 30.0  # Docker's defaults
    timeout_s: float = 30.0
    retries: int = 3
    start_period_s: float = 0.0


@dataclass(frozen=True)
class Service:
    """One `jobs.<id>.services.<name>` sidecar: its image (may hold `${{ matrix.X }}`),
    environment (expressions evaluated as the job's env), command and entrypoint (replacing
    the image's, as `docker create` does), and its health check (None: ready once
    running). Ports and volumes are not kept: see runner.mission.services."""

    name: str
    image: str
    env: Mapping[str, str] = field(default_factory=dict)
    command: tuple[str, ...] | None = None  # None: the image's CMD
    entrypoint: str | None = None  # None: the image's ENTRYPOINT
    health: Health | None = None
    credentials: bool = False  # asks for a registry login, which runner refuses


@dataclass(frozen=True)
class Job:
    id: str
    name: str | None = None
    needs: tuple[str, ...] = ()
    if_: str | None = None
    container: str | None = None  # containers/<name> or an image reference; None = "base"
    tools: tuple[str, ...] | Literal["all"] = ("sh",)
    strategy: Strategy | None = None
    timeout_minutes: float | str | None = None
    continue_on_error: bool | str = False
    env: Mapping[str, str] = field(default_factory=dict)
    defaults: RunDefaults = field(default_factory=RunDefaults)
    steps: tuple[Step, ...] = ()
    outputs: Mapping[str, str] = field(default_factory=dict)
    produces: tuple[Artifact, ...] = ()
    consumes: tuple[str, ...] = ()
    permissions: Permissions | None = None  # None: inherit the mission's
    uses: str | None = None  # a reusable workflow call: well-formed, cannot run locally
    with_: Mapping[str, str] = field(default_factory=dict)
    runs_on: tuple[str, ...] = ()  # GitHub runner labels (may hold `${{ matrix.X }}`)
    services: Mapping[str, Service] = field(default_factory=dict)  # in file order


@dataclass(frozen=True)
class VerifyCheck:
    name: str
    check: str


@dataclass(frozen=True)
class Mission:
    path: str  # as given by the user, for messages
    digest: str  # sha256 hex of the file's bytes
    name: str
    on: tuple[str, ...] = ()
    inputs: Mapping[str, InputSpec] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    defaults: RunDefaults = field(default_factory=RunDefaults)
    permissions: Permissions = field(default_factory=Permissions)
    jobs: Mapping[str, Job] = field(default_factory=dict)  # in file order
    verify: tuple[VerifyCheck, ...] = ()
    positions: Mapping[str, tuple[int, int]] = field(default_factory=dict, repr=False)

    def where(self, keypath: str) -> tuple[int, int]:
        """(line, col) of `keypath`, or of its nearest ancestor that has a position."""
        return nearest_position(self.positions, keypath)

    def job_permissions(self, job: Job) -> Permissions:
        return job.permissions if job.permissions is not None else self.permissions
