"""Fields of declared ledger entries (runner.audit.entries), for tests that need entries
but not what they mean: every entry a ledger accepts is one of its declared types."""

from __future__ import annotations

from typing import Any


def step_started(step: int) -> dict[str, Any]:
    return {
        "job": "build",
        "step": step,
        "name": "ok",
        "attempt": 1,
        "image": "base",
        "image_digest": "sha256:" + "a" * 64,
        "config_digest": "c" * 64,
    }


def step_finished(step: int, name: str = "ok") -> dict[str, Any]:
    return {
        "job": "build",
        "step": step,
        "name": name,
        "status": "success",
        "reason": "",
        "exit_code": 0,
        "duration_ms": 1,
        "attempts": 1,
        "log_sha256": "d" * 64,
    }


def run_started(mission: str = "ci") -> dict[str, Any]:
    return {
        "mission": mission,
        "mission_path": f".missions/{mission}.yml",
        "mission_digest": "e" * 64,
        "policy_digest": "f" * 64,
        "event": "manual",
        "commit": "",
        "invoker": "tester",
        "runner_version": "0.1.0",
    }


def gc_pruned(runs: list[str] | None = None) -> dict[str, Any]:
    return {"runs": runs or [], "containers": 0, "volumes": 0}
