"""`uses:` steps (SPEC 3): what each kind means on a local, sealed runner.

    actions/checkout@*      built in, does nothing: the workspace already is the checkout
    actions/upload-artifact@*, actions/download-artifact@*
                            built in, on the run's artifact store (runner.run.builtin_actions)
    step-security/harden-runner@*
                            built in, does nothing: runner's steps already run hardened and
                            default-deny; refused (runner.policy.capabilities) where its
                            `egress-policy: block` allow-list would be weaker than the
                            job's granted egress, which runner cannot narrow
    actions/setup-python@*, setup-node, setup-go, setup-java, astral-sh/setup-uv,
    dtolnay/rust-toolchain, pnpm/action-setup (`SETUP`)
                            built in: the requested version selects the job's image
                            through the policy's `toolchains:` map (runner.policy.
                            capabilities); the step itself installs nothing
    ./path/to/action        a local composite action (`action.yml`, `runs.using:
                            composite`, `run` steps), each step in its own container
    docker://IMAGE          the image's entrypoint, with `with.args`
    owner/repo@ref          well-formed but cannot run here: vendor it as a local action

Each needs a policy grant (runner.policy.capabilities); the built-in ones are granted as
built in. A local
action is read beneath the repository root (runner.repo_files: a directory or file linked
from outside the repository is refused, never run), parsed safely (runner.mission.yaml_loader)
and validated: unknown keys, another `using`,
a step without `run`, or a nested `uses:` (which no policy decision covered) are errors.
"""

from __future__ import annotations

import enum
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cerberus

from runner import repo_files
from runner.errors import InvalidInput
from runner.mission.model import Step
from runner.mission.yaml_loader import load_yaml

CHECKOUT = re.compile(r"^actions/checkout(@.*)?$", re.IGNORECASE)
UPLOAD_ARTIFACT = re.compile(r"^actions/upload-artifact(@.*)?$", re.IGNORECASE)
DOWNLOAD_ARTIFACT = re.compile(r"^actions/download-artifact(@.*)?$", re.IGNORECASE)
CACHE = re.compile(r"^actions/cache(/restore|/save)?(@.*)?$", re.IGNORECASE)
HARDEN_RUNNER = re.compile(r"^step-security/harden-runner(@.*)?$", re.IGNORECASE)
MARKETPLACE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@.+$")


@dataclass(frozen=True)
class Toolchain:
    """What a setup action asks for: the policy's `toolchains:` key, the `with:` input
    naming the version, and the output GitHub's action sets to it ("" when none)."""

    name: str
    input: str
    output: str = ""


SETUP = {
    "actions/setup-python": Toolchain("python", "python-version", "python-version"),
    "actions/setup-node": Toolchain("node", "node-version", "node-version"),
    "actions/setup-go": Toolchain("go", "go-version", "go-version"),
    "actions/setup-java": Toolchain("java", "java-version", "version"),
    "astral-sh/setup-uv": Toolchain("uv", "version", "uv-version"),
    "dtolnay/rust-toolchain": Toolchain("rust", "toolchain", "name"),
    "pnpm/action-setup": Toolchain("pnpm", "version"),
}
DEFAULT_VERSION = "default"  # the `toolchains:` key of a setup action given no version


def setup_of(uses: str) -> Toolchain | None:
    return SETUP.get(uses.partition("@")[0].lower())


def requested_version(uses: str, with_: Mapping[str, str]) -> str:
    """The version a setup step asks for: its `with:` input, else (dtolnay/rust-toolchain)
    the ref it is used at (`@stable`, `@1.70`), else `DEFAULT_VERSION`."""
    toolchain = setup_of(uses)
    if toolchain is None:
        return ""
    given = str(with_.get(toolchain.input, "")).strip()
    if given:
        return given
    ref = uses.partition("@")[2]
    if toolchain.name == "rust" and ref and ref not in ("master", "v1"):
        return ref
    return DEFAULT_VERSION


class ActionKind(enum.Enum):
    CHECKOUT = "checkout"
    UPLOAD_ARTIFACT = "upload-artifact"
    DOWNLOAD_ARTIFACT = "download-artifact"
    CACHE = "cache"
    SETUP = "setup"
    HARDEN_RUNNER = "harden-runner"
    LOCAL = "local"
    DOCKER = "docker"
    MARKETPLACE = "marketplace"


def kind_of(uses: str) -> ActionKind:
    if CHECKOUT.match(uses):
        return ActionKind.CHECKOUT
    if UPLOAD_ARTIFACT.match(uses):
        return ActionKind.UPLOAD_ARTIFACT
    if DOWNLOAD_ARTIFACT.match(uses):
        return ActionKind.DOWNLOAD_ARTIFACT
    if CACHE.match(uses):
        return ActionKind.CACHE
    if "@" in uses and setup_of(uses) is not None:
        return ActionKind.SETUP
    if HARDEN_RUNNER.match(uses):
        return ActionKind.HARDEN_RUNNER
    if uses.startswith("./"):
        return ActionKind.LOCAL
    if uses.startswith("docker://"):
        return ActionKind.DOCKER
    return ActionKind.MARKETPLACE


