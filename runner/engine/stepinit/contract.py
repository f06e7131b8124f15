"""What runner and runner-init (`runner-init.c`) agree on.

The program lives at `PATH` in every step container and runs as its entrypoint:
`argv(...)` are its arguments (the step's command follows `--`). With `--env-stdin` it
reads `encode_env(env)` from stdin first: the magic `RNIE`, a 32-bit big-endian length,
then `NAME=VALUE` entries each ended by a NUL (an environment cannot hold a NUL, so no
escaping is needed). Its exit code is the step's, except for `REFUSED` (a mount is
writable and executable: one stderr line `refusal` reads), `SETUP_FAILED` (it could not
set the step up) and `DEADLINE` (128 + SIGKILL: it killed the container at its deadline).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Collection, Mapping

from runner.errors import InvalidInput

DIRECTORY = "/.runner-init"
PATH = f"{DIRECTORY}/runner-init"
REFUSED = 122
SETUP_FAILED = 125
DEADLINE = 137
MAGIC = b"RNIE"
ENV_MAX_BYTES = 4 * 1024 * 1024  # runner-init.c's ENV_MAX
REFUSAL_PREFIX = b"runner-init: refused: "
REFUSAL_MAX_BYTES = 4096


def argv(
    *, env_stdin: bool, deadline_s: float | None, exec_mounts: Collection[str] = ()
) -> list[str]:
    """runner-init's arguments before `--` and the step's command."""
    words = [PATH]
    if env_stdin:
        words.append("--env-stdin")
    if deadline_s is not None:
        words += ["--deadline", str(max(1, math.ceil(deadline_s)))]
    for mount in sorted(exec_mounts):
        words += ["--exec-mount", mount]
    return [*words, "--"]


def encode_env(env: Mapping[str, str]) -> bytes:
    """The step's environment as runner-init reads it from stdin."""
    entries = []
    for name, value in env.items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise InvalidInput(
                f"environment variable {name!r} cannot be passed to a step: "
                "a name is non-empty without '=' or NUL, and no value holds a NUL"
            )
        entries.append(f"{name}={value}".encode() + b"\0")
    payload = b"".join(entries)
    if len(payload) > ENV_MAX_BYTES:
        raise InvalidInput(
            f"the step's environment is {len(payload)} bytes, more than the "
            f"{ENV_MAX_BYTES // (1024 * 1024)} MiB a step may receive"
        )
    return MAGIC + struct.pack(">I", len(payload)) + payload


def refusal(code: int | None, output: bytes) -> str | None:
    """The mount refusal runner-init reported (exit `REFUSED`, its line first in the
    output, since the step never ran), as a step's reason ("refused: ..."), or None."""
    if code != REFUSED or not output.startswith(REFUSAL_PREFIX):
        return None
    line = output[len(REFUSAL_PREFIX) :].split(b"\n", 1)[0][:REFUSAL_MAX_BYTES]
    return "refused: " + line.decode("utf-8", "replace").strip()
