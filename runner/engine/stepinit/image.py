"""The runner-init image: `runner-init.c` compiled by the engine, tagged by its source.

`ensure_image(backend, say)` builds `Dockerfile` (a `debian:bookworm-slim` stage that
installs gcc and compiles the program statically, then a `FROM scratch` stage holding only
`/.runner-init/runner-init`) through `Backend.build_image`, unless the engine already has
`tag()`: `runner-internal/init:<sha256 of the Dockerfile and the source>`, so a changed
source is always rebuilt and an unchanged one never. The first build takes about a minute
(it installs gcc from Debian's mirror); `say` is told when it starts, every
`PROGRESS_EVERY_S` while it runs, and when it is done. `scripts/base-images.sh` builds it
beforehand on a fresh machine.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from runner.engine.backend import LABEL_ROLE, Backend, BuildSpec, ImageBuildFailed
from runner.errors import RunnerError

REPOSITORY = "runner-internal/init"
FILES = ("Dockerfile", "runner-init.c")
ROLE = "init-image"
PROGRESS_EVERY_S = 15.0
BUILD_MEMORY_BYTES = 1 << 30
BUILD_CPUS = 2.0
BUILD_TIMEOUT_S = 900.0
_lock = threading.Lock()


def _files() -> dict[str, bytes]:
    package = resources.files("runner.engine.stepinit")
    return {name: package.joinpath(name).read_bytes() for name in FILES}


def tag() -> str:
    """The image's tag: the SHA-256 of its build files (names and contents)."""
    digest = hashlib.sha256()
    for name, data in sorted(_files().items()):
        digest.update(f"{name}\0{len(data)}\0".encode() + data)
    return f"{REPOSITORY}:{digest.hexdigest()}"


def ensure_image(
    backend: Backend,
    say: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> str:
    """The runner-init image's tag, built first if the engine does not have it (a trusted
    build of runner's own files, bounded like every build; `cancel` stops it)."""
    wanted = tag()
    with _lock:
        if backend.inspect_image(wanted) is not None:
            return wanted
        notify = say if say is not None else (lambda _: None)
        notify(
            "building runner-init, the entrypoint of every step (once per engine, about a minute)"
        )
        started = time.monotonic()
        done = threading.Event()
        ticker = threading.Thread(target=_tick, args=(notify, started, done), daemon=True)
        ticker.start()
        try:
            with tempfile.TemporaryDirectory(prefix="runner-init-") as scratch:
                context = Path(scratch) / "context.tar"
                with tarfile.open(context, mode="w") as tar:
                    for name, data in _files().items():
                        info = tarfile.TarInfo(name)
                        info.size, info.mode = len(data), 0o644
                        tar.addfile(info, io.BytesIO(data))
                spec = BuildSpec(
                    context=context,
                    tag=wanted,
                    labels={LABEL_ROLE: ROLE},
                    network=True,  # apt-get install gcc from Debian's mirror
                    memory_bytes=BUILD_MEMORY_BYTES,
                    cpus=BUILD_CPUS,
                    timeout_s=BUILD_TIMEOUT_S,
                )
                backend.build_image(spec, cancel or threading.Event())
        except ImageBuildFailed as exc:
            tail = "\n    ".join(exc.log[-10:])
            raise RunnerError(
                f"cannot build runner-init, the entrypoint of every step: {exc.detail}"
                + (f"\n  last build output:\n    {tail}" if tail else ""),
                hint="it needs debian:bookworm-slim (scripts/base-images.sh) and Debian's "
                "mirror reachable from a build container",
            ) from exc
        finally:
            done.set()
            ticker.join()
        notify(f"built runner-init in {time.monotonic() - started:.0f}s")
        return wanted


def _tick(say: Callable[[str], None], started: float, done: threading.Event) -> None:
    while not done.wait(PROGRESS_EVERY_S):
        say(f"still building runner-init ({time.monotonic() - started:.0f}s)")
