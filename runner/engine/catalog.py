"""The tool catalog: tool name -> what the tool brings into a job's containers.

    sh:
      paths: [/bin/sh]                  # executables, as named in the source image
      interpreter: true                 # allowing it allows arbitrary computation
    python3:
      paths: [/usr/bin/python3]
      files: ["/usr/lib/python3.*"]     # extra runtime files, directories or globs
      optional: [/etc/ssl/certs]        # copied when the image has them
      interpreter: true
    gcc:
      paths: [gcc, as, ld]              # a bare name: looked up in the image (STANDARD_DIRS)
      files: [/usr/lib/gcc, /usr/include]

A toolset keeps each tool's executables (symlinks followed inside the image), their
shared-library closure read from the ELF headers, and the files listed here. The file is
validated by a Cerberus schema: an unknown key or a bad value is an error, never ignored.
The format, with examples, is docs/catalog.md.

runner's built-in catalog (`BUILTIN_CATALOG`) is the base; a repository's
`containers/tools.yml` extends it. A tool in neither is resolved by name in the job's
image (`Catalog.get` gives it the bare path `NAME`): the first of `STANDARD_DIRS` that has
it, with its ELF closure, or a script whose interpreter is itself one of the job's tools
(runner.engine.toolsets). Multi-call binaries (busybox, toybox) are refused either way.

The catalog is trusted configuration (runner.trusted): it decides what a granted tool
brings into a container, so it is read from where the invoker says (`--catalog FILE`,
`--trusted-ref REF`, else the working tree, beneath the root) and a repository's catalog
may describe new tools but never widen what a tool is:
- an entry named like a built-in tool must be the built-in entry (a copy of runner's
  catalog is fine; `python3: {interpreter: false}` is refused);
- a tool that is a known interpreter (`KNOWN_INTERPRETERS`, by its name or any of its
  executables' names; in the image, by the name its executable resolves to too) must say
  `interpreter: true`, which keeps `memfd_create` denied;
- `files` and `optional` are data: a pattern that is, holds or lies in a directory of
  executables (`EXEC_DIRS`: /bin, /usr/bin, ...) is refused, so `cat: {files: [/usr/bin]}`
  cannot give a job every program of its image. A toolset build refuses an ELF program
  found elsewhere among a repository entry's files (runner.engine.toolsets).
`Catalog.origin` says where it came from and `Catalog.full_digest` is what the ledger
records of it (`run.started.catalog_digest`): the digest of the merged catalog.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any

import cerberus
import yaml

from runner.durable import json_digest
from runner.errors import InvalidInput
from runner.repo_files import RepoFileError
from runner.trusted import Origin, TrustedSource, source_of

CATALOG_PATH = Path("containers") / "tools.yml"
BUILTIN_SOURCE = "runner's built-in tool catalog"
MULTICALL = frozenset({"busybox", "toybox"})
KNOWN_INTERPRETERS = (
    *("sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "ash", "rbash", "fish"),
    *("csh", "tcsh", "busybox", "python", "python[0-9]*", "pypy*", "perl", "perl[0-9]*"),
    *("ruby", "ruby[0-9]*", "irb", "node", "nodejs", "deno", "bun", "php", "php[0-9]*"),
    *("lua", "lua[0-9]*", "luajit", "tclsh", "tclsh[0-9]*", "wish", "expect", "R"),
    *("Rscript", "julia", "java", "jshell", "guile", "guile[0-9]*", "racket", "sbcl"),
    *("ocaml", "gdb", "vim", "vi", "nvim", "emacs", "pwsh", "osascript"),
)
# where a tool named by its bare name is looked for, in the toolset's PATH order
STANDARD_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
EXEC_DIRS = (
    *("/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"),
    *("/usr/games", "/usr/local/games", "/usr/libexec", "/usr/local/libexec"),
)

NAME_RE = r"[A-Za-z0-9_][A-Za-z0-9._+-]*"
_PATH_LIST = {
    "type": "list",
    "schema": {"type": "string", "regex": r"/.*", "empty": False},
}
_EXECUTABLES = {
    "type": "list",
    "schema": {"type": "string", "regex": rf"/.*|{NAME_RE}", "empty": False},
}
SCHEMA: dict[str, Any] = {
    "tools": {
        "type": "dict",
        "keysrules": {"type": "string", "regex": r"[A-Za-z0-9][A-Za-z0-9._+-]*"},
        "valuesrules": {
            "type": "dict",
            "schema": {
                "paths": {**_EXECUTABLES, "required": True, "minlength": 1},
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
    paths: tuple[str, ...]  # executables: absolute, or a bare name looked up in the image
    files: tuple[str, ...] = ()  # required extra files, directories or globs
    optional: tuple[str, ...] = ()  # extra files copied only when present
    interpreter: bool = False
    description: str = ""
    builtin: bool = field(default=True, compare=False)  # False: from a repository catalog
    by_name: bool = False  # in no catalog: its executable is found by name in the image

    def serialize(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "paths": list(self.paths),
            "files": list(self.files),
            "optional": list(self.optional),
            "interpreter": self.interpreter,
        }
        if self.by_name:
            out["by_name"] = True
        return out

    def describe(self) -> str:
        """What the tool brings, for `policy check --explain`."""
        if self.by_name:
            return (
                f"not in the tool catalog: {self.name} is looked up by name in the job's "
                f"image ({', '.join(STANDARD_DIRS)}), with the libraries it links"
            )
        shown = [p if p.startswith("/") else f"{p} (by name)" for p in self.paths]
        text = f"brings {', '.join(shown)}"
        if self.files or self.optional:
            text += f" and {', '.join((*self.files, *self.optional))}"
        return text + ("; an interpreter: it can compute anything" if self.interpreter else "")


def by_name(name: str) -> Tool:
    """A tool no catalog describes: its executable `name`, looked up in the image."""
    return Tool(name, (name,), interpreter=is_interpreter(name), builtin=False, by_name=True)


def is_interpreter(name: str) -> bool:
    """Whether an executable called `name` is a known interpreter."""
    return any(fnmatchcase(name, known) for known in KNOWN_INTERPRETERS)


@dataclass(frozen=True)
class Catalog:
    tools: Mapping[str, Tool]  # the built-in entries and the repository's, merged
    source: str  # where it was read from, for messages
    origin: Origin = field(default_factory=lambda: Origin("catalog", "builtin", BUILTIN_SOURCE))
    own: tuple[str, ...] = ()  # the names the repository's file describes

    @property
    def full_digest(self) -> str:
        """sha256 of every entry: what the ledger records of the catalog a run used."""
        return json_digest([self.tools[name].serialize() for name in sorted(self.tools)])

    def get(self, name: str) -> Tool:
        """The catalog entry of tool `name`, else the tool looked up by name in the image
        (`by_name`); a clear error for a multi-call binary."""
        if name in MULTICALL:
            raise InvalidInput(
                f"tool {name!r} is a multi-call binary and cannot be a tool: it runs every "
                "applet it contains, so allowing it would allow them all",
                hint="ask for the individual tools instead (sh, cat, ...)",
            )
        tool = self.tools.get(name)
        return tool if tool is not None else by_name(name)

    def digest(self, names: tuple[str, ...]) -> str:
        """sha256 of the entries of `names`: what a toolset built from them depends on."""
        return json_digest([self.get(name).serialize() for name in sorted(set(names))])


def load_catalog(root: Path | TrustedSource) -> Catalog:
    """runner's catalog extended by the repository's at `root` (or where a
    `TrustedSource` says); runner's alone when it has none."""
    source = source_of(root)
    try:
        loaded = source.catalog_file()
    except RepoFileError as exc:
        raise InvalidInput(f"cannot read the tool catalog: {exc}") from None
    origin = loaded.origin
    if loaded.data is None:
        if origin.kind == "path":
            raise InvalidInput(f"{origin.path}: no such tool catalog (--catalog)")
        builtin = builtin_catalog()
        return Catalog(
            builtin.tools, builtin.source, replace(builtin.origin, digest=builtin.full_digest)
        )
    shown = origin.path if origin.kind != "ref" else f"{origin.path} at {origin.ref}"
    try:
        text = loaded.data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{shown}: cannot read the tool catalog: it is not UTF-8") from None
    catalog = parse_catalog(text, shown, builtin=False)
    check_against_builtin(catalog)
    merged = {**catalog.tools, **builtin_catalog().tools}  # equal entries stay built-in
    ordered = {name: merged[name] for name in (*builtin_catalog().tools, *catalog.tools)}
    return Catalog(ordered, catalog.source, origin, own=tuple(catalog.tools))


