"""stdout and stderr merged by whole lines, without an engine: however the two streams are
cut and interleaved, every line of the merged output is one stream's, each stream's lines
come out whole and in order, an overlong line goes out in pieces (memory stays flat),
nothing is lost or added, and the unterminated ends come last, stdout's first. The
readers that use it: Docker's (`sdk.payloads`, with runner-init's trailer) here, on a
socket; in real containers, test_output_lines.py; on a cluster, tests/kubernetes."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.engine.docker import sdk
from runner.engine.lines import LINE_BOUND, LineAligner
from runner.engine.stepinit import contract
from runner.engine.stepinit.trailer import STDERR, STDOUT, StreamEnds
from runner.run.step_output import MAX_LINE

NONCE = "0123456789abcdef0123456789abcdef"
MARK = contract.trailer_of(NONCE)
# each stream's lines are written in letters of its own, so a glued line shows both
LETTERS = {STDOUT: "abcdefghijklm", STDERR: "nopqrstuvwxyz"}


def text_of(lines: list[str], ended: bool) -> bytes:
    return ("\n".join(lines) + ("\n" if ended and lines else "")).encode()


def stream_lines(stream: int, max_size: int = 30) -> st.SearchStrategy[list[str]]:
    return st.lists(st.text(alphabet=LETTERS[stream], min_size=1, max_size=max_size), max_size=12)


def interleave(
    aligner: LineAligner, texts: dict[int, bytes], cuts: list[int], turns: list[bool]
) -> bytes:
    """Feed both streams' `texts` cut into pieces of the sizes `cuts` gives, the stream
    of each piece chosen by `turns` (True: stderr), then `finish()`."""
    at = {STDOUT: 0, STDERR: 0}
    out: list[bytes] = []
    turn = 0
    while any(at[s] < len(texts[s]) for s in texts):
        stream = STDERR if turns[turn % len(turns)] else STDOUT
        if at[stream] >= len(texts[stream]):
            stream = STDOUT if stream == STDERR else STDERR
        size = cuts[turn % len(cuts)]
        turn += 1
        out.append(aligner.feed(stream, texts[stream][at[stream] : at[stream] + size]))
        at[stream] += size
    out.append(aligner.finish())
    return b"".join(out)


def merged_lines(merged: bytes) -> list[str]:
    lines = merged.decode().split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def of_stream(lines: list[str], stream: int) -> list[str]:
    """The lines of `stream`, after checking that no line holds both streams' letters."""
    for line in lines:
        assert set(line) <= set(LETTERS[STDOUT]) or set(line) <= set(LETTERS[STDERR]), line
    return [line for line in lines if line and line[0] in LETTERS[stream]]


@settings(max_examples=400, deadline=None)
@given(
    out=stream_lines(STDOUT),
    err=stream_lines(STDERR),
    ended=st.tuples(st.booleans(), st.booleans()),
    cuts=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30),
    turns=st.lists(st.booleans(), min_size=1, max_size=30),
)
def test_two_streams_cut_anywhere_come_out_as_each_streams_whole_lines(
    out: list[str],
    err: list[str],
    ended: tuple[bool, bool],
    cuts: list[int],
    turns: list[bool],
) -> None:
    texts = {STDOUT: text_of(out, ended[0]), STDERR: text_of(err, ended[1])}
    lines = merged_lines(interleave(LineAligner(), texts, cuts, turns))
    if out and err and not any(ended):  # both ends unterminated: they come as they are
        assert lines[-1] == out[-1] + err[-1]
        lines, out, err = lines[:-1], out[:-1], err[:-1]
    assert of_stream(lines, STDOUT) == out
    assert of_stream(lines, STDERR) == err
    assert len(lines) == len(out) + len(err)  # no line added, none lost


def test_every_split_of_a_fragment_a_line_and_its_end_comes_out_whole() -> None:
    """The defect as measured: `sh: ` on stderr, a stdout line, the rest of stderr's
    line, each cut at every offset."""
    out, err = b"@sock=1\n", b"sh: can't create /proc/sys/kernel/core_pattern\n"
    for cut_err in range(1, len(err)):
        for cut_out in range(1, len(out)):
            aligner = LineAligner()
            merged = b"".join(
                [
                    aligner.feed(STDERR, err[:cut_err]),
                    aligner.feed(STDOUT, out[:cut_out]),
                    aligner.feed(STDOUT, out[cut_out:]),
                    aligner.feed(STDERR, err[cut_err:]),
                    aligner.finish(),
                ]
            )
            assert merged == out + err, (cut_err, cut_out)


