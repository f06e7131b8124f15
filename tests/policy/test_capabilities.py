"""Capability extraction: what each job instance asks the policy for."""

from __future__ import annotations

from typing import Any

import pytest

from runner.mission.model import (
    Artifact,
    Job,
    Matrix,
    Mission,
    Permissions,
    Retry,
    Step,
    Strategy,
)
from runner.mission.plan import JobInstance
from runner.policy.capabilities import (
    DYNAMIC_SECRET,
    Capability,
    is_image_reference,
    is_pinned,
    job_capabilities,
    mission_capabilities,
    resolve,
    secret_names,
)


def mission(*jobs: Job, **fields: Any) -> Mission:
    return Mission(path="m.yml", digest="0" * 64, name="m", jobs={j.id: j for j in jobs}, **fields)


def caps_of(the_job: Job, **fields: Any) -> list[Capability]:
    m = mission(the_job, **fields)
    return job_capabilities(m, JobInstance(job=the_job, key=the_job.id))


def pairs(caps: list[Capability]) -> list[tuple[str, str]]:
    return [(c.kind, c.value) for c in caps]


def test_a_plain_job_asks_for_the_base_image_and_its_shell() -> None:
    caps = caps_of(Job(id="a", steps=(Step(index=0, run="true"),)))
    assert caps == [
        Capability("image", "base", "jobs.a.container"),
        Capability("tool", "sh", "jobs.a.tools[0]"),
    ]


def test_every_kind_is_extracted_with_its_key_path() -> None:
    the_job = Job(
        id="pub",
        container="python",
        tools=("sh", "curl"),
        timeout_minutes=45,
        permissions=Permissions(network="egress", secrets=("TOKEN",), exec=True),
        steps=(
            Step(index=0, run="echo", timeout_minutes=5),
            Step(index=1, uses="./actions/lint"),
            Step(index=2, uses="docker://busybox@sha256:" + "0" * 64),
            Step(index=3, uses="acme/deploy@v2"),
        ),
    )
    caps = caps_of(the_job)
    assert [(c.kind, c.value, c.keypath) for c in caps] == [
        ("image", "python", "jobs.pub.container"),
        ("tool", "sh", "jobs.pub.tools[0]"),
        ("tool", "curl", "jobs.pub.tools[1]"),
        ("network", "egress", "jobs.pub.permissions.network"),
        ("secret", "TOKEN", "jobs.pub.permissions.secrets[0]"),
        ("exec", "workspace", "jobs.pub.permissions.exec"),
        ("resource", "timeout-minutes=45", "jobs.pub.timeout-minutes"),
        ("resource", "timeout-minutes=5", "jobs.pub.steps[0].timeout-minutes"),
        ("uses", "./actions/lint", "jobs.pub.steps[1].uses"),
        ("uses", "docker://busybox@sha256:" + "0" * 64, "jobs.pub.steps[2].uses"),
        ("uses", "acme/deploy@v2", "jobs.pub.steps[3].uses"),
    ]
    assert caps[6].minutes == 45.0


def test_tools_all_is_its_own_capability() -> None:
    assert pairs(caps_of(Job(id="a", tools="all"))) == [("image", "base"), ("tools-all", "all")]


def test_mission_permissions_are_inherited_unless_the_job_sets_its_own() -> None:
    perms = Permissions(network="egress", secrets=("A",), exec=True)
    inherit = caps_of(Job(id="a"), permissions=perms)
    assert [(c.kind, c.keypath) for c in inherit[2:]] == [
        ("network", "permissions.network"),
        ("secret", "permissions.secrets[0]"),
        ("exec", "permissions.exec"),
    ]
    own = caps_of(Job(id="a", permissions=Permissions()), permissions=perms)
    assert pairs(own) == [("image", "base"), ("tool", "sh")]


# ---------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    ("text", "bare", "names"),
    [
        ("${{ secrets.DEPLOY }}", False, ["DEPLOY"]),
        ("${{ secrets.deploy }}", False, ["DEPLOY"]),
        ("${{ SECRETS.Deploy }}", False, ["DEPLOY"]),
        ("${{ secrets['deploy'] }}", False, ["DEPLOY"]),
        ("a ${{ secrets.A }} b ${{ format('{0}', secrets.B) }}", False, ["A", "B"]),
        ("${{ toJSON(secrets) }}", False, [DYNAMIC_SECRET]),
        ("${{ secrets[matrix.name] }}", False, [DYNAMIC_SECRET]),
        ("${{ secrets.* }}", False, [DYNAMIC_SECRET]),
        ("${{ secrets.A ", False, [DYNAMIC_SECRET]),  # unterminated: fail closed
        ("${{ secrets.A && ( }}", False, [DYNAMIC_SECRET]),  # does not parse: fail closed
        ("secrets.A != ''", True, ["A"]),  # a bare `if:`
        ("secrets.A != ''", False, []),  # plain text in a script
        ("echo secrets are ${{ 'secrets.X' }}", False, []),  # a string literal is no read
        ("${{ github.secrets }}", False, []),
    ],
)
def test_secret_names(text: str, bare: bool, names: list[str]) -> None:
    assert secret_names(text, bare=bare) == names


