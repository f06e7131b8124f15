"""GitHub's step-to-runner protocol: file commands and workflow commands on stdout.

File commands (`$RUNNER_OUTPUT`, `$RUNNER_ENV`, `$RUNNER_PATH`, `$RUNNER_STEP_SUMMARY`;
`$GITHUB_OUTPUT`, `$GITHUB_ENV`, `$GITHUB_PATH`, `$GITHUB_STEP_SUMMARY` name the same
files): outputs and env are `name=value` lines, or `name<<DELIM` ... `DELIM` heredocs for
multi-line values; the path file is one directory a line, prepended to `PATH` for the
job's later steps (`parse_path_file`); the summary is Markdown, kept with the run, at
most `MAX_SUMMARY_BYTES` (GitHub's limit). Workflow commands on stdout:
`::add-mask::VALUE`, `::error ...::msg`, `::warning ...::msg`, `::notice ...::msg`,
`::group::title`, `::endgroup::`, parsed as GitHub's runner parses them: the command's
properties end at the first `::`, property names are matched in any case, values are
unescaped (`%0D`, `%0A`, `%3A`, `%2C`, `%25`) and so is the message (`%0D`, `%0A`, `%25`).

Annotations (`annotation`): `::error file=app.py,line=3,endLine=4,col=5,endColumn=7,
title=Bad::message` becomes an `Annotation` event carrying the location and the title.
Every field is read from the line as the job's redactor masks it, then unescaped and
masked again (a secret printed escaped or not, whole or cut by a `,`, never shows in a
field). Property values are untrusted and checked, never used: a `file=` is a name to
show, repository-relative; one under the workspace mount (`/workspace/src/a.py`) is shown
relative to it, anything else (`..`, other absolute paths) as given, and runner never
opens or resolves it. A bad value (a position that is not a decimal from 1 to
`MAX_POSITION`, a file or title with a control character or longer than `MAX_PROPERTY`)
is dropped and the annotation kept; positions are made consistent as GitHub makes them
(no column without a line, columns only on a one-line range, no range that ends before it
starts).

`$RUNNER_ENV` sets variables for the job's later steps, so it may not set what would run
code in them that their commands did not name (`HOOKS`): the dynamic loader's variables
(`LD_*`), shell start-up files (`BASH_ENV`, `ENV`), and the options and module paths of
interpreters (`PYTHONPATH`, `PYTHONSTARTUP`, `PERL5OPT`, `NODE_OPTIONS`, `RUBYOPT`,
`JAVA_TOOL_OPTIONS`, ...). `PYTHONPATH` is one of them: Python imports `sitecustomize`
from it at every start, so it is a hook like `PERL5OPT`, not just a search path. `PATH`
is one too: `$RUNNER_PATH` is the one sanctioned way to change it, an absolute directory
a line, never a list (`:`), a relative or empty entry (the step's working directory), or
anything but a path.

Errors quote what the step wrote only once it is redacted (`redact`, the job's
redactor): a line holding a secret is quoted masked, whole, never a piece of it (a name
cut at `=` may be the first half of a secret).
"""

from __future__ import annotations

import functools
import itertools
import posixpath
import re
from dataclasses import dataclass

from runner.engine.backend import WORKSPACE_PATH
from runner.errors import InvalidInput
from runner.records.events import Annotation
from runner.secrets.redact import MASK, Redactor, shorten

# Names a step may set: GitHub accepts any non-empty name without "=" for outputs; env
# names must also be usable as environment variables.
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_FILE_COMMAND_BYTES = 1024 * 1024
MAX_SUMMARY_BYTES = 1024 * 1024  # per step, as GitHub's
_PATH_LINE = re.compile(r"^/[^\x00-\x1f\x7f:]*$")
QUOTE_LIMIT = 80