@functools.cache
def builtin_catalog() -> Catalog:
    return parse_catalog(BUILTIN_CATALOG, BUILTIN_SOURCE)


def _covers(pattern: str, directory: str) -> bool:
    """Whether the glob `pattern` names `directory`, a directory holding it, or anything
    inside it (component by component, as the toolset's globs are)."""
    wanted = [p for p in PurePosixPath(pattern).parts if p != "/"]
    parts = [p for p in PurePosixPath(directory).parts if p != "/"]
    for index, part in enumerate(parts):
        if index >= len(wanted):
            return True  # the pattern names an ancestor of the directory
        if not fnmatchcase(part, wanted[index]):
            return False
    return True


def _interpreter_name(tool: Tool) -> str | None:
    names = [tool.name, *(PurePosixPath(p).name for p in tool.paths)]
    return next((name for name in names if is_interpreter(name)), None)


def check_against_builtin(catalog: Catalog) -> None:
    """InvalidInput unless a repository's catalog only adds what runner's does not widen
    (see the module docstring)."""
    builtin = builtin_catalog().tools
    problems: list[str] = []
    for name, tool in catalog.tools.items():
        known = builtin.get(name)
        if known is not None and known.serialize() != tool.serialize():
            problems.append(
                f"{name}: changes runner's built-in entry for {name} "
                f"({_summary(known)}); a repository's catalog may add tools, never change "
                "a built-in one: remove the entry, or name the tool differently"
            )
            continue
        interpreter = _interpreter_name(tool)
        if interpreter is not None and not tool.interpreter:
            problems.append(
                f"{name}: {interpreter} is an interpreter (allowing it allows arbitrary "
                "computation): the entry must say `interpreter: true`"
            )
        for key, patterns in (("files", tool.files), ("optional", tool.optional)):
            for index, pattern in enumerate(patterns):
                hit = next((d for d in EXEC_DIRS if _covers(pattern, d)), None)
                if hit is not None:
                    problems.append(
                        f"{name}.{key}[{index}]: {pattern} is or holds {hit}, a directory "
                        "of executables; a catalog's files are data: list a program as a "
                        "tool's `paths` (or as a tool of its own) so that a policy grants it"
                    )
    if problems:
        raise InvalidInput(
            f"{catalog.source}: the tool catalog widens what tools bring:\n  "
            + "\n  ".join(problems),
            hint="the catalog is trusted configuration: see `runner policy check` and the "
            "README's threat model",
        )


