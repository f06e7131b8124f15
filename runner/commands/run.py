"""`runner run`: validate, check the policy, then run each step in its own container."""

from __future__ import annotations

import os
from pathlib import Path

from runner.app import App
from runner.engine.docker.backend import DockerBackend, connect
from runner.errors import InvalidInput
from runner.findings import Finding
from runner.mission.loader import discover_missions, load_mission
from runner.mission.model import Mission
from runner.policy.loader import load_policy
from runner.run.job_images import resolver
from runner.run.session import RunOptions, execute
from runner.secrets.redact import Redactor
from runner.secrets.sources import resolve_secrets


def _select(app: App, paths: tuple[Path, ...], event: str) -> list[tuple[Mission, list[Finding]]]:
    if paths:
        return [load_mission(path) for path in paths]
    found = discover_missions(app.root)
    if not found:
        raise InvalidInput(
            "no missions in .missions/ (name a file: runner run PATH)",
            hint="missions are .missions/*.yml files in GitHub Actions syntax",
        )
    missions = [load_mission(path) for path in found]
    chosen = [(m, w) for m, w in missions if event in m.on]
    if not chosen:
        raise InvalidInput(f"no mission in .missions/ runs on event {event!r} (see their `on:`)")
    return chosen


def _engine(app: App) -> DockerBackend:
    """The engine, with runner-init ready for the steps (built the first time, shown)."""
    backend = connect()
    try:
        backend.prepare_init(app.out.line)
    except BaseException:
        backend.close()
        raise
    return backend


def main(
    app: App,
    missions: tuple[Path, ...],
    *,
    event: str,
    jobs: tuple[str, ...],
    inputs: dict[str, str],
    secrets: tuple[str, ...],
    secret_file: Path | None,
    policy: Path | None,
    max_parallel: int | None,
    retry_seed: int | None,
    junit: Path | None,
) -> int:
    redactor = Redactor()
    app.out.redactor = redactor
    values = resolve_secrets(secrets, secret_file, os.environ)
    for value in values.values():
        redactor.add(value)
    chosen = _select(app, missions, event)
    for mission, _ in chosen:
        unknown = [j for j in jobs if j not in mission.jobs]
        if unknown:
            raise InvalidInput(
                f"{mission.path}: no job named {', '.join(unknown)} "
                f"(jobs: {', '.join(mission.jobs)})"
            )
    rules = load_policy(policy, app.root)
    options = RunOptions(
        event=event,
        jobs=jobs,
        inputs=inputs,
        secrets=values,
        max_parallel=max_parallel,
        retry_seed=retry_seed,
        junit=junit,
    )
    for mission, warnings in chosen:
        execute(
            app,
            mission,
            rules,
            options,
            warnings=warnings,
            redactor=redactor,
            connect=lambda: _engine(app),
            resolve_factory=lambda backend, m, builds: resolver(
                backend, m, app.root, app.state_dir, builds
            ),
        )
    return 0
