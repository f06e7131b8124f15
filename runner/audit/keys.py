"""Ed25519 signing keys: where they live, how they are named, which ones are trusted.

    <state_dir>/keys/<name>.pem     the private key (PKCS#8 PEM, mode 0600, dir 0700)
    <state_dir>/keys/current        the name of the key in use
    <repo>/policies/keys/<name>.pub the public key, trusted by `audit verify`; commit it

`RUNNER_SIGNING_KEY` (a PEM private key) overrides the files, for CI. A key's name is
derived from its public key (`runner-` + 12 hex digits of its SHA-256), so a key from the
environment and the same key from a file have the same name. A `.pub` file holds one
line in the signed-note verifier-key format (`<name>+<key id hex>+<base64(0x01 || key)>`,
as C2SP and Go's `sumdb/note` use); a PEM public key is accepted too.

The key id is SHA-256(name || "\\n" || 0x01 || public key)[:4], the signed-note key hash.
Trust comes only from the `.pub` files in the directory given to `load_trusted`, never
from the ledger.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from runner import repo_files
from runner.durable import fsync_dir, write_atomic, write_new
from runner.errors import InvalidInput, StorageFailed
from runner.trusted import KEY_BYTES

ENV_VAR = "RUNNER_SIGNING_KEY"
ALG_ED25519 = b"\x01"
PUB_DIR = Path("policies") / "keys"


def key_hash(name: str, raw_public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ALG_ED25519 + raw_public).digest()[:4]


def derived_name(raw_public: bytes) -> str:
    return "runner-" + hashlib.sha256(raw_public).hexdigest()[:12]


def valid_name(name: str) -> bool:
    return bool(name) and name.isprintable() and not any(c.isspace() or c == "+" for c in name)


@dataclass(frozen=True)
class PublicKey:
    name: str
    raw: bytes  # the 32-byte Ed25519 public key

    @property
    def key_hash(self) -> bytes:
        return key_hash(self.name, self.raw)

    @property
    def key_id(self) -> str:
        """`<name>+<key hash hex>`: how findings and entries name a key."""
        return f"{self.name}+{self.key_hash.hex()}"

    def vkey(self) -> str:
        encoded = base64.b64encode(ALG_ED25519 + self.raw).decode()
        return f"{self.name}+{self.key_hash.hex()}+{encoded}"

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    @classmethod
    def from_vkey(cls, text: str) -> PublicKey:
        """Parse `<name>+<hash hex>+<base64(0x01 || key)>`; ValueError when malformed."""
        name, sep1, rest = text.strip().partition("+")
        hash_hex, sep2, encoded = rest.partition("+")
        if not (sep1 and sep2 and valid_name(name) and len(hash_hex) == 8):
            raise ValueError("not a verifier key (<name>+<hash>+<base64 key>)")
        try:
            blob = base64.b64decode(encoded, validate=True)
            declared = bytes.fromhex(hash_hex)
        except (binascii.Error, ValueError):
            raise ValueError("verifier key is not valid hex/base64") from None
        if len(blob) != 33 or blob[:1] != ALG_ED25519:
            raise ValueError("verifier key is not an Ed25519 key")
        key = cls(name, blob[1:])
        if key.key_hash != declared:
            raise ValueError("verifier key hash does not match its name and key")
        return key

    @classmethod
    def from_raw(cls, raw: bytes) -> PublicKey:
        return cls(derived_name(raw), raw)


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True, eq=False)
class Signer:
    private: Ed25519PrivateKey
    public: PublicKey
    source: str  # where it came from, for messages

    @property
    def name(self) -> str:
        return self.public.name

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)

    def pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_private(cls, private: Ed25519PrivateKey, source: str) -> Signer:
        return cls(private, PublicKey.from_raw(_raw_public(private.public_key())), source)

    @classmethod
    def generate(cls) -> Signer:
        return cls.from_private(Ed25519PrivateKey.generate(), "new")

    @classmethod
    def from_pem(cls, pem: bytes, source: str) -> Signer:
        try:
            private = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(
                f"{source} is not a usable PEM private key ({exc})",
                hint="make one with `runner keys init`, or give an unencrypted Ed25519 PEM key",
            ) from None
        if not isinstance(private, Ed25519PrivateKey):
            raise InvalidInput(
                f"{source} is a {type(private).__name__}, not an Ed25519 key",
                hint="the ledger is signed with Ed25519 keys; make one with `runner keys init`",
            )
        return cls.from_private(private, source)


# -- files --------------------------------------------------------------------------------


def key_dir(state_dir: Path) -> Path:
    return state_dir / "keys"


def public_path(root: Path, key: PublicKey) -> Path:
    return root / PUB_DIR / f"{key.name}.pub"


def write_public(root: Path, key: PublicKey) -> Path:
    """Trust `key` by writing its .pub in <root>/policies/keys/ (kept if already there),
    beneath the repository root: a link in the tree never makes runner write outside it
    (runner.repo_files)."""
    path = public_path(root, key)
    rel = (PUB_DIR / path.name).as_posix()
    repo_files.write_new_file(root, rel, (key.vkey() + "\n").encode(), mode=0o644)
    return path


def save(state_dir: Path, root: Path, signer: Signer) -> Signer:
    """Save a key pair (private 0600 in <state_dir>/keys/, .pub in <root>/policies/keys/),
    without making it current; returns it with its file as source."""
    directory = key_dir(state_dir)
    path = directory / f"{signer.name}.pem"
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        write_new(path, signer.pem(), 0o600)
        write_public(root, signer.public)
    except OSError as exc:
        raise StorageFailed.writing(exc.filename or path, exc, "the signing key") from exc
    return Signer(signer.private, signer.public, str(path))


def make_current(state_dir: Path, signer: Signer) -> None:
    path = key_dir(state_dir) / "current"
    try:
        write_atomic(path, (signer.name + "\n").encode(), mode=0o600, durable=True)
    except OSError as exc:
        raise StorageFailed.writing(path, exc, "the signing key's name") from exc


def store(state_dir: Path, root: Path, signer: Signer) -> Signer:
    """Save a new key pair and make it the current key."""
    saved = save(state_dir, root, signer)
    make_current(state_dir, saved)
    return saved


def _load_file(path: Path) -> Signer:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise InvalidInput(
            f"{path} is readable by others (mode {mode:o}); a signing key must be private",
            hint=f"run `chmod 600 {path}`",
        )
    return Signer.from_pem(path.read_bytes(), str(path))


def local_signer(state_dir: Path) -> Signer | None:
    """The current key in <state_dir>/keys/, or None when there is none."""
    directory = key_dir(state_dir)
    current = directory / "current"
    if not current.exists():
        return None
    name = current.read_text(encoding="utf-8").strip()
    path = directory / f"{name}.pem"
    if not valid_name(name) or not path.exists():
        raise InvalidInput(
            f"{current} names key {name!r} but {path} does not exist",
            hint="restore the key file, or set RUNNER_SIGNING_KEY",
        )
    return _load_file(path)


def env_signer(environ: Mapping[str, str] | None = None) -> Signer | None:
    value = (os.environ if environ is None else environ).get(ENV_VAR, "")
    if not value.strip():
        return None
    return Signer.from_pem(value.encode(), ENV_VAR)


def load_signer(state_dir: Path, root: Path, *, create: bool, say: Callable[[str], None]) -> Signer:
    """RUNNER_SIGNING_KEY first; else the current key in <state_dir>/keys/; else, with
    `create`, a new key pair (its .pub written to <root>/policies/keys/), said aloud."""
    signer = env_signer() or local_signer(state_dir)
    if signer is not None:
        return signer
    if not create:
        raise InvalidInput(
            f"no signing key: {ENV_VAR} is not set and {key_dir(state_dir)} holds none",
            hint="run `runner keys init` (or set RUNNER_SIGNING_KEY in CI)",
        )
    signer = store(state_dir, root, Signer.generate())
    say(
        f"made signing key {signer.name}: private key {signer.source} (mode 0600), "
        f"public key {public_path(root, signer.public)} - commit the .pub file so that "
        "`runner audit verify` trusts it"
    )
    return signer


def retire(state_dir: Path, old: Signer) -> None:
    """Delete a replaced private key file, so that it cannot sign again."""
    path = key_dir(state_dir) / f"{old.name}.pem"
    if path.exists():
        path.unlink()
        fsync_dir(path.parent)


# -- trust --------------------------------------------------------------------------------


class TrustedKeys:
    """The public keys `audit verify` trusts, by (name, key hash) as signed notes name them."""

    def __init__(self, keys: Iterable[PublicKey] = (), source: str = "") -> None:
        self._keys = {(k.name, k.key_hash): k for k in keys}
        self.source = source

    def find(self, name: str, hash_: bytes) -> PublicKey | None:
        return self._keys.get((name, hash_))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, PublicKey) and self._keys.get((key.name, key.key_hash)) == key

    def __iter__(self) -> Iterator[PublicKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)


def parse_public(text: str, where: str) -> PublicKey:
    """A .pub file's content: a verifier key line, or a PEM Ed25519 public key."""
    if "-----BEGIN" in text:
        try:
            key = serialization.load_pem_public_key(text.encode())
        except ValueError as exc:
            raise InvalidInput(f"{where}: not a PEM public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise InvalidInput(f"{where}: {type(key).__name__} is not an Ed25519 key")
        return PublicKey.from_raw(_raw_public(key))
    try:
        return PublicKey.from_vkey(text)
    except ValueError as exc:
        raise InvalidInput(
            f"{where}: {exc}", hint="a .pub file holds the line `runner keys init` wrote"
        ) from None


def load_trusted(directory: Path) -> TrustedKeys:
    """Every *.pub in `directory` (none when it does not exist); a bad file is an error.
    Each is read as repository files are (runner.repo_files): a link out of the directory,
    a FIFO or a hard-linked file is refused, never followed."""
    keys = []
    for entry in repo_files.list_dir(directory, "") or []:
        if entry.rel.endswith(".pub"):
            data = repo_files.read_file(directory, entry.rel, limit=KEY_BYTES)
            keys.append(parse_public(data.decode("utf-8", "replace"), str(directory / entry.rel)))
    return TrustedKeys(keys, str(directory))
