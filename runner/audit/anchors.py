"""The anchor store: every run's final checkpoint, kept where neither the steps nor
whoever can rewrite the ledger directory (or the whole state directory) can reach it.

    <store>/<origin, percent-encoded>.notes   one ledger's checkpoints, appended one
                                              after another, each followed by a blank
                                              line (the format of ledger/checkpoints)

The store is a directory outside the repository and the state directory: by default
`$XDG_DATA_HOME/runner/anchors` (`~/.local/share/runner/anchors`), the invoking user's
own data, which no step container mounts; `--anchor-store DIR` / `RUNNER_ANCHOR_STORE`
puts it elsewhere (a mounted compliance volume, a directory a CI cache keeps). A store
given explicitly inside the repository or the state directory is refused; the default
landing there (runner started in the home directory itself) is skipped with a warning.

Each `runner run` appends its final checkpoint, `runner audit checkpoint` the one it
signs (a note already last in the file is not appended twice). `runner audit verify`
reads this ledger's file when it exists and proves the ledger extends every checkpoint
in it: a rewrite or truncation by someone holding the signing key is caught, as long as
the store was out of their reach.

Why a directory and not a git ref (`refs/runner/checkpoints`): a directory works for
any repository, git or not, with no git binary, and is written with one fsync'd append;
a ref lives in the repository's `.git`, beside the default state directory (`.runner/`):
whoever can rewrite the one can rewrite the other, and it only travels when someone
configures pushing it. To carry anchors with the repository, commit the output of
`runner audit checkpoint --export`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from runner.audit import checkpoint as notes
from runner.audit.files import first_entry_origin, ledger_dir, read_origin
from runner.audit.verify import AnchorNote
from runner.durable import fsync_dir, write_fd
from runner.errors import InvalidInput, StorageFailed

ENV_VAR = "RUNNER_ANCHOR_STORE"
SUFFIX = ".notes"
_MAX_NAME = 200


def default_store(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    data = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local/share")
    return Path(data) / "runner" / "anchors"


def resolve_store(
    explicit: Path | None, *, repo: Path, state_dir: Path
) -> tuple[Path | None, str | None]:
    """(the store to use, or None; a warning when the default had to be skipped). A store
    given explicitly inside the repository or the state directory is InvalidInput."""
    store = explicit if explicit is not None else default_store()
    problem = _inside(store, repo, state_dir)
    if problem is None:
        return store, None
    if explicit is not None:
        raise InvalidInput(
            f"the anchor store {store} is inside {problem}: a step or whoever rewrites the "
            "ledger could rewrite it too",
            hint=f"give --anchor-store (or {ENV_VAR}) a directory outside both",
        )
    return None, (
        f"the default anchor store {store} is inside {problem}, so it is not used; set "
        f"--anchor-store (or {ENV_VAR}) to a directory outside it"
    )


def _inside(store: Path, repo: Path, state_dir: Path) -> str | None:
    target = store.resolve()
    for name, place in (("the state directory", state_dir), ("the repository", repo)):
        if target.is_relative_to(place.resolve()):
            return f"{name} ({place})"
    return None


def anchor_file(store: Path, origin: str) -> Path:
    """This ledger's file in the store; the name cannot leave the store, whatever the
    origin says (the ledger's origin file is not trusted)."""
    name = urllib.parse.quote(origin, safe="")
    if len(name) > _MAX_NAME:
        name = "sha256-" + hashlib.sha256(origin.encode()).hexdigest()
    return store / (name + SUFFIX)


def append(store: Path, note: str) -> Path:
    """Append a signed checkpoint note to its ledger's file (once), durably; returns the
    file. StorageFailed when it cannot be written."""
    origin = notes.parse(note).checkpoint.origin
    path = anchor_file(store, origin)
    data = (note + "\n").encode("utf-8")
    try:
        store.mkdir(parents=True, exist_ok=True, mode=0o700)
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            end = os.fstat(fd).st_size
            if end < len(data) or os.pread(fd, len(data), end - len(data)) != data:
                _write_all(fd, data, end)
                os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(store)
    except OSError as exc:
        raise StorageFailed.writing(path, exc, "the anchor store file") from exc
    return path


def _write_all(fd: int, data: bytes, end: int) -> None:
    """The whole note, or nothing: a failed write is cut off again."""
    try:
        write_fd(fd, data)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, end)
        raise


def read(store: Path, origin: str) -> tuple[Path, list[AnchorNote]]:
    """This ledger's file in the store and its complete notes (none when it is absent)."""
    path = anchor_file(store, origin)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return path, []
    except OSError as exc:
        raise InvalidInput(f"cannot read the anchor store file {path}: {exc.strerror}") from None
    found = [
        AnchorNote(text[:-1] if text is not None else None, str(path), offset)
        for offset, text, raw in notes.split_notes(data)
        if notes.note_complete(raw)
    ]
    return path, found


def for_ledger(
    explicit: Path | None, *, repo: Path, state_dir: Path
) -> tuple[Path | None, list[AnchorNote]]:
    """The state directory's ledger's file in the anchor store (None: no usable store, or
    a ledger with no origin yet) and the checkpoints in it."""
    store, _ = resolve_store(explicit, repo=repo, state_dir=state_dir)
    directory = ledger_dir(state_dir)
    origin = read_origin(directory) or first_entry_origin(directory)
    if store is None or origin is None:
        return None, []
    return read(store, origin)


def keep(
    explicit: Path | None, note: str, *, repo: Path, state_dir: Path
) -> tuple[Path | None, str | None]:
    """Append a checkpoint runner just signed to the anchor store: (the store's file, or
    None; a warning to show, or None). A store that cannot be written is a warning: the
    checkpoint is signed and in the ledger, only its copy out of reach is missing."""
    store, skipped = resolve_store(explicit, repo=repo, state_dir=state_dir)
    if store is None:
        return None, f"not anchored: {skipped}"
    try:
        return append(store, note), None
    except StorageFailed as exc:
        return None, f"not anchored: {exc}"
