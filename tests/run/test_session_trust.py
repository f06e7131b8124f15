"""What a run records and refuses at its edges: the state dir where steps cannot read it,
decisions recorded compactly, the trusted inputs and the ref in `run.started`, a finish
entry whatever error ends a started run, and hashFiles() over a hostile tree."""

from __future__ import annotations

import io
import json
import os
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import invoke

from runner.app import App
from runner.audit import canonical
from runner.audit.ledger import ENTRIES
from runner.engine.backend import Backend
from runner.errors import EngineUnavailable, PolicyDenied
from runner.mission.loader import parse_mission
from runner.output import Output
from runner.policy.loader import load_policy
from runner.run.contexts import HashFilesError, hash_files
from runner.run.session import RunOptions, execute
from runner.run.snapshot import RepoSnapshot
from runner.run.workspace import repo_files
from runner.secrets.redact import Redactor
from runner.trusted import Origin

MISSION = """\
name: m
on: [push]
jobs:
  j:
    steps: [{run: echo hi}]
"""


def entries(state: Path) -> list[dict[str, Any]]:
    lines = (state / "ledger" / ENTRIES).read_bytes().splitlines()
    return [canonical.loads(line) for line in lines]


def app_in(state: Path) -> App:
    return App(state_dir=state, out=Output(stdout=io.StringIO(), color="never"))


def start(
    repo: Path, state: Path, mission_text: str, policy_text: str, connect: Any, **options: Any
) -> None:
    (repo / "policies").mkdir(parents=True, exist_ok=True)
    (repo / "policies" / "default.yml").write_text(textwrap.dedent(policy_text))
    mission, warnings = parse_mission(textwrap.dedent(mission_text).encode(), ".missions/m.yml")
    execute(
        app_in(state),
        mission,
        load_policy(None, repo),
        RunOptions(event="push", **options),
        warnings=warnings,
        redactor=Redactor(),
        connect=connect,
        resolve_factory=lambda backend, m: lambda instance, grants: None,  # type: ignore[arg-type,return-value]
    )


# -- the state dir ----------------------------------------------------------------------


def test_a_state_dir_inside_the_repository_is_refused(in_tmp: Path) -> None:
    (in_tmp / ".missions").mkdir()
    (in_tmp / ".missions" / "m.yml").write_text(MISSION)
    done = invoke(in_tmp / "ci-cache", "run")
    assert done.code == 2
    assert done.err.startswith(
        f"runner: error: the state dir {in_tmp / 'ci-cache'} is inside the repository "
        "(ci-cache): every workspace copies the repository, so steps could read the signing "
        "key and the ledger"
    )
    assert not (in_tmp / "ci-cache").exists()
    assert invoke(in_tmp / "ci-cache", "keys", "init").code == 2


def test_a_committed_runner_symlink_is_refused_and_nothing_is_written(in_tmp: Path) -> None:
    (in_tmp / "ci-cache").mkdir()
    os.symlink("ci-cache", in_tmp / ".runner")
    done = invoke(in_tmp / ".runner", "keys", "init")
    assert done.code == 2
    assert ".runner in the repository is a symlink (to 'ci-cache')" in done.err
    assert list((in_tmp / "ci-cache").iterdir()) == []
    os.unlink(in_tmp / ".runner")
    (in_tmp / ".runner").mkdir()
    os.symlink("../ci-cache", in_tmp / ".runner" / "keys")
    done = invoke(in_tmp / ".runner", "keys", "init")
    assert done.code == 2 and ".runner/keys is a symlink" in done.err
    assert list((in_tmp / "ci-cache").iterdir()) == []


def test_the_real_runner_dir_is_the_state_dir_a_repository_may_hold(in_tmp: Path) -> None:
    assert invoke(in_tmp / ".runner", "keys", "init").code == 0
    assert any((in_tmp / ".runner" / "keys").iterdir())


def test_a_workspace_copy_never_holds_the_state_dir(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "cache").mkdir(parents=True)
    (repo / "cache" / "key.pem").write_text("private")
    (repo / "src.txt").write_text("source")
    app = App(state_dir=repo / "cache", out=Output())
    os.chdir(repo)
    assert app.private_paths() == ("cache",)
    assert repo_files(repo, exclude=app.private_paths()) == ["src.txt"]
    snapshot = RepoSnapshot(repo, exclude=app.private_paths())
    assert snapshot.files == 1
    assert App(state_dir=tmp_path / "state", out=Output()).private_paths() == ()


# -- the ledger -------------------------------------------------------------------------


