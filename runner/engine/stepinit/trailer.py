"""runner's side of runner-init's trailer: strip it from the end of both streams, and say
whether each stream ended with it (so that the output read is the step's whole output).

runner-init (`--trailer`, see `contract`) ends stdout and stderr with `trailer_of(nonce)`
once nothing else in the container can write to them, then waits for runner's ack.
`StreamEnds.feed(stream, data)` is given every payload of a stream as it comes and returns
what to pass on now: everything but a suffix that could be the start of the trailer, held
back until more of that stream shows what it was. The trailer may arrive split across
frames and reads at any offset; only the exact trailer counts, and only at the end of its
stream: the same bytes followed by more output were the step's (passed on whole), and a
trailer with another nonce is output like any other. `ended` says both streams end with
the trailer right now (runner then acks); after the end of the attach, `finish()` returns
what was held back of each stream that was not the trailer (output, to pass on with its
stream: the reader aligns each stream's lines, `runner.engine.lines`) and `missing` names
the streams that did not end with it: their end was lost. What is passed on is each
stream's own bytes, not yet merged: the trailer is found per stream, and the ack never
waits for a line to end.

The trailer starts with a NUL, which text output rarely holds, so finding where it could
start costs one `rfind` over the last few dozen bytes of each payload.
"""

from __future__ import annotations

from runner.engine.stepinit.contract import trailer_of

STDOUT, STDERR = 1, 2  # the Docker API's stream numbers (0, stdin, is written as stdout)
NAMES = {STDOUT: "stdout", STDERR: "stderr"}


class StreamEnds:
    """The trailer of one container's stdout and stderr (see the module docstring)."""

    def __init__(self, nonce: str) -> None:
        self.trailer = trailer_of(nonce)
        self._first = self.trailer[:1]
        self._held = {STDOUT: b"", STDERR: b""}

    def feed(self, stream: int, data: bytes) -> bytes:
        """What of `data` (the next payload of `stream`) to pass on now."""
        if stream not in (0, STDOUT, STDERR):
            return data  # an engine's own message (a stream runner-init never writes)
        key = STDERR if stream == STDERR else STDOUT
        held = self._held[key]
        text = held + data if held else data
        keep = self._overlap(text)
        if keep == 0:
            self._held[key] = b""
            return text
        cut = len(text) - keep
        self._held[key] = text[cut:]
        return text[:cut]

    def _overlap(self, text: bytes) -> int:
        """The length of the longest suffix of `text` that is a prefix of the trailer."""
        size = len(self.trailer)
        at = text.find(self._first, max(0, len(text) - size))
        while at != -1:
            if self.trailer.startswith(text[at:]):
                return len(text) - at
            at = text.find(self._first, at + 1)
        return 0

    @property
    def ended(self) -> bool:
        """Both streams end with the trailer (so far: the engine has delivered them)."""
        return all(held == self.trailer for held in self._held.values())

    def finish(self) -> dict[int, bytes]:
        """At the end of the attach: what was held back of each stream that is output
        (stdout's, then stderr's; empty where it was the trailer), so that each goes on
        with its own stream; `missing` then names the streams without one."""
        return {key: b"" if held == self.trailer else held for key, held in self._held.items()}

    @property
    def missing(self) -> list[str]:
        """The streams that do not end with the trailer (lost their end, after `finish`)."""
        return [NAMES[key] for key, held in self._held.items() if held != self.trailer]
