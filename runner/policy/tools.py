"""Whether each job's image holds the tools the policy allows it, found before anything runs.

    tool_findings(mission, decisions, catalog, images) -> [Finding]

A tool is in runner's catalog, in the repository's, or looked up by name in the job's
image (runner.engine.catalog). What an image holds is known only from the image itself,
so `ImageProbe` looks into the images the engine already has (its filesystem, exported
once per image id into the state dir, never run): `plan` and `policy check` do when a job
asks for a tool no catalog describes, a run for every job before its first container.
Each tool the image cannot provide is an error at the tool's place in the mission, with
what to do:

    .missions/ci.yml:9:17: jobs.build.tools[2]: tool 'gcc' is not in image toolchain
    (looked in /usr/local/sbin, ...); add it to the image (containers/toolchain/Dockerfile)
    or remove it from `tools:` [tool]

When the image cannot be looked into (no engine answers, or it is not built or pulled
yet), a tool in no catalog gets a note saying where it will be looked up at run time.
Only allowed tools of instances with no denial are looked at: a denied job never runs.
The same finding of many matrix instances is one finding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner.engine.backend import Backend
from runner.engine.catalog import Catalog
from runner.engine.images import CONTAINERS, DEFAULT_CONTAINER, FALLBACK_BASE, is_image_reference
from runner.engine.toolsets import ToolProblem, check_tools
from runner.errors import EngineUnavailable, InvalidInput
from runner.findings import Finding, Severity, sort_findings
from runner.mission.model import Mission
from runner.policy.capabilities import Kind
from runner.policy.decisions import Decision
from runner.trusted import TrustedSource

RULE = "tool"


@dataclass
class ImageProbe:
    """What the engine can tell about a job's image. The engine is connected the first
    time an image must be looked into (`connect`; none: never), and an engine that does
    not answer is a reason, not an error. Results are kept per (image, tools)."""

    source: TrustedSource
    state_dir: Path
    connect: Callable[[], Backend] | None = None
    _backend: Backend | None = None
    _why: str = ""
    _seen: dict[tuple[str, tuple[str, ...]], list[ToolProblem] | str] = field(default_factory=dict)

    @property
    def backend(self) -> Backend | None:
        if self._backend is None and not self._why:
            if self.connect is None:
                self._why = "no engine was asked"
            else:
                try:
                    self._backend = self.connect()
                except EngineUnavailable as exc:
                    self._why = exc.message
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def image(self, name: str) -> tuple[str, str]:
        """(the engine's reference of the image a job's `container:` names, how to show it)."""
        if not is_image_reference(name) and name in self.source.image_names():
            tag = f"runner/{name}:{self.source.build_context(name).digest}"
            return tag, name
        if name == DEFAULT_CONTAINER:
            return FALLBACK_BASE, FALLBACK_BASE
        return name, name

    def problems(
        self, name: str, tools: tuple[str, ...], catalog: Catalog
    ) -> list[ToolProblem] | str:
        """Each tool the image `name` lacks, or why the image could not be looked into."""
        key = (name, tools)
        if key not in self._seen:
            self._seen[key] = self._look(name, tools, catalog)
        return self._seen[key]

    def _look(self, name: str, tools: tuple[str, ...], catalog: Catalog) -> list[ToolProblem] | str:
        backend = self.backend
        if backend is None:
            return self._why
        try:
            ref, shown = self.image(name)
        except InvalidInput as exc:
            return exc.message
        if backend.inspect_image(ref) is None:
            if is_image_reference(name) or ref == FALLBACK_BASE:
                return f"the engine does not have {shown} yet"
            return f"{CONTAINERS / name} is not built yet (`runner images build {name}`)"
        return check_tools(backend, ref, tools, catalog, self.state_dir, shown=shown)


def tool_findings(
    mission: Mission,
    decisions: Sequence[Decision],
    catalog: Catalog,
    probe: ImageProbe | None,
    *,
    every_job: bool = False,
) -> list[Finding]:
    """The tool problems of `mission`'s allowed job instances (see the module docstring).
    Without `every_job`, only instances asking for a tool no catalog describes are looked
    at (what `plan` and `policy check` need no engine for otherwise)."""
    found: list[Finding] = []
    for mine in _by_instance(decisions):
        if any(not d.allowed for d in mine):
            continue
        image = next((d.value for d in mine if d.capability is Kind.IMAGE), DEFAULT_CONTAINER)
        tools = [d for d in mine if d.capability is Kind.TOOL]
        unknown = [d for d in tools if d.value not in catalog.tools]
        if not tools or not (unknown or every_job):
            continue
        names = tuple(sorted({d.value for d in tools}))
        result = probe.problems(image, names, catalog) if probe is not None else "no engine"
        if isinstance(result, str):
            found += [_note(mission, d, image, result) for d in unknown]
            continue
        place = {d.value: d for d in tools}
        found += [_error(mission, place[p.tool], image, p, probe) for p in result]
    return sort_findings(found)


def _by_instance(decisions: Iterable[Decision]) -> list[list[Decision]]:
    grouped: dict[tuple[str, str], list[Decision]] = {}
    for d in decisions:
        grouped.setdefault((d.mission, d.job), []).append(d)
    return list(grouped.values())


def _note(mission: Mission, d: Decision, image: str, why: str) -> Finding:
    return Finding(
        mission.path,
        d.line,
        d.col,
        f"tool {d.value!r} is in no tool catalog: it will be looked up by name in image "
        f"{image} when the job runs ({why})",
        RULE,
        d.keypath,
        Severity.NOTE,
    )


def _error(
    mission: Mission, d: Decision, image: str, problem: ToolProblem, probe: ImageProbe | None
) -> Finding:
    message = problem.message
    if problem.kind == "missing":
        built = probe is not None and not is_image_reference(image)
        if built and probe is not None and image in probe.source.image_names():
            where = f"add it to the image ({CONTAINERS / image / 'Dockerfile'})"
        else:
            where = "use an image that has it (`container:`)"
        message += f"; {where} or remove it from `tools:`"
    elif problem.kind == "interpreter":
        message += " (and to the policy's `tools:`)"
    return Finding(mission.path, d.line, d.col, message, RULE, d.keypath, Severity.ERROR)
