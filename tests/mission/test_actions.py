"""`uses:` steps: checkout built in, local composite actions, docker://, marketplace refused."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import pytest
from conftest import runner_cli

from runner.errors import InvalidInput
from runner.mission.actions import ActionKind, kind_of, load_composite
from runner.run.contexts import hash_files

ACTION = """\
name: greet
inputs:
  who: {description: whom, required: true}
  punctuation: {default: "!"}
outputs:
  line: {value: "${{ steps.say.outputs.line }}"}
runs:
  using: composite
  steps:
    - id: say
      shell: sh
      run: |
        echo "hello $INPUT_WHO${{ inputs.punctuation }}"
        echo "line=hello ${{ inputs.who }}" >> "$RUNNER_OUTPUT"
"""


@pytest.mark.parametrize(
    ("uses", "kind"),
    [
        ("actions/checkout@v4", ActionKind.CHECKOUT),
        ("Actions/Checkout@main", ActionKind.CHECKOUT),
        ("./actions/greet", ActionKind.LOCAL),
        ("docker://runner-base/busybox:latest", ActionKind.DOCKER),
        ("octo-org/tool@v1", ActionKind.MARKETPLACE),
        ("actions/upload-artifact@v4", ActionKind.UPLOAD_ARTIFACT),
        ("Actions/Download-Artifact@v4", ActionKind.DOWNLOAD_ARTIFACT),
        ("actions/upload-artifact/merge@v4", ActionKind.MARKETPLACE),
        ("actions/setup-python@v5", ActionKind.SETUP),
        ("dtolnay/rust-toolchain@stable", ActionKind.SETUP),
        ("actions/setup-python", ActionKind.MARKETPLACE),  # no ref: not a usable action
        ("step-security/harden-runner@v2", ActionKind.HARDEN_RUNNER),
    ],
)
def test_kinds(uses: str, kind: ActionKind) -> None:
    assert kind_of(uses) is kind


def test_composite_is_loaded_and_its_inputs_checked(tmp_path: Path) -> None:
    (tmp_path / "actions" / "greet").mkdir(parents=True)
    (tmp_path / "actions" / "greet" / "action.yml").write_text(ACTION)
    action = load_composite(tmp_path, "./actions/greet")
    assert [s.id for s in action.steps] == ["say"]
    assert action.inputs({"who": "ann"}) == {"who": "ann", "punctuation": "!"}
    with pytest.raises(InvalidInput, match=r"required input\(s\) who not given"):
        action.inputs({})
    with pytest.raises(InvalidInput, match=r"unknown input\(s\) nope"):
        action.inputs({"who": "x", "nope": "y"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (ACTION.replace("using: composite", "using: node20"), "runs.using: unallowed value node20"),
        (
            ACTION.replace("      shell: sh\n", "      uses: octo/x@v1\n"),
            r"runs.steps\[0\].uses: unknown field",
        ),
        (ACTION + "extra: 1\n", "extra: unknown field"),
    ],
)
def test_composite_that_cannot_run_is_refused(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "action.yml").write_text(text)
    with pytest.raises(InvalidInput, match=message):
        load_composite(tmp_path, "./a")


def test_composite_path_must_stay_in_the_repository(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="leaves the repository"):
        load_composite(tmp_path, "./../elsewhere")
    with pytest.raises(InvalidInput, match=r"no action\.yml"):
        load_composite(tmp_path, "./missing")


def test_hash_files_follows_github(tmp_path: Path) -> None:
    (tmp_path / "a.lock").write_bytes(b"one")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.lock").write_bytes(b"two")
    (tmp_path / "c.txt").write_bytes(b"three")
    outer = hashlib.sha256()
    for content in (b"one", b"two"):
        outer.update(hashlib.sha256(content).digest())
    assert hash_files(tmp_path, ("**/*.lock",)) == outer.hexdigest()
    only_b = hashlib.sha256(hashlib.sha256(b"two").digest()).hexdigest()
    assert hash_files(tmp_path, ("**/*.lock", "!a.lock")) == only_b
    assert hash_files(tmp_path, ("*.none",)) == ""


@pytest.mark.docker
def test_a_mission_using_every_kind_of_action(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".missions").mkdir(parents=True)
    (repo / "policies").mkdir()
    (repo / "actions" / "greet").mkdir(parents=True)
    (repo / "actions" / "greet" / "action.yml").write_text(ACTION)
    (repo / "data.txt").write_bytes(b"data\n")
    (repo / "policies" / "default.yml").write_text(
        "version: 1\nimages: [base]\ntools: [sh]\n"
        'uses: ["./actions/*", "docker://debian:bookworm-slim", "octo-org/tool@v1"]\n'
        "limits: {timeout-minutes: 5, memory: 128m, cpus: 1, pids: 32}\n"
    )
    (repo / ".missions" / "m.yml").write_text(
        textwrap.dedent(
            """\
            name: acts
            on: [push]
            jobs:
              use:
                steps:
                  - uses: actions/checkout@v4
                  - id: greet
                    uses: ./actions/greet
                    with: {who: ann}
                  - run: test "${{ steps.greet.outputs.line }}" = "hello ann"
                  - run: echo "hash=${{ hashFiles('data.txt') }}"
                  - uses: docker://debian:bookworm-slim  # cut down to the job's tools: sh
                    with: {args: sh -c 'echo from the image'}
              market:
                steps:
                  - uses: octo-org/tool@v1
            """
        )
    )
    done = runner_cli(repo, tmp_path / "state", "run", "--json")
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    use = result["jobs"]["use"]
    assert use["status"] == "success", use
    assert use["steps"][0]["reason"] == "built in: the workspace is the checkout"
    assert use["steps"][1]["outputs"] == {"line": "hello ann"}
    events = next((tmp_path / "state" / "runs").glob("*/events.jsonl")).read_text()
    assert "hello ann!" in events and "from the image" in events
    digest = hashlib.sha256(hashlib.sha256(b"data\n").digest()).hexdigest()
    assert f"hash={digest}" in events
    market = result["jobs"]["market"]["steps"][0]
    assert (
        market["status"] == "failure"
        and "vendor it as a local composite action" in (market["reason"])
    )
