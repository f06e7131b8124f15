from __future__ import annotations

import pytest

from runner.run.workflow_commands import (
    FileCommandError,
    check_env_names,
    parse_file_command,
    parse_workflow_command,
)


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
