from __future__ import annotations

import base64
import builtins
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.engine.backend import WORKSPACE_PATH
from runner.records.events import Annotation
from runner.run.workflow_commands import (
    MAX_POSITION,
    MAX_PROPERTY,
    FileCommandError,
    annotation,
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


# -- annotations: location, title, hostile values -----------------------------------------


def note(line: str, redactor: Redactor | None = None) -> Annotation:
    made = annotation(line, job="j", step=2, redact=redactor or Redactor())
    assert made is not None, line
    return made


def where(made: Annotation) -> tuple[object, ...]:
    return (made.file, made.line, made.end_line, made.col, made.end_column, made.title)


def test_an_annotation_carries_its_location_and_title_as_github_reads_them() -> None:
    made = note("::error file=app.py,line=3,endLine=3,col=5,endColumn=7,title=Bad::message")
    assert (made.job, made.step, made.level, made.message) == ("j", 2, "error", "message")
    assert where(made) == ("app.py", 3, 3, 5, 7, "Bad")
    # property names in any case, as GitHub's runner matches them; warning and notice too
    made = note("::warning FILE=a.py,Line=9,COL=2,EndColumn=4::w")
    assert (made.level, *where(made)) == ("warning", "a.py", 9, None, 2, 4, None)
    assert note("::notice title=T::n").title == "T"
    assert where(note("::error::plain")) == (None,) * 6
    # a `:` alone may sit in the properties (GitHub's end is the first `::`)
    assert note("::error title=Bad: thing::m").title == "Bad: thing"


def test_annotation_escapes_are_undone_as_github_undoes_them() -> None:
    made = note("::error file=dir%2Cx/a%3Ab.py,title=100%25 a%2Cb%3Ac::two%0Alines %25 %3A")
    assert made.file == "dir,x/a:b.py"
    assert made.title == "100% a,b:c"
    assert made.message == "two\nlines % %3A"  # data keeps %3A: GitHub unescapes only %0D %0A %25


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # positions: decimals from 1 to 2**31-1 only
        ("::error file=a,line=x,col=5::m", ("a", None, None, None, None, None)),
        ("::error file=a,line=-1::m", ("a", None, None, None, None, None)),
        ("::error file=a,line=0::m", ("a", None, None, None, None, None)),
        ("::error file=a,line=+3::m", ("a", None, None, None, None, None)),
        ("::error file=a,line= 3::m", ("a", None, None, None, None, None)),
        ("::error file=a,line=1e3::m", ("a", None, None, None, None, None)),
        ("::error file=a,line=\uff13::m", ("a", None, None, None, None, None)),  # fullwidth 3
        ("::error file=a,line=2147483648::m", ("a", None, None, None, None, None)),
        ("::error file=a,line=" + "9" * 5000 + "::m", ("a", None, None, None, None, None)),
        ("::error file=a,line=2147483647::m", ("a", 2147483647, None, None, None, None)),
        # consistent ranges, as GitHub makes them
        ("::error file=a,col=5,endColumn=6::m", ("a", None, None, None, None, None)),
        ("::error file=a,endLine=7::m", ("a", 7, None, None, None, None)),
        ("::error file=a,line=7,endLine=3::m", ("a", 7, None, None, None, None)),
        ("::error file=a,line=3,endLine=4,col=5,endColumn=7::m", ("a", 3, 4, None, None, None)),
        ("::error file=a,line=3,col=5,endColumn=2::m", ("a", 3, None, 5, None, None)),
        ("::error file=a,line=3,endColumn=2::m", ("a", 3, None, None, None, None)),
        # files and titles: no control character, at most MAX_PROPERTY characters
        ("::error file=a%0Ab,line=3::m", (None, 3, None, None, None, None)),
        ("::error file=a\x1b[2Jb,line=3::m", (None, 3, None, None, None, None)),
        ("::error file=a\x00b::m", (None, None, None, None, None, None)),
        ("::error file=a\u2028b::m", (None, None, None, None, None, None)),
        ("::error title=x%0Dy,file=a::m", ("a", None, None, None, None, None)),
        ("::error title=" + "t" * (MAX_PROPERTY + 1) + "::m", (None,) * 6),
        (
            "::error file=" + "f" * (MAX_PROPERTY + 1) + ",line=2::m",
            (None, 2, None, None, None, None),
        ),
        ("::error file=,title=::m", (None,) * 6),
    ],
)
def test_a_bad_property_value_is_dropped_and_the_annotation_kept(
    line: str, expected: tuple[object, ...]
) -> None:
    made = note(line)
    assert made.message == "m"
    assert where(made) == expected


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("/workspace/src/a.py", "src/a.py"),
        ("/workspace//src/a.py", "src/a.py"),
        ("src/a.py", "src/a.py"),
        ("/workspace/../etc/passwd", "/workspace/../etc/passwd"),
        ("/workspace/src/../../x", "/workspace/src/../../x"),
        ("../../etc/shadow", "../../etc/shadow"),
        ("/etc/passwd", "/etc/passwd"),
        ("/workspace", "/workspace"),
        ("/workspace/", "/workspace/"),
        ("/workspacex/a.py", "/workspacex/a.py"),
        ("/proc/self/environ", "/proc/self/environ"),
    ],
)
def test_a_file_under_the_workspace_is_shown_relative_and_any_other_as_given(
    given: str, shown: str
) -> None:
    assert WORKSPACE_PATH == "/workspace"
    assert note(f"::error file={given},line=1::m").file == shown


