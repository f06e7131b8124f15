"""`runner run --backend kubernetes` end to end, on a real cluster (tests/kubernetes/
conftest.py: ../shared/k8s, runner as a ServiceAccount bound to docs/kubernetes/role.yaml).

The same missions as tests/run/test_run.py's Docker runs, a few jobs per run so that the
cluster's pod latency is paid in parallel: the demo mission, outputs across jobs, a
matrix, a failing step skipping dependents, a timeout, a retry, artifacts between jobs,
secrets masked, the hardening read from inside a step pod, Ctrl-C and a crash followed by
`runner gc` leaving nothing, `runner audit verify` on the ledger of a Kubernetes run, and
both sides of each guarantee an ordinary cluster cannot keep (NetworkPolicy enforcement,
the kubelet's termination-log file): refused by default, run once the policy accepts it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RUNNER, runner_cli
from kubecluster import Kube, kube_fixture  # noqa: F401  (the session's cluster: `kube`)

from runner.audit.entries import ENVELOPE, check

pytestmark = [pytest.mark.docker, pytest.mark.kubernetes]

ACCEPT = "accept: [unenforced-network-policy, executable-termination-log]\n"
POLICY = """\
version: 1
images: [base]
tools: [sh, cat, sleep]
limits: {timeout-minutes: 10, memory: 256m, cpus: 1, pids: 64}
"""
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


def make_repo(root: Path, mission: str, *, policy: str = POLICY + ACCEPT) -> Path:
    (root / ".missions").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / ".missions" / "m.yml").write_text(textwrap.dedent(mission))
    (root / "policies" / "default.yml").write_text(policy)
    (root / "data.txt").write_text("from the repository\n")
    return root


def run(
    kube: Kube, repo: Path, state: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return runner_cli(repo, state, "run", "--json", *kube.args, *args, **kube.env(), **env)


def result_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert "Traceback" not in done.stderr, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def events(state: Path, run_id: str) -> list[dict[str, Any]]:
    path = state / "runs" / run_id / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def ledger(state: Path) -> list[dict[str, Any]]:
    path = state / "ledger" / "entries.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_demo_mission_runs_on_the_cluster_and_leaves_nothing(
    kube: Kube, tmp_path: Path, state: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(REPO / ".missions", repo / ".missions")
    shutil.copytree(REPO / "containers", repo / "containers")
    (repo / "policies").mkdir()
    policy = (REPO / "policies" / "default.yml").read_text()
    (repo / "policies" / "default.yml").write_text(policy + ACCEPT)
    done = run(kube, repo, state, ".missions/demo.yml")
    assert done.returncode == 0, done.stderr
    result = result_of(done)
    jobs = result["jobs"]
    assert sorted(jobs) == ["hello (bonjour)", "hello (hello)", "publish", "report"]
    lines = [e.get("line") for e in events(state, result["run_id"])]
    assert "hello from demo" in lines and "bonjour from demo" in lines
    assert "done" in lines  # publish read the artifact report produced
    stored = [e for e in ledger(state) if e["type"] == "artifact.stored"]
    assert stored[-1]["name"] == "report" and len(stored[-1]["sha256"]) == 64
    assert kube.objects(f"runner.run-id={result['run_id']}") == []


def test_outputs_matrix_failure_timeout_retry_and_artifacts(
    kube: Kube, tmp_path: Path, state: Path
) -> None:
    repo = make_repo(
        tmp_path / "repo",
        """\
        name: semantics
        on: [push]
        jobs:
          a:
            tools: [sh, cat]
            steps:
              - id: make
                run: |
                  echo "word=hello" >> "$RUNNER_OUTPUT"
                  echo "FROM_A=set-by-env-file" >> "$RUNNER_ENV"
                  cat data.txt > copy.txt
                  printf 'made in a\\n' > made.txt
              - if: steps.make.outputs.word == 'hello'
                run: test "$FROM_A" = set-by-env-file && cat copy.txt
              - if: steps.make.outputs.word == 'other'
                run: exit 9
            outputs:
              word: ${{ steps.make.outputs.word }}
            produces:
              - {name: made, path: made.txt, type: file}
          b:
            needs: [a]
            consumes: [made]
            tools: [sh, cat]
            env: {GOT: "${{ needs.a.outputs.word }}"}
            steps:
              - run: test "$GOT" = hello && cat made.txt
          m:
            strategy:
              matrix: {shard: [1, 2]}
            steps:
              - id: s
                run: echo "seen=${{ matrix.shard }}" >> "$RUNNER_OUTPUT"
            outputs:
              seen: ${{ steps.s.outputs.seen }}
          fails:
            steps:
              - run: exit 3
              - run: echo never
          after: {needs: [fails], steps: [{run: echo after}]}
          slow:
            tools: [sh, sleep]
            steps:
              - run: sleep 120
                timeout-minutes: 0.05
          flaky:
            tools: [sh, cat]
            steps:
              - run: |
                  n=$(cat count 2>/dev/null || echo 0); n=$((n + 1)); echo $n > count
                  echo "attempt $n"; [ "$n" -ge 2 ]
                retry: {max-attempts: 3, backoff: fixed, delay: 100ms}
        """,
    )
    done = run(kube, repo, state, "--max-parallel", "8")
    assert done.returncode == 1, done.stderr
    result = result_of(done)
    jobs = result["jobs"]
    assert jobs["a"]["outputs"] == {"word": "hello"}
    assert [s["status"] for s in jobs["a"]["steps"]] == ["success", "success", "skipped"]
    assert jobs["b"]["status"] == "success"
    assert jobs["m (1)"]["outputs"] == {"seen": "1"} and jobs["m (2)"]["outputs"] == {"seen": "2"}
    assert (jobs["fails"]["status"], jobs["fails"]["steps"][0]["reason"]) == (
        "failure",
        "exit code 3",
    )
    assert jobs["fails"]["steps"][1]["status"] == "skipped"
    assert jobs["after"] == {
        **jobs["after"],
        "status": "skipped",
        "reason": "dependency fails did not succeed",
    }
    assert (jobs["slow"]["status"], jobs["slow"]["steps"][0]["reason"]) == ("failure", "timeout")
    flaky = jobs["flaky"]["steps"][0]
    assert (flaky["status"], flaky["attempts"]) == ("success", 2)
    lines = [e.get("line") for e in events(state, result["run_id"])]
    assert "from the repository" in lines and "made in a" in lines
    assert "attempt 1" in lines and "attempt 2" in lines
    assert kube.objects(f"runner.run-id={result['run_id']}") == []


SECRET = "s3cr3t-'quoted'\\back\"slash"


def test_secrets_are_masked_and_the_hardening_holds_inside_a_step_pod(
    kube: Kube, tmp_path: Path, state: Path
) -> None:
    repo = make_repo(
        tmp_path / "repo",
        """\
        name: hardened
        on: [push]
        jobs:
          look:
            tools: [sh, cat, printf, cp, chmod]
            steps:
              - name: look inside
                run: |
                  printf 'got %s\\n' "$TOKEN"
                  cat /proc/self/status
                  cat /proc/self/mountinfo
                  echo x > /not-here 2>/dev/null && echo ROOT-WRITABLE
                  cp /bin/cat /tmp/mycat && chmod 755 /tmp/mycat && /tmp/mycat /dev/null && echo TMP-EXEC
                  cp /bin/cat mycat && chmod 755 mycat && ./mycat /dev/null && echo WORKSPACE-EXEC
                  true
                env:
                  TOKEN: ${{ secrets.TOKEN }}
        """,
        policy=POLICY.replace("sleep]", "sleep, printf, cp, chmod]")
        + ACCEPT
        + "rules:\n  - {name: token, match: {job: look}, allow: {secrets: [TOKEN]}}\n",
    )
    done = run(kube, repo, state, "--secret", "TOKEN", TOKEN=SECRET)
    assert done.returncode == 0, done.stderr
    result = result_of(done)
    log = (state / "runs" / result["run_id"] / "events.jsonl").read_text()
    assert "got ***" in log and "s3cr3t" not in log
    assert "s3cr3t" not in (state / "ledger" / "entries.jsonl").read_text()
    lines = [e.get("line", "") for e in events(state, result["run_id"])]
    status = {k: v.strip() for k, _, v in (line.partition(":") for line in lines) if v}
    assert status["Uid"].split() == ["65534"] * 4
    assert status["Gid"].split()[0] == "65534"
    assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    mounts = {line.split()[4]: line for line in lines if len(line.split()) > 9 and " - " in line}
    assert " ro," in f" {mounts['/'].split()[5]}," or mounts["/"].split()[5].startswith("ro")
    for point in ("/workspace", "/tmp"):
        assert "noexec" in mounts[point].split()[5], mounts[point]
    assert "ROOT-WRITABLE" not in lines and "TMP-EXEC" not in lines
    assert "WORKSPACE-EXEC" not in lines


def test_an_unenforced_network_policy_and_the_termination_log_fail_closed(
    kube: Kube, tmp_path: Path, state: Path
) -> None:
    mission = """\
        name: closed
        on: [push]
        jobs:
          quiet: {steps: [{run: echo should-not-run}]}
        """
    network = make_repo(
        tmp_path / "network", mission, policy=POLICY + "accept: [executable-termination-log]\n"
    )
    done = run(kube, network, state)
    assert done.returncode == 1, done.stderr
    quiet = result_of(done)["jobs"]["quiet"]
    assert "does not enforce NetworkPolicy" in quiet["reason"]
    lines = [e.get("line") for e in events(state, result_of(done)["run_id"])]
    assert "should-not-run" not in lines
    engine = [e for e in ledger(state) if e["type"] == "engine.connected"][-1]
    assert engine["network_policy"] == "not enforced: steps without network are refused"
    log = make_repo(
        tmp_path / "log", mission, policy=POLICY + "accept: [unenforced-network-policy]\n"
    )
    done = run(kube, log, state)
    assert done.returncode == 1, done.stderr
    reason = result_of(done)["jobs"]["quiet"]["steps"][0]["reason"]
    assert reason.startswith("refused: ") and "/dev/termination-log" in reason
    plan = runner_cli(log, state, "plan", ".missions/m.yml")
    assert "unenforced-network-policy" in plan.stdout, plan.stdout


@contextlib.contextmanager
def _started(kube: Kube, repo: Path, state: Path) -> Iterator[subprocess.Popen[str]]:
    """`runner run` in the background; killed and reaped, its pipes closed, whatever the
    test found (a failed assertion leaves no process or pipe behind)."""
    env = {**os.environ, "RUNNER_STATE_DIR": str(state), "CI": "true", **kube.env()}
    proc = subprocess.Popen(
        [*RUNNER, "run", *kube.args],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def _wait_for_step(kube: Kube, state: Path, deadline_s: float = 120) -> None:
    """Until a step pod of this state's run exists (another test's, under pytest -n,
    is not one)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        runs = list((state / "runs").iterdir()) if (state / "runs").is_dir() else []
        if runs and kube.objects(f"runner.run-id={runs[0].name},runner.role=step"):
            return
        time.sleep(0.3)
    raise AssertionError("no step pod started")


