"""The trusted configuration a decision is made with, loaded once per command.

    load_trusted(root, ref=, policy=, catalog=) -> Trusted   the policy and the tool catalog,
                                                             from where the invoker says
                                                             (runner.trusted)
    Trusted.origin_lines()                                    what `plan` and `policy check`
                                                             print about where each came from

The catalog is part of every tool decision: `decide(..., catalog=)` says what an allowed
tool brings (its executables and files, or that it is looked up by name in the image), so
that `policy check` shows what a grant means, and a catalog that would widen a tool is an
error (exit 2) before any decision. Whether the image holds it is `runner.policy.tools`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.engine.catalog import Catalog, load_catalog
from runner.policy.loader import load_trusted_policy
from runner.policy.model import Policy
from runner.trusted import Origin, TrustedSource


@dataclass(frozen=True)
class Trusted:
    source: TrustedSource
    policy: Policy
    catalog: Catalog

    def origins(self) -> list[Origin]:
        found = [self.catalog.origin]
        if self.policy.origin is not None:
            found.insert(0, self.policy.origin)
        return found

    def serialize(self) -> list[dict[str, Any]]:
        return [origin.serialize() for origin in self.origins()]

    def origin_lines(self) -> Iterator[str]:
        """`policy: policies/default.yml (sha256:245d4a4459e8)` (with where it came from
        when it is not the working tree), then the catalog when a file described it."""
        policy = self.policy
        if policy.denied is not None:
            yield f"policy: {policy.denied}"
        else:
            line = f"policy: {policy.path} (sha256:{policy.digest[:12]})"
            origin = policy.origin
            if origin is not None and origin.kind != "working-tree":
                line += f" from {origin.describe()}"
            yield line
        catalog = self.catalog.origin
        if catalog.kind != "builtin":
            yield f"catalog: {catalog.describe()} (sha256:{self.catalog.full_digest[:12]})"


def load_trusted(
    root: Path,
    *,
    ref: str | None = None,
    policy: Path | None = None,
    catalog: Path | None = None,
) -> Trusted:
    """The policy and the catalog from where the invoker says; InvalidInput (exit 2) for a
    bad ref, an invalid policy or catalog, or a catalog that widens a tool."""
    source = TrustedSource(root, ref=ref, policy=policy, catalog=catalog)
    return Trusted(source, load_trusted_policy(source), load_catalog(source))
