"""Every image a Dockerfile makes the builder use, read as the classic builder reads it."""

from __future__ import annotations

import pytest

from runner.engine.dockerfile import bases, instructions
from runner.errors import InvalidInput


def refs(text: str) -> list[tuple[str, str, int]]:
    return [(b.reference, b.instruction, b.line) for b in bases(text)]


def test_every_stage_of_a_multi_stage_file_and_no_stage_reference() -> None:
    text = (
        "# syntax=docker/dockerfile:1\n"
        "FROM --platform=linux/amd64 golang:1.22 AS build\n"
        "RUN go build\n"
        "from Build as test\n"  # an earlier stage, case-insensitive
        "FROM scratch\n"
        "COPY --from=build /out /out\n"
        "COPY --from=0 /x /x\n"
        "COPY --chown=1:1 --from=alpine:3 /bin/sh /sh\n"
        "FROM debian:bookworm-slim\n"
    )
    assert refs(text) == [
        ("golang:1.22", "FROM", 2),
        ("alpine:3", "COPY --from", 8),
        ("debian:bookworm-slim", "FROM", 9),
    ]


def test_global_args_are_substituted_with_their_defaults_only() -> None:
    text = (
        "ARG REGISTRY=docker.io/library\n"
        "ARG TAG\n"
        'ARG NAME="debian"\n'
        "FROM ${REGISTRY}/$NAME:${TAG:-bookworm}\n"
        "ARG LATE=ignored\n"  # inside a stage: not visible to the next FROM
        "FROM ${LATE:-busybox}${TAG:+-never}\n"
    )
    assert refs(text) == [
        ("docker.io/library/debian:bookworm", "FROM", 4),
        ("busybox", "FROM", 6),
    ]


def test_continuations_comments_and_the_escape_directive() -> None:
    text = "# escape=`\n\nFROM `\n  # a comment inside\n\n  alpine:3.20 `\n  AS one\nRUN x\n"
    assert [(line, word) for line, word, _ in instructions(text)] == [(3, "FROM"), (8, "RUN")]
    assert refs(text) == [("alpine:3.20", "FROM", 3)]
    assert refs("FROM \\\n  python:3.12\n") == [("python:3.12", "FROM", 1)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ARG BASE\nFROM $BASE\n", r"Dockerfile:2: FROM \$BASE is empty"),
        ("FROM\n", "FROM names no image"),
        ("FROM x\nCOPY --from=$IMG /a /a\n", "holds a variable runner cannot read"),
        ('FROM "unterminated\n', "cannot read"),
    ],
)
def test_what_cannot_be_read_is_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        bases(text)
