"""Values of the expression language and GitHub's rules for them: kinds, coercion to
number and string, truthiness, loose comparison, property/index access, the built-in
functions.

Values are plain Python data: None, bool, int/float (numbers), str, Mapping (object) and
list/tuple (array). Anything else is an opaque object. Object keys are matched
case-insensitively, as in GitHub's contexts. Arrays and objects compare by identity only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from runner.expressions.parser import ExpressionError, parse_number

NULL, BOOL, NUM, STR, ARR, OBJ = "null", "boolean", "number", "string", "array", "object"
PRIMITIVES = frozenset({NULL, BOOL, NUM, STR})


class Filtered(list[Any]):
    """The result of a `*` filter: a following property/index applies to each element."""


def kind(value: Any) -> str:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int | float):
        return NUM
    if isinstance(value, str):
        return STR
    if isinstance(value, list | tuple):
        return ARR
    return OBJ


def to_number(value: Any) -> float:
    """GitHub's coercion: null 0, false 0, true 1, strings as `Number()`, else NaN."""
    k = kind(value)
    if k == NUM:
        return _float(value)
    if k == NULL:
        return 0.0
    if k == BOOL:
        return 1.0 if value else 0.0
    if k == STR:
        return parse_number(value)
    return math.nan


def _float(value: float | int) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond the float range
        return math.inf if value > 0 else -math.inf


def number_string(value: float | int) -> str:
    """A number as GitHub prints it (.NET "G15"): `3`, `1.5`, `1E+20`, `NaN`, `Infinity`."""
    if isinstance(value, int) and abs(value) < 10**15:
        return str(value)
    x = _float(value)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return f"{x:.15g}".replace("e", "E")


def to_string(value: Any) -> str:
    """GitHub's string coercion: null '', booleans 'true'/'false', numbers without `.0`,
    arrays 'Array', objects 'Object'."""
    k = kind(value)
    if k == STR:
        return str.__str__(value)  # the text itself, also for a (str, Enum) member
    if k == NULL:
        return ""
    if k == BOOL:
        return "true" if value else "false"
    if k == NUM:
        return number_string(value)
    return "Array" if k == ARR else "Object"


def truthy(value: Any) -> bool:
    """false, 0, -0, NaN, '' and null are falsy; everything else (arrays, objects) truthy."""
    k = kind(value)
    if k == BOOL:
        return bool(value)
    if k == NULL:
        return False
    if k == NUM:
        return not (value == 0 or math.isnan(value))
    if k == STR:
        return bool(value != "")
    return True


def fold(text: str) -> str:
    """Case folding for GitHub's OrdinalIgnoreCase comparisons."""
    return text.upper()


def _coerce(a: Any, b: Any) -> tuple[str, Any, str, Any]:
    """Bring two values to one kind where GitHub does (ECMAScript abstract equality,
    without coercing objects)."""
    ka, kb = kind(a), kind(b)
    while ka != kb:
        if ka == NUM and kb == STR:
            b, kb = parse_number(b), NUM
        elif ka == STR and kb == NUM:
            a, ka = parse_number(a), NUM
        elif ka in (BOOL, NULL):
            a, ka = to_number(a), NUM
        elif kb in (BOOL, NULL):
            b, kb = to_number(b), NUM
        else:
            break
    return ka, a, kb, b


def loose_equal(a: Any, b: Any) -> bool:
    ka, a, kb, b = _coerce(a, b)
    if ka != kb:
        return False
    if ka == NUM:
        return bool(a == b)  # NaN == anything is False
    if ka == STR:
        return fold(a) == fold(b)
    if ka in (NULL, BOOL):
        return bool(a == b)
    return a is b


def loose_greater(a: Any, b: Any) -> bool:
    ka, a, kb, b = _coerce(a, b)
    if ka != kb:
        return False
    if ka == NUM:
        return bool(a > b)
    if ka == STR:
        return fold(a) > fold(b)
    if ka == BOOL:
        return bool(a and not b)
    return False


def loose_less(a: Any, b: Any) -> bool:
    ka, a, kb, b = _coerce(a, b)
    if ka != kb:
        return False
    if ka == NUM:
        return bool(a < b)
    if ka == STR:
        return fold(a) < fold(b)
    if ka == BOOL:
        return bool(b and not a)
    return False


def compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return loose_equal(a, b)
    if op == "!=":
        return not loose_equal(a, b)
    if op == "<":
        return loose_less(a, b)
    if op == ">":
        return loose_greater(a, b)
    if op == "<=":
        return loose_equal(a, b) or loose_less(a, b)
    return loose_equal(a, b) or loose_greater(a, b)


# ---------------------------------------------------------------------------- access


def get_key(obj: Mapping[Any, Any], key: str) -> Any:
    """obj[key], matching the key case-insensitively; None when absent."""
    found = _lookup(obj, key)
    return None if found is _MISSING else found


_MISSING = object()


def _int_index(index: Any) -> int | None:
    n = to_number(index)
    if math.isnan(n) or n < 0 or n >= 2**31:
        return None
    return math.floor(n)


