from __future__ import annotations

from runner.mission.model import Job, Matrix, Mission, Strategy
from runner.mission.plan import expand_matrix, job_instances, levels, needs_closure, select_jobs


def _job(job_id: str = "t", needs: tuple[str, ...] = (), **matrix: object) -> Job:
    strategy = Strategy(matrix=Matrix(**matrix)) if matrix else None  # type: ignore[arg-type]
    return Job(id=job_id, needs=needs, strategy=strategy)


def test_product_first_axis_slowest() -> None:
    job = _job(axes={"os": ("a", "b"), "v": (1, 2)})
    assert expand_matrix(job) == [
        {"os": "a", "v": 1},
        {"os": "a", "v": 2},
        {"os": "b", "v": 1},
        {"os": "b", "v": 2},
    ]


def test_exclude_matches_partially() -> None:
    job = _job(axes={"os": ("a", "b"), "v": (1, 2)}, exclude=({"os": "a"},))
    assert expand_matrix(job) == [{"os": "b", "v": 1}, {"os": "b", "v": 2}]


def test_include_extends_matching_and_adds_unmatched() -> None:
    # GitHub's documented example: fruit x animal with includes.
    job = _job(
        axes={"fruit": ("apple", "pear"), "animal": ("cat", "dog")},
        include=(
            {"color": "green"},
            {"color": "pink", "animal": "cat"},
            {"fruit": "apple", "shape": "circle"},
            {"fruit": "banana"},
            {"fruit": "banana", "animal": "cat"},
        ),
    )
    assert expand_matrix(job) == [
        {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {"fruit": "pear", "animal": "cat", "color": "pink"},
        {"fruit": "pear", "animal": "dog", "color": "green"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]


def test_include_only_matrix() -> None:
    job = _job(include=({"shard": 1}, {"shard": 2, "slow": True}))
    assert expand_matrix(job) == [{"shard": 1}, {"shard": 2, "slow": True}]


def test_instance_keys_are_unique_and_readable() -> None:
    job = _job("test", axes={"shard": (1, 2)}, include=({"shard": 3, "slow": True},))
    assert [i.key for i in job_instances(job)] == ["test (1)", "test (2)", "test (3, true)"]
    assert [i.index for i in job_instances(job)] == [0, 1, 2]


def test_dynamic_matrix_is_one_instance() -> None:
    job = Job(id="t", strategy=Strategy(matrix=Matrix(expression="${{ fromJSON(x) }}")))
    (only,) = job_instances(job)
    assert only.dynamic and only.key == "t"


def _mission(*jobs: Job) -> Mission:
    return Mission(path="m.yml", digest="0", name="m", jobs={j.id: j for j in jobs})


def test_levels_and_closure() -> None:
    mission = _mission(
        _job("a"), _job("b", ("a",)), _job("c", ("a",)), _job("d", ("b", "c")), _job("e")
    )
    assert levels(mission) == [["a", "e"], ["b", "c"], ["d"]]
    assert needs_closure(mission, "d") == {"a", "b", "c"}
    assert select_jobs(mission, ("b",)) == {"a", "b"}
    assert select_jobs(mission, ()) == {"a", "b", "c", "d", "e"}


def test_levels_of_a_long_chain_are_linear() -> None:
    jobs = [_job("j0")] + [_job(f"j{i}", (f"j{i - 1}",)) for i in range(1, 1000)]
    result = levels(_mission(*jobs))
    assert len(result) == 1000 and result[-1] == ["j999"]


def test_levels_leave_out_a_cycle() -> None:
    mission = _mission(_job("a", ("b",)), _job("b", ("a",)), _job("c"))
    assert levels(mission) == [["c"]]


def test_an_instance_on_a_windows_or_macos_runner_is_skipped_with_the_reason() -> None:
    matrix = Matrix(axes={"os": ("ubuntu-latest", "windows-latest", "macos-14", "Windows")})
    job = Job(id="t", strategy=Strategy(matrix=matrix), runs_on=("${{ matrix.os }}",))
    assert [(i.key, i.skipped) for i in job_instances(job)] == [
        ("t (ubuntu-latest)", ""),
        (
            "t (windows-latest)",
            "runs-on windows-latest: runner runs jobs in Linux containers only, so this job "
            "is skipped",
        ),
        (
            "t (macos-14)",
            "runs-on macos-14: runner runs jobs in Linux containers only, so this job is skipped",
        ),
        (
            "t (Windows)",
            "runs-on Windows: runner runs jobs in Linux containers only, so this job is skipped",
        ),
    ]
    for linux in (("ubuntu-24.04",), ("self-hosted", "linux", "x64"), ("windowsill",), ()):
        (only,) = job_instances(Job(id="t", runs_on=linux))
        assert only.skipped == "", linux
    (hosted,) = job_instances(Job(id="t", runs_on=("self-hosted", "macOS", "ARM64")))
    assert hosted.skipped.startswith("runs-on macOS: ")
