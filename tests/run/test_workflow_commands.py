from __future__ import annotations

import base64

import pytest

from runner.run.workflow_commands import (
    FileCommandError,
    check_env_names,
    parse_file_command,
    parse_workflow_command,
)
from runner.secrets.redact import Redactor


def test_name_value_and_heredoc() -> None:
    text = "a=1\nempty=\nmulti<<EOF\nline one\nline=two\nEOF\nb=x=y\n"
    assert parse_file_command(text, what="out") == {
        "a": "1",
        "empty": "",
        "multi": "line one\nline=two",
        "b": "x=y",
    }


def test_unterminated_heredoc_is_an_error() -> None:
    with pytest.raises(FileCommandError, match="the heredoc for 'x' never ends"):
        parse_file_command("x<<END\nvalue\n", what="$RUNNER_OUTPUT")


def test_line_without_equals_is_an_error() -> None:
    with pytest.raises(FileCommandError, match="neither name=value nor name<<DELIMITER"):
        parse_file_command("justtext\n", what="$RUNNER_OUTPUT")


def test_env_names_are_checked_and_protected() -> None:
    assert check_env_names({"GOOD_1": "x"}, what="env") == {"GOOD_1": "x"}
    with pytest.raises(FileCommandError, match="not a valid environment variable name"):
        check_env_names({"1bad": "x"}, what="env")
    with pytest.raises(FileCommandError, match="may not set LD_PRELOAD"):
        check_env_names({"LD_PRELOAD": "/x.so"}, what="env")
    with pytest.raises(FileCommandError, match="may not set RUNNER_OUTPUT"):
        check_env_names({"RUNNER_OUTPUT": "/x"}, what="env")


def test_workflow_commands() -> None:
    mask = parse_workflow_command("::add-mask::s3cr%25t")
    assert mask is not None and (mask.name, mask.value) == ("add-mask", "s3cr%t")
    error = parse_workflow_command("::error file=a.py,line=3::bad%0Athing")
    assert error is not None
    assert (error.name, error.value, error.properties) == (
        "error",
        "bad\nthing",
        {"file": "a.py", "line": "3"},
    )
    assert parse_workflow_command("plain output") is None
    assert parse_workflow_command("::unknown::x") is None


@pytest.mark.parametrize(
    "name",
    [
        "LD_PRELOAD",
        "LD_AUDIT",
        "LD_LIBRARY_PATH",
        "ld_audit",
        "BASH_ENV",
        "ENV",
        "PS4",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "PERL5OPT",
        "NODE_OPTIONS",
        "RUBYOPT",
        "GCONV_PATH",
        "JAVA_TOOL_OPTIONS",
        "GIT_CONFIG_KEY_0",
    ],
)
def test_env_refuses_loader_and_interpreter_hooks_naming_them(name: str) -> None:
    text = f"GOOD=1\n{name}=/workspace/x\n"
    with pytest.raises(FileCommandError) as caught:
        parse_file_command(text, what="$RUNNER_ENV", env=True)
    assert f"line 2: a step may not set {name} (" in caught.value.message
    assert caught.value.message.endswith("it was not set")
    assert parse_file_command(text, what="$RUNNER_OUTPUT") == {"GOOD": "1", name: "/workspace/x"}


SECRET = "a b=c'd\"e\\f%g&h+i é-and-more-of-it"
PLAIN = "a b c'd\"e\\f%g&h+i é-and-more-of-it"  # no '=' in it


@pytest.mark.parametrize(
    ("text", "env"),
    [
        (f"{PLAIN}\n", False),  # neither name=value nor a heredoc
        (f"{SECRET}\n", True),  # not a variable name: 'a b', cut at '=' inside it
        (f"x<<{SECRET}\nvalue\n", False),  # a heredoc that never ends
        (f"LD_AUDIT<<{SECRET}\nv\n{SECRET}\n", True),  # a hook, its delimiter the secret
    ],
)
def test_errors_quote_a_line_holding_a_secret_masked_and_whole(text: str, env: bool) -> None:
    redactor = Redactor([SECRET, PLAIN])
    with pytest.raises(FileCommandError) as caught:
        parse_file_command(text, what="$RUNNER_ENV", redact=redactor, env=env)
    message = caught.value.message
    assert "line 1: " in message and "***" in message
    for piece in ("a b", "c'd", "and-more", "é"):
        assert piece not in message, message


def test_a_secrets_base64_lines_are_masked_in_an_error_too() -> None:
    """`base64 <<<"$S" >> $RUNNER_OUTPUT`: the first line is no name=value."""
    encoded = base64.encodebytes(SECRET.encode() * 3).decode()
    with pytest.raises(FileCommandError) as caught:
        parse_file_command(encoded, what="$RUNNER_OUTPUT", redact=Redactor([SECRET]))
    message = caught.value.message
    assert message.startswith("$RUNNER_OUTPUT: line 1: '***")
    first = encoded.splitlines()[0]
    assert all(first[i : i + 8] not in message for i in range(len(first) - 8)), message


def test_property_values_are_unescaped_as_github_does() -> None:
    command = parse_workflow_command("::error title=a%3Ab%2Cc%25d::m")
    assert command is not None and command.properties == {"title": "a:b,c%d"}