def index(value: Any, key: Any, star: bool) -> Any:
    """`value[key]` (or `value.*` when star) with GitHub's rules: missing -> null."""
    k = kind(value)
    if isinstance(value, Filtered):
        result = Filtered()
        for item in value:
            ik = kind(item)
            if ik == OBJ and isinstance(item, Mapping):
                if star:
                    result.extend(item.values())
                elif kind(key) in PRIMITIVES:
                    found = _lookup(item, to_string(key))
                    if found is not _MISSING:
                        result.append(found)
            elif ik == ARR:
                if star:
                    result.extend(item)
                else:
                    i = _int_index(key)
                    if i is not None and i < len(item):
                        result.append(item[i])
        return result
    if k == OBJ and isinstance(value, Mapping):
        if star:
            return Filtered(value.values())
        return get_key(value, to_string(key)) if kind(key) in PRIMITIVES else None
    if k == ARR:
        if star:
            return Filtered(value)
        i = _int_index(key)
        return value[i] if i is not None and i < len(value) else None
    return Filtered() if star else None


def _lookup(obj: Mapping[Any, Any], key: str) -> Any:
    try:
        return obj[key]
    except (KeyError, TypeError):
        pass
    folded = fold(key)
    for k, v in obj.items():
        if isinstance(k, str) and fold(k) == folded:
            return v
    return _MISSING


# ---------------------------------------------------------------------------- JSON


def to_json(value: Any) -> str:
    """Pretty JSON with 2-space indentation, as GitHub's toJSON prints it."""
    try:
        return _json(value, 0)
    except RecursionError:
        raise ExpressionError("toJSON(): the value is nested too deeply", 0) from None


def _json(value: Any, level: int) -> str:
    k = kind(value)
    if k == NULL:
        return "null"
    if k == BOOL:
        return "true" if value else "false"
    if k == NUM:
        return _json_number(value)
    if k == STR:
        return json.dumps(value, ensure_ascii=False)
    pad, inner = "  " * level, "  " * (level + 1)
    if k == ARR:
        if not value:
            return "[]"
        items = [inner + _json(v, level + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if not isinstance(value, Mapping):
        return json.dumps(to_string(value))
    if not value:
        return "{}"
    members = [
        f"{inner}{json.dumps(str(key), ensure_ascii=False)}: {_json(v, level + 1)}"
        for key, v in value.items()
    ]
    return "{\n" + ",\n".join(members) + "\n" + pad + "}"


def _json_number(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == int(value) and abs(value) < 2**63:
        return str(int(value))
    return repr(value)


def from_json(text: str) -> Any:
    """The JSON value of `text`. The error quotes the text whole and as it is (neither
    cut nor escaped): it may hold a secret, which the run masks in a message before it
    escapes and shortens it (`Redactor.message`); a piece cut or escaped here first would
    no longer be recognised."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ExpressionError(f"fromJSON(): not valid JSON: '{text}' ({exc})", 0) from None


# ---------------------------------------------------------------------------- functions


def fn_contains(search: Any, item: Any) -> bool:
    """contains(string, substring) case-insensitive; contains(array, value) loose equality."""
    ks = kind(search)
    if ks == ARR:
        return any(loose_equal(x, item) for x in search)
    if ks in PRIMITIVES and kind(item) in PRIMITIVES:
        return fold(to_string(item)) in fold(to_string(search))
    return False


def fn_starts_with(text: Any, prefix: Any) -> bool:
    if kind(text) in PRIMITIVES and kind(prefix) in PRIMITIVES:
        return fold(to_string(text)).startswith(fold(to_string(prefix)))
    return False


def fn_ends_with(text: Any, suffix: Any) -> bool:
    if kind(text) in PRIMITIVES and kind(suffix) in PRIMITIVES:
        return fold(to_string(text)).endswith(fold(to_string(suffix)))
    return False


def fn_join(items: Any, separator: Any = ",") -> str:
    if kind(items) == ARR:
        sep = to_string(separator) if kind(separator) in PRIMITIVES else ","
        return sep.join(to_string(x) for x in items)
    if kind(items) in PRIMITIVES:
        return to_string(items)
    return ""


def fn_format(fmt: Any, *args: Any) -> str:
    """format('{0} and {1}', a, b); '{{' and '}}' are literal braces."""
    text = to_string(fmt)
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "{":
            if i + 1 < n and text[i + 1] == "{":
                out.append("{")
                i += 2
                continue
            j = i + 1
            while j < n and text[j].isascii() and text[j].isdigit():
                j += 1
            if j == i + 1 or j >= n or text[j] != "}" or j - i > 4 or int(text[i + 1 : j]) > 255:
                raise ExpressionError(
                    f"format(): invalid format string {text!r}: '{{' at {i} must start "
                    "'{N}' (N an argument number) or be doubled as '{{'",
                    0,
                )
            arg = int(text[i + 1 : j])
            if arg >= len(args):
                raise ExpressionError(
                    f"format(): the format string {text!r} uses {{{arg}}} but only "
                    f"{len(args)} argument(s) follow it",
                    0,
                )
            out.append(to_string(args[arg]))
            i = j + 1
        elif c == "}":
            if i + 1 < n and text[i + 1] == "}":
                out.append("}")
                i += 2
                continue
            raise ExpressionError(
                f"format(): invalid format string {text!r}: a lone '}}' at {i} must be "
                "doubled as '}}'",
                0,
            )
        else:
            j = i
            while j < n and text[j] not in "{}":
                j += 1
            out.append(text[i:j])
            i = j
    return "".join(out)


def fn_to_json(value: Any) -> str:
    return to_json(value)


def fn_from_json(text: Any) -> Any:
    return from_json(to_string(text))
