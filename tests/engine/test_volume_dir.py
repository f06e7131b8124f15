"""Reading a step-written directory from the host must never leave it; the quota is a
filesystem of the quota's size; nothing is ever extracted on the host."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from runner.engine.docker import volume_dir
from runner.engine.docker.volume_dir import lay_out, read_files
from runner.errors import InvalidInput

MiB = 1024 * 1024


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


def test_a_hard_link_is_refused_whatever_it_points_at(tmp_path: Path) -> None:
    """A step can only link what its container sees, but runner does not rely on that: a
    file with a second name is not read."""
    secret = tmp_path / "host-secret"
    secret.write_text("root only")
    secret.chmod(0o600)
    (tmp_path / "ws" / "io").mkdir(parents=True)
    os.link(secret, tmp_path / "ws" / "io" / "0-1.env")
    with pytest.raises(InvalidInput, match=r"0-1\.env is a hard link"):
        read_files(tmp_path / "ws", "io", ["0-1.env"], 100)


def test_layout_keeps_owners(tmp_path: Path) -> None:
    lay_out(tmp_path, 65534)
    assert (tmp_path / "upper").stat().st_uid == 65534
    assert oct((tmp_path / "work").stat().st_mode & 0o777) == "0o700"


def test_nothing_is_extracted_on_the_host() -> None:
    """Files enter volumes through the engine only (`DockerBackend.create_snapshot`,
    `put_workspace`): the host-side extraction is gone, not just unused."""
    assert not hasattr(volume_dir, "extract")


@pytest.mark.docker  # root and loop devices, as a local engine's runner has
def test_a_quota_is_a_filesystem_of_its_size_that_goes_with_its_unmount(tmp_path: Path) -> None:
    root = tmp_path / "volume"
    root.mkdir()
    volume_dir.mount_quota(root, 32 * MiB)
    try:
        assert volume_dir.mounted(root)
        lay_out(root, 65534)
        assert not volume_dir.full(root)
        filler = subprocess.run(
            ["dd", "if=/dev/zero", f"of={root / 'upper' / 'fill'}", "bs=1M", "count=64"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert filler.returncode != 0 and "No space left on device" in filler.stderr
        assert volume_dir.full(root)
        image = tmp_path / "volume" / volume_dir.QUOTA_IMAGE
        assert not image.exists()  # hidden under the mount: no step can reach it
    finally:
        volume_dir.unmount(root)
    assert not volume_dir.mounted(root)
    image = root / volume_dir.QUOTA_IMAGE
    assert image.stat().st_blocks * 512 <= 32 * MiB  # the host disk held no more than it
    volume_dir.unmount(root)  # not mounted: nothing to do
