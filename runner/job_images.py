"""The image a job instance's steps run in: the granted image (containers/<name> built,
or a reference), cut down to the granted tools. Built once per distinct request per run."""

from __future__ import annotations

import threading
from pathlib import Path

from runner.backend import Backend
from runner.catalog import load_catalog
from runner.executor import Resolve
from runner.images import client_of, resolve_container
from runner.mission import Mission
from runner.plan import JobInstance
from runner.policy import Grants
from runner.run_state import ResolvedImage
from runner.toolsets import build_toolset


def resolver(backend: Backend, mission: Mission, root: Path, state_dir: Path) -> Resolve:
    """A `Resolve` for the executor; memoised per (image, tools) within one run."""
    catalog = load_catalog(root)
    cache: dict[tuple[str, object], ResolvedImage] = {}
    lock = threading.Lock()

    def resolve(instance: JobInstance, grants: Grants) -> ResolvedImage:
        key = (grants.image, grants.tools)
        with lock:
            if key in cache:
                return cache[key]
        source = resolve_container(grants.image, root, client=client_of(backend))
        toolset = build_toolset(backend, source, grants.tools, catalog, state_dir)
        resolved = ResolvedImage(
            ref=toolset.image,
            digest=backend.image_digest(toolset.image),
            manifest_digest=toolset.manifest_digest,
            interpreter=toolset.interpreter,
        )
        with lock:
            cache[key] = resolved
        return resolved

    return resolve
