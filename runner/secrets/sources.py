"""Where a run's secrets come from: the invoker's environment or a dotenv file, never the
command line (a value there lands in shell history, `ps` and CI logs).

`--secret NAME` reads the environment variable NAME; `--secret NAME=ENV_VAR` reads ENV_VAR;
`--secret-file F` reads a dotenv file:

    # a comment
    export TOKEN=abc123            # `export` is allowed, a ` #` comment ends the value
    PLAIN = spaced value           # spaces around `=` and the value's ends are trimmed
    SINGLE='taken $literally\\n'    # no escapes in single quotes
    DOUBLE="line one\\nline two"    # \\n \\r \\t \\" \\\\ \\$ are escapes in double quotes
    KEY="-----BEGIN ...
    ...-----END ..."                # quoted values may span lines

No variable expansion. A name given both ways takes the `--secret` value (the more
explicit); a name repeated in the file takes its last value. Errors name the variable or
the file and line, never a value.

`secrets.GITHUB_TOKEN` means nothing on a local runner: unless the invoker passes a secret
of that name, it evaluates to empty, with `GITHUB_TOKEN_NOTE`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner.errors import InvalidInput

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ENV_STYLE = re.compile(r"[A-Z_][A-Z0-9_]*\Z")
GITHUB_TOKEN = "GITHUB_TOKEN"
GITHUB_TOKEN_NOTE = "secrets.GITHUB_TOKEN means nothing here: it evaluates to empty"
_HOW = "pass it through an environment variable (--secret NAME=ENV_VAR) or a --secret-file"


def resolve_secrets(
    specs: Sequence[str], secret_file: Path | None, environ: Mapping[str, str]
) -> dict[str, str]:
    """The secrets of a run, name -> value."""
    secrets = parse_dotenv(secret_file) if secret_file is not None else {}
    for spec in specs:
        name, sep, variable = spec.partition("=")
        if not NAME.match(name):
            raise InvalidInput(
                "--secret takes NAME or NAME=ENV_VAR, and what was given is neither "
                "(not repeated here, in case it is a secret value)",
                hint=f"secrets are never given on the command line: {_HOW}",
            )
        if not sep:
            variable = name
        elif not NAME.match(variable):
            raise InvalidInput(
                f"--secret {name}=...: what follows '=' is not an environment variable name; "
                "a secret value is never given on the command line (not repeated here)",
                hint=_HOW,
            )
        if variable not in environ:
            if _ENV_STYLE.match(variable):
                raise InvalidInput(
                    f"--secret {spec}: the environment variable {variable} is not set",
                    hint=f"export {variable}=... before running, or use --secret-file",
                )
            raise InvalidInput(
                f"--secret {name}=...: no environment variable of that name is set, and the "
                "name does not look like one (not repeated here, in case it is a secret value)",
                hint=_HOW,
            )
        secrets[name] = environ[variable]
    return secrets


# -- dotenv -----------------------------------------------------------------------------

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}
_KEY = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*")


def parse_dotenv(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"--secret-file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"--secret-file {path}: cannot be read ({exc})") from None
    return parse_dotenv_text(text, str(path))


def parse_dotenv_text(text: str, where: str) -> dict[str, str]:
    """Parse dotenv `text`; `where` names it in errors (`where:line: ...`)."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    values: dict[str, str] = {}
    pos = 0
    size = len(text)
    while pos < size:
        line_no = text.count("\n", 0, pos) + 1
        end = text.find("\n", pos)
        end = size if end < 0 else end
        line = text[pos:end]
        if not line.strip() or line.lstrip().startswith("#"):
            pos = end + 1
            continue
        key = _KEY.match(text, pos, end)
        if key is None:
            raise InvalidInput(
                f"{where}:{line_no}: expected KEY=VALUE (a name of letters, digits and _, then '=')"
            )
        name = key.group(1)
        start = key.end()
        quote = text[start] if start < size and text[start] in "\"'" else ""
        if not quote:
            value = text[start:end]
            comment = re.search(r"[ \t]#", value)
            values[name] = (value[: comment.start()] if comment else value).strip()
            pos = end + 1
            continue
        value, after = _quoted(text, start + 1, quote, where, line_no, name)
        tail_end = text.find("\n", after)
        tail_end = size if tail_end < 0 else tail_end
        tail = text[after:tail_end].strip()
        if tail and not tail.startswith("#"):
            raise InvalidInput(
                f"{where}:{text.count(chr(10), 0, after) + 1}: unexpected text after the "
                f"closing quote of {name}"
            )
        values[name] = value
        pos = tail_end + 1
    return values


def _quoted(
    text: str, pos: int, quote: str, where: str, line_no: int, name: str
) -> tuple[str, int]:
    """The value of a quoted string starting after its opening quote, and where it ends."""
    out: list[str] = []
    size = len(text)
    while pos < size:
        char = text[pos]
        if char == quote:
            return "".join(out), pos + 1
        if char == "\\" and quote == '"' and pos + 1 < size:
            following = text[pos + 1]
            out.append(_ESCAPES.get(following, "\\" + following))
            pos += 2
            continue
        out.append(char)
        pos += 1
    raise InvalidInput(f"{where}:{line_no}: the quoted value of {name} is never closed")
