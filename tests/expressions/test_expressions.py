"""runner.expressions: GitHub's `${{ }}` grammar, coercion, functions, checking."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import InvalidInput
from runner.expressions import (
    FUNCTIONS,
    STATUS_FUNCTIONS,
    ExpressionError,
    Problem,
    Scope,
    check,
    evaluate,
    evaluate_condition,
    evaluate_node,
    find_expressions,
    has_status_function,
    interpolate,
    parse,
    referenced_members,
    to_source,
    to_string,
    truthy,
)
from runner.expressions import parser as P
from runner.findings import Severity

NAN = math.nan


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN and 1 == 1.0 but True != 1."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def ev(source: str, **contexts: Any) -> Any:
    return evaluate(source, contexts)


# ---------------------------------------------------------------------------- literals


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("null", None),
        ("true", True),
        ("false", False),
        ("1", 1),
        ("-1.5", -1.5),
        ("+5", 5),
        (".5", 0.5),
        ("1e3", 1000),
        ("2.5E-1", 0.25),
        ("0xff", 255),
        ("0xFF", 255),
        ("0xffffffff", -1),  # GitHub reads hex as a 32-bit signed integer
        ("0o17", 15),
        ("NaN", NAN),
        ("Infinity", math.inf),
        ("-Infinity", -math.inf),
        ("'it''s'", "it's"),
        ("''", ""),
        ("'  spaced  '", "  spaced  "),
        ("'}}'", "}}"),
    ],
)
def test_literals(source: str, expected: Any) -> None:
    assert same(ev(source), expected)


def test_integral_literals_are_ints_so_they_print_without_point() -> None:
    assert isinstance(ev("1.0"), int)
    assert to_string(ev("1.0")) == "1"
    assert to_string(ev("1e20")) == "1E+20"


# ---------------------------------------------------------------------------- operators


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 == 1 && 2 == 2", True),
        ("!true == false", True),  # ! binds tighter than ==
        ("!(1 == 2)", True),
        ("true || false && false", True),  # && binds tighter than ||
        ("(true || false) && false", False),
        ("1 < 2 == true", True),  # relational binds tighter than equality
        ("2 > 1 == 1 < 2", True),
        ("false && 1 || 'x'", "x"),
        ("0 || null || ''", ""),  # || returns the last operand when all are falsy
        ("'a' && 'b'", "b"),  # && returns the last operand when all are truthy
        ("null && 'b'", None),
        ("'' || 'default'", "default"),
        ("1 && 0 && 2", 0),
        ("!!'x'", True),
        ("!''", True),
        ("! 0", True),
    ],
)
def test_precedence_and_logical_values(source: str, expected: Any) -> None:
    assert same(ev(source), expected)


def test_and_or_short_circuit_do_not_evaluate_the_rest() -> None:
    # `nope` is an unknown context: evaluating it would raise
    assert ev("false && nope.x") is False
    assert ev("true || nope") is True
    assert ev("'x' || format('{9}')") == "x"
    with pytest.raises(ExpressionError, match="unknown context 'nope'"):
        ev("true && nope")


# GitHub's documented coercion: null -> 0, bool -> 0/1, string -> number (NaN when not
# numeric, '' -> 0), arrays/objects only equal to themselves; strings ignore case.
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("null == 0", True),
        ("null == false", True),
        ("null == ''", True),
        ("null == null", True),
        ("false == ''", True),
        ("false == 0", True),
        ("true == 1", True),
        ("true == 2", False),
        ("true == '1'", True),
        ("'true' == true", False),
        ("'1.0' == 1", True),
        ("' 2 ' == 2", True),
        ("'0x10' == 16", True),
        ("'' == 0", True),
        ("'abc' == 0", False),
        ("'abc' == 'ABC'", True),
        ("'abc' != 'ABC'", False),
        ("NaN == NaN", False),
        ("NaN != NaN", True),
        ("null != 0", False),
        ("fromJSON('[]') == fromJSON('[]')", False),
        ("arr == arr", True),
        ("obj == obj", True),
        ("arr == 'Array'", False),
        ("obj == null", False),
        ("arr == 0", False),
        ("1 < 2", True),
        ("'a' < 'B'", True),
        ("'b' < 'A'", False),
        ("'10' < 9", False),  # number vs string: numeric
        ("'10' < '9'", True),  # string vs string: text order
        ("null < 1", True),
        ("true > false", True),
        ("false < true", True),
        ("true < true", False),
        ("NaN < 1", False),
        ("NaN >= NaN", False),
        ("1 <= 1", True),
        ("'A' <= 'a'", True),
        ("'A' >= 'a'", True),
        ("2 >= 3", False),
        ("fromJSON('[]') < 1", False),
        ("'abc' > 1", False),
        ("'abc' < 1", False),
        ("Infinity > 1e308", True),
    ],
)
def test_loose_comparison(source: str, expected: bool) -> None:
    assert ev(source, arr=[1], obj={"a": 1}) is expected


# ---------------------------------------------------------------------------- access

CTX: dict[str, Any] = {
    "github": {
        "Ref": "refs/heads/main",
        "event": {"pull_request": {"labels": [{"name": "bug"}, {"name": "docs"}]}},
    },
    "matrix": {"os": "linux"},
    "steps": {"my-step": {"outputs": {"x": "42"}}},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("github.ref", "refs/heads/main"),  # keys are case-insensitive
        ("GITHUB.REF", "refs/heads/main"),  # so are context names
        ("github['ref']", "refs/heads/main"),
        ("(github).ref", "refs/heads/main"),
        ("github.event.pull_request.labels[1].name", "docs"),
        ("github.event.pull_request.labels['1'].name", "docs"),
        ("github.event.pull_request.labels[1.7].name", "docs"),
        ("github.event.pull_request.labels[-1]", None),
        ("github.event.pull_request.labels[5]", None),
        ("github.event.pull_request.labels.*.name", ["bug", "docs"]),
        ("github.event.pull_request.labels[*].name", ["bug", "docs"]),
        ("github.event.*.labels.*.name", ["bug", "docs"]),
        ("github.event.pull_request.labels.*.nope", []),
        ("github.nope", None),
        ("github.nope.deeper[0]", None),
        ("matrix.*", ["linux"]),
        ("matrix.os.*", []),
        ("matrix.os.length", None),
        ("steps.my-step.outputs.x", "42"),
        ('fromJSON(\'{"a": {"B": 2}}\').A.b', 2),
        ("fromJSON('[10, 20]')[1]", 20),
        ("fromJSON('[10, 20]')[true]", 20),
        ("fromJSON('[10, 20]')[null]", 10),
        ('fromJSON(\'{"1": "one"}\')[1]', "one"),
        ("github[fromJSON('[]')]", None),
        ("github.event.pull_request.labels[0]['NAME']", "bug"),
    ],
)
def test_property_index_and_filter(source: str, expected: Any) -> None:
    assert evaluate(source, CTX) == expected


def test_filter_result_is_a_plain_list() -> None:
    value = evaluate("github.event.pull_request.labels.*.name", CTX)
    assert type(value) is list


def test_unknown_context_at_evaluation_names_it_with_offset() -> None:
    with pytest.raises(ExpressionError) as err:
        evaluate("github.ref == secrets.X", CTX)
    assert err.value.message == "unknown context 'secrets'"
    assert err.value.offset == 14


# ---------------------------------------------------------------------------- functions


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("contains('Hello world', 'WORLD')", True),
        ("contains('abc', 'd')", False),
        ("contains(123, 2)", True),
        ("contains(null, '')", True),
        ("contains(fromJSON('[1, 2]'), '2')", True),  # array items: loose equality
        ("contains(fromJSON('[\"a\"]'), 'A')", True),
        ("contains(fromJSON('[\"ab\"]'), 'a')", False),  # no substring match in arrays
        ("contains(fromJSON('{\"a\": 1}'), 'a')", False),
        ("contains('abc', fromJSON('[]'))", False),
        ("CONTAINS('abc', 'B')", True),  # function names are case-insensitive
        ("startsWith('Hello', 'he')", True),
        ("startsWith('Hello', 'lo')", False),
        ("startswith(12, 1)", True),
        ("startsWith(fromJSON('[]'), '')", False),
        ("endsWith('Hello', 'LO')", True),
        ("endsWith('Hello', 'he')", False),
        ("endsWith(true, 'UE')", True),
        ("format('{0} {1}', 'a', 'b')", "a b"),
        ("format('{1}{0}', 'a', 'b')", "ba"),
        ("format('{0}{0}', true)", "truetrue"),
        ("format('{{0}}', 1)", "{0}"),
        ("format('}}{{')", "}{"),
        ("format('x')", "x"),
        ("format('{0}|{1}|{2}', null, 1.5, 3)", "|1.5|3"),
        ("format('{0}', fromJSON('[]'))", "Array"),
        ("join(fromJSON('[1, \"b\", null, true]'))", "1,b,,true"),
        ("join(fromJSON('[1, 2]'), ' - ')", "1 - 2"),
        ("join(fromJSON('[[1], {}]'))", "Array,Object"),
        ("join(fromJSON('[]'), ',')", ""),
        ("join('abc')", "abc"),
        ("join(fromJSON('{}'))", ""),
        ("join(fromJSON('[1, 2]'), fromJSON('[]'))", "1,2"),
        ("toJSON('x')", '"x"'),
        ("toJSON(null)", "null"),
        ("toJSON(1.5)", "1.5"),
        ("toJSON(2.0)", "2"),
        ("toJSON(fromJSON('[]'))", "[]"),
        ("toJSON(fromJSON('{}'))", "{}"),
        ("fromJSON('null')", None),
        ("fromJSON('true')", True),
        ("fromJSON(' 12 ')", 12),
        ("fromJSON('\"s\"')", "s"),
    ],
)
def test_functions(source: str, expected: Any) -> None:
    assert same(ev(source), expected)


def test_tojson_is_pretty_with_two_spaces() -> None:
    value = ev('toJSON(fromJSON(\'{"a": [1, {"b": null}], "c": {}, "d": "é"}\'))')
    assert (
        value
        == '{\n  "a": [\n    1,\n    {\n      "b": null\n    }\n  ],\n  "c": {},\n  "d": "é"\n}'
    )


def test_tojson_of_a_context_value_and_of_tuples() -> None:
    assert evaluate("toJSON(matrix)", {"matrix": {"v": (1, "x")}}) == (
        '{\n  "v": [\n    1,\n    "x"\n  ]\n}'
    )


@pytest.mark.parametrize(
    ("source", "message", "offset"),
    [
        ("contains('a')", "contains() takes 2 arguments, got 1", 0),
        ("x == startsWith('a', 'b', 'c')", "startsWith() takes 2 arguments, got 3", 5),
        ("format()", "format() takes at least 1 argument, got 0", 0),
        ("join(1, 2, 3)", "join() takes 1 to 2 arguments, got 3", 0),
        ("toJSON()", "toJSON() takes 1 argument, got 0", 0),
        ("fromJson('1', '2')", "fromJSON() takes 1 argument, got 2", 0),
        ("success(1)", "success() takes 0 arguments, got 1", 0),
        ("hashFiles()", "hashFiles() takes at least 1 argument, got 0", 0),
        ("1 && nope()", "function 'nope()' is unknown", 5),
        ("always()", "function 'always()' is not available here", 0),
        ("  format('{1}', 'a')", "uses {1} but only 1 argument(s) follow it", 2),
        ("format('{')", "invalid format string '{'", 0),
        ("format('}')", "invalid format string '}'", 0),
        ("format('{a}')", "invalid format string '{a}'", 0),
        ("format('{0:x}', 1)", "invalid format string '{0:x}'", 0),
        ("format('{0 }', 1)", "invalid format string", 0),
        ("format('{256}', 1)", "invalid format string", 0),
        ("fromJSON('not json')", "fromJSON(): not valid JSON: 'not json'", 0),
        ("fromJSON('')", "fromJSON(): not valid JSON", 0),
    ],
)
def test_function_errors(source: str, message: str, offset: int) -> None:
    with pytest.raises(ExpressionError) as err:
        evaluate(source, {"x": 1})
    assert message in err.value.message
    assert err.value.offset == offset


def test_caller_supplies_status_functions_and_hashfiles() -> None:
    calls: list[tuple[Any, ...]] = []

    def hash_files(*patterns: Any) -> str:
        calls.append(patterns)
        return "h"

    functions: dict[str, Callable[..., Any]] = {
        "success": lambda: False,
        "Always": lambda: True,
        "hashFiles": hash_files,
    }
    assert evaluate("SUCCESS() || always()", {}, functions) is True
    assert evaluate("success()", {}, functions) is False
    assert evaluate("hashfiles('a/**', 'b')", {}, functions) == "h"
    assert calls == [("a/**", "b")]


def test_expression_error_is_invalid_input_exit_2() -> None:
    assert issubclass(ExpressionError, InvalidInput)
    err = ExpressionError("bad", 3)
    assert (err.exit_code, err.message, err.offset) == (2, "bad", 3)


# ---------------------------------------------------------------------------- coercion


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        (1, "1"),
        (1.0, "1"),
        (-3.0, "-3"),
        (1.5, "1.5"),
        (0.1 + 0.2, "0.3"),  # 15 significant digits, as GitHub
        (1e20, "1E+20"),
        (1e-7, "1E-07"),
        (123456789012345678, "1.23456789012346E+17"),
        (10**400, "Infinity"),
        (NAN, "NaN"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        ("x", "x"),
        ([], "Array"),
        ((1,), "Array"),
        ({}, "Object"),
    ],
)
def test_to_string(value: Any, text: str) -> None:
    assert to_string(value) == text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        (False, False),
        (0, False),
        (-0.0, False),
        (NAN, False),
        ("", False),
        (True, True),
        (1, True),
        (-1, True),
        ("0", True),
        ("false", True),
        ([], True),
        ({}, True),
    ],
)
def test_truthy(value: Any, expected: bool) -> None:
    assert truthy(value) is expected


# ---------------------------------------------------------------------------- syntax


@pytest.mark.parametrize(
    ("source", "message", "offset"),
    [
        ("", "empty expression", 0),
        ("   ", "empty expression", 0),
        ("1 ==", "unexpected end of expression: expected a value", 4),
        ("(1", "expected ')', found end of expression", 2),
        ("a.b)", "unexpected ')' after a complete expression", 3),
        ("'abc", "unterminated string: a ' is not closed", 0),
        ("x == 'it''s", "unterminated string: a ' is not closed", 5),
        ("a = b", "unexpected '=': operators are == != <= >= && || < > !", 2),
        ("1 & 2", "unexpected '&': operators are == != <= >= && || < > !", 2),
        ("1.2.3", "unexpected '1.2.3': not a number", 0),
        ("a == -b", "unexpected '-b': not a number", 5),
        ("a.5", "expected a property name or '*' after '.', found '5'", 2),
        ("a.", "expected a property name or '*' after '.', found end of expression", 2),
        ("'a'.b", "unexpected '.' after a complete expression", 3),
        ("'a'[0]", "unexpected '[' after a complete expression", 3),
        ("true false", "unexpected 'false' after a complete expression", 5),
        ("foo(", "unexpected end of expression: expected a value", 4),
        ("foo(1,)", "unexpected ')': expected a value", 6),
        ("foo(1 2)", "expected ',' or ')', found '2'", 6),
        ("a[1", "expected ']', found end of expression", 3),
        ("a[]", "unexpected ']': expected a value", 2),
        ("a b", "unexpected 'b' after a complete expression", 2),
        ("@", "unexpected '@'", 0),
        ("a$b", "unexpected 'a$b'", 0),
        ("a.*b", "unexpected 'b' after a complete expression", 3),
        ("*", "unexpected '*': expected a value", 0),
        ("!", "unexpected end of expression: expected a value", 1),
        ("==", "unexpected '==': expected a value", 0),
    ],
)
def test_syntax_errors(source: str, message: str, offset: int) -> None:
    with pytest.raises(ExpressionError) as err:
        parse(source)
    assert (err.value.message, err.value.offset) == (message, offset)


def test_nesting_limit_is_githubs_50_levels() -> None:
    assert ev("(" * 50 + "1" + ")" * 50) == 1
    with pytest.raises(ExpressionError) as err:
        parse("(" * 51 + "1" + ")" * 51)
    assert err.value.message == "expression nested too deeply (more than 50 levels)"
    assert err.value.offset == 50
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse("!" * 60 + "true")
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse(" == ".join(["1"] * 60))


def test_long_flat_chains_are_not_nesting() -> None:
    assert ev(" || ".join(["false"] * 500 + ["'last'"])) == "last"
    assert evaluate("a" + ".b" * 200, {"a": {}}) is None


def test_names_may_hold_hyphens_and_keywords_after_a_dot() -> None:
    assert evaluate("x.true.null", {"x": {"true": {"null": 5}}}) == 5
    assert isinstance(parse("steps.build-1.outputs"), P.Access)
    # keywords are case-sensitive: `True` is a context name, not a literal
    assert isinstance(parse("True"), P.Context)


def test_parse_is_cached() -> None:
    assert parse("github.ref == 'x'") is parse("github.ref == 'x'")


# ---------------------------------------------------------------------------- finding


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no expressions", []),
        ("${{ a }}", [(0, " a ")]),
        ("x ${{ 'a}}b' }} y ${{b}}", [(2, " 'a}}b' "), (18, "b")]),
        ("${{ 'it''s }}' }}", [(0, " 'it''s }}' ")]),
        ("$${{ a }}", [(1, " a ")]),
        ("${ { a }}", []),
        ("${{ a }}}}", [(0, " a ")]),
        ("${{ format('{0}}}', 1) }}", [(0, " format('{0}}}', 1) ")]),
        ("a: ${{ x }}\nb: ${{ y }}", [(3, " x "), (15, " y ")]),
    ],
)
def test_find_expressions(text: str, expected: list[tuple[int, str]]) -> None:
    assert find_expressions(text) == expected


@pytest.mark.parametrize(
    ("text", "offset", "why"),
    [
        ("${{ a }} ${{ b", 9, ""),
        ("abc ${{", 4, ""),
        ("${{ 'abc }}", 0, " (the string started at 4 is not closed)"),
        ("${{ 'a' }} ${{ 'it''s }}", 11, " (the string started at 15 is not closed)"),
    ],
)
def test_find_expressions_unterminated(text: str, offset: int, why: str) -> None:
    with pytest.raises(ExpressionError) as err:
        find_expressions(text)
    assert err.value.message == "unterminated expression: '${{' has no closing '}}'" + why
    assert err.value.offset == offset


# ---------------------------------------------------------------------------- checking

SCOPE = Scope(
    contexts=frozenset({"github", "steps", "needs", "matrix", "inputs", "env"}),
    functions=frozenset(FUNCTIONS - STATUS_FUNCTIONS),
    step_ids=frozenset({"build", "My-Test"}),
    needs=frozenset({"lint"}),
    matrix_keys=frozenset({"os"}),
    inputs=frozenset({"level"}),
)


def err(message: str, offset: int) -> Problem:
    return Problem(message, "expression", offset, Severity.ERROR)


def warn(message: str, offset: int) -> Problem:
    return Problem(message, "expression", offset, Severity.WARNING)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", []),
        ("${{ github.ref }} ${{ steps.build.outputs.x }} ${{ needs.lint.result }}", []),
        ("${{ steps.my-test.outcome }} ${{ MATRIX.OS }} ${{ inputs.LEVEL }}", []),
        (
            "${{ steps.nope.outputs.x }}",
            [err("no step with id 'nope' here (step ids: My-Test, build)", 10)],
        ),
        (
            "${{ steps['nope'] }}",
            [err("no step with id 'nope' here (step ids: My-Test, build)", 10)],
        ),
        ("${{ steps[github.x] }}", []),  # dynamic: not checked
        ("${{ needs.deploy.result }}", [err("job 'deploy' is not in needs (needs: lint)", 10)]),
        ("${{ inputs.speed }}", [err("no input named 'speed' (inputs: level)", 11)]),
        ("${{ matrix.arch }}", [warn("matrix key 'arch' is not defined (matrix keys: os)", 11)]),
        (
            "${{ secrets.X }}",
            [
                err(
                    "context 'secrets' is not available here "
                    "(available: env, github, inputs, matrix, needs, steps)",
                    4,
                )
            ],
        ),
        (
            "${{ nope.x }}",
            [
                err(
                    "unknown context 'nope' "
                    "(available here: env, github, inputs, matrix, needs, steps)",
                    4,
                )
            ],
        ),
        ("${{ success() }}", [err("function 'success()' is not available here", 4)]),
        ("${{ frobnicate(1) }}", [err("unknown function 'frobnicate()'", 4)]),
        ("${{ contains(1) }}", [err("contains() takes 2 arguments, got 1", 4)]),
        ("${{ join() }}", [err("join() takes 1 to 2 arguments, got 0", 4)]),
        ("${{ 1 == }}", [err("unexpected end of expression: expected a value", 9)]),
        (
            # all problems, from every expression and inside arguments and indexes
            "a ${{ contains(steps.x.y, matrix.z) }} b ${{ )( }} c ${{ github[needs.q] }}",
            [
                err("no step with id 'x' here (step ids: My-Test, build)", 21),
                warn("matrix key 'z' is not defined (matrix keys: os)", 33),
                err("unexpected ')': expected a value", 45),
                err("job 'q' is not in needs (needs: lint)", 70),
            ],
        ),
        (
            "${{ steps.nope }} ${{ unterminated",
            [
                err("no step with id 'nope' here (step ids: My-Test, build)", 10),
                err("unterminated expression: '${{' has no closing '}}'", 18),
            ],
        ),
    ],
)
def test_check(text: str, expected: list[Problem]) -> None:
    assert check(text, SCOPE) == expected


def test_check_unchecked_sets_are_none() -> None:
    scope = Scope(contexts=frozenset({"steps", "matrix", "needs", "inputs"}), functions=frozenset())
    assert check("${{ steps.a.b }} ${{ matrix.b }} ${{ needs.c }} ${{ inputs.d }}", scope) == []


def test_check_bare_condition() -> None:
    scope = Scope(frozenset({"github"}), frozenset(FUNCTIONS))
    assert check("success() && github.ref == 'x'", scope, bare=True) == []
    assert check("failure() || nope", scope, bare=True) == [
        err("unknown context 'nope' (available here: github)", 13)
    ]
    # an `if:` may still be wrapped: then offsets are into the wrapped text
    assert check("${{ nope }}", scope, bare=True) == [
        err("unknown context 'nope' (available here: github)", 4)
    ]
    assert check("x ${{ nope }} y", scope, bare=True) == [
        err("unknown context 'nope' (available here: github)", 6)
    ]
    # without bare, text without ${{ }} is plain text
    assert check("nope", scope) == []


def test_check_is_cached_but_returns_a_fresh_list() -> None:
    first = check("${{ nope }}", SCOPE)
    first.clear()
    assert len(check("${{ nope }}", SCOPE)) == 1


# ---------------------------------------------------------------------------- text


def test_interpolate() -> None:
    contexts = {"inputs": {"name": "World", "n": 3, "none": None, "flag": False}}
    text = (
        "Hello ${{ inputs.name }}! n=${{ inputs.n }} none=[${{ inputs.none }}] ${{ inputs.flag }}"
    )
    assert interpolate(text, contexts) == "Hello World! n=3 none=[] false"
    assert interpolate("no expressions", contexts) == "no expressions"
    assert interpolate("${{ toJSON(inputs.n) }}${{ '}}' }}", contexts) == "3}}"


def test_interpolate_error_offsets_are_into_the_text() -> None:
    with pytest.raises(ExpressionError) as error:
        interpolate("ab ${{ nope }}", {})
    assert (error.value.message, error.value.offset) == ("unknown context 'nope'", 7)
    with pytest.raises(ExpressionError) as error:
        interpolate("ab ${{ 1 == }}", {})
    assert error.value.offset == 12


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("success()", True),
        ("failure()", False),
        ("${{ failure() }}", False),
        ("  ${{ 0 }}  ", False),
        ("${{ github.ref == 'refs/heads/main' }}", True),
        ("github.ref == 'refs/heads/MAIN'", True),
        ("github.ref != 'refs/heads/main'", False),
        # not one whole expression: interpolated; a non-empty string is true (GitHub)
        ("${{ false }} && ${{ false }}", True),
        ("${{ '' }}${{ '' }}", False),
        ("x ${{ false }}", True),
    ],
)
def test_evaluate_condition(text: str, expected: bool) -> None:
    functions: dict[str, Callable[..., Any]] = {"success": lambda: True, "failure": lambda: False}
    assert evaluate_condition(text, CTX, functions) is expected


def test_evaluate_condition_errors_point_into_the_text() -> None:
    with pytest.raises(ExpressionError) as error:
        evaluate_condition("  ${{ nope }}", {}, None)
    assert error.value.offset == 6
    with pytest.raises(ExpressionError, match="empty expression"):
        evaluate_condition("", {}, None)


# ---------------------------------------------------------------------------- queries


@pytest.mark.parametrize(
    ("text", "bare", "expected"),
    [
        ("github.ref == 'x'", True, False),
        ("always()", True, True),
        ("!CANCELLED() && x", True, True),
        ("${{ contains(x, failure()) }}", True, True),
        ("${{ x }} ${{ success() }}", False, True),
        ("${{ x }}", False, False),
        ("plain success() text", False, False),
    ],
)
def test_has_status_function(text: str, bare: bool, expected: bool) -> None:
    assert has_status_function(text, bare=bare) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${{ secrets.A }} and ${{ SECRETS['B'] }}", {"A", "B"}),
        ("${{ format('{0}', secrets.C) }} ${{ env.D }}", {"C"}),
        ("${{ secrets[env.X] }}", {"*"}),
        ("${{ toJSON(secrets) }}", {"*"}),
        ("${{ secrets.* }}", {"*"}),
        ("${{ env.secrets }} no", set()),
    ],
)
def test_referenced_members(text: str, expected: set[str]) -> None:
    assert referenced_members(text, "secrets") == expected


def test_queries_raise_on_bad_syntax() -> None:
    with pytest.raises(ExpressionError):
        referenced_members("${{ secrets. }}", "secrets")
    with pytest.raises(ExpressionError):
        has_status_function("success(")


# ---------------------------------------------------------------------------- properties

_CONTEXTS: dict[str, Any] = {
    "a": {"b": [1, "x", None, {"c": True}], "n": 2.5, "s": "Str"},
    "e": [],
    "z": None,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "success": lambda: True,
    "failure": lambda: False,
    "always": lambda: True,
    "cancelled": lambda: False,
    "hashFiles": lambda *a: "hash",
}
_ALPHABET = [
    *"ab_-.()[]*'!=<>&|, 0123456789xeE+{}$\t",
    "${{",
    "}}",
    "a.b",
    "format(",
    "fromJSON(",
    "toJSON(",
    "join(",
    "contains(",
    "success()",
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_ALPHABET), max_size=30).map("".join) | st.text(max_size=40))
def test_random_text_only_ever_raises_expression_error(text: str) -> None:
    scope = Scope(frozenset({"a", "e"}), frozenset(FUNCTIONS), step_ids=frozenset({"s"}))
    for bare in (False, True):
        for problem in check(text, scope, bare=bare):
            assert 0 <= problem.offset <= len(text)
    for call in (
        lambda: evaluate(text, _CONTEXTS, _FUNCTIONS),
        lambda: interpolate(text, _CONTEXTS, _FUNCTIONS),
        lambda: evaluate_condition(text, _CONTEXTS, _FUNCTIONS),
        lambda: find_expressions(text),
    ):
        try:
            call()
        except ExpressionError as exc:
            assert 0 <= exc.offset <= len(text)


_literals = st.builds(
    P.Literal,
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet="ab' {}0}", max_size=6),
    st.just(0),
)
_names = st.sampled_from(["a", "A", "e", "z"]).map(lambda n: P.Context(n, 0))
_props = st.sampled_from(["b", "n", "s", "c", "true", "missing"]).map(lambda n: P.Prop(n, 0))
_CALLS = {"contains": 2, "startsWith": 2, "endsWith": 2, "join": 1, "toJSON": 1, "format": 2}


def _extend(children: st.SearchStrategy[P.Node]) -> st.SearchStrategy[P.Node]:
    accessor = _props | st.just(P.Star(0)) | children.map(lambda c: P.Index(c, 0))
    return st.one_of(
        children.map(lambda c: P.Not(c, 0)),
        children.map(lambda c: P.Group(c, 0)),
        st.builds(
            P.Compare,
            st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
            children,
            children,
            st.just(0),
        ),
        st.builds(
            P.Logical,
            st.sampled_from(["&&", "||"]),
            st.lists(children, min_size=2, max_size=3).map(tuple),
            st.just(0),
        ),
        st.builds(
            P.Access,
            _names | children.map(lambda c: P.Group(c, 0)),
            st.lists(accessor, min_size=1, max_size=3).map(tuple),
            st.just(0),
        ),
        st.sampled_from(sorted(_CALLS)).flatmap(
            lambda name: st.lists(children, min_size=_CALLS[name], max_size=_CALLS[name]).map(
                lambda args: P.Call(name, tuple(args), 0)
            )
        ),
    )


_asts = st.recursive(_literals | _names, _extend, max_leaves=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_asts)
def test_printed_ast_reparses_to_the_same_value(node: P.Node) -> None:
    source = to_source(node)
    try:
        direct = evaluate_node(node, _CONTEXTS, _FUNCTIONS)
    except ExpressionError as exc:
        with pytest.raises(ExpressionError) as again:
            evaluate(source, _CONTEXTS, _FUNCTIONS)
        assert again.value.message == exc.message
        return
    assert same(evaluate(source, _CONTEXTS, _FUNCTIONS), direct), source
