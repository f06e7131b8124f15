"""Masking secrets in everything the runner writes: `***` instead of the value.

What is masked:

- every registered secret value (`Redactor.add`: the run's secrets and each
  `::add-mask::` value) in each of its forms (`runner.secrets.forms`: raw, stripped, line
  by line, base64, URL, JSON, Python repr, shell-quoted, workflow-command escaped, HTML),
  however it is printed: in the text as it is, in the text without escape sequences and
  invisible characters, and, for base64, with the line breaks of wrapped base64 removed
  (`runner.secrets.normalise`). A match in a view masks what it covers in the original:
  an escape sequence inside a secret is masked with it, the line breaks of wrapped base64
  stay (`QUJD***` then `***` on the next line);
- well-known credential formats, registered or not (`CREDENTIAL_RULES`), in the text
  without its control characters (a stray ESC must not swallow the `-` of `-----BEGIN`):
  PEM private key blocks, AWS access key ids, GitHub, GitLab and Slack tokens, JWTs,
  `Authorization:` values, `Bearer` tokens, URL passwords, and `key=value` /
  `key: value` where the key names a secret.

Every mask is widened over the escape sequences next to it (a secret may end in one).

Every character covered by any occurrence of any registered form is masked, overlapping
occurrences included (two secrets sharing characters leave nothing of either); a run of
covered characters becomes one `***`.

What cannot be masked: a value the step transforms in any way not listed (reversed, hex,
hashed, split with other characters in between, encoded twice, printed one character per
line ...), and a value made only of characters nobody sees. Masking is a safety net for
accidents, never a boundary against a step that means to leak what it was given; the
policy decides which job sees which secret.

Whose secrets: the run's redactor holds the run's secrets; `Redactor.for_job` gives each
job a child holding the run's secrets and the masks that job registers, which apply to
that job's text only (its output, annotations, reasons, outputs), never to another job's,
nor to runner's own keys and statuses (`redact_record`).

Streams: `StreamRedactor.feed` returns at once everything that can no longer become part
of a secret and holds back only a tail that could still be one (a proper prefix of a
registered form in any view, an escape sequence not yet complete or not yet followed by
text, or the start of a credential format), so a value split across chunks is masked
exactly as if it had arrived whole: for any chunking, the concatenated output equals
`Redactor.__call__` of the whole text (see tests). A chunk that ends a line is emitted
whole unless a secret form spans lines (a multi-line secret, or base64 wrapped over
lines: a line that may be wrapped base64 waits for the next one when its end may start
a form). Held-back text is bounded by `MAX_HOLD` (64 KiB: a longer unterminated PEM block
or token is masked to its end all the same), and a credential start is looked for only in
the last `PENDING_WINDOW` characters of an unfinished line (an unterminated quoted
`token: "...` value longer than that may show before its closing quote arrives).

Messages runner writes about what a step did are built from redacted values: the value is
masked first, then made printable and shortened (`Redactor.message`; `Redactor.spans`
for a value quoted from a longer text), never cut before it is masked.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.secrets.credentials import (
    ANY_GATE,
    CREDENTIAL_RULES,
    PENDING,
    RESTS,
    RULES,
    lower,
    masked_span,
)
from runner.secrets.forms import MIN_B64_FRAGMENT, MIN_FORM, forms_of
from runner.secrets.normalise import (
    DELETABLE,
    IS_BASE64,
    LineState,
    View,
    Views,
    ends_with_escape,
    join_base64,
    pending_escape,
)

__all__ = [
    "MASK",
    "MAX_HOLD",
    "MIN_B64_FRAGMENT",
    "MIN_FORM",
    "Redactor",
    "StreamRedactor",
    "forms_of",
    "redact_record",
    "redact_structure",
]

MASK = "***"
MIN_MASK = 4  # an `::add-mask::` value shorter than this is refused
MAX_HOLD = 64 * 1024  # the most a stream ever holds back
CACHE_LENGTH = 64  # strings up to this long have their redaction cached
CACHE_SIZE = 4096
PENDING_WINDOW = 4096  # how far back an unfinished line may hold a credential's start
MESSAGE_LIMIT = 400  # the longest message about a step's doings, once masked

# Keys whose values are secrets, matched case-insensitively as substrings.
SENSITIVE_KEYS = (
    "password",
    "passwd",
    "passphrase",
    "token",
    "secret",
    "authorization",
    "api_key",
    "apikey",
    "api-key",
    "private_key",
    "privatekey",
    "credential",
    "cookie",
    "session",
)

# runner's own values in its records: statuses, kinds, counters, digests. Never masked,
# whatever a mask or a secret happens to be (`redact_record`).
OWN_KEYS = frozenset(
    {"status", "result", "outcome", "kind", "type", "level", "seq", "ts", "sha256"}
)
OWN_SUFFIXES = ("_digest", "_sha256")


@functools.lru_cache(maxsize=4096)
def is_sensitive_key(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in SENSITIVE_KEYS)


def is_own_key(key: str) -> bool:
    return key in OWN_KEYS or key.endswith(OWN_SUFFIXES)


# -- the registered forms ---------------------------------------------------------------


@dataclass(frozen=True)
class _Group:
    """Forms searched in one view: sorted for prefix look-ups, their first characters,
    any of them (a quick "none here" for short texts), and the forms by an anchor each
    holds (`_anchor`): the forms of one value, escaped in any way, mostly share one, so
    one search for it rules them all out."""

    ordered: tuple[str, ...]
    starts: re.Pattern[str] | None
    any_form: re.Pattern[str] | None
    longest: int
    multiline: bool  # some form holds a line break
    anchored: tuple[tuple[str, tuple[str, ...]], ...] = ()  # anchor ("": none), its forms


_ANCHOR = re.compile(r"[A-Za-z0-9_.-]{4,}")  # what no escaping of a value changes


def _anchor(form: str) -> str:
    """The longest run of letters, digits, `_`, `.` and `-` in `form` (at least 4 long;
    else ""): every escaping of a value here (quoting, JSON, URL, HTML, shell, workflow
    commands) leaves it whole."""
    return max(_ANCHOR.findall(form), key=len, default="")


def _group(forms: Iterable[str]) -> _Group:
    ordered = tuple(sorted(forms))
    if not ordered:
        return _Group((), None, None, 0, False)
    anchored: dict[str, list[str]] = {}
    for form in ordered:
        anchored.setdefault(_anchor(form), []).append(form)
    return _Group(
        ordered=ordered,
        starts=re.compile("[" + "".join(sorted({re.escape(f[0]) for f in ordered})) + "]"),
        any_form=re.compile("|".join(re.escape(f) for f in ordered)),
        longest=max(len(f) for f in ordered),
        multiline=any("\n" in f or "\r" in f for f in ordered),
        anchored=tuple((anchor, tuple(group)) for anchor, group in sorted(anchored.items())),
    )


@dataclass(frozen=True)
class _Table:
    """An immutable snapshot of the registered forms, shared by streams.

    `raw` forms hold characters the normalised view drops: they can match only the text
    as it is. `base64` forms are made of the base64 alphabet: matched in the joined view.
    `plain` are the others. `printed` (raw and plain) and `every` group them for the text
    as it is."""

    version: int
    forms: frozenset[str]
    raw: _Group
    plain: _Group
    base64: _Group
    printed: _Group
    every: _Group


_VERSIONS = itertools.count(1)


def _table(forms: frozenset[str]) -> _Table:
    raw = {f for f in forms if DELETABLE.search(f)}
    base64 = {f for f in forms if f.isascii() and IS_BASE64.fullmatch(f)}
    plain = forms - raw - base64
    return _Table(
        version=next(_VERSIONS),
        forms=forms,
        raw=_group(raw),
        plain=_group(plain),
        base64=_group(base64),
        printed=_group(raw | plain),
        every=_group(forms),
    )


_EMPTY = _table(frozenset())


class Redactor:
    """Masks registered secrets and (unless `credentials` is false) credential formats.

    Thread-safe: the jobs running at the same time share the run's redactor and the
    event log uses each job's. A child (`for_job`) masks its parent's secrets, also those
    registered after it was made, and its own; what it registers stays its own."""

    def __init__(
        self,
        secrets: Iterable[str] = (),
        *,
        credentials: bool = True,
        parent: Redactor | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._parent = parent
        self.credentials: bool = credentials if parent is None else parent.credentials
        self._values: set[str] = set()
        self._forms: frozenset[str] = frozenset()
        self._children: dict[str, Redactor] = {}
        self._table = _EMPTY
        self._parent_table = parent.table if parent is not None else _EMPTY
        if parent is not None:
            self._table = self._parent_table
        # Short strings seen again (field names, job keys, results): their redaction under
        # the current table. Replaced whole, never mutated under another table.
        self._cache: tuple[_Table, dict[str, str]] = (_EMPTY, {})
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Register a secret value (a no-op for an empty or blank value)."""
        if not secret or secret in self._values:
            return
        forms = forms_of(secret)
        with self._lock:
            self._values.add(secret)
            if forms <= self._forms:
                return
            self._forms = self._forms | forms
            self._rebuild()

    def _rebuild(self) -> None:
        """Under the lock: the table of the parent's forms and this one's."""
        if self._parent is None:
            self._table = _table(self._forms)
            return
        self._parent_table = self._parent.table
        own = self._forms - self._parent_table.forms
        self._table = _table(self._parent_table.forms | own) if own else self._parent_table

    @property
    def table(self) -> _Table:
        parent = self._parent
        if parent is not None and parent.table is not self._parent_table:
            with self._lock:
                if parent.table is not self._parent_table:
                    self._rebuild()
        return self._table

    @property
    def values(self) -> frozenset[str]:
        """The values registered with this redactor itself (not its parent's)."""
        with self._lock:
            return frozenset(self._values)

    def for_job(self, key: str) -> Redactor:
        """The redactor of job instance `key`: this one's secrets and the job's masks."""
        with self._lock:
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = Redactor(parent=self)
            return child

    def masks(self, text: str) -> bool:
        """Whether redacting `text` changes it: it holds a secret (or a credential)."""
        return self(text) != text

    def __call__(self, text: str) -> str:
        """Redact a complete text."""
        table = self.table
        short = len(text) <= CACHE_LENGTH
        cache = self._cache
        if short and cache[0] is table and text in cache[1]:
            return cache[1][text]
        if len(text) < 4096 and "\n" not in text and DELETABLE.search(text) is None:
            redacted = _line(table, text, credentials=self.credentials)  # most texts
        else:
            stream = self.stream()
            stream._buffer = text
            redacted = stream.flush()
        # Tables only move forward: if it is still `table`, the flush used `table`.
        if short and self.table is table:
            if cache[0] is not table or len(cache[1]) >= CACHE_SIZE:
                cache = self._cache = (table, {})
            cache[1][text] = redacted
        return redacted

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where in `text` what `__call__` masks is: sorted, disjoint (start, end) spans."""
        stream = self.stream()
        stream._buffer = text
        stream.flush()
        return stream.last_spans

    def message(self, text: str, limit: int = MESSAGE_LIMIT) -> str:
        """A message that quotes what a step did: masked, then printable, then short.

        A message shows what a terminal would hide (`printable`), so each mask here is
        widened over every invisible character next to it, controls included: a secret
        that begins with `\x1b]0;title\x07\x08` leaves none of it in a message."""
        views = Views(text)
        spans = self.spans(text)
        if spans and not views.clean:
            spans = _merge([views.normalised.widen(start, end) for start, end in spans])
        out: list[str] = []
        pos = 0
        for start, end in spans:
            out += [text[pos:start], MASK]
            pos = end
        out.append(text[pos:])
        return shorten(printable("".join(out)), limit)

    def stream(self) -> StreamRedactor:
        return StreamRedactor(self)


def printable(text: str) -> str:
    """`text` with what a terminal would act on escaped as Python writes it."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shorten(text: str, limit: int) -> str:
    """`text` cut in the middle to `limit` characters or about, saying how much is gone."""
    if len(text) <= limit:
        return text
    head = max(1, limit * 2 // 3)
    tail = max(1, limit - head - 24)
    return f"{text[:head]} [... {len(text) - head - tail} characters ...] {text[-tail:]}"


# -- finding what to mask ---------------------------------------------------------------


def _find(group: _Group, text: str) -> list[tuple[int, int]]:
    """The span of every occurrence of every form, overlapping ones included.

    One `str.find` pass per form: CPython's substring search skips through text at memory
    speed, many times faster than `re` trying an alternation of the forms at each place."""
    spans: list[tuple[int, int]] = []
    if group.any_form is None:
        return spans
    if len(text) < 4096 and group.any_form.search(text) is None:
        return spans  # one regex call beats a find per form on a short text
    for anchor, forms in group.anchored:
        if anchor and len(forms) > 1 and anchor not in text:
            continue  # none of these forms is there
        for form in forms:
            width = len(form)
            at = text.find(form)
            while at >= 0:
                spans.append((at, at + width))
                at = text.find(form, at + 1)
    return spans


def _held(group: _Group, text: str) -> int:
    """Where the tail that is a proper prefix of some form starts (len(text) if none)."""
    size = len(text)
    if not group.ordered:
        return size
    ordered = group.ordered
    assert group.starts is not None
    first = max(0, size - group.longest + 1)
    if not group.multiline:  # a tail holding a line break cannot start a form
        first = max(first, text.rfind("\n", first) + 1, text.rfind("\r", first) + 1)
    for start in group.starts.finditer(text, first):
        i = start.start()
        tail = text[i:]
        k = bisect.bisect_right(ordered, tail)
        if k < len(ordered) and ordered[k].startswith(tail):
            return i
    return size


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


_NEW_LINE = LineState()


def _line(table: _Table, text: str, *, credentials: bool) -> str:
    """`StreamRedactor.flush` of a fresh stream holding `text`, for the text most often
    redacted: one line without controls (all views are the text itself), in one pass."""
    spans: list[tuple[int, int]] = []
    if table.every.any_form is not None and table.every.any_form.search(text) is not None:
        spans = _find(table.every, text)
    if credentials:
        lowered = lower(text)
        maybe = (ANY_GATE[0].search(text) is not None, ANY_GATE[1].search(lowered) is not None)
        for index, rule in enumerate(CREDENTIAL_RULES):
            if not maybe[rule.ignore_case]:
                continue
            hay = lowered if rule.ignore_case else text
            if any(gate in hay for gate in rule.gates):
                spans.extend(masked_span(match) for match in RULES[index].finditer(hay))
    if not spans:
        return text
    out: list[str] = []
    pos = 0
    for start, end in _merge(spans):
        out += [text[pos:start], MASK]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _through(joined: View, view: View, start: int, end: int) -> list[tuple[int, int]]:
    """The source spans of a span of `joined`, a view of `view`."""
    return [piece for a, b in joined.spans(start, end) for piece in view.spans(a, b)]


class StreamRedactor:
    """Redacts a text arriving in chunks; see the module docstring for the guarantee."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._buffer = ""
        self._carried: list[tuple[int, int]] = []  # spans already found in the buffer
        self._mask_open = False  # the output so far ends with a mask that may continue
        self._resume = [0] * len(CREDENTIAL_RULES)  # where each rule's scan goes on
        self._continuing: int | None = None  # a rule whose match was cut at MAX_HOLD
        self._line = _NEW_LINE  # the emitted part of the current line, normalised
        self._printed_line = _NEW_LINE  # the same without its controls only
        self.masked = False  # whether anything was masked so far
        self.last_spans: list[tuple[int, int]] = []  # what the last call masked, in its text

    def feed(self, chunk: str) -> str:
        """Everything that is now safe to emit (possibly empty)."""
        if not chunk:
            return ""
        self._buffer += chunk
        return self._advance(final=False)

    def flush(self) -> str:
        """The rest, at the end of the stream."""
        return self._advance(final=True)

    def _forms(
        self,
        table: _Table,
        text: str,
        view: View,
        printed: View,
        spans: list[tuple[int, int]],
        final: bool,
    ) -> int:
        """Adds the spans of the registered forms in every view to `spans`; returns where
        the tail that may still become a form starts (the text's length if none, or if
        `final`)."""
        size = len(text)
        if final and view.identity and size < 4096 and "\n" not in text:
            every = table.every.any_form  # one line as it is: one regex call decides
            if every is None or every.search(text) is None:
                return size
        norm = view.text
        cut = size
        escapes = view is not printed  # escape sequences: the views differ
        if view.identity:
            spans.extend(_find(table.plain, text))
            if not final:
                cut = _held(table.printed, text)
        else:
            # Forms holding what the views drop are found as printed; the others without
            # the escape sequences, and, where there are some, without the controls only
            # (its letters kept: a stray `\x1b[` swallows the `A` of `AKIA...` in a view).
            spans.extend(_find(table.raw, text))
            for start, end in _find(table.plain, norm):
                spans.extend(view.spans(start, end))
            if escapes:
                for start, end in _find(table.plain, printed.text):
                    spans.extend(printed.spans(start, end))
            if not final:
                cut = min(_held(table.printed, text), view.origin(_held(table.plain, norm)))
                if escapes:
                    cut = min(cut, printed.origin(_held(table.plain, printed.text)))
        if not table.base64.ordered:
            return cut
        # Wrapped base64: in the normalised view, and, where escape sequences are, in the
        # text without its controls only (a stray `\x9b` swallows a line's first letter).
        views = [(view, self._line)]
        if escapes:
            views.append((printed, self._printed_line))
        for base, line in views:
            joined = join_base64(base, line, final=final)
            for start, end in _find(table.base64, joined.text):
                spans.extend(_through(joined, base, start, end))
            if not final:
                cut = min(cut, base.origin(joined.origin(_held(table.base64, joined.text))))
        return cut

    def _advance(self, *, final: bool) -> str:
        text = self._buffer
        if not text:
            return ""
        pending = ""  # an escape sequence the next chunk may complete: what it hides is
        if not final:  # not known yet, so it is held, and the text is matched up to it
            at = pending_escape(text)
            if at is not None and len(text) - at < MAX_HOLD:
                text, pending = text[:at], text[at:]
                if not text:
                    return ""
        size = len(text)
        table = self._redactor.table
        # Credential formats are matched without the controls (a stray `\x9b` or ESC must
        # not swallow the first letters of `-----BEGIN` or `password=`), escape sequences
        # kept; spans are widened over the escape sequences next to them.
        views = Views(text)  # each made when first needed
        printed = views.printed
        spans = list(self._carried)  # a mask begun before, credentials found before
        if self._mask_open and views.has_escapes and views.escapes.origin(0) > 0:
            spans.append((0, views.escapes.origin(0)))  # escape sequences go with the mask
        cut = size
        if table.forms:
            cut = min(cut, self._forms(table, text, views.normalised, printed, spans, final))
        found: list[tuple[int, int, int, tuple[int, int]]] = []  # rule, start, end, span
        touching: list[tuple[int, re.Match[str]]] = []
        continuing = False
        resume = [printed.position(r) if r else 0 for r in self._resume]
        if self._redactor.credentials:
            continuing, cut = self._credentials(printed, spans, found, touching, resume, cut, final)
        if not final:
            if views.has_escapes and (cut < size or ends_with_escape(text)):
                cut = views.escapes.settle(cut)
            cut = max(cut, size + len(pending) - MAX_HOLD)
            if cut == 0:
                return ""  # all of it may still be (part of) a secret
            for index, match in touching:
                if cut > printed.origin(match.start()):  # held for too long: mask it all
                    found.append((index, match.start(), len(printed.text), match.span()))
                    continuing = True
                    self._continuing = index
        for index, start, end, (span_start, span_end) in found:
            if printed.origin(start) < cut:
                if span_end > span_start:
                    spans.extend(printed.spans(span_start, span_end))
                resume[index] = end
        out: list[str] = []
        pos = 0
        covered_to = 0
        if spans and views.has_escapes:
            spans = [views.escapes.widen(start, end) for start, end in spans]
        merged = _merge(spans)
        self.last_spans = [(start, min(end, cut)) for start, end in merged if start < cut]
        for start, end in merged:
            if start >= cut:
                break
            out.append(text[pos:start])
            if not (start == 0 and self._mask_open):
                out.append(MASK)
            pos = covered_to = end
            self.masked = True
        if pos < cut:
            out.append(text[pos:cut])
        if not continuing:
            self._continuing = None
        if final:
            self._buffer, self._carried, self._mask_open = "", [], False
            self._resume = [0] * len(CREDENTIAL_RULES)
            self._line = self._printed_line = _NEW_LINE
        else:
            self._mask_open = covered_to >= cut
            self._carried = [(max(0, s - cut), e - cut) for s, e in merged if e > cut]
            origins = [printed.origin(r) if r else 0 for r in resume]
            self._resume = [r - cut if r > cut else 0 for r in origins]
            at = printed.position(cut)
            self._printed_line = self._printed_line.after(printed.text, at)
            if views.has_escapes and table.forms:
                view = views.normalised
                self._line = self._line.after(view.text, view.position(cut))
            else:  # the same view (or nothing to join lines for yet: close enough)
                self._line = self._line.after(printed.text, at)
            self._buffer = text[cut:] + pending
        return "".join(out)

    def _credentials(
        self,
        view: View,
        spans: list[tuple[int, int]],
        found: list[tuple[int, int, int, tuple[int, int]]],
        touching: list[tuple[int, re.Match[str]]],
        resume: list[int],
        cut: int,
        final: bool,
    ) -> tuple[bool, int]:
        """The credential formats in `view`: adds what they mask to `found`
        and those that may grow to `touching`; returns (a match held for too long goes on,
        the cut)."""
        norm = view.text
        size = len(norm)
        lowered = lower(norm)
        continuing = False
        if self._continuing is not None:
            rest = RESTS[self._continuing].match(norm)
            rest_end = rest.end() if rest is not None else 0
            spans.append((0, view.origin(rest_end - 1) + 1 if rest_end else 0))
            resume[:] = [max(r, rest_end) for r in resume]
            continuing = not final and rest_end == size
        # Short texts (a line) first pass one regex per case; long ones go straight to the
        # per-rule substring checks, which run at memory speed.
        maybe = (True, True)
        if size < 4096:
            maybe = (
                ANY_GATE[0].search(norm) is not None,
                ANY_GATE[1].search(lowered) is not None,
            )
        for index, rule in enumerate(CREDENTIAL_RULES):
            if not maybe[rule.ignore_case]:
                continue
            hay = lowered if rule.ignore_case else norm
            if not any(gate in hay for gate in rule.gates):
                continue  # the rule cannot match: skip its (much slower) regex scan
            for match in RULES[index].finditer(hay, resume[index]):
                if not final and match.end() == size:
                    touching.append((index, match))  # it may grow with the next chunk
                    cut = min(cut, view.origin(match.start()))
                    break
                found.append((index, match.start(), match.end(), masked_span(match)))
        if not final:
            if continuing:
                cut = min(cut, max(0, view.source_length - PENDING_WINDOW))  # its end may be split
            # No pending form spans a newline: only the unfinished last line can hold one.
            window = max(0, size - PENDING_WINDOW, norm.rfind("\n", 0, size) + 1)
            for hay, pending_re in zip((norm, lowered), PENDING, strict=True):
                pending = pending_re.search(hay, window) if window < size else None
                if pending is not None:
                    cut = min(cut, view.origin(pending.start()))
        return continuing, cut


# -- structures -------------------------------------------------------------------------


def redact_structure(obj: Any, redactor: Callable[[str], str]) -> Any:
    """A copy of a mapping a user gave (env, outputs, inputs ...) with every string
    redacted, keys too, and the value of every sensitive key (`SENSITIVE_KEYS`) replaced
    by `***`. Never for runner's own records: `redact_record`."""
    if isinstance(obj, str):
        return redactor(obj)
    if isinstance(obj, Mapping):
        result: dict[Any, Any] = {}
        for key, value in obj.items():
            name = redactor(key) if isinstance(key, str) else key
            sensitive = is_sensitive_key(str(key))
            result[name] = (
                MASK if sensitive and value is not None else redact_structure(value, redactor)
            )
        return result
    if isinstance(obj, list | tuple):
        return [redact_structure(item, redactor) for item in obj]
    if isinstance(obj, bytes | bytearray):
        return redactor(bytes(obj).decode("utf-8", "replace"))
    return obj


def redact_record(obj: Any, redactor: Callable[[str], str]) -> Any:
    """A copy of one of runner's own records (an event, a ledger entry, a run record)
    with every string value redacted: never a key, never runner's own values (statuses,
    kinds, digests: `OWN_KEYS`), and no value masked for its key's name."""
    if isinstance(obj, str):
        return redactor(obj)
    if isinstance(obj, Mapping):
        return {
            key: value
            if isinstance(key, str) and is_own_key(key)
            else redact_record(value, redactor)
            for key, value in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [redact_record(item, redactor) for item in obj]
    return obj
