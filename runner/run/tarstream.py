"""Tar archives written as a stream of chunks, never whole in memory.

`header(info)` is a member's header blocks (PAX, as `tarfile` writes them), `content`
its data in chunks padded to the 512-byte block, `END` the two zero blocks that close an
archive. The repository snapshot (`runner.run.snapshot`) and a consumed artifact placed
under its path (`runner.run.workspace`) stream through them into the engine.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterator
from typing import IO

from runner.errors import InvalidInput

BLOCK = 512
CHUNK = 1024 * 1024
END = b"\0" * (2 * BLOCK)


def header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")


def content(
    handle: IO[bytes], size: int, what: str, seen: Callable[[bytes], None] | None = None
) -> Iterator[bytes]:
    """`size` bytes of `handle` in chunks (each also given to `seen`), then the padding;
    InvalidInput when `handle` ends first (the file shrank while it was copied)."""
    remaining = size
    while remaining:
        chunk = handle.read(min(CHUNK, remaining))
        if not chunk:
            raise InvalidInput(f"{what} changed while runner copied it; run again")
        if seen is not None:
            seen(chunk)
        remaining -= len(chunk)
        yield chunk
    if size % BLOCK:
        yield b"\0" * (BLOCK - size % BLOCK)
