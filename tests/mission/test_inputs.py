from __future__ import annotations

import pytest

from runner.errors import InvalidInput
from runner.mission.inputs import resolve_inputs
from runner.mission.model import InputSpec, Mission


def _mission() -> Mission:
    return Mission(
        path="m.yml",
        digest="0",
        name="m",
        inputs={
            "level": InputSpec("level", "string", default="fast"),
            "count": InputSpec("count", "number", required=True),
            "dry": InputSpec("dry", "boolean", default=False),
            "env": InputSpec("env", "choice", default="dev", options=("dev", "prod")),
        },
    )


def test_typed_values_and_defaults() -> None:
    assert resolve_inputs(_mission(), {"count": "3", "dry": "true", "env": "prod"}) == {
        "level": "fast",
        "count": 3,
        "dry": True,
        "env": "prod",
    }


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"count": "1", "nope": "x"}, "unknown input(s) nope"),
        ({}, "input 'count' is required: pass --input count=VALUE"),
        ({"count": "many"}, "input 'count' must be a number, not 'many'"),
        ({"count": "1", "dry": "maybe"}, "input 'dry' must be true or false"),
        ({"count": "1", "env": "qa"}, "input 'env' must be one of dev, prod"),
    ],
)
def test_bad_inputs(given: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_inputs(_mission(), given)
