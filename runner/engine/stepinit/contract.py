"""What runner and runner-init (`runner-init.c`) agree on.

The program lives at `PATH` in every step container and runs as its entrypoint:
`argv(...)` are its arguments (the step's command follows `--`). With `--env-stdin` it
reads `encode_env(env)` from stdin first: the magic `RNIE`, a 32-bit big-endian length,
then `NAME=VALUE` entries each ended by a NUL (an environment cannot hold a NUL, so no
escaping is needed). Its exit code is the step's, except for `REFUSED` (a mount is
writable and executable: one stderr line `refusal` reads), `SETUP_FAILED` (it could not
set the step up) and `DEADLINE` (128 + SIGKILL: it killed the container at its deadline).

With `--trailer` (the Docker backend's steps: `argv(trailer=True)`), the environment also
holds the reserved entry `TRAILER_ENTRY=<nonce>` (`encode_env(env, nonce=...)`, a fresh
`new_nonce()` per container), which runner-init takes out before the step runs. Whenever
runner-init exits after receiving it (the step's status, a refusal, the deadline), it
first kills and reaps whatever the step left behind, then ends stdout and stderr with
`trailer_of(nonce)` and waits for runner's `ACK` on its original stdin (at most
`ACK_WAIT_S`): the container is still alive while the engine delivers the last bytes, so
an engine that drops the end of a stream when a container exits (Podman 4.3's attach)
cannot drop them unseen. runner strips the trailer exactly (`trailer.StreamEnds`): it
begins with a NUL and adds no line; a stream that does not end with it is incomplete.
"""

from __future__ import annotations

import math
import secrets
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
TRAILER_ENTRY = "runner-init-trailer"  # runner-init.c's TRAILER_ENTRY: never a step's variable
TRAILER_PREFIX = b"\0runner-init-end:"  # runner-init.c's TRAILER_PREFIX, then the nonce
NONCE_BYTES = 16  # written as 32 lowercase hex digits (runner-init.c's NONCE_HEX)
ACK = b"\x06"  # what runner writes on the container's stdin once both trailers arrived
ACK_WAIT_S = 5  # runner-init.c's ACK_WAIT_MS: how long it waits for ACK before it exits


def argv(
    *,
    env_stdin: bool,
    deadline_s: float | None,
    exec_mounts: Collection[str] = (),
    trailer: bool = False,
) -> list[str]:
    """runner-init's arguments before `--` and the step's command (`trailer` needs
    `env_stdin`: the nonce comes with the environment)."""
    if trailer and not env_stdin:
        raise ValueError("runner-init's trailer needs --env-stdin (its nonce comes that way)")
    words = [PATH]
    if env_stdin:
        words.append("--env-stdin")
    if trailer:
        words.append("--trailer")
    if deadline_s is not None:
        words += ["--deadline", str(max(1, math.ceil(deadline_s)))]
    for mount in sorted(exec_mounts):
        words += ["--exec-mount", mount]
    return [*words, "--"]


def new_nonce() -> str:
    """A fresh trailer nonce: random, so that no step can print its trailer by chance."""
    return secrets.token_hex(NONCE_BYTES)


def trailer_of(nonce: str) -> bytes:
    """What runner-init writes last on stdout and on stderr (no newline: it adds no line)."""
    return TRAILER_PREFIX + nonce.encode("ascii")


def encode_env(env: Mapping[str, str], *, nonce: str | None = None) -> bytes:
    """The step's environment as runner-init reads it from stdin, with the trailer's
    `nonce` in its reserved entry (for `--trailer`; never in the step's environment)."""
    entries = []
    if nonce is not None:
        entries.append(f"{TRAILER_ENTRY}={nonce}".encode("ascii") + b"\0")
    for name, value in env.items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise InvalidInput(
                f"environment variable {name!r} cannot be passed to a step: "
                "a name is non-empty without '=' or NUL, and no value holds a NUL"
            )
        if name == TRAILER_ENTRY:
            raise InvalidInput(
                f"environment variable {name!r} cannot be passed to a step: "
                "runner-init reserves that name"
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
