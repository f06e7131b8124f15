"""`actions/cache`, built in (runner.run.cache), in real containers on the real engine:
a miss saved at the end of a successful job, the second run restoring it, restore-keys,
GitHub's scoping (a pull_request run reads the default branch's push caches, a push run
never reads what a pull_request run wrote), every save and restore in the ledger with the
entry's digest, and a cache holding a link out of its directory refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import runner_cli

from runner.audit.ledger import ENTRIES

pytestmark = pytest.mark.docker

POLICY = """\
version: 1
images: [base]
tools: [sh, cat, mkdir, ln]
limits: {timeout-minutes: 10, memory: 256m, cpus: 1, pids: 64}
"""

MISSION = """\
name: ci
on: [push, pull_request]
jobs:
  build:
    tools: [sh, cat, mkdir]
    steps:
      - id: deps
        uses: actions/cache@v4
        with:
          path: |
            .cache/deps
            stamp.txt
          key: deps-${{ github.event_name }}-v1
          restore-keys: deps-
      - run: |
          echo "hit=${{ steps.deps.outputs.cache-hit }} matched=${{ steps.deps.outputs.cache-matched-key }}"
          cat .cache/deps/lib.txt stamp.txt 2>/dev/null || echo "nothing cached"
          mkdir -p .cache/deps
          echo "lib of ${{ github.event_name }}" > .cache/deps/lib.txt
          echo "stamp of ${{ github.event_name }}" > stamp.txt
"""


def _run(repo: Path, state: Path, *args: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    done = runner_cli(repo, state, "run", "--json", *args)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    lines = (state / "runs" / result["run_id"] / "events.jsonl").read_text().splitlines()
    return result, [json.loads(line) for line in lines]


def _printed(events: list[dict[str, Any]]) -> list[str]:
    return [e["line"] for e in events if e["kind"] == "output"]


def _repo(tmp_path: Path, mission: str) -> Path:
    repo = tmp_path / "repo"
    (repo / ".missions").mkdir(parents=True)
    (repo / "policies").mkdir()
    (repo / ".missions" / "ci.yml").write_text(mission)
    (repo / "policies" / "default.yml").write_text(POLICY)
    return repo


def test_the_second_run_restores_and_a_pull_request_never_feeds_a_push(tmp_path: Path) -> None:
    repo, state = _repo(tmp_path, MISSION), tmp_path / "state"
    main = ("--ref", "refs/heads/main")
    _, first = _run(repo, state, "--event", "push", *main)
    assert _printed(first) == ["hit=false matched=", "nothing cached"]
    (saved,) = [e for e in first if e["kind"] == "cache.saved"]
    assert (saved["key"], saved["event"], saved["ref"]) == (
        "deps-push-v1",
        "push",
        "refs/heads/main",
    )

    _, second = _run(repo, state, "--event", "push", *main)
    assert _printed(second) == [
        "hit=true matched=deps-push-v1",
        "lib of push",
        "stamp of push",
    ]
    (restored,) = [e for e in second if e["kind"] == "cache.restored"]
    assert (restored["matched"], restored["sha256"]) == ("deps-push-v1", saved["sha256"])
    assert not [e for e in second if e["kind"] == "cache.saved"]  # a hit saves nothing

    # a pull request reads the default branch's push cache by its restore key, and
    # saves its own key in its own scope
    pr = ("--event", "pull_request", "--ref", "refs/pull/7/merge")
    _, third = _run(repo, state, *pr)
    assert _printed(third) == ["hit=false matched=deps-push-v1", "lib of push", "stamp of push"]
    (pr_saved,) = [e for e in third if e["kind"] == "cache.saved"]
    assert (pr_saved["key"], pr_saved["event"]) == ("deps-pull_request-v1", "pull_request")
    _, fourth = _run(repo, state, *pr)
    assert _printed(fourth)[:2] == ["hit=true matched=deps-pull_request-v1", "lib of pull_request"]

    # a push on main asking for the pull request's key by prefix never gets it
    push_reads_pr = MISSION.replace("restore-keys: deps-", "restore-keys: deps-pull_request")
    (repo / ".missions" / "ci.yml").write_text(push_reads_pr)
    _, fifth = _run(repo, state, "--event", "push", *main)
    assert _printed(fifth)[0] == "hit=true matched=deps-push-v1"
    (repo / ".missions" / "ci.yml").write_text(
        push_reads_pr.replace("key: deps-${{ github.event_name }}-v1", "key: other")
    )
    _, sixth = _run(repo, state, "--event", "push", *main)
    assert _printed(sixth) == ["hit=false matched=", "nothing cached"]

    ledger = [json.loads(x) for x in (state / "ledger" / ENTRIES).read_text().splitlines()]
    sealed = [(e["type"], e["key"], e["sha256"]) for e in ledger if e["type"].startswith("cache.")]
    assert sealed == [
        ("cache.saved", "deps-push-v1", saved["sha256"]),
        ("cache.restored", "deps-push-v1", saved["sha256"]),
        ("cache.restored", "deps-pull_request-v1", saved["sha256"]),
        ("cache.saved", "deps-pull_request-v1", pr_saved["sha256"]),
        ("cache.restored", "deps-pull_request-v1", pr_saved["sha256"]),
        ("cache.restored", "deps-push-v1", saved["sha256"]),
        ("cache.saved", "other", sealed_digest(ledger, "other")),
    ]


def sealed_digest(ledger: list[dict[str, Any]], key: str) -> str:
    (entry,) = [e for e in ledger if e["type"] == "cache.saved" and e["key"] == key]
    return str(entry["sha256"])


HOSTILE = """\
name: ci
on: [push]
jobs:
  build:
    tools: [sh, mkdir, ln]
    steps:
      - uses: actions/cache@v4
        with: {path: .cache, key: evil}
      - run: |
          mkdir -p .cache
          ln -s /etc/passwd .cache/passwd
          ln -s ../../etc .cache/up
