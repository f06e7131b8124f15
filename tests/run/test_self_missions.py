"""The project's own missions, run by the project's own runner, in real containers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import runner_cli

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]


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
    done = runner_cli(repo, tmp_path / "state", "run", "--json", "--event", "push", timeout=900)
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


def test_an_interpreter_cannot_exec_an_elf_from_memory(tmp_path: Path) -> None:
    """shared/research: with python allowed, a step could write an ELF (here: the
    interpreter's own) to a memfd and exec it. memfd_create is denied where an
    interpreter is a tool, and the workspace and /tmp are noexec."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "containers", repo / "containers")
    (repo / ".missions").mkdir()
    (repo / "policies").mkdir()
    (repo / "policies" / "default.yml").write_text(
        "version: 1\nimages: [python]\ntools: [sh, python3]\n"
        "limits: {timeout-minutes: 5, memory: 256m, cpus: 1, pids: 64}\n"
        "build: {from: [debian:bookworm-slim], network: [python]}\n"
    )
    script = (
        "import os, shutil, sys\n"
        "try:\n"
        "    fd = os.memfd_create('x')\n"
        "except OSError as e:\n"
        "    print('memfd refused', e.errno)\n"
        "else:\n"
        "    os.execv(f'/proc/self/fd/{fd}', ['x'])\n"
        "for where in ('/tmp/p', './p'):\n"
        "    shutil.copy(sys.executable, where); os.chmod(where, 0o755)\n"
        "    try:\n"
        "        os.execv(where, [where, '-c', 'print(1)'])\n"
        "    except OSError as e:\n"
        "        print('exec refused', where, e.errno)\n"
    )
    (repo / "probe.py").write_text(script)
    (repo / ".missions" / "m.yml").write_text(
        "name: m\non: [push]\njobs:\n  probe:\n    container: python\n"
        "    tools: [sh, python3]\n    steps: [{run: python3 probe.py}]\n"
    )
    done = runner_cli(repo, tmp_path / "state", "run", "--json", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    events = next((tmp_path / "state" / "runs").glob("*/events.jsonl")).read_text()
    lines = [json.loads(x).get("line") for x in events.splitlines()]
    assert "memfd refused 1" in lines  # EPERM from the seccomp profile
    assert "exec refused /tmp/p 13" in lines and "exec refused ./p 13" in lines  # EACCES