_LOADER = "the dynamic loader reads it: it would load code into every program of later steps"
_INTERPRETER = "the interpreter reads it at start: it would run code in every later step"
# Variables a step may not set for the job's later steps, and why.
HOOKS: dict[str, str] = {
    "PATH": "it decides which program every later command runs",
    "HOME": "runner sets it",
    "BASH_ENV": "bash runs the file it names before every script",
    "ENV": "sh and bash run the file it names at start",
    "SHELLOPTS": "bash reads its options from it",
    "BASHOPTS": "bash reads its options from it",
    "PS4": "bash runs what it holds when tracing",
    "PROMPT_COMMAND": "bash runs what it holds",
    "IFS": "it changes how every later shell splits words",
    "CDPATH": "it changes where every later `cd` goes",
    "GCONV_PATH": "glibc loads character-set modules from it",
    "GLIBC_TUNABLES": _LOADER,
    "PYTHONPATH": "Python imports sitecustomize from it at every start",
    "PYTHONSTARTUP": _INTERPRETER,
    "PYTHONHOME": _INTERPRETER,
    "PYTHONUSERBASE": "Python imports usercustomize from it at every start",
    "PYTHONWARNINGS": "Python imports the warning categories it names",
    "PYTHONBREAKPOINT": "Python imports the function it names",
    "PERL5OPT": _INTERPRETER,
    "PERL5LIB": _INTERPRETER,
    "PERLLIB": _INTERPRETER,
    "PERL5DB": _INTERPRETER,
    "NODE_OPTIONS": _INTERPRETER,
    "NODE_PATH": _INTERPRETER,
    "RUBYOPT": _INTERPRETER,
    "RUBYLIB": _INTERPRETER,
    "LUA_INIT": _INTERPRETER,
    "JAVA_TOOL_OPTIONS": _INTERPRETER,
    "_JAVA_OPTIONS": _INTERPRETER,
    "JDK_JAVA_OPTIONS": _INTERPRETER,
    "GIT_SSH_COMMAND": "git runs it",
    "GIT_EXEC_PATH": "git runs its helpers from it",
    "GIT_CONFIG_PARAMETERS": "git reads settings (hooks, helpers) from it",
    "GIT_CONFIG_COUNT": "git reads settings (hooks, helpers) from it",
}
HOOK_PREFIXES: dict[str, str] = {
    "LD_": _LOADER,
    "GIT_CONFIG_KEY_": "git reads settings (hooks, helpers) from it",
    "RUNNER_": "runner sets it",
    "GITHUB_": "runner sets it",
}


class FileCommandError(InvalidInput):
    """A step wrote a file command the runner cannot accept."""


@dataclass(frozen=True)
class _File:
    """A file command's text, and what of it is masked (the secrets of the job, matched in
    the whole text: a secret's wrapped base64 is recognised over its lines)."""

    text: str
    redactor: Redactor | None

    @functools.cached_property
    def masked(self) -> list[tuple[int, int]]:
        return self.redactor.message_spans(self.text) if self.redactor is not None else []


@dataclass(frozen=True)
class _Line:
    """One line of a file command (at `start` in it), and how to quote it in a message."""

    file: _File
    number: int
    start: int
    text: str

    def _masked(self) -> str | None:
        """The line with what is masked in it replaced, or None when nothing is."""
        end = self.start + len(self.text)
        inside = [(max(a, self.start), min(b, end)) for a, b in self.file.masked]
        inside = [(a - self.start, b - self.start) for a, b in inside if a < b]
        if not inside:
            return None
        shown, at = [], 0
        for a, b in inside:
            shown += [self.text[at:a], MASK]
            at = b
        return "".join([*shown, self.text[at:]])

    def quote(self, part: str | None = None) -> str:
        """`part` of the line (the whole line by default) for a message: masked, then
        quoted, then shortened; the whole line, masked, when it holds a secret."""
        masked = self._masked()
        shown = masked if masked is not None else self.text if part is None else part
        return repr(shorten(shown, QUOTE_LIMIT))

    @property
    def secret(self) -> bool:
        return self._masked() is not None


