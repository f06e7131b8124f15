"""Which missions `runner run` picks without a path: those whose `on:` names the event,
`push` unless `--event` says otherwise (as act does); when none does, one error naming
what the missions declare and the command that runs them. No engine is needed: the
choice is made before any container."""

from __future__ import annotations

from pathlib import Path

from conftest import invoke


def _mission(repo: Path, name: str, on: str) -> None:
    (repo / ".missions").mkdir(exist_ok=True)
    (repo / ".missions" / f"{name}.yml").write_text(
        f"name: {name}\non: {on}\njobs:\n  j: {{steps: [{{run: 'true'}}]}}\n"
    )


def test_no_mission_on_the_event_names_the_declared_ones_and_the_command(
    in_tmp: Path,
) -> None:
    _mission(in_tmp, "nightly", "[schedule]")
    _mission(in_tmp, "release", "[workflow_dispatch, schedule]")
    result = invoke(in_tmp / ".runner", "run")
    assert result.code == 2
    assert result.err.splitlines() == [
        "runner: error: no mission in .missions/ runs on event 'push'",
        "  hint: the missions declare schedule: .missions/nightly.yml, .missions/release.yml; "
        "workflow_dispatch: .missions/release.yml; run `runner run --event schedule`, or name "
        "a mission",
    ]


def test_the_default_event_is_push(in_tmp: Path) -> None:
    _mission(in_tmp, "ci", "[push]")
    _mission(in_tmp, "nightly", "[manual]")
    result = invoke(in_tmp / ".runner", "run", "--event", "pull_request")
    assert "runs on event 'pull_request'" in result.err  # the check the default passes
    result = invoke(in_tmp / ".runner", "run")  # ci is chosen: its policy check is next
    assert result.code == 3 and "no mission in .missions/" not in result.err
    assert ".missions/ci.yml" in result.err and ".missions/nightly.yml" not in result.err
