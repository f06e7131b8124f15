"""What the secret matcher sees: a text without the characters a reader never sees, and
without the line breaks inside wrapped base64, each with a map back to the original.

A step's output is stored as printed (colours and all), but a secret must be masked
however it is printed. Two views of a text are matched, besides the text itself:

- `normalise`: the text without terminal escape sequences (`ESCAPE_SEQUENCE`: colours,
  cursor movement, titles, hyperlinks ...) and without the characters `DELETABLE` names
  (C0 and C1 controls but tab and line feed, so carriage returns too; DEL; zero-width
  and bidirectional format characters; BOM; noncharacters; lone surrogates). A secret
  with an escape sequence or a control character inside it, or split by one, is one
  string again in this view, and the span it maps back to covers what was inside it.
- `join_base64`: the normalised text without the line breaks (and the next line's
  indentation) that may be inside wrapped base64 (standard and URL-safe): after a line
  made only of the base64 alphabet, at least `MIN_WRAP` characters long, or after a line
  ending with at least `MIN_RUN` of them (`token: QUJD...`), when the next line starts
  with one. `base64` wraps at 76 columns, PEM and openssl at 64, `base64 -w N` anywhere;
  in this view the value's base64, wrapped at any width and at any alignment in a longer
  stream, is on one line again. The span of a match maps back to one piece per line: the
  line breaks stay. Only base64 forms are matched in this view.

A `View` maps a position in it back to its source; `View.spans` gives the source spans a
view span covers. A view of a text arriving in chunks is computed over the part not yet
emitted: `LineState` carries what the emitted part of the current line was, so that a
line is judged whole; `pending_escape` says where an escape sequence that the next chunk
may complete starts.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

# The escape sequences a terminal acts on instead of printing them (ECMA-48). A string
# sequence (OSC, DCS ...) ends at its terminator or at the end of its line.
ESCAPE_SEQUENCE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor movement, clear screen
    r"|\][^\x07\x1b\n]*(?:\x07|\x1b\\)?"  # OSC: titles, hyperlinks
    r"|[PX^_][^\x1b\n]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|[ -/]*[0-~])"  # two-character sequences
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
# Characters nobody sees in a log: every control but tab and line feed, invisible format
# characters (zero-width, bidirectional, soft hyphen, BOM), noncharacters, surrogates.
DELETABLE_CHARACTERS = (
    "\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e"
    "\u2060-\u206f\ufeff\ufff9-\ufffb\ufffe\uffff\ud800-\udfff"
)
DELETABLE = re.compile(f"[{DELETABLE_CHARACTERS}]")
_DELETED = re.compile(f"{ESCAPE_SEQUENCE.pattern}|[{DELETABLE_CHARACTERS}]")
_ASCII_DELETABLE = str.maketrans("", "", "".join(map(chr, [*range(9), *range(11, 32), 127])))
# An escape sequence the next chunk may still complete (or lengthen), at the very end.
_PENDING_ESCAPE = re.compile(
    r"(?:\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b\n]*\x1b?|[PX^_][^\x1b\n]*\x1b?|[ -/]*)"
    r"|\x9b[0-?]*[ -/]*)\Z"
)

BASE64_ALPHABET = "A-Za-z0-9+/=_-"
_BASE64_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-"
IS_BASE64 = re.compile(f"[{BASE64_ALPHABET}]+")
MIN_WRAP = 4  # the shortest base64 line that a wrapped line break may follow
MIN_RUN = 16  # the base64 characters that end another line a wrapped line break may follow
# A base64 line long enough (after a line break), up to the line break that ends it.
_BASE64_LINE_BREAK = re.compile(f"\\n[ \\t]*[{BASE64_ALPHABET}]{{{MIN_WRAP},}}(?=\\n)")
# A line break after enough base64 characters.
_RUN_BREAK = re.compile(f"\\n(?<=[{BASE64_ALPHABET}]{{{MIN_RUN}}}\\n)")  # "\\n" first: fast
_INDENT = re.compile("[ \\t]*")
_INDENT_THEN_BASE64 = re.compile(f"([ \\t]*)([{BASE64_ALPHABET}]*)")


class View:
    """A view of a source text: `text`, made of runs copied from the source, with what
    lies between them left out. `gaps` says whether a span over left-out text maps back to
    one span covering it (False: escapes and controls inside a secret are masked with it)
    or to one piece per run (True: the line breaks of wrapped base64 stay).

    The runs are found only when a position inside the text is asked for: most texts are
    matched, and cut, at their ends. A view that leaves out what `pattern` matches (never
    a line break, nor anything across one) maps a position in its last line by that line
    alone: where a stream cuts."""

    __slots__ = (
        "_last",
        "_mapped",
        "_origins",
        "_pattern",
        "_removed",
        "_source",
        "_starts",
        "gaps",
        "identity",
        "source_length",
        "text",
    )

    def __init__(
        self,
        text: str,
        source: str,
        removed: Callable[[], list[tuple[int, int]]] | None,
        *,
        gaps: bool = False,
        pattern: re.Pattern[str] | None = None,
    ) -> None:
        self.text = text
        self.source_length = len(source)
        self.identity = removed is None
        self.gaps = gaps
        self._source = source
        self._removed = removed
        self._pattern = pattern
        self._starts: list[int] = [0]
        self._origins: list[int] = [0]
        self._mapped = removed is None
        self._last: tuple[int, int, View] | None = None

    def _last_line(self) -> tuple[int, int, View] | None:
        """(where the last line starts in the view, in the source, its own view), for a
        view whose left-out text never crosses a line break; None for another."""
        if self._pattern is None or self._mapped:
            return None
        if self._last is None:
            at = self.text.rfind("\n") + 1
            source_at = self._source.rfind("\n") + 1
            line = self._source[source_at:]
            pattern = self._pattern
            local = View(self.text[at:], line, lambda: [m.span() for m in pattern.finditer(line)])
            self._last = (at, source_at, local)
        return self._last

    def _map(self) -> None:
        if self._mapped:
            return
        assert self._removed is not None
        starts: list[int] = []
        origins: list[int] = []
        at = length = 0
        for begin, end in self._removed():
            if begin > at:
                starts.append(length)
                origins.append(at)
                length += begin - at
            at = max(at, end)
        if at < self.source_length:
            starts.append(length)
            origins.append(at)
        self._starts, self._origins = starts or [0], origins or [self.source_length]
        self._mapped = True

    def settle(self, source: int) -> int:
        """Where a cut at `source` goes: before the left-out text that ends there or holds
        it, so that an escape sequence is never split (its end would read as text) nor
        parted from the text it precedes (a secret there masks it too)."""
        if self.identity or source <= 0:
            return max(source, 0)
        before = self.position(source) - 1
        return self.origin(before) + 1 if before >= 0 else 0

    def widen(self, start: int, end: int) -> tuple[int, int]:
        """The source span [start, end) with the left-out text on either side of it: an
        escape sequence next to a secret goes with it (`\x1b]0;title\x07` ends some)."""
        if self.identity:
            return start, end
        before = self.position(start) - 1
        after = self.position(end)
        return (
            self.origin(before) + 1 if before >= 0 else 0,
            self.origin(after) if after < len(self.text) else self.source_length,
        )

    def origin(self, i: int) -> int:
        """The source position of the view's character `i`; the source's end for the
        view's end."""
        if i >= len(self.text):
            return self.source_length
        if self.identity:
            return i
        last = self._last_line()
        if last is not None and i >= last[0]:
            return last[1] + last[2].origin(i - last[0])
        self._map()
        k = bisect.bisect_right(self._starts, i) - 1
        return self._origins[k] + i - self._starts[k]

    def position(self, source: int) -> int:
        """The first view position whose source position is `source` or later."""
        if self.identity or source <= 0:
            return max(0, min(source, len(self.text)))
        if source >= self.source_length:
            return len(self.text)
        last = self._last_line()
        if last is not None and source >= last[1]:
            return last[0] + last[2].position(source - last[1])
        self._map()
        k = bisect.bisect_right(self._origins, source) - 1
        if k < 0:
            return 0
        run_end = self._starts[k + 1] if k + 1 < len(self._starts) else len(self.text)
        return min(self._starts[k] + source - self._origins[k], run_end)

    def spans(self, start: int, end: int) -> list[tuple[int, int]]:
        """The source spans the view span [start, end) maps back to (end > start)."""
        if self.identity:
            return [(start, end)]
        if not self.gaps:
            return [(self.origin(start), self.origin(end - 1) + 1)]
        self._map()
        pieces: list[tuple[int, int]] = []
        k = bisect.bisect_right(self._starts, start) - 1
        while start < end:
            run_end = self._starts[k + 1] if k + 1 < len(self._starts) else len(self.text)
            stop = min(end, run_end)
            begin = self._origins[k] + start - self._starts[k]
            pieces.append((begin, begin + stop - start))
            start = stop
            k += 1
        return pieces


