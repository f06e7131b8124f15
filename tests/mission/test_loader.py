from __future__ import annotations

import hashlib
from pathlib import Path
from textwrap import dedent

import pytest

from runner.errors import InvalidMission
from runner.findings import Finding, Severity
from runner.mission.loader import discover_missions, load_mission
from runner.mission.model import Mission


def _write(tmp_path: Path, text: str, name: str = "m.yml") -> Path:
    path = tmp_path / name
    path.write_text(dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _ok(tmp_path: Path, text: str) -> tuple[Mission, list[Finding]]:
    return load_mission(_write(tmp_path, text), display_path="m.yml")


def _errors(tmp_path: Path, text: str, *, severity: Severity | None = None) -> list[str]:
    """Every finding of an invalid mission, or only those of one severity."""
    with pytest.raises(InvalidMission) as caught:
        load_mission(_write(tmp_path, text), display_path="m.yml")
    return [str(f) for f in caught.value.findings if severity in (None, f.severity)]


def _warnings(findings: list[Finding]) -> list[str]:
    return [str(f) for f in findings if f.severity is Severity.WARNING]


ERROR = Severity.ERROR

# -- records ------------------------------------------------------------------------------


def test_a_valid_mission_becomes_frozen_records(tmp_path: Path) -> None:
    mission, findings = _ok(
        tmp_path,
        """
        name: ci
        on: [push, manual]
        inputs:
          level: {type: choice, options: [fast, slow], default: fast}
        env: {N: 1, F: 1.50, B: true, E: ~, S: text}
        defaults: {run: {shell: bash}}
        permissions: {network: egress, secrets: [TOKEN], contents: read}
        jobs:
          build:
            container: {image: python:3.12}
            steps:
              - id: compile
                run: make
                retry: {max-attempts: 3, backoff: exponential, delay: 500ms, max-delay: 2m, jitter: 0.2, on: [failure, timeout]}
            outputs: {n: "${{ steps.compile.outputs.n }}"}
            produces: [{name: dist, path: dist, type: dir}]
          test:
            needs: build
            tools: [sh, python3]
            strategy:
              matrix: {py: ['3.11', '3.12'], include: [{py: '3.13', slow: true}], exclude: [{py: '3.11'}]}
              fail-fast: false
            timeout-minutes: 2.5
            consumes: [{name: dist, type: dir}]
            steps:
              - uses: actions/checkout@v4
              - run: python3 -V
                shell: python3 {0}
        verify:
          - {name: built, check: "jobs.build.result == 'success'"}
        """,
    )
    assert findings == [
        Finding(
            "m.yml",
            7,
            1,
            "GitHub token scopes (contents) mean nothing here; runner's permissions are "
            "network, secrets and exec",
            "github-only",
            "permissions",
            Severity.NOTE,
        )
    ]
    data = (tmp_path / "m.yml").read_bytes()
    assert mission.digest == hashlib.sha256(data).hexdigest()
    assert mission.name == "ci"
    assert mission.on == ("push", "manual")
    assert mission.inputs["level"].options == ("fast", "slow")
    assert mission.env == {"N": "1", "F": "1.50", "B": "true", "E": "", "S": "text"}
    assert mission.permissions.network == "egress"
    assert mission.permissions.secrets == ("TOKEN",)
    assert mission.permissions.github_scopes == {"contents": "read"}
    build, test = mission.jobs["build"], mission.jobs["test"]
    assert build.container == "python:3.12"
    assert build.tools == ("bash",)  # the mission's default shell
    retry = build.steps[0].retry
    assert retry is not None
    assert (retry.max_attempts, retry.backoff, retry.delay_s, retry.max_delay_s) == (
        3,
        "exponential",
        0.5,
        120.0,
    )
    assert retry.on == ("failure", "timeout")
    assert build.outputs == {"n": "${{ steps.compile.outputs.n }}"}
    assert build.produces[0].type == "dir"
    assert test.needs == ("build",)
    assert test.tools == ("sh", "python3")
    assert test.consumes == ("dist",)
    assert test.timeout_minutes == 2.5
    assert test.strategy is not None
    assert test.strategy.fail_fast is False
    assert test.strategy.matrix.axes == {"py": ("3.11", "3.12")}
    assert test.strategy.matrix.include == ({"py": "3.13", "slow": True},)
    assert test.steps[0].uses == "actions/checkout@v4"
    assert mission.verify[0].check == "jobs.build.result == 'success'"
    assert mission.where("jobs.test.steps[1].run") == (27, 14)


def test_tools_default_to_the_shells_of_the_run_steps(tmp_path: Path) -> None:
    mission, _ = _ok(
        tmp_path,
        """
        name: t
        jobs:
          a:
            steps: [{run: echo}]
          b:
            defaults: {run: {shell: "bash -e {0}"}}
            steps: [{run: echo}, {run: print(1), shell: python3}]
        """,
    )
    assert mission.jobs["a"].tools == ("sh",)
    assert mission.jobs["b"].tools == ("bash", "python3")


def test_a_mission_without_name_is_named_after_its_file_with_a_warning(tmp_path: Path) -> None:
    path = _write(tmp_path, "jobs: {a: {steps: [{run: echo}]}}\n", name="nightly.yaml")
    mission, findings = load_mission(path, display_path="nightly.yaml")
    assert mission.name == "nightly"
    assert mission.on == ()
    assert _warnings(findings) == [
        'nightly.yaml:1:1: warning: no "name": the mission is named after its file, "nightly" [name]'
    ]


def test_permissions_read_all_is_a_github_scope(tmp_path: Path) -> None:
    mission, findings = _ok(
        tmp_path, "name: x\npermissions: read-all\njobs: {a: {steps: [{run: echo}]}}\n"
    )
    assert mission.permissions.github_scopes == {"*": "read"}
    assert [str(f) for f in findings] == [
        'm.yml:2:1: note: permissions: "read-all" is a GitHub token scope, which means nothing here [github-only]'
    ]


def test_github_only_keys_are_notes_never_errors(tmp_path: Path) -> None:
    _, findings = _ok(
        tmp_path,
        """
        name: x
        run-name: deploy
        on:
          push: {branches: [main], paths: ['src/**']}
          schedule: [{cron: '0 0 * * *'}]
        concurrency: {group: x, cancel-in-progress: true}
        jobs:
          a:
            runs-on: ubuntu-latest
            environment: prod
            services: {db: {image: postgres}}
            steps: [{run: echo}]
        """,
    )
    assert all(f.severity is Severity.NOTE for f in findings)
    assert [f"{f.line}:{f.col} {f.keypath}" for f in findings] == [
        "2:1 run-name",
        "4:3 on.push",
        "5:3 on.schedule",
        "6:1 concurrency",
        "9:5 jobs.a.runs-on",
        "10:5 jobs.a.environment",
        "11:5 jobs.a.services",
    ]
    assert str(findings[1]) == (
        "m.yml:4:3: note: on.push: push filters (branches, paths) are GitHub-only; "
        "runner selects missions by event name only [github-only]"
    )


def test_discover_missions_lists_yml_and_yaml_sorted(tmp_path: Path) -> None:
    folder = tmp_path / ".missions"
    folder.mkdir()
    for name in ("b.yaml", "a.yml", "notes.txt"):
        (folder / name).write_text("x: 1\n")
    (folder / "dir.yml").mkdir()
    assert discover_missions(tmp_path) == [folder / "a.yml", folder / "b.yaml"]
    assert discover_missions(tmp_path / "nowhere") == []


# -- schema -------------------------------------------------------------------------------


def test_schema_errors_name_the_key_and_what_was_expected(tmp_path: Path) -> None:
    assert _errors(
        tmp_path,
        """
        name: x
        jobz: {}
        jobs:
          a:
            container: [1]
            timeout-minutes: true
            steps:
              - run: echo
                Shell: bash
                retry: {max-attempts: 0, backoff: random}
            produces: [{name: x}]
        """,
        severity=ERROR,
    ) == [
        'm.yml:2:1: jobz: unknown key "jobz" in the mission; expected one of: concurrency, '
        "defaults, env, inputs, jobs, name, on, permissions, run-name, verify "
        '(did you mean "jobs"?) [schema]',
        "m.yml:5:5: jobs.a.container: must be a string or a mapping, not a list [schema]",
        "m.yml:6:22: jobs.a.timeout-minutes: must be a number or a string, not a boolean [schema]",
        'm.yml:9:9: jobs.a.steps[0].Shell: unknown key "Shell" in a step; expected one of: '
        "continue-on-error, env, id, if, name, retry, run, shell, timeout-minutes, uses, "
        'with, working-directory (did you mean "shell"?) [schema]',
        "m.yml:10:31: jobs.a.steps[0].retry.max-attempts: must be at least 1 [schema]",
        'm.yml:10:43: jobs.a.steps[0].retry.backoff: "random" is not allowed; expected one of: '
        "fixed, linear, exponential [schema]",
        'm.yml:11:16: jobs.a.produces[0]: missing required key "path" [schema]',
    ]


def test_jobs_are_required(tmp_path: Path) -> None:
    assert _errors(tmp_path, "name: x\n", severity=ERROR) == [
        'm.yml:1:1: missing required key "jobs" [schema]'
    ]


def test_on_accepts_its_three_shapes_and_nothing_else(tmp_path: Path) -> None:
    for on, events in (("push", ("push",)), ("[push, manual]", ("push", "manual"))):
        mission, _ = _ok(tmp_path, f"name: x\non: {on}\njobs: {{a: {{steps: [{{run: e}}]}}}}\n")
        assert mission.on == events
    assert _errors(
        tmp_path, "name: x\non: 3\njobs: {a: {steps: [{run: e}]}}\n", severity=ERROR
    ) == ["m.yml:2:5: on: must be a string, a list or a mapping, not a number [schema]"]


# -- semantic checks ----------------------------------------------------------------------


def test_ids_must_be_valid_and_unique_ignoring_case(tmp_path: Path) -> None:
    assert _errors(
        tmp_path,
        """
        name: x
        jobs:
          test:
            steps:
              - {id: step_id, run: a}
              - {id: STEP_ID, run: b}
              - {id: 2bad, run: c}
          TEST:
            steps: [{run: d}]
          "bad job":
            steps: [{run: e}]
        """,
        severity=ERROR,
    ) == [
        'm.yml:6:14: jobs.test.steps[1].id: step id "STEP_ID" duplicates "step_id" (line 5, col 14) '
        'in job "test": step ids are case-insensitive [id]',
        'm.yml:7:14: jobs.test.steps[2].id: step id "2bad" is not valid: ids start with a letter '
        "or _ and hold only letters, digits, _ and - [id]",
        'm.yml:8:3: jobs.TEST: job id "TEST" duplicates "test" (line 3, col 3): job ids are '
        "case-insensitive [id]",
        'm.yml:10:3: jobs.bad job: job id "bad job" is not valid: ids start with a letter or _ and '
        "hold only letters, digits, _ and - [id]",
    ]


def test_needs_must_name_jobs_and_cycles_are_named(tmp_path: Path) -> None:
    assert _errors(
        tmp_path,
        """
        name: x
        jobs:
          a: {needs: [b], steps: [{run: a}]}
          c: {needs: [d, ghost], steps: [{run: c}]}
          d: {needs: a, steps: [{run: d}]}
          b: {needs: [c], steps: [{run: b}]}
          self: {needs: self, steps: [{run: s}]}
        """,
        severity=ERROR,
    ) == [
        "m.yml:3:3: jobs.a: dependency cycle in needs: a -> b -> c -> d -> a [cycle]",
        'm.yml:4:18: jobs.c.needs[1]: job "c" needs "ghost", which is not a job in this mission [needs]',
        "m.yml:7:3: jobs.self: dependency cycle in needs: self -> self [cycle]",
    ]


def test_jobs_need_steps_and_steps_need_run_or_uses(tmp_path: Path) -> None:
    assert _errors(
        tmp_path,
        """
        name: x
        jobs:
          none: {name: nothing}
          empty: {steps: []}
          both: {uses: ./.github/workflows/x.yml, steps: [{run: a}]}
          step:
            steps:
              - {name: neither}
              - {run: a, uses: ./b}
              - {uses: "not a ref"}
        """,
        severity=ERROR,
    ) == [
        'm.yml:3:3: jobs.none: job "none" has no steps [job]',
        "m.yml:4:11: jobs.empty.steps: steps must not be empty [job]",
        'm.yml:5:3: jobs.both: job "both" has both steps and uses (a reusable workflow) [job]',
        "m.yml:8:9: jobs.step.steps[0]: a step needs exactly one of run or uses [step]",
        "m.yml:9:9: jobs.step.steps[1]: a step needs exactly one of run or uses [step]",
        'm.yml:10:16: jobs.step.steps[2].uses: "not a ref" is not a valid uses: ./path, '
        "docker://image or owner/repo@ref [uses]",
    ]


def test_matrix_shape(tmp_path: Path) -> None:
    assert _errors(
        tmp_path,
        """
        name: x
        jobs:
          a:
            strategy:
              matrix:
                node: [10, 12, 12]
                NODE: [1]
                os: []
                include: [3]
                exclude: [{node: 13}, {platform: linux}]
            steps: [{run: a}]
          b:
            strategy: {matrix: {}}
            steps: [{run: b}]
        """,
    ) == [
        'm.yml:6:24: warning: jobs.a.strategy.matrix.node[2]: value 12 appears twice in axis "node" [matrix]',
        'm.yml:7:9: jobs.a.strategy.matrix.NODE: matrix key "NODE" duplicates "node" (line 6, col 9): '
        "matrix keys are case-insensitive [matrix]",
        'm.yml:8:9: jobs.a.strategy.matrix.os: matrix axis "os" has no values [matrix]',
        "m.yml:9:19: jobs.a.strategy.matrix.include[0]: must be a mapping or a string, not a number [schema]",
        'm.yml:10:26: warning: jobs.a.strategy.matrix.exclude[0].node: value 13 in exclude matches no value of axis "node" [matrix]',
        'm.yml:10:32: jobs.a.strategy.matrix.exclude[1].platform: "platform" in exclude is not a '
        "matrix key (keys: node, NODE, os) [matrix]",
        "m.yml:13:16: jobs.b.strategy.matrix: matrix is empty: it needs at least one axis or "
        "include entry [matrix]",
    ]


def test_values_that_must_be_positive_or_one_expression(tmp_path: Path) -> None:
    assert _errors(
        tmp_path,
        """
        name: x
        jobs:
          a:
            timeout-minutes: 0
            continue-on-error: maybe
            strategy: {max-parallel: 0, fail-fast: "no"}
            steps:
              - {run: a, timeout-minutes: '3.5'}
              - {run: b, timeout-minutes: "${{ 3.5 }}", continue-on-error: "${{ true }}"}
        """,
        severity=ERROR,
    ) == [
        "m.yml:4:22: jobs.a.timeout-minutes: timeout-minutes must be greater than 0, not 0 [value]",
        "m.yml:5:24: jobs.a.continue-on-error: continue-on-error must be true, false or one ${{ }} "
        'expression, not "maybe" [value]',
        "m.yml:6:30: jobs.a.strategy.max-parallel: max-parallel must be at least 1, not 0 [value]",
        "m.yml:6:44: jobs.a.strategy.fail-fast: fail-fast must be true, false or one ${{ }} "
        'expression, not "no" [value]',
        "m.yml:8:35: jobs.a.steps[0].timeout-minutes: timeout-minutes must be a number or one "
        '${{ }} expression, not "3.5" [value]',
    ]


def test_retry_durations(tmp_path: Path) -> None:
    assert _errors(
        tmp_path,
        """
        name: x
        jobs:
          a:
            steps:
              - run: a
                retry: {max-attempts: 2, delay: 1x}
              - run: b
                retry: {max-attempts: 2, delay: 2m, max-delay: 30s}
        """,
        severity=ERROR,
    ) == [
        'm.yml:6:41: jobs.a.steps[0].retry.delay: "1x" is not a duration: a number of seconds '
        "or 500ms, 30s, 2m, 1h [duration]",
        "m.yml:8:56: jobs.a.steps[1].retry.max-delay: max-delay is shorter than delay [duration]",
    ]


def test_env_var_names(tmp_path: Path) -> None:
    assert _errors(
        tmp_path,
        """
        name: x
        env: {"A=B": 1}
        jobs:
          a:
            env: {"FOO BAR": x}
            steps: [{run: a}]
        """,
        severity=ERROR,
    ) == [
        'm.yml:2:7: env.A=B: environment variable name "A=B" is not valid: it must not be empty '
        'or contain "=", whitespace or NUL [env-var]',
        'm.yml:5:11: jobs.a.env.FOO BAR: environment variable name "FOO BAR" is not valid: it '
        'must not be empty or contain "=", whitespace or NUL [env-var]',
    ]


def test_artifacts_must_be_produced_upstream_once_with_the_right_type(tmp_path: Path) -> None:
    assert _errors(
        tmp_path,
        """
        name: x
        jobs:
          a:
            produces: [{name: dist, path: dist, type: dir}, {name: up, path: ../x}]
            steps: [{run: a}]
          b:
            produces: [{name: dist, path: other}, {name: side, path: s}]
            steps: [{run: b}]
          c:
            needs: [a]
            consumes: [{name: dist, type: file}, side, nowhere]
            steps: [{run: c}]
        """,
        severity=ERROR,
    ) == [
        'm.yml:4:70: jobs.a.produces[1].path: artifact path "../x" leaves the workspace: use a '
        "relative path inside it [artifact]",
        'm.yml:7:23: jobs.b.produces[0].name: artifact "dist" is produced twice (first by job "a" '
        "at line 4, col 23) [artifact]",
        'm.yml:11:16: jobs.c.consumes[0]: job "c" consumes "dist" as a file, but job "a" produces '
        "it as a dir [artifact]",
        'm.yml:11:42: jobs.c.consumes[1]: job "c" consumes artifact "side", which no job in its '
        'needs produces (job "b" does: add it to needs) [artifact]',
        'm.yml:11:48: jobs.c.consumes[2]: job "c" consumes artifact "nowhere", which no job '
        "produces [artifact]",
    ]


def test_credentials_written_into_the_mission(tmp_path: Path) -> None:
    token = "ghp_" + "a1B2" * 9
    assert _errors(
        tmp_path,
        f"""
        name: x
        env:
          GH: {token}
          DB_PASSWORD: hunter2hunter2
          API_TOKEN: "${{{{ secrets.API_TOKEN }}}}"
        jobs:
          a:
            steps:
              - run: 'curl -H "Authorization: token {token}" https://example.org'
                with: {{key: "-----BEGIN OPENSSH PRIVATE KEY-----"}}
              - run: echo AKIAABCDEFGHIJKLMNOP
        """,
    ) == [
        "m.yml:3:7: env.GH: looks like a GitHub token written into the mission; pass it with "
        "--secret NAME and refer to it as ${{ secrets.NAME }} [credential]",
        'm.yml:4:16: warning: env.DB_PASSWORD: "DB_PASSWORD" holds a literal value; pass secrets '
        "with --secret NAME and refer to them as ${{ secrets.NAME }} [credential]",
        "m.yml:9:45: jobs.a.steps[0].run: looks like a GitHub token written into the mission; "
        "pass it with --secret NAME and refer to it as ${{ secrets.NAME }} [credential]",
        'm.yml:10:9: jobs.a.steps[0].with: "with" is for a `uses:` step; a `run:` step ignores '
        "it: pass values through env: and read them as $NAME [step]",
        "m.yml:10:22: jobs.a.steps[0].with.key: looks like a private key written into the "
        "mission; pass it with --secret NAME and refer to it as ${{ secrets.NAME }} [credential]",
        "m.yml:11:19: jobs.a.steps[1].run: looks like an AWS access key id written into the "
        "mission; pass it with --secret NAME and refer to it as ${{ secrets.NAME }} [credential]",
    ]


def test_expression_scopes_follow_github_context_availability(tmp_path: Path) -> None:
    assert _errors(
        tmp_path,
        """
        name: x
        env: {A: "${{ env.B }}"}
        jobs:
          a:
            outputs: {o: "${{ steps.s.outputs.v }}"}
            steps:
              - run: echo "${{ steps.s.outputs.v }}"
              - {id: s, run: "echo ${{ matrix.x }}"}
              - {run: echo, if: "${{ success() }}"}
              - run: echo "${{ success() }} ${{ needs.a.result }}"
          b:
            needs: [a]
            strategy: {matrix: {os: [l]}}
            if: ${{ always() && needs.a.result == 'success' && matrix.os == 'l' }}
            env: {E: "${{ matrix.arch }} ${{ secrets.S }} ${{ needs.c.result }}"}
            steps: [{run: "echo ${{ hashFiles('x') }}"}]
        verify:
          - {name: ok, check: "jobs.a.result == 'success' && steps.s.outcome"}
        """,
    ) == [
        "m.yml:2:15: env.A: context 'env' is not available here (available: github, inputs, "
        "mission, secrets, vars) [expression]",
        "m.yml:7:30: jobs.a.steps[0].run: no step with id 's' here (step ids: none) [expression]",
        # a job without a matrix reads an empty one, as on GitHub: a warning
        "m.yml:8:39: warning: jobs.a.steps[1].run: the job has no matrix: matrix.x evaluates "
        "to empty [expression]",
        "m.yml:10:24: jobs.a.steps[3].run: function 'success()' is not available here [expression]",
        "m.yml:10:41: jobs.a.steps[3].run: context 'needs' is not available here (available: env, "
        "github, inputs, job, matrix, mission, runner, secrets, steps, strategy, vars) "
        "[expression]",
        "m.yml:14:56: jobs.b.if: context 'matrix' is not available here (available: github, "
        "inputs, mission, needs, vars) [expression]",
        "m.yml:15:26: warning: jobs.b.env.E: matrix key 'arch' is not defined (matrix keys: os) "
        "[expression]",
        "m.yml:15:61: jobs.b.env.E: job 'c' is not in needs (needs: a) [expression]",
        "m.yml:18:54: verify[0].check: context 'steps' is not available here (available: github, "
        "inputs, jobs, mission, vars) [expression]",
    ]


def test_if_conditions_with_text_around_the_expression(tmp_path: Path) -> None:
    assert _errors(
        tmp_path,
        """
        name: x
        jobs:
          a:
            steps:
              - {run: a, if: false}
              - {run: b, if: "${{ github.event_name == 'push' }} "}
              - {run: c, if: "(${{ success() }} || ${{ failure() }})"}
              - {run: d, if: "github.ref_name == 'main'"}
        """,
    ) == [
        "m.yml:5:22: warning: jobs.a.steps[0].if: if: is the constant false; remove it or make "
        "it an expression [if-cond]",
        "m.yml:6:22: jobs.a.steps[1].if: if: has text around ${{ }}, so it is a non-empty string "
        "and always true; write the whole condition inside one ${{ }} [if-cond]",
        "m.yml:7:22: warning: jobs.a.steps[2].if: if: has text around ${{ }}, so it is a "
        "non-empty string and always true; write the whole condition inside one ${{ }} [if-cond]",
    ]


def test_inputs_are_checked_when_declared(tmp_path: Path) -> None:
    assert _errors(
        tmp_path,
        """
        name: x
        inputs:
          level: {type: choice}
          mode: {type: string, options: [a], default: b}
        jobs:
          a: {steps: [{run: "echo ${{ inputs.level }} ${{ inputs.nope }}"}]}
        """,
        severity=ERROR,
    ) == [
        'm.yml:3:3: inputs.level: input "level" is a choice without options [schema]',
        'm.yml:4:47: inputs.mode.default: default "b" is not one of the options of input "mode" [schema]',
        "m.yml:6:58: jobs.a.steps[0].run: no input named 'nope' (inputs: level, mode) [expression]",
    ]


def test_all_errors_of_a_file_come_at_once_sorted(tmp_path: Path) -> None:
    with pytest.raises(InvalidMission) as caught:
        load_mission(
            _write(
                tmp_path,
                """
                name: x
                name: y
                jobs:
                  b: {needs: [zz], steps: [{run: a, bogus: 1}]}
                """,
            ),
            display_path="m.yml",
        )
    assert caught.value.message == "m.yml: 3 errors; the mission was not loaded"
    assert [(f.line, f.rule) for f in caught.value.findings] == [
        (2, "yaml"),
        (4, "needs"),
        (4, "schema"),
    ]


def test_verify_checks_name_existing_jobs_and_github_token_is_a_note(tmp_path: Path) -> None:
    assert _errors(
        tmp_path,
        """
        name: v
        jobs:
          a:
            steps: [{run: "echo ${{ secrets.GITHUB_TOKEN }}"}]
        verify:
          - {name: x, check: "jobs.a.result == 'success' && jobs['nope'].outputs.x > 1"}
        """,
    ) == [
        "m.yml:4:37: note: jobs.a.steps[0].run: secrets.GITHUB_TOKEN means nothing here: it "
        "evaluates to empty [github-only]",
        "m.yml:6:58: verify[0].check: no job 'nope' in this mission (jobs: a) [expression]",
    ]


def test_env_as_one_expression_is_accepted_with_a_warning(tmp_path: Path) -> None:
    mission, findings = _ok(
        tmp_path,
        """
        name: e
        jobs:
          a:
            strategy: {matrix: {p: [{env: {A: "1"}}]}}
            env: ${{ matrix.p.env }}
            steps: [{run: echo}]
        """,
    )
    assert mission.jobs["a"].env == {}
    assert _warnings(findings) == [
        "m.yml:5:10: warning: jobs.a.env: env given as one ${{ }} expression is not supported "
        "by runner yet; it is ignored (list the variables instead) [unsupported]"
    ]


def test_a_dispatch_trigger_that_is_no_mapping_is_an_error_not_a_crash(tmp_path: Path) -> None:
    """Found by the corpus fuzzer: `workflow_dispatch:` holding a list (a stray `- `) made
    the loader call `.get` on it."""
    assert _errors(
        tmp_path,
        """
        name: x
        on:
          workflow_dispatch:
          - schedule: []
          workflow_call: {inputs: [a]}
        jobs:
          a: {steps: [{run: x}]}
        """,
        severity=ERROR,
    ) == [
        "m.yml:3:3: on.workflow_dispatch: must be empty or a mapping, e.g. `inputs: {name: "
        "{type: string}}`; a list or a value here declares nothing [schema]",
        "m.yml:5:19: on.workflow_call.inputs: must be a mapping of input names to their specs, "
        "e.g. `inputs: {name: {type: string}}` [schema]",
    ]


def test_a_step_named_by_a_long_script_shows_where_it_was_cut(tmp_path: Path) -> None:
    long = "python -m pytest " + "tests/unit " * 10
    mission, _ = _ok(
        tmp_path,
        f"""
        name: m
        on: [push]
        jobs:
          j:
            steps:
              - run: |
                  {long}
                  echo second
              - run: "echo {"x" * 52}   "
        """,
    )
    first, second = mission.jobs["j"].steps
    assert first.display_name == long[:59] + "…"
    assert second.display_name == "echo " + "x" * 52  # 57 fit whole, trailing blanks dropped