SLEEPER = """\
    name: sleeper
    on: [push]
    jobs:
      long:
        tools: [sh, sleep]
        steps: [{run: sleep 60}]
    """


def test_ctrl_c_leaves_no_pod_claim_or_other_object(kube: Kube, tmp_path: Path) -> None:
    state = tmp_path / "state-int"
    repo = make_repo(tmp_path / "repo", SLEEPER)
    with _started(kube, repo, state) as proc:
        _wait_for_step(kube, state)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert time.monotonic() - sent < 60
    run_id = next((state / "runs").iterdir()).name
    assert kube.objects(f"runner.run-id={run_id}") == []


def test_a_crash_then_gc_leaves_nothing_and_the_ledger_verifies(kube: Kube, tmp_path: Path) -> None:
    state = tmp_path / "state-kill"
    repo = make_repo(tmp_path / "repo", SLEEPER)
    with _started(kube, repo, state) as proc:
        _wait_for_step(kube, state)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    run_id = next((state / "runs").iterdir()).name
    assert kube.objects(f"runner.run-id={run_id}"), "the crash left nothing to collect"
    gc = runner_cli(
        repo, state, "gc", "--backend", "kubernetes", "--namespace", kube.namespace, **kube.env()
    )
    assert gc.returncode == 0, gc.stderr
    deadline = time.monotonic() + 60
    while kube.objects(f"runner.run-id={run_id}") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert kube.objects(f"runner.run-id={run_id}") == []


