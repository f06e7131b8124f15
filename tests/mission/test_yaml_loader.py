from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import InvalidMission
from runner.mission.yaml_loader import ALIAS_BUDGET, MAX_BYTES, MAX_DEPTH, YamlDocument, load_yaml


def _load(tmp_path: Path, text: str | bytes, **kwargs: bool) -> YamlDocument:
    path = tmp_path / "m.yml"
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return load_yaml(path, display_path="m.yml", **kwargs)


def _problems(tmp_path: Path, text: str | bytes) -> list[str]:
    with pytest.raises(InvalidMission) as caught:
        _load(tmp_path, text)
    return [str(f) for f in caught.value.findings]


def test_values_follow_yaml_1_2_core_like_github(tmp_path: Path) -> None:
    doc = _load(
        tmp_path,
        "on: push\nyes: no\nn: 010\nh: 0x1F\nf: 1.5\nb: true\nB: False\nz: ~\ne:\n"
        "d: 2024-01-01\ns: '1'\ninf: .inf\n",
    )
    assert doc.value == {
        "on": "push",
        "yes": "no",
        "n": 10,
        "h": 31,
        "f": 1.5,
        "b": True,
        "B": False,
        "z": None,
        "e": None,
        "d": "2024-01-01",
        "s": "1",
        "inf": float("inf"),
    }
    assert doc.raw["n"] == "010"
    assert doc.raw["b"] == "true"


def test_positions_are_one_based_for_every_node(tmp_path: Path) -> None:
    doc = _load(
        tmp_path,
        "name: x\njobs:\n  test:\n    steps:\n      - run: echo hi\n        id: a\n      - uses: ./x\n",
    )
    assert doc.positions["name"] == (1, 7)  # a scalar: its value
    assert doc.positions["jobs"] == (2, 1)  # a mapping: its key
    assert doc.positions["jobs.test"] == (3, 3)
    assert doc.positions["jobs.test.steps[0]"] == (5, 9)
    assert doc.positions["jobs.test.steps[0].run"] == (5, 14)
    assert doc.key_positions["jobs.test.steps[0].id"] == (6, 9)
    assert doc.positions["jobs.test.steps[1].uses"] == (7, 15)
    assert doc.at("jobs.test.steps[1].uses.nothing") == (7, 15)


def test_locate_maps_offsets_in_plain_quoted_and_block_scalars(tmp_path: Path) -> None:
    doc = _load(
        tmp_path,
        'a: x ${{ p }}\nb: "y ${{ q }}"\nc: |\n  first\n    echo ${{ r }}\n',
    )
    assert doc.locate("a", doc.value["a"].index("${{")) == (1, 6)
    assert doc.locate("b", doc.value["b"].index("${{")) == (2, 7)
    assert doc.locate("c", doc.value["c"].index("${{")) == (5, 10)


def test_duplicate_keys_are_errors_at_the_second_key(tmp_path: Path) -> None:
    assert _problems(tmp_path, "jobs:\n  a: 1\n  b: 2\n  a: 3\n") == [
        'm.yml:4:3: jobs.a: duplicate key "a" (first at line 2, col 3) [yaml]'
    ]


def test_lenient_loading_returns_problems_with_the_document(tmp_path: Path) -> None:
    doc = _load(tmp_path, "a: 1\na: 2\nb: 3\n", strict=False)
    assert doc.value == {"a": 1, "b": 3}
    assert [str(f) for f in doc.findings] == [
        'm.yml:2:1: a: duplicate key "a" (first at line 1, col 1) [yaml]'
    ]


def test_keys_must_be_strings(tmp_path: Path) -> None:
    assert _problems(tmp_path, "env:\n  1: x\n  true: y\n  ? [a]\n  : z\n") == [
        'm.yml:2:3: env: key "1" is not a string; quote it if it is meant to be one [yaml]',
        'm.yml:3:3: env: key "true" is not a string; quote it if it is meant to be one [yaml]',
        "m.yml:4:5: env: a key must be a string, not a list [yaml]",
    ]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a: !!python/object/apply:os.system [ls]\n", "!!python/object/apply:os.system"),
        ("a: !custom 1\n", "!custom"),
        ("a: !!binary aGk=\n", "!!binary"),
        ("a: !!set {x}\n", "!!set"),
    ],
)
def test_tags_other_than_the_core_ones_are_refused(tmp_path: Path, text: str, shown: str) -> None:
    assert _problems(tmp_path, text) == [
        f"m.yml:1:4: a: tag {shown} is not allowed; only plain YAML values "
        "(strings, numbers, booleans, null, lists, mappings) [yaml]"
    ]


