"""The share of the corpus's Linux jobs runner can run unchanged (issue 13's figure).

For each workflow in ../shared/corpus/github-workflows/: it must validate (as `runner
validate` does: `load_mission`, no error); then each job instance (after matrix
expansion) whose `runs-on` names no macOS or Windows runner is a Linux job, and it is
runnable when every step is: a `run:` step, or a `uses:` runner runs itself
(`actions/checkout`, `actions/upload-artifact`, `actions/download-artifact`,
`actions/cache` (and its `/restore`, `/save`), the setup
actions of `runner.mission.actions.SETUP`, `step-security/harden-runner`), a local action or a `docker://` image ("given
images": an image, a toolchain image or a tool the policy would have to allow is not
counted against it; a service's image likewise). A job calling a reusable workflow is not
runnable. The `before` column counts only `actions/checkout` as built in and no
`services:`, as runner did when issue 13 was filed.

    .venv/bin/python bench/corpus_runnable.py [--corpus DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runner.errors import InvalidMission
from runner.findings import errors_in
from runner.mission.actions import ActionKind, kind_of
from runner.mission.loader import load_mission
from runner.mission.model import Job
from runner.mission.plan import JobInstance, job_instances
from runner.mission.yaml_loader import load_yaml

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "github-workflows"
RUNNABLE = {ActionKind.LOCAL, ActionKind.DOCKER, ActionKind.CHECKOUT}
BUILT_IN_SINCE = {
    ActionKind.UPLOAD_ARTIFACT,
    ActionKind.DOWNLOAD_ARTIFACT,
    ActionKind.CACHE,
    ActionKind.SETUP,
    ActionKind.HARDEN_RUNNER,
}
NOT_LINUX = re.compile(r"windows|macos|mac-|osx", re.IGNORECASE)
MATRIX_REF = re.compile(r"\$\{\{\s*matrix\.([A-Za-z0-9_-]+)\s*\}\}")


@dataclass(frozen=True)
class Figures:
    workflow: str
    valid: bool
    linux: int  # Linux job instances
    before: int  # of them runnable with checkout as the only built-in action
    now: int  # of them runnable today
    blockers: tuple[str, ...]  # what keeps the others from running, once each


def _runs_on(raw: Any, matrix: Mapping[str, Any]) -> str:
    """The job's `runs-on` as text, `${{ matrix.X }}` resolved from the instance."""
    text = json.dumps(raw) if not isinstance(raw, str) else raw
    return MATRIX_REF.sub(lambda m: str(matrix.get(m.group(1), "")), text)


def _blockers(
    job: Job, raw: Mapping[str, Any], runnable: set[ActionKind], *, services: bool
) -> list[str]:
    found = []
    if job.uses:
        found.append(f"reusable workflow {job.uses}")
    if raw.get("services") and not services:
        found.append("services:")
    for step in job.steps:
        if step.uses and kind_of(step.uses) not in runnable:
            found.append(step.uses.partition("@")[0])
    return found


def figures(path: Path) -> Figures:
    try:
        mission, findings = load_mission(path, display_path=path.name)
    except InvalidMission:
        return Figures(path.name, False, 0, 0, 0, ())
    if errors_in(findings):
        return Figures(path.name, False, 0, 0, 0, ())
    raw_jobs = load_yaml(path, display_path=path.name).value.get("jobs", {})
    linux = before = now = 0
    blockers: dict[str, None] = {}
    for job_id, job in mission.jobs.items():
        raw = raw_jobs.get(job_id, {}) if isinstance(raw_jobs, dict) else {}
        inst: JobInstance
        for inst in job_instances(job):
            if NOT_LINUX.search(_runs_on(raw.get("runs-on", ""), inst.matrix)):
                continue
            linux += 1
            before += not _blockers(job, raw, RUNNABLE, services=False)
            still = _blockers(job, raw, RUNNABLE | BUILT_IN_SINCE, services=True)
            now += not still
            blockers.update(dict.fromkeys(still))
    return Figures(path.name, True, linux, before, now, tuple(blockers))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [figures(path) for path in sorted(args.corpus.glob("*.yml"))]
    if args.json:
        print(json.dumps([asdict(row) for row in rows], indent=2))
        return 0
    for row in rows:
        state = "" if row.valid else "  INVALID"
        held = f"  blocked by: {', '.join(row.blockers)}" if row.blockers else ""
        print(f"{row.workflow:55} {row.before:3} -> {row.now:3} of {row.linux:3}{state}{held}")
    linux = sum(r.linux for r in rows)
    before, now = sum(r.before for r in rows), sum(r.now for r in rows)
    valid = sum(r.valid for r in rows)
    print(
        f"{valid}/{len(rows)} validate; runnable Linux jobs: {before}/{linux} "
        f"({before / max(linux, 1):.0%}) before, {now}/{linux} ({now / max(linux, 1):.0%}) now"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
