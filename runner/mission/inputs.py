"""Typed mission inputs (`--input name=value`), checked against the mission's `inputs:`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.errors import InvalidInput
from runner.mission.model import Mission

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def resolve_inputs(mission: Mission, given: Mapping[str, str]) -> dict[str, Any]:
    """Every declared input with its typed value; unknown, missing or ill-typed is an error."""
    unknown = sorted(set(given) - set(mission.inputs))
    if unknown:
        declared = ", ".join(sorted(mission.inputs)) or "none"
        raise InvalidInput(
            f"{mission.path}: unknown input(s) {', '.join(unknown)} (declared: {declared})"
        )
    values: dict[str, Any] = {}
    for name, spec in mission.inputs.items():
        if name not in given:
            if spec.required and spec.default is None:
                raise InvalidInput(
                    f"{mission.path}: input {name!r} is required: pass --input {name}=VALUE"
                )
            values[name] = spec.default if spec.default is not None else ""
            continue
        raw = given[name]
        where = f"{mission.path}: input {name!r}"
        if spec.type == "number":
            try:
                number = float(raw)
            except ValueError:
                raise InvalidInput(f"{where} must be a number, not {raw!r}") from None
            values[name] = int(number) if number.is_integer() else number
        elif spec.type == "boolean":
            if raw.lower() not in _TRUE | _FALSE:
                raise InvalidInput(f"{where} must be true or false, not {raw!r}")
            values[name] = raw.lower() in _TRUE
        elif spec.type == "choice":
            if raw not in spec.options:
                raise InvalidInput(f"{where} must be one of {', '.join(spec.options)}, not {raw!r}")
            values[name] = raw
        else:
            values[name] = raw
    return values
