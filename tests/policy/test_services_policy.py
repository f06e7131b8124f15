"""A service's image is decided like a job's (`images:`, a rule's `allow.images`), denied
at `jobs.<id>.services.<name>.image` before anything runs; `runner plan` and `policy check`
show it; a backend that cannot run services refuses the job before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import invoke

from runner.engine.fake import FakeBackend
from runner.errors import PolicyDenied
from runner.mission.loader import parse_mission
from runner.mission.model import Health, Service
from runner.policy.decisions import Decision, decide, granted
from runner.policy.loader import load_policy
from runner.run.services import refuse_unsupported, wait_bound

POLICY = """\
version: 1
images: [base, "postgres:16"]
tools: [sh]
limits: {timeout-minutes: 30, memory: 1g, cpus: 1, pids: 256}
rules:
  - name: redis-for-test
    match: {path: m.yml, job: test}
    allow: {images: ["redis:*"]}
  - name: services-run-whole
    match: {path: m.yml, job: "*"}
    allow: {tools-all: true}
"""
MISSION = """\
name: m
on: [push]
jobs:
  test:
    strategy: {matrix: {pg: ["16", "17"]}}
    services:
      db: {image: "postgres:${{ matrix.pg }}"}
      cache: {image: "redis:7"}
      again: {image: base}
    steps: [{run: echo}]
  other:
    services:
      cache: {image: "redis:7"}
      private:
        image: "postgres:16"
        credentials: {username: u, password: p}
    steps: [{run: echo}]
"""


def decisions_of(tmp_path: Path) -> list[Decision]:
    (tmp_path / "policies").mkdir(exist_ok=True)
    (tmp_path / "policies" / "default.yml").write_text(POLICY)
    loaded, warnings = parse_mission(MISSION.encode(), "m.yml")
    return decide(loaded, load_policy(None, tmp_path), warnings)


def test_each_service_image_is_decided_where_it_is_written(tmp_path: Path) -> None:
    images = [
        (d.job, d.keypath, d.line, d.col, d.value, d.allowed, d.rule)
        for d in decisions_of(tmp_path)
        if str(d.capability) == "image"
    ]
    assert images == [
        ("test (16)", "jobs.test.container", 4, 3, "base", True, "base"),
        ("test (16)", "jobs.test.services.db.image", 7, 19, "postgres:16", True, "base"),
        ("test (16)", "jobs.test.services.cache.image", 8, 22, "redis:7", True, "redis-for-test"),
        ("test (16)", "jobs.test.services.again.image", 9, 22, "base", True, "base"),
        ("test (17)", "jobs.test.container", 4, 3, "base", True, "base"),
        ("test (17)", "jobs.test.services.db.image", 7, 19, "postgres:17", False, None),
        ("test (17)", "jobs.test.services.cache.image", 8, 22, "redis:7", True, "redis-for-test"),
        ("test (17)", "jobs.test.services.again.image", 9, 22, "base", True, "base"),
        ("other", "jobs.other.container", 11, 3, "base", True, "base"),
        ("other", "jobs.other.services.cache.image", 13, 22, "redis:7", False, None),
        ("other", "jobs.other.services.private.credentials", 16, 9, "postgres:16", False, None),
    ]
    reasons = {d.keypath: d.reason for d in decisions_of(tmp_path) if not d.allowed}
    assert reasons["jobs.other.services.cache.image"].startswith(
        "neither the top-level `images:` nor a rule matching mission 'm' (m.yml), job 'other' "
        "grants it; rule redis-for-test would, but does not match this job"
    )
    assert reasons["jobs.other.services.private.credentials"].startswith(
        "runner logs in to no registry, so a service with credentials is refused"
    )


def test_grants_map_each_service_to_its_image_beside_the_jobs(tmp_path: Path) -> None:
    decisions = decisions_of(tmp_path)
    grants = granted(decisions, "test (16)")
    assert grants.image == "base"
    assert dict(grants.services) == {"db": "postgres:16", "cache": "redis:7", "again": "base"}
    with pytest.raises(PolicyDenied) as denied:
        granted(decisions, "test (17)")
    assert (
        "m.yml:7:19: jobs.test.services.db.image: image postgres:17 denied to job 'test (17)'"
        in denied.value.message
    )


def test_a_service_needs_tools_all_and_its_grant_leaves_the_steps_cut(tmp_path: Path) -> None:
    """A service runs its image whole (its program, or the mission's entrypoint and
    command), so it is the audited exception `tools: all`: denied without that grant, at
    the service; granted, the job's steps still hold only their tools."""
    (tmp_path / "policies").mkdir()
    without = POLICY[: POLICY.index("  - name: services-run-whole")]
    (tmp_path / "policies" / "default.yml").write_text(without)
    loaded, warnings = parse_mission(MISSION.encode(), "m.yml")
    decisions = decide(loaded, load_policy(None, tmp_path), warnings)
    whole = {
        (d.job, d.keypath): d.allowed
        for d in decisions
        if str(d.capability) == "tools-all" and d.job == "test (16)"
    }
    assert whole == {
        ("test (16)", "jobs.test.services.db"): False,
        ("test (16)", "jobs.test.services.cache"): False,
        ("test (16)", "jobs.test.services.again"): False,
    }
    reason = next(d.reason for d in decisions if d.keypath == "jobs.test.services.db")
    assert reason.startswith(
        "a service runs its image whole (its own program, or its entrypoint and command), "
        "not cut to the job's `tools:`"
    )
    assert "`allow: {tools-all: true}`" in reason
    with pytest.raises(PolicyDenied):
        granted(decisions, "test (16)")
    grants = granted(decisions_of(tmp_path), "test (16)")  # the policy with the grant
    assert grants.tools == ("sh",)


