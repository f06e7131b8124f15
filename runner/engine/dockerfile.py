"""The images a Dockerfile makes the builder use, read without building it.

`bases(text)` lists every image reference a build of `text` would start from or copy out
of: each `FROM` of a multi-stage file (a `FROM` naming an earlier stage is not an image)
and each `COPY --from=` naming neither a stage nor a stage index, so that the policy can
refuse a base before anything is built (`runner.engine.images.build`).

What is read as Docker's classic builder reads it: parser directives (`# escape=`) at the
top, lines continued by the escape character (comment and empty lines inside a
continuation skipped), instructions case-insensitive, `FROM [--platform=...] image [AS
name]`, and the global `ARG`s (those before the first `FROM`) substituted into `FROM` with
their defaults: runner passes no build arguments, so an `ARG` without a default is empty
(`$X`, `${X}`, `${X:-word}`, `${X:+word}`). `COPY --from=` is not substituted by that
builder, so one holding a `$` is refused as unreadable rather than guessed.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from runner.errors import InvalidInput

SCRATCH = "scratch"  # FROM scratch: no image at all
_DIRECTIVE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_VARIABLE = re.compile(
    r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True)
class Base:
    """An image the build uses: its reference, the instruction and the line naming it."""

    reference: str
    instruction: str  # "FROM" or "COPY --from"
    line: int


def _escape_char(lines: list[str]) -> str:
    """The `# escape=` parser directive, if the file starts with one (else backslash)."""
    for line in lines:
        found = _DIRECTIVE.fullmatch(line.strip())
        if found is None:
            break
        if found.group(1).lower() == "escape" and found.group(2) in ("\\", "`"):
            return found.group(2)
    return "\\"


def instructions(text: str) -> list[tuple[int, str, str]]:
    """(line number, instruction in upper case, its arguments) of each instruction."""
    lines = text.splitlines()
    escape = _escape_char(lines)
    out: list[tuple[int, str, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and (not stripped or stripped.startswith("#")):
            continue  # comment and empty lines inside a continuation
        if not pending:
            start = number
        body = raw.rstrip()
        if body.endswith(escape):
            pending.append(body[: -len(escape)])
            continue
        pending.append(body)
        word, _, rest = " ".join(pending).strip().partition(" ")
        out.append((start, word.upper(), rest.strip()))
        pending = []
    if pending:
        word, _, rest = " ".join(pending).strip().partition(" ")
        out.append((start, word.upper(), rest.strip()))
    return out


def _substitute(value: str, args: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4)
        current = args.get(name, "")
        if match.group(2) == "-":
            return current or match.group(3)
        if match.group(2) == "+":
            return match.group(3) if current else ""
        return current

    return _VARIABLE.sub(one, value)


def _words(arguments: str, where: str) -> list[str]:
    try:
        return shlex.split(arguments, posix=True)
    except ValueError as exc:
        raise InvalidInput(f"{where}: cannot read {arguments!r}: {exc}") from None


def _declare(arguments: str, args: dict[str, str], where: str) -> None:
    """A global `ARG NAME[=default] ...` (a later declaration of a name wins)."""
    for word in _words(arguments, where):
        name, has_default, default = word.partition("=")
        args[name] = default if has_default else args.get(name, "")


def bases(text: str, shown: str = "Dockerfile") -> list[Base]:
    """Every image a build of the Dockerfile `text` uses (see the module docstring);
    InvalidInput when one cannot be read. `shown` names the file in messages."""
    args: dict[str, str] = {}
    stages: list[str] = []  # lower-cased stage names, in order
    found: list[Base] = []
    seen_from = False
    for line, word, arguments in instructions(text):
        where = f"{shown}:{line}"
        if word == "ARG" and not seen_from:
            _declare(arguments, args, where)
        elif word == "FROM":
            seen_from = True
            parts = [w for w in _words(arguments, where) if not w.startswith("--")]
            if not parts:
                raise InvalidInput(f"{where}: FROM names no image")
            reference = _substitute(parts[0], args).strip()
            if not reference:
                raise InvalidInput(
                    f"{where}: FROM {parts[0]} is empty (runner passes no build arguments)",
                    hint="give the ARG a default value",
                )
            if reference.lower() not in stages and reference != SCRATCH:
                found.append(Base(reference, "FROM", line))
            if len(parts) >= 3 and parts[1].lower() == "as":
                stages.append(parts[2].lower())
            else:
                stages.append(f"#{len(stages)}")  # unnamed: only its index refers to it
        elif word in ("COPY", "ADD"):
            for flag in _words(arguments, where):
                if not flag.startswith("--"):
                    break
                if not flag.lower().startswith("--from="):
                    continue
                source = flag.partition("=")[2]
                if "$" in source:
                    raise InvalidInput(f"{where}: {flag} holds a variable runner cannot read")
                if source.isdigit() or source.lower() in stages:
                    continue
                found.append(Base(source, f"{word} --from", line))
    return found
