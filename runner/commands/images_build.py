"""`runner images build [NAME...]`: build containers/<name>/Dockerfile, tagged by content.

An image whose build context is unchanged is not rebuilt (its tag already exists). Builds
are bounded by the policy's `build:` (policies/default.yml): the images a Dockerfile may
use, which builds get the network, memory, CPU and a timeout; Ctrl-C or SIGTERM stops a
build in the engine. Every image built is recorded in the ledger (`image.built`). A build
shows its progress on stderr as it goes (stdout keeps the result): which image it builds,
then each step the engine runs (`image base: Step 2/3 : RUN ...`).
"""

from __future__ import annotations

import threading

from runner.app import App
from runner.commands.recording import append_entry
from runner.engine.docker.backend import connect
from runner.engine.images import CONTAINERS, BuildProgress, Builds, BuiltImage, available, build
from runner.errors import InvalidInput, PolicyDenied
from runner.policy.loader import load_policy
from runner.report.display import build_progress
from runner.run.session import cancel_on_signals


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
    policy = load_policy(None, app.root)
    cancel = threading.Event()

    def recorded(image: BuiltImage) -> None:
        append_entry(app, "image.built", image.ledger_fields())

    def shown(progress: BuildProgress) -> None:
        if progress.phase != "finished":  # the line after the build says how it ended
            text = build_progress(progress.name, progress.tag, progress.phase, progress.line)
            app.out.progress(text)

    backend = connect()
    built: list[BuiltImage] = []
    try:
        if policy.denied is not None:
            raise PolicyDenied(f"no image is built: {policy.denied}")
        with cancel_on_signals(cancel):
            for name in wanted:
                image = build(
                    backend, name, app.root, Builds(policy.build, cancel, recorded, shown)
                )
                built.append(image)
                state = "cached" if image.cached else "built"
                app.out.line(f"{name} -> {image.tag}  {_size(image.size)}  ({state})")
    finally:
        backend.close()
    if app.out.json_mode:
        app.out.json({"images": [image.serialize() for image in built]})
    return 0
