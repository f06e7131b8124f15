"""Safe YAML with positions: the first stage of loading a mission.

`load_yaml(path)` reads a file and returns a `YamlDocument`: plain Python values (dict,
list, str, int, float, bool, None) plus the 1-based (line, col) of every node, keyed by
key path (`jobs.test.steps[0].run`). Scalars resolve by the YAML 1.2 core schema, as
GitHub reads workflows: `on`, `yes`, `no`, `off` are strings, only `true`/`false` are
booleans, `010` is the integer 10 and dates stay strings.

Positions: `positions[keypath]` is where the *value* starts for a scalar, and where the
*key* starts for a mapping or list value (so `jobs.test` points at `test:`); sequence
items point at the item. `key_positions[keypath]` is always the key.

Refused, each as a `Finding` with its position (all of a file's YAML problems are raised
together as `InvalidMission`): files over `MAX_BYTES` (1 MiB), bytes that are not UTF-8,
malformed YAML, more than one document, a top level that is not a mapping, duplicate keys,
keys that are not strings, tags other than the core ones (`!!str !!int !!float !!bool
!!null !!seq !!map`), more than `ALIAS_BUDGET` nodes reached through aliases (alias
bombs), recursive aliases, and nesting deeper than `MAX_DEPTH`.

An anchor name defined again is not an error (YAML allows it, and GitHub accepts it): an
alias refers to the latest definition before it. libyaml's composer refuses it, so such a
file is composed again by PyYAML's, told to let the later definition win.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from runner import repo_files
from runner.errors import InvalidMission
from runner.findings import Finding, sort_findings
from runner.mission.model import nearest_position

MAX_BYTES = 1024 * 1024
ALIAS_BUDGET = 10_000  # nodes reached through aliases, in all
MAX_DEPTH = 64

RULE = "yaml"
_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_SEQ, _MAP = _TAG + "seq", _TAG + "map"

_INT_RE = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT_RE = re.compile(
    r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
_BOOL_RE = re.compile(r"true|True|TRUE|false|False|FALSE")
_NULL_RE = re.compile(r"~|null|Null|NULL|")


class _CoreResolver(yaml.resolver.BaseResolver):
    """YAML 1.2 core schema, which is what GitHub's workflow parser implements."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        # the same answers as BaseResolver.resolve with the resolvers below, faster
        if kind is ScalarNode:
            if implicit[0]:
                for tag, regexp in self.yaml_implicit_resolvers.get(value[:1], ()):
                    if regexp.match(value):
                        return str(tag)
            return _STR
        return _SEQ if kind is SequenceNode else _MAP


_CoreResolver.add_implicit_resolver(_BOOL, re.compile(f"^(?:{_BOOL_RE.pattern})$"), list("tTfF"))
_CoreResolver.add_implicit_resolver(
    _INT, re.compile(f"^(?:{_INT_RE.pattern})$"), list("-+0123456789")
)
_CoreResolver.add_implicit_resolver(
    _FLOAT, re.compile(f"^(?:{_FLOAT_RE.pattern})$"), list("-+0123456789.")
)
_CoreResolver.add_implicit_resolver(
    _NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)