def parse_file_command(
    text: str,
    *,
    what: str,
    redact: Redactor | None = None,
    env: bool = False,
) -> dict[str, str]:
    """Parse the content of an output or env file into name -> value; with `env`, each
    name is checked as `check_env_names` does. Errors quote it as `redact` masks it."""
    if len(text.encode("utf-8", "replace")) > MAX_FILE_COMMAND_BYTES:
        raise FileCommandError(f"{what} is larger than {MAX_FILE_COMMAND_BYTES} bytes")
    values: dict[str, str] = {}
    file = _File(text, redact)
    lines = text.split("\n")
    starts = list(itertools.accumulate((len(line) + 1 for line in lines), initial=0))
    i = 0
    while i < len(lines):
        line = _Line(file, i + 1, starts[i], lines[i].rstrip("\r"))
        i += 1
        if not line.text.strip():
            continue
        text_ = line.text
        if "<<" in text_ and ("=" not in text_ or text_.index("<<") < text_.index("=")):
            name, _, delimiter = text_.partition("<<")
            if not name or not delimiter:
                raise FileCommandError(
                    f"{what}: line {line.number}: malformed heredoc line {line.quote()}"
                )
            if env:
                _check_env_name(name, line, what)
            body: list[str] = []
            while i < len(lines) and lines[i].rstrip("\r") != delimiter:
                body.append(lines[i].rstrip("\r"))
                i += 1
            if i >= len(lines):
                raise FileCommandError(
                    f"{what}: line {line.number}: the heredoc for {line.quote(name)} never "
                    f"ends (no line {line.quote(delimiter)})"
                )
            i += 1
            values[name] = "\n".join(body)
            continue
        name, sep, value = text_.partition("=")
        if not sep or not name:
            raise FileCommandError(
                f"{what}: line {line.number}: {line.quote()} is neither name=value nor "
                "name<<DELIMITER"
            )
        if env:
            _check_env_name(name, line, what)
        values[name] = value
    return values


def parse_path_file(text: str, *, redact: Redactor | None = None) -> list[str]:
    """The directories of a `$RUNNER_PATH` file, in its order (blank lines skipped): each
    absolute, normalised, without `:` or control characters, so that it adds one
    directory to PATH and nothing else. Errors quote the line as `redact` masks it."""
    what = "$RUNNER_PATH"
    if len(text.encode("utf-8", "replace")) > MAX_FILE_COMMAND_BYTES:
        raise FileCommandError(f"{what} is larger than {MAX_FILE_COMMAND_BYTES} bytes")
    file = _File(text, redact)
    lines = text.split("\n")
    starts = list(itertools.accumulate((len(line) + 1 for line in lines), initial=0))
    found: list[str] = []
    for number, (start, raw) in enumerate(zip(starts, lines, strict=False), start=1):
        line = _Line(file, number, start, raw.rstrip("\r"))
        entry = line.text.strip()
        if not entry:
            continue
        if not _PATH_LINE.match(entry):
            raise FileCommandError(
                f"{what}: line {number}: {line.quote()} is not one absolute directory (a "
                "line must start with / and hold no ':' or control character); PATH was "
                "not changed"
            )
        found.append(posixpath.normpath(entry))
    return found


def hook_reason(name: str) -> str | None:
    """Why a step may not set `name` for later steps, or None if it may."""
    upper = name.upper()
    if upper in HOOKS:
        return HOOKS[upper]
    for prefix, why in HOOK_PREFIXES.items():
        if upper.startswith(prefix):
            return why
    return None


def _check_env_name(name: str, line: _Line, what: str) -> None:
    if not _ENV_NAME.match(name):
        raise FileCommandError(
            f"{what}: line {line.number}: {line.quote(name)} is not a valid environment "
            "variable name"
        )
    why = hook_reason(name)
    if why is not None:
        shown = name if not line.secret else line.quote()
        raise FileCommandError(
            f"{what}: line {line.number}: a step may not set {shown} ({why}); it was not set"
        )


