"""What every command receives: the global options, resolved once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.output import Output


@dataclass
class App:
    state_dir: Path  # `.runner` by default; --state-dir or RUNNER_STATE_DIR
    out: Output
    debug: bool = False
    anchor_store: Path | None = None  # --anchor-store or RUNNER_ANCHOR_STORE (None: default)

    @property
    def root(self) -> Path:
        """The repository the user runs in: the working directory."""
        return Path.cwd()
