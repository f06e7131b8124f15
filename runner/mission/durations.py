"""Durations as missions and the command line write them: "500ms", "30s", "2m", "1h", "7d";
and as Docker's options do (Go's form, units joined: "1m30s", "500ms"), `parse_go_duration`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MISSION_UNITS: Mapping[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
AGE_UNITS: Mapping[str, float] = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)\Z")
GO_UNITS: Mapping[str, float] = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 0.001, "s": 1.0}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


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


def parse_go_duration(text: str) -> float | None:
    """Seconds of a Go duration as Docker's `--health-interval` takes it ("10s", "1m30s",
    "1.5h", "0"); None when `text` is not one (Go also refuses a bare number but 0)."""
    text = text.strip()
    if text == "0":
        return 0.0
    total, at = 0.0, 0
    for match in _GO_PART.finditer(text):
        if match.start() != at:
            return None
        unit = match.group(2)
        total += float(match.group(1)) * {**GO_UNITS, "m": 60.0, "h": 3600.0}[unit]
        at = match.end()
    return total if text and at == len(text) else None
