"""The ledger's entry types are declared once (runner.audit.entries): the ledger refuses
anything else, and everything runner writes is declared, end to end."""

from __future__ import annotations

import subprocess
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import runner_cli
from declared import run_started, step_finished

from runner.audit import canonical, entries
from runner.audit.entries import ENVELOPE, Entry, KeyRotated, RunFinished, RunStarted
from runner.audit.keys import Signer, load_signer
from runner.audit.ledger import ENTRIES, Ledger, revoke_key


@pytest.fixture
def signer() -> Signer:
    return Signer.generate()


def stored(state: Path) -> list[dict[str, Any]]:
    path = state / "ledger" / ENTRIES
    return [canonical.loads(line) for line in path.read_bytes().splitlines()]


def without(fields: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k != name}


@pytest.mark.parametrize(
    ("type_", "fields", "message"),
    [
        ("step.finishd", step_finished(0), "'step.finishd' is not declared"),
        (
            "step.finished",
            step_finished(0) | {"log_digest": "ab"},
            r"undeclared fields \['log_digest'\]",
        ),
        ("step.finished", without(step_finished(0), "job"), r"lacks required fields \['job'\]"),
        ("step.finished", step_finished(0) | {"step": "0"}, "'step' is str, not int"),
        ("step.finished", step_finished(0) | {"attempts": True}, "'attempts' is bool, not int"),
        ("step.finished", step_finished(0) | {"reason": None}, "'reason' is NoneType, not str"),
        ("run.started", run_started() | {"commit": None}, "'commit' is NoneType"),
    ],
)
def test_append_refuses_what_is_not_declared_and_writes_nothing(
    tmp_path: Path, signer: Signer, type_: str, fields: dict[str, Any], message: str
) -> None:
    state = tmp_path / "state"
    with Ledger.open(state, signer=signer) as led:
        with pytest.raises(TypeError, match=message):
            led.append(type_, "r", fields)
        assert led.size == 0
    assert stored(state) == []


def test_optional_and_nullable_fields_may_be_left_out_or_null(
    tmp_path: Path, signer: Signer
) -> None:
    state = tmp_path / "state"
    with Ledger.open(state, signer=signer) as led:
        led.append("run.finished", "r", {"result": "denied", "reason": "denied by policy"})
        led.append(
            "step.finished", "r", without(step_finished(0), "log_sha256") | {"exit_code": None}
        )
    assert [e["type"] for e in stored(state)] == ["run.finished", "step.finished"]


def test_reading_a_field_goes_through_its_type() -> None:
    started = Entry({"type": "run.started", "seq": 3, "commit": "abc", "event": 7})
    assert started.get(RunStarted.commit) == "abc"
    assert started.get(RunStarted.event) is None  # of another type: a tampered entry
    assert started.get(RunStarted.invoker) is None  # absent
    assert (started.seq, started.ts) == (3, None)
    with pytest.raises(TypeError, match=r"result of run\.finished"):
        started.get(RunFinished.result)
    assert Entry({"type": "run.started", "seq": True}).seq is None


def test_no_declaration_uses_an_envelope_name_or_a_malformed_type() -> None:
    for declared in entries.all_types():
        assert not ENVELOPE & declared.FIELDS.keys()
        assert entries.TYPE_NAME.fullmatch(declared.TYPE)
    with pytest.raises(TypeError, match="declared twice"):
        type("Again", (entries.Declared,), {"TYPE": KeyRotated.TYPE})


MISSION = """\
name: flow
on: [push]
jobs:
  make:
    tools: [sh]
    produces:
      - {name: report, path: report.txt, type: file}
    steps:
      - uses: actions/cache@v4  # saved by the first run, restored by the second
        with: {path: report.txt, key: report}
      - run: echo done > report.txt
      - if: failure()
        run: echo never
  use:
    needs: [make]
    consumes: [report]
    tools: [sh, cat]
    services:
      side: {image: base, command: [sleep, "300"]}
    steps:
      - run: cat report.txt
  never:
    needs: [use]
    if: failure()
    steps: [{run: echo no}]
verify:
  - name: the report was used
    check: jobs.use.result == 'success'
"""

DENIED = """\
name: denied
on: [push]
jobs:
  net:
    permissions: {network: egress}
    steps: [{run: echo hi}]
"""


@pytest.mark.docker
def test_every_entry_runner_writes_is_declared_and_every_declared_type_is_written(
    tmp_path: Path,
) -> None:
    repo, state = tmp_path / "repo", tmp_path / "state"
    (repo / ".missions").mkdir(parents=True)
    (repo / "policies").mkdir()
    (repo / ".missions" / "flow.yml").write_text(MISSION)
    (repo / ".missions" / "denied.yml").write_text(DENIED)
    stamp = f"runner.test={uuid.uuid4()}"  # a fresh image: `images build` builds it
    (repo / "containers" / "stamp").mkdir(parents=True)
    (repo / "containers" / "stamp" / "Dockerfile").write_text(f"FROM scratch\nLABEL {stamp}\n")
    (repo / "policies" / "default.yml").write_text(
        textwrap.dedent("""\
            version: 1
            images: [base]
            tools: [sh, cat]
            limits: {timeout-minutes: 10, memory: 256m, cpus: 1, pids: 64}
            rules:
              - name: services-run-whole
                match: {path: .missions/flow.yml, job: use}
                allow: {tools-all: true}
            """)
    )

    def cli(*args: str, code: int = 0) -> None:
        done = runner_cli(repo, state, *args)
        assert done.returncode == code, done.stderr
        assert "Traceback" not in done.stderr

    cli("run", ".missions/flow.yml")
    cli("run", ".missions/flow.yml")
    cli("run", ".missions/denied.yml", code=3)
    cli("keys", "rotate")
    current = load_signer(state, repo, create=False, say=print)
    with Ledger.open(state, signer=current) as led:
        revoke_key(led, Signer.generate().public, "lost", current)
    with (state / "ledger" / ENTRIES).open("ab") as torn:
        torn.write(b'{"kid":"x","log":"runn')  # a crash mid-write
    cli("audit", "checkpoint")  # opening the ledger recovers the torn tail
    cli("gc", "--keep", "0", "--cache-days", "0")  # evicts the cache the runs used
    try:
        cli("images", "build")
    finally:
        for image in subprocess.run(
            ["docker", "image", "ls", "-q", "--filter", f"label={stamp}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split():
            subprocess.run(["docker", "rmi", "-f", image], capture_output=True, check=False)

    written = stored(state)
    for raw in written:
        entry = Entry(raw)
        assert entry.type is not None
        entries.check(entry.type, entry.fields())  # raises when undeclared
    # the engine's own entries are written by Kubernetes runs only: tests/kubernetes
    # (test_audit_verify_passes_on_the_ledger_of_a_kubernetes_run) checks that they are
    kubernetes_only = {"engine.connected", "step.placed"}
    assert {e["type"] for e in written} == {t.TYPE for t in entries.all_types()} - kubernetes_only
