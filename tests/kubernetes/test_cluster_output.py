"""A step's attach stream on Kubernetes without a cluster: its channels 1 and 2 are merged
by whole lines, and a stream that breaks passes on the partial lines it held before it
fails. The websocket is replaced at its seam (`recv_data_frame`); the same stream on a
real cluster: test_kubernetes_backend.py."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from websocket import ABNF, WebSocketConnectionClosedException

from runner.engine.kubernetes.cluster import Attached
from runner.errors import RunnerError


@dataclass
class _Frame:
    data: bytes


class _Socket:
    """The websocket's socket: `frames` as (channel, data), then the server's close frame,
    or the connection lost when `breaks`."""

    def __init__(self, frames: list[tuple[int, bytes]], *, breaks: bool = False) -> None:
        self._frames = [bytes([channel]) + data for channel, data in frames]
        self._breaks = breaks

    def recv_data_frame(self, control: bool) -> tuple[int, _Frame]:
        if self._frames:
            return ABNF.OPCODE_BINARY, _Frame(self._frames.pop(0))
        if self._breaks:
            raise WebSocketConnectionClosedException("Connection to remote host was lost.")
        return ABNF.OPCODE_CLOSE, _Frame(b"")

    def shutdown(self) -> None:
        pass


class _Stream:
    def __init__(self, sock: _Socket) -> None:
        self.sock = sock

    def close(self) -> None:
        pass


def test_the_attach_stream_merges_stdout_and_stderr_by_whole_lines() -> None:
    frames = [(2, b"sh: "), (1, b"@a=1\n"), (3, b"{}"), (2, b"rest\nend"), (1, b"last")]
    got = list(Attached(_Stream(_Socket(frames))).output())
    assert got == [b"@a=1\n", b"sh: rest\n", b"lastend"]  # the ends at the close frame


def test_a_broken_attach_stream_passes_on_what_it_held_then_fails() -> None:
    frames = [(1, b"whole\nhalf a li"), (2, b"err")]
    got: list[bytes] = []
    with pytest.raises(RunnerError, match="the output stream broke"):
        got.extend(Attached(_Stream(_Socket(frames, breaks=True))).output())
    assert got == [b"whole\n", b"half a lierr"]
