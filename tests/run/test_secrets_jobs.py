"""Secrets and masks stay in their job, pure: the real Executor and JobRunner on the
in-memory engine. tests/run/test_secrets_leaks.py proves the same in real containers."""

from __future__ import annotations

from pathlib import Path

from fake_run import run_mission

from runner.records.events import Annotation, OutputLine
from runner.records.results import Status
from runner.records.sink import Recorder, Sink

SECRET = "tok-Zq!x/9+=&'\"\\ä-7f3a91c2 with space"

TWO_JOBS = """\
    name: masks
    on: [manual]
    jobs:
      a:
        steps:
          - run: |
              print ::add-mask::mask-of-a
              print a says mask-of-a status success
      b:
        steps:
          - run: |
              sleep 1
              print b says mask-of-a status success
    """


def test_a_mask_applies_to_its_own_jobs_text_only(tmp_path: Path) -> None:
    recorder = Recorder()
    done = run_mission(tmp_path, TWO_JOBS, sink=Sink([recorder]))
    lines = {(e.job, e.line) for e in recorder.events if isinstance(e, OutputLine)}
    assert ("a", "a says *** status success") in lines
    assert ("b", "b says mask-of-a status success") in lines
    assert {k: j.status for k, j in done.jobs.items()} == {"a": Status.SUCCESS, "b": Status.SUCCESS}
    assert done.state.redactor("mask-of-a") == "mask-of-a"  # never the run's


def test_an_output_holding_a_secret_or_a_mask_is_not_passed_to_another_job(
    tmp_path: Path,
) -> None:
    mission = """\
        name: outputs
        on: [manual]
        jobs:
          a:
            permissions: {secrets: [TOKEN]}
            steps:
              - id: s
                run: |
                  print ::add-mask::masked-in-a
                  out secret=x${{ secrets.TOKEN }}y
                  out masked=masked-in-a
                  out plain=hello
            outputs:
              secret: ${{ steps.s.outputs.secret }}
              masked: ${{ steps.s.outputs.masked }}
              plain: ${{ steps.s.outputs.plain }}
          b:
            needs: [a]
            steps:
              - run: print got [${{ needs.a.outputs.secret }}][${{ needs.a.outputs.plain }}]
        """
    recorder = Recorder()
    done = run_mission(tmp_path, mission, sink=Sink([recorder]), secrets={"TOKEN": SECRET})
    assert done.jobs["a"].outputs == {"plain": "hello"}
    warnings = sorted(e.message for e in recorder.events if isinstance(e, Annotation))
    assert warnings == [
        "Skip output 'masked' since it may contain secret (job a does not pass it on)",
        "Skip output 'secret' since it may contain secret (job a does not pass it on)",
    ]
    lines = [e.line for e in recorder.events if isinstance(e, OutputLine) and e.job == "b"]
    assert lines == ["got [][hello]"]


def test_an_artifact_holding_a_granted_secret_is_not_stored(tmp_path: Path) -> None:
    mission = """\
        name: artifacts
        on: [manual]
        jobs:
          a:
            steps:
              - run: |
                  print ::add-mask::a-mask-of-the-job
                  write report.txt "line one\\nKeyError('a-mask-of-the-job')\\n"
                  write clean.txt "nothing here"
            produces:
              - {name: clean, path: clean.txt, type: file}
              - {name: report, path: report.txt, type: file}
        """
    done = run_mission(tmp_path, mission, secrets={"TOKEN": SECRET})
    job = done.jobs["a"]
    assert job.status is Status.FAILURE
    assert job.reason == (
        "artifact 'report': 'report.txt' holds a secret granted to its job or a value the "
        "job masked, so it was not stored"
    )
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == ["clean.tar"]
