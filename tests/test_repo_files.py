"""Reading the repository as untrusted input (runner.repo_files): every hostile shape a
pull request can give a file is refused by name, never followed out, never blocking,
never read whole when it is too large, and never quoted."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import repo_files
from runner.repo_files import RepoFileError, TooLarge

CANARY = "canary-5e1f0c9d-must-never-be-read"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository next to a canary file outside it."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "canary").write_text(CANARY)
    root = tmp_path / "repo"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f.yml").write_text("ok: 1\n")
    return root


def refused(root: Path, rel: str, limit: int = 1024) -> str:
    with pytest.raises(RepoFileError) as caught:
        repo_files.read_file(root, rel, limit=limit)
    text = str(caught.value)
    assert CANARY not in text
    return text


def test_a_regular_file_and_links_inside_are_read(repo: Path) -> None:
    os.symlink("b/f.yml", repo / "a" / "link.yml")
    os.symlink("a/b", repo / "dirlink")
    os.symlink("../../a/./b/../b/f.yml", repo / "a" / "b" / "twisted")
    for rel in ("a/b/f.yml", "a/link.yml", "dirlink/f.yml", "a/b/twisted", "a/../a/b/f.yml"):
        assert repo_files.read_file(repo, rel, limit=100) == b"ok: 1\n", rel
    assert repo_files.lookup(repo, "a/link.yml").real == "a/b/f.yml"


@pytest.mark.parametrize(
    ("make", "rel", "message"),
    [
        (
            lambda r: os.symlink(r.parent / "outside" / "canary", r / "abs"),
            "abs",
            "abs: is a symlink to {outside}/canary: runner reads only regular files inside "
            "the repository",
        ),
        (
            lambda r: os.symlink("../../outside/canary", r / "a" / "rel"),
            "a/rel",
            "a/rel: is a symlink to ../../outside/canary, outside the repository; runner "
            "reads only regular files inside the repository",
        ),
        (
            lambda r: os.symlink(r.parent / "outside", r / "a" / "dir"),
            "a/dir/canary",
            "a/dir: is a symlink to {outside}: runner reads only regular files inside the "
            "repository",
        ),
        (
            lambda r: os.symlink("..", r / "up"),
            "up/outside/canary",
            "up: is a symlink to .., outside the repository; runner reads only regular files "
            "inside the repository",
        ),
    ],
)
def test_links_out_of_the_repository_are_refused_by_name(
    repo: Path, make: object, rel: str, message: str
) -> None:
    make(repo)  # type: ignore[operator]
    assert refused(repo, rel) == message.format(outside=repo.parent / "outside")


def test_a_path_climbing_above_the_root_is_refused(repo: Path) -> None:
    assert refused(repo, "../outside/canary") == (
        "../outside/canary: climbs above the repository root; runner reads only regular "
        "files inside the repository"
    )
    assert refused(repo, "/etc/passwd").startswith("/etc/passwd: is an absolute path")


def test_git_and_runner_are_never_read_however_a_path_leads_there(repo: Path) -> None:
    for private in (".git", ".runner"):
        (repo / private).mkdir()
        (repo / private / "secret").write_text(CANARY)
        os.symlink(f"../{private}/secret", repo / "a" / f"via{private}")
        assert "which runner never reads" in refused(repo, f"{private}/secret")
        assert "which runner never reads" in refused(repo, f"a/via{private}")
        assert "which runner never reads" in refused(repo, f"a/../{private}/secret")


def test_a_symlink_loop_is_refused(repo: Path) -> None:
    os.symlink("loop2", repo / "loop1")
    os.symlink("loop1", repo / "loop2")
    assert refused(repo, "loop1") == "loop1: goes through more than 40 symlinks"


def test_special_files_are_refused_without_being_opened(repo: Path) -> None:
    os.mkfifo(repo / "fifo.yml")
    os.mknod(repo / "zero.yml", 0o600 | 0o020000, os.makedev(1, 5))  # /dev/zero
    os.symlink("/dev/zero", repo / "devlink.yml")
    started = time.monotonic()
    assert refused(repo, "fifo.yml") == (
        "fifo.yml: is a FIFO, not a regular file; runner reads only regular files inside "
        "the repository"
    )
    assert refused(repo, "zero.yml").startswith("zero.yml: is a device file, not a regular")
    assert refused(repo, "devlink.yml").startswith("devlink.yml: is a symlink to /dev/zero")
    assert refused(repo, "a").startswith("a: is a directory, not a regular file")
    assert time.monotonic() - started < 2  # nothing blocked


def test_a_hard_link_is_refused_as_possibly_from_outside(repo: Path) -> None:
    os.link(repo.parent / "outside" / "canary", repo / "hard.yml")
    assert refused(repo, "hard.yml").startswith("hard.yml: has 2 hard links")


def test_a_huge_sparse_file_costs_a_stat(repo: Path) -> None:
    with open(repo / "huge.yml", "wb") as handle:
        handle.truncate(10 * 1024**3)
    started = time.monotonic()
    with pytest.raises(TooLarge) as caught:
        repo_files.read_file(repo, "huge.yml", limit=1024 * 1024)
    assert time.monotonic() - started < 1
    assert caught.value.size == 10 * 1024**3
    assert str(caught.value) == "huge.yml: is 10737418240 bytes; the limit is 1048576 bytes"


def test_names_with_newlines_and_undecodable_bytes_are_shown_escaped(repo: Path) -> None:
    name = os.fsdecode(b"evil\n\x1b[31mname\xff.yml")
    os.symlink("/etc/passwd", os.path.join(repo, name))
    text = refused(repo, name)
    assert text.startswith("evil\\n\\x1b[31mname\\xff.yml: is a symlink to /etc/passwd")
    assert "\n" not in text and "\x1b" not in text


def test_missing_is_not_an_error_where_absence_is_allowed(repo: Path) -> None:
    assert repo_files.read_optional(repo, "nope.yml", limit=10) is None
    assert repo_files.read_optional(repo, "a/b/f.yml/deeper", limit=10) is None
    os.symlink("nowhere", repo / "dangling")
    assert repo_files.read_optional(repo, "dangling", limit=10) is None
    assert repo_files.list_dir(repo, "nope") is None
    assert refused(repo, "nope.yml") == "nope.yml: no such file"


def test_list_dir_does_not_follow_links_and_refuses_a_directory_linked_in(repo: Path) -> None:
    os.symlink(repo.parent / "outside" / "canary", repo / "a" / "x.yml")
    entries = repo_files.list_dir(repo, "a") or []
    assert [(e.rel, e.kind) for e in entries] == [("a/b", "dir"), ("a/x.yml", "link")]
    os.symlink(repo.parent / "outside", repo / "linked")
    with pytest.raises(RepoFileError, match="linked: is a symlink to"):
        repo_files.list_dir(repo, "linked")


@pytest.fixture
def deep(tmp_path: Path) -> Iterator[Path]:
    """A repository holding 10,000 nested directories (deeper than PATH_MAX allows to
    name), removed without recursion afterwards."""
    root = tmp_path / "deep"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    for _ in range(10_000):
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    with open(os.open("leaf.yml", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as handle:
        handle.write("deep: 1\n")
    os.close(fd)
    yield root
    subprocess.run(["rm", "-rf", str(root)], check=True)


def test_a_deep_tree_is_read_and_walked_within_bounds(deep: Path) -> None:
    rel = "/".join(["d"] * 10_000) + "/leaf.yml"
    assert repo_files.read_file(deep, rel, limit=100) == b"deep: 1\n"  # no PATH_MAX
    with pytest.raises(RepoFileError, match=r"is nested deeper than 64 levels"):
        list(repo_files.walk(deep, "d"))


def test_a_walk_is_bounded_in_entries_and_never_follows_links(repo: Path) -> None:
    os.symlink(repo.parent / "outside", repo / "a" / "out")
    walked = [(w.rel, w.kind, w.target) for w in repo_files.walk(repo, "a")]
    assert walked == [
        ("b", "dir", ""),
        ("b/f.yml", "file", ""),
        ("out", "link", str(repo.parent / "outside")),
    ]
    with pytest.raises(RepoFileError, match="holds more than 2 entries"):
        list(repo_files.walk(repo, "a", max_entries=2))


def test_write_new_file_never_writes_through_a_link(repo: Path) -> None:
    os.symlink(repo.parent / "outside", repo / "policies")
    with pytest.raises(RepoFileError, match="policies: is a symlink to"):
        repo_files.write_new_file(repo, "policies/keys/k.pub", b"key\n")
    assert sorted(os.listdir(repo.parent / "outside")) == ["canary"]
    assert repo_files.write_new_file(repo, "a/keys/k.pub", b"key\n") is True
    assert repo_files.write_new_file(repo, "a/keys/k.pub", b"other\n") is False
    assert (repo / "a" / "keys" / "k.pub").read_bytes() == b"key\n"


def test_a_file_outside_is_the_invokers_but_still_never_blocks(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(RepoFileError, match="is a FIFO, not a regular file"):
        repo_files.read_outside(tmp_path / "fifo", limit=10)
    (tmp_path / "real").write_text("x" * 20)
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert repo_files.read_outside(tmp_path / "link", limit=20) == b"x" * 20
    with pytest.raises(TooLarge):
        repo_files.read_outside(tmp_path / "link", limit=19)


def test_locate_tells_inside_from_outside(repo: Path) -> None:
    assert repo_files.locate(repo, repo / "a" / "b" / "f.yml") == "a/b/f.yml"
    assert repo_files.locate(repo, repo / "a" / ".." / "x") == "x"
    assert repo_files.locate(repo, repo.parent / "outside" / "canary") is None
    os.symlink(repo, repo.parent / "shortcut")
    assert repo_files.locate(repo, repo.parent / "shortcut" / "a" / "x") == "a/x"
