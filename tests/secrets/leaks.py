"""How a secret may be printed, rendered by the tools that print it (not by runner's own
`forms`), and the checks that none of it is left: shared by the redaction tests."""

from __future__ import annotations

import base64
import functools
import html
import json
import re
import shlex
import urllib.parse
from collections.abc import Callable

from hypothesis import strategies as st

from runner.secrets.normalise import normalise, strip_invisible

# Secrets over the full Unicode range with what breaks quoting and escaping. A `*` is left
# out: a secret made of or ending in stars can reappear next to a mask (`a**` in `a***`)
# without anything of it leaking.
SPECIAL = list("'\"\\%&+ ,:;$`!#~=/_-\t\r\n\x00\x01\x07\x7f\x85\u200b\ufeffé€😀")
ESCAPES = ["\x1b[31m", "\x1b[0m", "\x1b]0;title\x07", "\x1b(B", "\x9b1m"]
CHARACTERS = (
    st.characters(blacklist_categories=("Cs",), blacklist_characters="*")
    | st.sampled_from(SPECIAL)
    | st.sampled_from(ESCAPES)
)


def visible(secret: str) -> bool:
    """A secret a reader could recognise: 8 characters or more that show."""
    shown = strip_invisible(secret).strip()
    return len(shown) >= 8 and "*" not in secret


secrets_st = st.lists(CHARACTERS, min_size=8, max_size=40).map("".join).filter(visible)
filler_st = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


def backslashed(secret: str) -> str:
    """bash `printf %q` in a UTF-8 locale, for a value without control characters."""
    return "".join("\\" + c if c in " \"\\&'!$`()*?[]{}|;<>,^" else c for c in secret)


# What bash's `printf %q` writes for these in `$'...'` (checked against bash 5.2).
BASH_C_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\v": "\\v",
    "\f": "\\f",
    "\r": "\\r",
    "\x1b": "\\E",
}


def ansi_c(secret: str) -> str:
    """bash `printf %q` in the C locale: `$'...'`, non-ASCII as octal bytes."""
    out = []
    for byte in secret.encode():
        char = chr(byte)
        if char in "\\'":
            out.append("\\" + char)
        elif char in BASH_C_ESCAPES:
            out.append(BASH_C_ESCAPES[char])
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return "$'" + "".join(out) + "'"


def wrapped(encoded: str, width: int, newline: str = "\n") -> str:
    return newline.join(encoded[i : i + width] for i in range(0, len(encoded), width))


