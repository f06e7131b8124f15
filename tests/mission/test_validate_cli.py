from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

from conftest import invoke

GOOD = """
name: good
on: push
permissions: read-all
jobs:
  a:
    steps: [{run: echo hi}]
"""
BAD = """
name: bad
jobs:
  a:
    needs: [ghost]
    steps: [{run: echo hi}]
"""


def _missions(repo: Path, **files: str) -> None:
    folder = repo / ".missions"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(dedent(text).lstrip("\n"), encoding="utf-8")


def test_default_validates_every_mission_and_prints_each_finding(in_tmp: Path) -> None:
    _missions(in_tmp, **{"a.yml": GOOD, "b.yaml": BAD})
    done = invoke(in_tmp / "state", "validate")
    code, out = done.code, done.out
    assert code == 2
    assert out.splitlines() == [
        '.missions/a.yml:3:1: note: permissions: "read-all" is a GitHub token scope, '
        "which means nothing here [github-only]",
        '.missions/b.yaml:4:13: jobs.a.needs[0]: job "a" needs "ghost", which is not a job in '
        "this mission [needs]",
        "2 files checked: 1 error, 0 warnings, 1 note",
    ]


def test_valid_missions_exit_0(in_tmp: Path) -> None:
    _missions(in_tmp, **{"a.yml": GOOD})
    done = invoke(in_tmp / "state", "validate")
    code, out = done.code, done.out
    assert code == 0
    assert out.splitlines()[-1] == "1 file checked: 0 errors, 0 warnings, 1 note"


def test_a_directory_argument_means_its_yaml_files(in_tmp: Path) -> None:
    workflows = in_tmp / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "ci.yml").write_text(dedent(BAD), encoding="utf-8")
    (workflows / "README.md").write_text("not yaml", encoding="utf-8")
    done = invoke(in_tmp / "state", "validate", ".github/workflows")
    code, out = done.code, done.out
    assert code == 2
    assert out.splitlines()[0].startswith(".github/workflows/ci.yml:5:13: jobs.a.needs[0]: ")
    assert out.splitlines()[-1] == "1 file checked: 1 error, 0 warnings, 0 notes"


def test_json_lists_the_findings_of_each_file(in_tmp: Path) -> None:
    _missions(in_tmp, **{"a.yml": GOOD, "b.yml": BAD})
    done = invoke(in_tmp / "state", "validate", "--json")
    code, out = done.code, done.out
    assert code == 2
    report = json.loads(out)
    assert [(r["path"], r["valid"]) for r in report] == [
        (".missions/a.yml", True),
        (".missions/b.yml", False),
    ]
    assert report[1]["findings"] == [
        {
            "path": ".missions/b.yml",
            "line": 4,
            "col": 13,
            "keypath": "jobs.a.needs[0]",
            "message": 'job "a" needs "ghost", which is not a job in this mission',
            "rule": "needs",
            "severity": "error",
        }
    ]


def test_a_missing_file_is_one_clear_error_exit_2(in_tmp: Path) -> None:
    runner = str(Path(sys.executable).with_name("runner"))
    done = subprocess.run(
        [runner, "validate", "nope.yml"], capture_output=True, text=True, cwd=in_tmp, check=False
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == "runner: error: nope.yml: no such file or directory\n"


def test_no_missions_is_an_error_with_a_hint(in_tmp: Path) -> None:
    runner = str(Path(sys.executable).with_name("runner"))
    done = subprocess.run(
        [runner, "validate"], capture_output=True, text=True, cwd=in_tmp, check=False
    )
    assert done.returncode == 2
    assert done.stderr == (
        "runner: error: no missions found in .missions/\n"
        "  hint: add .missions/<name>.yml, or name the files to validate\n"
    )


def test_the_project_missions_validate(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    done = invoke(tmp_path / "state", "validate", str(repo / ".missions"))
    code, out = done.code, done.out
    assert code == 0, out
