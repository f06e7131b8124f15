"""The signing keys' history as the ledger records it: `key.rotated` and `key.revoked`
entries, checked the same way by `audit verify` and by the writer.

    key.rotated  valid when signed by both the old and the new key, and the old key was
                 not already retired; it retires the old key from the entry's seq on
    key.revoked  valid when signed by `by`, and `by` was not already retired (a key rotated away or revoked cannot revoke
                 anything: a `key.revoked` of the current key signed only by the old,
                 rotated-away one is refused); it retires `key` from the entry's seq on

`audit verify` also wants the authority (the old key of a rotation, `by` of a
revocation) among the trusted keys; the writer, which has no trusted keys at hand,
checks everything else. A retired key that signs a later checkpoint is REVOKED_KEY, and
the writer refuses to sign with one.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.audit import canonical
from runner.audit.entries import Entry, KeyRevoked, KeyRotated
from runner.audit.findings import Code
from runner.audit.head import Retired
from runner.audit.keys import PublicKey, TrustedKeys

KEY_TYPES = (KeyRotated.TYPE, KeyRevoked.TYPE)
KEY_TYPE_NEEDLES = tuple(b'"type":"%s"' % t.encode() for t in KEY_TYPES)  # canonical JSON


@dataclass(frozen=True)
class Problem:
    code: Code
    message: str


@dataclass
class KeyHistory:
    """The keys retired so far (raw public key -> when and how)."""

    retired: dict[bytes, Retired] = field(default_factory=dict)

    @classmethod
    def of(cls, retired: Mapping[bytes, Retired]) -> KeyHistory:
        return cls(dict(retired))

    def retired_at(self, key: PublicKey, seq: int) -> Retired | None:
        """How `key` was retired before entry `seq`, or None if it was not."""
        found = self.retired.get(key.raw)
        return found if found is not None and found.seq < seq else None

    def apply(
        self, raw: Mapping[str, Any], seq: int, trusted: TrustedKeys | None = None
    ) -> list[Problem]:
        """Check one key.rotated / key.revoked entry (at line `seq`) and, when it is valid,
        retire the key it names. `trusted` None: the authority's trust is not checked."""
        entry = Entry(raw)
        rotated = entry.is_a(KeyRotated)
        kind = KeyRotated.TYPE if rotated else KeyRevoked.TYPE
        named = (KeyRotated.old, KeyRotated.new) if rotated else (KeyRevoked.key, KeyRevoked.by)
        keys: list[PublicKey] = []
        for key_field in named:
            try:
                keys.append(PublicKey.from_vkey(entry.get(key_field) or ""))
            except ValueError as exc:
                return [Problem(Code.UNPARSEABLE, f"{kind}: field {key_field.name!r}: {exc}")]
        signers = keys if rotated else keys[1:]
        _, bad = entry_signatures(raw, signers)
        if bad:
            return [
                Problem(
                    Code.BAD_SIGNATURE,
                    f"{kind}: the signature of {key.key_id} is missing or does not verify",
                )
                for key in bad
            ]
        subject, authority = keys[0], keys[0] if rotated else keys[1]
        if trusted is not None and authority not in trusted:
            return [
                Problem(
                    Code.UNTRUSTED_KEY,
                    f"{kind} is signed by {authority.key_id}, which is not a trusted key",
                )
            ]
        # The entry's own (signed) seq, so that a line deleted before it does not move it.
        at = entry.seq if entry.seq is not None else seq
        gone = self.retired.get(authority.raw)
        if gone is not None and gone.seq < at:
            return [
                Problem(
                    Code.REVOKED_KEY,
                    f"{kind} of {subject.key_id} is signed by {authority.key_id}, which was "
                    f"{gone.how} at seq {gone.seq}: a retired key cannot "
                    f"{'rotate' if rotated else 'revoke'} a key, so it is not applied",
                )
            ]
        self.retired.setdefault(subject.raw, Retired(at, "rotated" if rotated else "revoked"))
        return []


def entry_signatures(
    entry: Mapping[str, Any], keys: Iterable[PublicKey]
) -> tuple[list[PublicKey], list[PublicKey]]:
    """Which of `keys` signed the entry's canonical bytes without `signatures`: (good, bad)."""
    body = {k: v for k, v in entry.items() if k != "signatures"}
    sigs = entry.get("signatures")
    by_key: dict[str, Any] = {}
    if isinstance(sigs, list):
        for item in sigs:
            if isinstance(item, dict) and isinstance(item.get("key"), str):
                by_key[item["key"]] = item.get("sig")
    try:
        payload = canonical.dumps(body)
    except canonical.CanonicalError:
        return [], list(keys)
    good: list[PublicKey] = []
    bad: list[PublicKey] = []
    for key in keys:
        encoded = by_key.get(key.key_id)
        try:
            signature = (
                base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else b""
            )
        except binascii.Error:
            signature = b""
        (good if signature and key.verify(signature, payload) else bad).append(key)
    return good, bad
