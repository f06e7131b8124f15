"""The probe steps' facts are read whole when stderr comes between two of them.

stdout and stderr are separate pipes that reach runner as one stream, so their relative
order is the engine's delivery order, not the order they were written in. 2 of 100 hardened
probe steps run 4 at a time showed busybox's error prefix `sh: ` before a later fact."""

from __future__ import annotations

from conftest import facts

# a real probe step's output on Docker (tests/engine/test_isolation.py's PROBE), cut down
INTERLEAVED = (
    "@env=DECLARED,HOME,HOSTNAME,PATH,PWD,SHLVL,\n"
    "sh: @sock=1\n"
    "@shm=1\n"
    "@core_pattern=1\n"
    "can't create /proc/sys/kernel/core_pattern: Read-only file system\n"
    "@unshare=1\n"
)


def test_a_fact_after_a_fragment_of_stderr_is_read() -> None:
    assert facts(INTERLEAVED) == {
        "env": "DECLARED,HOME,HOSTNAME,PATH,PWD,SHLVL,",
        "sock": "1",
        "shm": "1",
        "core_pattern": "1",
        "unshare": "1",
    }


def test_a_value_keeps_its_words_with_whitespace_made_one_space() -> None:
    assert facts("@other=other  :0 \r\n@gateway=host\t:0\n") == {
        "other": "other :0",
        "gateway": "host :0",
    }
