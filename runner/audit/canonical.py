"""Canonical JSON for the audit ledger: one value, one byte string.

The subset the ledger allows makes Python's encoder produce RFC 8785 (JCS) output:
objects with ASCII string keys (so sorting by code point equals JCS's UTF-16 order),
strings, booleans, null and integers within +-(2**53 - 1) (exact in every JSON parser).
Floats are refused rather than rounded: `1.0`, `-0.0` and `1e400` have no single
canonical form across parsers. Strings are written as UTF-8, escaping only `"`, `\\`
and control characters, as JCS does.

`loads` is the matching strict reader: it rejects duplicate keys (parsers disagree on
which one wins, so signed and displayed content could diverge), floats, NaN/Infinity,
and anything that is not valid UTF-8 JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from runner.errors import InvalidInput

MAX_INT = 2**53 - 1

_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


class CanonicalError(InvalidInput):
    """A value the ledger cannot store, or bytes that are not strict canonical-subset JSON."""


def _check(value: Any, path: str) -> None:
    # bool is a subclass of int: test it first.
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str):
            _check_text(value, path)
        return
    if isinstance(value, int):
        if not -MAX_INT <= value <= MAX_INT:
            raise CanonicalError(
                f"{path}: integer {value} is outside +-(2**53 - 1); store it as a string"
            )
        return
    if isinstance(value, float):
        raise CanonicalError(
            f"{path}: floats have no canonical JSON form ({value!r}); "
            "store an integer (e.g. milliseconds) or a string"
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalError(f"{path}: key {key!r} is not a string")
            if not key.isascii():
                raise CanonicalError(f"{path}: key {key!r} is not ASCII")
            _check(item, f"{path}.{key}")
        return
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    raise CanonicalError(f"{path}: {type(value).__name__} is not storable as JSON")


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalError(f"{path}: string is not valid Unicode ({exc.reason})") from None


def dumps(value: Any) -> bytes:
    """The canonical bytes of `value` (no trailing newline); CanonicalError if not storable."""
    _check(value, "$")
    return _ENCODER.encode(_plain(value)).encode("utf-8")


def _plain(value: Any) -> Any:
    """Mappings and sequences of any kind as dicts and lists, for the encoder."""
    if isinstance(value, Mapping) and not isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return result


def _no_float(text: str) -> Any:
    raise ValueError(f"float {text} (the ledger stores no floats)")


_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs, parse_float=_no_float, parse_constant=_no_float
)


def loads(data: bytes | str) -> Any:
    """Parse strict ledger JSON: one value with no surrounding whitespace; duplicate keys,
    floats and NaN raise CanonicalError."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        value, end = _DECODER.raw_decode(text)
    except UnicodeDecodeError as exc:
        raise CanonicalError(f"not UTF-8 at byte {exc.start}") from None
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise CanonicalError(str(exc)) from None
    if end != len(text):
        raise CanonicalError(f"extra data after the JSON value at char {end}")
    return value


def is_canonical(data: bytes) -> bool:
    """True when `data` parses strictly and re-encodes to exactly the same bytes."""
    try:
        return dumps(loads(data)) == data
    except CanonicalError:
        return False
