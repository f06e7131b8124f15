from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import InvalidInput
from runner.secrets.sources import parse_dotenv_text, resolve_secrets


def test_name_reads_the_variable_of_that_name() -> None:
    env = {"DEPLOY_TOKEN": "t0k", "OTHER": "x"}
    assert resolve_secrets(["DEPLOY_TOKEN"], None, env) == {"DEPLOY_TOKEN": "t0k"}


def test_name_equals_env_var_reads_the_other_variable() -> None:
    env = {"CI_DEPLOY_KEY": "k3y"}
    assert resolve_secrets(["DEPLOY_TOKEN=CI_DEPLOY_KEY"], None, env) == {"DEPLOY_TOKEN": "k3y"}


def test_missing_variable_is_named() -> None:
    with pytest.raises(InvalidInput, match=r"environment variable CI_DEPLOY_KEY is not set"):
        resolve_secrets(["DEPLOY_TOKEN=CI_DEPLOY_KEY"], None, {})
    with pytest.raises(InvalidInput, match=r"environment variable DEPLOY_TOKEN is not set"):
        resolve_secrets(["DEPLOY_TOKEN"], None, {})


@pytest.mark.parametrize(
    "spec",
    [
        "DEPLOY_TOKEN=s3cr3t-value!",  # a value after '='
        "DEPLOY_TOKEN=hunter2hunter2",  # looks like a name, is not set, not env style
        "ghp_abcdef s3cr3t",  # not a name at all
        "TOKEN=",  # nothing after '='
    ],
)
def test_a_literal_value_is_refused_without_repeating_it(spec: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        resolve_secrets([spec], None, {"PATH": "/bin"})
    text = str(caught.value)
    assert "environment variable" in text and "--secret-file" in text
    value = spec.partition("=")[2] if "=" in spec else spec
    if value:
        assert value not in text


def test_an_existing_lowercase_variable_is_accepted() -> None:
    assert resolve_secrets(["X=my_var"], None, {"my_var": "v"}) == {"X": "v"}


def test_command_line_secret_overrides_the_file(tmp_path: Path) -> None:
    dotenv = tmp_path / "secrets.env"
    dotenv.write_text("A=from-file\nB=file-only\n", encoding="utf-8")
    assert resolve_secrets(["A=ENV_A"], dotenv, {"ENV_A": "from-env"}) == {
        "A": "from-env",
        "B": "file-only",
    }


def test_missing_secret_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"no such file"):
        resolve_secrets([], tmp_path / "nope.env", {})


DOTENV = (
    "\ufeff# comment line\n"
    "\n"
    "PLAIN=value\n"
    "SPACED = spaced value   \n"
    "export EXPORTED=yes\n"
    "  export   INDENTED=ok\n"
    "INLINE=abc # a comment\n"
    "HASH_IN=abc#not-a-comment\n"
    "EMPTY=\n"
    "SINGLE='keep $HOME and \\n as is'\n"
    'DOUBLE="tab\\there \\"quoted\\" back\\\\slash \\$dollar"\n'
    'MULTI="-----BEGIN KEY-----\n'
    "line two\n"
    '-----END KEY-----"  # trailing comment\n'
    "MULTI_SINGLE='a\n"
    "b'\n"
    "CRLF=windows\r\n"
    "DUP=first\n"
    "DUP=second\n"
    "EQUALS=a=b=c\n"
    "LAST=no newline"
)


def test_dotenv_edge_cases() -> None:
    assert parse_dotenv_text(DOTENV, "s.env") == {
        "PLAIN": "value",
        "SPACED": "spaced value",
        "EXPORTED": "yes",
        "INDENTED": "ok",
        "INLINE": "abc",
        "HASH_IN": "abc#not-a-comment",
        "EMPTY": "",
        "SINGLE": "keep $HOME and \\n as is",
        "DOUBLE": 'tab\there "quoted" back\\slash $dollar',
        "MULTI": "-----BEGIN KEY-----\nline two\n-----END KEY-----",
        "MULTI_SINGLE": "a\nb",
        "CRLF": "windows",
        "DUP": "second",
        "EQUALS": "a=b=c",
        "LAST": "no newline",
    }


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    dotenv = tmp_path / "s.env"
    dotenv.write_bytes(DOTENV.encode("utf-8"))
    assert resolve_secrets([], dotenv, {})["MULTI"].count("\n") == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A=1\nnot a pair\n", r"s\.env:2: expected KEY=VALUE"),
        ("A=1\n1BAD=x\n", r"s\.env:2: expected KEY=VALUE"),
        ('A=1\n\nB="open\nstill open\n', r"s\.env:3: the quoted value of B is never closed"),
        ("A='x' trailing\n", r"s\.env:1: unexpected text after the closing quote of A"),
    ],
)
def test_dotenv_errors_name_file_and_line_but_no_value(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        parse_dotenv_text(text, "s.env")
    assert "open" not in str(caught.value).replace("never closed", "")
