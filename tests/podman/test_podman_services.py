"""On Podman a job with `services:` is refused before anything runs (a service's name
would be served by netavark's DNS server, on the host runner keeps job networks from)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import runner_cli
from test_podman_runs import POLICY, labelled

pytestmark = [pytest.mark.docker, pytest.mark.podman]


def test_a_job_with_services_is_refused_before_anything_runs(tmp_path: Path, podman: Any) -> None:
    repo, state = tmp_path / "repo", tmp_path / "state"
    (repo / ".missions").mkdir(parents=True)
    (repo / "policies").mkdir()
    (repo / "policies" / "default.yml").write_text(
        POLICY
        + "rules:\n  - name: services\n    match: {path: .missions/m.yml, job: test}\n"
        + "    allow: {tools-all: true}\n"
    )
    (repo / ".missions" / "m.yml").write_text(
        textwrap.dedent(
            """\
            name: m
            on: [push]
            jobs:
              test:
                services:
                  db: {image: base, command: [sleep, "60"]}
                steps: [{run: echo the step ran}]
            """
        )
    )
    done = runner_cli(repo, state, "run")
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert "the step ran" not in done.stdout
    assert done.stderr.splitlines()[0] == (
        "runner: error: refused: job 'test' has services, but services are not supported on "
        "Podman yet: a service's name would be served by netavark's DNS server, which runs on "
        "the host, and runner keeps every job's network away from the host"
    )
    assert labelled(podman, state) == []
