"""Validation matches GitHub: what GitHub runs validates (no false rejections), and the
mistakes GitHub lets through silently (they evaluate to empty, or are ignored) are errors
here, each with its place and what to do."""

from __future__ import annotations

import textwrap

import pytest

from runner.errors import InvalidMission
from runner.findings import Finding, Severity
from runner.mission.loader import parse_mission


def findings_of(text: str) -> list[Finding]:
    try:
        _, found = parse_mission(textwrap.dedent(text).encode(), "w.yml")
    except InvalidMission as exc:
        return list(exc.findings)
    return found


def shown(text: str, *, severity: Severity = Severity.ERROR) -> list[str]:
    return [str(f) for f in findings_of(text) if f.severity is severity]


# -- what GitHub runs validates --------------------------------------------------------------


def test_matrix_in_a_job_without_a_matrix_is_empty_a_warning() -> None:
    """hashicorp/terraform and spf13/cobra read `matrix.*` in jobs that have none."""
    text = """\
        name: w
        on: push
        jobs:
          build:
            runs-on: ubuntu-latest
            steps:
              - run: echo "${{ matrix.go-version }}"
        """
    assert shown(text) == []
    assert shown(text, severity=Severity.WARNING) == [
        "w.yml:7:31: warning: jobs.build.steps[0].run: the job has no matrix: "
        "matrix.go-version evaluates to empty [expression]"
    ]


def test_environment_url_sees_steps_job_runner_and_env_its_name_does_not() -> None:
    """The Pages pattern of 16 of GitHub's own starter workflows."""
    text = """\
        name: w
        on: push
        jobs:
          deploy:
            environment:
              name: ${{ steps.d.outputs.name }}
              url: ${{ steps.d.outputs.page_url }}/${{ job.status }}/${{ runner.os }}/${{ env.X }}
            steps:
              - {id: d, run: echo}
        """
    assert shown(text) == [
        "w.yml:6:17: jobs.deploy.environment.name: context 'steps' is not available here "
        "(available: github, inputs, matrix, mission, strategy, vars) [expression]"
    ]


def test_services_take_secrets_in_credentials_and_env_and_a_command_and_entrypoint() -> None:
    text = """\
        name: w
        on: push
        jobs:
          t:
            services:
              db:
                image: postgres:16
                credentials: {username: u, password: "${{ secrets.REGISTRY }}"}
                env: {POSTGRES_PASSWORD: "${{ secrets.DB }}"}
                command: [postgres, -c, fsync=off]
                entrypoint: docker-entrypoint.sh
              cache:
                image: "redis:${{ secrets.TAG }}"
            steps: [{run: echo}]
        """
    assert shown(text) == [
        "w.yml:13:27: jobs.t.services.cache.image: context 'secrets' is not available here "
        "(available: github, inputs, matrix, mission, strategy, vars) [expression]"
    ]


def test_an_env_name_may_be_an_expression_which_is_checked() -> None:
    """And evaluated at run time: tests/run/test_env_names.py."""
    text = """\
        name: w
        on: push
        jobs:
          t:
            strategy: {matrix: {var: [ALPHA]}}
            env:
              "${{ matrix.var }}": "1"
              "${{ nope.x }}": "2"
            steps: [{run: echo}]
        """
    assert shown(text) == [
        "w.yml:8:11: jobs.t.env.${{ nope.x }}: unknown context 'nope' (available here: "
        "github, inputs, matrix, mission, secrets, strategy, vars) [expression]"
    ]


def test_an_anchor_defined_again_is_accepted_and_an_alias_takes_the_latest() -> None:
    mission, _ = parse_mission(
        textwrap.dedent(
            """\
            name: w
            on: push
            jobs:
              one: {env: &e {A: "1"}, steps: [{run: echo}]}
              two: {env: &e {B: "2"}, steps: [{run: echo}]}
              three: {env: *e, steps: [{run: echo}]}
            """
        ).encode(),
        "w.yml",
    )
    assert dict(mission.jobs["three"].env) == {"B": "2"}


# -- what GitHub lets through silently is an error here ---------------------------------------

SILENT = """\
    name: w
    on:
      workflow_dispatch:
        inputs:
          level: {type: text}
          ok: {type: choice, options: [a]}
      workflow_call:
        inputs:
          n: {type: choice}
    jobs:
      build:
        outputs: {version: "${{ steps.v.outputs.version }}"}
        steps:
          - {id: v, run: echo, with: {x: 1}}
          - uses: ./actions/lint
            shell: bash
            working-directory: src
          - run: echo "${{ steps.v.outcom }}"
      reuse:
        uses: ./.github/workflows/r.yml
      test:
        needs: [build, reuse, build]
        steps:
          - run: echo "${{ needs.build.reslt }} ${{ needs.build.outputs.vrsion }}"
          - run: echo "${{ needs.build.outputs.version }} ${{ needs.reuse.outputs.anything }}"
          - run: echo "${{ format('{0}-{1}', 'a') }} ${{ format('{0}', 'a', 'b') }}"
          - run: |
              echo "${{ format('{{0}} {0}', 'a') }} ${{ fromJSON('{"a": 1') }}"
              echo "${{ fromJSON('[1, 2]') }}"
    """


@pytest.mark.parametrize(
    "expected",
    [
        'w.yml:5:21: on.workflow_dispatch.inputs.level.type: workflow_dispatch input "level" has '
        'type "text"; its types are boolean, choice, environment, number, string [schema]',
        'w.yml:9:17: on.workflow_call.inputs.n.type: workflow_call input "n" has type "choice"; '
        "its types are boolean, number, string [schema]",
        'w.yml:14:28: jobs.build.steps[0].with: "with" is for a `uses:` step; a `run:` step '
        "ignores it: pass values through env: and read them as $NAME [step]",
        'w.yml:16:9: jobs.build.steps[1].shell: "shell" applies to a `run:` step; a `uses:` '
        "step runs the action's own steps, which ignore it [step]",
        'w.yml:17:9: jobs.build.steps[1].working-directory: "working-directory" applies to a '
        "`run:` step; a `uses:` step runs the action's own steps, which ignore it [step]",
        "w.yml:18:32: jobs.build.steps[2].run: steps.v has no property 'outcom' (it has "
        "outputs, outcome, conclusion); did you mean 'outcome'? [expression]",
        'w.yml:22:27: jobs.test.needs[2]: job "test" needs "build" twice (line 22, col 13); '
        "list it once [needs]",
        "w.yml:24:36: jobs.test.steps[0].run: needs.build has no property 'reslt' (it has "
        "outputs, result); did you mean 'result'? [expression]",
        "w.yml:24:69: jobs.test.steps[0].run: job 'build' declares no output 'vrsion' "
        "(outputs: version), so it would evaluate to empty; did you mean 'version'? "
        "[expression]",
        "w.yml:26:31: jobs.test.steps[2].run: format() string uses {1} but is given 1 "
        "argument after it (placeholders count from {0}) [expression]",
        "w.yml:28:62: jobs.test.steps[3].run: fromJSON() of a literal that is not JSON: "
        "Expecting ',' delimiter: line 1 column 8 (char 7) [expression]",
    ],
)
def test_silent_mistakes_are_errors(expected: str) -> None:
    assert expected in shown(SILENT)


def test_silent_mistakes_are_all_and_only_these() -> None:
    assert len(shown(SILENT)) == 11
    assert shown(SILENT, severity=Severity.WARNING) == [
        "w.yml:26:61: warning: jobs.test.steps[2].run: format() string has no placeholder "
        "{1}: its argument is never used [expression]"
    ]
