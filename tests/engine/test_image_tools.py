"""Tools no catalog describes, looked up by name in a real image, as a C and a Node.js
project ask for them: `id`, `base64`, `make`, `gcc` (runner's entry: bare names looked up
in the image, with what gcc runs) and `node`, on a `containers/toolchain` image built from
Debian's packages. The image is tagged by its Dockerfile's content, so the engine builds
it once and every later session finds it.

And the other side: a tool whose script needs an interpreter the job does not have, and a
tool the image does not have, are findings before any container runs.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import runner_cli

pytestmark = pytest.mark.docker

DOCKERFILE = """\
# make, gcc and node from Debian, and a perl script of our own: tools no catalog lists
FROM debian:bookworm-slim
RUN apt-get update \\
 && apt-get install -y --no-install-recommends make gcc libc6-dev nodejs \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \\
 && printf '#!/usr/bin/perl\\nprint "hello from perl\\\\n";\\n' > /usr/local/bin/greet \\
 && chmod 755 /usr/local/bin/greet \\
 && chmod 1777 /tmp
USER 65534
"""

POLICY = """\
version: 1
images: [toolchain]
tools: [sh, cat, id, base64, make, gcc, node, greet, frob]
limits: {timeout-minutes: 10, memory: 1g, cpus: 1, pids: 256}
build: {from: ["debian:bookworm-slim"], network: [toolchain]}
rules:
  - name: c-runs-what-it-builds
    match: {path: .missions/project.yml, job: c}
    allow: {exec: true}
"""

PROJECT = """\
name: project
on: [push]
jobs:
  basics:
    container: toolchain
    tools: [sh, id, base64]
    steps:
      - run: id -u && printf runner | base64
  c:
    container: toolchain
    tools: [sh, make, gcc]
    permissions: {exec: true}
    steps:
      - run: |
          printf '#include <stdio.h>\\nint main(void) { puts("hello from C"); return 0; }\\n' > hello.c
          printf 'hello: hello.c\\n\\t$(CC) -O2 -o $@ hello.c\\n' > Makefile
          make hello && ./hello
  node:
    container: toolchain
    tools: [sh, node]
    steps:
      - run: node -e 'console.log("node says", 6 * 7)'
"""

REFUSED = """\
name: refused
on: [push]
jobs:
  greet:
    container: toolchain
    tools: [sh, greet, frob]
    steps:
      - run: greet
"""


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, state: Path) -> Path:
    root = tmp_path_factory.mktemp("repo")
    for name, text in {
        "containers/toolchain/Dockerfile": DOCKERFILE,
        "policies/default.yml": POLICY,
        ".missions/project.yml": PROJECT,
        ".missions/refused.yml": REFUSED,
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    assert runner_cli(root, state, "keys", "init").returncode == 0  # before the build's record
    built = runner_cli(root, state, "images", "build", "toolchain", timeout=900)
    assert built.returncode == 0, built.stderr
    return root


def lines_of(state: Path, run_id: str) -> list[str]:
    events = (state / "runs" / run_id / "events.jsonl").read_text().splitlines()
    return [e["line"] for e in map(json.loads, events) if e.get("kind") == "output"]


def test_id_base64_make_gcc_and_node_are_found_in_the_image(repo: Path, state: Path) -> None:
    done = runner_cli(repo, state, "run", "--json", ".missions/project.yml", timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    result = json.loads(done.stdout)
    assert {key: job["status"] for key, job in result["jobs"].items()} == {
        "basics": "success",
        "c": "success",
        "node": "success",
    }
    printed = lines_of(state, result["run_id"])
    assert "65534" in printed and "cnVubmVy" in printed
    assert "hello from C" in printed
    assert "node says 42" in printed


def test_a_script_whose_interpreter_is_not_a_tool_and_a_missing_tool_stop_the_run_first(
    repo: Path, state: Path
) -> None:
    plan = runner_cli(repo, state, "plan", ".missions/refused.yml")
    assert plan.returncode == 0, plan.stderr
    greet = (
        ".missions/refused.yml:6:17: jobs.greet.tools[1]: tool greet: /usr/local/bin/greet is "
        "a script run by /usr/bin/perl, which is not one of the job's tools: add perl to "
        "`tools:` too (and to the policy's `tools:`) [tool]"
    )
    frob = (
        ".missions/refused.yml:6:24: jobs.greet.tools[2]: tool 'frob' is not in image "
        "toolchain (looked in /usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin, /sbin, "
        "/bin); add it to the image (containers/toolchain/Dockerfile) or remove it from "
        "`tools:` [tool]"
    )
    assert plan.stdout.splitlines()[-2:] == [greet, frob]
    runs_before = sorted((state / "runs").glob("*")) if (state / "runs").exists() else []
    done = runner_cli(repo, state, "run", ".missions/refused.yml")
    assert done.returncode == 2, done.stdout + done.stderr
    assert greet in done.stderr.splitlines() and frob in done.stderr.splitlines()
    runs_after = sorted((state / "runs").glob("*")) if (state / "runs").exists() else []
    assert runs_after == runs_before, "a run started"
