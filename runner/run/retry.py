"""Retry delays: fixed, linear or exponential backoff with jitter, reproducible by seed."""

from __future__ import annotations

import hashlib
import random

from runner.mission.model import Retry


def attempt_delay(retry: Retry, attempt: int, rng: random.Random) -> float:
    """Seconds to wait before attempt `attempt + 1`, after `attempt` (1-based) failed."""
    if retry.backoff == "fixed":
        base = retry.delay_s
    elif retry.backoff == "linear":
        base = retry.delay_s * attempt
    else:
        base = retry.delay_s * (2 ** (attempt - 1))
    if retry.max_delay_s is not None:
        base = min(base, retry.max_delay_s)
    if retry.jitter > 0 and base > 0:
        base *= 1 + rng.uniform(-retry.jitter, retry.jitter)
    return max(0.0, base)


def step_rng(seed: int | None, job_key: str, step_index: int) -> random.Random:
    """A generator per step: `--retry-seed` makes every step's jitter reproducible."""
    if seed is None:
        return random.Random()
    material = f"{seed}\x00{job_key}\x00{step_index}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))
