from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from conftest import invoke
from declared import step_started

from runner.audit import canonical, provenance
from runner.audit.keys import Signer, TrustedKeys, load_signer
from runner.audit.ledger import Ledger
from runner.errors import InvalidInput, VerificationFailed

IMAGE_A = "sha256:" + "a" * 64
IMAGE_B = "sha256:" + "b" * 64
ARTIFACT = "c" * 64


def record_run(state: Path, signer: Signer, run_id: str, *, finish: bool = True) -> None:
    with Ledger.open(state, signer=signer) as led:
        led.append(
            "run.started",
            run_id,
            {
                "mission": "ci",
                "mission_path": ".missions/ci.yml",
                "mission_digest": "d" * 64,
                "policy_digest": "e" * 64,
                "event": "push",
                "commit": "0123456789abcdef0123456789abcdef01234567",
                "invoker": "alice",
                "runner_version": "0.1.0",
            },
        )
        for step, digest in ((0, IMAGE_A), (1, IMAGE_B), (2, IMAGE_A)):
            led.append(
                "step.started",
                run_id,
                step_started(step) | {"image": f"img{step % 2}", "image_digest": digest},
            )
        led.append(
            "artifact.stored",
            run_id,
            {
                "job": "build",
                "name": f"{run_id}-dist",
                "path": "dist",
                "sha256": ARTIFACT,
                "size": 3,
            },
        )
        if finish:
            finished = {"result": "success", "reason": "", "events_sha256": "f" * 64}
            led.append("run.finished", run_id, finished)


@pytest.fixture
def signer() -> Signer:
    return Signer.generate()


def test_pae_matches_the_dsse_specification() -> None:
    # the worked example of the DSSE protocol document
    assert (
        provenance.pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_export_is_a_signed_slsa_statement_of_that_run_only(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "state"
    record_run(state, signer, "run-1")
    record_run(state, signer, "run-2")
    envelope = provenance.export(state / "ledger", "run-1", signer)
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert envelope["signatures"][0]["keyid"] == signer.public.key_id
    statement = provenance.open_envelope(envelope, TrustedKeys([signer.public]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert statement["subject"] == [{"name": "run-1-dist", "digest": {"sha256": ARTIFACT}}]
    build = statement["predicate"]["buildDefinition"]
    deps = build["resolvedDependencies"]
    assert {
        "uri": "git+source",
        "digest": {"gitCommit": "0123456789abcdef0123456789abcdef01234567"},
    } in deps
    assert {"uri": ".missions/ci.yml", "digest": {"sha256": "d" * 64}} in deps
    images = [d for d in deps if d["uri"].startswith("docker-image://")]
    assert images == [
        {"uri": "docker-image://img0", "digest": {"sha256": "a" * 64}},
        {"uri": "docker-image://img1", "digest": {"sha256": "b" * 64}},
    ]
    details = statement["predicate"]["runDetails"]
    assert details["metadata"]["invocationId"] == "run-1"
    assert details["metadata"]["startedOn"].endswith("Z")
    assert build["externalParameters"] == {"mission": "ci", "event": "push"}


def test_a_changed_payload_or_an_untrusted_signer_fails(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "state"
    record_run(state, signer, "run-1")
    envelope = provenance.export(state / "ledger", "run-1", signer)
    statement = canonical.loads(base64.b64decode(envelope["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    forged = dict(envelope, payload=base64.b64encode(canonical.dumps(statement)).decode())
    with pytest.raises(VerificationFailed, match="no trusted key"):
        provenance.open_envelope(forged, TrustedKeys([signer.public]))
    with pytest.raises(VerificationFailed, match="no trusted key"):
        provenance.open_envelope(envelope, TrustedKeys([Signer.generate().public]))


def test_unknown_or_unfinished_runs_are_refused(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "state"
    record_run(state, signer, "run-1", finish=False)
    with pytest.raises(InvalidInput, match="has not finished"):
        provenance.export(state / "ledger", "run-1", signer)
    with pytest.raises(InvalidInput, match="no run 'nope'"):
        provenance.export(state / "ledger", "nope", signer)


def test_cli_export_writes_the_envelope(in_tmp: Path) -> None:
    state = in_tmp / ".runner"
    signer = load_signer(state, in_tmp, create=True, say=lambda _: None)
    record_run(state, signer, "run-1")
    target = in_tmp / "prov.json"
    result = invoke(state, "audit", "export", "run-1", "--format", "slsa", "-o", str(target))
    assert result.code == 0 and "wrote SLSA provenance" in result.err
    envelope = json.loads(target.read_text())
    statement = provenance.open_envelope(envelope, TrustedKeys([signer.public]))
    assert statement["predicate"]["runDetails"]["metadata"]["invocationId"] == "run-1"
