"""The one use of the Docker SDK's private API, kept here and pinned by a test
(`tests/engine/test_docker_backend.py`) so that an SDK release that changes it fails a
test instead of a run.

`attach(api, cid, stdin=...)` is the body of the SDK's public `APIClient.attach(stream=True)`
without its two costs for runner: it inspects the container first (one more engine call
per step), and its stream's `close()` leaves the socket open once the stream has ended (a
leaked socket per step). Here: the attach request (with stdin too when asked, for
runner-init's environment), the multiplexed frames of a container without a TTY, and the
response closed when the reader is done. The frames are read a block at a time
(`payloads`: up to `READ_BYTES` a read, what that read completed of every payload joined
into one chunk), not with the SDK's two polled reads per frame: a step printing small
writes is read at the socket's speed. stdout and stderr are merged line by line, each
stream's partial line held until its newline (`runner.engine.lines.LineAligner`), so a
fragment of one never glues onto a line of the other (busybox `sh` writes `sh: ` and the
rest of an error apart); only a test of the wire itself reads it unaligned. `attach_stdin`
is the same connection for stdin only, and `send` writes to an attached stdin and closes
its direction. With `ends` (a `runner.engine.stepinit.trailer.StreamEnds`), each stream's
payloads go through it before they are aligned, so runner-init's trailer is stripped from
the end of stdout and stderr, and the attach's stdin gets runner-init's ack (`Stdin.ack`)
the moment both streams have ended with it, whatever line is still open: only then does
runner-init exit, so the engine cannot close the attach before the last bytes reached
runner (Podman 4.3 did, on fast steps under load). Containers run
with the `none` log driver, so there are no logs to replay: attaching happens before
start, and nothing is missed. The attach asks for the stream only (`logs=0`): with
`logs=1`, dockerd subscribes the connection to the output, replays the log, then streams
what it buffered meanwhile, so a line printed in between came twice (a step's first line,
in ~2% of fast steps under load; `tests/engine/test_attach_once.py`).

`build(api, params, context)` is the SDK's public `APIClient.build` without what hides its
response: a build must be cancellable (Ctrl-C, a timeout), and the engine cancels one when
its connection goes, so `BuildStream.cancel` shuts that connection down.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, cast

import docker
from docker.utils.json_stream import json_stream
from docker.utils.socket import read as socket_read

from runner.engine.lines import LineAligner
from runner.engine.stepinit.contract import ACK
from runner.engine.stepinit.trailer import StreamEnds

# the private members used below, checked by the test that pins them
PRIVATE = ("_post", "_url", "_raise_for_status", "_read_from_socket", "_get_raw_response_socket")
READ_BYTES = 256 * 1024
HEADER = 8  # a frame's: stream (1 byte), 3 zero bytes, payload length (4 bytes, big endian)


class Stdin:
    """The write side of an attach connection, and the response that holds it open."""

    def __init__(self, raw: Any, response: Any, *, owns: bool) -> None:
        self._raw = getattr(raw, "_sock", raw)  # the socket under the SDK's SocketIO
        self._response = response
        self._owns = owns  # a stdin-only connection: closed once sent

    def send(self, data: bytes, *, then_ack: bool = True) -> None:
        """Write `data` (runner-init reads its length-prefixed blob); unless `then_ack`
        is False, then what `ack` writes, for runner-init to find once the step is done
        (nobody reads this container's output: there is nothing to wait for). A container
        that already died leaves the step's own error to be reported."""
        try:
            self._raw.sendall(data + ACK if then_ack else data)
        except OSError:
            self.close()
            return
        if then_ack:
            self._done()

    def ack(self) -> None:
        """Tell runner-init its trailers arrived (so it may exit), and half-close."""
        with contextlib.suppress(OSError):
            self._raw.sendall(ACK)
        self._done()

    def _done(self) -> None:
        with contextlib.suppress(OSError):
            self._raw.shutdown(socket.SHUT_WR)
        self.close()

    def close(self) -> None:
        """Close a stdin-only connection (an output one closes with its reader)."""
        if self._owns:
            self._response.close()

    def abandon(self) -> None:
        """Close the connection, output and all: its container will never start, and
        the engine would keep an attach to it open after it is removed."""
        self._response.close()


def _post_attach(api: docker.APIClient, cid: str, params: dict[str, int]) -> Any:
    client = cast(Any, api)
    response = client._post(
        client._url("/containers/{0}/attach", cid),
        headers={"Connection": "Upgrade", "Upgrade": "tcp"},
        params={**params, "logs": 0, "stream": 1},
        stream=True,
    )
    try:
        client._raise_for_status(response)
    except BaseException:
        response.close()
        raise
    return response


def attach(
    api: docker.APIClient,
    cid: str,
    *,
    stdin: bool = False,
    ends: StreamEnds | None = None,
    aligned: bool = True,
) -> tuple[Iterator[bytes], Stdin | None]:
    """stdout and stderr of container `cid`, as they come, line by line, until it exits
    (the connection is closed when the iterator is), and its stdin when `stdin`. With
    `ends`, runner-init's trailer is stripped and acked on that stdin; `aligned=False`
    reads the wire as the engine sent it (see the module docstring)."""
    client = cast(Any, api)
    response = _post_attach(api, cid, {"stdout": 1, "stderr": 1, "stdin": int(stdin)})
    try:
        writer = None
        if stdin:
            writer = Stdin(client._get_raw_response_socket(response), response, owns=False)
        ack = writer.ack if writer is not None else None
        frames = payloads(client._get_raw_response_socket(response), ends, ack, aligned=aligned)
    except BaseException:
        response.close()
        raise
    return _closing(frames, response), writer


def payloads(
    sock: Any,
    ends: StreamEnds | None = None,
    ack: Callable[[], None] | None = None,
    *,
    aligned: bool = True,
) -> Iterator[bytes]:
    """The payloads of a multiplexed attach stream (no TTY), as they come: each chunk is
    what one read brought of them, frame headers taken out, a frame cut across reads
    continued in the next chunk, and both streams merged by whole lines (a stream's
    partial line held until its newline; unless not `aligned`: in arrival order). Ends at
    end of stream, or with the error that broke it once what was held is passed on. With
    `ends`, each stream's payloads go through it first (runner-init's trailer held back
    and stripped), `ack` is called once both streams have ended with the trailer, and what
    `ends` held back that was output goes on with its stream at the end."""
    lines = LineAligner() if aligned else None
    header = b""
    remaining = 0  # bytes of the current frame's payload still to come
    stream = 1  # the current frame's
    acked = ack is None
    while True:
        try:
            data = socket_read(sock, READ_BYTES)
        except OSError:
            rest = _held(ends, lines)
            if rest:
                yield rest
            raise
        if data is None:  # interrupted (EINTR, EAGAIN): read again
            continue
        if not data:
            rest = _held(ends, lines)
            if rest:
                yield rest
            return
        out: list[bytes] = []
        pos, size = 0, len(data)
        while pos < size:
            if remaining:
                piece = data[pos : pos + remaining]
                remaining -= len(piece)
                pos += len(piece)
                if ends is not None:
                    piece = ends.feed(stream, piece)
                out.append(piece if lines is None else lines.feed(stream, piece))
                continue
            take = data[pos : pos + HEADER - len(header)]
            header += take
            pos += len(take)
            if len(header) == HEADER:
                stream = header[0]
                remaining = int.from_bytes(header[4:], "big")
                header = b""
        if not acked and ends is not None and ends.ended:
            acked = True
            cast(Callable[[], None], ack)()
        chunk = out[0] if len(out) == 1 else b"".join(out)
        if chunk:
            yield chunk


def _held(ends: StreamEnds | None, lines: LineAligner | None) -> bytes:
    """What is held at the end of the stream that is output: what `ends` held back of
    each stream, through that stream's `lines`, then what `lines` holds."""
    held = ends.finish() if ends is not None else {}
    if lines is None:
        return b"".join(held.values())
    out = [lines.feed(stream, rest) for stream, rest in held.items()]
    out.append(lines.finish())
    return b"".join(out)


def attach_stdin(api: docker.APIClient, cid: str) -> Stdin:
    """The stdin of container `cid` alone (its output is not read)."""
    client = cast(Any, api)
    response = _post_attach(api, cid, {"stdout": 0, "stderr": 0, "stdin": 1})
    try:
        return Stdin(client._get_raw_response_socket(response), response, owns=True)
    except BaseException:
        response.close()
        raise


def _closing(frames: Iterator[bytes], response: Any) -> Iterator[bytes]:
    try:
        yield from frames
    finally:
        response.close()


class BuildStream:
    """One `POST /build` in flight: `items()` are the engine's decoded progress messages,
    `cancel()` (from any thread) shuts its connection down, which makes dockerd cancel the
    build (its running step is killed) and `items()` end."""

    def __init__(self, response: Any) -> None:
        self._response = response

    def items(self) -> Iterator[dict[str, Any]]:
        chunks = self._response.iter_content(chunk_size=None)
        try:
            for item in json_stream(chunks):
                yield item if isinstance(item, dict) else {"stream": str(item)}
        finally:
            self._response.close()

    def cancel(self) -> None:
        sock = getattr(self._response.raw.connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def build(api: docker.APIClient, params: Mapping[str, Any], context: IO[bytes]) -> BuildStream:
    """Start building the tar `context` with the API's query `params` (the SDK's public
    `build` hides its response, so a build could not be cancelled)."""
    client = cast(Any, api)
    response = client._post(
        client._url("/build"),
        params=dict(params),
        data=context,
        headers={"Content-Type": "application/x-tar"},
        stream=True,
        timeout=None,
    )
    try:
        client._raise_for_status(response)
    except BaseException:
        response.close()
        raise
    return BuildStream(response)
