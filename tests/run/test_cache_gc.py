"""`actions/cache` housekeeping (runner.run.cache.collect, `runner gc`): entries saved by
real jobs on the in-memory engine, aged with os.utime, evicted when unused for days or
least recently used over the cap, their blobs with them; never while a run uses the store;
restores mark an entry used. No test sleeps."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import invoke
from fake_run import run_mission

from runner.durable import flock
from runner.records.events import Annotation
from runner.records.sink import Recorder, Sink
from runner.run.cache import MAX_TOTAL_BYTES, MAX_UNUSED_DAYS, Evicted, collect
from runner.run.gc import collect_caches
from runner.secrets.redact import Redactor

DAY = 86400.0
MISSION = """\
name: m
on: [push]
jobs:
  j:
    steps:
      - uses: actions/cache@v4
        with: {{key: {key}, path: .cache}}
      - run: write .cache/a.txt {text}
"""


def save(tmp_path: Path, key: str, text: str = "hello") -> Path:
    """A job that misses `key` and saves `.cache` holding `text`; the entry's file."""
    outcome = run_mission(tmp_path, MISSION.format(key=key, text=text))
    assert outcome.status() == {"j": ("success", "")}
    assert outcome.jobs["j"].steps[0].outputs["cache-hit"] == "false"
    return entry_of(tmp_path, key)


def restore(tmp_path: Path, key: str) -> str:
    """A job asking for `key`: its `cache-hit` output."""
    outcome = run_mission(tmp_path, MISSION.format(key=key, text="again"))
    return outcome.jobs["j"].steps[0].outputs["cache-hit"]


def entry_of(tmp_path: Path, key: str) -> Path:
    for path in (tmp_path / "state" / "cache" / "scopes").glob("*/*.json"):
        if json.loads(path.read_text())["key"] == key:
            return path
    raise AssertionError(f"no entry for {key}")


def blobs(tmp_path: Path) -> set[str]:
    return {p.name for p in (tmp_path / "state" / "cache" / "blobs").iterdir()}


def age(path: Path, days: float, now: float) -> None:
    os.utime(path, (now - days * DAY, now - days * DAY))


def test_the_defaults_are_githubs() -> None:
    assert (MAX_UNUSED_DAYS, MAX_TOTAL_BYTES) == (7, 10 * 1024**3)


def test_a_restore_marks_the_entry_used_so_gc_keeps_it(tmp_path: Path) -> None:
    now = time.time()
    entry = save(tmp_path, "k1")
    age(entry, 30, now)
    assert restore(tmp_path, "k1") == "true"
    assert entry.stat().st_mtime >= now - 60
    assert collect_caches(tmp_path / "state", days=None, max_bytes=None, now=time.time()) == []
    assert restore(tmp_path, "k1") == "true"


def test_entries_unused_for_the_days_given_are_evicted_with_their_blobs(tmp_path: Path) -> None:
    now = time.time()
    old, recent, fresh = (
        save(tmp_path, "old", "o"),
        save(tmp_path, "recent", "r"),
        save(tmp_path, "fresh", "f"),
    )
    saved = json.loads(old.read_text())
    age(old, 8, now)
    age(recent, 6.9, now)
    before = blobs(tmp_path)
    assert len(before) == 3
    evicted = collect(tmp_path / "state", max_unused_s=7 * DAY, max_bytes=MAX_TOTAL_BYTES, now=now)
    assert evicted is not None and [(e.key, e.reason) for e in evicted] == [("old", "unused")]
    (gone,) = evicted
    assert (gone.event, gone.ref, gone.last_used) == ("manual", "", int(now - 8 * DAY))
    assert gone.size == saved["paths"][0]["size"] > 0
    assert not old.exists() and recent.exists() and fresh.exists()
    assert blobs(tmp_path) == before - {f"{saved['paths'][0]['sha256']}.tar"}
    assert restore(tmp_path, "old") == "false"
    assert restore(tmp_path, "recent") == "true"