if getattr(yaml, "__with_libyaml__", False):
    from yaml._yaml import CParser

    class _Composer(CParser, _CoreResolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _CoreResolver.__init__(self)

else:  # pragma: no cover - pyyaml built without libyaml

    class _Composer(  # type: ignore[no-redef]
        yaml.reader.Reader,
        yaml.scanner.Scanner,
        yaml.parser.Parser,
        yaml.composer.Composer,
        _CoreResolver,
    ):
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            _CoreResolver.__init__(self)


class _RedefiningComposer(yaml.composer.Composer):
    """PyYAML's composer, but an anchor defined again replaces the earlier one."""

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()  # type: ignore[attr-defined]
        anchor = getattr(event, "anchor", None)
        if anchor is not None and not isinstance(event, yaml.events.AliasEvent):
            self.anchors.pop(anchor, None)
        return super().compose_node(parent, index)


class _Relaxed(  # libyaml's parser (when there is one), PyYAML's composer
    _RedefiningComposer,
    _Composer,
):
    def __init__(self, stream: str) -> None:
        _Composer.__init__(self, stream)
        yaml.composer.Composer.__init__(self)


def _compose(text: str, *, relaxed: bool = False) -> Node | None:
    composer = _Relaxed(text) if relaxed else _Composer(text)
    try:
        return composer.get_single_node()
    finally:
        dispose = getattr(composer, "dispose", None)
        if dispose is not None:
            dispose()


def _redefined_anchor(exc: yaml.MarkedYAMLError) -> bool:
    return "duplicate anchor" in f"{exc.context} {exc.problem}"


@dataclass(frozen=True)
class YamlDocument:
    """A loaded file: its values, where each node is, and the source for finer positions."""

    path: str
    data: bytes
    value: dict[str, Any]
    positions: dict[str, tuple[int, int]] = field(repr=False)
    key_positions: dict[str, tuple[int, int]] = field(repr=False)
    styles: dict[str, str] = field(repr=False)  # keypath -> quoting style of non-plain strings
    raw: dict[str, str] = field(repr=False)  # keypath -> source text of non-string scalars
    text: str = field(repr=False, default="")
    findings: tuple[Finding, ...] = ()  # problems that did not stop the loading (strict=False)

    def at(self, keypath: str) -> tuple[int, int]:
        """(line, col) of keypath, else of its nearest ancestor that has one, else (1, 1)."""
        return nearest_position(self.positions, keypath)

    def key_at(self, keypath: str) -> tuple[int, int]:
        """(line, col) of the key of keypath (of the item for sequence items)."""
        return self.key_positions.get(keypath) or self.at(keypath)

    def locate(self, keypath: str, offset: int) -> tuple[int, int]:
        """(line, col) of character `offset` of the string at keypath, as well as it can.

        Exact for plain and quoted one-line scalars without escapes and for literal (`|`)
        blocks; otherwise the nearest line start the value lets us know.
        """
        line, col = self.at(keypath)
        value = _get(self.value, keypath)
        if not isinstance(value, str) or offset < 0:
            return line, col
        before = value[:offset]
        style = self.styles.get(keypath, "")
        if style in ("|", ">"):
            lines = self.text.splitlines()
            first = line  # 0-based index of the line after the block header
            while first < len(lines) and not lines[first].strip():
                first += 1
            indent = len(lines[first]) - len(lines[first].lstrip(" ")) if first < len(lines) else 0
            skipped = first - line
            rows = before.split("\n")
            row = len(rows) - 1 if style == "|" else 0
            return line + 1 + skipped + row, indent + 1 + (len(rows[-1]) if style == "|" else 0)
        if "\n" in before:
            return line, col
        return line, col + (1 if style in ("'", '"') else 0) + offset


def _get(value: Any, keypath: str) -> Any:
    if not keypath:
        return value
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", keypath):
        try:
            value = value[int(part[1:-1])] if part.startswith("[") else value[part]
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return value


def join(parent: str, key: str | int) -> str:
    """The key path of `key` under `parent`: `a.b`, `a[0]`."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return f'"{node.value}"'


class _Builder:
    """Walks composed nodes into plain values, recording positions and problems."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.positions: dict[str, tuple[int, int]] = {}
        self.key_positions: dict[str, tuple[int, int]] = {}
        self.styles: dict[str, str] = {}
        self.raw: dict[str, str] = {}
        self.findings: list[Finding] = []
        self.seen: set[int] = set()
        self.stack: set[int] = set()
        self.alias_nodes = 0
        self.alias_depth = 0
        self.bombed = False

    def error(self, node: Node, keypath: str, message: str) -> None:
        mark = node.start_mark
        self.findings.append(
            Finding(self.path, mark.line + 1, mark.column + 1, message, RULE, keypath)
        )

    def build(self, node: Node, keypath: str, depth: int) -> Any:
        if self.bombed:
            return None
        ident = id(node)
        if ident in self.stack:
            self.error(node, keypath, "recursive alias: a node that contains itself")
            return None
        aliased = ident in self.seen
        self.seen.add(ident)
        if aliased:
            self.alias_depth += 1
        if self.alias_depth:
            self.alias_nodes += 1
            if self.alias_nodes > ALIAS_BUDGET:
                self.error(
                    node,
                    keypath,
                    f"aliases expand to more than {ALIAS_BUDGET} nodes (an alias bomb?); "
                    "write the values out instead",
                )
                self.bombed = True
                return None
        if depth > MAX_DEPTH:
            self.error(node, keypath, f"nesting deeper than {MAX_DEPTH} levels")
            self.bombed = True
            return None
        try:
            if isinstance(node, ScalarNode):
                return self.scalar(node, keypath)
            self.stack.add(ident)
            try:
                if isinstance(node, SequenceNode):
                    return self.sequence(node, keypath, depth)
                assert isinstance(node, MappingNode)
                return self.mapping(node, keypath, depth)
            finally:
                self.stack.discard(ident)
        finally:
            if aliased:
                self.alias_depth -= 1

    def scalar(self, node: ScalarNode, keypath: str) -> Any:
        tag, text = node.tag, node.value
        if tag == _STR:
            if node.style:
                self.styles[keypath] = node.style
            return text
        self.raw[keypath] = text
        try:
            if tag == _BOOL and _BOOL_RE.fullmatch(text):
                return text.lower() == "true"
            if tag == _NULL and _NULL_RE.fullmatch(text):
                return None
            if tag == _INT and _INT_RE.fullmatch(text):
                base = {"0o": 8, "0x": 16}.get(text[:2], 10)
                return int(text[2:] if base != 10 else text, base)
            if tag == _FLOAT and _FLOAT_RE.fullmatch(text):
                low = text.lower().lstrip("+")
                if low.endswith("inf"):
                    return -math.inf if low.startswith("-") else math.inf
                return math.nan if low.endswith("nan") else float(text)
        except ValueError:
            pass
        if tag in (_BOOL, _NULL, _INT, _FLOAT):
            self.error(node, keypath, f'"{text}" is not a valid {tag[len(_TAG) :]}')
        else:
            self.error(node, keypath, _tag_message(tag))
        return None

    def sequence(self, node: SequenceNode, keypath: str, depth: int) -> list[Any]:
        if node.tag != _SEQ:
            self.error(node, keypath, _tag_message(node.tag))
        items: list[Any] = []
        for index, child in enumerate(node.value):
            sub = f"{keypath}[{index}]"
            mark = child.start_mark
            self.positions[sub] = (mark.line + 1, mark.column + 1)
            items.append(self.build(child, sub, depth + 1))
        return items

    def mapping(self, node: MappingNode, keypath: str, depth: int) -> dict[str, Any]:
        if node.tag != _MAP:
            self.error(node, keypath, _tag_message(node.tag))
        result: dict[str, Any] = {}
        first: dict[str, ScalarNode] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.error(key_node, keypath, f"a key must be a string, not {_describe(key_node)}")
                continue
            if key_node.tag != _STR:
                if key_node.tag in (_BOOL, _NULL, _INT, _FLOAT):
                    self.error(
                        key_node,
                        keypath,
                        f'key "{key_node.value}" is not a string; quote it if it is meant to be one',
                    )
                else:
                    self.error(key_node, keypath, _tag_message(key_node.tag))
                continue
            key = key_node.value
            sub = join(keypath, key)
            kmark = key_node.start_mark
            if key in first:
                prev = first[key].start_mark
                self.error(
                    key_node,
                    sub,
                    f'duplicate key "{key}" (first at line {prev.line + 1}, col {prev.column + 1})',
                )
                continue
            first[key] = key_node
            self.key_positions[sub] = (kmark.line + 1, kmark.column + 1)
            vmark = value_node.start_mark
            if isinstance(value_node, ScalarNode):
                if value_node.value == "" and not value_node.style:
                    # an empty value has no place of its own: point at its key
                    self.positions[sub] = (kmark.line + 1, kmark.column + 1)
                else:
                    self.positions[sub] = (vmark.line + 1, vmark.column + 1)
            else:
                self.positions[sub] = (kmark.line + 1, kmark.column + 1)
            result[key] = self.build(value_node, sub, depth + 1)
        return result


def _tag_message(tag: str) -> str:
    shown = "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag
    return f"tag {shown} is not allowed; only plain YAML values (strings, numbers, booleans, null, lists, mappings)"


def _fail(path: str, findings: list[Finding]) -> InvalidMission:
    count = len(findings)
    return InvalidMission(
        f"{path}: {count} problem{'s' if count != 1 else ''} in the YAML", sort_findings(findings)
    )


def _decode(path: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = len(before) - (before.rfind(b"\n") + 1) + 1
        raise _fail(
            path,
            [
                Finding(
                    path,
                    line,
                    col,
                    f"the file is not UTF-8 (byte 0x{data[exc.start]:02x}); save it as UTF-8",
                    RULE,
                )
            ],
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def parse_yaml(data: bytes, path: str, *, strict: bool = True) -> YamlDocument:
    """Load YAML bytes safely (see the module docstring); raise InvalidMission on a problem.

    strict=False: problems that leave a usable document (duplicate keys, non-string keys,
    tags, aliases beyond the budget) are returned in `YamlDocument.findings` instead, so
    that the caller can report them with the rest of the file's problems.
    """
    if len(data) > MAX_BYTES:
        raise _fail(
            path,
            [
                Finding(
                    path,
                    0,
                    0,
                    f"the file is {len(data)} bytes; the limit is {MAX_BYTES} bytes (1 MiB)",
                    RULE,
                )
            ],
        )
    text = _decode(path, data)
    if "\x00" in text:
        before = text[: text.index("\x00")]
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        raise _fail(path, [Finding(path, line, col, "the file contains a NUL character", RULE)])
    try:
        try:
            root = _compose(text)
        except yaml.MarkedYAMLError as exc:
            if not _redefined_anchor(exc):
                raise
            root = _compose(text, relaxed=True)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "malformed YAML"
        raise _fail(path, [Finding(path, line, col, f"malformed YAML: {problem}", RULE)]) from None
    except yaml.YAMLError as exc:
        raise _fail(path, [Finding(path, 0, 0, f"malformed YAML: {exc}", RULE)]) from None
    if root is None:
        raise _fail(path, [Finding(path, 1, 1, "the file is empty; a mission is a mapping", RULE)])
    if not isinstance(root, MappingNode):
        what = "a list" if isinstance(root, SequenceNode) else "a single value"
        mark = root.start_mark
        raise _fail(
            path,
            [
                Finding(
                    path,
                    mark.line + 1,
                    mark.column + 1,
                    f"the top level is {what}; a mission is a mapping (name:, on:, jobs: ...)",
                    RULE,
                )
            ],
        )
    builder = _Builder(path)
    builder.positions[""] = (root.start_mark.line + 1, root.start_mark.column + 1)
    value = builder.build(root, "", 0)
    if builder.findings and strict:
        raise _fail(path, builder.findings)
    return YamlDocument(
        path=path,
        data=data,
        value=value,
        positions=builder.positions,
        key_positions=builder.key_positions,
        styles=builder.styles,
        raw=builder.raw,
        text=text,
        findings=tuple(builder.findings),
    )


def read_bytes(path: Path, display: str, root: Path | None = None) -> bytes:
    """The file's bytes, or InvalidMission findings for what stops us reading it.

    A file inside the repository `root` is read beneath it (`runner.repo_files`: no link
    out, regular files only); any other is the invoker's own (`read_outside`). Either way
    at most `MAX_BYTES`, and never a read that blocks."""
    rel = repo_files.locate(root, path) if root is not None else None
    try:
        if rel is not None and root is not None:
            return repo_files.read_file(root, rel, limit=MAX_BYTES)
        return repo_files.read_outside(path, limit=MAX_BYTES)
    except repo_files.TooLarge as exc:
        message = f"the file is {exc.size} bytes; the limit is {MAX_BYTES} bytes (1 MiB)"
        raise _fail(display, [Finding(display, 0, 0, message, RULE)]) from None
    except repo_files.RepoFileError as exc:
        problem = exc.problem if exc.path in (rel, str(path)) else str(exc)
        if exc.problem.startswith("is a directory"):
            problem = "is a directory, not a file"
        raise _fail(display, [Finding(display, 0, 0, problem, "io")]) from None


def load_yaml(
    path: Path,
    *,
    display_path: str | None = None,
    strict: bool = True,
    root: Path | None = None,
) -> YamlDocument:
    """Read (`read_bytes`) and safely parse one YAML file (see the module docstring and
    `parse_yaml`)."""
    display = display_path if display_path is not None else str(path)
    return parse_yaml(read_bytes(path, display, root), display, strict=strict)
