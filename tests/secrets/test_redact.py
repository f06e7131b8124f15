from __future__ import annotations

import base64
import json
import urllib.parse

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from runner.secrets.redact import (
    MASK,
    MAX_HOLD,
    MIN_B64_FRAGMENT,
    MIN_FORM,
    Redactor,
    forms_of,
    redact_structure,
)

# Secrets as a user may have them: short, multi-line, regex-special, unicode. A `*` is left
# out: a secret made of or ending in stars can reappear next to a mask (`a**` in `a***`)
# without anything of it leaking.
SECRET_ALPHABET = st.characters(
    blacklist_categories=("Cs",), blacklist_characters="*"
) | st.sampled_from(list(".^$+?()[]{}|\\\n\r\t é€😀"))
secrets_st = st.text(SECRET_ALPHABET, min_size=1, max_size=40).filter(lambda s: s.strip())
filler_st = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


def encodings(secret: str) -> list[str]:
    raw = secret.encode("utf-8")
    found = [
        secret,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    ]
    return [f for f in found if f]


def chunked(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(text[last:point])
        last = point
    pieces.append(text[last:])
    return pieces


def stream_all(redactor: Redactor, pieces: list[str]) -> str:
    stream = redactor.stream()
    return "".join(stream.feed(p) for p in pieces) + stream.flush()


def leaks(output: str, secret: str) -> list[str]:
    """The masked forms of `secret` still visible in `output`."""
    forms = [f for f in encodings(secret) if f == secret or len(f) >= MIN_FORM]
    visible = [f for f in forms if f in output]
    lines = [line.strip() for line in secret.splitlines()]
    visible += [line for line in lines if len(line) >= 3 and line in output]
    return visible


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    secrets=st.lists(secrets_st, min_size=1, max_size=3),
    fillers=st.lists(filler_st, min_size=1, max_size=6),
    which=st.lists(st.integers(0, 100), min_size=1, max_size=8),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_no_encoded_form_of_a_secret_survives_any_chunking(
    secrets: list[str], fillers: list[str], which: list[int], cuts: list[int]
) -> None:
    redactor = Redactor(secrets)
    forms = [form for secret in secrets for form in encodings(secret)]
    parts: list[str] = []
    for i, filler in enumerate(fillers):
        parts.append(filler)
        parts.append(forms[which[i % len(which)] % len(forms)])
    text = "".join(parts)
    whole = redactor(text)
    streamed = stream_all(redactor, chunked(text, cuts))
    assert streamed == whole
    for secret in secrets:
        assert leaks(whole, secret) == []


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300), cuts=st.lists(st.integers(0, 10_000), max_size=20))
def test_streaming_loses_and_reorders_nothing_without_secrets(text: str, cuts: list[int]) -> None:
    redactor = Redactor(["a-registered-secret-value"])
    assume("a-registered-secret-value"[:3] not in text)
    assume(redactor(text) == text)  # no credential format in it by chance
    assert stream_all(redactor, chunked(text, cuts)) == text


@settings(max_examples=200, deadline=None)
@given(
    secret=st.text(st.characters(blacklist_categories=("Cs",)), min_size=6, max_size=40),
    before=st.binary(max_size=7),
    after=st.binary(max_size=7),
    urlsafe=st.booleans(),
)
def test_base64_of_a_secret_inside_a_longer_stream_is_masked(
    secret: str, before: bytes, after: bytes, urlsafe: bool
) -> None:
    assume(secret.strip() and "*" not in secret)
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    blob = encode(before + secret.encode() + after).decode()
    out = Redactor([secret])(blob)
    data = secret.encode()
    skip = (3 - len(before) % 3) % 3  # the bytes of the value that start a base64 group
    aligned = data[skip:][: (len(data) - skip) // 3 * 3]
    fragment = encode(aligned).decode()
    if len(fragment) >= MIN_B64_FRAGMENT:
        assert fragment not in out
        assert MASK in out


def test_secret_split_across_chunks_is_masked_and_the_rest_flows_promptly() -> None:
    stream = Redactor(["s3cr3t-value"]).stream()
    assert stream.feed("line one\nthe key is s3cr") == "line one\nthe key is "
    assert stream.feed("3t-val") == ""
    assert stream.feed("ue and more\n") == "*** and more\n"
    assert stream.flush() == ""


def test_held_back_tail_is_only_a_possible_start_of_a_secret() -> None:
    stream = Redactor(["abcdef"]).stream()
    assert stream.feed("xyz abc") == "xyz "  # "abc" could start the secret
    assert stream.feed("q") == "abcq"  # now it cannot
    assert stream.flush() == ""


def test_overlapping_secrets_leave_nothing_of_either() -> None:
    redactor = Redactor(["abcdXY", "XYefgh"])
    assert redactor("1 abcdXYefgh 2") == "1 *** 2"


def test_multiline_secret_is_masked_line_by_line_and_short_lines_are_not_registered() -> None:
    secret = "first-line-of-key\n}\nsecond-line-of-key"
    forms = forms_of(secret)
    assert "first-line-of-key" in forms and "second-line-of-key" in forms
    assert "}" not in forms
    out = Redactor([secret])("a: first-line-of-key\r\nb: second-line-of-key\n{x}")
    assert out == "a: ***\r\nb: ***\n{x}"


def test_a_short_secret_value_is_still_masked_whole() -> None:
    assert Redactor(["ab"])("ab cab") == "*** c***"
    assert Redactor(["   "])("a   b") == "a   b"  # blank: nothing to hide


def test_mask_added_later_applies_to_a_running_stream() -> None:
    redactor = Redactor()
    stream = redactor.stream()
    assert stream.feed("before\n") == "before\n"
    redactor.add("late-mask")
    assert stream.feed("::add-mask::late-mask\nlate-mask\n") == "::add-mask::***\n***\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key AKIAIOSFODNN7EXAMPLE end", "key *** end"),
        ("t=ghp_" + "a1B2" * 9 + " ok", "t=*** ok"),
        ("gho_" + "Z" * 36, "***"),
        ("github_pat_" + "11ABCDEFG_" * 4, "***"),
        ("glpat-abcdefghij0123456789 x", "*** x"),
        ("xoxb-1234567890-abcdef", "***"),
        ("jwt eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJl!", "jwt ***!"),
        ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
        ("authorization=Basic dXNlcjpwYXNz", "authorization=Basic ***"),
        ("curl -H 'Bearer 0123456789abcdefXYZ'", "curl -H 'Bearer ***'"),
        (
            "git clone https://user:pa55w0rd@example.com/x",
            "git clone https://user:***@example.com/x",
        ),
        ("DB_PASSWORD=hunter2 next", "DB_PASSWORD=*** next"),
        ('{"api_key": "abc def", "n": 1}', '{"api_key": "***", "n": 1}'),
        (
            '{"secrets": ["DEPLOY_TOKEN"], "password": ""}',
            '{"secrets": ["DEPLOY_TOKEN"], "password": ""}',
        ),
        ("PASSWORD='it is'", "PASSWORD='***'"),
        (
            '{"token_count": 5, "secret": true, "password": "x"}',
            '{"token_count": 5, "secret": true, "password": "***"}',
        ),
        ("token_count: 5", "token_count: ***"),
        ("token: xyz; done", "token: ***; done"),
        ("passwords are checked", "passwords are checked"),
        ("nothing sensitive here", "nothing sensitive here"),
    ],
)
def test_credential_formats_are_masked_without_registration(text: str, expected: str) -> None:
    assert Redactor()(text) == expected


