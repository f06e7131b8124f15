"""`audit export RUN --format slsa`: an in-toto Statement v1 with a SLSA provenance v1
predicate for one run, built from that run's ledger entries, in a signed DSSE envelope.

    subject               the artifacts the run stored (artifact.stored: name, sha256)
    resolvedDependencies  the source commit, the mission file, every image digest
                          (run.started, step.started)
    runDetails            builder id (runner version), invocation id (the run id),
                          start and finish times, and the ledger entries it came from

DSSE signs PAE = "DSSEv1" SP len(type) SP type SP len(body) SP body (lengths in ASCII
decimal) with the Ed25519 signing key; the envelope's keyid is the key id that
policies/keys/ trusts (`<name>+<key hash>`).

Nothing is signed before it is verified: `export` runs `audit verify` on the ledger
(trusted keys, anchors, runner's record) and refuses (`LedgerRefused`) unless it passes,
unless every entry of the run is sealed by a trusted checkpoint, and unless the entries
it then reads make the very root verify proved (the ledger did not change in between).
A forged artifact digest is never signed as provenance.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runner import __version__
from runner.audit import canonical
from runner.audit.entries import (
    ArtifactStored,
    EngineConnected,
    Entry,
    RunFinished,
    RunStarted,
    StepPlaced,
    StepStarted,
)
from runner.audit.files import iter_lines
from runner.audit.findings import Code, LedgerFinding, LedgerRefused
from runner.audit.head import SignedHead
from runner.audit.keys import Signer, TrustedKeys
from runner.audit.merkle import Frontier
from runner.audit.verify import AnchorNote, verify_ledger
from runner.errors import InvalidInput, VerificationFailed

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUILD_TYPE = "urn:runner:buildtype:mission:v1"
BUILDER_ID = "urn:runner:builder"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def run_entries(ledger_dir: Path, run_id: str) -> list[dict[str, Any]]:
    """The run's entries, in ledger order (strictly parsed)."""
    return [entry for _, entry in _read_run(ledger_dir, run_id)[0]]


def _read_run(ledger_dir: Path, run_id: str) -> tuple[list[tuple[int, dict[str, Any]]], bytes]:
    """(seq, entry) of the run's entries, and the root of every complete line read."""
    needle = json.dumps(run_id).encode()
    found = []
    tree = Frontier()
    for line in iter_lines(ledger_dir):
        tree.append(line.leaf())
        if line.data is None or needle not in line.data:
            continue
        entry = canonical.loads(line.data)
        if isinstance(entry, dict) and Entry(entry).run_id == run_id:
            found.append((line.seq, entry))
    return found, tree.root()


def _digest(value: str | None) -> dict[str, str]:
    """{"sha256": hex} from "sha256:<hex>" or "<hex>"; {} when not a SHA-256."""
    if value is None:
        return {}
    hex_part = value.removeprefix("sha256:")
    try:
        if len(bytes.fromhex(hex_part)) == 32:
            return {"sha256": hex_part.lower()}
    except ValueError:
        pass
    return {}


