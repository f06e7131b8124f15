"""The image probe `plan`, `policy check` and `run` find tool problems with before anything
runs (runner.policy.tools): the Docker engine of the environment, connected only when an
image must be looked into; no engine is a note, never an error."""

from __future__ import annotations

from runner.app import App
from runner.engine.docker.backend import connect
from runner.policy.tools import ImageProbe
from runner.policy.trust import Trusted


def image_probe(app: App, trusted: Trusted) -> ImageProbe:
    return ImageProbe(trusted.source, app.state_dir, connect=connect)
