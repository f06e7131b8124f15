"""The tool catalog: runner's built-in one, extended by a Cerberus-validated
containers/tools.yml; a tool in neither is looked up by name in the image."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.engine.catalog import BUILTIN_CATALOG, builtin_catalog, load_catalog, parse_catalog
from runner.errors import InvalidInput

REPO = Path(__file__).resolve().parents[2]


def test_the_projects_catalog_is_the_built_in_one() -> None:
    project = load_catalog(REPO)
    assert project.source == "containers/tools.yml"
    assert project.tools == parse_catalog(BUILTIN_CATALOG, "builtin").tools
    for name in ("sh", "cat", "ls", "grep", "sed", "mkdir", "cp", "rm", "test", "python3"):
        assert name in project.tools
    interpreters = {n for n, t in project.tools.items() if t.interpreter}
    assert interpreters == {"sh", "bash", "python3", "node"}


def test_a_repository_without_a_catalog_gets_the_built_in_one(tmp_path: Path) -> None:
    catalog = load_catalog(tmp_path)
    assert catalog.source == "runner's built-in tool catalog"
    assert catalog.get("python3").files == ("/usr/lib/python3.*",)


def test_a_repository_catalog_extends_the_built_in_one(tmp_path: Path) -> None:
    (tmp_path / "containers").mkdir()
    (tmp_path / "containers" / "tools.yml").write_text(
        "jq: {paths: [jq], files: [/usr/share/jq]}\nsh: {paths: [/bin/sh], interpreter: true}\n"
    )
    catalog = load_catalog(tmp_path)
    assert catalog.own == ("jq", "sh")
    assert list(catalog.tools) == [*builtin_catalog().tools, "jq"]
    assert catalog.get("sh") == builtin_catalog().get("sh") and catalog.get("sh").builtin
    assert catalog.get("jq").files == ("/usr/share/jq",) and not catalog.get("jq").builtin
    assert catalog.full_digest != builtin_catalog().full_digest
    assert catalog.source == "containers/tools.yml"


def test_a_tool_in_no_catalog_is_looked_up_by_name_and_known_interpreters_stay_so() -> None:
    catalog = builtin_catalog()
    make = catalog.get("make")
    assert (make.paths, make.by_name, make.interpreter, make.builtin) == (
        ("make",),
        True,
        False,
        False,
    )
    assert catalog.get("node").interpreter and catalog.get("python3.12").interpreter
    assert "by name in the job's image" in make.describe()
    assert catalog.get("gcc").paths == ("gcc", "as", "ld")  # bare names: found in the image
    assert "brings gcc (by name), as (by name)" in catalog.get("gcc").describe()
    # a by-name tool changes a toolset's key if a catalog later describes it
    described = parse_catalog("make: {paths: [/usr/bin/make]}\n", "x", builtin=False)
    assert catalog.digest(("make",)) != described.digest(("make",))
    with pytest.raises(InvalidInput, match="'busybox' is a multi-call binary"):
        catalog.get("busybox")


def test_unknown_keys_and_bad_values_are_errors_with_their_key_path() -> None:
    text = "sh: {paths: [bin/sh], bogus: 1}\ncat: {}\nok: {paths: [/x], interpreter: maybe}\n"
    with pytest.raises(InvalidInput) as caught:
        parse_catalog(text, "containers/tools.yml")
    lines = str(caught.value).splitlines()
    assert lines[0] == "containers/tools.yml: invalid tool catalog:"
    assert "  cat.paths: required field" in lines
    assert "  sh.bogus: unknown field" in lines
    assert any(line.startswith("  sh.paths[0]: value does not match regex") for line in lines)
    parse_catalog("ok: {paths: [ok, /usr/bin/ok2]}\n", "bare names are executables")
    with pytest.raises(InvalidInput, match=r"x.files\[0\]: value does not match regex"):
        parse_catalog("x: {paths: [x], files: [share/x]}\n", "files stay absolute")
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
