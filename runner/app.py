"""What every command receives: the global options, resolved once, and the state dir's
place relative to the repository.

The state dir holds the signing key and the ledger, so a step must never read it: it is
refused when its real path is inside the repository's working tree (which every workspace
copies), except the real directory `<repo>/.runner`, which the copy always leaves out. A
committed `.runner -> ci-cache` symlink, or `--state-dir ci-cache`, would otherwise put the
key into what steps see. `App.private_paths()` says what a workspace copy must leave out
whatever the state dir is.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from runner.errors import InvalidInput
from runner.output import Output

STATE_IN_REPO = ".runner"  # the one state dir allowed inside the repository


@dataclass(frozen=True)
class Trust:
    """Where the trusted configuration comes from (`--trusted-ref`, `--policy`,
    `--catalog`; see runner.trusted)."""

    ref: str | None = None
    policy: Path | None = None
    catalog: Path | None = None


@dataclass(frozen=True)
class Engine:
    """Which backend runs the steps (`--backend`, RUNNER_BACKEND: `docker`, the default,
    or `kubernetes`) and the Kubernetes backend's options (SPEC 10; README "Kubernetes")."""

    backend: str = "docker"
    namespace: str | None = None  # --namespace (default: the kubeconfig context's)
    image_registry: str | None = None  # --image-registry PREFIX: push, pin by digest
    load_images: str | None = None  # --load-images SOCKET: a development node's containerd
    storage_class: str | None = None  # the claims' class (None: the cluster's default)
    exec_storage_class: str | None = None  # the workspace class of jobs granted exec


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

    def _state_in_repo(self) -> str | None:
        """The state dir's real path relative to the repository, None when outside."""
        root = Path(os.path.realpath(self.root))
        real = Path(os.path.realpath(self.state_dir))
        try:
            rel = real.relative_to(root)
        except ValueError:
            return None
        return rel.as_posix()

    def check_state_dir(self) -> None:
        """InvalidInput when steps could read the state dir (see the module docstring)."""
        given = self.state_dir if self.state_dir.is_absolute() else self.root / self.state_dir
        rel = self._state_in_repo()
        lexical = os.path.normpath(given)
        if rel is None:
            return
        own = self.root / STATE_IN_REPO
        try:
            own_is_link = stat.S_ISLNK(os.lstat(own).st_mode)
        except FileNotFoundError:
            own_is_link = False
        if own_is_link:
            raise InvalidInput(
                f"{STATE_IN_REPO} in the repository is a symlink (to "
                f"{os.readlink(own)!r}): runner would write its signing key and ledger where "
                "it points, which a workspace copy may include",
                hint="remove the link, or keep the state outside the repository with "
                "--state-dir (or RUNNER_STATE_DIR)",
            )
        if rel == STATE_IN_REPO and lexical == os.path.normpath(own):
            links = sorted(e.name for e in own.iterdir() if e.is_symlink()) if own.is_dir() else []
            if links:
                raise InvalidInput(
                    f"{STATE_IN_REPO}/{links[0]} is a symlink: runner keeps its key, ledger "
                    "and runs only in real directories it made",
                    hint=f"remove {STATE_IN_REPO}/{links[0]}",
                )
            return
        shown = rel or "."
        raise InvalidInput(
            f"the state dir {self.state_dir} is inside the repository ({shown}): every "
            "workspace copies the repository, so steps could read the signing key and the "
            "ledger",
            hint=f"use {STATE_IN_REPO} (which workspaces never hold) or a directory outside "
            "the repository (--state-dir or RUNNER_STATE_DIR)",
        )

    def private_paths(self) -> tuple[str, ...]:
        """Repository-relative paths a workspace copy must never hold: the state dir's,
        wherever it is (on top of `.runner` and `.git`, which a copy always leaves out)."""
        rel = self._state_in_repo()
        return (rel,) if rel else ()
