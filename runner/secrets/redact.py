"""Masking secrets in everything the runner writes: `***` instead of the value.

What is masked:

- every registered secret value (`Redactor.add`: the run's secrets and each
  `::add-mask::` value), whatever its length, and its derived forms: standard and URL-safe
  base64 (padded and unpadded, and the part that is fixed whatever the value's alignment
  is inside a longer base64 stream), URL-encoded (`quote`, `quote_plus`), JSON-escaped
  (ASCII and not), and each line of a multi-line value. Derived forms shorter than
  `MIN_FORM` characters are not registered (a JSON secret's `}` line would otherwise mask
  every brace); neither are aligned base64 fragments shorter than `MIN_B64_FRAGMENT`;
- well-known credential formats, registered or not (`CREDENTIAL_RULES`): PEM private key
  blocks, AWS access key ids, GitHub, GitLab and Slack tokens, JWTs, `Authorization:`
  values, `Bearer` tokens, URL passwords, and `key=value` / `key: value` where the key
  names a secret.

Every character covered by any occurrence of any registered form is masked, overlapping
occurrences included (two secrets sharing characters leave nothing of either); a run of
covered characters becomes one `***`.

What cannot be masked: a value the step transforms in any way not listed (reversed, hex,
hashed, split with other characters in between, encoded twice, printed one character per
line ...). Masking is a safety net for accidents, never a boundary against a step that
means to leak what it was given; the policy decides which job sees which secret.

Streams: `StreamRedactor.feed` returns at once everything that can no longer become part
of a secret and holds back only a tail that could still be one (a proper prefix of a
registered form, or the start of a credential format), so a value split across chunks is
masked exactly as if it had arrived whole: for any chunking, the concatenated output
equals `Redactor.__call__` of the whole text (see tests). A chunk that ends a line is
emitted whole unless a secret form spans lines. Held-back text is bounded by `MAX_HOLD`
(64 KiB: a longer unterminated PEM block or token is masked to its end all the same), and
a credential start is looked for only in the last `PENDING_WINDOW` characters of an
unfinished line (an unterminated quoted `token: "...` value longer than that may show
before its closing quote arrives).
"""

from __future__ import annotations

import base64
import bisect
import functools
import json
import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
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

MASK = "***"
MIN_FORM = 3  # derived forms (lines, encodings) shorter than this are not registered
MIN_B64_FRAGMENT = 8  # aligned base64 fragments of a value inside a longer stream
MAX_HOLD = 64 * 1024  # the most a stream ever holds back
CACHE_LENGTH = 64  # strings up to this long have their redaction cached
CACHE_SIZE = 4096
PENDING_WINDOW = 4096  # how far back an unfinished line may hold a credential's start

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


@functools.lru_cache(maxsize=4096)
def is_sensitive_key(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in SENSITIVE_KEYS)


# -- secret forms -----------------------------------------------------------------------