def identity(text: str) -> View:
    return View(text, text, None)


def normalise(text: str) -> View:
    """`text` without escape sequences and the characters nobody sees."""
    return Views.of(text).normalised


class Views:
    """The views of one text the matcher needs, each made when first asked for and sharing
    their work: `normalised`; `printed`, without its controls only (the letters of escape
    sequences kept: a stray ESC or `\x9b` must not swallow the start of a secret); and
    `escapes`, without its escape sequences only (what a mask is widened over and a cut
    never splits)."""

    def __init__(self, text: str) -> None:
        self.text = text
        if len(text) > 1024 and text.isascii():  # a long ASCII text: translate is faster
            self.clean = len(text.translate(_ASCII_DELETABLE)) == len(text)
        else:
            self.clean = DELETABLE.search(text) is None
        self.has_escapes = not self.clean and ("\x1b" in text or "\x9b" in text)
        if self.clean:  # most texts: one view, set now (cached_property reads __dict__)
            same = identity(text)
            self.__dict__.update(normalised=same, printed=same, escapes=same)

    @classmethod
    def of(cls, text: str) -> Views:
        return cls(text)

    @functools.cached_property
    def _stripped(self) -> str:
        return "".join(ESCAPE_SEQUENCE.split(self.text))  # split: faster than sub

    @functools.cached_property
    def normalised(self) -> View:
        if not self.has_escapes:
            return self.printed  # the same view
        return _lines_view(_without_controls(self._stripped), self.text, _DELETED)

    @functools.cached_property
    def printed(self) -> View:
        if self.clean:
            return identity(self.text)
        return _lines_view(_without_controls(self.text), self.text, DELETABLE)

    @functools.cached_property
    def escapes(self) -> View:
        if not self.has_escapes:
            return identity(self.text)
        return _lines_view(self._stripped, self.text, ESCAPE_SEQUENCE)


