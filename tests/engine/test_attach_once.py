"""Every line a step prints reaches runner exactly once: never twice, never lost.

A step's first output line was recorded twice (in events.jsonl too) in about 2% of job
instances under load. The cause was the attach request asking for `logs=1` as well as
`stream=1`: dockerd subscribes the attach to the container's output, sends its 101, then
replays the log file before streaming what it buffered since the subscription, so a line
printed in between came both from the log and from the stream (reproduced with the old
request: 4 of 200 fast containers, 8 at a time). Now the attach asks for the stream only,
containers log nothing (`none` driver), and runner-init starts the step only once its
environment arrived over that same attach connection, which dockerd forwards only after
it subscribed the connection to the output: nothing is printed before the subscription,
so nothing needs replaying.
"""

from __future__ import annotations

import socket
import struct
import threading
import uuid
from collections import Counter
from typing import Any

import pytest

from runner.engine.backend import LABEL_RUN, ContainerSpec
from runner.engine.docker import sdk
from runner.engine.docker.hardening import container_config

MiB = 1024 * 1024


class _Api:
    """The SDK's private API as `sdk.attach` uses it: the request it sends is recorded."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.sockets: list[socket.socket] = []

    def _url(self, path: str, *args: str) -> str:
        return path.format(*args)

    def _post(self, url: str, *, headers: dict[str, str], params: dict[str, Any], **_: Any) -> Any:
        self.posted.append((url, params, headers))
        return self

    def _raise_for_status(self, response: Any) -> None:
        pass

    def _get_raw_response_socket(self, response: Any) -> Any:
        """A real socket holding one multiplexed stdout frame, then the end of stream."""
        ours, theirs = socket.socketpair()
        theirs.sendall(struct.pack(">BxxxL", 1, 5) + b"frame")
        theirs.close()
        self.sockets.append(ours)
        return ours

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def test_the_attach_asks_for_the_stream_only_and_carries_the_steps_stdin() -> None:
    api = _Api()
    frames, stdin = sdk.attach(api, "c1", stdin=True)  # type: ignore[arg-type]
    assert list(frames) == [b"frame"] and stdin is not None
    ((url, params, headers),) = api.posted
    assert url == "/containers/c1/attach"
    assert params == {"stdout": 1, "stderr": 1, "stdin": 1, "logs": 0, "stream": 1}
    assert headers == {"Connection": "Upgrade", "Upgrade": "tcp"}
    sdk.attach_stdin(api, "c2")  # type: ignore[arg-type]
    assert api.posted[1][1]["logs"] == 0
    api.close()
    config = container_config(_spec("r", ["true"]))
    assert config["log_config"] == {"type": "none", "config": {}}  # nothing to replay
    assert config["stdin_open"] is True


def _spec(run_id: str, command: list[str]) -> ContainerSpec:
    return ContainerSpec(
        image="runner-base/busybox:latest",
        command=command,
        env={},
        labels={LABEL_RUN: run_id},
        memory_bytes=64 * MiB,
        cpus=1.0,
        pids=32,
    )


@pytest.mark.docker
def test_fast_steps_started_many_at_a_time_print_each_line_once(backend: Any) -> None:
    """The load that showed the duplicates: short steps, several started at once."""
    run_id = "t" + uuid.uuid4().hex[:12]
    seen: dict[int, Counter[str]] = {}
    errors: list[BaseException] = []

    def one(n: int) -> None:
        cid = backend.create(_spec(run_id, ["sh", "-c", f"echo first-{n}; echo err-{n} >&2"]))
        try:
            output = backend.attach_output(cid)
            backend.start(cid)
            seen[n] = Counter(b"".join(output).decode().split())
        finally:
            backend.remove(cid)

    def worker(first: int) -> None:
        try:
            for n in range(first, 24, 6):
                one(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert seen == {n: Counter({f"first-{n}": 1, f"err-{n}": 1}) for n in range(24)}
