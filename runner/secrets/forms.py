"""Every way a secret may be printed without being transformed on purpose: its forms.

`forms_of(value)` is the value itself, whatever its length, and each derived form at
least `MIN_FORM` characters long (a JSON secret's `}` line would otherwise mask every
brace):

- the value stripped, and each line of a multi-line value (stripped);
- the value without the characters nobody sees (`normalise`), as a reader sees it;
- base64, standard and URL-safe, padded and not, and the part of it that is fixed
  whatever the value's alignment inside a longer base64 stream (each at least
  `MIN_B64_FRAGMENT` characters); wrapped lines are matched by `normalise.join_base64`;
- URL-encoded (`quote` with and without `/`, `quote_plus`);
- JSON string contents (`ensure_ascii` and not), also inside a Python `repr` (a message
  quoting a JSON document that holds the value);
- Python string contents as `repr` shows them with either quote (a traceback's
  `KeyError('...')`), as `ascii` and `unicode_escape` show them, and the contents of the
  `repr` of its UTF-8 bytes;
- shell quoting: inside single quotes with `'\\''` or `'"'"'` for a quote (`set -x`,
  `shlex.quote`), inside double quotes (`declare -p`), backslashed (bash `printf %q` in
  a UTF-8 locale), and ANSI-C `$'...'` (`printf %q` with control characters or in the C
  locale, non-ASCII as octal bytes);
- GitHub workflow command escapes: `%25`, `%0D`, `%0A` in a message, and also `%3A`,
  `%2C` in a property value;
- HTML/XML-escaped.

A value is never masked by a form it does not have: anything else a step does to it
(reversing, hashing, hex, encoding twice, splitting with other characters between the
pieces) leaves something a redactor cannot recognise.
"""

from __future__ import annotations

import base64
import html
import json
import re
import urllib.parse

from runner.secrets.normalise import strip_invisible

MIN_FORM = 3  # derived forms shorter than this are not registered
MIN_B64_FRAGMENT = 8  # aligned base64 fragments of a value inside a longer stream

_SHELL_SPECIAL = frozenset(" \"\\&'!$`()*?[]{}|;<>,^")  # what bash's `printf %q` escapes
_ANSI_C = {
    "\\": "\\\\",
    "'": "\\'",
    "\a": "\\a",
    "\b": "\\b",
    "\x1b": "\\E",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


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


def _escaped(code: int) -> str:
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def python_escaped(value: str, quote: str, *, ascii_only: bool = False) -> str:
    """The contents of a Python string literal for `value`, as `repr` (or `ascii`) writes
    them with `quote` as the delimiter ("" when the other quote is: nothing escaped)."""
    out: list[str] = []
    for char in value:
        if char == "\\" or (quote and char == quote):
            out.append("\\" + char)
        elif char in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char])
        elif not char.isprintable() or (ascii_only and not char.isascii()):
            out.append(_escaped(ord(char)))
        else:
            out.append(char)
    return "".join(out)


def python_bytes_escaped(data: bytes, quote: str) -> str:
    """The contents of the `repr` of `data` (a bytes literal) with `quote` as delimiter."""
    out: list[str] = []
    for byte in data:
        char = chr(byte)
        if char == "\\" or (quote and char == quote):
            out.append("\\" + char)
        elif char in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char])
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def _ansi_c(value: str, *, octal_bytes: bool) -> str:
    """The contents of bash's `$'...'` for `value`."""
    out: list[str] = []
    for char in value:
        if char in _ANSI_C:
            out.append(_ANSI_C[char])
        elif not char.isprintable() or (octal_bytes and not char.isascii()):
            out.extend(f"\\{byte:03o}" for byte in char.encode("utf-8"))
        else:
            out.append(char)
    return "".join(out)


def shell_forms(value: str) -> set[str]:
    backslashed = "".join("\\" + c if c in _SHELL_SPECIAL else c for c in value)
    forms = {
        value.replace("'", "'\\''"),  # 'it'\''s' (set -x)
        value.replace("'", "'\"'\"'"),  # 'it'"'"'s' (shlex.quote)
        backslashed,  # printf %q
        re.sub(r'(["\\$`])', r"\\\1", value),  # "..." (declare -p, export -p)
        _ansi_c(value, octal_bytes=False),
        _ansi_c(value, octal_bytes=True),
    }
    if value[:1] in ("~", "#"):
        forms.add("\\" + backslashed)  # a leading ~ or # is escaped too
    return forms


def workflow_command_forms(value: str) -> set[str]:
    """`value` escaped as GitHub's workflow commands escape a message and a property."""
    message = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return {message, message.replace(":", "%3A").replace(",", "%2C")}


def utf8(value: str) -> bytes:
    """`value` as a step prints it: UTF-8, undecodable bytes read from the environment as
    they were, lone surrogates as themselves."""
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        pass
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def _lines(value: str) -> list[str]:
    return [line.strip() for line in re.split(r"\r\n|\r|\n", value)]


def forms_of(value: str) -> set[str]:
    """Every string that masks `value`: the value itself and its derived forms."""
    if not value.strip():
        return set()
    derived: set[str] = {value.strip()}
    if "\n" in value or "\r" in value:
        derived.update(_lines(value))
    raw = utf8(value)
    derived.add(raw.decode("utf-8", "replace"))  # as runner decodes what a step prints
    derived |= _b64_forms(raw)
    derived.add(urllib.parse.quote(raw, safe=""))
    derived.add(urllib.parse.quote(raw))
    derived.add(urllib.parse.quote_plus(raw))
    for ensure_ascii in (True, False):
        in_json = json.dumps(value, ensure_ascii=ensure_ascii)[1:-1]
        derived.add(in_json)
        derived.add(python_escaped(in_json, "'"))  # a JSON document quoted by repr
        derived.add(python_escaped(in_json, ""))
    for quote in ("'", ""):
        derived.add(python_escaped(value, quote))
        derived.add(python_escaped(value, quote, ascii_only=True))
        derived.add(python_bytes_escaped(raw, quote))
    derived.add(value.encode("unicode_escape").decode("ascii"))
    derived |= shell_forms(value)
    derived |= workflow_command_forms(value)
    derived.add(html.escape(value))
    derived.add(html.escape(value, quote=False))
    # as a reader sees it: without escape sequences and invisible characters
    visible = strip_invisible(value)
    derived.add(visible.strip())
    if "\n" in visible:
        derived.update(_lines(visible))
    derived |= {strip_invisible(form) for form in derived}
    forms = {value} if value.strip() else set()
    forms |= {form for form in derived if len(form) >= MIN_FORM and form.strip()}
    return forms