def _lines_view(text: str, source: str, pattern: re.Pattern[str]) -> View:
    """The view of `source` without what `pattern` matches (never a line break)."""
    return View(text, source, lambda: [m.span() for m in pattern.finditer(source)], pattern=pattern)


def _without_controls(text: str) -> str:
    if len(text) > 1024 and text.isascii():
        return text.translate(_ASCII_DELETABLE)  # many times faster than the regex
    return DELETABLE.sub("", text)


def ends_with_escape(text: str) -> bool:
    """Whether `text` ends with a whole escape sequence."""
    last = max(text.rfind("\x1b"), text.rfind("\x9b"))
    found = ESCAPE_SEQUENCE.match(text, last) if last >= 0 else None
    return found is not None and found.end() == len(text)


def strip_invisible(text: str) -> str:
    """The normalised text alone (for a secret's own forms)."""
    return normalise(text).text


def pending_escape(text: str) -> int | None:
    """Where an escape sequence the next chunk may complete starts, at the end of `text`."""
    last = max(text.rfind("\x1b"), text.rfind("\x9b"))
    if last < 0:
        return None
    found = _PENDING_ESCAPE.search(text, last)
    return found.start() if found is not None else None


# -- wrapped base64 ----------------------------------------------------------------------


class Purity(Enum):
    BLANK = "blank"  # nothing but indentation so far
    BASE64 = "base64"  # indentation, then only the base64 alphabet
    MIXED = "mixed"  # anything else


