"""Shared pieces of what runner shows on a terminal or in a log: status glyphs (with ASCII
fallbacks for streams that cannot hold Unicode), the cleaning of untrusted output lines,
durations, which steps are inside a `::group::`, and the line of an image build. Used by the plain view
(`progress.py`), the live view (`live.py`) and the replay of `runner logs` (`replay.py`);
writing stays in `Output`.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import TextIO

from runner.records.results import Status
from runner.secrets.normalise import ESCAPE_SEQUENCE


@dataclass(frozen=True)
class Glyphs:
    success: str
    failure: str
    cancelled: str
    skipped: str
    running: str
    pending: str
    retry: str
    unresolved: str
    bar: str
    dot: str
    arrow: str
    group_open: str  # a `::group::` whose lines follow
    group_closed: str  # a `::group::` folded to its header
    spinner: tuple[str, ...]

    def status(self, status: Status) -> str:
        return {
            Status.SUCCESS: self.success,
            Status.FAILURE: self.failure,
            Status.CANCELLED: self.cancelled,
            Status.SKIPPED: self.skipped,
            Status.RUNNING: self.running,
            Status.PENDING: self.pending,
        }[status]


UNICODE = Glyphs(
    success="✓",
    failure="✗",
    cancelled="⊘",
    skipped="↷",
    running="▶",
    pending="○",
    retry="↻",
    unresolved="?",
    bar="│",
    dot="·",
    arrow="\u203a",  # single right-pointing angle quotation mark
    group_open="▾",
    group_closed="▸",
    spinner=("⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"),
)
ASCII = Glyphs(
    success="+",
    failure="x",
    cancelled="!",
    skipped="-",
    running=">",
    pending=".",
    retry="~",
    unresolved="?",
    bar="|",
    dot="-",
    arrow=">",
    group_open="v",
    group_closed=">",
    spinner=("|", "/", "-", "\\"),
)

STATUS_COLOR = {
    Status.SUCCESS: "green",
    Status.FAILURE: "red",
    Status.CANCELLED: "yellow",
    Status.SKIPPED: "dim",
    Status.RUNNING: "blue",
    Status.PENDING: "dim",
}


def stream_encoding(stream: TextIO) -> str | None:
    encoding = getattr(stream, "encoding", None)
    return encoding if isinstance(encoding, str) and encoding else None


def _is_unicode(encoding: str | None) -> bool:
    if encoding is None:  # an in-memory text stream holds any str
        return True
    try:
        return codecs.lookup(encoding).name.startswith("utf")
    except LookupError:
        return False


def glyphs_for(stream: TextIO) -> Glyphs:
    return UNICODE if _is_unicode(stream_encoding(stream)) else ASCII


def encodable(text: str, encoding: str | None) -> str:
    """`text` with what `encoding` cannot hold replaced by '?', so a write never fails."""
    if _is_unicode(encoding) or encoding is None:
        return text
    try:
        return text.encode(encoding, "replace").decode(encoding)
    except LookupError:
        return text.encode("ascii", "replace").decode("ascii")


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def clean_line(text: str) -> str:
    """A step's output line made harmless for a terminal or a CI log.

    A carriage return inside a line (progress bars) keeps what a terminal would show last;
    escape sequences and other control characters are removed; tabs stay.
    """
    if "\r" in text:
        parts = [p for p in text.split("\r") if p]
        text = parts[-1] if parts else ""
    return _CONTROL.sub("", ESCAPE_SEQUENCE.sub("", text))


def summary_lines(markdown: str) -> list[str]:
    """A step's `$GITHUB_STEP_SUMMARY` as lines to show under it: each cleaned as an
    output line (`clean_line`), without the blank lines around it."""
    return [clean_line(line) for line in markdown.strip("\n").split("\n")]


def format_duration(seconds: float) -> str:
    """`0.3s`, `12.5s`, `1m05s`, `2h03m`."""
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class OpenGroups:
    """The steps whose output is inside a `::group::` now: their lines are indented under
    the group's header. A group ends at `::endgroup::`, at the next `::group::` (groups do
    not nest, as on GitHub) or with its step."""

    INDENT = "  "

    def __init__(self) -> None:
        self._open: set[tuple[str, int]] = set()

    def start(self, job: str, step: int) -> None:
        self._open.add((job, step))

    def end(self, job: str, step: int) -> None:
        self._open.discard((job, step))

    def indent(self, job: str, step: int) -> str:
        return self.INDENT if (job, step) in self._open else ""


STATUS_VERB = {
    Status.SUCCESS: "succeeded",
    Status.FAILURE: "failed",
    Status.CANCELLED: "cancelled",
    Status.SKIPPED: "skipped",
    Status.RUNNING: "running",
    Status.PENDING: "pending",
}


def build_progress(name: str, tag: str, phase: str, line: str) -> str:
    """What a moment of an image build shows (`image.build` events, `runner images build`):
    `image NAME: building TAG`, `image NAME: Step 3/7 : RUN ...`, `image NAME: built` or
    why it did not build."""
    match phase:
        case "started":
            said = f"building {tag}"
        case "finished":
            said = line or "built"
        case _:
            said = line
    return f"image {name}: {clean_line(said)}"
