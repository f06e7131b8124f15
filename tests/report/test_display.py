from __future__ import annotations

import io

import pytest

from runner.report.display import ASCII, UNICODE, clean_line, encodable, format_duration, glyphs_for


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.04, "0.0s"), (1.25, "1.2s"), (59.94, "59.9s"), (65, "1m05s"), (7384, "2h03m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_clean_line_keeps_what_a_terminal_would_show() -> None:
    assert clean_line("a\x1b[1;31mb\x1b[0mc") == "abc"
    assert clean_line("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\") == "link"
    assert clean_line("[==  ]\r[====]") == "[====]"
    assert clean_line("bell\x07 del\x7f c1\x9b2J tab\t") == "bell del c1 tab\t"


def test_glyphs_follow_the_stream_encoding() -> None:
    class Latin1(io.StringIO):
        @property
        def encoding(self) -> str:  # type: ignore[override]
            return "latin-1"

    assert glyphs_for(io.StringIO()) is UNICODE  # in memory: any text fits
    assert glyphs_for(Latin1()) is ASCII
    assert encodable("naïve ✓", "latin-1") == "naïve ?"
    assert encodable("naïve ✓", "utf-8") == "naïve ✓"
