"""`runner validate [PATH...]`: check missions and print every problem.

No PATH: every mission in `.missions/`. A directory: its `*.yml` and `*.yaml`. Files in the
repository are read beneath it (`runner.repo_files`: a link out of it, a FIFO or a device is
an error naming the file). Two missions declaring the same `name:` are an error in the
second. Each finding is printed as `path:line:col: [severity: ]keypath: message [rule]`
(errors, warnings and notes alike), then one summary line:

    3 files checked: 1 error, 2 warnings, 14 notes

`--json` prints one list instead: `[{"path", "valid", "findings": [finding, ...]}]`.
Exit 2 when any file has an error, else 0. A PATH that does not exist is one error (exit 2)
before anything is checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runner.app import App
from runner.errors import InvalidInput, InvalidMission
from runner.findings import Finding, Severity, errors_in, sort_findings
from runner.mission.loader import MISSIONS_DIR, discover_missions, load_mission, unique_names
from runner.mission.model import Mission


def _files(app: App, paths: Sequence[Path]) -> list[Path]:
    if not paths:
        found = discover_missions(app.root)
        if not found:
            raise InvalidInput(
                f"no missions found in {MISSIONS_DIR}/",
                hint=f"add {MISSIONS_DIR}/<name>.yml, or name the files to validate",
            )
        return found
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(
                p for p in path.iterdir() if p.suffix in (".yml", ".yaml") and not p.is_dir()
            )
            if not inside:
                raise InvalidInput(f"{path}: no *.yml or *.yaml files in this directory")
            files.extend(inside)
        elif path.exists() or path.is_symlink():
            files.append(path)
        else:
            raise InvalidInput(f"{path}: no such file or directory")
    return files


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def main(app: App, paths: Sequence[Path]) -> int:
    files = _files(app, paths)
    report: list[dict[str, Any]] = []
    everything: list[Finding] = []
    failed = False
    loaded: list[tuple[str, Mission | None, list[Finding]]] = []
    for path in files:
        try:
            mission, notes = load_mission(path, root=app.root)
            loaded.append((mission.path, mission, notes))
        except InvalidMission as exc:
            shown = exc.findings[0].path if exc.findings else str(path)
            loaded.append((shown, None, list(exc.findings)))
    for duplicate in unique_names(m for _, m, _ in loaded if m is not None):
        for shown, _, findings in loaded:
            if shown == duplicate.path:
                findings.append(duplicate)
    for shown, loaded_mission, found in loaded:
        findings = sort_findings(found)
        valid = loaded_mission is not None and not errors_in(findings)
        failed = failed or not valid
        everything.extend(findings)
        report.append(
            {"path": shown, "valid": valid, "findings": [f.serialize() for f in findings]}
        )
        app.out.findings(findings)
    if app.out.json_mode:
        app.out.json(report)
    else:
        counts = {s: sum(1 for f in everything if f.severity is s) for s in Severity}
        app.out.line(
            f"{_plural(len(files), 'file')} checked: {_plural(counts[Severity.ERROR], 'error')}, "
            f"{_plural(counts[Severity.WARNING], 'warning')}, {_plural(counts[Severity.NOTE], 'note')}"
        )
    return 2 if failed else 0
