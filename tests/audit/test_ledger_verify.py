"""Adversarial tests of `verify_ledger`: each attack must be reported by its code, with the
first bad seq and byte offset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from declared import gc_pruned, step_finished
from forge import entries_path, parsed, raw_lines, rechain, write_lines

from runner.audit import canonical, checkpoint, ledger, merkle
from runner.audit import verify as ledger_verify
from runner.audit.keys import Signer, TrustedKeys
from runner.audit.ledger import Ledger, revoke_key, rotate_key
from runner.audit.verify import Code, Report, verify_ledger

N = 30


@pytest.fixture
def signer() -> Signer:
    return Signer.generate()


@pytest.fixture
def state(tmp_path: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ledger of 30 entries with checkpoints at 10, 20 and 30."""
    monkeypatch.setattr(ledger, "CHECKPOINT_EVERY", 10)
    state = tmp_path / "state"
    with Ledger.open(state, signer=signer, origin="runner/test/main") as led:
        for i in range(N):
            led.append("step.finished", f"r{i // 10}", step_finished(i))
    return state


def offset_of(state: Path, seq: int) -> int:
    return sum(len(line) for line in raw_lines(state)[:seq])


def verify(state: Path, *keys: Signer, anchor: str | None = None) -> Report:
    return verify_ledger(state / "ledger", TrustedKeys([k.public for k in keys]), anchor=anchor)


def finding(report: Report, code: Code) -> Any:
    return next(f for f in report.findings if f.code is code)


def resign_all(state: Path, key: Signer, lines: list[bytes]) -> None:
    """What the key holder can do: rewrite history and re-sign every checkpoint."""
    write_lines(state, lines)
    hashes = [merkle.leaf_hash(line[:-1]) for line in lines]
    notes = []
    for size in (10, 20, len(lines)):
        cp = checkpoint.Checkpoint("runner/test/main", size, merkle.root_of(hashes[:size]))
        notes.append(checkpoint.sign(cp, key) + "\n")
    (state / "ledger" / "checkpoints").write_text("".join(notes))


def anchor_of(state: Path) -> str:
    data = (state / "ledger" / "checkpoints").read_bytes()
    return [t for _, t, _ in checkpoint.split_notes(data) if t][-1][:-1]


# -- intact -------------------------------------------------------------------------------


def test_an_intact_ledger_verifies_and_says_what_it_cannot_prove(
    state: Path, signer: Signer
) -> None:
    report = verify(state, signer)
    assert report.ok and report.entries == N and report.checkpoints == 3 and report.sealed == N
    assert report.codes() == {Code.UNANCHORED}
    assert "would not be detectable" in finding(report, Code.UNANCHORED).message
    anchored = verify(state, signer, anchor=anchor_of(state))
    assert anchored.ok and anchored.codes() == set() and anchored.anchored


# -- changed bytes ------------------------------------------------------------------------


def test_flipped_byte_leaving_valid_json(state: Path, signer: Signer) -> None:
    lines = raw_lines(state)
    lines[5] = lines[5].replace(b'"name":"ok"', b'"name":"oK"')
    write_lines(state, lines)
    report = verify(state, signer)
    assert not report.ok
    chain = finding(report, Code.CHAIN_BREAK)
    assert (chain.seq, chain.offset) == (6, offset_of(state, 6))
    # The first entry that differs, not the checkpoint's last seq: entry 6's prev still
    # holds the hash entry 5 had when it was signed (issue 11).
    mismatch = finding(report, Code.CHECKPOINT_MISMATCH)
    assert mismatch.seq == 5 and "entry 5 is not the one signed" in mismatch.message
    assert Code.UNPARSEABLE not in report.codes()


def test_flipped_byte_leaving_invalid_json(state: Path, signer: Signer) -> None:
    lines = raw_lines(state)
    lines[7] = lines[7].replace(b'"name":"ok"', b'"name":"ok*')
    write_lines(state, lines)
    report = verify(state, signer)
    bad = finding(report, Code.UNPARSEABLE)
    assert (bad.seq, bad.offset, bad.count) == (7, offset_of(state, 7), 1)
    assert Code.CHAIN_BREAK in report.codes() and not report.ok


@pytest.mark.parametrize(
    ("line", "what"),
    [
        (b'{"a":1,"a":2}\n', "duplicate key"),
        (b'{"a":1.5}\n', "float"),
        (b"[1,2]\n", "not a JSON object"),
    ],
)
def test_non_strict_json_is_unparseable(
    state: Path, signer: Signer, line: bytes, what: str
) -> None:
    lines = raw_lines(state)
    lines[3] = line
    write_lines(state, lines)
    bad = finding(verify(state, signer), Code.UNPARSEABLE)
    assert bad.seq == 3 and what in bad.message


