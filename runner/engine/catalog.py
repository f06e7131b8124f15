"""The tool catalog, `containers/tools.yml`: tool name -> the files the tool needs.

    sh:
      paths: [/bin/sh]                  # executables, as named in the source image
      interpreter: true                 # allowing it allows arbitrary computation
    python3:
      paths: [/usr/bin/python3]
      files: ["/usr/lib/python3.*"]     # extra runtime files, directories or globs
      optional: [/etc/ssl/certs]        # copied when the image has them
      interpreter: true

A toolset keeps each tool's executables (symlinks followed inside the image), their
shared-library closure read from the ELF headers, and the files listed here. The file is
validated by a Cerberus schema: an unknown key or a bad value is an error, never ignored.
A repository without `containers/tools.yml` gets the catalog shipped with runner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cerberus
import yaml

from runner.durable import json_digest
from runner.errors import InvalidInput

CATALOG_PATH = Path("containers") / "tools.yml"
MULTICALL = frozenset({"busybox", "toybox"})

_PATH_LIST = {
    "type": "list",
    "schema": {"type": "string", "regex": r"/.*", "empty": False},
}
SCHEMA: dict[str, Any] = {
    "tools": {
        "type": "dict",
        "keysrules": {"type": "string", "regex": r"[A-Za-z0-9][A-Za-z0-9._+-]*"},
        "valuesrules": {
            "type": "dict",
            "schema": {
                "paths": {**_PATH_LIST, "required": True, "minlength": 1},
                "files": _PATH_LIST,
                "optional": _PATH_LIST,
                "interpreter": {"type": "boolean"},
                "description": {"type": "string"},
            },
        },
    }
}


@dataclass(frozen=True)
class Tool:
    name: str
    paths: tuple[str, ...]  # executables in the source image (absolute)
    files: tuple[str, ...] = ()  # required extra files, directories or globs
    optional: tuple[str, ...] = ()  # extra files copied only when present
    interpreter: bool = False
    description: str = ""

    def serialize(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "paths": list(self.paths),
            "files": list(self.files),
            "optional": list(self.optional),
            "interpreter": self.interpreter,
        }


@dataclass(frozen=True)
class Catalog:
    tools: Mapping[str, Tool]
    source: str  # where it was read from, for messages

    def get(self, name: str) -> Tool:
        """The catalog entry of tool `name`; a clear error for multi-call or unknown tools."""
        if name in MULTICALL:
            raise InvalidInput(
                f"tool {name!r} is a multi-call binary and cannot be a tool: it runs every "
                "applet it contains, so allowing it would allow them all",
                hint="ask for the individual tools instead (sh, cat, ...)",
            )
        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self.tools)) or "none"
            raise InvalidInput(
                f"tool {name!r} is not in the tool catalog {self.source} (known: {known})",
                hint=f"add an entry `{name}: {{paths: [/usr/bin/{name}]}}` to {CATALOG_PATH}",
            )
        return tool

    def digest(self, names: tuple[str, ...]) -> str:
        """sha256 of the entries of `names`: what a toolset built from them depends on."""
        return json_digest([self.get(name).serialize() for name in sorted(set(names))])


def load_catalog(root: Path) -> Catalog:
    """The catalog of the repository at `root`, or runner's own when it has none."""
    path = root / CATALOG_PATH
    if not path.exists():
        return parse_catalog(BUILTIN_CATALOG, "runner's built-in tool catalog")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{CATALOG_PATH}: cannot read the tool catalog: {exc}") from exc
    return parse_catalog(text, str(CATALOG_PATH))


