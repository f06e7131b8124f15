"""Well-known credential formats, masked whether or not anyone registered them.

Each `CredentialRule` is a regex over one stretch of text plus what a stream needs to
mask it when it arrives in pieces: `triggers` (a tail that is a prefix of one may be the
start of a credential), `pending` (a started but unfinished one, anchored at the end) and
`rest` (how a match held for too long goes on). `runner.secrets.redact` applies them.

Rules marked `ignore_case` are matched against a lower-case copy of the text of the same
length (so spans are the original's): `re` scans a case-sensitive pattern with a literal
start many times faster than a case-insensitive one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class CredentialRule:
    """A credential format: `pattern` (groups `v`..`v5`, when one matched, are the part
    masked, else the whole match), `triggers` (literal starts; a tail that is a prefix of one is held back) and
    `pending` (a regex, anchored at the end, for a started but unfinished credential)."""

    name: str
    pattern: str
    triggers: tuple[str, ...]
    pending: str
    rest: str = ""  # how a match held for longer than MAX_HOLD goes on in the next chunks
    ignore_case: bool = False  # matched against a lower-case copy: the pattern is lower case
    gates: tuple[str, ...] = ()  # every match holds one of these (default: the triggers)

    def __post_init__(self) -> None:
        if not self.gates:
            object.__setattr__(self, "gates", self.triggers)


_KEYWORDS = r"(?:password|passwd|passphrase|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential)"
_TOKEN_CHARS = r"[A-Za-z0-9._~+/=-]"
_PEM_LABEL = r"[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?"

CREDENTIAL_RULES: tuple[CredentialRule, ...] = (
    CredentialRule(
        "private-key-block",
        rf"-----BEGIN {_PEM_LABEL}-----.*?(?:-----END {_PEM_LABEL}-----|\Z)",
        ("-----BEGIN ",),
        r"-----BEGIN [A-Z0-9 -]*",
        rf".*?(?:-----END {_PEM_LABEL}-----|\Z)",
    ),
    CredentialRule(
        "aws-access-key-id",
        r"(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}",
        ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA"),
        r"(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{0,15}",
    ),
    CredentialRule(
        "github-token",
        r"gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        r"gh[pousr]_[A-Za-z0-9]*|github_pat_[A-Za-z0-9_]*",
    ),
    CredentialRule(
        "gitlab-token",
        r"glpat-[A-Za-z0-9_-]{20,}",
        ("glpat-",),
        r"glpat-[A-Za-z0-9_-]*",
        r"[A-Za-z0-9_-]*",
    ),
    CredentialRule(
        "slack-token",
        r"xox[baprs]-[A-Za-z0-9-]{10,}",
        ("xoxb-", "xoxa-", "xoxp-", "xoxr-", "xoxs-"),
        r"xox[baprs]-[A-Za-z0-9-]*",
        r"[A-Za-z0-9-]*",
    ),
    CredentialRule(
        "jwt",
        r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
        ("eyJ",),
        r"eyJ[A-Za-z0-9_-]*(?:\.(?:e(?:y(?:J[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?)?)?)?)?",
        r"[A-Za-z0-9_.-]*",
    ),
    CredentialRule(
        "authorization-header",
        r"authorization[\"']?[ \t]*[:=][ \t]*(?:(?:bearer|basic|token|digest|negotiate)[ \t]+)?"
        r"(?P<v>[^\s\"',;]+)",
        ("authorization",),
        r"authorization[\"']?[ \t]*[:=]?[ \t]*(?:[a-z]+[ \t]*)?[^\s\"',;]*",
        r"[^\s\"',;]*",
        ignore_case=True,
    ),
    CredentialRule(
        "bearer-token",
        rf"bearer[ \t]+(?P<v>{_TOKEN_CHARS}{{16,}})",
        ("bearer",),
        rf"bearer[ \t]*{_TOKEN_CHARS}*",
        rf"{_TOKEN_CHARS}*",
        ignore_case=True,
    ),
    CredentialRule(
        "url-password", r"://[^/\s:@]{1,256}:(?P<v>[^/\s@]{1,256})@", ("://",), r"://[^/\s@]*"
    ),
    CredentialRule(
        "sensitive-assignment",
        # A quoted key (JSON, YAML) has its quoted string values masked, never a number,
        # boolean or null, so that redacted JSON stays JSON; a bare key (shell, logs,
        # YAML) has any value masked.
        rf"{_KEYWORDS}[A-Za-z0-9_.-]{{0,64}}"
        r"(?:[\"'][ \t]*[:=][ \t]*(?:\"(?P<v>[^\"\n]+)\"|'(?P<v2>[^'\n]+)')"
        r"|[ \t]*[:=][ \t]*(?:\"(?P<v3>[^\"\n]+)\"|'(?P<v4>[^'\n]+)'"
        r"|(?P<v5>[^\s\"',;&\[\]{}()<>]+)))",
        (
            "password",
            "passwd",
            "passphrase",
            "secret",
            "token",
            "api_key",
            "api-key",
            "apikey",
            "access_key",
            "access-key",
            "accesskey",
            "private_key",
            "private-key",
            "privatekey",
            "credential",
        ),
        rf"{_KEYWORDS}[A-Za-z0-9_.-]*[\"']?[ \t]*(?:[:=][ \t]*(?:\"[^\"\n]*|'[^'\n]*|[^\s\"',;&]*))?",
        r"[^\s\"',;&]*",
        ignore_case=True,
        gates=("pass", "secret", "token", "key", "credential"),
    ),
)


def prefixes(words: Iterable[str]) -> list[str]:
    return sorted({w[:n] for w in words for n in range(1, len(w))}, key=len, reverse=True)


_ASCII_LOWER = {code: code + 32 for code in range(ord("A"), ord("Z") + 1)}


def lower(text: str) -> str:
    """A lower-case copy of the same length (str.lower, unless it changes the length)."""
    lowered = text.lower()
    return lowered if len(lowered) == len(text) else text.translate(_ASCII_LOWER)


RULES = tuple(re.compile(rule.pattern, re.DOTALL) for rule in CREDENTIAL_RULES)
RESTS = tuple(re.compile(rule.rest, re.DOTALL) for rule in CREDENTIAL_RULES)


ANY_GATE = tuple(
    re.compile(
        "|".join(re.escape(g) for r in CREDENTIAL_RULES if r.ignore_case == case for g in r.gates)
    )
    for case in (False, True)
)


def _compile_pending(ignore_case: bool) -> re.Pattern[str]:
    parts = []
    for rule in CREDENTIAL_RULES:
        if rule.ignore_case == ignore_case:
            parts.append(rule.pending)
            parts.extend(re.escape(p) for p in prefixes(rule.triggers))
    return re.compile("(?:" + "|".join(parts) + r")\Z", re.DOTALL)


PENDING = (_compile_pending(False), _compile_pending(True))


def masked_span(match: re.Match[str]) -> tuple[int, int]:
    """The value of a `key: value` match (inside its quotes), else the whole match."""
    for name in ("v", "v2", "v3", "v4", "v5"):
        if name in match.re.groupindex and match.start(name) >= 0:
            return match.span(name)
    return match.span()