@settings(max_examples=300, deadline=None)
@given(
    out=stream_lines(STDOUT, max_size=40),
    err=stream_lines(STDERR, max_size=40),
    ended=st.tuples(st.booleans(), st.booleans()),
    bound=st.integers(min_value=1, max_value=16),
    cuts=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30),
    turns=st.lists(st.booleans(), min_size=1, max_size=30),
)
def test_a_line_over_the_bound_goes_out_in_pieces_and_nothing_is_lost_or_added(
    out: list[str],
    err: list[str],
    ended: tuple[bool, bool],
    bound: int,
    cuts: list[int],
    turns: list[bool],
) -> None:
    """Each stream's bytes come out in order, no newline added; the other stream's bytes
    share a line only with a piece of an overlong line, or as the ends, last."""
    texts = {STDOUT: text_of(out, ended[0]), STDERR: text_of(err, ended[1])}
    merged = interleave(LineAligner(bound), texts, cuts, turns).decode()
    for stream, text in texts.items():
        mine = "".join(char for char in merged if char in LETTERS[stream])
        assert mine == text.decode().replace("\n", "")
    assert merged.count("\n") == sum(text.count(b"\n") for text in texts.values())
    lines = merged_lines(merged.encode())
    for at, line in enumerate(lines[:-1]):  # the last may be the two ends, as they are
        letters = LETTERS[STDOUT] if line[:1] in LETTERS[STDOUT] else LETTERS[STDERR]
        run = len(line) - len(line.lstrip(letters))  # its first stream's bytes
        assert run == len(line) or run > bound, (at, line)  # both streams: after a piece


def test_an_overlong_partial_line_is_passed_on_and_not_held() -> None:
    aligner = LineAligner()
    first = aligner.feed(STDOUT, b"x" * LINE_BOUND)
    assert first == b""  # up to the bound: held, its line may still end
    piece = aligner.feed(STDOUT, b"x" * 1000)
    assert piece == b"x" * (LINE_BOUND + 1000)  # past it: passed on, nothing kept
    assert aligner.feed(STDERR, b"err\n") == b"err\n"  # whole (after the piece, as it is)
    assert aligner.feed(STDOUT, b"end\n") == b"end\n"  # the rest of the overlong line
    assert aligner.finish() == b""
    after_a_line = b"a line\n" + b"z" * (LINE_BOUND + 10)  # one payload: a line, then too much
    assert aligner.feed(STDOUT, after_a_line) == after_a_line
    assert aligner.finish() == b""
    fed = passed = 0
    for _ in range(200):  # 12.5 MiB without a newline: never more than the bound held
        fed += 50_000
        passed += len(aligner.feed(STDERR, b"y" * 50_000))
        assert fed - passed <= LINE_BOUND


def test_the_bound_is_the_pumps_line_bound() -> None:
    assert LINE_BOUND == MAX_LINE


def test_a_piece_is_cut_between_characters_never_inside_one() -> None:
    """A 2-, 3- and 4-byte character across the bound, its line fed a byte at a time,
    stays whole though the other stream's line comes between the pieces."""
    for char in ("é", "€", "😀"):
        for offset in range(4):
            aligner = LineAligner(bound=16)
            line = ("a" * offset + char * 12).encode()
            merged = b""
            for at in range(len(line)):
                merged += aligner.feed(STDOUT, line[at : at + 1])
                if merged and b"err" not in merged:  # the first piece went: stderr now
                    merged += aligner.feed(STDERR, b"err\n")
            merged += aligner.feed(STDOUT, b"\n") + aligner.finish()
            text = merged.decode("utf-8")  # strict: a split character fails here
            assert text.replace("err", "", 1).replace("\n", "") == line.decode(), (char, offset)


