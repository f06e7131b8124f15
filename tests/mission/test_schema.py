"""The one place runner reads Cerberus' private error list still works as runner needs."""

from __future__ import annotations

import cerberus
import cerberus.errors as cerrors

from runner.mission.schema import validation_errors


def test_validation_errors_are_cerberus_error_objects_with_paths_codes_and_children() -> None:
    validator = cerberus.Validator(
        {
            "name": {"type": "string", "required": True},
            "jobs": {
                "type": "dict",
                "valuesrules": {"type": "dict", "schema": {"n": {"type": "integer"}}},
            },
        }
    )
    assert not validator.validate({"jobs": {"a": {"n": "x"}}, "extra": 1})
    errors = validation_errors(validator)
    assert all(isinstance(e, cerrors.ValidationError) for e in errors)
    by_path = {tuple(e.document_path): e for e in errors}
    assert by_path[("name",)].code == cerrors.REQUIRED_FIELD.code
    assert by_path[("extra",)].code == cerrors.UNKNOWN_FIELD.code
    group = by_path[("jobs",)]
    assert group.is_group_error
    leaves = [
        c for e in group.child_errors for c in ([e] if not e.is_group_error else e.child_errors)
    ]
    assert any(tuple(e.document_path) == ("jobs", "a", "n") for e in leaves)
    assert validation_errors(cerberus.Validator({"x": {"type": "string"}})) == []
