"""The project's own missions, run by the project's own runner, in real containers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parent.parent


def _copy_of_repo(dest: Path) -> Path:
    files = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def test_ci_mission_lints_and_unit_tests_runner_with_runner(tmp_path: Path) -> None:
    repo = _copy_of_repo(tmp_path / "repo")
    env = {**os.environ, "RUNNER_STATE_DIR": str(tmp_path / "state"), "CI": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "runner", "run", "--json", "--event", "push"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["mission"] == "ci"
    assert {k: j["status"] for k, j in result["jobs"].items()} == {
        "lint": "success",
        "unit": "success",
    }
    assert [c["status"] for c in result["verify"]] == ["passed", "passed"]
    events = (tmp_path / "state" / "runs" / result["run_id"] / "events.jsonl").read_text()
    assert " passed in " in events, "pytest's summary line did not reach the event log"
