"""`runner images build [NAME...]`: build containers/<name>/Dockerfile, tagged by content.

An image whose build context is unchanged is not rebuilt (its tag already exists).
"""

from __future__ import annotations

from runner.app import App
from runner.engine.docker.backend import connect
from runner.engine.images import CONTAINERS, BuiltImage, available, build
from runner.errors import InvalidInput


def _size(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def main(app: App, names: tuple[str, ...]) -> int:
    known = available(app.root)
    wanted = list(dict.fromkeys(names)) or known
    if not wanted:
        raise InvalidInput(
            f"no image definitions: {CONTAINERS}/<name>/Dockerfile does not exist",
            hint="create containers/base/Dockerfile (FROM debian:bookworm-slim)",
        )
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise InvalidInput(
            f"no {CONTAINERS}/<name>/Dockerfile for {', '.join(unknown)} "
            f"(known: {', '.join(known) or 'none'})"
        )
    backend = connect()
    built: list[BuiltImage] = []
    try:
        for name in wanted:
            image = build(backend, name, app.root)
            built.append(image)
            state = "cached" if image.cached else "built"
            app.out.line(f"{name} -> {image.tag}  {_size(image.size)}  ({state})")
    finally:
        backend.close()
    if app.out.json_mode:
        app.out.json({"images": [image.serialize() for image in built]})
    return 0
