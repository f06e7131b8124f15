"""Whatever bytes a mission file holds, `runner validate` answers 0 or 2, never a traceback."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml
from conftest import CORPUS, invoke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import InvalidInput
from runner.mission.loader import parse_mission

SOURCES = [
    p.read_bytes()
    for folder in ("github-workflows", "actionlint-invalid")
    for p in sorted((CORPUS / folder).glob("*.y*ml"))
]
KEYS = [
    "name",
    "on",
    "jobs",
    "steps",
    "run",
    "uses",
    "needs",
    "env",
    "with",
    "if",
    "id",
    "strategy",
    "matrix",
    "include",
    "exclude",
    "container",
    "image",
    "tools",
    "produces",
    "consumes",
    "retry",
    "delay",
    "max-attempts",
    "permissions",
    "secrets",
    "network",
    "verify",
    "check",
    "outputs",
    "timeout-minutes",
    "continue-on-error",
    "inputs",
    "type",
    "path",
    "services",
    "runs-on",
    "defaults",
    "shell",
    "a",
    "B",
    "",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["${{ matrix.x }}", "${{", "${{ steps.a.outputs.b }}", "1s", "all", "push"]),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=5),
    ),
    max_leaves=30,
)
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _validate(data: bytes) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.yml"
        path.write_bytes(data)
        result = invoke(Path(tmp) / "state", "validate", str(path))
    text = result.out + result.err
    assert "internal error" not in text, text
    assert result.code in (0, 2), (result.code, text)
    assert "Traceback" not in text
    return result.code, text


def _mutate(source: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    data = bytearray(source)
    for kind, position, chunk in edits:
        at = position % (len(data) + 1)
        if kind == 0:
            data[at:at] = chunk  # insert
        elif kind == 1:
            del data[at : at + len(chunk) + 1]  # delete
        elif kind == 2:
            data[at : at + len(chunk)] = chunk  # overwrite
        else:
            lines = bytes(data).split(b"\n")
            index = position % len(lines)
            lines.insert(index, lines[(index * 7 + 3) % len(lines)])  # duplicate a line
            data = bytearray(b"\n".join(lines))
    return bytes(data)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _validate(data)


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6))
def test_random_yaml_documents(document: dict[str, object]) -> None:
    data = yaml.safe_dump(document, allow_unicode=True).encode("utf-8")
    code, text = _validate(data)
    if "jobs" not in document:
        assert code == 2
        assert 'missing required key "jobs" [schema]' in text


@FUZZ
@given(
    st.sampled_from(range(len(SOURCES))),
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(0, 20_000),
            st.sampled_from(
                [
                    b":",
                    b"- ",
                    b"  ",
                    b"\n",
                    b"${{",
                    b"}}",
                    b"&a ",
                    b"*a",
                    b"!!",
                    b"'",
                    b'"',
                    b"\t",
                    b"[",
                    b"{",
                    b"needs: [x]\n",
                    b"\xff",
                    b"on: ",
                    b"jobs:\n",
                ]
            ),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_mutated_corpus_files(index: int, edits: list[tuple[int, int, bytes]]) -> None:
    _validate(_mutate(SOURCES[index], edits))


def test_every_corpus_file_loads_through_the_same_entry_point_unmutated() -> None:
    codes = [_validate(source)[0] for source in SOURCES]
    # contextual_matrix_values.yaml holds only what GitHub evaluates to empty: warnings
    # (tests/mission/test_corpus.py's WARNINGS)
    assert codes == [0] * 20 + [2, 0] + [2] * 12


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6))
def test_parse_mission_raises_only_invalid_mission(document: dict[str, object]) -> None:
    data = yaml.safe_dump({"name": "f", "jobs": {"a": document}}).encode("utf-8")
    try:
        mission, _ = parse_mission(data, "m.yml")
    except InvalidInput:
        return
    assert list(mission.jobs) == ["a"]