def test_plan_and_policy_check_show_the_services(in_tmp: Path) -> None:
    (in_tmp / "policies").mkdir()
    (in_tmp / ".missions").mkdir()
    (in_tmp / "policies" / "default.yml").write_text(
        POLICY.replace("path: m.yml", "path: .missions/m.yml")
    )
    (in_tmp / ".missions" / "m.yml").write_text(MISSION)
    plan = invoke(in_tmp / ".runner", "plan", ".missions/m.yml")
    lines = plan.out.splitlines()
    assert (
        "  test (16)  image: base  tools: sh  steps: 1  policy: allowed  "
        "services: db (postgres:16), cache (redis:7), again (base)"
    ) in lines
    assert (
        "    denied image postgres:16: runner logs in to no registry, so a service with "
        "credentials is refused before the run: a service's image is one the engine already "
        "has or can pull anonymously, or a containers/<name> image; drop `credentials:` and "
        "make the image available to the engine (`docker pull` it, or build it from "
        "containers/)"
    ) in lines
    as_json = json.loads(invoke(in_tmp / ".runner", "plan", "--json", ".missions/m.yml").out)
    (first, *_) = as_json["levels"][0]["jobs"]
    assert (first["image"], first["services"]) == (
        "base",
        {"db": "postgres:16", "cache": "redis:7", "again": "base"},
    )
    checked = invoke(in_tmp / ".runner", "policy", "check", "--json")
    assert checked.code == 3
    denied = {(d["job"], d["keypath"]) for d in json.loads(checked.out) if not d["allowed"]}
    assert denied == {
        ("test (17)", "jobs.test.services.db.image"),
        ("other", "jobs.other.services.cache.image"),
        ("other", "jobs.other.services.private.credentials"),
    }


class Cluster(FakeBackend):
    """A backend that says which engine it is, and runs no services (as Kubernetes)."""

    def describe(self) -> dict[str, str]:
        return {"backend": "kubernetes"}

    def placement(self, cid: str) -> dict[str, str] | None:
        return None


def test_a_backend_without_services_refuses_their_jobs_before_anything_runs() -> None:
    loaded, _ = parse_mission(MISSION.encode(), "m.yml")
    jobs = list(loaded.jobs.values())
    with pytest.raises(PolicyDenied) as refused:
        refuse_unsupported(Cluster(), jobs)
    assert refused.value.message == (
        "refused: jobs 'test', 'other' have services, but services: are not supported on the "
        "kubernetes backend yet"
    )
    assert refused.value.hint is not None and "Docker backend" in refused.value.hint
    backend = Cluster()
    refuse_unsupported(backend, [])  # no job with services: nothing to refuse
    assert backend.created == []


def test_a_service_is_waited_for_as_long_as_its_check_allows_and_no_longer() -> None:
    check = Health(cmd="true", interval_s=2, timeout_s=1, retries=5, start_period_s=10)
    assert wait_bound(Service(name="db", image="x", health=check)) == 10 + 5 * 3 + 5
    slow = Health(cmd="true", interval_s=3600, timeout_s=1, retries=9)
    assert wait_bound(Service(name="db", image="x", health=slow)) == 600
    assert wait_bound(Service(name="db", image="x")) == 30  # to be running
