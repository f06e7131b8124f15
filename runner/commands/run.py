"""`runner run`: validate, check the policy, then run each step in its own container.

The engine is Docker's unless `runner.cli` hands over another's connector (`--backend
kubernetes`: `runner.commands.kubernetes_engine`), which receives the trusted policy (its
`accept:` choices shape what that engine may do).

The policy, the tool catalog and the image definitions come from where the invoker says
(`--trusted-ref`, `--policy`, `--catalog`; runner.trusted); rules match on each mission's
file path, `--event` and `--ref` (default: git's HEAD). Before any container, every
allowed job's tools are looked up in its image when the engine has it
(runner.policy.tools): a tool it lacks stops the run (exit 2) with its place in the
mission.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from runner.app import App, Trust
from runner.commands.probe import image_probe
from runner.engine.backend import Backend
from runner.engine.docker.backend import DockerBackend, connect
from runner.errors import InvalidInput, InvalidMission, StorageFailed
from runner.findings import Finding, errors_in
from runner.mission.loader import discover_missions, load_mission, unique_names
from runner.mission.model import Mission
from runner.policy.decisions import decide
from runner.policy.model import Policy
from runner.policy.tools import tool_findings
from runner.policy.trust import Trusted, load_trusted
from runner.run.job_images import resolver
from runner.run.session import RunOptions, execute
from runner.secrets.redact import Redactor
from runner.secrets.sources import resolve_secrets
from runner.trusted import invoker_ref


def _select(app: App, paths: tuple[Path, ...], event: str) -> list[tuple[Mission, list[Finding]]]:
    if paths:
        return [load_mission(path, root=app.root) for path in paths]
    found = discover_missions(app.root)
    if not found:
        raise InvalidInput(
            "no missions in .missions/ (name a file: runner run PATH)",
            hint="missions are .missions/*.yml files in GitHub Actions syntax",
        )
    missions = [load_mission(path, root=app.root) for path in found]
    duplicates = unique_names(m for m, _ in missions)
    if duplicates:
        raise InvalidMission(f"{len(duplicates)} mission name(s) used twice", duplicates)
    chosen = [(m, w) for m, w in missions if event in m.on]
    if not chosen:
        raise InvalidInput(
            f"no mission in .missions/ runs on event {event!r}", hint=_events(missions)
        )
    return chosen


def _events(missions: list[tuple[Mission, list[Finding]]]) -> str:
    """What the missions do declare, and how to run them."""
    declared: dict[str, list[str]] = {}
    for mission, _ in missions:
        for name in mission.on:
            declared.setdefault(name, []).append(mission.path)
    if not declared:
        return "no mission declares an event (`on:`): name one, `runner run .missions/NAME.yml`"
    listed = "; ".join(f"{name}: {', '.join(paths)}" for name, paths in sorted(declared.items()))
    first = sorted(declared)[0]
    return f"the missions declare {listed}; run `runner run --event {first}`, or name a mission"


def _check_tools(
    app: App, chosen: list[tuple[Mission, list[Finding]]], trusted: Trusted, options: RunOptions
) -> None:
    """InvalidMission (exit 2) naming each allowed tool a job's image lacks."""
    probe = image_probe(app, trusted)
    try:
        for mission, warnings in chosen:
            decisions = decide(
                mission, trusted.policy, warnings, event=options.event, ref=options.ref or ""
            )
            try:
                found = tool_findings(mission, decisions, trusted.catalog, probe, every_job=True)
            except StorageFailed:
                # a full state dir: the run meets it again exporting the same image, once it
                # is recorded in the ledger, and crashes cleanly there (SPEC 7)
                return
            errors = errors_in(found)
            if errors:
                raise InvalidMission(
                    f"{mission.path}: {len(errors)} tool(s) the jobs' images do not have",
                    errors,
                )
    finally:
        probe.close()


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
    ref: str | None,
    jobs: tuple[str, ...],
    inputs: dict[str, str],
    secrets: tuple[str, ...],
    secret_file: Path | None,
    trust: Trust,
    max_parallel: int | None,
    retry_seed: int | None,
    junit: Path | None,
    connector: Callable[[App, Policy | None], Backend] | None = None,
) -> int:
    """`connector`: the engine chosen with `--backend` (None: Docker, the default)."""
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
    trusted = load_trusted(app.root, ref=trust.ref, policy=trust.policy, catalog=trust.catalog)
    options = RunOptions(
        event=event,
        ref=invoker_ref(app.root, ref),
        trusted=tuple(trusted.origins()),
        catalog_digest=trusted.catalog.full_digest,
        jobs=jobs,
        inputs=inputs,
        secrets=values,
        max_parallel=max_parallel,
        retry_seed=retry_seed,
        junit=junit,
    )
    _check_tools(app, chosen, trusted, options)
    for mission, warnings in chosen:
        execute(
            app,
            mission,
            trusted.policy,
            options,
            warnings=warnings,
            redactor=redactor,
            connect=(
                (lambda: connector(app, trusted.policy))
                if connector is not None
                else (lambda: _engine(app))
            ),
            resolve_factory=lambda backend, m, builds: resolver(
                backend, m, trusted.source, app.state_dir, builds, trusted.catalog
            ),
        )
    return 0
