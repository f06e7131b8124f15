"""`jobs.<id>.services` as a mission holds them (runner.mission.services): the records,
Docker's health options, and every refusal at its file:line:col and key path."""

from __future__ import annotations

import textwrap

import pytest

from runner.errors import InvalidMission
from runner.findings import Finding, Severity
from runner.mission.durations import parse_go_duration
from runner.mission.loader import parse_mission
from runner.mission.model import Health, Service
from runner.mission.services import parse_options


def mission(services: str) -> str:
    return (
        "name: m\non: [push]\njobs:\n  t:\n    services:\n"
        + textwrap.indent(textwrap.dedent(services), "      ")
        + "    steps: [{run: echo}]\n"
    )


def findings(services: str) -> list[Finding]:
    try:
        return parse_mission(mission(services).encode(), "m.yml")[1]
    except InvalidMission as exc:
        return list(exc.findings)


def shown(services: str, severity: Severity = Severity.ERROR) -> list[str]:
    return [str(f) for f in findings(services) if f.severity is severity]


def test_a_service_becomes_a_frozen_record_with_its_health_check() -> None:
    text = mission(
        """\
        db:
          image: "postgres:${{ matrix.pg }}"
          env: {POSTGRES_PASSWORD: "${{ secrets.DB }}", PORT: 5432}
          ports: ["5432:5432"]
          command: postgres -c 'fsync=off'
          options: >-
            --health-cmd "pg_isready -U postgres" --health-interval=1m30s
            --health-timeout 500ms --health-retries 7 --health-start-period 2s
        cache:
          image: redis
          entrypoint: redis-server
          command: [--save, ""]
        """
    ).replace("  t:\n", "  t:\n    strategy: {matrix: {pg: ['16']}}\n")
    loaded, _ = parse_mission(text.encode(), "m.yml")
    assert loaded.jobs["t"].services == {
        "db": Service(
            name="db",
            image="postgres:${{ matrix.pg }}",
            env={"POSTGRES_PASSWORD": "${{ secrets.DB }}", "PORT": "5432"},
            command=("postgres", "-c", "fsync=off"),
            health=Health(
                cmd="pg_isready -U postgres",
                interval_s=90.0,
                timeout_s=0.5,
                retries=7,
                start_period_s=2.0,
            ),
        ),
        "cache": Service(
            name="cache", image="redis", command=("--save", ""), entrypoint="redis-server"
        ),
    }


def test_other_options_are_refused_each_at_its_own_position() -> None:
    text = """\
    db:
      image: postgres
      options: --health-cmd "pg_isready" --privileged -v /etc:/etc --network=host --user 0
    """
    errors = [f for f in findings(text) if f.severity is Severity.ERROR]
    flags = ["--privileged", "-v", "--network", "--user"]
    line = mission(text).splitlines()[7]
    assert [(f.line, f.col, f.keypath, f.rule) for f in errors] == [
        (8, line.index(flag) + 1, "jobs.t.services.db.options", "service") for flag in flags
    ]
    assert errors[0].message.startswith(
        "option '--privileged' is not allowed: runner decides a service's hardening"
    )
    assert "--health-cmd" in errors[0].message  # what is allowed instead


def test_volumes_names_and_images_are_errors_credentials_a_warning_ports_a_note() -> None:
    text = """\
    db.primary:
      image: postgres
    cache:
      env: {A: b}
    web:
      image: "Not An Image"
      volumes: ["/var/run/docker.sock:/var/run/docker.sock"]
      credentials: {username: u, password: "${{ secrets.REGISTRY }}"}
      ports: [8080]
    """
    assert shown(text) == [
        'm.yml:6:7: jobs.t.services.db.primary: service name "db.primary" is not valid: a '
        "service name is its host name on the job's network: 1 to 63 letters, digits, _ and - "
        "[service]",
        'm.yml:8:7: jobs.t.services.cache: service "cache" needs an image [service]',
        "m.yml:11:16: jobs.t.services.web.image: container 'Not An Image' is empty or holds "
        "whitespace or control characters [service]",
        "m.yml:12:9: jobs.t.services.web.volumes: a service mounts nothing of the host (as a "
        "step, it has only a read-only root and a private /tmp): drop `volumes:`; put what it "
        "needs into its image [service]",
    ]
    (warning,) = shown(text, Severity.WARNING)
    assert warning.startswith("m.yml:13:9: warning: jobs.t.services.web.credentials: runner logs")
    notes = shown(text, Severity.NOTE)
    assert notes[0].startswith("m.yml:5:5: note: jobs.t.services: services run as sidecars")
    assert notes[1].startswith(
        "m.yml:14:9: note: jobs.t.services.web.ports: ports are not published on the host: "
        "steps reach the service by its name on the job's network (e.g. http://web:PORT/)"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("--health-cmd", "option --health-cmd needs a value"),
        ("--health-cmd x --health-interval 10", "--health-interval '10' is not a duration"),
        ("--health-cmd x --health-retries 0", "--health-retries must be a whole number above 0"),
        ("--health-cmd x --health-timeout 0s", "--health-timeout must be at least 1ms"),
        ("--health-interval 1s", "health options without --health-cmd check nothing"),
        ('--health-cmd "unclosed', "options do not parse as a command line"),
    ],
)
def test_bad_health_options_say_what_is_wrong(options: str, message: str) -> None:
    _, problems = parse_options(options)
    assert [p.message for p in problems if p.message.startswith(message)], problems


def test_entrypoint_in_options_is_the_entrypoint_key() -> None:
    """A real workflow (facebook/zstd) passes its entrypoint this way; it validates."""
    loaded, _ = parse_mission(
        mission("docker:\n  image: img:1\n  options: --entrypoint /bin/bash\n").encode(), "m.yml"
    )
    assert loaded.jobs["t"].services["docker"].entrypoint == "/bin/bash"
    assert loaded.jobs["t"].services["docker"].health is None


def test_go_durations_as_docker_takes_them() -> None:
    assert [parse_go_duration(t) for t in ("10s", "1m30s", "500ms", "1.5h", "0")] == [
        10.0,
        90.0,
        0.5,
        5400.0,
        0.0,
    ]
    assert [parse_go_duration(t) for t in ("10", "", "s", "1x", "-1s", "1s2")] == [None] * 6


def test_a_job_has_at_most_sixteen_services() -> None:
    many = "".join(f"s{index}: {{image: base}}\n" for index in range(17))
    assert shown(many) == [
        "m.yml:5:5: jobs.t.services: the job has 17 services; a job has at most 16 [limit]"
    ]
    assert shown("".join(f"s{index}: {{image: base}}\n" for index in range(16))) == []
