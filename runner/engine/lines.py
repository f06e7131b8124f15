"""Whole lines of each of a container's output streams, merged into one stream of bytes.

A container's stdout and stderr are two pipes, and an engine delivers their payloads as
they come, cut wherever the program's writes were: busybox `sh` writes an error as `sh: `
and then the rest of it. Merged as they came, a partial line of one stream glued onto a
line of the other (`sh: @sock=1`), and a workflow command on stdout that a stderr fragment
prefixed was no command: an `::add-mask::` line not honoured, its value later printed
unmasked. GitHub's runner reads each stream line by line on its own; so does runner:
`LineAligner.feed(stream, data)` returns what of `data` may join the merged output now
(the stream's held partial line, then `data` up to its last newline) and holds the rest,
per stream. Both backends' readers merge through it (`runner.engine.docker.sdk.payloads`,
`runner.engine.kubernetes.cluster.Attached.output`), so the merged bytes are whole lines
of each stream, each on a line of its own, in the order their ends arrived, and the step's
output pump (`runner.run.step_output`) splits them into lines as they are.

Two things are passed on as they are, without their newline, so that memory stays flat
and nothing is lost or added: a partial line longer than `LINE_BOUND` (64 KiB, the pump's
`MAX_LINE`: the pump passes such a line on in pieces anyway), cut between UTF-8
characters, and, from `finish()` at the end of the attach, each stream's unterminated
last line, stdout's first. Only there can the other stream's bytes follow on the same
line. A partial line waits here instead of in the pump, so nothing a user sees is later.
"""

from __future__ import annotations

LINE_BOUND = 64 * 1024  # bytes; runner.run.step_output.MAX_LINE (the engine cannot import it)


class LineAligner:
    """Each stream's partial line, held until its newline (see the module docstring)."""

    def __init__(self, bound: int = LINE_BOUND) -> None:
        self._bound = bound
        self._held: dict[int, bytearray] = {}  # each stream's partial line (grown in place)

    def feed(self, stream: int, data: bytes) -> bytes:
        """What of `data` (the next bytes of `stream`, any stream number) to merge now."""
        held = self._held.get(stream)
        if held is None:
            held = self._held[stream] = bytearray()
        end = data.rfind(b"\n") + 1
        if not end:
            held += data
            return self._piece(held) if len(held) > self._bound else b""
        if held:
            held += memoryview(data)[:end]
            lines = bytes(held)
            held.clear()
        else:
            lines = data if end == len(data) else data[:end]
        if end < len(data):
            held += memoryview(data)[end:]
            if len(held) > self._bound:
                lines += self._piece(held)
        return lines

    def finish(self) -> bytes:
        """At the end of the output: each stream's unterminated last line, stdout's first
        (by stream number), as it is."""
        held, self._held = self._held, {}
        return b"".join(bytes(held[stream]) for stream in sorted(held))

    @staticmethod
    def _piece(held: bytearray) -> bytes:
        """The whole characters of `held`, an overlong line's piece, passed on; the rest
        (a character's first bytes) stays held."""
        cut = _whole_chars(held)
        piece = bytes(held[:cut])
        del held[:cut]
        return piece


def _whole_chars(data: bytearray) -> int:
    """The length of `data` without an unfinished UTF-8 character at its end (its bytes go
    out with the rest of its line, not split by the other stream's)."""
    size = len(data)
    for back in range(1, min(4, size) + 1):
        byte = data[size - back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: look for its character's first byte
        length = 1 if byte < 0xC0 or byte >= 0xF8 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
        return size - back if back < length else size
    return size