def _run(text: str) -> int:
    """How many base64 characters end `text`."""
    return len(text) - len(text.rstrip(_BASE64_CHARACTERS))


@dataclass(frozen=True)
class LineState:
    """What the part of the current line already passed on was (in the normalised view):
    whether it is a base64 line so far, and how many base64 characters end it."""

    purity: Purity = Purity.BLANK
    length: int = 0  # base64 characters, on a base64 line
    run: int = 0  # the base64 characters that end it

    @property
    def wraps(self) -> bool:
        """Whether a line break after this line may be inside wrapped base64."""
        return (self.purity is Purity.BASE64 and self.length >= MIN_WRAP) or self.run >= MIN_RUN

    def extend(self, text: str) -> LineState:
        """The state of this line once `text` (holding no line break) follows."""
        if not text:
            return self
        if self.purity is Purity.BLANK:
            match = _INDENT_THEN_BASE64.match(text)
            assert match is not None  # both groups may be empty
            if match.end() == len(text):
                size = len(match.group(2))
                return LineState(Purity.BASE64, size, size) if size else self
            return LineState(Purity.MIXED, 0, _run(text))
        run = _run(text)
        if run == len(text):
            return LineState(self.purity, self.length + run, self.run + run)
        return LineState(Purity.MIXED, 0, run)

    def after(self, text: str, end: int) -> LineState:
        """The state of the line that is current at `end` in `text`."""
        newline = text.rfind("\n", 0, end)
        if newline >= 0:
            return LineState().extend(text[newline + 1 : end])
        return self.extend(text[:end])


def join_base64(view: View, first: LineState, *, final: bool) -> View:
    """The view of `view.text` with the line breaks inside wrapped base64 removed; unless
    `final`, also a line break at the very end that the next line may continue, so that
    the tail the stream holds back is the last line's.

    A line break is removed, with the next line's indentation, when the next line starts
    with a base64 character and the line it ends is a base64 line at least `MIN_WRAP`
    long, or ends with at least `MIN_RUN` base64 characters (`token: QUJD...`).
    `first` is what the first line was before this text began."""
    text = view.text
    first_break = text.find("\n")
    if first_break < 0:
        return identity(text)
    candidates = {match.end() for match in _BASE64_LINE_BREAK.finditer(text, first_break)}
    candidates.update(match.start() for match in _RUN_BREAK.finditer(text, first_break))
    if first.extend(text[:first_break]).wraps:
        candidates.add(first_break)
    breaks: list[tuple[int, int]] = []  # a line break, and where the next line's text starts
    for at in sorted(candidates):
        begin = _INDENT.match(text, at + 1)
        assert begin is not None
        start = begin.end()
        if start < len(text):
            if text[start] in _BASE64_CHARACTERS:
                breaks.append((at, start))
        elif not final:  # the next line has not begun: it may start with base64
            breaks.append((at, start))
    if not breaks:
        return identity(text)
    kept: list[tuple[int, int]] = []
    at = 0
    for begin_, end in breaks:
        kept.append((at, begin_))
        at = end
    kept.append((at, len(text)))
    joined = "".join(text[a:b] for a, b in kept)
    return View(joined, text, lambda: breaks, gaps=True)
