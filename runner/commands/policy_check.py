"""`runner policy check`: the policy's decision on every capability of every job, no run.

The policy and the tool catalog come from where the invoker says (`--trusted-ref`,
`--policy`, `--catalog`; runner.trusted), and the first lines say where each came from
and whether the working tree's copy differs. Rules are matched on each mission's file
path, `--event` and `--ref` (default: git's HEAD). `--json` prints the list of decisions,
each with the `trusted` origins it was decided with.

A job that asks for a tool no catalog describes is looked up in its image when the engine
has it (runner.policy.tools): a tool the image lacks is an error finding with its place in
the mission (the run refuses it before any container), and without the image a note says
it will be looked up at run time.

Exit 3 when anything is denied, 0 otherwise (tool findings do not change it: they are
the image's, not the policy's); an invalid policy, catalog or mission is exit 2.
"""

from __future__ import annotations

from pathlib import Path

from runner.app import App, Trust
from runner.commands.probe import image_probe
from runner.errors import InvalidInput, InvalidMission
from runner.findings import Finding, Severity, sort_findings
from runner.mission.loader import discover_missions, load_mission, unique_names
from runner.mission.model import Mission
from runner.output import Output
from runner.policy.decisions import Decision, decide, grouped
from runner.policy.security_checks import security_check, security_findings
from runner.policy.tools import tool_findings
from runner.policy.trust import load_trusted
from runner.trusted import invoker_ref


def _missions(app: App, paths: tuple[Path, ...]) -> list[tuple[Mission, list[Finding]]]:
    found = list(paths) or discover_missions(app.root)
    if not found:
        raise InvalidInput(
            "no missions in .missions/ (name a file: runner policy check PATH)",
            hint="missions are .missions/*.yml files in GitHub Actions syntax",
        )
    loaded = [load_mission(path, root=app.root) for path in found]
    duplicates = unique_names(m for m, _ in loaded)
    if duplicates:
        raise InvalidMission(f"{len(duplicates)} mission name(s) used twice", duplicates)
    return loaded


def _line(out: Output, d: Decision, explain: bool, instances: str = "") -> str:
    verdict = out.paint("allowed", "green") if d.allowed else out.paint("denied ", "red")
    text = f"    {verdict}  {d.capability} {d.value}{instances}"
    if not explain:
        return text
    if d.allowed:
        return f"{text}  [{d.rule}] {d.reason}"
    return f"{text}  at {d.keypath} ({d.line}:{d.col}): {d.reason}"


def _print_mission(out: Output, mission: Mission, decisions: list[Decision], explain: bool) -> None:
    """Each job's decisions; a job of several matrix instances once, each decision once,
    saying which instances it concerns when not all of them (a denial of all of them:
    `(29 instances)`)."""
    out.line(f"{mission.path}: mission {mission.name}")
    by_job: dict[str, list[Decision]] = {}
    for d in decisions:
        by_job.setdefault(d.job_id or d.job, []).append(d)
    for mine in by_job.values():
        keys = list(dict.fromkeys(d.job for d in mine))
        if len(keys) == 1:
            out.line(f"  job {keys[0]}")
        else:
            shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
            out.line(f"  job {mine[0].job_id} ({len(keys)} instances: {shown})")
        for group in grouped(mine):
            instances = group.instances(len(keys))
            if group.decision.allowed and len(group.jobs) == len(keys):
                instances = ""  # allowed to every instance: the header says which
            out.line(_line(out, group.decision, explain, instances))


def main(
    app: App,
    missions: tuple[Path, ...],
    *,
    trust: Trust,
    event: str,
    ref: str | None,
    explain: bool,
) -> int:
    trusted = load_trusted(app.root, ref=trust.ref, policy=trust.policy, catalog=trust.catalog)
    rules = trusted.policy
    loaded = _missions(app, missions)
    at_ref = invoker_ref(app.root, ref)
    everything: list[Decision] = []
    out = app.out
    for line in trusted.origin_lines():
        out.line(out.paint(line, "red") if line.startswith("policy: ") and rules.denied else line)
    probe = image_probe(app, trusted)
    try:
        for mission, notes in loaded:
            decisions = decide(
                mission, rules, notes, event=event, ref=at_ref, catalog=trusted.catalog
            )
            everything.extend(decisions)
            _print_mission(out, mission, decisions, explain)
            enforced = rules.enforce if rules.denied is None else frozenset()
            warnings = [
                f
                for f in [*security_findings(mission), *notes]
                if f.severity is Severity.WARNING
                and security_check(f.rule) is not None
                and f.rule not in enforced
            ]
            tools = tool_findings(mission, decisions, trusted.catalog, probe)
            out.findings(sort_findings([*warnings, *tools]))
    finally:
        probe.close()
    denied = sum(1 for d in everything if not d.allowed)
    if out.json_mode:
        origins = trusted.serialize()
        out.json([{**d.serialize(), "trusted": origins} for d in everything])
    else:
        jobs = len({(d.mission, d.job) for d in everything})
        summary = (
            f"{len(loaded)} mission{'s' if len(loaded) != 1 else ''}, "
            f"{jobs} job{'s' if jobs != 1 else ''}: "
            f"{len(everything) - denied} allowed, {denied} denied"
        )
        out.line(out.paint(summary, "red" if denied else "green"))
        if denied and not explain:
            out.line("run with --explain to see why each was denied")
    return 3 if denied else 0
