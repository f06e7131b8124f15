from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import invoke
from declared import gc_pruned, step_finished

from runner.audit import canonical, merkle
from runner.audit.keys import Signer, load_signer
from runner.audit.ledger import ENTRIES, Ledger

RUNNER = Path(sys.executable).parent / "runner"


def signer_of(repo: Path) -> Signer:
    return load_signer(repo / ".runner", repo, create=False, say=print)


def fill(repo: Path, count: int, run_id: str = "r1") -> None:
    with Ledger.open(repo / ".runner", signer=signer_of(repo)) as led:
        for i in range(count):
            led.append("step.finished", run_id, step_finished(i))


@pytest.fixture
def repo(in_tmp: Path) -> Path:
    assert invoke(in_tmp / ".runner", "keys", "init").code == 0
    return in_tmp


def test_keys_init_makes_a_key_once(in_tmp: Path) -> None:
    first = invoke(in_tmp / ".runner", "keys", "init")
    assert first.code == 0 and "made signing key" in first.out
    pubs = list((in_tmp / "policies" / "keys").glob("*.pub"))
    assert len(pubs) == 1
    second = invoke(in_tmp / ".runner", "--json", "keys", "init")
    document = second.json()
    assert second.code == 0 and isinstance(document, dict) and document["created"] is False
    assert list((in_tmp / "policies" / "keys").glob("*.pub")) == pubs


def test_verify_without_a_ledger_proves_nothing(in_tmp: Path) -> None:
    result = invoke(in_tmp / ".runner", "audit", "verify")
    assert result.code == 1 and "verifying nothing proves nothing" in result.err
    as_json = invoke(in_tmp / ".runner", "audit", "verify", "--json")
    assert as_json.code == 1 and as_json.json()["ok"] is False  # type: ignore[index]


def test_verify_intact_then_tampered(repo: Path) -> None:
    fill(repo, 5)
    intact = invoke(repo / ".runner", "audit", "verify")
    assert intact.code == 0
    assert "intact" in intact.out and "UNANCHORED" in intact.out
    assert "could rewrite or truncate the whole ledger" in intact.out
    path = repo / ".runner" / "ledger" / ENTRIES
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"step":2', b'"step":7')
    path.write_bytes(b"".join(lines))
    tampered = invoke(repo / ".runner", "audit", "verify", "--json")
    assert tampered.code == 1
    document = tampered.json()
    assert isinstance(document, dict) and document["ok"] is False
    chain = next(f for f in document["findings"] if f["code"] == "CHAIN_BREAK")
    assert chain["seq"] == 3 and chain["offset"] == len(lines[0] + lines[1] + lines[2])
    assert chain["severity"] == "error"
    human = invoke(repo / ".runner", "audit", "verify")
    assert human.code == 1 and "TAMPERED" in human.out


def test_checkpoint_export_then_verify_against_the_anchor(repo: Path) -> None:
    fill(repo, 3)
    anchor = repo / "anchor.note"
    exported = invoke(repo / ".runner", "audit", "checkpoint", "--export", str(anchor))
    assert exported.code == 0 and anchor.read_text().splitlines()[1] == "3"
    fill(repo, 2)
    result = invoke(repo / ".runner", "audit", "verify", "--anchor", str(anchor), "--json")
    document = result.json()
    assert result.code == 0 and isinstance(document, dict)
    assert document["anchored"] is True and document["findings"] == []
    path = repo / ".runner" / "ledger" / ENTRIES
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:2]))
    (repo / ".runner" / "ledger" / "checkpoints").unlink()
    truncated = invoke(repo / ".runner", "audit", "verify", "--anchor", str(anchor), "--json")
    assert truncated.code == 1
    assert "TRUNCATED" in [f["code"] for f in truncated.json()["findings"]]  # type: ignore[index]


def test_checkpoint_needs_a_key(in_tmp: Path) -> None:
    with Ledger.open(in_tmp / ".runner", signer=None) as led:
        led.append("gc.pruned", None, gc_pruned())
    result = invoke(in_tmp / ".runner", "audit", "checkpoint")
    assert result.code == 2 and "no signing key" in result.err


def test_show_filters_by_run(repo: Path) -> None:
    fill(repo, 2, "r1")
    fill(repo, 1, "r2")
    shown = invoke(repo / ".runner", "audit", "show", "--run", "r2", "--json").json()
    assert isinstance(shown, list) and [e["run_id"] for e in shown] == ["r2"]
    human = invoke(repo / ".runner", "audit", "show")
    assert human.code == 0 and len(human.out.splitlines()) == 3 and "step.finished" in human.out


def test_prove_prints_a_proof_that_verifies(repo: Path) -> None:
    fill(repo, 7)
    result = invoke(repo / ".runner", "audit", "prove", "4", "--json")
    assert result.code == 0
    proof = result.json()
    assert isinstance(proof, dict) and proof["size"] == 7 and proof["entry"]["step"] == 4
    lines = (repo / ".runner" / "ledger" / ENTRIES).read_bytes().splitlines()
    leaf = merkle.leaf_hash(lines[4])
    root = merkle.root_of(merkle.leaf_hash(line) for line in lines)
    assert proof["leaf"] == leaf.hex()
    merkle.verify_inclusion(4, 7, leaf, [bytes.fromhex(h) for h in proof["proof"]], root)
    beyond = invoke(repo / ".runner", "audit", "prove", "7")
    assert beyond.code == 2 and "not covered" in beyond.err


def test_prove_refuses_an_entry_changed_since_the_checkpoint(repo: Path) -> None:
    fill(repo, 4)
    path = repo / ".runner" / "ledger" / ENTRIES
    path.write_bytes(path.read_bytes().replace(b'"step":1', b'"step":9'))
    result = invoke(repo / ".runner", "audit", "prove", "1")
    assert result.code == 1 and "not provably in the signed checkpoint" in result.err


def test_rotate_records_the_new_key_signed_by_both(repo: Path) -> None:
    fill(repo, 2)
    old = signer_of(repo)
    result = invoke(repo / ".runner", "keys", "rotate", "--json")
    assert result.code == 0
    document = result.json()
    assert isinstance(document, dict) and document["old"] == old.public.key_id
    new = signer_of(repo)
    assert new.public != old.public
    assert not (repo / ".runner" / "keys" / f"{old.name}.pem").exists()
    rotated = [
        canonical.loads(line)
        for line in (repo / ".runner" / "ledger" / ENTRIES).read_bytes().splitlines()
        if b"key.rotated" in line
    ]
    assert [s["key"] for s in rotated[0]["signatures"]] == [old.public.key_id, new.public.key_id]
    assert invoke(repo / ".runner", "audit", "verify").code == 0


def test_rotate_refuses_a_key_from_the_environment(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNER_SIGNING_KEY", Signer.generate().pem().decode())
    result = invoke(repo / ".runner", "keys", "rotate")
    assert result.code == 2 and "RUNNER_SIGNING_KEY" in result.err


def test_verify_as_a_real_process(repo: Path) -> None:
    fill(repo, 3)
    env = {**os.environ, "RUNNER_STATE_DIR": str(repo / ".runner")}
    ok = subprocess.run(
        [str(RUNNER), "audit", "verify", "--json"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["entries"] == 3
    path = repo / ".runner" / "ledger" / ENTRIES
    path.write_bytes(path.read_bytes().splitlines(keepends=True)[0] * 2)
    bad = subprocess.run(
        [str(RUNNER), "audit", "verify"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert bad.returncode == 1 and "SEQ_MISMATCH" in bad.stdout