def _summary(tool: Tool) -> str:
    text = f"paths {', '.join(tool.paths)}"
    if tool.files:
        text += f"; files {', '.join(tool.files)}"
    if tool.interpreter:
        text += "; an interpreter"
    return text


def parse_catalog(text: str, source: str, *, builtin: bool = True) -> Catalog:
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
            "interpreter: bool}` (see `runner init` for an example)",
        )
    tools: dict[str, Tool] = {}
    for name, entry in document.items():
        for path in entry["paths"]:
            if PurePosixPath(path).name in MULTICALL:
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
            builtin=builtin,
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
# runner's built-in tool catalog: tool name -> the files the tool needs (docs/catalog.md).
# A tool in no catalog is looked up by name in the job's image, with its ELF closure.
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
node:
  description: >-
    Node.js, looked up in the image (Debian's loads some of its built-in modules from
    /usr/share/nodejs)
  paths: [node]
  optional: [/usr/share/nodejs]
  interpreter: true
gcc:
  description: >-
    the GNU C compiler with what it runs (cc1, the assembler, the linker), its headers and
    the C library's development files; `cc` too where the image has it
  paths: [gcc, as, ld]
  files: [/usr/lib/gcc, /usr/include]
  optional:
    - /usr/bin/cc
    - /usr/libexec/gcc
    - "/usr/lib/*-linux-gnu/*crt*.o"
    - "/usr/lib/*-linux-gnu/lib*.so"
    - "/usr/lib/*-linux-gnu/lib*.a"
g++:
  description: the GNU C++ compiler, as gcc; `c++` too where the image has it
  paths: [g++, as, ld]
  files: [/usr/lib/gcc, /usr/include]
  optional:
    - /usr/bin/c++
    - /usr/libexec/gcc
    - "/usr/lib/*-linux-gnu/*crt*.o"
    - "/usr/lib/*-linux-gnu/lib*.so"
    - "/usr/lib/*-linux-gnu/lib*.a"
"""
