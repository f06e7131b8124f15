"""Where the trusted configuration comes from (runner.trusted): a git ref's objects, never
the working tree a pull request wrote; the invoker's own files; and always saying which."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import invoke

from runner.audit.keys import Signer, load_trusted, write_public
from runner.audit.ledger import Ledger
from runner.engine.catalog import load_catalog
from runner.errors import InvalidInput
from runner.policy.loader import load_trusted_policy
from runner.trusted import TrustedSource, context_digest, materialized, read_context

STRICT = "version: 1\nimages: [base]\ntools: [sh]\n"
LOOSE = "version: 1\nimages: [base]\ntools: [sh, curl]\n"


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose `main` holds the strict policy, a catalog, a key and an image,
    and whose working tree a pull request then changed."""
    root = tmp_path / "repo"
    (root / "policies" / "keys").mkdir(parents=True)
    (root / "containers" / "py").mkdir(parents=True)
    (root / "policies" / "default.yml").write_text(STRICT)
    (root / "policies" / "keys" / "main.pub").write_text("trusted key\n")
    (root / "containers" / "tools.yml").write_text("jq: {paths: [/usr/bin/jq]}\n")
    (root / "containers" / "py" / "Dockerfile").write_text("FROM base\n")
    os.symlink("Dockerfile", root / "containers" / "py" / "link")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "trusted")
    (root / "policies" / "default.yml").write_text(LOOSE)  # the pull request's change
    (root / "containers" / "py" / "Dockerfile").write_text("FROM base\nRUN evil\n")
    (root / "policies" / "keys" / "attacker.pub").write_text("attacker key\n")
    return root


def test_the_policy_comes_from_the_ref_and_says_the_working_tree_differs(repo: Path) -> None:
    policy = load_trusted_policy(TrustedSource(repo, ref="main"))
    assert policy.tools == ("sh",)
    commit = git(repo, "rev-parse", "main")
    assert policy.origin is not None
    assert policy.origin.describe() == (
        f"policies/default.yml at main (commit {commit[:12]}); the working tree's copy differs"
    )
    assert policy.origin.serialize()["commit"] == commit
    working = load_trusted_policy(TrustedSource(repo))
    assert working.tools == ("sh", "curl")
    assert working.origin is not None and working.origin.describe() == (
        "policies/default.yml (working tree)"
    )


def test_an_unchanged_working_tree_is_said_to_be_the_same(repo: Path) -> None:
    (repo / "policies" / "default.yml").write_text(STRICT)
    policy = load_trusted_policy(TrustedSource(repo, ref="main"))
    assert policy.origin is not None and policy.origin.differs is False


def test_a_ref_that_is_no_commit_is_an_error(repo: Path) -> None:
    with pytest.raises(InvalidInput, match=r"--trusted-ref nope: not a commit") as caught:
        TrustedSource(repo, ref="nope")
    assert caught.value.exit_code == 2
    with pytest.raises(InvalidInput, match="not a commit"):
        TrustedSource(repo, ref="--output=/tmp/x")  # never an option to git


def test_a_symlink_at_the_ref_is_refused_never_followed(repo: Path) -> None:
    (repo / "policies" / "default.yml").unlink()
    os.symlink("/etc/passwd", repo / "policies" / "default.yml")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "link")
    policy = load_trusted_policy(TrustedSource(repo, ref="main"))
    assert policy.denied == (
        "cannot read the policy policies/default.yml (is a symlink; a trusted file must be a "
        "regular file): everything is denied"
    )


def test_the_catalog_and_keys_come_from_the_ref(repo: Path) -> None:
    (repo / "containers" / "tools.yml").write_text("curl: {paths: [/usr/bin/curl]}\n")
    source = TrustedSource(repo, ref="main")
    catalog = load_catalog(source)
    assert catalog.own == ("jq",) and catalog.origin.differs is True  # runner's, plus jq
    assert "jq" in catalog.tools and "curl" not in catalog.tools
    keys, origin = source.key_files()
    assert [data for _, data in keys] == [b"trusted key\n"]
    assert origin.kind == "ref" and origin.differs is True
    working, _ = TrustedSource(repo).key_files()
    assert sorted(data for _, data in working) == [b"attacker key\n", b"trusted key\n"]


def test_a_build_context_comes_from_the_ref_as_the_engine_will_see_it(
    repo: Path, tmp_path: Path
) -> None:
    context = TrustedSource(repo, ref="main").build_context("py")
    assert context.origin.differs is True
    with materialized(context, tmp_path) as directory:
        assert (directory / "Dockerfile").read_text() == "FROM base\n"
        assert os.readlink(directory / "link") == "Dockerfile"
    (repo / "containers" / "py" / "Dockerfile").write_text("FROM base\n")
    assert TrustedSource(repo).build_context("py").digest == context.digest
    assert context_digest(read_context(repo, "containers/py")) == context.digest
    assert TrustedSource(repo, ref="main").image_names() == ["py"]


def test_the_invokers_policy_file_outside_is_compared_with_the_working_tree(
    repo: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "ci-policy.yml"
    mine.write_text(STRICT)
    policy = load_trusted_policy(TrustedSource(repo, policy=mine))
    assert policy.tools == ("sh",)
    assert policy.origin is not None
    assert policy.origin.describe() == (
        f"{mine} (given by the invoker); the working tree's copy differs"
    )


def test_audit_verify_trusts_the_refs_keys_not_the_pull_requests(
    in_tmp: Path, tmp_path: Path
) -> None:
    """An attacker who signs a ledger with their own key and commits its .pub passes a
    verify that trusts the working tree, and fails one that trusts the ref."""
    trusted, attacker = Signer.generate(), Signer.generate()
    write_public(in_tmp, trusted.public)
    git(in_tmp, "init", "-q", "-b", "main")
    git(in_tmp, "add", "-A")
    git(in_tmp, "commit", "-q", "-m", "trusted key")
    write_public(in_tmp, attacker.public)
    state = tmp_path / "state"
    with Ledger.open(state, signer=attacker) as ledger:
        ledger.append("gc.pruned", "r", {"runs": [], "containers": 0, "volumes": 0})
        ledger.checkpoint()
    assert invoke(state, "audit", "verify").code == 0
    done = invoke(state, "audit", "verify", "--trusted-ref", "main")
    assert done.code == 1
    assert "UNTRUSTED_KEY" in done.out
    keys = json.loads(invoke(state, "audit", "verify", "--trusted-ref", "main", "--json").out)
    assert keys["trusted_keys"] == [trusted.public.key_id]


def test_trusted_keys_are_never_read_through_a_link_or_a_fifo(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (tmp_path / "elsewhere.pub").write_text("not a key of this directory\n")
    os.symlink(tmp_path / "elsewhere.pub", keys / "linked.pub")
    with pytest.raises(InvalidInput, match=r"linked\.pub: is a symlink to"):
        load_trusted(keys)
    os.unlink(keys / "linked.pub")
    os.mkfifo(keys / "fifo.pub")
    with pytest.raises(InvalidInput, match=r"fifo\.pub: is a FIFO"):
        load_trusted(keys)
