"""Time as the executor and the engine see it: a `Clock` to read and to wait on.

Step deadlines, timeouts, durations and retry backoff read `Clock.monotonic()` and wait
with `Clock.wait(event, seconds)`, never `time` directly, so a test can run them on a
clock it controls. It lives with the engine because the two must agree: a backend's
`wait(cid, timeout_s)` lets that much of the same clock pass (`fake.FakeClock` is the
controllable one; `SystemClock` is real time).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds since an arbitrary point; never goes back."""
        ...

    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        """Wait until `event` is set (True) or `timeout_s` passed (False)."""
        ...


class SystemClock:
    """Real time."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        return event.wait(timeout_s)
