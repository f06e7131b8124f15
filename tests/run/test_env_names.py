"""An env name given as an expression is evaluated in the job's contexts, as GitHub does
(validation: tests/mission/test_github_compat.py)."""

from __future__ import annotations

from pathlib import Path

from fake_run import run_mission


def test_an_env_name_given_as_an_expression_is_evaluated(tmp_path: Path) -> None:
    done = run_mission(
        tmp_path,
        """\
        name: w
        on: push
        jobs:
          t:
            strategy: {matrix: {var: [ALPHA]}}
            env: {"${{ matrix.var }}": "one"}
            steps:
              - run: ok
                env: {"${{ matrix.var }}_STEP": "two"}
        """,
    )
    (spec,) = done.specs["t (ALPHA)"]
    assert (spec.env["ALPHA"], spec.env["ALPHA_STEP"]) == ("one", "two")
    assert not any("${{" in name for name in spec.env)