def test_explicit_core_tags_are_values(tmp_path: Path) -> None:
    assert _load(tmp_path, "a: !!str 3\nb: !!int '4'\n").value == {"a": "3", "b": 4}
    assert _problems(tmp_path, "b: !!int four\n") == [
        'm.yml:1:4: b: "four" is not a valid int [yaml]'
    ]


def test_an_alias_bomb_stops_at_the_budget(tmp_path: Path) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 8):
        prev = chr(ord("a") + level - 1)
        name = chr(ord("a") + level)
        lines.append(f"{name}: &{name} [{', '.join('*' + prev for _ in range(10))}]")
    problems = _problems(tmp_path, "\n".join(lines) + "\n")
    assert len(problems) == 1
    assert problems[0].endswith(
        f"aliases expand to more than {ALIAS_BUDGET} nodes (an alias bomb?); "
        "write the values out instead [yaml]"
    )


def test_small_aliases_are_expanded(tmp_path: Path) -> None:
    doc = _load(tmp_path, "base: &env {A: '1'}\njobs: {x: {env: *env}}\n")
    assert doc.value["jobs"]["x"]["env"] == {"A": "1"}


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    assert _problems(tmp_path, "a: &a [*a]\n") == [
        "m.yml:1:4: a[0]: recursive alias: a node that contains itself [yaml]"
    ]


def test_files_over_the_size_limit_are_refused_unread(tmp_path: Path) -> None:
    text = "a: " + "x" * MAX_BYTES + "\n"
    assert _problems(tmp_path, text) == [
        f"m.yml:0:0: the file is {MAX_BYTES + 4} bytes; the limit is 1048576 bytes (1 MiB) [yaml]"
    ]


def test_bytes_that_are_not_utf8_are_refused_with_their_place(tmp_path: Path) -> None:
    assert _problems(tmp_path, b"name: ok\nenv: {A: caf\xe9}\n") == [
        "m.yml:2:13: the file is not UTF-8 (byte 0xe9); save it as UTF-8 [yaml]"
    ]


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    assert _load(tmp_path, b"\xef\xbb\xbfname: x\n").value == {"name": "x"}


def test_malformed_yaml_reports_the_parser_position(tmp_path: Path) -> None:
    assert _problems(tmp_path, "jobs:\n  a: [1, 2\n  b: 3\n") == [
        "m.yml:3:4: malformed YAML: while parsing a flow sequence "
        "did not find expected ',' or ']' [yaml]"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "- a\n- b\n",
            "m.yml:1:1: the top level is a list; a mission is a mapping (name:, on:, jobs: ...) [yaml]",
        ),
        (
            "just text\n",
            "m.yml:1:1: the top level is a single value; a mission is a mapping (name:, on:, jobs: ...) [yaml]",
        ),
        ("", "m.yml:1:1: the file is empty; a mission is a mapping [yaml]"),
        ("# only a comment\n", "m.yml:1:1: the file is empty; a mission is a mapping [yaml]"),
        (
            "a: 1\n---\nb: 2\n",
            "m.yml:2:1: malformed YAML: expected a single document in the stream but found another document [yaml]",
        ),
    ],
)
def test_the_top_level_must_be_one_mapping(tmp_path: Path, text: str, message: str) -> None:
    assert _problems(tmp_path, text) == [message]


def test_nesting_is_bounded(tmp_path: Path) -> None:
    text = "a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    problems = _problems(tmp_path, text)
    assert len(problems) == 1
    assert problems[0].endswith(f"nesting deeper than {MAX_DEPTH} levels [yaml]")


def test_a_missing_file_is_one_finding(tmp_path: Path) -> None:
    with pytest.raises(InvalidMission) as caught:
        load_yaml(tmp_path / "nope.yml", display_path="nope.yml")
    assert [str(f) for f in caught.value.findings] == ["nope.yml:0:0: no such file [io]"]
