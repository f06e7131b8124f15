"""The engine-neutral parts of the protocol module: the spec's ledger digest."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from runner.engine import backend
from runner.engine.backend import LABEL_RUN, ContainerSpec, Healthcheck, spec_digest

MiB = 1024 * 1024


def spec(**changes: object) -> ContainerSpec:
    fields: dict[str, object] = {
        "image": "img",
        "command": ["sh", "-c", "true"],
        "env": {"TOKEN": "s3cr3t-value", "A": "1"},
        "labels": {LABEL_RUN: "r1"},
        "memory_bytes": 64 * MiB,
        "cpus": 1.0,
        "pids": 32,
    }
    fields.update(changes)
    return ContainerSpec(**fields)  # type: ignore[arg-type]


def test_the_digest_covers_every_field_of_the_spec() -> None:
    base = spec_digest(spec())
    assert base == spec_digest(spec())
    changed = {
        "image": "other",
        "command": ["sh", "-c", "false"],
        "env": {"TOKEN": "s3cr3t-valuf", "A": "1"},
        "labels": {LABEL_RUN: "r2"},
        "memory_bytes": 65 * MiB,
        "cpus": 2.0,
        "pids": 33,
        "workdir": "/workspace/sub",
        "user": 1000,
        "network": "runner-r1-net",
        "workspace_volume": "ws",
        "workspace_path": "/w",
        "workspace_exec": True,
        "history_volume": "runner-r1-git",
        "seccomp_deny_memfd": True,
        "tmp_bytes": MiB,
        "deadline_s": 70.0,
        "aliases": ("db",),
        "health": Healthcheck(
            cmd="true", interval_s=1.0, timeout_s=1.0, retries=1, start_period_s=0.0
        ),
    }
    assert set(changed) == {f.name for f in dataclasses.fields(ContainerSpec)}
    digests = {name: spec_digest(spec(**{name: value})) for name, value in changed.items()}
    assert base not in digests.values()
    assert len(set(digests.values())) == len(changed)


def test_no_env_value_is_in_the_digested_document_in_clear(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digested: list[object] = []
    real = backend.json_digest

    def capture(value: object) -> str:
        digested.append(value)
        return real(value)

    monkeypatch.setattr(backend, "json_digest", capture)
    spec_digest(spec())
    (document,) = digested
    assert "s3cr3t-value" not in json.dumps(document)
    assert isinstance(document, dict)
    assert document["env"] == {
        "TOKEN": hashlib.sha256(b"s3cr3t-value").hexdigest(),
        "A": hashlib.sha256(b"1").hexdigest(),
    }
