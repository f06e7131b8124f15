"""A `run:` step's `shell:` as the command its container runs (SPEC 3), as GitHub reads it.

    sh                      sh -e -c SCRIPT
    bash                    bash --noprofile --norc -eo pipefail -c SCRIPT
    python, python3         python3 -c SCRIPT
    PROGRAM [ARGS...] {0}   a custom shell string (`bash -eo pipefail {0}`, `sh -ex {0}`,
                            `python -u {0}`, `perl {0}`, `node {0}`): GitHub runs PROGRAM
                            ARGS on a file holding the script; here the script is passed
                            inline instead (`-c` for shells and Python, `-e` for Perl,
                            Node and Ruby), so no script file is written to the workspace

`program(shell)` is the executable a shell runs, which the job's `tools:` must hold; a
shell runner cannot run (`{0}` missing or not last, a program it does not know how to hand
a script to) is a `ShellError`, which validation reports at the step's `shell:` and a run
at the step. A Windows shell (`pwsh`, `powershell`, `cmd`) is a `WindowsShell`: its job is
meant for a Windows runner, which a run skips (runner.mission.plan), so validation only
warns.
"""

from __future__ import annotations

import shlex

from runner.errors import InvalidInput

BUILTIN: dict[str, tuple[str, ...]] = {
    "sh": ("sh", "-e", "-c"),
    "bash": ("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"),
    "python": ("python3", "-c"),
    "python3": ("python3", "-c"),
}
INLINE = {  # how each program takes a script as an argument
    **dict.fromkeys(("sh", "bash", "dash", "zsh", "ksh", "ash", "python", "python3"), "-c"),
    **dict.fromkeys(("perl", "node", "ruby"), "-e"),
}
WINDOWS = frozenset({"pwsh", "powershell", "cmd"})
PLACEHOLDER = "{0}"


class ShellError(InvalidInput):
    """A `shell:` value runner cannot run; `windows` when it is a Windows shell (a job for
    a Windows runner, which a run skips: validation only warns)."""

    windows: bool = False


class WindowsShell(ShellError):
    windows = True


def command(shell: str) -> tuple[str, ...]:
    """The argument vector before the script, or ShellError saying what to write."""
    if shell in BUILTIN:
        return BUILTIN[shell]
    try:
        words = shlex.split(shell)
    except ValueError as exc:
        raise ShellError(f"shell {shell!r} is not a command line: {exc}") from None
    known = ", ".join(sorted(BUILTIN))
    if not words:
        raise ShellError(f"shell {shell!r} is empty (use one of {known}, or PROGRAM ARGS {{0}})")
    if words[0] in WINDOWS:
        raise WindowsShell(
            f"shell {shell!r} cannot run here: runner runs Linux containers "
            f"(use one of {known}, or PROGRAM ARGS {{0}})"
        )
    if PLACEHOLDER not in words:
        raise ShellError(
            f"shell {shell!r} is none of {known}, and a custom shell needs {{0}} where the "
            f"script goes, as on GitHub (e.g. `{words[0]} {{0}}`)"
        )
    if words[-1] != PLACEHOLDER or words.count(PLACEHOLDER) != 1:
        raise ShellError(
            f"shell {shell!r}: runner passes the script inline, so {{0}} must come once, last"
        )
    program = words[0]
    if program not in INLINE:
        raise ShellError(
            f"shell {shell!r}: runner does not know how to hand {program!r} a script inline "
            f"(it can for {', '.join(sorted(INLINE))})"
        )
    return (*words[:-1], INLINE[program])


def program(shell: str) -> str:
    """The executable `shell` runs (ShellError when it cannot run)."""
    return command(shell)[0]
