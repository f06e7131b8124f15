"""The writer verifies before it signs (issue 11, items 9-11): history rewritten in the
ledger directory is refused by every command that would seal it, nothing is signed, and
`audit verify` reports it; the legitimate cases (a first run, a copied state directory,
a rotation) keep working. Real ledger files, tampered with as an attacker would; real
signatures."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import invoke, runner_cli
from declared import run_started, step_finished
from forge import note_texts, parsed, raw_lines, rechain, write_lines, write_notes

from runner.audit import canonical, checkpoint
from runner.audit.head import read_head, record_path
from runner.audit.keys import Signer, TrustedKeys, load_signer
from runner.audit.ledger import CHECKPOINTS, ENTRIES, Ledger
from runner.audit.verify import verify_ledger

MISSION = """\
name: m
on: [push]
jobs:
  j: {steps: [{run: echo hi}]}
"""
POLICY = """\
version: 1
images: [base]
tools: [sh]
limits: {timeout-minutes: 10, memory: 256m, cpus: 1, pids: 64}
"""


def signer_of(repo: Path) -> Signer:
    return load_signer(repo / ".runner", repo, create=False, say=print)


def fill(repo: Path, count: int, run_id: str = "r1", start: int = 0) -> None:
    """`count` entries of run `run_id` (a finished run), sealed when the ledger closes."""
    with Ledger.open(repo / ".runner", signer=signer_of(repo), repo=repo) as led:
        led.append("run.started", run_id, run_started())
        for i in range(start, start + count - 2):
            led.append("step.finished", run_id, step_finished(i))
        led.append("run.finished", run_id, {"result": "success", "reason": ""})


@pytest.fixture
def repo(in_tmp: Path) -> Path:
    """A repository whose ledger runner sealed twice: 5 entries (run r1), then 8 (r2)."""
    (in_tmp / ".missions").mkdir()
    (in_tmp / ".missions" / "m.yml").write_text(MISSION)
    (in_tmp / "policies").mkdir()
    (in_tmp / "policies" / "default.yml").write_text(POLICY)
    assert invoke(in_tmp / ".runner", "keys", "init").code == 0
    fill(in_tmp, 5, "r1")
    fill(in_tmp, 3, "r2", start=10)
    assert [checkpoint.parse(n).checkpoint.size for n in note_texts(state(in_tmp))] == [
        5,
        8,
    ]
    return in_tmp


def state(repo: Path) -> Path:
    return repo / ".runner"


# -- the three ways to launder history -----------------------------------------------------


def rewrite_after_the_previous_checkpoint(repo: Path) -> None:
    """Delete the last checkpoint, rewrite an entry after the one before, re-link."""
    write_notes(state(repo), note_texts(state(repo))[:-1])
    items = parsed(state(repo))
    items[6]["name"] = "forged"
    write_lines(state(repo), rechain(items))


def cut_after_the_previous_checkpoint(repo: Path) -> None:
    """Delete the last checkpoint and the entries it alone covered."""
    write_notes(state(repo), note_texts(state(repo))[:-1])
    write_lines(state(repo), raw_lines(state(repo))[:5])


def rewrite_everything(repo: Path) -> None:
    """Delete every checkpoint and rewrite the whole history, re-linked."""
    (state(repo) / "ledger" / CHECKPOINTS).unlink()
    items = parsed(state(repo))
    items[1]["name"] = "forged"
    write_lines(state(repo), rechain(items))


LAUNDERINGS: dict[str, tuple[Callable[[Path], None], str]] = {
    "rewrite-after-previous": (rewrite_after_the_previous_checkpoint, "CHECKPOINT_MISMATCH"),
    "cut-after-previous": (cut_after_the_previous_checkpoint, "TRUNCATED"),
    "rewrite-everything": (rewrite_everything, "CHECKPOINT_MISMATCH"),
}


def snapshot(repo: Path) -> dict[str, bytes]:
    """Every file that signing would change."""
    files = [state(repo) / "ledger" / ENTRIES, state(repo) / "ledger" / CHECKPOINTS]
    files += [record_path(state(repo)), state(repo) / "keys" / "current"]
    files += sorted((repo / "policies" / "keys").glob("*.pub"))
    return {str(p): p.read_bytes() for p in files if p.exists()}


@pytest.mark.parametrize("laundering", sorted(LAUNDERINGS))
@pytest.mark.parametrize(
    "command",
    [
        ["audit", "checkpoint"],
        ["audit", "checkpoint", "--export", "anchor.note"],
        ["keys", "rotate"],
        ["audit", "export", "r1", "--format", "slsa", "-o", "prov.json"],
    ],
)
def test_laundering_is_refused_and_nothing_is_signed(
    repo: Path, laundering: str, command: list[str]
) -> None:
    launder, code = LAUNDERINGS[laundering]
    launder(repo)
    before = snapshot(repo)
    result = invoke(state(repo), *command)
    assert result.code == 1, result.err
    assert "refusing to" in result.err and "Traceback" not in result.err
    if command[:2] != ["audit", "export"]:  # export runs verify, which names every problem
        assert code in result.err
    assert snapshot(repo) == before
    assert not (repo / "anchor.note").exists() and not (repo / "prov.json").exists()


@pytest.mark.parametrize("laundering", sorted(LAUNDERINGS))
def test_runner_run_refuses_before_recording_anything(repo: Path, laundering: str) -> None:
    launder, code = LAUNDERINGS[laundering]
    launder(repo)
    before = snapshot(repo)
    done = runner_cli(
        repo,
        state(repo),
        "run",
        ".missions/m.yml",
        DOCKER_HOST=f"unix://{repo}/no-engine.sock",  # it must stop before the engine
    )
    assert done.returncode == 1, done.stderr
    assert "refusing to sign the audit ledger" in done.stderr and code in done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot(repo) == before


@pytest.mark.parametrize("laundering", sorted(LAUNDERINGS))
def test_verify_reports_the_laundered_history(repo: Path, laundering: str) -> None:
    LAUNDERINGS[laundering][0](repo)
    result = invoke(state(repo), "audit", "verify", "--json")
    document = result.json()
    assert result.code == 1 and document["ok"] is False and document["tampered"] is True
    codes = {f["code"] for f in document["findings"] if f["severity"] == "error"}
    # runner's record says it signed 8 entries: that checkpoint is gone, and the entries
    # no longer make (or reach) its root
    assert "MISSING_CHECKPOINT" in codes
    assert codes & {"CHECKPOINT_MISMATCH", "TRUNCATED"}


def test_a_deleted_last_checkpoint_alone_is_not_resealed(repo: Path) -> None:
    write_notes(state(repo), note_texts(state(repo))[:-1])
    before = snapshot(repo)
    result = invoke(state(repo), "audit", "checkpoint")
    assert result.code == 1 and "MISSING_CHECKPOINT" in result.err
    assert snapshot(repo) == before


def test_a_replaced_ledger_is_refused(repo: Path, tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "forger", signer=None, origin="runner/other/0") as led:
        led.append("run.started", "x", run_started())
    shutil.rmtree(state(repo) / "ledger")
    shutil.move(tmp_path / "forger" / "ledger", state(repo) / "ledger")
    result = invoke(state(repo), "audit", "checkpoint")
    assert result.code == 1 and "FOREIGN_ENTRY" in result.err and "was replaced" in result.err


def test_slsa_export_never_signs_a_forged_artifact_digest(repo: Path) -> None:
    with Ledger.open(state(repo), signer=signer_of(repo), repo=repo) as led:
        led.append("run.started", "r3", run_started())
        artifact = {"job": "b", "name": "dist", "path": "dist", "sha256": "a" * 64, "size": 3}
        led.append("artifact.stored", "r3", artifact)
        led.append("run.finished", "r3", {"result": "success", "reason": ""})
    good = invoke(state(repo), "audit", "export", "r3", "-o", "good.json")
    assert good.code == 0, good.err
    lines = raw_lines(state(repo))
    forged = [line.replace(b"a" * 64, b"b" * 64) for line in lines]
    write_lines(state(repo), forged)  # the digest swapped, the line left where it was
    result = invoke(state(repo), "audit", "export", "r3", "-o", "forged.json")
    assert result.code == 1 and "refusing to sign provenance of run 'r3'" in result.err
    assert not (repo / "forged.json").exists()


def test_slsa_export_refuses_a_run_not_sealed_yet(repo: Path) -> None:
    with Ledger.open(state(repo), signer=None) as led:  # never sealed
        led.append("run.started", "r4", run_started())
        led.append("run.finished", "r4", {"result": "success", "reason": ""})
    result = invoke(state(repo), "audit", "export", "r4", "-o", "p.json")
    assert result.code == 1 and "UNSEALED_TAIL" in result.err and "audit checkpoint" in result.err


# -- the legitimate cases ------------------------------------------------------------------


def test_a_new_ledger_records_its_empty_tree_so_a_crash_before_sealing_is_not_refused(
    in_tmp: Path,
) -> None:
    assert invoke(in_tmp / ".runner", "keys", "init").code == 0
    child = textwrap.dedent(
        """\
        import os, sys
        from pathlib import Path
        sys.path.insert(0, sys.argv[2])
        from declared import run_started
        from runner.audit.keys import load_signer
        from runner.audit.ledger import Ledger
        state = Path(sys.argv[1])
        signer = load_signer(state, state.parent, create=False, say=print)
        led = Ledger.open(state, signer=signer)
        led.append("run.started", "r1", run_started())
        os._exit(0)  # killed before its first checkpoint
        """
    )
    here = str(Path(__file__).parent)
    subprocess.run([sys.executable, "-c", child, str(in_tmp / ".runner"), here], check=True)
    head = read_head(in_tmp / ".runner")
    assert head is not None and head.size == 0
    assert not (in_tmp / ".runner" / "ledger" / CHECKPOINTS).exists()
    sealed = invoke(in_tmp / ".runner", "audit", "checkpoint")
    assert sealed.code == 0, sealed.err
    assert invoke(in_tmp / ".runner", "audit", "verify").code == 0


def copy_state(repo: Path, target: Path, *, record: bool) -> Path:
    """The repository and its state directory on another machine: the private key stays
    behind (it comes from RUNNER_SIGNING_KEY there)."""
    shutil.copytree(repo, target, ignore=shutil.ignore_patterns("*.pem"))
    if not record:
        record_path(state(target)).unlink()
    return target


def test_a_copied_state_dir_with_its_record_and_an_environment_key_carries_on(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNER_SIGNING_KEY", signer_of(repo).pem().decode())
    other = copy_state(repo, tmp_path / "elsewhere", record=True)
    monkeypatch.chdir(other)
    fill(other, 3, "r3", start=30)
    result = invoke(state(other), "audit", "checkpoint")
    assert result.code == 0, result.err
    assert invoke(state(other), "audit", "verify").code == 0


def test_a_copied_ledger_without_the_record_is_refused_until_adopted(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNER_SIGNING_KEY", signer_of(repo).pem().decode())
    other = copy_state(repo, tmp_path / "elsewhere", record=False)
    monkeypatch.chdir(other)
    before = snapshot(other)
    refused = invoke(state(other), "audit", "checkpoint")
    assert refused.code == 1 and "NO_RECORD" in refused.err
    assert "--adopt" in refused.err and "runner audit verify" in refused.err
    assert snapshot(other) == before
    adopted = invoke(state(other), "audit", "checkpoint", "--adopt")
    assert adopted.code == 0, adopted.err
    assert "adopted the ledger" in adopted.out
    head = read_head(state(other))
    assert head is not None and head.size == 8
    assert invoke(state(other), "audit", "checkpoint").code == 0
    assert invoke(state(other), "audit", "verify").code == 0


def test_a_tampered_ledger_cannot_be_adopted(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNER_SIGNING_KEY", signer_of(repo).pem().decode())
    other = copy_state(repo, tmp_path / "elsewhere", record=False)
    monkeypatch.chdir(other)
    rewrite_everything(other)
    before = snapshot(other)
    result = invoke(state(other), "audit", "checkpoint", "--adopt")
    assert result.code == 1 and "will not adopt" in result.err
    assert snapshot(other) == before


def test_rotation_moves_the_record_to_the_new_key_and_retires_the_old(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = signer_of(repo)
    assert invoke(state(repo), "keys", "rotate").code == 0
    new = signer_of(repo)
    head = read_head(state(repo))
    assert head is not None
    names = [s.name for s in checkpoint.parse(head.note).signatures]
    assert names == [new.name] and head.size == len(raw_lines(state(repo)))
    fill(repo, 3, "r3", start=20)
    assert invoke(state(repo), "audit", "checkpoint").code == 0
    assert invoke(state(repo), "audit", "verify").code == 0
    # a copy of the old key (CI secret not updated) must not sign again
    monkeypatch.setenv("RUNNER_SIGNING_KEY", old.pem().decode())
    before = snapshot(repo)
    result = invoke(state(repo), "audit", "checkpoint")
    assert result.code == 2 and "was rotated in the audit ledger" in result.err
    assert snapshot(repo) == before


# -- revocations (item 11) -----------------------------------------------------------------


def test_a_revocation_of_the_current_key_by_the_rotated_away_key_is_not_accepted(
    repo: Path,
) -> None:
    old = signer_of(repo)
    assert invoke(state(repo), "keys", "rotate").code == 0
    new = signer_of(repo)
    with Ledger.open(state(repo), signer=None) as led:  # written by whoever holds `old`
        fields = {"key": new.public.vkey(), "by": old.public.vkey(), "reason": "stolen"}
        forged = led.append("key.revoked", None, fields, cosigners=(old,))
    sealed = invoke(state(repo), "audit", "checkpoint")  # the current key still signs
    assert sealed.code == 0, sealed.err
    result = invoke(state(repo), "audit", "verify", "--json")
    document = result.json()
    assert result.code == 1
    revoked = [f for f in document["findings"] if f["code"] == "REVOKED_KEY"]
    assert [f["seq"] for f in revoked] == [forged.seq]
    assert "a retired key cannot revoke" in revoked[0]["message"]


def test_runner_refuses_to_keep_signing_with_a_revoked_key(repo: Path) -> None:
    current = signer_of(repo)
    other = Signer.generate()
    (repo / "policies" / "keys" / f"{other.name}.pub").write_text(other.public.vkey() + "\n")
    with Ledger.open(state(repo), signer=None) as led:
        fields = {"key": current.public.vkey(), "by": other.public.vkey(), "reason": "lost"}
        led.append("key.revoked", None, fields, cosigners=(other,))
    before = snapshot(repo)
    result = invoke(state(repo), "audit", "checkpoint")
    assert result.code == 2, result.err
    assert f"signing key {current.public.key_id}" in result.err
    assert "was revoked in the audit ledger" in result.err
    assert snapshot(repo) == before
    done = runner_cli(
        repo, state(repo), "run", ".missions/m.yml", DOCKER_HOST=f"unix://{repo}/none.sock"
    )
    assert done.returncode == 2 and "was revoked" in done.stderr
    assert snapshot(repo) == before


# -- verify's messages (item 9) ------------------------------------------------------------


def test_entries_without_a_checkpoint_are_never_called_intact(in_tmp: Path) -> None:
    assert invoke(in_tmp / ".runner", "keys", "init").code == 0
    with Ledger.open(in_tmp / ".runner", signer=None) as led:
        led.append("run.started", "r1", run_started())
    result = invoke(in_tmp / ".runner", "audit", "verify")
    assert result.code == 1
    assert "NO_CHECKPOINT" in result.out and "intact" not in result.out
    assert "TAMPERED" not in result.out and "NOT VERIFIED" in result.out


def test_unsealed_tail_advice_depends_on_the_errors(repo: Path) -> None:
    with Ledger.open(state(repo), signer=None) as led:
        led.append("run.started", "r9", run_started())
    clean = invoke(state(repo), "audit", "verify")
    assert clean.code == 0 and "`runner audit checkpoint` seals them" in clean.out
    lines = raw_lines(state(repo))
    lines[2] = lines[2].replace(b'"name":"ok"', b'"name":"oK"')
    write_lines(state(repo), lines)
    tampered = invoke(state(repo), "audit", "verify")
    assert tampered.code == 1 and "UNSEALED_TAIL" in tampered.out
    assert "seals them" not in tampered.out and "do not seal them" in tampered.out


def test_counts_never_stand_for_findings_in_another_file(repo: Path, tmp_path: Path) -> None:
    stranger = Signer.generate()
    items = parsed(state(repo))
    forged = checkpoint.sign(
        checkpoint.Checkpoint(items[0]["log"], 8, b"\1" * 32), stranger
    )  # a checkpoint and an anchor no trusted key signed
    write_notes(state(repo), [*note_texts(state(repo)), forged, forged])
    (tmp_path / "anchor.note").write_text(forged)
    result = invoke(state(repo), "audit", "verify", "--anchor", str(tmp_path / "anchor.note"))
    lines = [line for line in result.out.splitlines() if "UNTRUSTED_KEY" in line]
    assert len(lines) == 2  # one per file, each with its own count
    assert any("(1 more in checkpoints)" in line for line in lines)
    assert any(str(tmp_path / "anchor.note") in line and "more" not in line for line in lines)


def test_a_corrupt_anchor_is_a_bad_anchor_not_a_tampered_ledger(repo: Path, tmp_path: Path) -> None:
    anchor = tmp_path / "anchor.note"
    anchor.write_bytes(b"this is not a checkpoint\n\xff\n")
    result = invoke(state(repo), "audit", "verify", "--anchor", str(anchor), "--json")
    document = result.json()
    assert result.code == 1 and document["tampered"] is False
    assert [f["code"] for f in document["findings"] if f["severity"] == "error"] == ["BAD_ANCHOR"]
    human = invoke(state(repo), "audit", "verify", "--anchor", str(anchor))
    assert "BAD_ANCHOR" in human.out and "TAMPERED" not in human.out


def test_the_origin_names_the_repository_not_the_state_dirs_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "my-project"
    (repo / ".missions").mkdir(parents=True)
    (repo / ".missions" / "m.yml").write_text(MISSION)
    (repo / "policies").mkdir()
    (repo / "policies" / "default.yml").write_text(POLICY)
    monkeypatch.chdir(repo)
    elsewhere = tmp_path / "var" / "lib" / "runner-state"
    assert invoke(elsewhere, "keys", "init").code == 0
    # the run records run.started, then finds no engine (exit 4)
    runner_cli(repo, elsewhere, "run", ".missions/m.yml", DOCKER_HOST=f"unix://{repo}/x.sock")
    origin = (elsewhere / "ledger" / "origin").read_text().strip()
    assert origin.startswith("runner/my-project/"), origin
    first = canonical.loads(raw_lines(elsewhere)[0][:-1])
    assert first["log"] == origin and first["type"] == "run.started"


# -- crashes (kill -9 at random moments) -----------------------------------------------------

WRITER = """\
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from declared import step_finished
from runner.audit import ledger
from runner.audit.keys import Signer
ledger.CHECKPOINT_EVERY = 5
state, key = Path(sys.argv[1]), Signer.from_pem(sys.stdin.buffer.read(), "test")
n = 0
while True:
    with ledger.Ledger.open(state, signer=key) as led:
        for _ in range(7):
            led.append("step.finished", "r", step_finished(n))
            n += 1
        led.checkpoint()
"""


def test_kill_9_at_random_moments_never_leaves_a_ledger_the_writer_refuses(
    tmp_path: Path,
) -> None:
    state, key = tmp_path / "state", Signer.generate()
    rng = random.Random(11)
    here = str(Path(__file__).parent)
    for round_ in range(25):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(state), here], stdin=subprocess.PIPE
        )
        assert child.stdin is not None
        child.stdin.write(key.pem())
        child.stdin.close()
        entries = state / "ledger" / ENTRIES
        before = entries.stat().st_size if entries.exists() else 0
        deadline = time.monotonic() + 30
        while (entries.stat().st_size if entries.exists() else 0) <= before:
            assert time.monotonic() < deadline, "the writer never wrote"
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.08))  # then somewhere in its appends and checkpoints
        child.send_signal(signal.SIGKILL)
        child.wait()
        with Ledger.open(state, signer=key) as led:  # never refused after a crash
            led.append("step.finished", "check", step_finished(round_))
    report = verify_ledger(state / "ledger", TrustedKeys([key.public]))
    assert report.ok and report.sealed == report.entries, report.findings
    assert report.entries > 50  # every round wrote before it was killed
