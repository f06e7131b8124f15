"""The views the matcher sees and their maps back to the text as printed."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.secrets.normalise import (
    DELETABLE,
    ESCAPE_SEQUENCE,
    LineState,
    Views,
    join_base64,
    normalise,
    pending_escape,
)

PIECES = st.sampled_from(
    ["\x1b[31m", "\x1b[0m", "\x1b]8;;http://x\x1b\\", "\x1b(B", "\x9b2K", "\r", "\x00", "\u200b"]
)
texts = st.lists(st.text(max_size=6) | PIECES, max_size=12).map("".join)


@settings(max_examples=300)
@given(text=texts)
def test_the_normalised_view_maps_each_character_back_to_itself(text: str) -> None:
    view = normalise(text)
    assert DELETABLE.search(view.text) is None and ESCAPE_SEQUENCE.search(view.text) is None
    origins = [view.origin(i) for i in range(len(view.text))]
    assert [text[o] for o in origins] == list(view.text)
    assert origins == sorted(set(origins))
    for i, origin in enumerate(origins):
        assert view.position(origin) == i


def test_a_secret_split_by_an_escape_maps_to_one_span_covering_it() -> None:
    text = "key: hun\x1b[1mter2 ok"
    view = normalise(text)
    assert view.text == "key: hunter2 ok"
    start = view.text.index("hunter2")
    assert view.spans(start, start + 7) == [(5, 5 + len("hun\x1b[1mter2"))]


def test_escape_sequences_are_never_cut_nor_parted_from_the_text_after_them() -> None:
    text = "ab\x1b[31mcd\x1b[0m"
    view = Views.of(text).escapes
    assert view.text == "abcd"
    assert view.settle(4) == 2  # inside the first sequence: before it
    assert view.settle(7) == 2  # right after it: it goes with "cd"
    assert view.settle(len(text)) == 9  # a sequence at the end waits for what follows
    assert view.widen(7, 9) == (2, len(text))


def test_a_sequence_the_next_chunk_may_complete_is_pending() -> None:
    assert pending_escape("ok \x1b[3") == 3
    assert pending_escape("ok \x1b]0;title") == 3
    assert pending_escape("ok \x1b[31m") is None
    assert pending_escape("no escape") is None


def test_wrapped_base64_is_one_line_in_the_joined_view_and_keeps_its_line_breaks() -> None:
    encoded = base64.b64encode(bytes(range(120))).decode()
    lines = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
    text = "token: " + lines[0] + "\r\n" + "\n".join(f"  {line}" for line in lines[1:]) + "\n"
    view = normalise(text)
    joined = join_base64(view, LineState(), final=True)
    assert encoded in joined.text
    start = joined.text.index(encoded)
    pieces = [
        piece for a, b in joined.spans(start, start + len(encoded)) for piece in view.spans(a, b)
    ]
    assert [text[a:b] for a, b in pieces] == lines


def test_only_breaks_that_may_be_inside_base64_are_joined() -> None:
    text = "hello world\nsecond line\nab\ncd\n: after\nQUJD\n  REVG: x\n"
    joined = join_base64(normalise(text), LineState(), final=True).text
    assert joined == "hello world\nsecond line\nab\ncd\n: after\nQUJDREVG: x\n"


def test_the_state_of_a_line_begun_in_an_earlier_chunk_decides_its_join() -> None:
    first = LineState().extend("QUJDREVG")  # a base64 line's start, already passed on
    assert join_base64(normalise("R0hJ\nSktM"), first, final=True).text == "R0hJSktM"
    mixed = LineState().extend("a sentence ")
    assert join_base64(normalise("R0hJ\nSktM"), mixed, final=True).text == "R0hJ\nSktM"
