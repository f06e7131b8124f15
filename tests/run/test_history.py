"""A job's read-only `.git` (runner.run.history): the history only, never the invoker's
hooks, remotes or credentials; in a real container `git describe` works and nothing a
step does changes it."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import textwrap
from pathlib import Path

import pytest
from conftest import runner_cli

from runner.errors import InvalidInput
from runner.mission.model import Job, Step
from runner.run.history import copy_history, history_tar, wants_history

TOKEN = "ghp_s3cr3tT0ken\\with'quotes\""
HEADER = "AUTHORIZATION: basic c2VjcmV0LWhlYWRlcg=="


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def history_repo(root: Path) -> Path:
    """A repository with a tag, a commit after it, an executable hook, and a config
    holding credentials the way CI checkouts persist them."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    (root / "README").write_text("one\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    git(root, "tag", "v1.0")
    (root / "README").write_text("two\n")
    git(root, "commit", "-q", "-am", "second")
    git(root, "branch", "feature")
    git(root, "remote", "add", "origin", f"https://x:{TOKEN}@example.invalid/r.git")
    git(root, "config", "http.https://example.invalid/.extraheader", HEADER)
    hook = root / ".git" / "hooks" / "post-checkout"
    hook.write_text("#!/bin/sh\necho pwned > /tmp/pwned\n")
    hook.chmod(0o755)
    return root


def every_byte(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_only_a_checkout_with_fetch_depth_0_asks_for_the_history() -> None:
    def job(*steps: Step) -> Job:
        return Job(id="j", steps=steps)

    assert wants_history(job(Step(index=0, uses="actions/checkout@v4", with_={"fetch-depth": "0"})))
    assert not wants_history(job(Step(index=0, uses="actions/checkout@v4")))
    assert not wants_history(
        job(Step(index=0, uses="actions/checkout@v4", with_={"fetch-depth": "1"}))
    )
    assert not wants_history(job(Step(index=0, uses="./my-action", with_={"fetch-depth": "0"})))


def test_the_copy_holds_branches_and_tags_and_no_hook_remote_or_credential(
    tmp_path: Path,
) -> None:
    repo = history_repo(tmp_path / "repo")
    copy = tmp_path / "copy"
    copy_history(repo, copy)
    copied = every_byte(copy)
    assert TOKEN.encode() not in copied and b"c2VjcmV0LWhlYWRlcg" not in copied
    assert b"example.invalid" not in copied
    assert not (copy / "hooks").exists()
    assert [p for p in copy.rglob("*") if p.is_file() and p.stat().st_mode & 0o111] == []
    gitdir = ["--git-dir", str(copy)]
    assert git(tmp_path, *gitdir, "remote") == ""
    assert git(tmp_path, *gitdir, "describe", "--tags") == git(repo, "describe", "--tags")
    assert git(tmp_path, *gitdir, "describe", "--tags").startswith("v1.0-1-g")
    assert git(tmp_path, *gitdir, "branch", "--format=%(refname:short)").split() == [
        "feature",
        "main",
    ]
    assert git(tmp_path, *gitdir, "config", "core.bare") == "false"
    assert (copy / "index").is_file()  # `git status` compares the workspace with HEAD


def test_a_directory_that_is_not_a_repository_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as caught:
        copy_history(tmp_path, tmp_path / "copy")
    assert "is not a git repository" in caught.value.message
    assert "fetch-depth: 0" in caught.value.message and caught.value.hint


def test_the_tar_the_engine_extracts_is_owned_by_the_step_user_with_no_special_bits(
    tmp_path: Path,
) -> None:
    repo = history_repo(tmp_path / "repo")
    copy_history(repo, tmp_path / "copy")
    data = b"".join(history_tar(tmp_path / "copy", 4242)("hist"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    assert members[0].name == "hist" and members[0].isdir()
    assert all(m.name.startswith("hist/") for m in members[1:])
    assert all(m.isdir() or m.isfile() for m in members)
    assert {(m.uid, m.gid) for m in members} == {(4242, 4242)}
    assert all(m.mode & 0o7000 == 0 for m in members)
    assert "hist/HEAD" in {m.name for m in members}


DOCKERFILE = """\
FROM debian:bookworm-slim
RUN apt-get update \\
 && apt-get install -y --no-install-recommends git \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \\
 && chmod 1777 /tmp
USER 65534
"""

POLICY = """\
version: 1
images: [gitimage]
tools: [sh, git]
limits: {timeout-minutes: 10, memory: 1g, cpus: 1, pids: 256}
build: {from: ["debian:bookworm-slim"], network: [gitimage]}
"""

MISSION = """\
name: history
on: [push]
jobs:
  describe:
    container: gitimage
    tools: [sh, git]
    steps:
      - uses: actions/checkout@v4
        with: {fetch-depth: 0}
      - run: |
          echo "described $(git describe --tags)"
          echo "commits $(git rev-list --count HEAD)"
          test -z "$(git remote)" && echo no-remotes
          if (: > .git/planted) 2>/dev/null; then echo wrote-git; else echo git-read-only; fi
          if git update-ref refs/heads/evil HEAD 2>/dev/null; then echo wrote-ref; fi
          echo changed > README
          echo "status $(git status --porcelain)"
          git config --list
  plain:
    container: gitimage
    tools: [sh]
    steps:
      - uses: actions/checkout@v4
      - run: test -e .git && echo has-git || echo no-git
"""


@pytest.mark.docker
def test_a_step_runs_git_describe_on_a_read_only_history_of_the_repository(
    tmp_path: Path,
) -> None:
    repo = history_repo(tmp_path / "repo")
    for name, text in {
        "containers/gitimage/Dockerfile": DOCKERFILE,
        "policies/default.yml": POLICY,
        ".missions/history.yml": MISSION,
    }.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(textwrap.dedent(text))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the mission")  # v1.0-2-g...
    state = tmp_path / "state"
    done = runner_cli(repo, state, "run", "--json", ".missions/history.yml", timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    result = json.loads(done.stdout)
    events = (state / "runs" / result["run_id"] / "events.jsonl").read_text().splitlines()
    printed = [e["line"] for e in map(json.loads, events) if e.get("kind") == "output"]
    assert f"described {git(repo, 'describe', '--tags')}" in printed
    assert "commits 3" in printed
    assert "no-remotes" in printed
    assert "git-read-only" in printed and "wrote-git" not in printed
    assert "wrote-ref" not in printed
    assert "status  M README" in printed  # the index is HEAD's: the step's change shows
    assert "no-git" in printed and "has-git" not in printed  # only when asked for
    assert not any("example.invalid" in line or "extraheader" in line for line in printed)
    assert not (repo / ".git" / "planted").exists()
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"label=runner.run-id={result['run_id']}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert volumes == []  # the history went with its job
