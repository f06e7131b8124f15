"""The append-only, hash-chained, Merkle-checkpointed audit ledger: the writer.
(The files and their readers are in runner/audit/files.py; the entry types and their
fields in runner/audit/entries.py.)

An entry is the caller's fields plus `v`, `log`, `seq`, `ts` (unix milliseconds), `type`,
`run_id`, `kid` (the signing key's id), `prev` (hex leaf hash of the previous entry, 64
zeros at genesis). Its leaf hash is SHA-256(0x00 || the stored line bytes, without the
newline): stored bytes are hashed, never a re-serialisation. The leaves chain through
`prev` and form an RFC 6962 tree whose root each checkpoint signs.

Appending: take the flock, read only what other writers added since this process last
looked (the caches make that a few lines), cut off a torn tail (quarantine, truncate,
record a `recovery` entry), check the entry against its declaration (`entries.check`: an
undeclared type or field is a TypeError, a bug in the writer), write the whole line,
`fdatasync` it, and only then return. A failed write is truncated away and raised; a
failed sync leaves the ledger object unusable (the page cache can no longer be trusted).
A checkpoint is signed every 1,000 entries, on `checkpoint()` and on `close()` when
entries were added.

The ledger side also records what happens to the signing keys: `rotate_key` (seal with
the old key, `key.rotated` signed by both, switch, seal with the new one) and
`revoke_key` (`key.revoked`); `runner.audit.keys` only keeps the key files.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from runner.audit import canonical, entries
from runner.audit import checkpoint as notes
from runner.audit.entries import (
    ENVELOPE,
    TYPE_NAME,
    KeyRevoked,
    KeyRotated,
    PolicyChanged,
    Recovery,
)
from runner.audit.files import (
    CHECKPOINTS,
    ENTRIES,
    FRONTIER,
    GENESIS,
    LOCK,
    ORIGIN,
    POLICY,
    QUARANTINE,
    first_entry_origin,
    iter_entries,
    last_checkpoint,
    last_policy,
    ledger_dir,
    read_origin,
    torn_note_tail,
)
from runner.audit.keys import PublicKey, Signer, load_signer, make_current, retire, save
from runner.audit.merkle import Frontier, leaf_hash
from runner.durable import fsync_dir, write_atomic
from runner.errors import EngineUnavailable, InvalidInput
from runner.secrets.redact import Redactor, redact_record

__all__ = [
    "CHECKPOINTS",
    "ENTRIES",
    "GENESIS",
    "ORIGIN",
    "Appended",
    "Ledger",
    "LedgerUnavailable",
    "iter_entries",
    "last_checkpoint",
    "last_policy",
    "ledger_dir",
    "load_signer",
    "make_line",
    "read_origin",
    "revoke_key",
    "rotate_key",
]

CHECKPOINT_EVERY = 1000
VERSION = 1  # the `v` of every entry
_CHUNK = 1 << 20


class LedgerUnavailable(EngineUnavailable):
    """The ledger cannot be written (disk full, I/O error): nothing may proceed (exit 4)."""


@dataclass(frozen=True)
class Appended:
    seq: int
    leaf: str  # hex leaf hash
    offset: int  # byte offset of the line in entries.jsonl


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a short write is not an error)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _write_cache(path: Path, document: Mapping[str, Any]) -> None:
    """A cache file: atomic replace, no fsync (it is checked before it is believed)."""
    with contextlib.suppress(OSError):
        write_atomic(path, json.dumps(document, sort_keys=True).encode("utf-8"))


def default_origin(state_dir: Path) -> str:
    repo = state_dir.resolve().parent.name or "repo"
    repo = re.sub(r"[^A-Za-z0-9._-]", "-", repo)
    return f"runner/{repo}/{secrets.token_hex(8)}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def make_line(
    origin: str,
    seq: int,
    prev: str,
    type: str,
    run_id: str | None,
    kid: str | None,
    fields: Mapping[str, Any],
    cosigners: Sequence[Signer] = (),
    ts: int | None = None,
) -> bytes:
    """The canonical bytes of one entry (without the newline). Cosigners sign the entry's
    canonical bytes without `signatures`; their signatures are then stored in it."""
    entry: dict[str, Any] = dict(fields)
    entry.update(
        v=VERSION,
        log=origin,
        seq=seq,
        ts=_now_ms() if ts is None else ts,
        type=type,
        run_id=run_id,
        kid=kid,
        prev=prev,
    )
    if cosigners:
        payload = canonical.dumps(entry)
        entry["signatures"] = [
            {"key": s.public.key_id, "sig": _b64(s.sign(payload))} for s in cosigners
        ]
    return canonical.dumps(entry)


class Ledger:
    """One writer's handle on the ledger; many processes may hold one at once."""

    def __init__(
        self,
        directory: Path,
        origin: str,
        signer: Signer | None,
        lock_fd: int,
        redactor: Redactor | None = None,
    ) -> None:
        self.directory = directory
        self.redactor = redactor  # every string value appended passes it (never a key)
        self.origin = origin
        self.signer = signer
        self._lock_fd = lock_fd
        self._fd = -1
        self._size = 0
        self._offset = 0
        self._frontier = Frontier()
        self._last = bytes.fromhex(GENESIS)
        self._broken: str | None = None
        self._closed = False
        # flock excludes other processes, not this one's threads: the executor appends
        # from a thread per job, so appends in one process also take this lock.
        self._mutex = threading.RLock()

    # -- opening ----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        signer: Signer | None,
        origin: str | None = None,
        redactor: Redactor | None = None,
    ) -> Ledger:
        directory = ledger_dir(state_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LedgerUnavailable(
                f"cannot open the audit ledger in {directory}: {exc.strerror}"
            ) from exc
        ledger: Ledger | None = None
        try:
            with _flock(lock_fd):
                existing = read_origin(directory)
                if existing is None:
                    # a lost origin file is remade from the entries it named
                    existing = first_entry_origin(directory) or origin or default_origin(state_dir)
                    if not existing.isprintable() or not existing.strip():
                        raise InvalidInput(f"ledger origin {existing!r} is not printable text")
                    write_atomic(directory / ORIGIN, (existing + "\n").encode(), durable=True)
                elif origin is not None and origin != existing:
                    raise InvalidInput(
                        f"the ledger in {directory} belongs to {existing!r}, not {origin!r}"
                    )
                ledger = cls(directory, existing, signer, lock_fd, redactor)
                ledger._open_entries()
                ledger._load_cache()
                ledger._catch_up()
        except BaseException:
            if ledger is not None and ledger._fd >= 0:
                os.close(ledger._fd)
            os.close(lock_fd)
            raise
        return ledger

    def _open_entries(self) -> None:
        path = self.directory / ENTRIES
        created = not path.exists()
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        if created:
            fsync_dir(self.directory)

    def _load_cache(self) -> None:
        """Start from the cached frontier if it checks out, else from the beginning."""
        self._reset()
        try:
            cached = json.loads((self.directory / FRONTIER).read_text(encoding="utf-8"))
            frontier = Frontier.deserialize(cached["frontier"])
            offset, last = cached["offset"], bytes.fromhex(cached["last"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        if not isinstance(offset, int) or not 0 < offset <= os.fstat(self._fd).st_size:
            return
        head = os.pread(self._fd, min(offset, 1 << 16), offset - min(offset, 1 << 16))
        if not head.endswith(b"\n"):
            return
        line = head[head.rfind(b"\n", 0, len(head) - 1) + 1 : -1]
        if leaf_hash(line) != last:
            return
        note = self._last_note()
        if (
            note is not None
            and note.checkpoint.size == frontier.size
            and note.checkpoint.root != frontier.root()
        ):
            return
        self._frontier, self._size, self._offset, self._last = (
            frontier,
            frontier.size,
            offset,
            last,
        )

    def _reset(self) -> None:
        self._frontier = Frontier()
        self._size = self._offset = 0
        self._last = bytes.fromhex(GENESIS)

    def _save_cache(self) -> None:
        if self._size:
            document = {
                "frontier": self._frontier.serialize(),
                "offset": self._offset,
                "last": self._last.hex(),
            }
            _write_cache(self.directory / FRONTIER, document)

    # -- reading what others wrote ----------------------------------------------------

    def _catch_up(self) -> None:
        """Hash the lines appended since this handle last looked; cut off a torn tail."""
        end = os.fstat(self._fd).st_size
        if end < self._offset:  # truncated under us: start over
            self._load_cache()
            end = os.fstat(self._fd).st_size
        pos, carry = self._offset, b""
        while pos + len(carry) < end:
            chunk = carry + os.pread(
                self._fd, min(_CHUNK, end - pos - len(carry)), pos + len(carry)
            )
            cut = chunk.rfind(b"\n") + 1
            for line in chunk[: cut - 1].split(b"\n") if cut else ():
                leaf = leaf_hash(line)
                self._frontier.append(leaf)
                self._last = leaf
            self._size = self._frontier.size
            pos += cut
            carry = chunk[cut:]
        self._offset = pos
        if pos < end:
            self._recover(pos, end)

    def _recover(self, start: int, end: int) -> None:
        """A torn last line (a crash mid-write): quarantine it, truncate, record it."""
        self._quarantine(self._fd, ENTRIES, start, end)

    def _quarantine(self, fd: int, file: str, start: int, end: int) -> None:
        """Copy the torn tail [start, end) of `file` aside, cut it off, and record the
        repair as a `recovery` entry."""
        data = os.pread(fd, end - start, start)
        quarantine = self.directory / QUARANTINE
        quarantine.mkdir(exist_ok=True)
        name = f"{file}.{start}.{_now_ms()}.torn"
        write_atomic(quarantine / name, data, durable=True)
        os.ftruncate(fd, start)
        os.fsync(fd)
        fields = {
            "file": file,
            "offset": start,
            "length": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "quarantined": f"{QUARANTINE}/{name}",
        }
        self._append_locked(Recovery.TYPE, None, fields, ())

    # -- appending --------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._size

    def root(self) -> bytes:
        return self._frontier.root()

    def append(
        self,
        type: str,
        run_id: str | None,
        fields: Mapping[str, Any],
        *,
        cosigners: Sequence[Signer] = (),
    ) -> Appended:
        """Record one entry, durably, before returning. Its type and fields must be
        declared in `runner.audit.entries` (TypeError otherwise). `cosigners` sign the
        entry's canonical bytes (without `signatures`); their signatures are stored in it.
        With a `redactor`, every string value of `fields` is redacted first (never a key,
        a status or a digest: `redact_record`): the ledger can never be cleaned."""
        if self.redactor is not None:
            fields = redact_record(fields, self.redactor)
        if not TYPE_NAME.fullmatch(type):
            raise InvalidInput(f"ledger entry type {type!r} is not a dotted lowercase name")
        clash = ENVELOPE.intersection(fields)
        if clash:
            raise InvalidInput(f"ledger entry fields {sorted(clash)} are reserved")
        canonical.dumps({"fields": fields, "run_id": run_id})  # refuse floats before locking
        self._usable()
        with self._mutex, _flock(self._lock_fd):
            self._catch_up()
            appended = self._append_locked(type, run_id, fields, cosigners)
            if self._size % CHECKPOINT_EVERY == 0 and self.signer is not None:
                self._checkpoint_locked()
        return appended

    def _usable(self) -> None:
        if self._closed:
            raise InvalidInput("the ledger is closed")
        if self._broken is not None:
            raise LedgerUnavailable(self._broken)

    def _append_locked(
        self, type: str, run_id: str | None, fields: Mapping[str, Any], cosigners: Sequence[Signer]
    ) -> Appended:
        entries.check(type, fields)  # every entry, the ledger's own (recovery) too
        kid = self.signer.public.key_id if self.signer else None
        line = make_line(
            self.origin, self._size, self._last.hex(), type, run_id, kid, fields, cosigners
        )
        start = self._offset
        try:
            _write_all(self._fd, line + b"\n")
        except OSError as exc:
            self._undo(start)
            raise LedgerUnavailable(
                f"could not write to the audit ledger {self.directory / ENTRIES}: "
                f"{exc.strerror or exc}; the {type} entry was not recorded",
                hint="free disk space, then run again",
            ) from exc
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            self._broken = (
                f"fsync of the audit ledger {self.directory / ENTRIES} failed "
                f"({exc.strerror or exc}); the {type} entry was not acknowledged"
            )
            self._undo(start)
            raise LedgerUnavailable(self._broken) from exc
        leaf = leaf_hash(line)
        self._frontier.append(leaf)
        self._last = leaf
        self._size = self._frontier.size
        self._offset = start + len(line) + 1
        if type == PolicyChanged.TYPE:
            _write_cache(
                self.directory / POLICY,
                {"offset": start, "leaf": leaf.hex(), "seq": self._size - 1},
            )
        return Appended(self._size - 1, leaf.hex(), start)

    def _undo(self, start: int) -> None:
        """Cut a partly written line off; if that fails too, the next append's
        torn-tail recovery will."""
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, start)
            os.fdatasync(self._fd)

    # -- checkpoints ------------------------------------------------------------------

    def checkpoint(self) -> str:
        """Sign and store a checkpoint of the current tree; return the note. When the last
        stored checkpoint already covers this tree and this key, that note is returned."""
        self._usable()
        with self._mutex, _flock(self._lock_fd):
            self._catch_up()
            return self._checkpoint_locked()

    def _checkpoint_locked(self) -> str:
        if self.signer is None:
            raise InvalidInput("no signing key: cannot sign a checkpoint")
        current = notes.Checkpoint(self.origin, self._size, self._frontier.root())
        last = self._last_note()
        if (
            last is not None
            and last.checkpoint == current
            and any(s.name == self.signer.name for s in last.signatures)
        ):
            return last.text
        note = notes.sign(current, self.signer)
        path = self.directory / CHECKPOINTS
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            end = os.fstat(fd).st_size
            torn = torn_note_tail(fd, end)
            if torn < end:
                self._quarantine(fd, CHECKPOINTS, torn, end)
            try:
                _write_all(fd, (note + "\n").encode())
                os.fsync(fd)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, torn)
                raise LedgerUnavailable(
                    f"could not write a checkpoint to {path}: {exc.strerror or exc}"
                ) from exc
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.directory)
        self._save_cache()
        return note

    def _last_note(self) -> notes.SignedNote | None:
        return last_checkpoint(self.directory)

    # -- closing ----------------------------------------------------------------------

    def close(self) -> None:
        """Checkpoint when entries were added since the last checkpoint; release files."""
        if self._closed:
            return
        try:
            if self._broken is None and self.signer is not None:
                with self._mutex, _flock(self._lock_fd):
                    self._catch_up()
                    last = self._last_note()
                    if self._size and (last is None or last.checkpoint.size != self._size):
                        self._checkpoint_locked()
        finally:
            self._closed = True
            os.close(self._fd)
            os.close(self._lock_fd)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- the signing keys' history -------------------------------------------------------------


