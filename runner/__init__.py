"""runner: GitHub-Actions-style missions in hardened containers, under a default-deny policy."""

from __future__ import annotations

__version__ = "0.1.0"
