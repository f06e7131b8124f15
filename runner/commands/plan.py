"""`runner plan MISSION`: the expanded DAG, level by level, with the policy's verdicts.

Decided like `runner policy check`: the policy and the catalog from where the invoker
says (runner.trusted), rules matched on the mission's path, `--event` and `--ref`. The
text starts with where each trusted input came from and ends with the tool problems found
in the jobs' images (runner.policy.tools); `--json` has the origins as `trusted`, with the
`event` and `ref` the rules saw.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.app import App, Trust
from runner.commands.probe import image_probe
from runner.mission.loader import load_mission
from runner.mission.model import Mission
from runner.mission.plan import instances, levels
from runner.policy.capabilities import service_of
from runner.policy.decisions import Decision, decide
from runner.policy.model import EXECUTABLE_TERMINATION_LOG, UNENFORCED_NETWORK_POLICY, Policy
from runner.policy.tools import tool_findings
from runner.policy.trust import load_trusted
from runner.trusted import invoker_ref


def build(mission: Mission, decisions: list[Decision]) -> dict[str, Any]:
    """The plan as data: what `--json` prints and the text and dot views render."""
    by_job: dict[str, list[Decision]] = {}
    for decision in decisions:
        by_job.setdefault(decision.job, []).append(decision)
    expanded = instances(mission)
    grouped = levels(mission)
    out_levels: list[dict[str, Any]] = []
    for depth, job_ids in enumerate(grouped):
        entries = []
        for job_id in job_ids:
            job = mission.jobs[job_id]
            for inst in expanded[job_id]:
                mine = by_job.get(inst.key, [])
                images = [d for d in mine if d.capability == "image"]
                image = next((d.value for d in images if not service_of(d.keypath)), None)
                services = {
                    name: next(
                        (d.value for d in images if service_of(d.keypath) == name),
                        service.image,
                    )
                    for name, service in job.services.items()
                }
                entries.append(
                    {
                        "key": inst.key,
                        "job": job_id,
                        "needs": list(job.needs),
                        "matrix": dict(inst.matrix),
                        "dynamic_matrix": inst.dynamic,
                        "image": image or job.container or "base",
                        "services": services,
                        "tools": "all"
                        if job.tools == "all"
                        else [d.value for d in mine if d.capability == "tool"] or list(job.tools),
                        "steps": len(job.steps),
                        "allowed": all(d.allowed for d in mine),
                        "skipped": inst.skipped,
                        "decisions": [d.serialize() for d in mine],
                    }
                )
        out_levels.append({"level": depth, "jobs": entries})
    return {
        "mission": mission.name,
        "path": mission.path,
        "levels": out_levels,
        "widest": max((len(level["jobs"]) for level in out_levels), default=0),
        "instances": sum(len(level["jobs"]) for level in out_levels),
        "allowed": all(d.allowed for d in decisions),
    }


def render_text(plan: dict[str, Any]) -> list[str]:
    """One line per job instance; each job's denials after its instances, the same denial
    of several instances once (`(29 instances)`)."""
    lines = [
        f"mission {plan['mission']} ({plan['path']}): {plan['instances']} job instance(s), "
        f"{len(plan['levels'])} level(s), widest level {plan['widest']}"
    ]
    for level in plan["levels"]:
        lines.append(f"level {level['level']}:")
        by_job: dict[str, list[dict[str, Any]]] = {}
        for job in level["jobs"]:
            by_job.setdefault(job["job"], []).append(job)
        for entries in by_job.values():
            denied: dict[tuple[str, str, str], list[str]] = {}
            for job in entries:
                tools = job["tools"] if job["tools"] == "all" else ", ".join(job["tools"])
                verdict = "allowed" if job["allowed"] else "DENIED"
                if job["skipped"]:
                    lines.append(f"  {job['key']}  skipped: {job['skipped']}")
                    continue
                needs = f"  needs: {', '.join(job['needs'])}" if job["needs"] else ""
                services = ", ".join(f"{name} ({image})" for name, image in job["services"].items())
                lines.append(
                    f"  {job['key']}  image: {job['image']}  tools: {tools}  "
                    f"steps: {job['steps']}  policy: {verdict}{needs}"
                    + (f"  services: {services}" if services else "")
                )
                for d in job["decisions"]:
                    if not d["allowed"]:
                        what = (str(d["capability"]), str(d["value"]), str(d["reason"]))
                        denied.setdefault(what, []).append(job["key"])
            for (capability, value, reason), keys in denied.items():
                count = f" ({len(keys)} instances)" if len(keys) > 1 else ""
                lines.append(f"    denied {capability} {value}{count}: {reason}")
    return lines


def kubernetes_choices(policy: Policy) -> dict[str, bool]:
    """What the policy accepts of a Kubernetes cluster that cannot keep a guarantee
    (`accept:`; the backend refuses the steps otherwise: README "Kubernetes")."""
    return {
        UNENFORCED_NETWORK_POLICY: policy.accepts_unenforced_network_policy,
        EXECUTABLE_TERMINATION_LOG: policy.accepts_executable_termination_log,
    }


def kubernetes_line(choices: dict[str, bool]) -> str:
    said = [f"{key}: {'accepted' if value else 'refused'}" for key, value in choices.items()]
    return "on Kubernetes (--backend kubernetes): " + ", ".join(said)


def render_dot(plan: dict[str, Any]) -> list[str]:
    lines = ["digraph mission {", "  rankdir=LR;", f"  label={json.dumps(plan['mission'])};"]
    keys_of: dict[str, list[str]] = {}
    for level in plan["levels"]:
        lines.append("  { rank=same;")
        for job in level["jobs"]:
            keys_of.setdefault(job["job"], []).append(job["key"])
            style = "" if job["allowed"] else ", color=red"
            lines.append(f"    {json.dumps(job['key'])} [shape=box{style}];")
        lines.append("  }")
    for level in plan["levels"]:
        for job in level["jobs"]:
            for need in job["needs"]:
                for source in keys_of.get(need, []):
                    lines.append(f"  {json.dumps(source)} -> {json.dumps(job['key'])};")
    lines.append("}")
    return lines


def main(app: App, path: Path, *, fmt: str, trust: Trust, event: str, ref: str | None) -> int:
    trusted = load_trusted(app.root, ref=trust.ref, policy=trust.policy, catalog=trust.catalog)
    mission, warnings = load_mission(path, root=app.root)
    at_ref = invoker_ref(app.root, ref)
    decisions = decide(
        mission, trusted.policy, warnings, event=event, ref=at_ref, catalog=trusted.catalog
    )
    plan = build(mission, decisions)
    plan |= {"event": event, "ref": at_ref, "trusted": trusted.serialize()}
    plan["kubernetes"] = kubernetes_choices(trusted.policy)
    if app.out.json_mode:
        app.out.json(plan)
    elif fmt == "dot":
        for line in render_dot(plan):
            app.out.line(line)
    else:
        for line in trusted.origin_lines():
            app.out.line(line)
        for line in render_text(plan):
            app.out.line(line)
        app.out.line(kubernetes_line(plan["kubernetes"]))
        probe = image_probe(app, trusted)
        try:
            app.out.findings(tool_findings(mission, decisions, trusted.catalog, probe))
        finally:
            probe.close()
    return 0