# -- moved entries ------------------------------------------------------------------------


def test_deleted_entry(state: Path, signer: Signer) -> None:
    lines = raw_lines(state)
    del lines[12]
    write_lines(state, lines)
    report = verify(state, signer)
    assert finding(report, Code.SEQ_MISMATCH).seq == 12
    assert finding(report, Code.CHAIN_BREAK).seq == 12
    assert not report.ok


def test_inserted_entry(state: Path, signer: Signer) -> None:
    lines = raw_lines(state)
    forged = dict(parsed(state)[12], note="forged")
    lines.insert(13, canonical.dumps(forged) + b"\n")
    write_lines(state, lines)
    report = verify(state, signer)
    assert finding(report, Code.SEQ_MISMATCH).seq == 13
    assert finding(report, Code.CHAIN_BREAK).seq == 13


def test_reordered_entries(state: Path, signer: Signer) -> None:
    lines = raw_lines(state)
    lines[4], lines[5] = lines[5], lines[4]
    write_lines(state, lines)
    report = verify(state, signer)
    mismatch = finding(report, Code.SEQ_MISMATCH)
    assert (mismatch.seq, mismatch.count) == (4, 2)


def test_replayed_entry(state: Path, signer: Signer) -> None:
    lines = raw_lines(state)
    write_lines(state, [*lines, lines[29]])
    report = verify(state, signer)
    assert finding(report, Code.SEQ_MISMATCH).seq == 30
    assert finding(report, Code.CHAIN_BREAK).seq == 30


def test_spliced_entry_from_another_ledger(state: Path, signer: Signer, tmp_path: Path) -> None:
    other = tmp_path / "other"
    with Ledger.open(other, signer=signer, origin="runner/test/other") as led:
        led.append("step.finished", "x", step_finished(0))
    foreign = canonical.loads(entries_path(other).read_bytes().splitlines()[0])
    last = raw_lines(state)[-1]
    spliced = dict(foreign, seq=N, prev=merkle.leaf_hash(last[:-1]).hex())
    write_lines(state, [*raw_lines(state), canonical.dumps(spliced) + b"\n"])
    report = verify(state, signer)
    assert finding(report, Code.FOREIGN_ENTRY).seq == N
    assert Code.SEQ_MISMATCH not in report.codes() and not report.ok


def test_relinked_forgery_without_the_key_breaks_the_checkpoint(
    state: Path, signer: Signer
) -> None:
    items = parsed(state)
    items[25]["name"] = "forged"
    write_lines(state, rechain(items))
    report = verify(state, signer)
    assert report.codes() & {Code.SEQ_MISMATCH, Code.CHAIN_BREAK} == set()
    mismatch = finding(report, Code.CHECKPOINT_MISMATCH)
    # Re-linked: which entry changed cannot be told, only that it is after the last
    # checkpoint that still matches (20) and before the one that does not (30).
    assert mismatch.seq == 20 and mismatch.file == "checkpoints"
    assert "one of entries 20..29 was changed" in mismatch.message


# -- forged checkpoints -------------------------------------------------------------------


def test_checkpoints_forged_under_an_untrusted_key(state: Path, signer: Signer) -> None:
    items = parsed(state)
    items[3]["name"] = "forged"
    resign_all(state, Signer.generate(), rechain(items))
    report = verify(state, signer)
    untrusted = finding(report, Code.UNTRUSTED_KEY)
    assert untrusted.offset == 0 and untrusted.count == 3 and not report.ok
    assert report.sealed == 0


def test_a_checkpoint_altered_after_signing(state: Path, signer: Signer) -> None:
    path = state / "ledger" / "checkpoints"
    text = path.read_text()
    path.write_text(text.replace("\n20\n", "\n21\n"))
    report = verify(state, signer)
    assert finding(report, Code.BAD_SIGNATURE).file == "checkpoints"


def test_a_checkpoint_of_another_log(state: Path, signer: Signer) -> None:
    note = checkpoint.sign(checkpoint.Checkpoint("runner/test/other", 5, b"\0" * 32), signer)
    path = state / "ledger" / "checkpoints"
    path.write_text(path.read_text() + note + "\n")
    assert finding(verify(state, signer), Code.FOREIGN_ENTRY).file == "checkpoints"