def _inside(secret: str, part: int, inserted: str) -> str:
    """`secret` with `inserted` before its visible character at 1/`part` of them (never
    inside an escape sequence of the secret's own)."""
    view = normalise(secret)
    at = view.origin(len(view.text) // part)
    return secret[:at] + inserted + secret[at:]


def _workflow(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(value: str) -> str:
    return _workflow(value).replace(":", "%3A").replace(",", "%2C")


def _declared(value: str) -> str:
    return re.sub(r'(["\\$`])', r"\\\1", value)


# Each: what a step prints for a secret (by the tool that prints it), and the part of
# it that must not be left after redaction (None: checked as base64 or as seen).
RENDERINGS: dict[str, tuple[Callable[[str], str], Callable[[str], str] | None]] = {
    "raw": (lambda s: s, lambda s: s),
    "repr": (lambda s: f"KeyError({s!r})", lambda s: repr(s)[1:-1]),
    "repr-other-quote": (
        lambda s: repr(s + "'"),
        lambda s: repr(s + "'")[1:-1].removesuffix("\\'").removesuffix("'"),
    ),
    "ascii": (ascii, lambda s: ascii(s)[1:-1]),
    "unicode-escape": (lambda s: s.encode("unicode_escape").decode(), None),
    "bytes-repr": (lambda s: repr(s.encode()), lambda s: repr(s.encode())[2:-1]),
    "json": (json.dumps, lambda s: json.dumps(s)[1:-1]),
    "json-unicode": (
        lambda s: json.dumps(s, ensure_ascii=False),
        lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
    ),
    "repr-of-json": (lambda s: repr(json.dumps({"k": s})), lambda s: repr(json.dumps(s))[2:-2]),
    "shlex": (shlex.quote, lambda s: s.replace("'", "'\"'\"'")),
    "xtrace": (
        lambda s: "+ echo '" + s.replace("'", "'\\''") + "'",
        lambda s: s.replace("'", "'\\''"),
    ),
    "printf-q": (backslashed, backslashed),
    "printf-q-c-locale": (ansi_c, lambda s: ansi_c(s)[2:-1]),
    "declare-p": (lambda s: f'declare -x S="{_declared(s)}"', _declared),
    "workflow-message": (lambda s: "::warning::" + _workflow(s), _workflow),
    "workflow-property": (
        lambda s: "::error title=" + _property(s) + "::x",
        _property,
    ),
    "url": (lambda s: urllib.parse.quote(s, safe=""), lambda s: urllib.parse.quote(s, safe="")),
    "url-plus": (urllib.parse.quote_plus, urllib.parse.quote_plus),
    "html": (html.escape, html.escape),
    "base64": (lambda s: base64.b64encode(s.encode()).decode(), None),
    "base64-coreutils": (lambda s: wrapped(base64.b64encode(s.encode()).decode(), 76), None),
    "base64-pem": (lambda s: wrapped(base64.b64encode(s.encode()).decode(), 64, "\r\n"), None),
    # a narrow wrap (`base64 -w 8`) starts its own line: see README, Secrets
    "base64-url-wrapped": (
        lambda s: "\n" + wrapped(base64.urlsafe_b64encode(s.encode()).decode(), 8),
        None,
    ),
    "encodebytes-in-stream": (
        lambda s: base64.encodebytes(b"xy" + s.encode() + b"z").decode(),
        None,
    ),
    "ansi-inside": (lambda s: _inside(s, 2, "\x1b[1;32m") + "\x1b[0m", None),
    "control-inside": (lambda s: _inside(s, 3, "\x00\u200b"), None),
}


def _windows(text: str, size: int) -> set[str]:
    return {text[i : i + size] for i in range(len(text) - size + 1)}


def _base64_core(secret: str, before: bytes) -> str:
    """The part of the base64 of `before + secret + ...` that encodes only the secret."""
    data = secret.encode()
    skip = (3 - len(before) % 3) % 3
    aligned = data[skip:][: (len(data) - skip) // 3 * 3]
    return base64.b64encode(aligned).decode()


@functools.lru_cache(maxsize=64)
def _needles(secret: str) -> tuple[tuple[str, str], ...]:
    """What must not be found of `secret`: (what it is, the text)."""
    needles: list[tuple[str, str]] = []
    for name, (_, body_of) in RENDERINGS.items():
        body = body_of(secret) if body_of is not None else ""
        if len(body) >= 8:
            needles.append((name, body))
    for before in (b"", b"xy"):
        core = _base64_core(secret, before)
        for encoded in (core, core.replace("+", "-").replace("/", "_")):
            needles.extend(("base64", window) for window in sorted(_windows(encoded, 8)))
    return tuple(needles)


def leaked(output: str, secret: str) -> list[str]:
    """What of `secret` is readable in `output`: any rendering of it, any line of it as
    a reader sees it, and for base64, any 8 characters of its encoding (lines rejoined)."""
    joined = re.sub(r"\s", "", output)
    found = [
        f"{name}: {body!r}"
        for name, body in _needles(secret)
        if body in (joined if name == "base64" else output)
    ]
    seen = strip_invisible(output)
    for line in re.split(r"\r\n|\r|\n", strip_invisible(secret)):
        if len(line.strip()) >= 8 and line.strip() in seen:
            found.append(f"as seen: {line.strip()!r}")
    return found
