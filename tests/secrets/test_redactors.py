"""Whose secrets a redactor masks, how messages are built from masked values, what a
record keeps, and finding a secret in bytes."""

from __future__ import annotations

import base64
import io

from runner.secrets.redact import MASK, Redactor, redact_record, redact_structure
from runner.secrets.scan import holds_secret

SECRET = "s3cr3t-of-the-run"


def test_a_jobs_mask_stays_in_that_job_and_the_runs_secrets_reach_every_job() -> None:
    run = Redactor([SECRET])
    build, deploy = run.for_job("build"), run.for_job("deploy (env=prod)")
    build.add("only-builds-mask")
    assert build("only-builds-mask and " + SECRET) == "*** and ***"
    assert deploy("only-builds-mask and " + SECRET) == "only-builds-mask and ***"
    assert run("only-builds-mask") == "only-builds-mask"
    run.add("added-to-the-run-later")  # a child sees its parent's later secrets too
    assert deploy("added-to-the-run-later") == MASK
    assert run.for_job("build") is build and build.values == {"only-builds-mask"}


def test_a_message_is_masked_before_it_is_escaped_and_shortened() -> None:
    secret = "x" * 40 + "-long-secret-" + "y" * 40
    redactor = Redactor([secret])
    message = redactor.message(f"fromJSON(): not valid JSON: '{secret}\n{'z' * 500}'")
    assert secret[:8] not in message and "xxxxxxxx" not in message
    assert message.startswith("fromJSON(): not valid JSON: '***\\nzzz")
    assert "characters ...]" in message and len(message) < 450


def test_spans_say_where_the_masks_are() -> None:
    redactor = Redactor([SECRET])
    text = f"a {SECRET} b\n"
    assert redactor.spans(text) == [(2, 2 + len(SECRET))]


def test_a_record_is_redacted_by_value_never_by_key_status_or_digest() -> None:
    run = Redactor(["success-token", "abc123"])
    record = {
        "use-secret": {"status": "success-token", "reason": "failed with abc123"},
        "publish-token": {"sha256": "00abc12300", "events_sha256": "abc123", "n": 3},
        "abc123": ["abc123", None],
    }
    assert redact_record(record, run) == {
        "use-secret": {"status": "success-token", "reason": "failed with ***"},
        "publish-token": {"sha256": "00abc12300", "events_sha256": "abc123", "n": 3},
        "abc123": ["***", None],
    }
    # a user's mapping (env, outputs) still has a sensitive key's value masked whole
    assert redact_structure({"API_TOKEN": "x", "name": "abc123"}, run) == {
        "API_TOKEN": MASK,
        "name": MASK,
    }


def test_a_secret_is_found_in_bytes_in_any_chunking_and_form() -> None:
    scanner = Redactor([SECRET], credentials=False)
    wrapped = base64.encodebytes(b"prefix " + SECRET.encode() + b" suffix")
    for data in (
        b"\x00\xff binary " + SECRET.encode() + b" \xfe",
        b"KeyError(" + repr(SECRET).encode() + b")",
        wrapped,
    ):
        chunks = [data[i : i + 5] for i in range(0, len(data), 5)]
        assert holds_secret(iter(chunks), scanner), data
    assert not holds_secret(iter([b"password=hunter2 \x00\x01"]), scanner)
    assert not holds_secret(io.BytesIO(b""), scanner)
