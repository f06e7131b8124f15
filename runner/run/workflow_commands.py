"""GitHub's step-to-runner protocol: file commands and workflow commands on stdout.

File commands (`$RUNNER_OUTPUT`, `$RUNNER_ENV`; `$GITHUB_OUTPUT`, `$GITHUB_ENV` name the
same files): `name=value` lines, or `name<<DELIM` ... `DELIM` heredocs for multi-line
values. Workflow commands on stdout: `::add-mask::VALUE`, `::error ...::msg`,
`::warning ...::msg`, `::notice ...::msg`, `::group::title`, `::endgroup::`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runner.errors import InvalidInput

# Names a step may set: GitHub accepts any non-empty name without "=" for outputs; env
# names must also be usable as environment variables.
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PROTECTED_ENV = frozenset({"NODE_OPTIONS", "PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "HOME"})
MAX_FILE_COMMAND_BYTES = 1024 * 1024


class FileCommandError(InvalidInput):
    """A step wrote a file command the runner cannot accept."""


def parse_file_command(text: str, *, what: str) -> dict[str, str]:
    """Parse the content of an output or env file into name -> value."""
    if len(text.encode("utf-8", "replace")) > MAX_FILE_COMMAND_BYTES:
        raise FileCommandError(f"{what} is larger than {MAX_FILE_COMMAND_BYTES} bytes")
    values: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].rstrip("\r")
        i += 1
        if not line.strip():
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, _, delimiter = line.partition("<<")
            if not name or not delimiter:
                raise FileCommandError(f"{what}: malformed heredoc line {line!r}")
            body: list[str] = []
            while i < len(lines) and lines[i].rstrip("\r") != delimiter:
                body.append(lines[i].rstrip("\r"))
                i += 1
            if i >= len(lines):
                raise FileCommandError(
                    f"{what}: the heredoc for {name!r} never ends (no line {delimiter!r})"
                )
            i += 1
            values[name] = "\n".join(body)
            continue
        name, sep, value = line.partition("=")
        if not sep or not name:
            raise FileCommandError(
                f"{what}: line {line!r} is neither name=value nor name<<DELIMITER"
            )
        values[name] = value
    return values


def check_env_names(values: dict[str, str], *, what: str) -> dict[str, str]:
    for name in values:
        if not _ENV_NAME.match(name):
            raise FileCommandError(f"{what}: {name!r} is not a valid environment variable name")
        if name.upper() in _PROTECTED_ENV or name.startswith(("RUNNER_", "GITHUB_")):
            raise FileCommandError(f"{what}: a step may not set {name}")
    return values


@dataclass(frozen=True)
class WorkflowCommand:
    name: str  # add-mask, error, warning, notice, group, endgroup, debug
    value: str
    properties: dict[str, str]


_COMMAND = re.compile(r"^::([A-Za-z-]+)(?: ([^:]*))?::(.*)$")
KNOWN_COMMANDS = frozenset({"add-mask", "error", "warning", "notice", "group", "endgroup", "debug"})


def _unescape(value: str) -> str:
    return value.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def parse_workflow_command(line: str) -> WorkflowCommand | None:
    """The workflow command on a stdout line, or None for an ordinary line."""
    if not line.startswith("::"):
        return None
    match = _COMMAND.match(line.rstrip("\r"))
    if match is None or match.group(1) not in KNOWN_COMMANDS:
        return None
    props: dict[str, str] = {}
    for part in (match.group(2) or "").split(","):
        key, sep, value = part.strip().partition("=")
        if sep and key:
            props[key] = _unescape(value)
    return WorkflowCommand(match.group(1), _unescape(match.group(3)), props)
