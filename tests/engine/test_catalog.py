"""The tool catalog: Cerberus-validated containers/tools.yml, and runner's built-in one."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.engine.catalog import BUILTIN_CATALOG, load_catalog, parse_catalog
from runner.errors import InvalidInput

REPO = Path(__file__).resolve().parents[2]


def test_the_projects_catalog_is_the_built_in_one() -> None:
    project = load_catalog(REPO)
    assert project.source == "containers/tools.yml"
    assert project.tools == parse_catalog(BUILTIN_CATALOG, "builtin").tools
    for name in ("sh", "cat", "ls", "grep", "sed", "mkdir", "cp", "rm", "test", "python3"):
        assert name in project.tools
    assert {n for n, t in project.tools.items() if t.interpreter} == {"sh", "bash", "python3"}


def test_a_repository_without_a_catalog_gets_the_built_in_one(tmp_path: Path) -> None:
    catalog = load_catalog(tmp_path)
    assert catalog.source == "runner's built-in tool catalog"
    assert catalog.get("python3").files == ("/usr/lib/python3.*",)


def test_a_repository_catalog_replaces_the_built_in_one(tmp_path: Path) -> None:
    (tmp_path / "containers").mkdir()
    (tmp_path / "containers" / "tools.yml").write_text("jq: {paths: [/usr/bin/jq]}\n")
    catalog = load_catalog(tmp_path)
    assert list(catalog.tools) == ["jq"]
    with pytest.raises(InvalidInput, match=r"tool 'sh' is not in the tool catalog .*\(known: jq\)"):
        catalog.get("sh")


def test_unknown_keys_and_bad_values_are_errors_with_their_key_path() -> None:
    text = "sh: {paths: [bin/sh], bogus: 1}\ncat: {}\nok: {paths: [/x], interpreter: maybe}\n"
    with pytest.raises(InvalidInput) as caught:
        parse_catalog(text, "containers/tools.yml")
    lines = str(caught.value).splitlines()
    assert lines[0] == "containers/tools.yml: invalid tool catalog:"
    assert "  cat.paths: required field" in lines
    assert "  sh.bogus: unknown field" in lines
    assert any(line.startswith("  sh.paths[0]: value does not match regex") for line in lines)
    assert "  ok.interpreter: must be of boolean type" in lines


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- sh\n", "must be a mapping of tool name -> entry"),
        ("sh: [\n", "not valid YAML"),
        ("true: {paths: [/bin/true]}\n", "must be of string type"),  # YAML 1.1: a boolean key
        ("cat: {paths: [/bin/busybox]}\n", "cat.paths: /bin/busybox is a multi-call binary"),
    ],
)
def test_malformed_catalogs(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_catalog(text, "t.yml")


def test_digest_depends_only_on_the_requested_entries() -> None:
    one = parse_catalog("sh: {paths: [/bin/sh]}\ncat: {paths: [/bin/cat]}\n", "a")
    two = parse_catalog("sh: {paths: [/bin/sh]}\ncat: {paths: [/usr/bin/cat]}\n", "b")
    assert one.digest(("sh",)) == two.digest(("sh", "sh"))
    assert one.digest(("sh", "cat")) != two.digest(("cat", "sh"))
    assert one.digest(("sh", "cat")) == one.digest(("cat", "sh"))
