"""The append-only, hash-chained, Merkle-checkpointed audit ledger: the writer.
(The files and their readers are in runner/audit/files.py; the entry types and their
fields in runner/audit/entries.py; runner's record of what it last signed in
runner/audit/head.py.)

An entry is the caller's fields plus `v`, `log`, `seq`, `ts` (unix milliseconds), `type`,
`run_id`, `kid` (the signing key's id), `prev` (hex leaf hash of the previous entry, 64
zeros at genesis). Its leaf hash is SHA-256(0x00 || the stored line bytes, without the
newline): stored bytes are hashed, never a re-serialisation. The leaves chain through
`prev` and form an RFC 6962 tree whose root each checkpoint signs. A line may be at most
`MAX_ENTRY_BYTES` (1 MiB); `append` refuses a longer entry before writing anything.

The writer verifies before it signs. Opening the ledger starts from runner's record of
the last checkpoint it signed (kept beside the private key, outside the ledger
directory) and checks the ledger still extends it: the same origin, at least the bytes
that checkpoint covered, the line ending there hashing to the record's last leaf, the
record's note still in ledger/checkpoints, and every line after it parsing, numbered and
linked in order. Anything else raises `LedgerRefused` (exit 1) with a finding code,
before anything is appended or signed. The tree it signs is built from the record's
Merkle frontier and the leaves it hashed itself since: it never signs a prefix it did not
compute, so a rewrite the checks above cannot see (a changed entry whose successors were
left alone) is never sealed either; `audit verify` reports it. With no record:

    an empty ledger           a new one: its empty tree is recorded at once
    entries, no key           a writer that never signs (`gc` without a key) goes on
    entries, a key            refused (NO_RECORD): copy the record along with the state
                              directory, or `runner audit checkpoint --adopt` after
                              `runner audit verify` passed (that passes the root verify
                              proved; the writer re-hashes every line and must find it)

A signing key that the ledger says was rotated away or revoked (runner/audit/keyevents.py)
signs nothing: opening the ledger with it raises `SigningKeyRetired`.

Appending: take the flock, read only what other writers added since this handle last
looked (checked as above), cut off a torn tail (quarantine, truncate, record a
`recovery` entry), check the entry against its declaration (`entries.check`: an
undeclared type or field is a TypeError, a bug in the writer), write the whole line,
`fdatasync` it, and only then return. A failed write is truncated away and raised; a
failed sync leaves the ledger object unusable (the page cache can no longer be trusted).
A checkpoint is signed every 1,000 entries, on `checkpoint()` and on `close()` when
entries were added; each is appended to ledger/checkpoints, synced, and then recorded.

The ledger side also records what happens to the signing keys: `rotate_key` (seal with
the old key, `key.rotated` signed by both, switch, seal with the new one: the record
moves to the new key) and `revoke_key` (`key.revoked`); `runner.audit.keys` only keeps
the key files.
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
from typing import Any, NoReturn

from runner.audit import canonical, entries
from runner.audit import checkpoint as notes
from runner.audit.continuity import Problem, check_head, check_line, line_ending_at
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
    MAX_ENTRY_BYTES,
    ORIGIN,
    POLICY,
    QUARANTINE,
    Lines,
    LongLine,
    StoredLine,
    TornTail,
    first_entry_origin,
    iter_entries,
    last_checkpoint,
    last_policy,
    ledger_dir,
    lines_of,
    read_blocks,
    read_origin,
    torn_note_tail,
)
from runner.audit.findings import Code, LedgerFinding, LedgerRefused
from runner.audit.head import SignedHead, read_head, record_path, write_head
from runner.audit.keyevents import KEY_TYPES, KeyHistory
from runner.audit.keys import PublicKey, Signer, load_signer, make_current, retire, save
from runner.audit.merkle import EMPTY_ROOT, Frontier, leaf_hash
from runner.durable import atomic_output, fsync_dir, write_atomic
from runner.errors import InvalidInput, StorageFailed
from runner.secrets.redact import Redactor, redact_record

__all__ = [
    "CHECKPOINTS",
    "ENTRIES",
    "GENESIS",
    "MAX_ENTRY_BYTES",
    "ORIGIN",
    "Appended",
    "Ledger",
    "LedgerRefused",
    "LedgerUnavailable",
    "SigningKeyRetired",
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


class LedgerUnavailable(StorageFailed):
    """The ledger cannot be written (disk full, I/O error): nothing may proceed (exit 4)."""


class SigningKeyRetired(InvalidInput):
    """The signing key was rotated away or revoked in the ledger: it signs nothing (exit 2)."""


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


def default_origin(repo: Path) -> str:
    """`runner/<the repository's directory name>/<16 random hex digits>`."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", repo.resolve().name) or "repo"
    return f"runner/{name}/{secrets.token_hex(8)}"


