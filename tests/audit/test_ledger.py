from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing
import os
import threading
from pathlib import Path

import pytest
from declared import gc_pruned, run_started, step_finished, step_started

from runner.audit import canonical, ledger
from runner.audit.checkpoint import parse, split_notes
from runner.audit.keys import Signer, TrustedKeys, load_signer
from runner.audit.ledger import ENTRIES, GENESIS, Ledger, LedgerUnavailable, last_policy
from runner.audit.merkle import leaf_hash, root_of
from runner.audit.verify import Code, verify_ledger
from runner.errors import InvalidInput


@pytest.fixture
def signer() -> Signer:
    return Signer.generate()


def lines(state: Path) -> list[bytes]:
    return (state / "ledger" / ENTRIES).read_bytes().splitlines()


def entries(state: Path) -> list[dict[str, object]]:
    return [canonical.loads(line) for line in lines(state)]


def check_clean(state: Path, signer: Signer) -> None:
    report = verify_ledger(state / "ledger", TrustedKeys([signer.public]))
    assert report.codes() <= {Code.UNANCHORED, Code.UNSEALED_TAIL}, report.findings
    assert report.ok


def test_entries_are_canonical_chained_and_hashed_as_stored(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "state"
    with Ledger.open(state, signer=signer, origin="runner/test/1") as led:
        first = led.append("run.started", "r1", run_started())
        second = led.append("run.finished", "r1", {"result": "success", "reason": ""})
    raw = lines(state)
    assert (first.seq, second.seq) == (0, 1) and second.offset == len(raw[0]) + 1
    got = entries(state)
    assert got[0]["prev"] == GENESIS and got[1]["prev"] == leaf_hash(raw[0]).hex()
    assert second.leaf == hashlib.sha256(b"\x00" + raw[1]).hexdigest()
    envelope = {"v", "log", "seq", "ts", "type", "run_id", "kid", "prev"}
    assert set(got[0]) == envelope | set(run_started())
    assert got[0]["log"] == "runner/test/1" and got[0]["kid"] == signer.public.key_id
    assert isinstance(got[0]["ts"], int)
    assert all(canonical.is_canonical(line) for line in raw)


def test_floats_and_reserved_fields_are_refused_before_writing(
    tmp_path: Path, signer: Signer
) -> None:
    state = tmp_path / "state"
    with Ledger.open(state, signer=signer) as led:
        with pytest.raises(InvalidInput, match=r"\$.fields.duration: floats"):
            led.append("step.finished", "r", {"duration": 1.5})
        with pytest.raises(InvalidInput, match="reserved"):
            led.append("step.finished", "r", {"seq": 3})
        with pytest.raises(InvalidInput, match="not a dotted lowercase name"):
            led.append("Step Finished", "r", {})
        assert led.size == 0
    assert lines(state) == []


def test_checkpoints_every_n_entries_and_at_close(
    tmp_path: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger, "CHECKPOINT_EVERY", 4)
    state = tmp_path / "state"
    with Ledger.open(state, signer=signer) as led:
        for i in range(9):
            led.append("step.finished", "r", step_finished(i))
        assert led.checkpoint() == led.checkpoint()  # nothing new: the same note
    notes = (state / "ledger" / "checkpoints").read_text().split("\n\n\u2014")
    sizes = [parse(n).checkpoint.size for n in _notes(state)]
    assert sizes == [4, 8, 9] and len(notes) == 4
    hashes = [leaf_hash(line) for line in lines(state)]
    assert parse(_notes(state)[-1]).checkpoint.root == root_of(hashes)
    check_clean(state, signer)


def _notes(state: Path) -> list[str]:
    data = (state / "ledger" / "checkpoints").read_bytes()
    return [text[:-1] for _, text, _ in split_notes(data) if text]


def test_reopening_continues_the_chain_from_the_cache(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "state"
    with Ledger.open(state, signer=signer) as led:
        led.append("step.finished", "r", step_finished(0))
    with Ledger.open(state, signer=signer) as led:
        assert led.size == 1
        led.append("step.finished", "r", step_finished(1))
    # A cache that lies is not believed.
    cache = state / "ledger" / "frontier.json"
    document = json.loads(cache.read_text())
    document["frontier"]["hashes"] = ["00" * 32 for _ in document["frontier"]["hashes"]]
    cache.write_text(json.dumps(document))
    with Ledger.open(state, signer=signer) as led:
        led.append("step.finished", "r", step_finished(2))
    assert [e["seq"] for e in entries(state)] == [0, 1, 2]
    check_clean(state, signer)


def test_a_ledger_keeps_its_origin(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "state"
    Ledger.open(state, signer=signer, origin="runner/a/1").close()
    with pytest.raises(InvalidInput, match="belongs to 'runner/a/1'"):
        Ledger.open(state, signer=signer, origin="runner/b/2")
    with Ledger.open(state, signer=signer) as led:
        assert led.origin == "runner/a/1"


def test_default_origin_names_the_repository(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "myrepo" / ".runner"
    with Ledger.open(state, signer=signer) as led:
        origin = led.origin
    assert origin.startswith("runner/myrepo/") and len(origin.rsplit("/", 1)[1]) == 16


def test_torn_tail_is_quarantined_truncated_and_recorded(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "state"
    with Ledger.open(state, signer=signer) as led:
        led.append("step.started", "r", step_started(0))
    path = state / "ledger" / ENTRIES
    good = path.read_bytes()
    torn = b'{"i":1,"kid":"x","log":"runn'  # a crash mid-write
    path.write_bytes(good + torn)
    before = verify_ledger(state / "ledger", TrustedKeys([signer.public]))
    assert Code.INCOMPLETE_TAIL in before.codes() and before.ok
    with Ledger.open(state, signer=signer) as led:
        led.append("step.started", "r", step_started(2))
    quarantined = list((state / "ledger" / "quarantine").iterdir())
    assert len(quarantined) == 1 and quarantined[0].read_bytes() == torn
    got = entries(state)
    assert [e["type"] for e in got] == ["step.started", "recovery", "step.started"]
    assert got[1]["offset"] == len(good) and got[1]["length"] == len(torn)
    assert got[1]["sha256"] == hashlib.sha256(torn).hexdigest()
    assert path.read_bytes().startswith(good)
    check_clean(state, signer)


def test_torn_checkpoint_is_quarantined_too(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "state"
    with Ledger.open(state, signer=signer) as led:
        led.append("step.started", "r", step_started(0))
    cps = state / "ledger" / "checkpoints"
    cps.write_bytes(cps.read_bytes() + b"runner/x/y\n5\nAAAA")
    with Ledger.open(state, signer=signer) as led:
        led.append("step.started", "r", step_started(1))
    assert [e["type"] for e in entries(state)] == ["step.started", "step.started", "recovery"]
    check_clean(state, signer)


def _worker(state: str, pem: bytes, worker: int, count: int) -> None:
    key = Signer.from_pem(pem, "test")
    with Ledger.open(Path(state), signer=key) as led:
        for i in range(count):
            led.append("step.finished", f"w{worker}", step_finished(i))


def test_six_processes_appending_at_once_lose_nothing(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "state"
    Ledger.open(state, signer=signer).close()
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(target=_worker, args=(str(state), signer.pem(), w, 100)) for w in range(6)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [p.exitcode for p in procs] == [0] * 6
    got = entries(state)
    assert [e["seq"] for e in got] == list(range(600))
    for w in range(6):
        assert [e["step"] for e in got if e["run_id"] == f"w{w}"] == list(range(100))
    check_clean(state, signer)


def test_short_writes_still_produce_whole_lines(
    tmp_path: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    real_write = os.write

    def short_write(fd: int, data: bytes) -> int:
        return real_write(fd, bytes(data[: max(1, len(data) // 3)]))

    with Ledger.open(state, signer=signer) as led:
        monkeypatch.setattr(os, "write", short_write)
        for i in range(3):
            led.append("step.finished", "r", step_finished(i))
        monkeypatch.setattr(os, "write", real_write)
    assert [e["step"] for e in entries(state) if "step" in e] == [0, 1, 2]
    check_clean(state, signer)


def test_disk_full_mid_write_acknowledges_nothing_and_loses_nothing(
    tmp_path: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    real_write = os.write
    led = Ledger.open(state, signer=signer)
    led.append("step.started", "r", step_started(0))
    before = (state / "ledger" / ENTRIES).read_bytes()

    def enospc(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data[:10]))  # part of the line reaches the file
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", enospc)
    with pytest.raises(LedgerUnavailable, match="No space left on device") as info:
        led.append("step.started", "r", step_started(1))
    assert info.value.exit_code == 4 and "was not recorded" in str(info.value)
    monkeypatch.setattr(os, "write", real_write)
    assert (state / "ledger" / ENTRIES).read_bytes() == before
    led.append("step.started", "r", step_started(2))
    led.close()
    assert [e["step"] for e in entries(state)] == [0, 2]
    check_clean(state, signer)


def test_fsync_failure_is_fatal_and_the_entry_unacknowledged(
    tmp_path: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    led = Ledger.open(state, signer=signer)
    led.append("step.started", "r", step_started(0))
    real = os.fdatasync

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fdatasync", eio)
    with pytest.raises(LedgerUnavailable, match="fsync of the audit ledger"):
        led.append("step.started", "r", step_started(1))
    monkeypatch.setattr(os, "fdatasync", real)
    with pytest.raises(LedgerUnavailable, match="was not acknowledged"):
        led.append("step.started", "r", step_started(2))  # the handle stays unusable
    led.close()
    assert [e["step"] for e in entries(state)] == [0]
    with Ledger.open(state, signer=signer) as again:
        again.append("step.started", "r", step_started(3))
    assert [e.get("step") for e in entries(state)] == [0, 3]
    check_clean(state, signer)


def test_last_policy_is_the_latest_recorded_document(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "state"
    directory = state / "ledger"
    assert last_policy(directory) is None
    with Ledger.open(state, signer=signer) as led:
        first_policy = {"version": 1, "tools": ["sh"]}
        led.append(
            "policy.changed", "r1", {"policy_digest": "a" * 64, "patch": [], "policy": first_policy}
        )
        led.append("run.started", "r1", run_started())
        led.append(
            "policy.changed",
            "r2",
            {"policy_digest": "b" * 64, "patch": [], "policy": {"version": 1, "tools": []}},
        )
        led.append("run.finished", "r2", {"result": "success", "reason": ""})
    assert last_policy(directory) == {"version": 1, "tools": []}
    (directory / "policy.json").unlink()
    assert last_policy(directory) == {"version": 1, "tools": []}
    # a stale cache (pointing at the first change) is not believed either
    first = lines(state)[0]
    (directory / "policy.json").write_text(
        json.dumps({"offset": 0, "leaf": leaf_hash(first).hex()})
    )
    assert last_policy(directory) == {"version": 1, "tools": []}


def test_close_without_a_signer_leaves_the_tail_unsealed(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "state"
    with Ledger.open(state, signer=signer) as led:
        led.append("gc.pruned", None, gc_pruned())
    sealed = (state / "ledger" / "checkpoints").read_bytes()
    with Ledger.open(state, signer=None) as led:
        led.append("gc.pruned", None, gc_pruned())
        with pytest.raises(InvalidInput, match="no signing key"):
            led.checkpoint()
    assert (state / "ledger" / "checkpoints").read_bytes() == sealed
    report = verify_ledger(state / "ledger", TrustedKeys([signer.public]))
    assert Code.UNSEALED_TAIL in report.codes() and report.ok


def test_entries_without_any_checkpoint_prove_nothing(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "state"
    with Ledger.open(state, signer=None) as led:
        led.append("gc.pruned", None, gc_pruned())
    assert not (state / "ledger" / "checkpoints").exists()
    report = verify_ledger(state / "ledger", TrustedKeys([signer.public]))
    assert not report.ok and not report.tampered and report.sealed == 0
    assert Code.NO_CHECKPOINT in report.codes()


def test_load_signer_is_available_from_the_ledger_module() -> None:
    assert ledger.load_signer is load_signer


def test_threads_sharing_one_ledger_append_in_turn(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "state"
    led = Ledger.open(state, signer=signer)

    def work(worker: int) -> None:
        for i in range(40):
            led.append("step.finished", f"t{worker}", step_finished(i))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    led.close()
    got = entries(state)
    assert [e["seq"] for e in got] == list(range(320))
    assert sorted((e["run_id"], e["step"]) for e in got) == sorted(
        (f"t{w}", i) for w in range(8) for i in range(40)
    )
    check_clean(state, signer)


def test_a_lost_origin_file_is_remade_from_the_entries(tmp_path: Path, signer: Signer) -> None:
    state = tmp_path / "state"
    with Ledger.open(state, signer=signer, origin="runner/a/1") as led:
        led.append("step.finished", "r", step_finished(0))
    (state / "ledger" / "origin").unlink()
    with Ledger.open(state, signer=signer) as led:
        assert led.origin == "runner/a/1"
        led.append("step.finished", "r", step_finished(0))
    check_clean(state, signer)