def rotate_key(ledger: Ledger, state_dir: Path, root: Path, old: Signer) -> Signer:
    """Replace `old` with a new key: seal the ledger with the old key, record `key.rotated`
    (old and new public keys, signed by both), switch, seal with the new key, and delete
    the old private key. The old .pub stays trusted: it verifies the history it signed,
    and `audit verify` reports any checkpoint it signs after the rotation (REVOKED_KEY)."""
    if ledger.signer is None or ledger.signer.public != old.public:
        raise InvalidInput("the ledger must be open with the key being rotated")
    if ledger.size:
        ledger.checkpoint()
    new = save(state_dir, root, Signer.generate())
    fields = {"old": old.public.vkey(), "new": new.public.vkey()}
    ledger.append(KeyRotated.TYPE, None, fields, cosigners=(old, new))
    ledger.signer = new
    make_current(state_dir, new)
    ledger.checkpoint()
    retire(state_dir, old)
    return new


def revoke_key(ledger: Ledger, key: PublicKey, reason: str, by: Signer) -> Appended:
    """Record that `key` must not be trusted for anything after this entry, signed by
    `by` (a trusted key other than the revoked one)."""
    if by.public == key:
        raise InvalidInput(f"key {key.key_id} cannot revoke itself; sign with another key")
    fields = {"key": key.vkey(), "by": by.public.vkey(), "reason": reason}
    return ledger.append(KeyRevoked.TYPE, None, fields, cosigners=(by,))


@contextlib.contextmanager
def _flock(fd: int) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
