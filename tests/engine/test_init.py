"""runner-init, PID 1 of every step, in real containers: the environment comes on stdin and
never reaches the engine's configuration, zombies are reaped and nothing outlives the
step, signals reach the step, the deadline kills the container without runner, exit codes
are the step's, no Docker log file exists, and running it by hand gives a step nothing."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from conftest import run_container

from runner.engine.backend import LABEL_RUN, ContainerSpec
from runner.engine.docker.backend import DockerBackend
from runner.engine.docker.hardening import init_volume
from runner.engine.stepinit import contract
from runner.engine.stepinit.image import tag as init_tag
from runner.errors import InvalidInput

pytestmark = pytest.mark.docker
BUSYBOX = "runner-base/busybox:latest"
# a quote, a backslash, %, &, +, a space, non-ASCII, '=' and a newline
ODD = 'it\'s a \\ 100% & +1 = "naïve" 密\nsecond line'


def spec(run_id: str, command: list[str], **changes: Any) -> ContainerSpec:
    fields: dict[str, Any] = {
        "image": BUSYBOX,
        "command": command,
        "env": {},
        "labels": {LABEL_RUN: run_id},
        "memory_bytes": 64 * 1024 * 1024,
        "cpus": 1,
        "pids": 32,
    }
    fields.update(changes)
    return ContainerSpec(**fields)


def test_the_environment_reaches_the_step_and_never_the_engine(
    backend: DockerBackend, run_id: str
) -> None:
    env = {"ODD": ODD, "PATH": "/bin", "EMPTY": "", "X": "a=b"}
    cid = backend.create(
        spec(run_id, ["sh", "-c", 'printf "%s|%s|%s|" "$ODD" "$EMPTY" "$X"; env'], env=env)
    )
    try:
        attrs = backend.api.inspect_container(cid)
        assert "naïve" not in json.dumps(attrs, ensure_ascii=False)
        assert attrs["Config"]["Env"] is None  # busybox's image sets none; runner adds none
        assert attrs["HostConfig"]["LogConfig"]["Type"] == "none"
        code, output = run_container(backend, cid, 30)
        assert code == 0, output
        assert output.startswith(f"{ODD}||a=b|")
        names = {
            line.split("=", 1)[0] for line in output.split("|")[-1].splitlines() if "=" in line
        }
        assert {"ODD", "PATH", "EMPTY", "X"} <= names
        assert "PATH=/bin\n" in output  # the step's own value wins over the image's
        assert backend.api.inspect_container(cid)["LogPath"] == ""  # no log file at all
    finally:
        backend.remove(cid)


def test_the_environment_is_sent_even_when_nobody_attached(
    backend: DockerBackend, run_id: str
) -> None:
    cid = backend.create(
        spec(run_id, ["sh", "-c", '[ "$ODD" = "$1" ]', "sh", ODD], env={"ODD": ODD})
    )
    try:
        backend.start(cid)
        assert backend.wait(cid, 30) == 0
    finally:
        backend.remove(cid)


def test_a_value_no_environment_can_hold_is_refused_before_anything_exists(
    backend: DockerBackend, run_id: str
) -> None:
    with pytest.raises(InvalidInput, match="cannot be passed to a step"):
        backend.create(spec(run_id, ["true"], env={"A": "x\0y"}))
    assert backend.list_labelled(f"{LABEL_RUN}={run_id}") == ({}, {})


def test_exit_codes_are_the_steps_and_nothing_outlives_it(
    backend: DockerBackend, run_id: str
) -> None:
    for command, expected in (
        (["sh", "-c", "exit 7"], 7),
        (["sh", "-c", "kill -TERM $$"], 128 + 15),
        (["no-such-tool"], 127),
        (["/etc/passwd"], 126),
    ):
        cid = backend.create(spec(run_id, command))
        code, output = run_container(backend, cid, 30)
        backend.remove(cid)
        assert code == expected, (command, output)
    # a daemon left behind (and its zombie children) dies with the step, at once
    started = time.monotonic()
    cid = backend.create(spec(run_id, ["sh", "-c", "(sleep 300 &) ; sleep 300 & echo left"]))
    code, output = run_container(backend, cid, 30)
    backend.remove(cid)
    assert (code, output) == (0, "left\n")
    assert time.monotonic() - started < 10


def test_sigterm_reaches_the_step(backend: DockerBackend, run_id: str) -> None:
    script = "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.1; done"
    cid = backend.create(spec(run_id, ["sh", "-c", script]))
    output = backend.attach_output(cid)
    backend.start(cid)
    chunks = iter(output)
    assert next(chunks) == b"ready\n"
    backend.api.kill(cid, signal="SIGTERM")
    assert backend.wait(cid, 30) == 3
    assert b"".join(chunks) == b"got-term\n"
    backend.remove(cid)


def test_the_deadline_kills_the_whole_container_without_runner(
    backend: DockerBackend, run_id: str
) -> None:
    started = time.monotonic()
    cid = backend.create(
        spec(run_id, ["sh", "-c", "sleep 300 & sleep 300; echo never"], deadline_s=2)
    )
    code, output = run_container(backend, cid, 30)  # nobody kills it but runner-init
    backend.remove(cid)
    assert code == contract.DEADLINE
    assert output == "runner-init: the step's deadline (2 s) passed: its processes were killed\n"
    assert time.monotonic() - started < 10


def test_running_runner_init_by_hand_gives_a_step_nothing(
    backend: DockerBackend, run_id: str
) -> None:
    """Its volume is read-only, it runs only what it is given (a tool the image holds), and
    it kills only what the step could kill itself."""
    script = (
        "echo x > /.runner-init/new; echo @write=$?; "
        "/.runner-init/runner-init -- /nonexistent; echo @missing=$?; "
        "/.runner-init/runner-init --bogus; echo @usage=$?; "
        "/.runner-init/runner-init --env-stdin -- true < /dev/null; echo @noenv=$?; "
        "/.runner-init/runner-init -- sh -c 'exit 4'; echo @nested=$?"
    )
    toolset_like = spec(run_id, ["sh", "-c", script], env={"PATH": "/nowhere:/bin"})
    cid = backend.create(toolset_like)
    code, output = run_container(backend, cid, 30)
    backend.remove(cid)
    assert code == 0, output
    facts = dict(line[1:].split("=", 1) for line in output.splitlines() if line.startswith("@"))
    assert facts["write"] != "0"
    assert facts["usage"] == facts["noenv"] == str(contract.SETUP_FAILED)
    assert facts["nested"] == "4"
    assert facts["missing"] == "127"


def test_a_damaged_init_volume_is_found_and_refilled_from_the_image(
    backend: DockerBackend, run_id: str
) -> None:
    """The volume is checked byte for byte against the image before any step mounts it."""
    image = init_tag()
    volume = f"runner-test-init-{run_id}"
    backend.api.create_volume(volume, labels={LABEL_RUN: run_id})
    try:
        expected, held = backend._init_contents(image, volume)
        assert expected is not None and expected.startswith(b"\x7fELF")
        assert held is None  # empty
        backend._ready_volume(image, volume)
        assert backend._init_contents(image, volume) == (expected, expected)
        backend._fill_init(image, volume, b"#!/bin/sh\necho hijacked\n")
        assert backend._init_contents(image, volume)[1] != expected
        backend._ready_volume(image, volume)
        assert backend._init_contents(image, volume) == (expected, expected)
    finally:
        backend.remove_volume(volume)
    backend._await_init()  # what every `create` waits for
    assert backend._init_contents(image, init_volume()) == (expected, expected)
