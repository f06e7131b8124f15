from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.audit import canonical
from runner.audit.canonical import CanonicalError


def test_dumps_sorts_keys_compactly_and_writes_utf8() -> None:
    value = {"b": [1, True, None], "a": {"z": 'é\n"', "y": -3}}
    assert canonical.dumps(value) == '{"a":{"y":-3,"z":"é\\n\\""},"b":[1,true,null]}'.encode()


def test_control_characters_use_jcs_escapes() -> None:
    assert canonical.dumps("\x01\t\u2028") == b'"\\u0001\\t\xe2\x80\xa8"'


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": {"b": 1.5}}, "$.a.b: floats have no canonical JSON form"),
        ({"a": [0, 2.0]}, "$.a[1]: floats"),
        ({"n": 2**53}, "$.n: integer 9007199254740992 is outside"),
        ({"é": 1}, "is not ASCII"),
        ({1: 1}, "is not a string"),
        ({"b": b"x"}, "$.b: bytes is not storable"),
        ({"s": "\ud800"}, "$.s: string is not valid Unicode"),
    ],
)
def test_dumps_refuses_what_has_no_canonical_form(value: object, message: str) -> None:
    with pytest.raises(CanonicalError) as info:
        canonical.dumps(value)
    assert message in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a":1,"a":2}', "duplicate key 'a'"),
        (b'{"x":{"k":1,"k":1}}', "duplicate key 'k'"),
        (b'{"a":1.0}', "float 1.0"),
        (b'{"a":1e5}', "float 1e5"),
        (b'{"a":NaN}', "float NaN"),
        (b'{"a":"\xff"}', "not UTF-8"),
        (b'{"a":', "Expecting value"),
    ],
)
def test_loads_is_strict(data: bytes, message: str) -> None:
    with pytest.raises(CanonicalError) as info:
        canonical.loads(data)
    assert message in str(info.value)


def test_is_canonical_detects_other_spellings_of_the_same_value() -> None:
    assert canonical.is_canonical(b'{"a":1,"b":2}')
    assert not canonical.is_canonical(b'{"b":2,"a":1}')
    assert not canonical.is_canonical(b'{"a": 1,"b":2}')
    assert not canonical.is_canonical(b'{"a":"\\u0041"}')
    assert not canonical.is_canonical(b'{"a":1,"a":1}')


_scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text()
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(max_codepoint=127), max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(_values)
def test_round_trip_is_stable_and_matches_a_plain_encoder(value: object) -> None:
    data = canonical.dumps(value)
    assert canonical.loads(data) == value
    assert canonical.dumps(canonical.loads(data)) == data
    assert canonical.is_canonical(data)
    plain = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert data == plain.encode()


@pytest.mark.parametrize("data", [b'{"a":1} ', b'{"a":1}{"b":2}', b' {"a":1}'])
def test_loads_refuses_anything_around_the_value(data: bytes) -> None:
    with pytest.raises(CanonicalError):
        canonical.loads(data)
