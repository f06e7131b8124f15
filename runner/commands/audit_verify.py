"""`runner audit verify`: prove the ledger intact against keys trusted from outside it.

The trusted keys are the `.pub` files of `--trusted-keys DIR`, else of the
`--trusted-ref`'s `policies/keys/`, else of the working tree's (read beneath the root:
a key linked in from outside the repository is refused).
"""

from __future__ import annotations

from pathlib import Path

from runner.app import App
from runner.audit.files import ENTRIES, ledger_dir, read_origin
from runner.audit.keys import TrustedKeys, parse_public
from runner.audit.verify import Report, verify_ledger
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
    anchor_text = None
    if anchor is not None:
        try:
            anchor_text = anchor.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read the anchor {anchor}: {exc}") from None
    trusted, keys_dir = _trusted(app, trusted_keys, trusted_ref)
    report = verify_ledger(
        directory, trusted, anchor=anchor_text, anchor_name=str(anchor or "anchor")
    )
    if app.out.json_mode:
        document = report.serialize()
        document["origin"] = read_origin(directory)
        document["trusted_keys"] = [key.key_id for key in trusted]
        app.out.json(document)
    else:
        _human(app, directory, report, len(trusted), keys_dir)
    return 0 if report.ok else 1


def _human(app: App, directory: Path, report: Report, trusted: int, keys_dir: str) -> None:
    out = app.out
    out.line(
        f"ledger {directory} ({read_origin(directory)}): {report.entries} entries, "
        f"{report.checkpoints} checkpoints, {report.sealed} sealed by a trusted checkpoint"
    )
    for finding in report.findings:
        out.line(out.paint(str(finding), "yellow" if finding.code.is_warning else "red"))
    if not report.ok:
        out.line(out.paint("TAMPERED: the ledger does not verify (see the errors above)", "red"))
        return
    anchored = "and extends the anchor" if report.anchored else "but is not anchored"
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
            "not proven: without an anchor (--anchor FILE), someone holding the signing key "
            "could rewrite or truncate the whole ledger, checkpoints included, undetected"
        )
