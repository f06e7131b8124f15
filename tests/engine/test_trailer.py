"""runner's side of runner-init's trailer, without an engine: the trailer is stripped
exactly however the frames and reads cut it, only the exact trailer at the very end of a
stream counts, runner-init is acked once both streams have ended, and an attach that ends
without both trailers is an incomplete output the backend reports (unless runner itself
stopped the container). The program's side, in real containers: test_output_complete.py."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from runner.engine.backend import OutputIncomplete
from runner.engine.docker import sdk
from runner.engine.docker.backend import DockerBackend
from runner.engine.stepinit import contract
from runner.engine.stepinit.trailer import STDERR, STDOUT, StreamEnds

NONCE = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"
MARK = contract.trailer_of(NONCE)
NOTHING = {STDOUT: b"", STDERR: b""}  # what `finish()` returns when no stream held output


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def through(ends: StreamEnds, pieces: list[tuple[int, bytes]]) -> dict[int, bytes]:
    """What `ends` passes on of each stream, `finish()` included (attributed by stream
    for the test: finish gives stdout's held bytes, then stderr's)."""
    out = {STDOUT: b"", STDERR: b""}
    for stream, data in pieces:
        out[STDERR if stream == STDERR else STDOUT] += ends.feed(stream, data)
    return out


def test_the_trailer_is_a_nul_prefix_and_the_nonce_without_a_newline() -> None:
    assert b"\0runner-init-end:" + NONCE.encode() == MARK
    assert b"\n" not in MARK and MARK.count(b"\0") == 1
    nonce = contract.new_nonce()
    assert len(nonce) == 32 and set(nonce) <= set("0123456789abcdef")
    assert nonce != contract.new_nonce()


@pytest.mark.parametrize("cut", range(len(MARK)))
def test_a_trailer_split_at_any_offset_is_stripped_and_ends_its_stream(cut: int) -> None:
    ends = StreamEnds(NONCE)
    out = through(
        ends,
        [
            (STDOUT, b"last line without newline"),
            (STDOUT, MARK[:cut]),
            (STDERR, b"err\n" + MARK[:cut]),
            (STDOUT, MARK[cut:]),
        ],
    )
    assert not ends.ended  # stderr's trailer is not whole yet
    out[STDERR] += ends.feed(STDERR, MARK[cut:])
    assert ends.ended
    assert ends.finish() == NOTHING and ends.missing == []
    assert out == {STDOUT: b"last line without newline", STDERR: b"err\n"}


@pytest.mark.parametrize("size", [1, 2, 5, len(MARK)])
def test_a_trailer_fed_a_few_bytes_at_a_time_is_stripped(size: int) -> None:
    ends = StreamEnds(NONCE)
    wire = b"a\0b\0" + MARK
    out = b"".join(ends.feed(STDOUT, wire[at : at + size]) for at in range(0, len(wire), size))
    out += ends.feed(STDERR, MARK)
    assert ends.ended and out == b"a\0b\0" and ends.finish() == NOTHING


def test_a_trailer_with_another_nonce_is_output_and_the_stream_is_incomplete() -> None:
    ends = StreamEnds(NONCE)
    fake = contract.trailer_of(OTHER)
    out = through(ends, [(STDOUT, b"x" + fake), (STDERR, fake[:10]), (STDERR, fake[10:])])
    assert not ends.ended
    rest = ends.finish()
    assert out[STDOUT] + out[STDERR] + rest[STDOUT] + rest[STDERR] == b"x" + fake + fake
    assert out[STDOUT] + rest[STDOUT] == b"x" + fake  # each stream's own, with its stream
    assert ends.missing == ["stdout", "stderr"]


def test_the_trailer_mid_stream_is_output_and_only_the_last_one_ends_it() -> None:
    """A step that printed the exact trailer (it cannot know the nonce; if it did) and
    went on: what it printed is passed on whole, and only the stream's end counts."""
    ends = StreamEnds(NONCE)
    out = through(ends, [(STDOUT, b"a" + MARK), (STDOUT, b"b\n"), (STDERR, MARK + b"c")])
    assert out == {STDOUT: b"a" + MARK + b"b\n", STDERR: MARK + b"c"}
    assert not ends.ended
    out = through(ends, [(STDOUT, MARK), (STDERR, MARK)])
    assert ends.ended and out == {STDOUT: b"", STDERR: b""}
    assert ends.finish() == NOTHING and ends.missing == []


def test_an_output_without_trailers_is_incomplete_and_nothing_of_it_is_lost() -> None:
    ends = StreamEnds(NONCE)
    out = through(ends, [(STDOUT, b"partial\0runner-init-e"), (STDERR, MARK[:-1])])
    assert out == {STDOUT: b"partial", STDERR: b""}
    assert ends.finish() == {STDOUT: b"\0runner-init-e", STDERR: MARK[:-1]}
    assert ends.missing == ["stdout", "stderr"]
    only_err = StreamEnds(NONCE)
    through(only_err, [(STDOUT, MARK)])
    assert only_err.finish() == NOTHING and only_err.missing == ["stderr"]


def test_an_engines_own_stream_passes_through() -> None:
    ends = StreamEnds(NONCE)
    assert ends.feed(3, b"\0runner-init-end:") == b"\0runner-init-end:"
    assert ends.feed(0, b"written as stdout" + MARK) == b"written as stdout"
    ends.feed(STDERR, MARK)
    assert ends.ended