def check_env_names(
    values: dict[str, str], *, what: str, redact: Redactor | None = None
) -> dict[str, str]:
    """`values` if every name may be set for later steps (see `parse_file_command`)."""
    for number, (name, value) in enumerate(values.items(), start=1):
        line = f"{name}={value}"
        _check_env_name(name, _Line(_File(line, redact), number, 0, line), what)
    return values


@dataclass(frozen=True)
class WorkflowCommand:
    name: str  # add-mask, error, warning, notice, group, endgroup, debug
    value: str
    properties: dict[str, str]  # names as written (GitHub matches them in any case)


# The command and its properties end at the first `::` after the leading one (GitHub's).
_COMMAND = re.compile(r"^::([A-Za-z-]+)(?: (.*?))?::(.*)$")
KNOWN_COMMANDS = frozenset({"add-mask", "error", "warning", "notice", "group", "endgroup", "debug"})
ANNOTATION_LEVELS = ("error", "warning", "notice")
MAX_PROPERTY = 1024  # characters of an annotation's file or title; a longer one is dropped
MAX_POSITION = 2**31 - 1  # a line or column (GitHub's: a 32-bit integer)
_DECIMAL = re.compile(r"^[0-9]{1,10}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _unescape(value: str) -> str:
    return value.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def _unescape_property(value: str) -> str:
    return _unescape(value.replace("%3A", ":").replace("%2C", ","))


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
            props[key] = _unescape_property(value)
    return WorkflowCommand(match.group(1), _unescape(match.group(3)), props)


def annotation(line: str, *, job: str, step: int, redact: Redactor) -> Annotation | None:
    """The `Annotation` an `::error`, `::warning` or `::notice` line makes (None for any
    other line), every field masked by `redact`, bad property values dropped (see the
    module docstring)."""
    command = parse_workflow_command(redact(line))
    if command is None or command.name not in ANNOTATION_LEVELS:
        return None
    props = {key.lower(): redact(value) for key, value in command.properties.items()}
    line_, end_line = _position(props.get("line")), _position(props.get("endline"))
    col, end_column = _position(props.get("col")), _position(props.get("endcolumn"))
    if line_ is None:
        line_, end_line = end_line, None  # GitHub: an end line alone is the line
    if line_ is None or (end_line is not None and end_line != line_):
        col = end_column = None  # columns need a line, and only one
    if line_ is not None and end_line is not None and end_line < line_:
        end_line = None
    if col is None or (end_column is not None and end_column < col):
        end_column = None
    file = _text(props.get("file"))
    return Annotation(
        job=job,
        step=step,
        level=command.name,
        message=redact(command.value),
        file=_relative(file) if file is not None else None,
        line=line_,
        end_line=end_line,
        col=col,
        end_column=end_column,
        title=_text(props.get("title")),
    )


def _position(value: str | None) -> int | None:
    """A line or column: a decimal from 1 to `MAX_POSITION`, else None (dropped)."""
    if value is None or not _DECIMAL.match(value):
        return None
    number = int(value)
    return number if 1 <= number <= MAX_POSITION else None


def _text(value: str | None) -> str | None:
    """A file or title to show: None when empty, too long or holding a control character."""
    if not value or len(value) > MAX_PROPERTY or _CONTROL.search(value):
        return None
    return value


def _relative(file: str) -> str:
    """`file` relative to the repository when it names a path under the workspace mount
    without `..`; as given otherwise. A string operation only: never resolved or opened."""
    rest = file.removeprefix(WORKSPACE_PATH + "/")
    if rest == file or not rest.strip("/") or ".." in rest.split("/"):
        return file
    return rest.lstrip("/")