def test_secrets_read_anywhere_in_the_job_are_requested() -> None:
    the_job = Job(
        id="a",
        if_="secrets.IN_IF != ''",
        env={"E": "${{ secrets.IN_JOB_ENV }}"},
        outputs={"o": "${{ secrets.IN_OUTPUTS }}"},
        steps=(
            Step(
                index=0,
                run="echo ${{ secrets.IN_RUN }}",
                env={"S": "${{ secrets.IN_STEP_ENV }}"},
                if_="${{ secrets.IN_STEP_IF }}",
                working_directory="${{ secrets.IN_WD }}",
            ),
            Step(index=1, uses="./actions/x", with_={"token": "${{ secrets.IN_WITH }}"}),
        ),
        strategy=Strategy(matrix=Matrix(axes={"x": ("${{ secrets.IN_MATRIX }}",)})),
    )
    caps = caps_of(the_job, env={"M": "${{ secrets.IN_MISSION_ENV }}"})
    secrets = {c.value: c.keypath for c in caps if c.kind == "secret"}
    assert secrets == {
        "IN_MISSION_ENV": "env.M",
        "IN_IF": "jobs.a.if",
        "IN_MATRIX": "jobs.a.strategy.matrix.axes.x[0]",
        "IN_JOB_ENV": "jobs.a.env.E",
        "IN_RUN": "jobs.a.steps[0].run",
        "IN_STEP_ENV": "jobs.a.steps[0].env.S",
        "IN_STEP_IF": "jobs.a.steps[0].if",
        "IN_WD": "jobs.a.steps[0].working-directory",
        "IN_WITH": "jobs.a.steps[1].with.token",
        "IN_OUTPUTS": "jobs.a.outputs.o",
    }


def test_a_secret_is_requested_once_permissions_first() -> None:
    the_job = Job(
        id="a",
        permissions=Permissions(secrets=("tok",)),
        steps=(Step(index=0, run="x", env={"T": "${{ secrets.TOK }}"}),),
    )
    secrets = [c for c in caps_of(the_job) if c.kind == "secret"]
    assert [(c.value, c.keypath) for c in secrets] == [("TOK", "jobs.a.permissions.secrets[0]")]


def test_dynamic_reads_are_refused_and_github_token_is_builtin() -> None:
    steps = (
        Step(
            index=0,
            run="x",
            env={"A": "${{ toJSON(secrets) }}", "T": "${{ secrets.github_token }}"},
        ),
    )
    caps = {c.value: c for c in caps_of(Job(id="a", steps=steps)) if c.kind == "secret"}
    assert "cannot be known before the run" in caps[DYNAMIC_SECRET].refused
    assert caps["GITHUB_TOKEN"].builtin.startswith("secrets.GITHUB_TOKEN means nothing here")
    assert not caps["GITHUB_TOKEN"].refused


# ---------------------------------------------------------------------- uses


@pytest.mark.parametrize(
    ("uses", "refused", "builtin"),
    [
        ("./actions/lint", False, False),
        ("./actions/../../../etc", True, False),
        ("./actions//lint", True, False),
        ("./..", True, False),
        ("docker://alpine:3", False, False),
        ("acme/deploy@v1", False, False),
        ("actions/checkout@v4", False, True),
        ("Actions/Checkout@main", False, True),
        ("actions/checkout-evil@v4", False, False),
        ("actions/checkout/sub@v4", False, False),
        ("actions/upload-artifact@v4", False, True),
        ("actions/download-artifact@v4.1.8", False, True),
        ("actions/upload-artifact/merge@v4", False, False),
        ("evil/upload-artifact@v4", False, False),
        ("${{ matrix.action }}", True, False),
    ],
)
def test_uses_kinds(uses: str, refused: bool, builtin: bool) -> None:
    cap = caps_of(Job(id="a", steps=(Step(index=0, uses=uses),)))[-1]
    assert (cap.kind, cap.value) == ("uses", uses)
    assert bool(cap.refused) is refused
    assert bool(cap.builtin) is builtin


def test_a_reusable_workflow_call_is_a_uses_request() -> None:
    caps = caps_of(Job(id="a", uses="acme/wf/.github/workflows/x.yml@v1", steps=()))
    assert ("uses", "acme/wf/.github/workflows/x.yml@v1") in pairs(caps)


# ---------------------------------------------------------------------- matrix


