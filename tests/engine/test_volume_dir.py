"""Reading a step-written directory from the host must never leave it."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from runner.engine.docker.volume_dir import extract, lay_out, read_files
from runner.errors import InvalidInput


def test_reads_regular_files_and_leaves_out_missing_ones(tmp_path: Path) -> None:
    (tmp_path / "io").mkdir()
    (tmp_path / "io" / "0-1.output").write_bytes(b"word=hello\n")
    assert read_files(tmp_path, "io", ["0-1.output", "0-1.env"], 100) == {
        "0-1.output": b"word=hello\n"
    }
    assert read_files(tmp_path, "missing/dir", ["x"], 100) == {}


def test_a_symlinked_file_is_refused_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("root only")
    (tmp_path / "ws" / "io").mkdir(parents=True)
    (tmp_path / "ws" / "io" / "0-1.output").symlink_to(secret)
    with pytest.raises(InvalidInput, match="is a symbolic link"):
        read_files(tmp_path / "ws", "io", ["0-1.output"], 100)


def test_a_symlinked_directory_is_refused_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "0-1.output").write_text("host file")
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "io").symlink_to(outside)
    with pytest.raises(InvalidInput, match="'io' is not a directory"):
        read_files(tmp_path / "ws", "io", ["0-1.output"], 100)


def test_fifo_and_oversized_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "io").mkdir()
    os.mkfifo(tmp_path / "io" / "pipe")
    with pytest.raises(InvalidInput, match="not a regular file"):
        read_files(tmp_path, "io", ["pipe"], 100)
    (tmp_path / "io" / "big").write_bytes(b"x" * 101)
    with pytest.raises(InvalidInput, match="larger than 100 bytes"):
        read_files(tmp_path, "io", ["big"], 100)


def test_layout_and_extract_keep_owners_and_refuse_escapes(tmp_path: Path) -> None:
    lay_out(tmp_path, 65534)
    assert (tmp_path / "upper").stat().st_uid == 65534
    assert oct((tmp_path / "work").stat().st_mode & 0o777) == "0o700"
    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w") as tar:
        info = tarfile.TarInfo("a/b.txt")
        info.size, info.uid, info.gid = 2, 65534, 65534
        tar.addfile(info, io.BytesIO(b"hi"))
    extract(good.getvalue(), tmp_path / "upper")
    assert (tmp_path / "upper" / "a" / "b.txt").stat().st_uid == 65534
    bad = io.BytesIO()
    with tarfile.open(fileobj=bad, mode="w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(tarfile.OutsideDestinationError):
        extract(bad.getvalue(), tmp_path / "upper")
    assert not (tmp_path / "escape.txt").exists()
