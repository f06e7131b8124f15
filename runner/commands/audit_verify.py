"""`runner audit verify`: prove the ledger intact against keys trusted from outside it,
anchors kept outside it (`--anchor FILE`, the anchor store) and, on the machine that
wrote it, runner's own record of the last checkpoint it signed.

The trusted keys are the `.pub` files of `--trusted-keys DIR`, else of the
`--trusted-ref`'s `policies/keys/`, else of the working tree's (read beneath the root:
a key linked in from outside the repository is refused).
"""

from __future__ import annotations

from pathlib import Path

from runner.app import App
from runner.audit import anchors
from runner.audit.files import ENTRIES, first_entry_origin, ledger_dir, read_origin
from runner.audit.head import RecordUnreadable, SignedHead, read_head, record_path
from runner.audit.keys import TrustedKeys, parse_public
from runner.audit.verify import AnchorNote, Report, verify_ledger
from runner.errors import InvalidInput, VerificationFailed
from runner.trusted import TrustedSource

NOTHING = "verifying nothing proves nothing"


def _trusted(app: App, directory: Path | None, ref: str | None) -> tuple[TrustedKeys, str]:
    """The keys `audit verify` trusts, and where they came from: `--trusted-keys DIR`, the
    `--trusted-ref`'s policies/keys/, or the working tree's (read beneath the root)."""
    source = TrustedSource(app.root, ref=ref, keys=directory)
    found, origin = source.key_files()
    keys = TrustedKeys(
        [parse_public(data.decode("utf-8", "replace"), name) for name, data in found]
    )
    where = origin.path if origin.kind != "ref" else f"{origin.path} at {origin.ref}"
    return keys, where


def main(
    app: App, *, trusted_keys: Path | None, trusted_ref: str | None, anchor: Path | None
) -> int:
    directory = ledger_dir(app.state_dir)
    if not (directory / ENTRIES).exists():
        message = f"no audit ledger at {directory}: there is nothing to verify, and {NOTHING}"
        if app.out.json_mode:
            app.out.json(
                {"ok": False, "entries": 0, "checkpoints": 0, "findings": [], "error": message}
            )
            return 1
        raise VerificationFailed(
            message, hint="check --state-dir (or RUNNER_STATE_DIR), or run a mission first"
        )
    given: list[AnchorNote] = []
    if anchor is not None:
        try:
            raw = anchor.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read the anchor {anchor}: {exc.strerror}") from None
        try:
            given.append(AnchorNote(raw.decode("utf-8"), str(anchor)))
        except UnicodeDecodeError:
            given.append(AnchorNote(None, str(anchor)))
    origin = read_origin(directory) or first_entry_origin(directory)
    _, skipped = anchors.resolve_store(app.anchor_store, repo=app.root, state_dir=app.state_dir)
    store_file, stored = anchors.for_ledger(
        app.anchor_store, repo=app.root, state_dir=app.state_dir
    )
    given.extend(stored)
    record: SignedHead | None = None
    record_problem: str | None = None
    try:
        record = read_head(app.state_dir)
    except RecordUnreadable as exc:
        record_problem = exc.message
    trusted, keys_dir = _trusted(app, trusted_keys, trusted_ref)
    report = verify_ledger(
        directory,
        trusted,
        anchors=given,
        record=record,
        record_name=str(record_path(app.state_dir)),
        record_problem=record_problem,
    )
    if app.out.json_mode:
        document = report.serialize()
        document["origin"] = origin
        document["trusted_keys"] = [key.key_id for key in trusted]
        document["anchor_store"] = str(store_file) if store_file is not None else skipped
        document["record"] = str(record_path(app.state_dir)) if record is not None else None
        app.out.json(document)
    else:
        used = store_file if store_file is not None else skipped
        _human(app, directory, origin, report, len(trusted), keys_dir, used, record)
    return 0 if report.ok else 1


def _human(
    app: App,
    directory: Path,
    origin: str | None,
    report: Report,
    trusted: int,
    keys_dir: str,
    store: Path | str | None,
    record: SignedHead | None,
) -> None:
    """`store`: this ledger's file in the anchor store, or why the store was not used."""
    out = app.out
    out.line(
        f"ledger {directory} ({origin}): {report.entries} entries, "
        f"{report.checkpoints} checkpoints, {report.sealed} sealed by a trusted checkpoint"
    )
    used = [f"{source} ({count} checkpoint(s) of this ledger)" for source, count in report.anchors]
    if isinstance(store, Path) and not store.exists():
        used.append(f"anchor store {store} (absent: nothing anchored there yet)")
    elif isinstance(store, str):
        used.append(f"no anchor store ({store})")
    out.line("anchors checked: " + ("; ".join(used) if used else "none"))
    if record is not None:
        out.line(
            f"runner's record: {record_path(app.state_dir)} (last signed {record.size} entries)"
        )
    for finding in report.findings:
        out.line(out.paint(str(finding), "yellow" if finding.code.is_warning else "red"))
    if report.tampered:
        out.line(out.paint("TAMPERED: the ledger does not verify (see the errors above)", "red"))
        return
    if not report.ok:
        out.line(
            out.paint(
                "NOT VERIFIED: nothing above is evidence of tampering, but the ledger is not "
                "proven either (see the errors above)",
                "red",
            )
        )
        return
    anchored = "and extends every anchor" if report.anchored else "but is not anchored"
    out.line(
        out.paint(
            f"intact: every line, link, seq and checkpoint verified against {trusted} trusted "
            f"key(s) from {keys_dir}, {anchored}",
            "green",
        )
    )
    if report.sealed < report.entries:
        out.line(
            f"not proven: entries {report.sealed}..{report.entries - 1} are not sealed by a "
            "checkpoint yet"
        )
    if not report.anchored:
        out.line(
            "not proven: without an anchor (--anchor FILE, or the anchor store), someone "
            "holding the signing key could rewrite or truncate the whole ledger, checkpoints "
            "included, undetected"
        )