def parse_catalog(text: str, source: str) -> Catalog:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{source}: not valid YAML: {exc}") from exc
    if document is None:
        document = {}
    validator = cerberus.Validator(SCHEMA)
    if not isinstance(document, dict) or not validator.validate({"tools": document}):
        errors = (
            _flatten(validator.errors.get("tools", []), "")
            if isinstance(document, dict)
            else [": must be a mapping of tool name -> entry"]
        )
        raise InvalidInput(
            f"{source}: invalid tool catalog:\n  " + "\n  ".join(errors),
            hint="each tool is `name: {paths: [...], files: [...], optional: [...], "
            "interpreter: bool}`",
        )
    tools: dict[str, Tool] = {}
    for name, entry in document.items():
        for path in entry["paths"]:
            if Path(path).name in MULTICALL:
                raise InvalidInput(
                    f"{source}: {name}.paths: {path} is a multi-call binary "
                    "(busybox, toybox), which cannot be a tool"
                )
        tools[name] = Tool(
            name=name,
            paths=tuple(entry["paths"]),
            files=tuple(entry.get("files", ())),
            optional=tuple(entry.get("optional", ())),
            interpreter=bool(entry.get("interpreter", False)),
            description=entry.get("description", ""),
        )
    return Catalog(tools=tools, source=source)


def _flatten(errors: Any, prefix: str) -> list[str]:
    """Cerberus' nested error tree as `keypath: message` lines."""
    lines: list[str] = []
    if isinstance(errors, list):
        for item in errors:
            lines += _flatten(item, prefix)
    elif isinstance(errors, dict):
        for key, value in errors.items():
            part = f"[{key}]" if isinstance(key, int) else (f".{key}" if prefix else str(key))
            lines += _flatten(value, prefix + part)
    else:
        lines.append(f"{prefix or '(top)'}: {errors}")
    return lines


BUILTIN_CATALOG = """\
# runner's tool catalog: tool name -> the files the tool needs (see runner/engine/catalog.py)
sh:
  description: the POSIX shell (dash)
  paths: [/bin/sh]
  interpreter: true
bash:
  paths: [/bin/bash]
  interpreter: true
cat: {paths: [/bin/cat]}
ls: {paths: [/bin/ls]}
echo: {paths: [/bin/echo]}
printf: {paths: [/usr/bin/printf]}
env: {paths: [/usr/bin/env]}
grep: {paths: [/bin/grep]}
sed: {paths: [/bin/sed]}
awk: {paths: [/usr/bin/awk]}
mkdir: {paths: [/bin/mkdir]}
cp: {paths: [/bin/cp]}
mv: {paths: [/bin/mv]}
rm: {paths: [/bin/rm]}
ln: {paths: [/bin/ln]}
touch: {paths: [/bin/touch]}
chmod: {paths: [/bin/chmod]}
test: {paths: [/usr/bin/test, "/usr/bin/["]}
sleep: {paths: [/bin/sleep]}
"true": {paths: [/bin/true]}
"false": {paths: [/bin/false]}
head: {paths: [/usr/bin/head]}
tail: {paths: [/usr/bin/tail]}
wc: {paths: [/usr/bin/wc]}
sort: {paths: [/usr/bin/sort]}
uniq: {paths: [/usr/bin/uniq]}
cut: {paths: [/usr/bin/cut]}
tr: {paths: [/usr/bin/tr]}
tee: {paths: [/usr/bin/tee]}
date: {paths: [/bin/date]}
pwd: {paths: [/bin/pwd]}
basename: {paths: [/usr/bin/basename]}
dirname: {paths: [/usr/bin/dirname]}
sha256sum: {paths: [/usr/bin/sha256sum]}
find: {paths: [/usr/bin/find]}
xargs: {paths: [/usr/bin/xargs]}
diff: {paths: [/usr/bin/diff]}
tar: {paths: [/bin/tar]}
gzip: {paths: [/bin/gzip]}
python3:
  description: Debian's python3 with its standard library
  paths: [/usr/bin/python3]
  files: ["/usr/lib/python3.*"]
  optional: [/usr/lib/python3/dist-packages, /etc/ssl/certs, /usr/share/ca-certificates]
  interpreter: true
git:
  description: git (needs an image that has it), with its helpers and templates
  paths: [/usr/bin/git]
  files: [/usr/lib/git-core, /usr/share/git-core/templates]
  optional: [/etc/ssl/certs, /usr/share/ca-certificates, /etc/gitconfig]
"""
