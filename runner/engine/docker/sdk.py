"""The one use of the Docker SDK's private API, kept here and pinned by a test
(`tests/engine/test_docker_backend.py`) so that an SDK release that changes it fails a
test instead of a run.

`attach(api, cid)` is the body of the SDK's public `APIClient.attach(stream=True)`
without its two costs for runner: it inspects the container first (one more engine call
per step), and its stream's `close()` leaves the socket open once the stream has ended (a
leaked socket per step). Here: the attach request, the multiplexed frames of a container
without a TTY, and the response closed when the reader is done.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import docker

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
