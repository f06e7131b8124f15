"""What the jobs of one run share, and the image a job's steps run in."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.engine.backend import Backend
from runner.engine.clock import Clock, SystemClock
from runner.mission.model import Mission
from runner.records.sink import Sink
from runner.run.contexts import RunInfo
from runner.run.snapshot import RunSnapshots
from runner.secrets.redact import Redactor


@dataclass(frozen=True)
class ResolvedImage:
    ref: str  # what containers are created from
    digest: str  # the image id (sha256:...)
    manifest_digest: str = ""  # the toolset manifest's digest, when pruned
    interpreter: bool = True  # an interpreter among the tools: deny memfd_create
    # the job's services' images (runner.run.services), whole: name -> image
    services: Mapping[str, ResolvedImage] = field(default_factory=dict)


@dataclass
class RunState:
    """What all jobs of one run share."""

    backend: Backend
    sink: Sink
    redactor: Redactor
    info: RunInfo
    mission: Mission
    secrets: Mapping[str, str]
    artifacts_dir: Path
    state_dir: Path
    snapshots: RunSnapshots  # the repository snapshot's volumes
    cancel: threading.Event
    retry_seed: int | None = None
    # the policy accepts egress that can reach the host where runner cannot keep it off
    accept_egress_to_host: bool = False
    clock: Clock = field(default_factory=SystemClock)  # deadlines, durations, retry delays
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> record
    lock: threading.Lock = field(default_factory=threading.Lock)
