"""The anchor store (issue 11): every run's final checkpoint kept outside the repository
and the state directory, and `audit verify` using it, so that a rewrite by someone who
holds the signing key and rewrites the whole state directory is still caught."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import invoke, runner_cli
from declared import run_started, step_finished
from forge import parsed, raw_lines, rechain, signed_notes, write_lines, write_notes

from runner.audit import anchors, checkpoint
from runner.audit.head import SignedHead, read_head, write_head
from runner.audit.keys import Signer, load_signer
from runner.audit.ledger import Ledger
from runner.audit.merkle import Frontier, leaf_hash


def signer_of(repo: Path) -> Signer:
    return load_signer(repo / ".runner", repo, create=False, say=print)


def fill(repo: Path, count: int, run_id: str) -> None:
    with Ledger.open(repo / ".runner", signer=signer_of(repo), repo=repo) as led:
        led.append("run.started", run_id, run_started())
        for i in range(count - 1):
            led.append("step.finished", run_id, step_finished(i))


@pytest.fixture
def repo(in_tmp: Path) -> Path:
    assert invoke(in_tmp / ".runner", "keys", "init").code == 0
    fill(in_tmp, 6, "r1")
    return in_tmp


def store_file(repo: Path) -> Path:
    origin = (repo / ".runner" / "ledger" / "origin").read_text().strip()
    return anchors.anchor_file(anchors.default_store(), origin)


def test_the_default_store_is_the_invoking_users_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Path.home()
    assert anchors.default_store() == home / ".local/share/runner/anchors"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert anchors.default_store() == tmp_path / "data/runner/anchors"


def test_checkpoint_appends_to_the_store_once(repo: Path) -> None:
    first = invoke(repo / ".runner", "audit", "checkpoint")
    assert first.code == 0, first.err
    assert f"appended to the anchor store: {store_file(repo)}" in first.out
    again = invoke(repo / ".runner", "audit", "checkpoint")
    assert again.code == 0
    texts = [t for _, t, _ in checkpoint.split_notes(store_file(repo).read_bytes())]
    assert len(texts) == 1 and texts[0] is not None
    assert checkpoint.parse(texts[0][:-1]).checkpoint.size == 6
    assert store_file(repo).stat().st_mode & 0o777 == 0o600


def test_verify_uses_the_store_and_says_so(repo: Path) -> None:
    assert invoke(repo / ".runner", "audit", "checkpoint").code == 0
    result = invoke(repo / ".runner", "audit", "verify")
    assert result.code == 0, result.out
    assert f"anchors checked: {store_file(repo)} (1 checkpoint(s) of this ledger)" in result.out
    assert "extends every anchor" in result.out and "UNANCHORED" not in result.out
    document = invoke(repo / ".runner", "audit", "verify", "--json").json()
    assert document["anchored"] is True and document["anchor_store"] == str(store_file(repo))


def rewrite_as_the_key_holder(repo: Path) -> None:
    """Rewrite history, re-sign every checkpoint with the real key, and rewrite runner's
    record to match: everything inside the state directory agrees with the forgery."""
    state = repo / ".runner"
    key = signer_of(repo)
    items = parsed(state)
    items[2]["name"] = "rewritten"
    lines = rechain(items)
    write_lines(state, lines)
    origin = items[0]["log"]
    notes = signed_notes(origin, lines, [len(lines)], key)
    write_notes(state, notes)
    frontier = Frontier()
    for line in lines:
        frontier.append(leaf_hash(line[:-1]))
    cp = checkpoint.parse(notes[-1]).checkpoint
    old = read_head(state)
    assert old is not None
    offset = sum(len(line) for line in lines)
    write_head(state, SignedHead(notes[-1], cp, frontier, offset, leaf_hash(lines[-1][:-1]), {}))


def test_a_rewrite_by_the_key_holder_is_caught_by_the_store(repo: Path) -> None:
    assert invoke(repo / ".runner", "audit", "checkpoint").code == 0
    rewrite_as_the_key_holder(repo)
    assert invoke(repo / ".runner", "audit", "checkpoint").code == 0  # the forgery is whole
    result = invoke(repo / ".runner", "audit", "verify", "--json")
    document = result.json()
    assert result.code == 1 and document["tampered"] is True
    mismatch = next(f for f in document["findings"] if f["code"] == "CHECKPOINT_MISMATCH")
    assert mismatch["file"] == str(store_file(repo)) and "rewritten" in mismatch["message"]
    assert mismatch["seq"] == 0  # re-linked: only "one of entries 0..5" can be said


def test_adoption_is_refused_when_the_store_contradicts_the_ledger(repo: Path) -> None:
    assert invoke(repo / ".runner", "audit", "checkpoint").code == 0
    rewrite_as_the_key_holder(repo)
    (repo / ".runner" / "keys" / "last-checkpoint.json").unlink()
    result = invoke(repo / ".runner", "audit", "checkpoint", "--adopt")
    assert result.code == 1 and "will not adopt" in result.err


def test_a_store_inside_the_state_dir_or_repository_is_refused(repo: Path) -> None:
    for inside in (repo / ".runner" / "anchors", repo / "audit"):
        result = invoke(repo / ".runner", "--anchor-store", str(inside), "audit", "checkpoint")
        assert result.code == 2 and "could rewrite it too" in result.err
        assert not inside.exists()


def test_the_default_store_inside_the_repository_is_skipped_with_a_warning(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(repo / "data"))
    result = invoke(repo / ".runner", "audit", "checkpoint")
    assert result.code == 0 and "not anchored: the default anchor store" in result.err
    assert not (repo / "data").exists()


def test_an_unwritable_store_is_a_warning_not_a_failure(repo: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the store should be\n")
    store = blocked / "anchors"
    result = invoke(repo / ".runner", "--anchor-store", str(store), "audit", "checkpoint")
    assert result.code == 0 and "warning: not anchored" in result.err
    assert "free disk space" in result.err  # it names the file and what to do


def test_a_hostile_origin_cannot_leave_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    for origin in ("../../etc/passwd", "..", ".", "a/" * 300):
        path = anchors.anchor_file(store, origin)
        assert path.parent == store and path.name.endswith(".notes")


def test_an_explicit_store_is_used_by_verify(repo: Path, tmp_path: Path) -> None:
    store = tmp_path / "compliance"
    assert invoke(repo / ".runner", "--anchor-store", str(store), "audit", "checkpoint").code == 0
    anchored = invoke(repo / ".runner", "--anchor-store", str(store), "audit", "verify")
    assert anchored.code == 0 and str(store) in anchored.out
    # without it (and nothing in the default store) verify says what it cannot prove
    unanchored = invoke(repo / ".runner", "audit", "verify")
    assert unanchored.code == 0 and "UNANCHORED" in unanchored.out


@pytest.mark.docker
def test_every_run_appends_its_final_checkpoint(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".missions").mkdir(parents=True)
    (repo / "policies").mkdir()
    (repo / ".missions" / "m.yml").write_text(
        textwrap.dedent(
            """\
            name: m
            on: [push]
            jobs:
              j: {steps: [{run: echo hi}]}
            """
        )
    )
    (repo / "policies" / "default.yml").write_text(
        "version: 1\nimages: [base]\ntools: [sh]\n"
        "limits: {timeout-minutes: 10, memory: 256m, cpus: 1, pids: 64}\n"
    )
    state = repo / ".runner"
    for _ in range(2):
        done = runner_cli(repo, state, "run", "--json")
        assert done.returncode == 0, done.stderr
    origin = (state / "ledger" / "origin").read_text().strip()
    path = anchors.anchor_file(anchors.default_store(), origin)
    texts = [t[:-1] for _, t, _ in checkpoint.split_notes(path.read_bytes()) if t]
    sizes = [checkpoint.parse(t).checkpoint.size for t in texts]
    assert len(sizes) == 2 and sizes[-1] == len(raw_lines(state))
    verified = runner_cli(repo, state, "audit", "verify")
    assert verified.returncode == 0 and "extends every anchor" in verified.stdout
