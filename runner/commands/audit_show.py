"""`runner audit show`: print ledger entries (all, or one run's)."""

from __future__ import annotations

import json
from typing import Any

from runner.app import App
from runner.audit import canonical
from runner.audit.entries import Entry
from runner.audit.files import ENTRIES, MAX_ENTRY_BYTES, iter_lines, ledger_dir
from runner.audit.provenance import iso_time
from runner.errors import InvalidInput


def main(app: App, *, run_id: str | None) -> int:
    directory = ledger_dir(app.state_dir)
    if not (directory / ENTRIES).exists():
        raise InvalidInput(f"no audit ledger at {directory}", hint="run a mission first")
    needle = json.dumps(run_id).encode() if run_id is not None else None
    shown: list[Any] = []
    for stored in iter_lines(directory):
        offset, line = stored.offset, stored.data
        if line is None:
            if run_id is None:
                too_long = f"{stored.length} bytes, over the {MAX_ENTRY_BYTES}-byte entry limit"
                _unparseable(app, shown, offset, too_long)
            continue
        if needle is not None and needle not in line:
            continue
        try:
            entry = canonical.loads(line)
        except canonical.CanonicalError as exc:
            if run_id is None:
                _unparseable(app, shown, offset, str(exc))
            continue
        if not isinstance(entry, dict) or (run_id is not None and Entry(entry).run_id != run_id):
            continue
        if app.out.json_mode:
            shown.append(entry)
        else:
            app.out.line(_summary(Entry(entry)))
            shown.append(None)
    if app.out.json_mode:
        app.out.json(shown)
    elif not shown:
        app.out.line(f"no entries for run {run_id}" if run_id else "the ledger is empty")
    return 0


def _unparseable(app: App, shown: list[Any], offset: int, reason: str) -> None:
    if app.out.json_mode:
        shown.append({"unparseable": True, "offset": offset, "reason": reason})
    else:
        app.out.line(app.out.paint(f"  (unparseable line at byte {offset}: {reason})", "red"))
        shown.append(None)


def _summary(entry: Entry) -> str:
    rest = " ".join(
        f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in entry.fields().items()
    )
    if len(rest) > 120:
        rest = rest[:117] + "..."
    when = iso_time(entry.ts) or "?"
    return f"{entry.seq!s:>6} {when} {entry.type!s:<16} {entry.run_id or '-'} {rest}"
