"""Durations as missions and the command line write them: "500ms", "30s", "2m", "1h", "7d"."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MISSION_UNITS: Mapping[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
AGE_UNITS: Mapping[str, float] = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)\Z")


def parse_duration(value: Any, units: Mapping[str, float] = MISSION_UNITS) -> float | None:
    """Seconds of a number with one of `units` ("30s"), or of a plain non-negative number;
    None when `value` is not such a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if match and match.group(2) in units:
            return float(match.group(1)) * units[match.group(2)]
    return None
