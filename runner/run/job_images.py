"""The image a job instance's steps run in: the granted image (containers/<name> built,
or a reference), cut down to the granted tools; and its services' images, whole (a
service runs its image's own program). Built once per distinct request per run."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from runner.engine.backend import Backend
from runner.engine.catalog import Catalog, load_catalog
from runner.engine.images import Builds, present, resolve_container
from runner.engine.toolsets import build_toolset
from runner.mission.model import Mission
from runner.mission.plan import JobInstance
from runner.policy.model import Grants
from runner.run.scheduler import Resolve
from runner.run.state import ResolvedImage
from runner.trusted import TrustedSource


def resolver(
    backend: Backend,
    mission: Mission,
    root: Path | TrustedSource,
    state_dir: Path,
    builds: Builds,
    catalog: Catalog | None = None,
) -> Resolve:
    """A `Resolve` for the executor; memoised per (image, tools) within one run. Image
    definitions and (unless given) the catalog come from `root`, a path or the run's
    `TrustedSource`; images of `containers/` are built within `builds` (the policy's rules,
    the run's cancel)."""
    catalog = catalog if catalog is not None else load_catalog(root)
    cache: dict[tuple[str, object], ResolvedImage] = {}
    lock = threading.Lock()

    def resolve(instance: JobInstance, grants: Grants) -> ResolvedImage:
        steps = resolve_steps(grants)
        if not grants.services:
            return steps
        services = {name: resolve_service(image) for name, image in grants.services.items()}
        return dataclasses.replace(steps, services=services)

    def resolve_service(image: str) -> ResolvedImage:
        key = (image, None)
        with lock:
            if key in cache:
                return cache[key]
        ref = resolve_container(image, root, backend=backend, builds=builds)
        resolved = ResolvedImage(ref=ref, digest=present(backend, ref).id)
        with lock:
            cache[key] = resolved
        return resolved

    def resolve_steps(grants: Grants) -> ResolvedImage:
        key = (grants.image, grants.tools)
        with lock:
            if key in cache:
                return cache[key]
        source = resolve_container(grants.image, root, backend=backend, builds=builds)
        toolset = build_toolset(backend, source, grants.tools, catalog, state_dir)
        resolved = ResolvedImage(
            ref=toolset.image,
            digest=present(backend, toolset.image).id,
            manifest_digest=toolset.manifest_digest,
            interpreter=toolset.interpreter,
        )
        with lock:
            cache[key] = resolved
        return resolved

    return resolve