def _b64_forms(data: bytes) -> set[str]:
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(data).decode("ascii")
        forms.add(whole)
        forms.add(whole.rstrip("="))
        for skip in (0, 1, 2):  # the value at each alignment inside a longer stream
            chunk = data[skip:]
            chunk = chunk[: len(chunk) // 3 * 3]
            fragment = encode(chunk).decode("ascii")
            if len(fragment) >= MIN_B64_FRAGMENT:
                forms.add(fragment)
    return forms


def forms_of(value: str) -> set[str]:
    """Every string that masks `value`: the value itself and its derived forms."""
    if not value.strip():
        return set()
    forms = {value}
    derived: set[str] = set()
    derived |= _b64_forms(value.encode("utf-8"))
    derived.add(urllib.parse.quote(value, safe=""))
    derived.add(urllib.parse.quote(value))
    derived.add(urllib.parse.quote_plus(value))
    derived.add(json.dumps(value)[1:-1])
    derived.add(json.dumps(value, ensure_ascii=False)[1:-1])
    derived.add(value.strip())  # as `::add-mask::` takes it, and as a step may print it
    if "\n" in value or "\r" in value:
        for line in re.split(r"\r\n|\r|\n", value):
            derived.add(line.strip())
    forms |= {form for form in derived if len(form) >= MIN_FORM}
    return forms


@dataclass(frozen=True)
class _Table:
    """An immutable snapshot of the registered forms, shared by streams."""

    version: int
    ordered: tuple[str, ...]  # sorted, for prefix look-ups
    starts: re.Pattern[str] | None  # the first characters of the forms
    any_form: re.Pattern[str] | None  # any form: a quick "none here" for short texts
    longest: int
    multiline: bool  # some form holds a line break


_EMPTY = _Table(0, (), None, None, 0, False)


class Redactor:
    """Masks registered secrets and credential formats. Thread-safe: jobs running at the
    same time share one redactor, and a mask one registers applies to all from then on."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._forms: set[str] = set()
        self._table = _EMPTY
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
            new = forms - self._forms
            if not new:
                return
            self._forms |= new
            ordered = tuple(sorted(self._forms))
            self._table = _Table(
                version=self._table.version + 1,
                ordered=ordered,
                starts=re.compile("[" + "".join(sorted({re.escape(f[0]) for f in ordered})) + "]"),
                any_form=re.compile("|".join(re.escape(f) for f in ordered)),
                longest=max(len(f) for f in ordered),
                multiline=any("\n" in f or "\r" in f for f in ordered),
            )

    @property
    def table(self) -> _Table:
        return self._table

    def __call__(self, text: str) -> str:
        """Redact a complete text."""
        table = self._table
        short = len(text) <= CACHE_LENGTH
        cache = self._cache
        if short and cache[0] is table and text in cache[1]:
            return cache[1][text]
        stream = self.stream()
        stream._buffer = text
        redacted = stream.flush()
        # Tables only move forward: if it is still `table`, the flush used `table`.
        if short and self._table is table:
            if cache[0] is not table or len(cache[1]) >= CACHE_SIZE:
                cache = self._cache = (table, {})
            cache[1][text] = redacted
        return redacted

    def stream(self) -> StreamRedactor:
        return StreamRedactor(self)


# -- finding what to mask ---------------------------------------------------------------


def _secret_spans(table: _Table, text: str) -> list[tuple[int, int]]:
    """The span of every occurrence of every form, overlapping ones included.

    One `str.find` pass per form: CPython's substring search skips through text at memory
    speed, many times faster than `re` trying an alternation of the forms at each place."""
    spans: list[tuple[int, int]] = []
    if table.any_form is None:
        return spans
    if len(text) < 4096 and table.any_form.search(text) is None:
        return spans  # one regex call beats a find per form on a short text
    for form in table.ordered:
        width = len(form)
        at = text.find(form)
        while at >= 0:
            spans.append((at, at + width))
            at = text.find(form, at + 1)
    return spans


def _held_secret_tail(table: _Table, text: str) -> int:
    """Where the tail that is a proper prefix of some form starts (len(text) if none)."""
    size = len(text)
    if not table.ordered:
        return size
    ordered = table.ordered
    assert table.starts is not None
    first = max(0, size - table.longest + 1)
    if not table.multiline:  # a tail holding a line break cannot start a form
        first = max(first, text.rfind("\n", first) + 1, text.rfind("\r", first) + 1)
    for start in table.starts.finditer(text, first):
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


class StreamRedactor:
    """Redacts a text arriving in chunks; see the module docstring for the guarantee."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._buffer = ""
        self._carried: list[tuple[int, int]] = []  # spans already found in the buffer
        self._mask_open = False  # the output so far ends with a mask that may continue
        self._resume = [0] * len(CREDENTIAL_RULES)  # where each rule's scan goes on
        self._continuing: int | None = None  # a rule whose match was cut at MAX_HOLD

    def feed(self, chunk: str) -> str:
        """Everything that is now safe to emit (possibly empty)."""
        if not chunk:
            return ""
        self._buffer += chunk
        return self._advance(final=False)

    def flush(self) -> str:
        """The rest, at the end of the stream."""
        return self._advance(final=True)

    def _advance(self, *, final: bool) -> str:
        text = self._buffer
        size = len(text)
        if not size:
            return ""
        table = self._redactor.table
        lowered = lower(text)
        spans = _secret_spans(table, text)
        spans.extend(self._carried)  # a mask begun before, credentials found before
        resume = list(self._resume)
        continuing = False
        if self._continuing is not None:
            rest = RESTS[self._continuing].match(text)
            rest_end = rest.end() if rest is not None else 0
            spans.append((0, rest_end))
            resume = [max(r, rest_end) for r in resume]
            continuing = not final and rest_end == size
        cut = size if final else _held_secret_tail(table, text)
        found: list[tuple[int, int, int, tuple[int, int]]] = []  # rule, start, end, span
        touching: list[tuple[int, re.Match[str]]] = []
        # Short texts (a line) first pass one regex per case; long ones go straight to the
        # per-rule substring checks, which run at memory speed.
        maybe = (True, True)
        if size < 4096:
            maybe = (
                ANY_GATE[0].search(text) is not None,
                ANY_GATE[1].search(lowered) is not None,
            )
        for index, rule in enumerate(CREDENTIAL_RULES):
            if not maybe[rule.ignore_case]:
                continue
            hay = lowered if rule.ignore_case else text
            if not any(gate in hay for gate in rule.gates):
                continue  # the rule cannot match: skip its (much slower) regex scan
            for match in RULES[index].finditer(hay, resume[index]):
                if not final and match.end() == size:
                    touching.append((index, match))  # it may grow with the next chunk
                    cut = min(cut, match.start())
                    break
                span = masked_span(match)
                found.append((index, match.start(), match.end(), span))
        if not final:
            if continuing:
                cut = min(cut, max(0, size - PENDING_WINDOW))  # its end may be split
            # No pending form spans a newline: only the unfinished last line can hold one.
            window = max(0, size - PENDING_WINDOW, text.rfind("\n", 0, size) + 1)
            for hay, pending_re in zip((text, lowered), PENDING, strict=True):
                pending = pending_re.search(hay, window) if window < size else None
                if pending is not None:
                    cut = min(cut, pending.start())
            cut = max(cut, size - MAX_HOLD)
            if cut == 0:
                return ""  # all of it may still be (part of) a secret
            for index, match in touching:
                if cut > match.start():  # held for too long: mask it, and what follows
                    found.append((index, match.start(), size, match.span()))
                    continuing = True
                    self._continuing = index
        for index, start, end, span in found:
            if start < cut:
                spans.append(span)
                resume[index] = end
        out: list[str] = []
        pos = 0
        covered_to = 0
        merged = _merge(spans)
        for start, end in merged:
            if start >= cut:
                break
            out.append(text[pos:start])
            if not (start == 0 and self._mask_open):
                out.append(MASK)
            pos = covered_to = end
        if pos < cut:
            out.append(text[pos:cut])
        if not continuing:
            self._continuing = None
        if final:
            self._buffer, self._carried, self._mask_open = "", [], False
            self._resume = [0] * len(CREDENTIAL_RULES)
        else:
            self._mask_open = covered_to >= cut
            self._carried = [(max(0, s - cut), e - cut) for s, e in merged if e > cut]
            self._resume = [r - cut if r > cut else 0 for r in resume]
            self._buffer = text[cut:]
        return "".join(out)


def redact_structure(obj: Any, redactor: Redactor) -> Any:
    """A copy of `obj` (dicts, lists, tuples, strings, scalars) with every string redacted
    and the value of every sensitive key (`SENSITIVE_KEYS`) replaced by `***`."""
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