def test_audit_verify_passes_on_the_ledger_of_a_kubernetes_run(kube: Kube, tmp_path: Path) -> None:
    state = tmp_path / "state"  # its own: the run's key is published in this repository
    repo = make_repo(
        tmp_path / "repo",
        """\
        name: audited
        on: [push]
        jobs:
          one: {steps: [{run: echo audited}]}
        """,
    )
    done = run(kube, repo, state)
    assert done.returncode == 0, done.stderr
    run_id = result_of(done)["run_id"]
    entries = [e for e in ledger(state) if e.get("run_id") == run_id]
    engine = next(e for e in entries if e["type"] == "engine.connected")
    assert engine["backend"] == "kubernetes" and engine["server_version"].startswith("v1.")
    placed = next(e for e in entries if e["type"] == "step.placed")
    assert placed["node"] and placed["pod"] and len(placed["pod_spec_digest"]) == 64
    assert placed["image_digest"].startswith("sha256:")
    for entry in entries:  # everything a Kubernetes run writes is declared
        check(entry["type"], {k: v for k, v in entry.items() if k not in ENVELOPE})
    verify = runner_cli(repo, state, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    exported = runner_cli(repo, state, "audit", "export", run_id, "-o", str(tmp_path / "p.json"))
    assert exported.returncode == 0, exported.stderr
    envelope = json.loads((tmp_path / "p.json").read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    definition = statement["predicate"]["buildDefinition"]
    assert definition["internalParameters"]["engine"]["backend"] == "kubernetes"
    uris = [d["uri"] for d in definition["resolvedDependencies"]]
    assert f"docker-image://{placed['image']}" in uris