def test_the_least_recently_used_go_first_until_the_rest_fit_the_cap(tmp_path: Path) -> None:
    now = time.time()
    entries = {key: save(tmp_path, key, key * 3000) for key in ("a", "b", "c", "d")}
    for days, key in enumerate("cadb"):  # b used last, c first
        age(entries[key], 4 - days, now)
    sizes = {p.name: p.stat().st_size for p in (tmp_path / "state" / "cache" / "blobs").iterdir()}
    assert len(sizes) == 4
    one = max(sizes.values())
    evicted = collect(tmp_path / "state", max_unused_s=7 * DAY, max_bytes=2 * one, now=now)
    assert evicted is not None and [(e.key, e.reason) for e in evicted] == [
        ("c", "size"),
        ("a", "size"),
    ]
    assert sum(p.stat().st_size for p in (tmp_path / "state" / "cache" / "blobs").iterdir()) <= (
        2 * one
    )
    assert [restore(tmp_path, key) for key in "abcd"] == ["false", "true", "false", "true"]


def test_a_blob_two_entries_share_counts_once_and_stays_while_one_needs_it(
    tmp_path: Path,
) -> None:
    now = time.time()
    first, second = save(tmp_path, "one", "same"), save(tmp_path, "two", "same")
    assert len(blobs(tmp_path)) == 1  # content-addressed: one blob for both
    (blob,) = (tmp_path / "state" / "cache" / "blobs").iterdir()
    cap = blob.stat().st_size
    state = tmp_path / "state"
    # both fit a cap of one blob: the shared blob is counted once
    assert collect(state, max_unused_s=7 * DAY, max_bytes=cap, now=now) == []
    age(first, 8, now)
    evicted = collect(state, max_unused_s=7 * DAY, max_bytes=cap, now=now)
    assert evicted is not None and [e.key for e in evicted] == ["one"]
    assert blob.exists() and second.exists()
    assert restore(tmp_path, "two") == "true"


def test_leftovers_go_and_what_runner_did_not_write_is_neither_followed_nor_counted(
    tmp_path: Path,
) -> None:
    now = time.time()
    save(tmp_path, "k")
    root = tmp_path / "state" / "cache"
    (root / "blobs" / ".0123abcd.partial.tar").write_bytes(b"x" * 100)  # a save that died
    orphan = root / "blobs" / f"{'a' * 64}.tar"
    orphan.write_bytes(b"y" * 100)  # no entry needs it
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    foreign = root / "scopes" / "x" / "f.json"
    foreign.parent.mkdir()
    foreign.write_text(json.dumps({"key": "f", "event": "e", "ref": "r", "paths": "../.."}))
    age(foreign, 100, now)
    evicted = collect(root.parent, max_unused_s=7 * DAY, max_bytes=MAX_TOTAL_BYTES, now=now)
    assert evicted == []
    assert blobs(tmp_path) == {
        f"{json.loads(entry_of(tmp_path, 'k').read_text())['paths'][0]['sha256']}.tar"
    }
    assert foreign.exists() and outside.read_text() == "keep me"