def test_private_key_block_is_masked_whole_even_when_streamed_line_by_line() -> None:
    text = (
        "start\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
        "QyNTUxOQAAACD\n-----END OPENSSH PRIVATE KEY-----\nend\n"
    )
    redactor = Redactor()
    assert redactor(text) == "start\n***\nend\n"
    stream = redactor.stream()
    pieces = [stream.feed(line) for line in text.splitlines(keepends=True)]
    assert pieces[0] == "start\n"
    assert "".join(pieces) + stream.flush() == "start\n***\nend\n"


def test_unterminated_private_key_is_masked_to_the_end() -> None:
    assert Redactor()("x\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI") == "x\n***"


def test_stream_memory_is_bounded_by_max_hold() -> None:
    stream = Redactor().stream()
    out = stream.feed("-----BEGIN RSA PRIVATE KEY-----\n" + "A" * (MAX_HOLD * 2))
    assert out == MASK  # forced out as one mask, nothing of the block
    assert len(stream._buffer) <= MAX_HOLD
    assert stream.feed("B" * 10) == ""
    assert stream.flush() == ""


def test_redact_structure_masks_sensitive_keys_and_strings() -> None:
    redactor = Redactor(["hunter2hunter2"])
    data = {
        "Password": "whatever",
        "nested": {"GITHUB_TOKEN": 123, "x-api-key": ["a"], "items": ("hunter2hunter2", 4)},
        "Cookie": None,
        "session_id": "s1",
        "note": "has hunter2hunter2 inside",
        "hunter2hunter2": "as a key",
        "count": 3,
    }
    assert redact_structure(data, redactor) == {
        "Password": MASK,
        "nested": {"GITHUB_TOKEN": MASK, "x-api-key": MASK, "items": [MASK, 4]},
        "Cookie": None,
        "session_id": MASK,
        "note": "has *** inside",
        MASK: "as a key",
        "count": 3,
    }


CREDENTIAL_PIECES = [
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN EC PRIVATE KEY-----\nunterminated",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_" + "x7" * 18,
    "glpat-abcdefghij0123456789",
    "xoxb-1234567890-abc",
    "eyJhbGciOi.eyJzdWIiOiIx.sig",
    "Authorization: Bearer abc.def",
    "bearer 0123456789abcdef0123",
    "https://user:pa55@host/x",
    "password=hunter2",
    'token: "quoted value"',
    "api_key='v'",
    '{"secret_n": 5, "token": "q"}',
    '"password":',
    "pass",
    "tok",
    "://",
    "eyJ",
    "\n",
    " ",
    "registered-secret",
]


@settings(max_examples=300, deadline=None)
@given(
    picks=st.lists(st.sampled_from(CREDENTIAL_PIECES) | st.text(max_size=8), max_size=12),
    cuts=st.lists(st.integers(0, 10_000), max_size=15),
)
def test_stream_equals_whole_text_redaction_for_any_chunking(
    picks: list[str], cuts: list[int]
) -> None:
    redactor = Redactor(["registered-secret"])
    text = "".join(picks)
    whole = redactor(text)
    assert stream_all(redactor, chunked(text, cuts)) == whole
    assert "registered-secret" not in whole
    assert "MIIEpAIBAAKCAQEA" not in whole and "hunter2" not in whole


def test_a_cached_short_string_is_redacted_again_after_a_new_mask() -> None:
    redactor = Redactor()
    assert redactor("job deploy-key-123") == "job deploy-key-123"
    redactor.add("deploy-key-123")
    assert redactor("job deploy-key-123") == "job ***"
