"""The one use of the Docker SDK's private API, kept here and pinned by a test
(`tests/engine/test_docker_backend.py`) so that an SDK release that changes it fails a
test instead of a run.

`attach(api, cid)` is the body of the SDK's public `APIClient.attach(stream=True)`
without its two costs for runner: it inspects the container first (one more engine call
per step), and its stream's `close()` leaves the socket open once the stream has ended (a
leaked socket per step). Here: the attach request, the multiplexed frames of a container
without a TTY, and the response closed when the reader is done.

`build(api, params, context)` is the SDK's public `APIClient.build` without what hides its
response: a build must be cancellable (Ctrl-C, a timeout), and the engine cancels one when
its connection goes, so `BuildStream.cancel` shuts that connection down.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Mapping
from typing import IO, Any, cast

import docker
from docker.utils.json_stream import json_stream

# the private members used below, checked by the test that pins them
PRIVATE = ("_post", "_url", "_raise_for_status", "_read_from_socket")


def attach(api: docker.APIClient, cid: str) -> Iterator[bytes]:
    """stdout and stderr of container `cid` (with what it printed already), as they come,
    until it exits; the connection is closed when the iterator is."""
    client = cast(Any, api)
    response = client._post(
        client._url("/containers/{0}/attach", cid),
        headers={"Connection": "Upgrade", "Upgrade": "tcp"},
        params={"logs": 1, "stdout": 1, "stderr": 1, "stream": 1},
        stream=True,
    )
    try:
        client._raise_for_status(response)
        frames: Iterator[bytes] = client._read_from_socket(response, True, False)
    except BaseException:
        response.close()
        raise
    return _closing(frames, response)


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