"""


def test_a_cache_holding_a_link_out_of_its_directory_is_not_saved(tmp_path: Path) -> None:
    repo, state = _repo(tmp_path, HOSTILE), tmp_path / "state"
    result, events = _run(repo, state, "--event", "push", "--ref", "refs/heads/main")
    assert result["jobs"]["build"]["status"] == "success"  # as GitHub: a warning
    assert not [e for e in events if e["kind"] == "cache.saved"]
    (warning,) = [e["message"] for e in events if e["kind"] == "annotation"]
    assert warning.startswith("cache 'evil' not saved: "), warning
    assert "passwd" in warning or "up" in warning
    assert not list((state / "cache" / "scopes").glob("*/*.json"))


def test_a_changed_blob_restores_nothing_and_a_changed_entry_is_not_followed(
    tmp_path: Path,
) -> None:
    repo, state = _repo(tmp_path, MISSION), tmp_path / "state"
    main = ("--event", "push", "--ref", "refs/heads/main")
    _run(repo, state, *main)
    (entry_file,) = (state / "cache" / "scopes").glob("*/*.json")
    entry = json.loads(entry_file.read_text())
    blob = state / "cache" / "blobs" / f"{entry['paths'][0]['sha256']}.tar"
    original = blob.read_bytes()
    blob.write_bytes(original.replace(b"lib of push", b"lib of evil"))
    done = runner_cli(repo, state, "run", "--json", *main)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1
    job = json.loads(done.stdout)["jobs"]["build"]
    assert "is missing or changed since it was saved" in job["reason"], job["reason"]
    blob.write_bytes(original)
    entry["paths"][0]["path"] = "../../escape"  # a changed entry: a miss, never followed
    entry_file.write_text(json.dumps(entry))
    _, events = _run(repo, state, *main)
    assert _printed(events)[:2] == ["hit=false matched=", "nothing cached"]


SPLIT = """\
name: ci
on: [push]
jobs:
  build:
    tools: [sh, cat, mkdir]
    steps:
      - id: restore
        uses: actions/cache/restore@v4
        with: {path: out, key: split-1}
      - run: |
          echo "hit=${{ steps.restore.outputs.cache-hit }}"
          cat out/made.txt 2>/dev/null || echo "nothing cached"
          mkdir -p out && echo made > out/made.txt
      - uses: actions/cache/save@v4
        with: {path: out, key: split-1}
      - run: echo "after the save" > out/late.txt
"""


def test_cache_restore_and_cache_save_restore_and_save_at_their_own_steps(
    tmp_path: Path,
) -> None:
    repo, state = _repo(tmp_path, SPLIT), tmp_path / "state"
    main = ("--event", "push", "--ref", "refs/heads/main")
    _, first = _run(repo, state, *main)
    assert _printed(first) == ["hit=false", "nothing cached"]
    (saved,) = [e for e in first if e["kind"] == "cache.saved"]  # by the save step only
    assert saved["key"] == "split-1"
    (repo / ".missions" / "ci.yml").write_text(
        SPLIT.replace("cat out/made.txt", "cat out/made.txt out/late.txt")
    )
    _, second = _run(repo, state, *main)
    # saved at its step: the file written after it is not in the cache
    assert _printed(second)[:2] == ["hit=true", "made"]
    assert "after the save" not in _printed(second)
