"""Benchmark: building a job's FROM-scratch toolset, cold and cached; sizes vs the source.

For [sh, cat] on containers/base and [sh, python3] on containers/python:
- cold: a source image never seen before (the containers/ image plus a unique LABEL, so the
  filesystem is the same but the image id, hence the manifest and tag, are new) and an
  empty state dir: export of the source filesystem, closure, manifest, `docker import`;
  the export alone is timed too;
- cached: the same call again (cache record + one inspect of the tag), median of 10.
Sizes are the engine's image sizes. Everything the benchmark creates is removed.

    .venv/bin/python bench/bench_toolsets.py [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from runner.engine.catalog import load_catalog
from runner.engine.docker.backend import DockerBackend, connect
from runner.engine.images import Builds, resolve_container
from runner.engine.rootfs import export_rootfs
from runner.engine.toolsets import build_toolset
from runner.policy.loader import load_policy

ROOT = Path(__file__).resolve().parent.parent
CASES = [("base", ("sh", "cat")), ("python", ("sh", "python3"))]
LABEL = "runner.bench"


def fresh_source(client: Any, image: str) -> str:
    """`image` under a new id (a LABEL-only build: no layer, no container)."""
    dockerfile = f"FROM {image}\nLABEL {LABEL}={uuid.uuid4().hex}\n".encode()
    built, _ = client.images.build(fileobj=io.BytesIO(dockerfile), rm=True, pull=False)
    return str(built.id)


def measure(
    client: Any, backend: DockerBackend, name: str, tools: tuple[str, ...], rounds: int
) -> dict[str, Any]:
    catalog = load_catalog(ROOT)
    source = resolve_container(
        name, ROOT, backend=backend, builds=Builds(load_policy(None, ROOT).build)
    )
    cold, export, cached = [], [], []
    created: list[str] = []
    result: dict[str, Any] = {}
    try:
        for _ in range(rounds):
            unique = fresh_source(client, source)
            created.append(unique)
            with tempfile.TemporaryDirectory() as tmp:
                state = Path(tmp)
                start = time.perf_counter()
                export_rootfs(backend, unique, state / "probe")
                export.append(time.perf_counter() - start)
            with tempfile.TemporaryDirectory() as tmp:
                state = Path(tmp)
                start = time.perf_counter()
                toolset = build_toolset(backend, unique, tools, catalog, state)
                cold.append(time.perf_counter() - start)
                created.insert(0, toolset.image)
                for _ in range(10):
                    start = time.perf_counter()
                    again = build_toolset(backend, unique, tools, catalog, state)
                    cached.append(time.perf_counter() - start)
                    assert again.cached and again.image == toolset.image
        files = [e for e in toolset.manifest["files"] if e["type"] == "file"]
        result = {
            "source": source,
            "tools": list(tools),
            "cold_s": statistics.median(cold),
            "export_s": statistics.median(export),
            "cached_s": statistics.median(cached),
            "toolset_bytes": int(client.images.get(toolset.image).attrs["Size"]),
            "source_bytes": int(client.images.get(source).attrs["Size"]),
            "entries": len(toolset.manifest["files"]),
            "files": len(files),
        }
    finally:
        for image in created:
            client.images.remove(image, force=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    backend = connect()
    results = [measure(backend.client, backend, name, tools, args.rounds) for name, tools in CASES]
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
        return 0
    for r in results:
        print(
            f"{'+'.join(r['tools']):<12} from {r['source'][:24]:<24} "
            f"cold {r['cold_s']:.3f} s (export {r['export_s']:.3f} s)  "
            f"cached {r['cached_s'] * 1000:.1f} ms  "
            f"size {r['toolset_bytes'] / 1e6:.1f} MB vs {r['source_bytes'] / 1e6:.1f} MB  "
            f"({r['files']} files, {r['entries']} entries)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