def test_a_denied_mission_adds_kilobytes_not_megabytes(in_tmp: Path, tmp_path: Path) -> None:
    image = "registry.invalid/" + "x" * 4000 + ":1"
    values = ", ".join(str(i) for i in range(256))
    mission = (
        f"name: m\njobs:\n  j:\n    container: {image}\n"
        f"    strategy: {{matrix: {{n: [{values}]}}}}\n"
        "    permissions: {secrets: [A, B, C, D]}\n    steps: [{run: x}]\n"
    )
    state = tmp_path / "state"
    with pytest.raises(PolicyDenied):
        start(in_tmp, state, mission, "version: 1\ntools: [sh]\n", connect=None)
    size = (state / "ledger" / ENTRIES).stat().st_size
    assert size < 20_000, size  # 256 instances x 6 requests, each recorded in full: ~3 MB
    decision = next(e for e in entries(state) if e["type"] == "policy.decision")
    assert decision["counts"] == {"allowed": 256, "denied": 1280}
    assert len(decision["decisions_sha256"]) == 64
    assert [(d["capability"], d["instances"]) for d in decision["decisions"]] == [
        ("image", 256),
        ("secret", 256),
        ("secret", 256),
        ("secret", 256),
        ("secret", 256),
    ]
    assert decision["decisions"][0]["value"].endswith("... (4019 characters)")
    assert decision["grants"] == [
        {"capability": "tool", "value": "sh", "rule": "base", "instances": 256}
    ]


def test_run_started_records_the_ref_the_catalog_and_the_trusted_origins(
    in_tmp: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    origin = Origin("policy", "ref", "policies/default.yml", "main", "c" * 40, "d" * 64, True)
    with pytest.raises(PolicyDenied):
        start(
            in_tmp,
            state,
            MISSION,
            "version: 1\n",
            connect=None,
            ref="refs/heads/main",
            trusted=(origin,),
            catalog_digest="e" * 64,
        )
    started = entries(state)[0]
    assert started["type"] == "run.started"
    assert (started["ref"], started["catalog_digest"]) == ("refs/heads/main", "e" * 64)
    assert started["trusted"] == [origin.serialize()]


@pytest.mark.parametrize(
    ("error", "result"),
    [(RuntimeError("boom"), "crashed"), (EngineUnavailable("no engine"), "error")],
)
def test_a_started_run_that_errors_still_finishes_in_the_ledger(
    in_tmp: Path, tmp_path: Path, error: Exception, result: str
) -> None:
    state = tmp_path / "state"

    def connect() -> Backend:
        raise error

    with pytest.raises(type(error)):
        start(in_tmp, state, MISSION, "version: 1\nimages: [base]\ntools: [sh]\n", connect)
    last = entries(state)[-1]
    assert (last["type"], last["result"]) == ("run.finished", result)
    assert last["reason"] == f"{type(error).__name__}: {error}"
    checkpoints = (state / "ledger" / "checkpoints").read_text()
    assert checkpoints.count("\n\n") >= 1  # sealed


# -- hashFiles --------------------------------------------------------------------------


def test_hash_files_refuses_what_leaves_or_blocks_and_skips_directories(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "dir.lock").mkdir(parents=True)
    (repo / "a.lock").write_text("a")
    (tmp_path / "canary").write_text("host")
    plain = hash_files(repo, ("**/*.lock",))
    assert plain and plain == hash_files(repo, ("a.lock",))  # the directory is skipped
    cases = {
        "out.lock": lambda p: os.symlink(tmp_path / "canary", p),
        "fifo.lock": os.mkfifo,
        "zero.lock": lambda p: os.mknod(p, 0o600 | 0o020000, os.makedev(1, 5)),
        "hard.lock": lambda p: os.link(tmp_path / "canary", p),
    }
    for name, make in cases.items():
        make(repo / name)
        started = time.monotonic()
        with pytest.raises(HashFilesError) as caught:
            hash_files(repo, ("**/*.lock",))
        assert time.monotonic() - started < 2
        assert str(caught.value).startswith(f"hashFiles(): {name}: ")
        os.unlink(repo / name)
    assert hash_files(repo, ("**/*.lock",)) == plain


def test_hash_files_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    with open(repo / "big.bin", "wb") as handle:
        handle.truncate(10 * 1024**3)  # sparse: costs nothing unless read
    started = time.monotonic()
    with pytest.raises(HashFilesError, match="more than 100000 or 1073741824 bytes"):
        hash_files(repo, ("*.bin",))
    assert time.monotonic() - started < 2


def test_policy_json_is_the_same_after_a_round_trip(tmp_path: Path) -> None:
    """Origins are plain JSON (the ledger's canonical form has no floats)."""
    origin = Origin("catalog", "working-tree", "containers/tools.yml", digest="a" * 64)
    assert canonical.loads(canonical.dumps(origin.serialize())) == origin.serialize()
    assert json.loads(json.dumps(origin.serialize())) == origin.serialize()
