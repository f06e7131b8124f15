"""Docker SDK and requests errors, translated where they happen (`docker_errors`).

An engine that does not answer is `EngineUnavailable` (exit 4) with how to start one; a
missing image is `InvalidInput` (no image is ever pulled behind the user's back); any
other refusal is a `RunnerError` with the engine's own explanation (cut at
`EXPLAIN_MAX_CHARS`: an engine may quote a whole request back). Nothing outside
`runner.engine.docker` sees a `docker.errors` exception.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker.errors
import requests

from runner.engine.docker.dialect import PODMAN_HOST
from runner.errors import EngineUnavailable, InvalidInput, RunnerError

START_HINT = (
    "start one with `scripts/ensure-docker.sh` (or `sudo systemctl start docker`), "
    "or point DOCKER_HOST at a running engine (Podman's: `scripts/ensure-podman.sh`, "
    f"DOCKER_HOST={PODMAN_HOST})"
)
EXPLAIN_MAX_CHARS = 2000  # an engine may quote a whole request back (a 9.5 KB profile)


@contextlib.contextmanager
def docker_errors(what: str) -> Iterator[None]:
    """Translate Docker SDK / requests errors raised while doing `what`."""
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise InvalidInput(
            f"{what}: image not found: {explain(exc)}",
            hint="build it with `runner images build` (no image is pulled)",
        ) from exc
    except docker.errors.APIError as exc:
        raise RunnerError(f"{what}: the Docker engine refused: {explain(exc)}") from exc
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise EngineUnavailable(
            f"{what}: no Docker engine answers ({explain(exc)})", hint=START_HINT
        ) from exc
    except OSError as exc:
        raise EngineUnavailable(
            f"{what}: no Docker engine answers ({exc})", hint=START_HINT
        ) from exc


def explain(exc: Exception) -> str:
    """The engine's own words for an error, else the exception's text or class."""
    explanation = getattr(exc, "explanation", None)
    text = str(explanation or exc).strip()
    if len(text) > EXPLAIN_MAX_CHARS:
        cut = len(text) - EXPLAIN_MAX_CHARS
        text = f"{text[:EXPLAIN_MAX_CHARS]}... ({cut} more characters)"
    return text or type(exc).__name__


def missing_ok(exc: docker.errors.APIError) -> bool:
    """404, or a conflict that means "already being removed" / "not running"."""
    if exc.status_code == 404:
        return True
    text = explain(exc).lower()
    return exc.status_code == 409 and ("in progress" in text or "not running" in text)


def not_running(exc: docker.errors.APIError) -> bool:
    """The engine refused to signal a container that is not running: Docker's 409, or
    Podman's 500 "... is in state exited: container state improper"."""
    text = explain(exc).lower()
    if exc.status_code == 409:
        return "not running" in text
    return exc.status_code == 500 and "container state improper" in text