def test_nothing_is_evicted_while_a_run_uses_the_cache_and_a_killed_run_does_not_block(
    tmp_path: Path,
) -> None:
    now = time.time()
    entry = save(tmp_path, "k")
    age(entry, 30, now)
    lock = tmp_path / "state" / "cache" / "lock"
    code = (
        "import fcntl, sys, time\n"
        "from pathlib import Path\n"
        "from runner.durable import flock\n"
        f"fd = flock(Path({str(lock)!r}), fcntl.LOCK_SH)\n"
        "print('holding', flush=True)\n"
        "time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        state = tmp_path / "state"
        assert collect(state, max_unused_s=7 * DAY, max_bytes=MAX_TOTAL_BYTES, now=now) is None
        assert entry.exists() and len(blobs(tmp_path)) == 1
    finally:
        holder.send_signal(signal.SIGKILL)  # a run killed mid-restore
        holder.wait(10)
        assert holder.stdout is not None
        holder.stdout.close()
    evicted = collect(tmp_path / "state", max_unused_s=7 * DAY, max_bytes=MAX_TOTAL_BYTES, now=now)
    assert evicted is not None and [e.key for e in evicted] == ["k"]
    assert not entry.exists() and blobs(tmp_path) == set()


def test_gc_never_waits_for_a_run_using_the_cache_it_leaves_it(tmp_path: Path) -> None:
    save(tmp_path, "k")
    held = flock(tmp_path / "state" / "cache" / "lock", fcntl.LOCK_SH)  # a run restoring
    try:
        assert collect(tmp_path / "state", max_unused_s=0, max_bytes=0, now=time.time()) is None
    finally:
        assert held is not None
        os.close(held)
    assert restore(tmp_path, "k") == "true"


def test_an_evicted_entry_serializes_every_ledger_field() -> None:
    evicted = Evicted(
        key="k", event="push", ref="refs/heads/main", sha256="d", size=3, last_used=7, reason="size"
    )
    assert evicted.serialize() == {
        "key": "k",
        "event": "push",
        "ref": "refs/heads/main",
        "sha256": "d",
        "size": 3,
        "last_used": 7,
        "reason": "size",
    }


@pytest.mark.parametrize("size", ["lots", "-1g", "10 zb", ""])
def test_gc_refuses_a_size_it_cannot_read_before_touching_anything(
    tmp_path: Path, size: str
) -> None:
    result = invoke(tmp_path / "state", "gc", "--cache-max-size", size)
    assert result.code == 2, result.err
    assert f"--cache-max-size {size!r} is not a size" in result.err
    assert "Traceback" not in result.err


def test_gc_refuses_negative_days(tmp_path: Path) -> None:
    result = invoke(tmp_path / "state", "gc", "--cache-days", "-1")
    assert result.code == 2, result.err
    assert "Traceback" not in result.err


@pytest.mark.docker
def test_gc_json_reports_each_eviction_and_the_ledger_records_it(tmp_path: Path) -> None:
    now = time.time()
    state = tmp_path / "state"
    old, kept = save(tmp_path, "old", "o"), save(tmp_path, "kept", "k")
    age(old, 3, now)
    result = invoke(state, "gc", "--json", "--cache-days", "2")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert [(c["key"], c["reason"]) for c in report["caches"]] == [("old", "unused")]
    assert report["caches_in_use"] is False
    assert not old.exists() and kept.exists()
    lines = (state / "ledger" / "entries.jsonl").read_text().splitlines()
    recorded = [json.loads(line) for line in lines if '"cache.evicted"' in line]
    assert [(e["key"], e["reason"], e["sha256"]) for e in recorded] == [
        ("old", "unused", report["caches"][0]["sha256"])
    ]
    human = invoke(state, "gc", "--cache-max-size", "0")
    assert human.code == 0, human.err
    assert "  evicted cache 'kept' (manual): over the cache size cap" in human.out.splitlines()


def test_a_key_holding_a_secret_is_never_written_to_the_cache(tmp_path: Path) -> None:
    """The cache outlives the run: a key made from a secret would put it on disk."""
    secret = "s3cr3t-'quoted\\-value"
    mission = MISSION.format(key="'deps-${{ secrets.TOKEN }}'", text="x").replace(
        "  j:\n", "  j:\n    permissions: {secrets: [TOKEN]}\n"
    )
    recorder = Recorder()
    outcome = run_mission(tmp_path, mission, secrets={"TOKEN": secret}, sink=Sink([recorder]))
    assert outcome.status() == {"j": ("success", "")}  # a refused save is a warning
    warnings = [e.message for e in recorder.events if isinstance(e, Annotation)]
    assert any("cache not saved: its key holds a secret" in w for w in warnings), warnings
    assert all(secret not in w for w in warnings)
    cache = tmp_path / "state" / "cache"
    held = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    forms = Redactor([secret])  # the secret in any form: raw, JSON-escaped, base64 ...
    assert not any(forms.masks(p.read_bytes().decode("utf-8", "replace")) for p in held)
    assert not list(cache.glob("scopes/*/*.json"))
