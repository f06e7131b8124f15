"""What runner and runner-init agree on, as data (the program itself: test_init.py)."""

from __future__ import annotations

import re
import struct
from importlib import resources

import pytest

from runner.engine.stepinit import contract
from runner.errors import InvalidInput


def test_the_environment_is_length_prefixed_and_nul_separated() -> None:
    blob = contract.encode_env({"A": "x=y", "ODD": "é \\ ' \"\n%&+"})
    assert blob[:4] == b"RNIE"
    (size,) = struct.unpack(">I", blob[4:8])
    assert blob[8:] == "A=x=y\0ODD=é \\ ' \"\n%&+\0".encode()
    assert size == len(blob) - 8
    assert contract.encode_env({}) == b"RNIE\0\0\0\0"


@pytest.mark.parametrize("env", [{"A": "x\0y"}, {"": "v"}, {"A=B": "v"}, {"A\0": "v"}])
def test_what_no_environment_can_hold_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(InvalidInput, match="cannot be passed to a step"):
        contract.encode_env(env)


def test_an_environment_too_large_for_runner_init_is_refused() -> None:
    with pytest.raises(InvalidInput, match="more than the 4 MiB"):
        contract.encode_env({"BIG": "x" * contract.ENV_MAX_BYTES})


def test_only_runner_inits_own_refusal_line_and_code_are_a_refusal() -> None:
    line = b"runner-init: refused: /w (tmpfs) is writable by uid 65534 and not noexec\n"
    assert contract.refusal(contract.REFUSED, line) == (
        "refused: /w (tmpfs) is writable by uid 65534 and not noexec"
    )
    assert contract.refusal(1, line) is None  # another exit code
    assert contract.refusal(contract.REFUSED, b"step output\n" + line) is None  # not first
    long = contract.refusal(contract.REFUSED, line[:-1] + b"x" * 10_000)
    assert long is not None and len(long) <= len("refused: ") + contract.REFUSAL_MAX_BYTES


def test_arguments_round_the_deadline_up_and_name_the_granted_mounts() -> None:
    assert contract.argv(env_stdin=False, deadline_s=None) == [contract.PATH, "--"]
    assert contract.argv(env_stdin=True, deadline_s=0.2, exec_mounts=["/b", "/a"]) == [
        contract.PATH,
        "--env-stdin",
        "--deadline",
        "1",
        "--exec-mount",
        "/a",
        "--exec-mount",
        "/b",
        "--",
    ]


def test_the_c_source_says_the_same() -> None:
    source = (resources.files("runner.engine.stepinit") / "runner-init.c").read_text()
    defines = dict(re.findall(r"^#define (\w+) (.+)$", source, re.M))
    assert int(defines["EXIT_REFUSED"]) == contract.REFUSED
    assert int(defines["EXIT_SETUP"]) == contract.SETUP_FAILED
    assert defines["EXIT_DEADLINE"] == "(128 + SIGKILL)" and contract.DEADLINE == 128 + 9
    assert defines["ENV_MAGIC"] == f'"{contract.MAGIC.decode()}"'
    assert defines["ENV_MAX"] == "(4u * 1024u * 1024u)"
    assert contract.ENV_MAX_BYTES == 4 * 1024 * 1024
    assert f'"{contract.REFUSAL_PREFIX.decode()}%s\\n"' in source


def test_the_trailer_nonce_travels_in_a_reserved_entry_first() -> None:
    blob = contract.encode_env({"A": "b"}, nonce="ab" * 16)
    assert blob[8:] == b"runner-init-trailer=" + b"ab" * 16 + b"\0A=b\0"
    with pytest.raises(InvalidInput, match="runner-init reserves that name"):
        contract.encode_env({contract.TRAILER_ENTRY: "x"})
    assert contract.argv(env_stdin=True, deadline_s=None, trailer=True) == [
        contract.PATH,
        "--env-stdin",
        "--trailer",
        "--",
    ]
    with pytest.raises(ValueError, match="needs --env-stdin"):
        contract.argv(env_stdin=False, deadline_s=None, trailer=True)


def test_the_c_source_says_the_same_of_the_trailer() -> None:
    source = (resources.files("runner.engine.stepinit") / "runner-init.c").read_text()
    defines = dict(re.findall(r"^#define (\w+) (.+)$", source, re.M))
    assert defines["TRAILER_ENTRY"] == f'"{contract.TRAILER_ENTRY}"'
    assert defines["TRAILER_PREFIX"] == '"\\0' + contract.TRAILER_PREFIX[1:].decode() + '"'
    assert int(defines["NONCE_HEX"]) == 2 * contract.NONCE_BYTES
    assert int(defines["ACK_WAIT_MS"]) == contract.ACK_WAIT_S * 1000
