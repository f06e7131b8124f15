"""A job granted egress gets a network of its own for its steps, removed with the job;
where the host cannot be kept out of it, the job is refused unless the policy accepts."""

from __future__ import annotations

from pathlib import Path

from fake_run import run_mission

from runner.engine.backend import LABEL_JOB, LABEL_RUN
from runner.engine.fake import FakeBackend

MISSION = """\
name: m
on: [manual]
jobs:
  a: {steps: [{run: ok}, {run: ok}]}
  b: {steps: [{run: ok}]}
"""


def test_each_job_granted_egress_has_its_own_network_removed_with_it(tmp_path: Path) -> None:
    done = run_mission(tmp_path, MISSION, network=True)
    assert done.status() == {"a": ("success", ""), "b": ("success", "")}
    made = done.backend.called("create_network")
    assert len(made) == 2 and len({name for name, _, _ in made}) == 2
    for name, labels, host_reachable in made:
        assert host_reachable is False  # kept off the host
        assert labels[LABEL_RUN] == "r1"
        job = labels[LABEL_JOB]  # type: ignore[index]
        assert {spec.network for spec in done.specs[job]} == {name}
    assert sorted(args[0] for args in done.backend.called("remove_network")) == sorted(
        name for name, _, _ in made
    )
    assert done.backend.networks == {}


def test_no_network_without_the_grant(tmp_path: Path) -> None:
    done = run_mission(tmp_path, MISSION)
    assert done.backend.called("create_network") == []
    assert {spec.network for specs in done.specs.values() for spec in specs} == {None}


def test_egress_the_host_cannot_be_kept_from_is_refused_unless_accepted(
    tmp_path: Path,
) -> None:
    for case in ("refused", "accepted"):
        (tmp_path / case).mkdir()
    backend = FakeBackend()
    backend.egress_unavailable = "runner is not root, so it cannot set firewall rules"
    done = run_mission(tmp_path / "refused", MISSION, backend=backend, network=True)
    status, reason = done.status()["a"]
    assert status == "failure"
    assert reason == (
        "refused: job 'a' is granted egress, but runner is not root, so it cannot set "
        "firewall rules; the fake's hint"
    )
    assert backend.created == []  # no step ran
    assert done.left_behind() == ([], []) and backend.networks == {}

    accepting = FakeBackend()
    accepting.egress_unavailable = "runner is not root, so it cannot set firewall rules"
    done = run_mission(
        tmp_path / "accepted",
        MISSION,
        backend=accepting,
        network=True,
        accept_egress_to_host=True,
    )
    assert done.status() == {"a": ("success", ""), "b": ("success", "")}
    assert {args[2] for args in accepting.called("create_network")} == {True}
