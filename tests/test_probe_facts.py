"""The probe steps' facts (`conftest.facts`), read only from whole lines.

stdout and stderr are separate pipes. Before runner merged them by whole lines
(`runner.engine.lines`), 2 of 100 hardened probe steps run 4 at a time showed busybox's
error prefix `sh: ` glued before a later fact; since, 0 of 160 with this reading. A fact
glued that way is not read, so the probe tests also catch a line that is not whole."""

from __future__ import annotations

from conftest import facts

# a real probe step's output on Docker before the merge by lines, cut down
GLUED = (
    "@env=DECLARED,HOME,HOSTNAME,PATH,PWD,SHLVL,\n"
    "sh: @sock=1\n"
    "@shm=1\n"
    "can't create /proc/sys/kernel/core_pattern: Read-only file system\n"
)


def test_a_fact_glued_after_a_fragment_of_stderr_is_not_read() -> None:
    assert facts(GLUED) == {"env": "DECLARED,HOME,HOSTNAME,PATH,PWD,SHLVL,", "shm": "1"}


def test_a_value_keeps_its_words_with_whitespace_made_one_space() -> None:
    assert facts("@other=other  :0 \r\n@gateway=host\t:0\n") == {
        "other": "other :0",
        "gateway": "host :0",
    }