def test_a_file_is_never_opened_or_resolved_on_the_host() -> None:
    """The file a step names is untrusted: runner handles it as a string and nothing more."""
    touched: list[tuple[str, tuple[object, ...]]] = []
    files = ("/etc/shadow", "/workspace/../etc/passwd", "/proc/self/environ", "../x")
    made: list[Annotation] = []
    with pytest.MonkeyPatch.context() as patch:
        for module, name in [
            (os, "stat"),
            (os, "lstat"),
            (os, "open"),
            (os, "readlink"),
            (os, "listdir"),
            (os.path, "realpath"),
            (os.path, "exists"),
            (builtins, "open"),
            (Path, "resolve"),
        ]:
            real = getattr(module, name)

            def spy(*args: object, _name: str = name, _real: Any = real, **kw: object) -> Any:
                touched.append((_name, args))
                return _real(*args, **kw)

            patch.setattr(module, name, spy)
        made = [note(f"::error file={file},line=1::m") for file in files]
    assert touched == []
    assert [m.file for m in made] == list(files)


SECRET_IN_NOTE = "tok,en\"q\\u'x%y=z-0123456789"


@pytest.mark.parametrize(
    "line",
    [
        # raw: the secret's ',' cuts it in two properties; GitHub-escaped; in the message
        f"::error title={SECRET_IN_NOTE},file=a.py::m",
        "::error title="
        + SECRET_IN_NOTE.replace("%", "%25").replace(",", "%2C").replace(":", "%3A")
        + ",file=a.py::m",
        f"::error file=src/{SECRET_IN_NOTE}.py,line=1::m",
        "::error file=src/"
        + SECRET_IN_NOTE.replace("%", "%25").replace(",", "%2C")
        + ".py,line=1::m",
        f"::warning title=T::{SECRET_IN_NOTE}",
        f"::warning title=T::{SECRET_IN_NOTE.replace('%', '%25')}",
    ],
)
def test_every_field_of_an_annotation_is_masked_even_a_piece_of_a_secret(line: str) -> None:
    made = note(line, Redactor([SECRET_IN_NOTE]))
    shown = "\n".join(str(value) for value in (made.message, *where(made)))
    for piece in ("tok", 'en"q', "\\u'x", "y=z", "0123456789"):
        assert piece not in shown, (line, shown)
    assert "***" in shown


def test_a_position_holding_a_secret_is_dropped_not_shown() -> None:
    made = note(
        "::error file=a.py,line=31415926,col=27182818::m", Redactor(["31415926", "27182818"])
    )
    assert where(made) == ("a.py", None, None, None, None, None)


def test_only_error_warning_and_notice_make_annotations() -> None:
    for line in ("::group::x", "::add-mask::abcd", "::debug::x", "plain", "::bogus file=a::m"):
        assert annotation(line, job="j", step=0, redact=Redactor()) is None


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("::=,%0aADC3 \x00\x1b\n\r/.-1l9fileincotmdEL")), max_size=80
    )
)
def test_any_annotation_line_parses_without_a_crash_into_sound_fields(tail: str) -> None:
    made = annotation("::error " + tail, job="j", step=0, redact=Redactor())
    if made is None:
        return
    for position in (made.line, made.end_line, made.col, made.end_column):
        assert position is None or 1 <= position <= MAX_POSITION
    for text in (made.file, made.title):
        assert text is None or (0 < len(text) <= MAX_PROPERTY and text.isprintable())
    assert made.col is None or made.line is not None
    assert made.end_column is None or made.col is not None
    assert made.end_line is None or (made.line is not None and made.end_line >= made.line)
