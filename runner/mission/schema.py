"""The Cerberus schema of a mission, and its errors as `Finding`s with positions.

The schema ships as `schemas/mission.yml` (package `runner.schemas`, so it works from an
installed wheel). Unknown keys are errors. Each Cerberus error becomes one finding at the
node it concerns, with the key path, rule `schema` and one of these messages:

    unknown key "KEY" in WHERE; expected one of: A, B, C    (+ ` (did you mean "X"?)`)
    missing required key "KEY"
    must be TYPE, not WHAT                                   e.g. `must be a mapping, not a list`
    "VALUE" is not allowed; expected one of: A, B
    must not be empty
    must be at least N / must be at most N

An `anyof` (a key of several shapes) reports the errors of the shape whose type matched,
or `must be TYPE or TYPE, not WHAT` when none did.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Mapping
from importlib.resources import files
from typing import Any

import cerberus
import cerberus.errors as cerrors
import yaml
from cerberus.validator import Validator

from runner.findings import Finding
from runner.mission.yaml_loader import YamlDocument, join

RULE = "schema"

_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "float": "a number",
    "boolean": "a boolean",
    "dict": "a mapping",
    "list": "a list",
}

# where an unknown key was found, for messages: (parent key name) -> section
_SECTIONS = {
    "": "the mission",
    "jobs.*": "a job",
    "jobs.*.steps[]": "a step",
    "jobs.*.strategy": "strategy",
    "jobs.*.container": "container",
    "jobs.*.steps[].retry": "retry",
    "jobs.*.produces[]": "an artifact",
    "jobs.*.consumes[]": "a consumed artifact",
    "permissions": "permissions",
    "jobs.*.permissions": "permissions",
    "verify[]": "a verify check",
    "inputs.*": "an input",
    "defaults": "defaults",
    "defaults.run": "defaults.run",
    "jobs.*.defaults": "defaults",
    "jobs.*.defaults.run": "defaults.run",
}


class _MissionValidator(Validator):  # type: ignore[misc]
    types_mapping = Validator.types_mapping.copy()
    types_mapping["integer"] = cerberus.TypeDefinition("integer", (int,), (bool,))


@functools.cache
def _document() -> dict[str, Any]:
    text = files("runner.schemas").joinpath("mission.yml").read_text(encoding="utf-8")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


@functools.cache
def _validator() -> Validator:
    document = _document()
    return _MissionValidator(_fields(document["mission"]), allow_unknown=False)


def _is_rules(value: Any) -> bool:
    """An inline rules set (`{type: string}`) rather than a mapping of field names."""
    kind = value.get("type") if isinstance(value, Mapping) else None
    return isinstance(kind, str | list) or (isinstance(value, Mapping) and "anyof" in value)


def _fields(fields: Any) -> dict[str, Any]:
    """A mapping schema with every named reference replaced by its definition."""
    if isinstance(fields, str):
        fields = _document()["schemas"][fields]
    return {name: _rules(rules) for name, rules in fields.items()}


def _rules(rules: Any) -> dict[str, Any]:
    """A rules set with every named reference replaced by its definition."""
    if isinstance(rules, str):
        rules = _document()["rules"][rules]
    out = dict(rules)
    for key in ("valuesrules", "keysrules"):
        if key in out:
            out[key] = _rules(out[key])
    if isinstance(out.get("allow_unknown"), str | dict):
        out["allow_unknown"] = _rules(out["allow_unknown"])
    if "anyof" in out:
        out["anyof"] = [_rules(r) for r in out["anyof"]]
    if "schema" in out:
        sub = out["schema"]
        named = isinstance(sub, str) and sub in _document()["schemas"]
        if named or (isinstance(sub, Mapping) and not _is_rules(sub)):
            out["schema"] = _fields(sub)
        else:
            out["schema"] = _rules(sub)
    return out


@functools.cache
def _job_validator() -> Validator:
    job = _document()["mission"]["jobs"]["valuesrules"]
    return _MissionValidator({"job": _rules(job)}, allow_unknown=False)


# Keys whose string values the schema constrains (`allowed`); every other string is only
# type-checked, so the per-job cache may replace it with a placeholder.
_ENUM_KEYS = frozenset({"network", "type", "backoff", "on"}) | frozenset(
    _document()["schemas"]["permissions"]
)
_JOB_CACHE: dict[Any, list[cerrors.ValidationError]] = {}
_JOB_CACHE_SIZE = 4096


def _skeleton(value: Any, key: str = "") -> Any:
    """A hashable copy of value that keeps what the schema judges (keys, types, numbers,
    enumerated strings) and replaces free text by a placeholder: jobs that differ only
    in their text share one validation."""
    if isinstance(value, dict):
        return tuple((k, _skeleton(v, k)) for k, v in value.items())
    if isinstance(value, list):
        return [_skeleton(v, key) for v in value]
    if isinstance(value, str) and key not in _ENUM_KEYS:
        return "s" if value else ""
    return value


def _thaw(skeleton: Any) -> Any:
    if isinstance(skeleton, tuple):
        return {k: _thaw(v) for k, v in skeleton}
    if isinstance(skeleton, list):
        return [_thaw(v) for v in skeleton]
    return skeleton


def _freeze(skeleton: Any) -> Any:
    if isinstance(skeleton, tuple):
        return tuple((k, _freeze(v)) for k, v in skeleton)
    if isinstance(skeleton, list):
        return ("[]", *(_freeze(v) for v in skeleton))
    return (type(skeleton).__name__, skeleton)


def validation_errors(validator: Validator) -> list[cerrors.ValidationError]:
    """The errors of `validator`'s last validation as `ValidationError` objects, each with
    its `document_path`, `code` and `child_errors`.

    Cerberus' public `errors` is a formatted dict without positions or codes; the objects
    live in the private `_errors`. This is the one place runner reads it (the policy
    loader too), and tests/mission/test_schema.py fails if Cerberus changes it."""
    return list(validator._errors)


def _job_errors(job: dict[str, Any]) -> list[cerrors.ValidationError]:
    skeleton = _skeleton(job)
    key = _freeze(skeleton)
    cached = _JOB_CACHE.get(key)
    if cached is None:
        validator = _job_validator()
        cached = (
            []
            if validator.validate({"job": _thaw(skeleton)}, normalize=False)
            else validation_errors(validator)
        )
        if len(_JOB_CACHE) >= _JOB_CACHE_SIZE:
            _JOB_CACHE.clear()
        _JOB_CACHE[key] = cached
    return cached


def validate(doc: YamlDocument) -> list[Finding]:
    """Every schema problem of the document, as findings (empty when it conforms).

    Jobs are validated one by one (through `_job_errors`' cache), the rest of the
    document with each job replaced by an empty mapping.
    """
    top = doc.value
    jobs = top.get("jobs")
    out: list[Finding] = []
    if isinstance(jobs, dict):
        # the jobs were judged above: leave the non-mappings (type errors) and one stand-in
        others = {k: v for k, v in jobs.items() if not isinstance(v, dict)}
        top = {**top, "jobs": others or ({"job": {}} if jobs else {})}
        for job_id, job in jobs.items():
            if isinstance(job, dict):
                for error in _job_errors(job):
                    _walk(error, doc, out, prefix=("jobs", job_id))
    validator = _validator()
    if not validator.validate(top, normalize=False):
        root_keys = list(_document()["mission"])
        for error in validation_errors(validator):
            unknown = error.code == cerrors.UNKNOWN_FIELD.code
            _walk(error, doc, out, root_keys if unknown else ())
    return out


def _keypath(path: Iterable[Any]) -> str:
    keypath = ""
    for part in path:
        keypath = join(keypath, part if isinstance(part, int) else str(part))
    return keypath


def _pattern(keypath: str) -> str:
    """`jobs.test.steps[0].retry` -> `jobs.*.steps[].retry` (for section names)."""
    parts: list[str] = []
    for token in keypath.replace("[", ".[").split("."):
        if not token:
            continue
        if token.startswith("["):
            parts[-1] += "[]"
        elif parts in (["jobs"], ["inputs"]):
            parts.append("*")
        else:
            parts.append(token)
    return ".".join(parts)


def _what(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "empty (null)"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _types(constraint: Any) -> list[str]:
    names = [constraint] if isinstance(constraint, str) else list(constraint)
    words: list[str] = []
    for name in names:
        word = _TYPE_WORDS.get(name, name)
        if word not in words:
            words.append(word)
    return words


def _or(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _walk(
    error: cerrors.ValidationError,
    doc: YamlDocument,
    out: list[Finding],
    allowed_keys: Iterable[str] = (),
    prefix: tuple[str, ...] = (),
) -> None:
    """Findings of one Cerberus error; `prefix` replaces the first element of its
    document path (the per-job validation's `job`)."""
    if error.is_logic_error:
        _logic(error, doc, out, prefix)
        return
    if error.is_group_error:
        keys: Iterable[str] = ()
        if error.rule == "schema":
            sub = error.constraint
            if isinstance(sub, Mapping):
                keys = list(sub)
        for child in error.child_errors or ():
            unknown = child.code == cerrors.UNKNOWN_FIELD.code
            _walk(child, doc, out, keys if unknown else (), prefix)
        return
    _leaf(error, _path(error, prefix), doc, out, allowed_keys)


def _path(error: cerrors.ValidationError, prefix: tuple[str, ...]) -> tuple[Any, ...]:
    path = tuple(error.document_path)
    return prefix + path[1:] if prefix else path


def _logic(
    error: cerrors.ValidationError,
    doc: YamlDocument,
    out: list[Finding],
    prefix: tuple[str, ...],
) -> None:
    keypath = _keypath(_path(error, prefix))
    matched: list[list[cerrors.ValidationError]] = []
    types: list[str] = []
    for index, definition in enumerate(error.constraint):
        types.extend(_types(definition.get("type", ())))
        errors = error.definitions_errors.get(index, [])
        if not any(
            e.rule == "type" and tuple(e.document_path) == tuple(error.document_path)
            for e in errors
        ):
            matched.append(errors)
    if matched:
        for errors in matched[:1]:
            for child in errors:
                _walk(child, doc, out, prefix=prefix)
        return
    line, col = doc.at(keypath)
    out.append(
        Finding(
            doc.path,
            line,
            col,
            f"must be {_or(_types(types))}, not {_what(error.value)}",
            RULE,
            keypath,
        )
    )


def _leaf(
    error: cerrors.ValidationError,
    path: tuple[Any, ...],
    doc: YamlDocument,
    out: list[Finding],
    allowed_keys: Iterable[str],
) -> None:
    code = error.code
    keypath = _keypath(path)
    line, col = doc.at(keypath)
    key = str(path[-1]) if path else ""
    if code == cerrors.UNKNOWN_FIELD.code:
        line, col = doc.key_at(keypath)
        parent = keypath[: -len(key) - 1] if keypath.endswith("." + key) else ""
        section = _SECTIONS.get(_pattern(parent), f'"{parent}"' if parent else "the mission")
        expected = sorted(allowed_keys)
        message = f'unknown key "{key}" in {section}'
        if expected:
            message += f"; expected one of: {', '.join(expected)}"
            close = difflib.get_close_matches(key, expected, n=1) or [
                k for k in expected if k.lower() == key.lower()
            ]
            if close:
                message += f' (did you mean "{close[0]}"?)'
    elif code == cerrors.REQUIRED_FIELD.code:
        parent = keypath[: -len(key) - 1] if keypath.endswith("." + key) else ""
        line, col = doc.key_at(parent) if parent else (1, 1)
        keypath = parent
        message = f'missing required key "{key}"'
    elif code == cerrors.BAD_TYPE.code:
        message = f"must be {_or(_types(error.constraint))}, not {_what(error.value)}"
    elif code in (cerrors.UNALLOWED_VALUE.code, cerrors.UNALLOWED_VALUES.code):
        allowed = ", ".join(str(a) for a in error.constraint)
        bad = [error.value] if code == cerrors.UNALLOWED_VALUE.code else list(error.info[0])
        shown = ", ".join(f'"{b}"' for b in bad)
        message = (
            f"{shown} {'is' if len(bad) == 1 else 'are'} not allowed; expected one of: {allowed}"
        )
    elif code == cerrors.EMPTY_NOT_ALLOWED.code:
        message = "must not be empty"
    elif code == cerrors.MIN_VALUE.code:
        message = f"must be at least {error.constraint}"
    elif code == cerrors.MAX_VALUE.code:
        message = f"must be at most {error.constraint}"
    elif code == cerrors.NOT_NULLABLE.code:
        message = "must not be empty (null)"
    else:  # pragma: no cover - rules the schema does not use
        message = f"does not satisfy rule {error.rule} ({error.constraint})"
    out.append(Finding(doc.path, line, col, message, RULE, keypath))
