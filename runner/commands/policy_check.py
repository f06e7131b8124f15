"""`runner policy check`: the policy's decision on every capability of every job, no run.

Exit 3 when anything is denied, 0 otherwise; an invalid policy or mission is exit 2.
"""

from __future__ import annotations

from pathlib import Path

from runner.app import App
from runner.errors import InvalidInput
from runner.findings import Finding, Severity, sort_findings
from runner.mission.loader import discover_missions, load_mission
from runner.mission.model import Mission
from runner.output import Output
from runner.policy.decisions import Decision, decide
from runner.policy.loader import load_policy
from runner.policy.model import Policy
from runner.policy.security_checks import security_check, security_findings


def _missions(app: App, paths: tuple[Path, ...]) -> list[tuple[Mission, list[Finding]]]:
    found = list(paths) or discover_missions(app.root)
    if not found:
        raise InvalidInput(
            "no missions in .missions/ (name a file: runner policy check PATH)",
            hint="missions are .missions/*.yml files in GitHub Actions syntax",
        )
    return [load_mission(path, display_path=_display(path, app.root)) for path in found]


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _header(out: Output, policy: Policy) -> None:
    if policy.denied is not None:
        out.line(out.paint(f"policy: {policy.denied}", "red"))
    else:
        out.line(f"policy: {policy.path} (sha256:{policy.digest[:12]})")


def _line(out: Output, d: Decision, explain: bool) -> str:
    verdict = out.paint("allowed", "green") if d.allowed else out.paint("denied ", "red")
    text = f"    {verdict}  {d.capability} {d.value}"
    if not explain:
        return text
    if d.allowed:
        return f"{text}  [{d.rule}] {d.reason}"
    return f"{text}  at {d.keypath} ({d.line}:{d.col}): {d.reason}"


def _print_mission(out: Output, mission: Mission, decisions: list[Decision], explain: bool) -> None:
    out.line(f"{mission.path}: mission {mission.name}")
    job = None
    for d in decisions:
        if d.job != job:
            job = d.job
            out.line(f"  job {job}")
        out.line(_line(out, d, explain))


def main(app: App, missions: tuple[Path, ...], *, policy: Path | None, explain: bool) -> int:
    rules = load_policy(policy, app.root)
    loaded = _missions(app, missions)
    everything: list[Decision] = []
    out = app.out
    _header(out, rules)
    for mission, notes in loaded:
        decisions = decide(mission, rules, notes)
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
        out.findings(sort_findings(warnings))
    denied = sum(1 for d in everything if not d.allowed)
    if out.json_mode:
        out.json([d.serialize() for d in everything])
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
