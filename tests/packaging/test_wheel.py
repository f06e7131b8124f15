"""The wheel a user installs holds every package, the schemas, the seccomp profile and
runner-init's source (the entrypoint of every step, built by the engine from it).

Packages are found by setup.py, not listed; this test builds the wheel from a clean copy
of the tracked files, installs it into a fresh virtual environment (not the development
one, so nothing leaks in from the checkout) and runs the installed `runner` on a small
repository: a package, a schema or a data file missing from the wheel fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from runner.engine.stepinit.image import tag

REPO = Path(__file__).resolve().parents[2]


def _tracked_copy(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        source = REPO / name
        if source.is_file() and not source.is_symlink():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the built wheel, the `runner` executable of a fresh venv it was installed into)."""
    base = tmp_path_factory.mktemp("wheel")
    source = _tracked_copy(base / "src")
    dist = base / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("runner_missions-*.whl")  # distribution runner-missions
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    return wheel, env_dir / "bin" / "runner"


def _packages_in_checkout() -> set[str]:
    found = {"runner.schemas"}
    for init in (REPO / "runner").rglob("__init__.py"):
        found.add(".".join(init.parent.relative_to(REPO).parts))
    return found


def test_the_wheel_holds_every_package_and_data_file(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {".".join(Path(n).parent.parts) for n in names if n.endswith("/__init__.py")}
    assert packages == _packages_in_checkout()
    for data in (
        "runner/schemas/mission.yml",
        "runner/schemas/policy.yml",
        "runner/engine/docker/seccomp_default.json",
        "runner/engine/docker/seccomp_default.NOTICE",
        "runner/engine/stepinit/runner-init.c",
        "runner/engine/stepinit/Dockerfile",
    ):
        assert data in names, f"{data} is not in the wheel"


def test_the_installed_runner_validates_and_checks_a_policy(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, runner = installed
    repo = tmp_path / "repo"
    (repo / ".missions").mkdir(parents=True)
    (repo / "policies").mkdir()
    (repo / ".missions" / "hello.yml").write_text(
        "name: hello\non: [push]\njobs:\n  say:\n    container: base\n"
        "    steps:\n      - run: echo hi\n"
    )
    (repo / "policies" / "default.yml").write_text(
        "version: 1\nimages: [base]\ntools: [sh]\n"
        "limits: {timeout-minutes: 5, memory: 256m, cpus: 1, pids: 64}\n"
    )
    env = {**os.environ, "CI": "true", "RUNNER_STATE_DIR": str(tmp_path / "state")}
    validate = subprocess.run(
        [str(runner), "validate"], cwd=repo, capture_output=True, text=True, env=env
    )
    assert validate.returncode == 0, validate.stderr
    check = subprocess.run(
        [str(runner), "policy", "check", "--json"],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
    )
    assert check.returncode == 0, check.stderr
    assert '"allowed"' in check.stdout
    seccomp = subprocess.run(
        [
            str(runner.parent / "python"),
            "-c",
            "from runner.engine.docker.hardening import seccomp_profile;"
            "p = seccomp_profile(deny_memfd=True);"
            "print(len(p['syscalls']) > 0)",
        ],
        capture_output=True,
        text=True,
    )
    assert seccomp.stdout.strip() == "True", seccomp.stderr
    init = subprocess.run(  # the image tag is the hash of the shipped build files
        [
            str(runner.parent / "python"),
            "-c",
            "from runner.engine.stepinit.image import tag; print(tag())",
        ],
        capture_output=True,
        text=True,
    )
    assert init.stdout.strip() == tag(), init.stderr
