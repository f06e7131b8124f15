"""`accept:`: a guarantee runner fails closed on, unless the policy accepts its loss."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import InvalidPolicy
from runner.policy.loader import load_policy


def load(tmp_path: Path, text: str) -> object:
    (tmp_path / "policies").mkdir(exist_ok=True)
    (tmp_path / "policies" / "default.yml").write_text(text)
    return load_policy(None, tmp_path)


def test_egress_to_host_is_accepted_only_when_said(tmp_path: Path) -> None:
    accepting = load(tmp_path, "version: 1\naccept: [egress-to-host]\n")
    assert accepting.accepts_egress_to_host is True  # type: ignore[attr-defined]
    strict = load(tmp_path, "version: 1\nimages: [base]\n")
    assert strict.accepts_egress_to_host is False  # type: ignore[attr-defined]


def test_anything_else_is_an_error_never_a_looser_policy(tmp_path: Path) -> None:
    with pytest.raises(InvalidPolicy) as caught:
        load(tmp_path, "version: 1\naccept: [everything]\n")
    found = [str(f) for f in caught.value.findings]
    assert any('accept[0]: "everything" is not allowed' in line for line in found), found
    assert caught.value.exit_code == 2


def test_a_deny_all_policy_accepts_nothing(tmp_path: Path) -> None:
    denied = load(tmp_path, "")
    assert denied.accepts_egress_to_host is False  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "attribute"),
    [
        ("unenforced-network-policy", "accepts_unenforced_network_policy"),
        ("executable-termination-log", "accepts_executable_termination_log"),
    ],
)
def test_what_a_kubernetes_cluster_cannot_keep_is_accepted_only_when_said(
    tmp_path: Path, value: str, attribute: str
) -> None:
    accepting = load(tmp_path, f"version: 1\naccept: [{value}]\n")
    assert getattr(accepting, attribute) is True
    others = load(tmp_path, "version: 1\naccept: [egress-to-host]\n")
    assert getattr(others, attribute) is False
    assert getattr(load(tmp_path, ""), attribute) is False  # deny-all accepts nothing
