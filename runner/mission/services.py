"""`jobs.<id>.services`: what of GitHub's service containers runner takes, and how.

A service is a sidecar container of the job (runner.run.services starts it): hardened
exactly like a step, on the job's private network, reachable by its name. Of GitHub's
keys (`image`, `env`, `ports`, `volumes`, `options`, `credentials`, `command`,
`entrypoint`):

    image        required; may hold `${{ matrix.X }}`; decided by the policy like a job's
    env          evaluated like the job's env; secrets in it need their grant and reach the
                 service the way a step's environment does (runner-init's stdin, never
                 the container's configuration)
    command      the container's command (a string is split like a shell's words)
    entrypoint   the container's entrypoint (one program, as `docker create --entrypoint`)
    ports        a note: steps reach a service by its name on the job's network; nothing
                 is published on the host
    volumes      an error: a service mounts nothing of the host
    credentials  a warning (GitHub runs it, so the mission validates) and a denial of the
                 service's image by the policy (runner.policy.capabilities): runner logs
                 in to no registry (the image must be one the engine has or can pull
                 anonymously, or a containers/<name> image)
    options      only the health options (`HEALTH_OPTIONS`, values in Docker's duration
                 form) and `--entrypoint` (the `entrypoint:` key); any other
                 `docker create` flag is an error at its position, since runner decides
                 the hardening

`parse_options(text)` reads `options:` as Docker's command line would (shlex words,
`--flag value` or `--flag=value`) into a `ParsedOptions` (the health check, an
`--entrypoint`) and the problems found, each with its
offset in the text so that a finding points at the flag itself.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

from runner.mission.durations import parse_go_duration
from runner.mission.model import Health

MAX_SERVICES = 16  # sidecars of one job: each has the job's limits, and the job waits for all
NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,63}\Z")  # a DNS label: the name steps resolve
NAME_RULE = "a service name is its host name on the job's network: 1 to 63 letters, digits, _ and -"
ENTRYPOINT_OPTION = "--entrypoint"
HEALTH_OPTIONS = {
    "--health-cmd": "cmd",
    "--health-interval": "interval_s",
    "--health-timeout": "timeout_s",
    "--health-retries": "retries",
    "--health-start-period": "start_period_s",
}
OPTIONS_RULE = (
    "runner decides a service's hardening (as a step's: no capabilities, read-only root, "
    "no host mounts, the policy's limits and user), so `options:` takes only the health "
    f"options ({', '.join(HEALTH_OPTIONS)}) and {ENTRYPOINT_OPTION}: drop it, and ask the "
    "policy for what the job needs"
)
PORTS_NOTE = (
    "ports are not published on the host: steps reach the service by its name on the "
    "job's network (e.g. http://{name}:PORT/), so `ports:` is not needed"
)
VOLUMES_REFUSED = (
    "a service mounts nothing of the host (as a step, it has only a read-only root and a "
    "private /tmp): drop `volumes:`; put what it needs into its image"
)
SERVICES_NOTE = (
    "services run as sidecars hardened like steps (no capabilities, read-only root with a "
    "private /tmp, no host mounts, the policy's user and limits), reachable by their names "
    "on the job's private network"
)
CREDENTIALS_REFUSED = (
    "runner logs in to no registry, so a service with credentials is refused before the "
    "run: a service's image is one the engine already has or "
    "can pull anonymously, or a containers/<name> image; drop `credentials:` and make the "
    "image available to the engine (`docker pull` it, or build it from containers/)"
)


@dataclass(frozen=True)
class ParsedOptions:
    health: Health | None = None
    entrypoint: str | None = None


@dataclass(frozen=True)
class OptionProblem:
    offset: int  # where in the `options:` text the offending word starts
    message: str


def _words(text: str) -> Iterator[tuple[int, str]]:
    """(offset, word) of each shell word of `text` (offset: where it starts)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    lexer.commenters = ""
    at = 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        start = at
        word = lexer.get_token()
        if word is None or word == lexer.eof:
            return
        at = lexer.instream.tell() if hasattr(lexer.instream, "tell") else len(text)
        yield start, word


def parse_options(text: str) -> tuple[ParsedOptions, list[OptionProblem]]:
    """What `options:` asks for (its health check, None when it asks for none; its
    `--entrypoint`) and what is wrong with it; see the module docstring."""
    try:
        words = list(_words(text))
    except ValueError as exc:  # an unclosed quote
        return ParsedOptions(), [OptionProblem(0, f"options do not parse as a command line: {exc}")]
    values: dict[str, str] = {}
    problems: list[OptionProblem] = []
    index = 0
    while index < len(words):
        offset, word = words[index]
        index += 1
        flag, equals, value = word.partition("=")
        if flag not in HEALTH_OPTIONS and flag != ENTRYPOINT_OPTION:
            problems.append(
                OptionProblem(offset, f"option {flag!r} is not allowed: {OPTIONS_RULE}")
            )
            if not equals and index < len(words) and not words[index][1].startswith("-"):
                index += 1  # its value
            continue
        if not equals:
            if index >= len(words):
                problems.append(OptionProblem(offset, f"option {flag} needs a value"))
                continue
            value = words[index][1]
            index += 1
        if flag == ENTRYPOINT_OPTION:
            values["entrypoint"] = value
            continue
        problem = _value_problem(flag, value)
        if problem:
            problems.append(OptionProblem(offset, problem))
        else:
            values[HEALTH_OPTIONS[flag]] = value
    entrypoint = values.pop("entrypoint", None)
    if "cmd" not in values:
        if values and not problems:
            problems.append(
                OptionProblem(0, "health options without --health-cmd check nothing: add one")
            )
        return ParsedOptions(entrypoint=entrypoint), problems
    health = Health(
        cmd=values["cmd"],
        interval_s=_seconds(values.get("interval_s"), 30.0),
        timeout_s=_seconds(values.get("timeout_s"), 30.0),
        retries=int(values.get("retries", "3")),
        start_period_s=_seconds(values.get("start_period_s"), 0.0),
    )
    return ParsedOptions(health, entrypoint), problems


def _seconds(value: str | None, default: float) -> float:
    seconds = parse_go_duration(value) if value is not None else None
    return default if seconds is None else seconds


def _value_problem(flag: str, value: str) -> str:
    if flag == "--health-cmd":
        return "" if value.strip() else "--health-cmd must not be empty"
    if flag == "--health-retries":
        ok = value.isdigit() and int(value) > 0
        return "" if ok else f"--health-retries must be a whole number above 0, not {value!r}"
    seconds = parse_go_duration(value)
    if seconds is None:
        return f"{flag} {value!r} is not a duration: Docker's form, e.g. 500ms, 10s, 1m30s"
    if flag != "--health-start-period" and seconds < 0.001:
        return f"{flag} must be at least 1ms, not {value!r}"
    return ""


def command_words(command: str | list[str]) -> tuple[str, ...]:
    """`command:` as the container's arguments: a list as is, a string split like a
    shell's words (as GitHub passes it to `docker create`)."""
    if isinstance(command, list):
        return tuple(str(word) for word in command)
    return tuple(shlex.split(command))