def test_the_ends_come_last_stdout_first_as_they_are() -> None:
    aligner = LineAligner()
    assert aligner.feed(STDERR, b"err 1\nerr end") == b"err 1\n"
    assert aligner.feed(STDOUT, b"out end") == b""
    assert aligner.feed(3, b"an engine's own") == b""  # any other stream: its own lines
    assert aligner.finish() == b"out enderr endan engine's own"  # nothing added
    assert aligner.finish() == b""  # nothing held twice


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def serve(
    wire: bytes, pieces: int, before_close: Callable[[], None] = lambda: None
) -> socket.socket:
    """A socket that delivers `wire` in `pieces` writes, calls `before_close`, then ends."""
    ours, theirs = socket.socketpair()

    def writer() -> None:
        step = max(1, len(wire) // pieces)
        for at in range(0, len(wire), step):
            theirs.sendall(wire[at : at + step])
        before_close()
        theirs.close()

    threading.Thread(target=writer, daemon=True).start()
    return ours


def read(sock: socket.socket, chunks: Iterator[bytes]) -> bytes:
    try:
        return b"".join(chunks)
    finally:
        sock.close()


def test_the_docker_reader_merges_by_whole_lines_by_default() -> None:
    wire = frame(STDERR, b"sh: ") + frame(STDOUT, b"@a=1\n") + frame(STDERR, b"rest\n")
    for pieces in (1, len(wire)):  # one read, a byte a read
        ours = serve(wire, pieces)
        assert read(ours, sdk.payloads(ours)) == b"@a=1\nsh: rest\n"
        raw = serve(wire, pieces)
        assert read(raw, sdk.payloads(raw, aligned=False)) == b"sh: @a=1\nrest\n"


def test_the_docker_reader_aligns_however_the_frames_are_cut() -> None:
    """Random payloads of both streams, frames cut anywhere across reads: what comes out
    is what each whole payload in turn makes, one stream's line by one."""
    rng = random.Random(15)
    payloads = [
        (1 + i % 2, rng.randbytes(rng.choice([0, 1, 7, 60, 4096, sdk.READ_BYTES + 5])))
        for i in range(80)
    ]
    held = {STDOUT: b"", STDERR: b""}
    expected = b""
    for stream, data in payloads:  # the model: each stream's text up to its last newline
        held[stream] += data
        end = held[stream].rfind(b"\n") + 1
        expected += held[stream][:end]
        held[stream] = held[stream][end:]
    expected += held[STDOUT] + held[STDERR]
    wire = b"".join(frame(stream, data) for stream, data in payloads)
    for pieces in (3, 97, 1000):
        ours = serve(wire, pieces)
        assert read(ours, sdk.payloads(ours)) == expected


def test_the_trailer_after_a_partial_line_leaves_that_line_last_and_is_acked() -> None:
    """`abc` and runner-init's trailer on stdout, no newline: `abc` is the last line, and
    runner-init is acked once both trailers came, not when the stream ends (runner-init
    exits only once acked: waiting for the end would wait for its 5 s bound)."""
    acked = threading.Event()
    saw_ack_before_end: list[bool] = []
    wire = (
        frame(STDOUT, b"abc")
        + frame(STDERR, b"err 1\nerr")
        + frame(STDOUT, MARK[:7])
        + frame(STDERR, b" 2\n" + MARK)
        + frame(STDOUT, MARK[7:])
    )
    for pieces in (1, len(wire)):
        acked.clear()
        ours = serve(wire, pieces, lambda: saw_ack_before_end.append(acked.wait(5)))
        got = read(ours, sdk.payloads(ours, StreamEnds(NONCE), acked.set))
        assert got == b"err 1\nerr 2\nabc"
    assert saw_ack_before_end == [True, True]


def test_the_trailers_own_held_bytes_go_on_with_their_stream() -> None:
    """A stream cut inside what could have been the trailer: those bytes were stderr's
    partial line and end it, not stdout's."""
    ends = StreamEnds(NONCE)
    wire = frame(STDOUT, b"out") + frame(STDERR, b"err" + MARK[:9]) + frame(STDOUT, MARK)
    ours = serve(wire, 1)
    assert read(ours, sdk.payloads(ours, ends)) == b"outerr" + MARK[:9]
    assert ends.missing == ["stderr"]


class _Breaking:
    """A socket that delivers what its peer wrote, then fails as a reset connection does."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def recv(self, size: int) -> bytes:
        data = self._sock.recv(size)
        if not data:
            raise ConnectionResetError(104, "Connection reset by peer")
        return data


def test_a_broken_stream_passes_on_the_partial_lines_it_held_then_fails() -> None:
    ours = serve(frame(STDOUT, b"whole\nhalf a li") + frame(STDERR, b"err"), 1)
    got: list[bytes] = []
    with pytest.raises(ConnectionResetError):
        got.extend(sdk.payloads(_Breaking(ours)))
    ours.close()
    assert b"".join(got) == b"whole\nhalf a lierr"
