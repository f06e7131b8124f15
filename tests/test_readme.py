"""The README's threat model names the test that proves each guarantee: every test it
names exists, so a renamed or deleted test cannot leave a guarantee unproven on paper."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def threat_model() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("## Threat model")
    return text[start : text.index("\n## ", start + 1)]


def test_every_test_the_threat_model_names_exists() -> None:
    named = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?", threat_model())
    assert len(named) >= 10
    for path, name in named:
        source = REPO / path
        assert source.is_file(), path
        if name:
            functions = {
                node.name
                for node in ast.walk(ast.parse(source.read_text(encoding="utf-8")))
                if isinstance(node, ast.FunctionDef)
            }
            assert name in functions, f"{path}::{name}"
