"""`shell:`: GitHub's custom shell strings run inline, and what cannot run (a Windows
shell, no `{0}`, a program missing from `tools:`) is a finding at the `shell:` before
anything runs. tests/run/test_run_compat.py runs custom shells in real containers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runner.errors import InvalidMission
from runner.mission.loader import load_mission
from runner.mission.shells import ShellError, command


@pytest.mark.parametrize(
    ("shell", "argv"),
    [
        ("sh", ("sh", "-e", "-c")),
        ("bash", ("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c")),
        ("python", ("python3", "-c")),
        ("bash -eo pipefail {0}", ("bash", "-eo", "pipefail", "-c")),
        ("sh -ex {0}", ("sh", "-ex", "-c")),
        ("python -u {0}", ("python", "-u", "-c")),
        ("perl {0}", ("perl", "-e")),
        ("node {0}", ("node", "-e")),
        ("bash --noprofile --norc -e -o pipefail {0}", ("bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c")),
    ],
)  # fmt: skip
def test_custom_shell_strings_take_the_script_inline(shell: str, argv: tuple[str, ...]) -> None:
    assert command(shell) == argv


@pytest.mark.parametrize(
    ("shell", "says"),
    [
        ("pwsh", "cannot run here: runner runs Linux containers"),
        ("cmd", "cannot run here"),
        ("bash -e", "a custom shell needs {0} where the script goes, as on GitHub (e.g. `bash {0}`)"),
        ("bash {0} -x", "{0} must come once, last"),
        ("bash {0} {0}", "{0} must come once, last"),
        ("awk -f {0}", "does not know how to hand 'awk' a script inline"),
        ("bash 'unclosed {0}", "is not a command line"),
    ],
)  # fmt: skip
def test_shells_that_cannot_run_say_why(shell: str, says: str) -> None:
    with pytest.raises(ShellError) as caught:
        command(shell)
    assert says in caught.value.message


def _findings(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "m.yml"
    path.write_text(textwrap.dedent(text))
    try:
        _, findings = load_mission(path, display_path="m.yml")
    except InvalidMission as exc:
        findings = list(exc.findings)
    return [str(f) for f in findings if f.rule == "shell"]


def test_validation_finds_a_shell_that_cannot_run_or_is_not_a_tool(tmp_path: Path) -> None:
    found = _findings(
        tmp_path,
        """\
        name: m
        on: [push]
        defaults: {run: {shell: "bash -eo pipefail {0}"}}
        jobs:
          listed:
            tools: [sh, cat]
            steps:
              - run: echo one
              - run: echo two
              - {run: echo three, shell: sh}
              - {run: echo four, shell: pwsh}
          inferred:
            steps:
              - run: echo fine
              - {run: print 1, shell: "python -u {0}"}
          own:
            defaults: {run: {shell: "bash {0} -x"}}
            steps: [{run: echo x}]
        """,
    )
    assert found == [
        'm.yml:3:25: defaults.run.shell: shell "bash -eo pipefail {0}" runs bash, which is '
        "not among the job's tools (sh, cat): add it to jobs.listed.tools [shell]",
        "m.yml:11:33: warning: jobs.listed.steps[3].shell: shell 'pwsh' cannot run here: runner runs "
        "Linux containers (use one of bash, python, python3, sh, or PROGRAM ARGS {0}) [shell]",
        "m.yml:17:29: jobs.own.defaults.run.shell: shell 'bash {0} -x': runner passes the "
        "script inline, so {0} must come once, last [shell]",
    ]