def test_no_trusted_keys_proves_nothing(state: Path) -> None:
    report = verify(state)
    untrusted = [f for f in report.findings if f.code is Code.UNTRUSTED_KEY]
    # one finding per file: the empty keys directory, and the three checkpoints
    assert not report.ok and sum(f.count for f in untrusted) == 4
    assert {(f.file, f.count) for f in untrusted} == {("", 1), ("checkpoints", 3)}


# -- truncation and anchors ---------------------------------------------------------------


def test_truncation_behind_a_surviving_checkpoint(state: Path, signer: Signer) -> None:
    write_lines(state, raw_lines(state)[:25])
    report = verify(state, signer)
    truncated = finding(report, Code.TRUNCATED)
    assert truncated.seq == 25 and "holds only 25" in truncated.message


def test_truncation_with_its_checkpoints_needs_an_anchor(state: Path, signer: Signer) -> None:
    anchor = anchor_of(state)
    write_lines(state, raw_lines(state)[:20])
    path = state / "ledger" / "checkpoints"
    path.write_text("".join(t for _, t, _ in checkpoint.split_notes(path.read_bytes()) if t)[:-1])
    text = path.read_text()
    path.write_text(text[: text.index("runner/test/main\n30")])
    unanchored = verify(state, signer)
    assert unanchored.ok and unanchored.codes() == {Code.UNANCHORED}
    anchored = verify(state, signer, anchor=anchor)
    assert not anchored.ok and finding(anchored, Code.TRUNCATED).file == "anchor"


def test_a_rewrite_by_the_key_holder_is_caught_only_by_an_anchor(
    state: Path, signer: Signer
) -> None:
    anchor = anchor_of(state)
    items = parsed(state)
    items[3]["name"] = "rewritten"
    resign_all(state, signer, rechain(items))
    assert verify(state, signer).ok  # what verify cannot prove without an anchor...
    assert Code.UNANCHORED in verify(state, signer).codes()  # ...and says so
    report = verify(state, signer, anchor=anchor)
    assert not report.ok and "rewritten" in finding(report, Code.CHECKPOINT_MISMATCH).message


def test_an_older_anchor_is_extended_through_a_consistency_proof(
    state: Path, signer: Signer
) -> None:
    data = (state / "ledger" / "checkpoints").read_bytes()
    first = next(t for _, t, _ in checkpoint.split_notes(data) if t)[:-1]
    report = verify(state, signer, anchor=first)
    assert report.ok and report.anchored and report.codes() == set()


def test_an_anchor_signed_by_an_untrusted_key_is_refused(state: Path, signer: Signer) -> None:
    forged = checkpoint.sign(
        checkpoint.Checkpoint("runner/test/main", 30, b"\0" * 32), Signer.generate()
    )
    report = verify(state, signer, anchor=forged)
    assert finding(report, Code.UNTRUSTED_KEY).file == "anchor" and not report.ok


# -- keys ---------------------------------------------------------------------------------


def test_rotation_is_verified_and_the_old_key_may_not_sign_after_it(
    state: Path, signer: Signer, tmp_path: Path
) -> None:
    with Ledger.open(state, signer=signer) as led:
        new = rotate_key(led, state, tmp_path / "repo", signer)
        led.append("step.finished", "r9", step_finished(99))
    rotated = [e for e in parsed(state) if e["type"] == "key.rotated"]
    assert len(rotated) == 1 and len(rotated[0]["signatures"]) == 2
    assert verify(state, signer, new).ok
    # misuse: the old key signs a checkpoint after the rotation
    hashes = [merkle.leaf_hash(line[:-1]) for line in raw_lines(state)]
    late = checkpoint.sign(
        checkpoint.Checkpoint("runner/test/main", len(hashes), merkle.root_of(hashes)), signer
    )
    path = state / "ledger" / "checkpoints"
    path.write_text(path.read_text() + late + "\n")
    report = verify(state, signer, new)
    revoked = finding(report, Code.REVOKED_KEY)
    assert revoked.seq == N and "rotated" in revoked.message and not report.ok


def test_a_rotation_missing_the_new_keys_signature(state: Path, signer: Signer) -> None:
    new, impostor = Signer.generate(), Signer.generate()
    with Ledger.open(state, signer=signer) as led:
        fields = {"old": signer.public.vkey(), "new": new.public.vkey()}
        led.append("key.rotated", None, fields, cosigners=(signer, impostor))
    bad = finding(verify(state, signer, new), Code.BAD_SIGNATURE)
    assert bad.seq == N and new.public.key_id in bad.message