@settings(max_examples=300, deadline=None)
@given(
    out=st.binary(max_size=300),
    err=st.binary(max_size=300),
    noise=st.sampled_from([b"", b"\0", MARK[:9], MARK, MARK[:-1], b"\0runner"]),
    cuts=st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=40),
    complete=st.booleans(),
)
def test_any_output_cut_anywhere_comes_out_exact(
    out: bytes, err: bytes, noise: bytes, cuts: list[int], complete: bool
) -> None:
    """Output holding NULs and pieces of the trailer, cut into frames anywhere and the two
    streams interleaved: each comes out exactly as printed, and complete only with both
    trailers."""
    out, err = noise + out + noise, err + noise
    tail = MARK if complete else MARK[: len(cuts) % len(MARK)]  # cut anywhere, or none
    assume(complete or not (err + tail).endswith(MARK))  # the step printed the trailer last
    streams = {STDOUT: out + MARK, STDERR: err + tail}
    positions = {STDOUT: 0, STDERR: 0}
    got = {STDOUT: b"", STDERR: b""}
    ends = StreamEnds(NONCE)
    turn = 0
    while any(positions[s] < len(streams[s]) for s in streams):
        stream = (STDOUT, STDERR)[turn % 2]
        size = cuts[turn % len(cuts)]
        turn += 1
        data = streams[stream][positions[stream] : positions[stream] + size]
        positions[stream] += len(data)
        if data:
            got[stream] += ends.feed(stream, data)
    assert ends.ended is complete
    rest = ends.finish()
    if complete:
        assert got == {STDOUT: out, STDERR: err} and rest == NOTHING
        assert ends.missing == []
    else:
        assert got[STDOUT] == out and rest[STDOUT] == b""
        assert got[STDERR] + rest[STDERR] == err + tail
        assert ends.missing == ["stderr"]


def _serve(wire: bytes, pieces: int = 7) -> socket.socket:
    """A socket that delivers `wire` in `pieces` writes, then the end of the stream."""
    ours, theirs = socket.socketpair()

    def writer() -> None:
        step = max(1, len(wire) // pieces)
        for at in range(0, len(wire), step):
            theirs.sendall(wire[at : at + step])
        theirs.close()

    threading.Thread(target=writer, daemon=True).start()
    return ours


def test_the_reader_acks_once_both_trailers_came_and_passes_the_rest_on() -> None:
    wire = (
        frame(1, b"one\n")
        + frame(2, b"two")
        + frame(1, MARK[:20])
        + frame(1, MARK[20:])
        + frame(2, MARK)
    )
    acks: list[int] = []
    ours = _serve(wire, pieces=len(wire))  # a byte a read: the trailer split everywhere
    try:
        got = b"".join(sdk.payloads(ours, StreamEnds(NONCE), lambda: acks.append(1)))
    finally:
        ours.close()
    assert got == b"one\ntwo" and acks == [1]


def test_the_reader_never_acks_a_stream_cut_before_its_trailer() -> None:
    ends = StreamEnds(NONCE)
    acks: list[int] = []
    ours = _serve(frame(1, b"one\n" + MARK) + frame(2, b"err\n" + MARK[:30]))
    try:
        got = b"".join(sdk.payloads(ours, ends, lambda: acks.append(1)))
    finally:
        ours.close()
    assert got == b"one\nerr\n" + MARK[:30]  # the cut trailer was output, as far as runner knows
    assert acks == [] and ends.missing == ["stderr"]


class _Api:
    """The SDK's private API as `sdk.attach` uses it, answering with `wire`."""

    base_url = "http+docker://localhost"

    def __init__(self, wire: bytes) -> None:
        self.wire = wire
        self.sent = b""
        self._ours: socket.socket | None = None

    def _url(self, path: str, *args: str) -> str:
        return path.format(*args)

    def _post(self, url: str, **_: Any) -> Any:
        return self

    def _raise_for_status(self, response: Any) -> None:
        pass

    def _get_raw_response_socket(self, response: Any) -> socket.socket:
        if self._ours is None:
            self._ours = _serve(self.wire)
        return self._ours

    def close(self) -> None:
        if self._ours is not None:
            self._ours.close()


class _Client:
    def __init__(self, api: _Api) -> None:
        self.api = api


def _backend(wire: bytes) -> tuple[DockerBackend, str]:
    backend = DockerBackend(_Client(_Api(wire)))  # type: ignore[arg-type]
    backend._nonces["c1"] = NONCE  # as `create` leaves it
    return backend, "c1"


def _read(backend: DockerBackend, cid: str, before_end: Callable[[], None] = lambda: None) -> bytes:
    chunks = backend.attach_output(cid)
    before_end()
    return b"".join(chunks)


def test_the_backend_reports_an_output_cut_before_its_trailer() -> None:
    backend, cid = _backend(frame(1, b"the first half\n") + frame(2, MARK))
    with pytest.raises(OutputIncomplete, match=r"its stdout ended without runner-init's trailer"):
        _read(backend, cid)
    whole, cid = _backend(frame(1, b"all of it\n" + MARK) + frame(2, MARK))
    assert _read(whole, cid) == b"all of it\n"


@pytest.mark.parametrize("stop", ["kill", "remove"])
def test_a_container_runner_stopped_itself_has_no_end_to_miss(stop: str) -> None:
    backend, cid = _backend(frame(1, b"cut by a timeout\n"))
    api = backend.api
    stopping = getattr(backend, stop)
    api.kill = api.remove_container = lambda *_, **__: None  # type: ignore[attr-defined]
    assert _read(backend, cid, lambda: stopping(cid)) == b"cut by a timeout\n"
    assert backend._reading == set() and backend._stopped == set()  # nothing kept per step