def vendoring(uses: str) -> str:
    """How to run what a marketplace action does: the one text the policy's denial and
    the run's refusal give."""
    name = uses.partition("@")[0].rstrip("/").rpartition("/")[2] or "NAME"
    return (
        f"vendor it as a local composite action: write ./actions/{name}/action.yml with "
        "`runs: {using: composite, steps: [...]}` doing its work in `run:` steps (a "
        "JavaScript or Docker action's code does not run as it is), use it as "
        f"`uses: ./actions/{name}` and allow `./actions/*` in the policy's `uses:`; or "
        "write its steps as `run:` in the job"
    )


def marketplace_refusal(uses: str) -> str:
    return (
        f"{uses!r} is a marketplace action, which this runner cannot run (it would fetch "
        f"and execute code no policy has seen); {vendoring(uses)}"
    )


_STRING_MAP = {"type": "dict", "keysrules": {"type": "string"}, "valuesrules": {"type": "string"}}
SCHEMA: dict[str, Any] = {
    "name": {"type": "string"},
    "description": {"type": "string"},
    "author": {"type": "string"},
    "branding": {"type": "dict"},
    "inputs": {
        "type": "dict",
        "keysrules": {"type": "string"},
        "valuesrules": {
            "type": "dict",
            "schema": {
                "description": {"type": "string"},
                "required": {"type": "boolean"},
                "default": {"type": ["string", "number", "boolean"]},
                "deprecationMessage": {"type": "string"},
            },
        },
    },
    "outputs": {
        "type": "dict",
        "keysrules": {"type": "string"},
        "valuesrules": {
            "type": "dict",
            "schema": {"description": {"type": "string"}, "value": {"type": "string"}},
        },
    },
    "runs": {
        "type": "dict",
        "required": True,
        "schema": {
            "using": {"type": "string", "required": True, "allowed": ["composite"]},
            "steps": {
                "type": "list",
                "required": True,
                "schema": {
                    "type": "dict",
                    "schema": {
                        "id": {"type": "string"},
                        "name": {"type": "string"},
                        "if": {"type": ["string", "boolean"]},
                        "run": {"type": "string", "required": True},
                        "shell": {"type": "string"},
                        "env": _STRING_MAP,
                        "working-directory": {"type": "string"},
                        "continue-on-error": {"type": "boolean"},
                    },
                },
            },
        },
    },
}


@dataclass(frozen=True)
class CompositeAction:
    path: str  # e.g. "actions/lint/action.yml"
    defaults: Mapping[str, str]  # input -> default ("" when none)
    required: frozenset[str]
    outputs: Mapping[str, str]  # output -> value expression
    steps: tuple[Step, ...]

    def inputs(self, given: Mapping[str, str]) -> dict[str, str]:
        """The action's `inputs` context; a missing required input is an error."""
        missing = sorted(self.required - set(given) - {k for k, v in self.defaults.items() if v})
        if missing:
            raise InvalidInput(f"{self.path}: required input(s) {', '.join(missing)} not given")
        unknown = sorted(set(given) - set(self.defaults))
        if unknown:
            raise InvalidInput(f"{self.path}: unknown input(s) {', '.join(unknown)}")
        return {**self.defaults, **given}


def _flatten(errors: Any, path: str) -> list[str]:
    """Cerberus's nested error tree as `key.path: message` lines."""
    if isinstance(errors, str):
        return [f"{path}: {errors}"]
    if isinstance(errors, list):
        return [line for item in errors for line in _flatten(item, path)]
    lines = []
    for key, value in errors.items():
        child = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key
        lines.extend(_flatten(value, child))
    return lines


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def load_composite(root: Path, uses: str) -> CompositeAction:
    """The local composite action `uses` names, relative to the repository `root`."""
    rel = posixpath.normpath(uses.removeprefix("./"))
    if rel.startswith("..") or rel.startswith("/"):
        raise InvalidInput(f"uses: {uses!r} leaves the repository")
    candidates = [f"{rel}/{name}" for name in ("action.yml", "action.yaml")]
    shown = next((c for c in candidates if repo_files.lookup(root, c).kind != "missing"), None)
    if shown is None:
        raise InvalidInput(f"uses: {uses!r}: no action.yml in {rel}/")
    document = load_yaml(root / shown, display_path=shown, root=root)
    validator = cerberus.Validator(SCHEMA, allow_unknown=False)
    if not validator.validate(document.value):
        problems = "; ".join(_flatten(validator.errors, ""))
        raise InvalidInput(f"{shown}: not a composite action runner can run: {problems}")
    value = document.value
    steps = tuple(
        Step(
            index=index,
            id=raw.get("id"),
            name=raw.get("name"),
            run=raw["run"],
            env={k: _text(v) for k, v in (raw.get("env") or {}).items()},
            if_=None if raw.get("if") is None else _text(raw["if"]),
            shell=raw.get("shell"),
            working_directory=raw.get("working-directory"),
            continue_on_error=bool(raw.get("continue-on-error", False)),
        )
        for index, raw in enumerate(value["runs"]["steps"])
    )
    inputs = value.get("inputs") or {}
    return CompositeAction(
        path=shown,
        defaults={name: _text(spec.get("default")) for name, spec in inputs.items()},
        required=frozenset(name for name, spec in inputs.items() if spec.get("required")),
        outputs={
            name: spec.get("value", "") for name, spec in (value.get("outputs") or {}).items()
        },
        steps=steps,
    )
