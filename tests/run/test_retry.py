from __future__ import annotations

import random

from runner.mission.model import Retry
from runner.run.retry import attempt_delay, step_rng


def test_backoffs_without_jitter() -> None:
    rng = random.Random(0)
    fixed = Retry(max_attempts=4, backoff="fixed", delay_s=2)
    linear = Retry(max_attempts=4, backoff="linear", delay_s=2)
    expo = Retry(max_attempts=4, backoff="exponential", delay_s=2, max_delay_s=5)
    assert [attempt_delay(fixed, n, rng) for n in (1, 2, 3)] == [2, 2, 2]
    assert [attempt_delay(linear, n, rng) for n in (1, 2, 3)] == [2, 4, 6]
    assert [attempt_delay(expo, n, rng) for n in (1, 2, 3)] == [2, 4, 5]


def test_jitter_stays_in_band_and_is_reproducible_by_seed() -> None:
    retry = Retry(max_attempts=5, backoff="fixed", delay_s=10, jitter=0.2)
    first = [attempt_delay(retry, 1, step_rng(7, "job", 0)) for _ in range(3)]
    assert len(set(first)) == 1
    assert 8 <= first[0] <= 12 and first[0] != 10
    other_step = attempt_delay(retry, 1, step_rng(7, "job", 1))
    assert other_step != first[0]
