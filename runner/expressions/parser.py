"""The `${{ }}` expression language: tokenizer, AST and parser (GitHub Actions grammar).

Grammar, loosest binding first (GitHub's documented precedence):

    or      := and ('||' and)*
    and     := eq ('&&' eq)*
    eq      := rel (('==' | '!=') rel)*
    rel     := unary (('<' | '<=' | '>' | '>=') unary)*
    unary   := '!' unary | postfix
    postfix := primary ('.' (NAME | '*') | '[' (or | '*') ']')*     only after a name, a call or ( )
    primary := literal | '(' or ')' | NAME '(' [or (',' or)*] ')' | NAME

Literals: `null true false` (case-sensitive, as GitHub), numbers as GitHub reads them
(`12`, `-1.5`, `.5`, `2e3`, `0xff`, `0o17`, `NaN`, `Infinity`) and single-quoted strings
with `''` as the escaped quote. Names start with a letter or `_` and go on with letters,
digits, `_` and `-` (`steps.my-step.outputs`).

`&&` and `||` are n-ary nodes and a property chain is one `Access` node, so long chains do
not deepen the tree; nesting deeper than `MAX_DEPTH` (GitHub's 50) is a syntax error, which
also keeps Python's recursion limit far away. `parse` is cached by source string.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from runner.errors import InvalidInput

MAX_DEPTH = 50
MAX_LENGTH = 21000  # GitHub's limit on one expression


class ExpressionError(InvalidInput):
    """A syntax or evaluation error in an expression; `offset` is 0-based into its text."""

    def __init__(self, message: str, offset: int = 0, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.offset = offset

    def shifted(self, by: int) -> ExpressionError:
        """The same error with its offset moved by `by` (inner source -> enclosing text)."""
        return ExpressionError(self.message, self.offset + by, hint=self.hint)


# ---------------------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class Literal:
    value: bool | float | int | str | None
    offset: int


@dataclass(frozen=True, slots=True)
class Context:
    name: str  # as written; lookups are case-insensitive
    offset: int


@dataclass(frozen=True, slots=True)
class Prop:
    name: str
    offset: int


@dataclass(frozen=True, slots=True)
class Index:
    expr: Node
    offset: int


@dataclass(frozen=True, slots=True)
class Star:
    offset: int


Accessor = Prop | Index | Star


@dataclass(frozen=True, slots=True)
class Access:
    base: Node
    accessors: tuple[Accessor, ...]
    offset: int


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node
    offset: int


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # == != < <= > >=
    left: Node
    right: Node
    offset: int  # of the operator


@dataclass(frozen=True, slots=True)
class Logical:
    op: str  # && ||
    operands: tuple[Node, ...]
    offset: int


@dataclass(frozen=True, slots=True)
class Group:
    """Parentheses, kept so that offsets and printing stay faithful."""

    inner: Node
    offset: int


@dataclass(frozen=True, slots=True)
class Call:
    name: str  # as written; function names are case-insensitive
    args: tuple[Node, ...]
    offset: int


Node = Literal | Context | Access | Not | Compare | Logical | Group | Call


# ---------------------------------------------------------------------------- numbers

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_OCT = re.compile(r"0o[0-7]+")


def parse_number(text: str) -> float:
    """GitHub's string -> number rule (JavaScript `Number()`-like): '' -> 0, junk -> NaN.

    Hex and octal are read as a 32-bit two's-complement integer, as GitHub's runner does.
    """
    s = text.strip()
    if not s:
        return 0.0
    if _DECIMAL.fullmatch(s):
        return float(s)
    if _HEX.fullmatch(s) or _OCT.fullmatch(s):
        value = int(s[2:], 16 if s[1] == "x" else 8)
        if value > 0xFFFFFFFF:
            return math.nan
        return float(value - (1 << 32) if value >= 1 << 31 else value)
    if s == "Infinity":
        return math.inf
    if s == "-Infinity":
        return -math.inf
    return math.nan


def _literal_number(value: float) -> float | int:
    """Integral literals become ints so that they print and serialize without `.0`."""
    if math.isfinite(value) and value == int(value) and abs(value) < 2**53:
        if value == 0 and math.copysign(1.0, value) < 0:
            return value  # keep -0
        return int(value)
    return value


# ---------------------------------------------------------------------------- tokens

# token kinds
_NUM, _STR, _NAME, _KW, _OP, _PUNCT, _END = (
    "number",
    "string",
    "name",
    "keyword",
    "op",
    "punct",
    "end",
)
_OPERATORS = ("==", "!=", "<=", ">=", "&&", "||", "<", ">", "!")
_KEYWORDS = {"null": None, "true": True, "false": False, "NaN": math.nan, "Infinity": math.inf}
# tokens after which a '.' is a dereference (a value ends there), not the start of a number
_VALUE_END = frozenset({")", "]", "*"})


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    offset: int
    value: object = None


def _describe(tok: Token) -> str:
    return "end of expression" if tok.kind == _END else repr(tok.text)


_SPACE = re.compile(r"\s*")
_WORD = re.compile(r"[^\s()\[\],.!><=&|]+")  # up to a token boundary
_NUMBER_REST = re.compile(r"[^\s()\[\],!><=&|]*")  # as a word, but '.' goes on
_NAME_RE = re.compile(r"[^\W\d][\w-]*")  # a letter or '_', then letters, digits, '_', '-'


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(source)
    prev: Token | None = None
    space = _SPACE.match
    while True:
        i = space(source, i).end()  # type: ignore[union-attr]  # \s* always matches
        if i >= n:
            tokens.append(Token(_END, "", n))
            return tokens
        c = source[i]
        start = i
        if c in "()[],*":
            tok = Token(_PUNCT, c, i)
            i += 1
        elif c == "'":
            tok, i = _read_string(source, i)
        elif c == "." and not _ends_value(prev):
            tok, i = _read_number(source, i)
        elif c == ".":
            tok = Token(_PUNCT, c, i)
            i += 1
        elif c in "-+" or (c.isdigit() and c.isascii()):
            tok, i = _read_number(source, i)
        elif c in "!<>=&|":
            for op in _OPERATORS:
                if source.startswith(op, i):
                    tok = Token(_OP, op, i)
                    i += len(op)
                    break
            else:
                raise ExpressionError(f"unexpected {c!r}: operators are {' '.join(_OPERATORS)}", i)
        else:
            m = _WORD.match(source, i)
            i = m.end() if m else i + 1
            word = source[start:i]
            if not _NAME_RE.fullmatch(word):
                raise ExpressionError(f"unexpected {word!r}", start)
            if word in _KEYWORDS and not (prev is not None and prev.text == "."):
                tok = Token(_KW, word, start, _KEYWORDS[word])
            else:
                tok = Token(_NAME, word, start)
        tokens.append(tok)
        prev = tok


def _ends_value(prev: Token | None) -> bool:
    if prev is None:
        return False
    return prev.kind in (_NAME, _STR, _NUM, _KW) or prev.text in _VALUE_END


def _read_string(source: str, i: int) -> tuple[Token, int]:
    start = i
    i += 1
    parts: list[str] = []
    n = len(source)
    while i < n:
        j = source.find("'", i)
        if j < 0:
            break
        parts.append(source[i:j])
        if j + 1 < n and source[j + 1] == "'":
            parts.append("'")
            i = j + 2
            continue
        return Token(_STR, source[start : j + 1], start, "".join(parts)), j + 1
    raise ExpressionError("unterminated string: a ' is not closed", start)


def _read_number(source: str, i: int) -> tuple[Token, int]:
    start = i
    i = _NUMBER_REST.match(source, i + 1).end()  # type: ignore[union-attr]  # always matches
    text = source[start:i]
    value = parse_number(text)
    if math.isnan(value):
        raise ExpressionError(f"unexpected {text!r}: not a number", start)
    return Token(_NUM, text, start, _literal_number(value)), i


# ---------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = tokenize(source)
        self.pos = 0
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind != _END:
            self.pos += 1
        return tok

    def expect(self, text: str, what: str) -> Token:
        tok = self.take()
        if tok.text != text or tok.kind in (_STR, _END):
            raise ExpressionError(f"expected {what}, found {_describe(tok)}", tok.offset)
        return tok

    def enter(self, offset: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(
                f"expression nested too deeply (more than {MAX_DEPTH} levels)", offset
            )

    def parse(self) -> Node:
        node = self.or_()
        tok = self.peek()
        if tok.kind != _END:
            raise ExpressionError(
                f"unexpected {_describe(tok)} after a complete expression", tok.offset
            )
        return node

    def or_(self) -> Node:
        return self.logical("||", self.and_)

    def and_(self) -> Node:
        return self.logical("&&", self.eq)

    def logical(self, op: str, operand: Callable[[], Node]) -> Node:
        first = operand()
        if not self.is_op(op):
            return first
        offset = self.peek().offset
        operands = [first]
        while self.is_op(op):
            self.take()
            operands.append(operand())
        return Logical(op, tuple(operands), offset)

    def is_op(self, *ops: str) -> bool:
        tok = self.peek()
        return tok.kind == _OP and tok.text in ops

    def eq(self) -> Node:
        return self.compare(("==", "!="), self.rel)

    def rel(self) -> Node:
        return self.compare(("<", "<=", ">", ">="), self.unary)

    def compare(self, ops: tuple[str, ...], operand: Callable[[], Node]) -> Node:
        node = operand()
        levels = 0  # a chain `a == b == c` nests to the left: each link is one level
        while self.is_op(*ops):
            tok = self.take()
            self.enter(tok.offset)
            levels += 1
            node = Compare(tok.text, node, operand(), tok.offset)
        self.depth -= levels
        return node

    def unary(self) -> Node:
        if self.is_op("!"):
            tok = self.take()
            self.enter(tok.offset)
            operand = self.unary()
            self.depth -= 1
            return Not(operand, tok.offset)
        return self.postfix()

    def postfix(self) -> Node:
        base = self.primary()
        if not isinstance(base, Context | Call | Group):
            return base
        accessors: list[Accessor] = []
        while True:
            tok = self.peek()
            if tok.kind != _PUNCT or tok.text not in ".[":
                break
            self.take()
            if tok.text == ".":
                name = self.take()
                if name.kind == _PUNCT and name.text == "*":
                    accessors.append(Star(name.offset))
                elif name.kind == _NAME:
                    accessors.append(Prop(name.text, name.offset))
                else:
                    raise ExpressionError(
                        f"expected a property name or '*' after '.', found {_describe(name)}",
                        name.offset,
                    )
            else:
                inner = self.peek()
                if inner.kind == _PUNCT and inner.text == "*":
                    self.take()
                    accessors.append(Star(inner.offset))
                else:
                    self.enter(tok.offset)
                    accessors.append(Index(self.or_(), tok.offset))
                    self.depth -= 1
                self.expect("]", "']'")
        if not accessors:
            return base
        return Access(base, tuple(accessors), base.offset)

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind in (_NUM, _STR, _KW):
            return Literal(tok.value, tok.offset)  # type: ignore[arg-type]
        if tok.kind == _PUNCT and tok.text == "(":
            self.enter(tok.offset)
            inner = self.or_()
            self.depth -= 1
            self.expect(")", "')'")
            return Group(inner, tok.offset)
        if tok.kind == _NAME:
            nxt = self.peek()
            if nxt.kind == _PUNCT and nxt.text == "(":
                return self.call(tok)
            return Context(tok.text, tok.offset)
        raise ExpressionError(f"unexpected {_describe(tok)}: expected a value", tok.offset)

    def call(self, name: Token) -> Node:
        self.take()  # "("
        self.enter(name.offset)
        args: list[Node] = []
        if not (self.peek().kind == _PUNCT and self.peek().text == ")"):
            args.append(self.or_())
            while self.peek().kind == _PUNCT and self.peek().text == ",":
                self.take()
                args.append(self.or_())
        self.depth -= 1
        self.expect(")", "',' or ')'")
        return Call(name.text, tuple(args), name.offset)


@functools.lru_cache(maxsize=8192)
def parse(source: str) -> Node:
    """The AST of one expression (the inside of `${{ }}`); ExpressionError on bad syntax."""
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters", MAX_LENGTH)
    if not source.strip():
        raise ExpressionError("empty expression", 0)
    try:
        return _Parser(source).parse()
    except RecursionError:
        raise ExpressionError("expression nested too deeply", 0) from None


# ---------------------------------------------------------------------------- printing


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def to_source(node: Node) -> str:
    """Print an AST back as expression source; `parse(to_source(n))` means the same as `n`."""
    if isinstance(node, Literal):
        return _literal_source(node.value)
    if isinstance(node, Context):
        return node.name
    if isinstance(node, Group):
        return f"({to_source(node.inner)})"
    if isinstance(node, Not):
        return f"!{_operand_source(node.operand)}"
    if isinstance(node, Compare):
        return f"{_operand_source(node.left)} {node.op} {_operand_source(node.right)}"
    if isinstance(node, Logical):
        return f" {node.op} ".join(_operand_source(o) for o in node.operands)
    if isinstance(node, Call):
        return f"{node.name}({', '.join(to_source(a) for a in node.args)})"
    parts = [_postfix_base(node.base)]
    for acc in node.accessors:
        if isinstance(acc, Prop):
            parts.append(f".{acc.name}")
        elif isinstance(acc, Star):
            parts.append(".*")
        else:
            parts.append(f"[{to_source(acc.expr)}]")
    return "".join(parts)


def _operand_source(node: Node) -> str:
    if isinstance(node, Compare | Logical):
        return f"({to_source(node)})"
    return to_source(node)


def _postfix_base(node: Node) -> str:
    return to_source(node) if isinstance(node, Context | Call | Group) else f"({to_source(node)})"


def _literal_source(value: object) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return quote(value)
    assert isinstance(value, int | float)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)
