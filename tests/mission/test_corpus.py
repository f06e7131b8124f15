"""Real workflows written by others (see ../shared/corpus/README.md).

github-workflows/: GitHub runs every one; `runner validate` exits 0.
actionlint-invalid/: `runner validate` exits 2 with a finding on each line actionlint
expects, of the same kind, at the same column where the column is meaningful (every kind
but expressions, where actionlint points at the start of an access and we at the name that
is wrong) -- except the findings listed in EXCEPTIONS, and those in WARNINGS, which are
warnings here (a file with only those validates).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import CORPUS

from runner.errors import InvalidMission
from runner.findings import Severity
from runner.mission.loader import load_mission

WORKFLOWS = sorted((CORPUS / "github-workflows").glob("*.yml"))
INVALID = sorted((CORPUS / "actionlint-invalid").glob("*.yaml"))

# (file, line) of actionlint findings runner does not report, and why.
EXCEPTIONS = {
    # `github.events`: runner's github context holds the fields that mean something locally
    # and evaluates the rest to empty (SPEC 3), so an unknown github property is no error.
    ("contexts_and_builtin_funcs.yaml", 9): "github properties are not typed",
    # startsWith('...', github.event): actionlint types arguments; runner's expressions
    # are untyped (GitHub coerces at run time).
    ("contexts_and_builtin_funcs.yaml", 15): "function arguments are not typed",
    # matrix.package.dev: the properties of a matrix value (a mapping) are not checked.
    ("contextual_matrix_values.yaml", 21): "matrix values are not typed",
    # "runs-on" section is missing: a GitHub-hosted concept; runner runs every job locally.
    ("missing_required_keys.yaml", 3): "runs-on is GitHub-only",
}

# (file, line) of actionlint findings runner reports as warnings, since GitHub evaluates
# them to empty rather than failing: the finding stays, at its line, with its rule.
WARNINGS = {
    # an undefined matrix key (the corpus README: a warning, not an error)
    ("contextual_matrix_values.yaml", 19): "an undefined matrix key is empty",
    # `matrix` in a job without a matrix is empty on GitHub: spf13/cobra's test-win job
    # reads matrix.go defined by another job's matrix, and GitHub runs it
    ("contextual_matrix_values.yaml", 34): "matrix in a job without one is empty",
}

# actionlint's rule -> the rules of ours that report the same kind of problem
KINDS = {
    "expression": {"expression"},
    "syntax-check": {"schema", "yaml", "value", "matrix", "id"},
    "job-needs": {"cycle", "needs"},
    "matrix": {"matrix"},
    "id": {"id"},
    "env-var": {"env-var"},
    "if-cond": {"if-cond"},
}

_EXPECTED = re.compile(r"^/?test\\?\.yaml:(\d+):(\d+): .*\[([a-z-]+)\\?\]/?$")


def _expected(out: Path) -> list[tuple[int, int, str]]:
    found = []
    for line in out.read_text(encoding="utf-8").splitlines():
        match = _EXPECTED.match(line)
        assert match, f"cannot read {out.name}: {line}"
        found.append((int(match.group(1)), int(match.group(2)), match.group(3)))
    return found


def test_the_corpus_is_there() -> None:
    assert len(WORKFLOWS) == 20
    assert len(INVALID) == 14


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_real_github_workflows_validate(path: Path) -> None:
    mission, findings = load_mission(path)
    assert mission.jobs
    assert all(f.severity is not Severity.ERROR for f in findings)
    # GitHub-only keys are reported, as notes
    assert any(f.rule == "github-only" for f in findings)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_actionlint_invalid_cases_fail_on_each_expected_line(path: Path) -> None:
    expected = _expected(path.with_suffix(".out"))
    if all((path.name, line) in EXCEPTIONS | WARNINGS.keys() for line, _, _ in expected):
        _, findings = load_mission(path)  # only warnings: the file validates
    else:
        with pytest.raises(InvalidMission) as caught:
            load_mission(path)
        findings = list(caught.value.findings)
        assert any(f.severity is Severity.ERROR for f in findings)
    for line, col, rule in expected:
        if (path.name, line) in EXCEPTIONS:
            assert not any(f.line == line and f.severity is Severity.ERROR for f in findings)
            continue
        kinds = KINDS[rule]
        here = [f for f in findings if f.line == line and f.rule in kinds]
        if (path.name, line) in WARNINGS:
            assert here and all(f.severity is Severity.WARNING for f in here), here
        assert here, f"{path.name}:{line}: no {rule} finding; got {[str(f) for f in findings]}"
        if rule != "expression":
            assert any(f.col == col for f in here), f"{path.name}:{line}:{col}: {here}"