def _problem(
    code: Code, message: str, *, seq: int | None = None, hint: str | None = None
) -> Problem:
    return Problem(LedgerFinding(code, seq, None, message), hint)


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
        state_dir: Path,
        directory: Path,
        origin: str,
        signer: Signer | None,
        lock_fd: int,
        redactor: Redactor | None = None,
    ) -> None:
        self.state_dir = state_dir
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
        self._keys = KeyHistory()
        self._recorded = -1  # the size of the tree runner's record holds (-1: no record)
        self._broken: str | None = None
        self._refused: LedgerRefused | None = None
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
        repo: Path | None = None,
        adopt: bytes | None = None,
        redactor: Redactor | None = None,
    ) -> Ledger:
        """Open (or make) the ledger in `state_dir` and check it against runner's record
        (see the module docstring): LedgerRefused when it does not extend it. A new
        ledger's origin names `repo` (default: the state directory's parent). `adopt`:
        the root `audit verify` proved, for a ledger runner has no record of. With a
        `redactor`, every string value appended is redacted first."""
        directory = ledger_dir(state_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LedgerUnavailable.writing(directory, exc, "the audit ledger in") from exc
        ledger: Ledger | None = None
        try:
            with _flock(lock_fd):
                existing = read_origin(directory)
                if existing is None:
                    # a lost origin file is remade from the entries it named
                    named = repo if repo is not None else state_dir.resolve().parent
                    existing = first_entry_origin(directory) or origin or default_origin(named)
                    if not existing.isprintable() or not existing.strip():
                        raise InvalidInput(f"ledger origin {existing!r} is not printable text")
                    write_atomic(directory / ORIGIN, (existing + "\n").encode(), durable=True)
                elif origin is not None and origin != existing:
                    raise InvalidInput(
                        f"the ledger in {directory} belongs to {existing!r}, not {origin!r}"
                    )
                ledger = cls(state_dir, directory, existing, signer, lock_fd, redactor)
                ledger._open_entries()
                ledger._establish(adopt)
                ledger._check_signer()
        except OSError as exc:
            if ledger is not None and ledger._fd >= 0:
                os.close(ledger._fd)
            os.close(lock_fd)
            raise LedgerUnavailable.writing(directory, exc, "the audit ledger in") from exc
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

    def _establish(self, adopt: bytes | None) -> None:
        """Where this handle's tree starts, checked (module docstring), then caught up."""
        head = read_head(self.state_dir)
        if head is not None:
            self._start_from(head)
        elif self._is_new():
            if self.signer is not None:
                self._record(notes.sign(notes.Checkpoint(self.origin, 0, EMPTY_ROOT), self.signer))
            return
        elif self.signer is None:
            self._load_cache()  # a writer that never signs: the cache is enough
        elif adopt is None:
            self._refuse(
                _problem(
                    Code.NO_RECORD,
                    f"runner has no record of the last checkpoint it signed for this ledger "
                    f"({record_path(self.state_dir)} is missing), so it cannot tell whether "
                    "its entries were rewritten since: it will not sign them",
                    hint="if this state directory was copied, copy the record along with it "
                    "(it lives beside the keys); if an older runner wrote this ledger, check "
                    "it with `runner audit verify [--anchor FILE]`, then adopt it with "
                    "`runner audit checkpoint --adopt`",
                )
            )
        self._catch_up(expect=adopt if head is None and self.signer is not None else None)

    def _is_new(self) -> bool:
        if os.fstat(self._fd).st_size:
            return False
        try:
            return (self.directory / CHECKPOINTS).stat().st_size == 0
        except FileNotFoundError:
            return True

    def _start_from(self, head: SignedHead) -> None:
        """Take the record's tree, once the ledger is seen to extend it."""
        record = record_path(self.state_dir)
        problem = check_head(self._fd, self.directory, self.origin, head, record)
        if problem is not None:
            self._refuse(problem)
        self._frontier = head.frontier.copy()
        self._size, self._offset, self._last = head.size, head.offset, head.last
        self._keys = KeyHistory.of(head.retired)
        self._recorded = head.size

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
        if leaf_hash(line_ending_at(self._fd, offset)) != last:
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
        self._keys = KeyHistory()

    def _save_cache(self) -> None:
        if self._size:
            document = {
                "frontier": self._frontier.serialize(),
                "offset": self._offset,
                "last": self._last.hex(),
            }
            _write_cache(self.directory / FRONTIER, document)

    def _check_signer(self) -> None:
        if self.signer is None:
            return
        retired = self._keys.retired.get(self.signer.public.raw)
        if retired is not None:
            raise SigningKeyRetired(
                f"signing key {self.signer.public.key_id} ({self.signer.source}) was "
                f"{retired.how} in the audit ledger at seq {retired.seq}: it must not sign "
                "anything more",
                hint="use the key that replaced it (if a `runner keys rotate` was "
                "interrupted, name the new key in .runner/keys/current), or set up a new one: "
                "remove .runner/keys/current and run `runner keys init`",
            )

    def _refuse(self, problem: Problem) -> NoReturn:
        refused = LedgerRefused(
            problem.finding,
            hint=problem.hint
            or "nothing was signed; run `runner audit verify` to see what changed, and keep "
            "the ledger as it is for the investigation",
        )
        self._refused = refused
        raise refused

    # -- reading what others wrote ----------------------------------------------------

    def _catch_up(self, *, expect: bytes | None = None) -> None:
        """Check and hash the lines appended since this handle last looked; cut off a torn
        tail. Lines are read in bounded blocks, so a huge line costs no memory. `expect`:
        the root the complete lines must make (a ledger being adopted)."""
        end = os.fstat(self._fd).st_size
        if end < self._offset:
            self._refuse(
                _problem(
                    Code.TRUNCATED,
                    f"{ENTRIES} was cut to {end} bytes under a live writer that had hashed "
                    f"{self._offset}: entries were removed",
                    seq=self._size,
                )
            )
        torn: TornTail | None = None
        for block in read_blocks(self._fd, self._offset, end, seq=self._size, chunk=_CHUNK):
            if isinstance(block, Lines):
                for line in lines_of(block):
                    self._take(line)
            elif isinstance(block, LongLine):
                self._take(StoredLine(block.seq, block.offset, block.length, None, block.leaf))
            else:
                torn = block
        if expect is not None and self.root() != expect:
            self._refuse(
                _problem(
                    Code.NO_RECORD,
                    "the ledger is not the one `audit verify` just proved (it changed "
                    "meanwhile): nothing was adopted",
                    hint="run `runner audit checkpoint --adopt` again",
                )
            )
        if torn is not None:
            self._recover(torn.offset, end)

    def _take(self, line: StoredLine) -> None:
        """One line another writer (or an earlier run) appended: checked, then hashed."""
        raw, problem = check_line(line, self.origin, self._last)
        if problem is not None:
            self._refuse(problem)
        assert line.data is not None
        if raw.get("type") in KEY_TYPES:
            self._keys.apply(raw, line.seq)
        leaf = leaf_hash(line.data)
        self._frontier.append(leaf)
        self._last = leaf
        self._size = self._frontier.size
        self._offset = line.offset + line.length + 1

    def _recover(self, start: int, end: int) -> None:
        """A torn last line (a crash mid-write): quarantine it, truncate, record it."""
        self._quarantine(self._fd, ENTRIES, start, end)

    def _quarantine(self, fd: int, file: str, start: int, end: int) -> None:
        """Copy the torn tail [start, end) of `file` aside (in bounded blocks), cut it off,
        and record the repair as a `recovery` entry."""
        quarantine = self.directory / QUARANTINE
        quarantine.mkdir(exist_ok=True)
        name = f"{file}.{start}.{_now_ms()}.torn"
        digest = hashlib.sha256()
        with atomic_output(quarantine / name, durable=True) as out:
            position = start
            while position < end:
                block = os.pread(fd, min(_CHUNK, end - position), position)
                if not block:
                    break
                digest.update(block)
                out.write(block)
                position += len(block)
        os.ftruncate(fd, start)
        os.fsync(fd)
        fields = {
            "file": file,
            "offset": start,
            "length": end - start,
            "sha256": digest.hexdigest(),
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
        An entry longer than MAX_ENTRY_BYTES is refused (InvalidInput), nothing written.
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
            if self._size % CHECKPOINT_EVERY == 0 and self._may_sign():
                self._checkpoint_locked()
        return appended

    def _usable(self) -> None:
        if self._closed:
            raise InvalidInput("the ledger is closed")
        if self._refused is not None:
            raise self._refused
        if self._broken is not None:
            raise LedgerUnavailable(self._broken)

    def _may_sign(self) -> bool:
        signer = self.signer
        return signer is not None and signer.public.raw not in self._keys.retired

    def _append_locked(
        self, type: str, run_id: str | None, fields: Mapping[str, Any], cosigners: Sequence[Signer]
    ) -> Appended:
        entries.check(type, fields)  # every entry, the ledger's own (recovery) too
        kid = self.signer.public.key_id if self.signer else None
        line = make_line(
            self.origin, self._size, self._last.hex(), type, run_id, kid, fields, cosigners
        )
        if len(line) > MAX_ENTRY_BYTES:
            raise InvalidInput(
                f"the {type} ledger entry would be {len(line)} bytes, over the limit of "
                f"{MAX_ENTRY_BYTES} bytes per entry: it was not recorded",
                hint="an entry this large is a runner bug or a policy/mission far beyond "
                "any real one; shrink it",
            )
        start = self._offset
        try:
            _write_all(self._fd, line + b"\n")
        except OSError as exc:
            self._undo(start)
            raise LedgerUnavailable(
                f"could not write to the audit ledger {self.directory / ENTRIES}: "
                f"{exc.strerror or exc}; the {type} entry was not recorded; free disk "
                "space, then run again"
            ) from exc
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            self._broken = (
                f"fsync of the audit ledger {self.directory / ENTRIES} failed "
                f"({exc.strerror or exc}); the {type} entry was not acknowledged; free disk "
                "space and check the disk, then run again"
            )
            self._undo(start)
            raise LedgerUnavailable(self._broken) from exc
        leaf = leaf_hash(line)
        self._frontier.append(leaf)
        self._last = leaf
        self._size = self._frontier.size
        self._offset = start + len(line) + 1
        if type in KEY_TYPES:
            self._keys.apply(canonical.loads(line), self._size - 1)
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
        self._check_signer()
        path = self.directory / CHECKPOINTS
        created = not path.exists()
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LedgerUnavailable.writing(path, exc, "a checkpoint to") from exc
        try:
            end = os.fstat(fd).st_size
            torn = torn_note_tail(fd, end)
            if torn < end:  # first, so that the tree signed includes its recovery entry
                self._quarantine(fd, CHECKPOINTS, torn, end)
            current = notes.Checkpoint(self.origin, self._size, self._frontier.root())
            last = self._last_note()
            if (
                last is not None
                and last.checkpoint == current
                and any(s.name == self.signer.name for s in last.signatures)
            ):
                if self._recorded != current.size:
                    self._record(last.text)
                return last.text
            note = notes.sign(current, self.signer)
            try:
                _write_all(fd, (note + "\n").encode())
                os.fsync(fd)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, torn)
                raise LedgerUnavailable.writing(path, exc, "a checkpoint to") from exc
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.directory)
        self._record(note)
        self._save_cache()
        return note

    def _record(self, note: str) -> None:
        """Runner's record of what it just signed (after the note reached the file)."""
        parsed = notes.parse(note).checkpoint
        assert parsed.size == self._frontier.size, "a record of another tree than the note's"
        head = SignedHead(
            note, parsed, self._frontier.copy(), self._offset, self._last, dict(self._keys.retired)
        )
        try:
            write_head(self.state_dir, head)
        except OSError as exc:
            raise LedgerUnavailable.writing(
                record_path(self.state_dir), exc, "runner's record of its checkpoint,"
            ) from exc
        self._recorded = head.size

    def _last_note(self) -> notes.SignedNote | None:
        return last_checkpoint(self.directory)

    # -- closing ----------------------------------------------------------------------

    def close(self) -> None:
        """Checkpoint when entries were added since the last checkpoint; release files.
        A handle that was refused, broken, or whose key was retired signs nothing."""
        if self._closed:
            return
        try:
            if self._broken is None and self._refused is None and self._may_sign():
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
    (old and new public keys, signed by both), switch, seal with the new key (runner's
    record moves to it), and delete the old private key. The old .pub stays trusted: it
    verifies the history it signed, and `audit verify` reports any checkpoint it signs
    after the rotation (REVOKED_KEY)."""
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
    `by` (a trusted key other than the revoked one, itself neither rotated away nor
    revoked). A ledger handle whose signer is `key` signs nothing more."""
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