def test_a_rotation_from_an_untrusted_key(state: Path, signer: Signer) -> None:
    old, new = Signer.generate(), Signer.generate()
    with Ledger.open(state, signer=signer) as led:
        fields = {"old": old.public.vkey(), "new": new.public.vkey()}
        led.append("key.rotated", None, fields, cosigners=(old, new))
    untrusted = finding(verify(state, signer), Code.UNTRUSTED_KEY)
    assert untrusted.seq == N and old.public.key_id in untrusted.message


def test_a_key_revoked_earlier_may_not_sign_checkpoints(state: Path, signer: Signer) -> None:
    other = Signer.generate()
    with Ledger.open(state, signer=other) as led:
        revoke_key(led, signer.public, "laptop lost", other)
    assert verify(state, signer, other).ok
    with Ledger.open(state, signer=None) as led:
        led.append("step.finished", "r", step_finished(100))
    # runner refuses to sign with a revoked key (issue 11), so forge what a misused copy
    # of it would sign: a checkpoint after the revocation
    hashes = [merkle.leaf_hash(line[:-1]) for line in raw_lines(state)]
    late = checkpoint.sign(
        checkpoint.Checkpoint("runner/test/main", len(hashes), merkle.root_of(hashes)), signer
    )
    path = state / "ledger" / "checkpoints"
    path.write_text(path.read_text() + late + "\n")
    report = verify(state, signer, other)
    revoked = finding(report, Code.REVOKED_KEY)
    assert revoked.seq == N and "revoked" in revoked.message


# -- tails --------------------------------------------------------------------------------


def test_unsealed_tail_is_a_warning_naming_the_range(state: Path, signer: Signer) -> None:
    with Ledger.open(state, signer=None) as led:
        led.append("gc.pruned", None, gc_pruned())
        led.append("gc.pruned", None, gc_pruned())
    report = verify(state, signer)
    assert report.ok and report.sealed == N
    unsealed = finding(report, Code.UNSEALED_TAIL)
    assert unsealed.seq == N and f"{N}..{N + 1}" in unsealed.message


def test_json_findings_carry_code_severity_seq_offset(state: Path, signer: Signer) -> None:
    lines = raw_lines(state)
    del lines[2]
    write_lines(state, lines)
    document = verify(state, signer).serialize()
    assert document["ok"] is False and document["entries"] == N - 1
    first = document["findings"][0]
    assert set(first) >= {"code", "severity", "seq", "offset", "message"}
    assert json.loads(json.dumps(document)) == document
    codes = [f["code"] for f in document["findings"]]
    assert codes.index("SEQ_MISMATCH") < codes.index("UNANCHORED")
    assert (
        next(f for f in document["findings"] if f["code"] == "UNANCHORED")["severity"] == "warning"
    )


@pytest.mark.parametrize("parallel", [False, True])
def test_checking_in_chunks_and_in_worker_processes_finds_the_same(
    state: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch, parallel: bool
) -> None:
    lines = raw_lines(state)
    del lines[12]
    lines[20] = lines[20].replace(b'"name":"ok"', b'"name":"ok*')
    write_lines(state, lines)
    whole = verify(state, signer).serialize()
    assert {f["code"] for f in whole["findings"]} >= {"SEQ_MISMATCH", "CHAIN_BREAK", "UNPARSEABLE"}
    monkeypatch.setattr(ledger_verify, "CHUNK_BYTES", 300)  # about one line a chunk
    if parallel:
        monkeypatch.setattr(ledger_verify, "PARALLEL_MIN_BYTES", 0)
    assert verify(state, signer).serialize() == whole


def test_the_anchor_is_proven_consistent_with_the_latest_checkpoint(
    state: Path, signer: Signer
) -> None:
    data = (state / "ledger" / "checkpoints").read_bytes()
    first = next(t for _, t, _ in checkpoint.split_notes(data) if t)[:-1]  # size 10
    items = parsed(state)
    items[25]["name"] = "forged"
    write_lines(state, rechain(items))
    report = verify(state, signer, anchor=first)
    mismatches = {f.file: f for f in report.findings if f.code is Code.CHECKPOINT_MISMATCH}
    # each file's finding on its own line, its count its own (issue 11)
    assert set(mismatches) == {"anchor", "checkpoints"}
    anchored = mismatches["anchor"]
    assert anchored.seq == 10 and anchored.count == 1
    assert "not consistent with the anchor" in anchored.message
    assert mismatches["checkpoints"].seq == 20


def test_a_lost_origin_file_falls_back_to_the_entries(state: Path, signer: Signer) -> None:
    (state / "ledger" / "origin").unlink()
    assert verify(state, signer).codes() == {Code.UNANCHORED}