def test_matrix_values_resolve_per_instance() -> None:
    the_job = Job(
        id="t",
        container="${{ matrix.image }}",
        tools=("sh", "${{ matrix.tool }}"),
        timeout_minutes="${{ matrix.minutes }}",
        strategy=Strategy(
            matrix=Matrix(
                axes={"image": ("base", "python")},
                include=({"image": "python", "tool": "python3", "minutes": 20},),
            )
        ),
    )
    found = mission_capabilities(mission(the_job))
    assert [(inst.key, pairs(caps)) for inst, caps in found] == [
        (
            "t (base)",
            [("image", "base"), ("tool", "sh"), ("tool", "${{ matrix.tool }}"),
             ("resource", "timeout-minutes=${{ matrix.minutes }}")],
        ),
        (
            "t (python, python3, 20)",
            [("image", "python"), ("tool", "sh"), ("tool", "python3"),
             ("resource", "timeout-minutes=20")],
        ),
    ]  # fmt: skip
    base_caps = found[0][1]
    assert base_caps[2].refused == "this matrix instance has no value for `matrix.tool`"
    assert base_caps[3].refused == "this matrix instance has no value for `matrix.minutes`"
    assert not any(c.refused for c in found[1][1])


@pytest.mark.parametrize(
    ("text", "matrix", "dynamic", "value", "why"),
    [
        ("plain", {}, False, "plain", ""),
        ("${{ matrix.v }}", {"v": "x"}, False, "x", ""),
        ("${{ Matrix.V }}", {"v": "x"}, False, "x", ""),
        ("img:${{ matrix['v'] }}-slim", {"v": 3}, False, "img:3-slim", ""),
        ("${{ matrix.v }}", {"v": "x"}, True, "", "the matrix is computed at run time"),
        ("${{ inputs.v }}", {}, False, "", "cannot be known before the run: it reads `inputs`"),
        ("${{ matrix.w }}", {"v": "x"}, False, "", "this matrix instance has no value for"),
        ("${{ format('{0}', matrix.v) }}", {"v": "x"}, False, "", "only plain matrix values"),
        ("${{ matrix.v }}", {"v": " "}, False, "", "it resolves to an empty value"),
        ("${{ matrix.v }}", {"v": True}, False, "", "is not a string or number"),
        ("${{ matrix.v.w }}", {"v": "x"}, False, "", "only plain matrix values"),
        ("${{ matrix.v }}", {"v": "${{ secrets.S }}"}, False, "", "another expression"),
        ("${{ matrix.v ", {"v": "x"}, False, "", "does not parse"),
    ],
)
def test_resolve(text: str, matrix: dict[str, Any], dynamic: bool, value: str, why: str) -> None:
    got, reason = resolve(text, matrix, dynamic=dynamic)
    assert got == value
    assert why in reason
    assert bool(reason) is bool(why)


def test_timeouts_that_are_not_numbers_are_refused() -> None:
    the_job = Job(id="a", timeout_minutes="${{ inputs.t }}", steps=(Step(index=0, run="x"),))
    (cap,) = [c for c in caps_of(the_job) if c.kind == "resource"]
    assert cap.refused == "it cannot be known before the run: it reads `inputs`"
    assert cap.minutes is None


def test_records_without_strings_that_matter_add_nothing() -> None:
    the_job = Job(
        id="a",
        produces=(Artifact(name="junit", path="r.xml"),),
        steps=(Step(index=0, run="true", retry=Retry(max_attempts=3)),),
    )
    assert pairs(caps_of(the_job)) == [("image", "base"), ("tool", "sh")]


def test_image_reference_helpers() -> None:
    assert not is_image_reference("python")
    assert is_image_reference("python:3.12") and is_image_reference("ghcr.io/a/b")
    assert is_pinned("python@sha256:" + "a" * 64)
    assert not is_pinned("python@sha256:" + "a" * 63)
    assert not is_pinned("python:3.12")


def test_harden_runner_is_built_in_unless_it_would_narrow_granted_egress() -> None:
    def step(**with_: str) -> Step:
        return Step(index=0, uses="step-security/harden-runner@v2", with_=with_)

    audit = caps_of(Job(id="a", steps=(step(**{"egress-policy": "audit"}),)))[-1]
    block = caps_of(Job(id="a", steps=(step(**{"egress-policy": "block"}),)))[-1]
    assert audit.builtin and not audit.refused
    assert block.builtin and not block.refused  # no network at all: stricter than its list
    granted = caps_of(
        Job(
            id="a",
            steps=(step(**{"egress-policy": "block", "allowed-endpoints": "pypi.org:443"}),),
            permissions=Permissions(network="egress"),
        )
    )[-1]
    assert not granted.builtin
    assert granted.refused.startswith("harden-runner's `egress-policy: block` allows only its")