def iso_time(ms: object) -> str | None:
    """RFC 3339 UTC of unix milliseconds; None when not an integer."""
    if not isinstance(ms, int) or isinstance(ms, bool):
        return None
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def statement(run_id: str, raw_entries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The in-toto Statement for the run whose entries are given."""
    entries = [Entry(raw) for raw in raw_entries]
    started = next((e for e in entries if e.is_a(RunStarted)), None)
    finished = next((e for e in entries if e.is_a(RunFinished)), None)
    if started is None:
        raise InvalidInput(f"run {run_id!r} has no {RunStarted.TYPE} entry in the ledger")
    if finished is None:
        raise InvalidInput(
            f"run {run_id!r} has not finished (no {RunFinished.TYPE} entry); export it when it has"
        )
    subjects: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry.is_a(ArtifactStored):
            digest = _digest(entry.get(ArtifactStored.sha256))
            name = str(entry.get(ArtifactStored.name))
            if digest:
                subjects[name] = {"name": name, "digest": digest}
    dependencies: list[dict[str, Any]] = []
    commit = started.get(RunStarted.commit)
    if commit:
        dependencies.append({"uri": "git+source", "digest": {"gitCommit": commit}})
    mission_digest = _digest(started.get(RunStarted.mission_digest))
    if mission_digest:
        where = started.get(RunStarted.mission_path) or started.get(RunStarted.mission)
        dependencies.append({"uri": where or "mission", "digest": mission_digest})
    seen_images: set[tuple[str, str]] = set()
    for entry in entries:
        if not entry.is_a(StepStarted):
            continue
        digest = _digest(entry.get(StepStarted.image_digest))
        image = entry.get(StepStarted.image) or ""
        if digest and (image, digest["sha256"]) not in seen_images:
            seen_images.add((image, digest["sha256"]))
            dependencies.append({"uri": f"docker-image://{image}", "digest": digest})
    for entry in entries:  # what a Kubernetes pod ran: the delivered reference's digest
        if not entry.is_a(StepPlaced):
            continue
        digest = _digest(entry.get(StepPlaced.image_digest))
        image = entry.get(StepPlaced.image) or ""
        if digest and (image, digest["sha256"]) not in seen_images:
            seen_images.add((image, digest["sha256"]))
            dependencies.append({"uri": f"docker-image://{image}", "digest": digest})
    engine = next((e for e in entries if e.is_a(EngineConnected)), None)
    events_digest = _digest(finished.get(RunFinished.events_sha256))
    predicate = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "mission": started.get(RunStarted.mission),
                "event": started.get(RunStarted.event),
            },
            "internalParameters": {
                "policyDigest": started.get(RunStarted.policy_digest),
                "invoker": started.get(RunStarted.invoker),
                **({"engine": engine.fields()} if engine is not None else {}),
            },
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": {
                "id": BUILDER_ID,
                "version": {"runner": started.get(RunStarted.runner_version) or __version__},
            },
            "metadata": {
                "invocationId": run_id,
                "startedOn": iso_time(started.ts),
                "finishedOn": iso_time(finished.ts),
            },
            "byproducts": [
                {
                    "name": "audit-ledger",
                    "uri": str(finished.log),
                    "annotations": {
                        "firstSeq": entries[0].seq,
                        "lastSeq": entries[-1].seq,
                        "result": finished.get(RunFinished.result),
                    },
                    "digest": {"sha256": str(finished.prev)},
                },
                *([{"name": "event-log", "digest": events_digest}] if events_digest else []),
            ],
        },
    }
    return {
        "_type": STATEMENT_TYPE,
        "subject": list(subjects.values()),
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def envelope(document: Mapping[str, Any], signer: Signer) -> dict[str, Any]:
    payload = canonical.dumps(document)
    signature = signer.sign(pae(PAYLOAD_TYPE, payload))
    return {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [
            {"keyid": signer.public.key_id, "sig": base64.b64encode(signature).decode()}
        ],
    }


def open_envelope(envelope: Mapping[str, Any], trusted: TrustedKeys) -> dict[str, Any]:
    """The statement inside a DSSE envelope, once a trusted key's signature verifies."""
    try:
        payload = base64.b64decode(str(envelope["payload"]), validate=True)
        payload_type = str(envelope["payloadType"])
        signatures = list(envelope["signatures"])
    except (KeyError, TypeError, binascii.Error) as exc:
        raise VerificationFailed(f"not a DSSE envelope: {exc}") from None
    message = pae(payload_type, payload)
    for item in signatures:
        name, _, hash_hex = str(item.get("keyid", "")).partition("+")
        try:
            key = trusted.find(name, bytes.fromhex(hash_hex))
            sig = base64.b64decode(str(item.get("sig", "")), validate=True)
        except (ValueError, binascii.Error):
            continue
        if key is not None and key.verify(sig, message):
            result = canonical.loads(payload)
            if not isinstance(result, dict):
                raise VerificationFailed("the envelope's payload is not a JSON object")
            return result
    raise VerificationFailed("no trusted key signed this envelope")


def export(
    ledger_dir: Path,
    run_id: str,
    signer: Signer,
    *,
    trusted: TrustedKeys | None = None,
    anchors: Sequence[AnchorNote] = (),
    record: SignedHead | None = None,
    record_name: str = "runner's record",
) -> dict[str, Any]:
    """The run's signed provenance, once the ledger verifies against `trusted` (default:
    the signer's own key), the anchors and runner's record, and the run is sealed."""
    action = f"sign provenance of run {run_id!r}"
    report = verify_ledger(
        ledger_dir,
        trusted if trusted is not None else TrustedKeys([signer.public]),
        anchors=anchors,
        record=record,
        record_name=record_name,
    )
    if not report.ok:
        first = next(f for f in report.findings if not f.code.is_warning)
        raise LedgerRefused(first, action=action, hint="`runner audit verify` says why")
    entries, root = _read_run(ledger_dir, run_id)
    if root.hex() != report.root:
        changed = LedgerFinding(
            Code.CHECKPOINT_MISMATCH, None, None, "the ledger changed while it was verified"
        )
        raise LedgerRefused(changed, action=action, hint="run the export again")
    if not entries:
        raise InvalidInput(
            f"no run {run_id!r} in the ledger {ledger_dir}", hint="`runner runs` lists the runs"
        )
    last = entries[-1][0]
    if last >= report.sealed:
        unsealed = LedgerFinding(
            Code.UNSEALED_TAIL,
            last,
            None,
            f"the run's entries go up to seq {last}, but trusted checkpoints seal only the "
            f"first {report.sealed}",
        )
        raise LedgerRefused(unsealed, action=action, hint="run `runner audit checkpoint` first")
    return envelope(statement(run_id, [entry for _, entry in entries]), signer)
