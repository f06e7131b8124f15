"""Checks of what a mission holds: artifacts and credentials.

    artifact    artifact "junit" is produced twice (first by job "a" at line 3, col 9)
                job "b" consumes artifact "x", which no job produces
                job "b" consumes artifact "x", which no job in its needs produces (job
                "a" does: add it to needs)
                job "b" consumes "x" as a dir, but job "a" produces it as a file
                artifact path "../x" leaves the workspace: use a relative path inside it
    credential  looks like a <kind> written into the mission; pass it with --secret NAME and
                refer to it as ${{ secrets.NAME }}
                (warning) "DB_PASSWORD" holds a literal value; pass secrets with --secret ...

Credential patterns (string values anywhere in the file, `CREDENTIALS`): PEM private keys,
GitHub tokens (ghp_/gho_/ghu_/ghs_/ghr_, github_pat_), AWS access key ids (AKIA/ASIA + 16),
Slack tokens (xox?-), Google API keys (AIza + 35), Stripe live keys (sk_live_/rk_live_),
JSON Web Tokens. The warning: a literal of 8+ characters without spaces under env, with,
secrets or credentials.password whose name says password, secret, token or (api/private) key.
"""

from __future__ import annotations

import re
from typing import Any

from runner.findings import Severity
from runner.mission.checks.base import Reporter, dict_of, list_of, names_of
from runner.mission.yaml_loader import join

CREDENTIALS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY( BLOCK)?-----")),
    ("GitHub token", re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})")),
    ("AWS access key id", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("Stripe secret key", re.compile(r"\b[rs]k_live_[0-9A-Za-z]{20,}")),
    (
        "JSON Web Token",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ),
)
_ANY_CREDENTIAL = re.compile("|".join(f"(?:{p.pattern})" for _, p in CREDENTIALS))
SENSITIVE_NAME = re.compile(r"(?i)(passw(or)?d|secret|token|api[_-]?key|private[_-]?key)")


class ContentChecks(Reporter):
    def _artifacts(self, jobs: dict[str, Any]) -> None:
        produced: dict[str, tuple[str, str, Any]] = {}  # name -> (job, keypath, type)
        for job_id, job in jobs.items():
            for index, artifact in enumerate(list_of(dict_of(job).get("produces"))):
                artifact = dict_of(artifact)
                name, path = artifact.get("name"), artifact.get("path")
                keypath = f"jobs.{job_id}.produces[{index}]"
                if isinstance(path, str) and (
                    path.startswith("/") or ".." in re.split(r"[\\/]", path)
                ):
                    self.add(
                        f"{keypath}.path",
                        f'artifact path "{path}" leaves the workspace: use a relative path inside it',
                        "artifact",
                    )
                if not isinstance(name, str):
                    continue
                if name in produced:
                    other_job, other, _ = produced[name]
                    line, col = self.doc.at(other)
                    self.add(
                        f"{keypath}.name",
                        f'artifact "{name}" is produced twice (first by job "{other_job}" '
                        f"at line {line}, col {col})",
                        "artifact",
                    )
                    continue
                produced[name] = (job_id, f"{keypath}.name", artifact.get("type", "file"))
        for job_id, job in jobs.items():
            consumes = list_of(dict_of(job).get("consumes"))
            if not consumes:
                continue
            closure = _closure(jobs, job_id)
            for index, entry in enumerate(consumes):
                name = entry if isinstance(entry, str) else dict_of(entry).get("name")
                wanted = None if isinstance(entry, str) else dict_of(entry).get("type")
                if not isinstance(name, str):
                    continue
                keypath = f"jobs.{job_id}.consumes[{index}]"
                source = produced.get(name)
                if source is None:
                    self.add(
                        keypath,
                        f'job "{job_id}" consumes artifact "{name}", which no job produces',
                        "artifact",
                    )
                elif source[0] not in closure:
                    self.add(
                        keypath,
                        f'job "{job_id}" consumes artifact "{name}", which no job in its needs '
                        f'produces (job "{source[0]}" does: add it to needs)',
                        "artifact",
                    )
                elif wanted is not None and wanted != source[2]:
                    self.add(
                        keypath,
                        f'job "{job_id}" consumes "{name}" as a {wanted}, but job "{source[0]}" '
                        f"produces it as a {source[2]}",
                        "artifact",
                    )

    def _credentials(self, value: Any, keypath: str, parent_key: str = "") -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                self._credentials(sub, join(keypath, key), key)
            return
        if isinstance(value, list):
            for index, sub in enumerate(value):
                self._credentials(sub, f"{keypath}[{index}]")
            return
        if not isinstance(value, str):
            return
        match = _ANY_CREDENTIAL.search(value) if len(value) >= 16 else None
        if match:
            kind = next(
                kind for kind, pattern in CREDENTIALS if pattern.match(value, match.start())
            )
            self.add(
                keypath,
                f"looks like {_article(kind)} {kind} written into the mission; pass it with --secret NAME "
                "and refer to it as ${{ secrets.NAME }}",
                "credential",
                at=self.doc.locate(keypath, match.start()),
            )
            return
        in_values = re.search(
            r"(^|\.)(env|with|secrets)\.[^.\[]+$|\.credentials\.password$", keypath
        )
        if (
            in_values
            and SENSITIVE_NAME.search(parent_key)
            and "${{" not in value
            and len(value) >= 8
            and not re.search(r"\s", value)
        ):
            self.add(
                keypath,
                f'"{parent_key}" holds a literal value; pass secrets with --secret NAME and '
                "refer to them as ${{ secrets.NAME }}",
                "credential",
                Severity.WARNING,
            )


def _closure(jobs: dict[str, Any], job_id: str) -> set[str]:
    """Every job `job_id` needs, directly or not."""
    seen: set[str] = set()
    todo = names_of(dict_of(jobs.get(job_id)).get("needs"))
    while todo:
        name = todo.pop()
        if name in seen or name not in jobs:
            continue
        seen.add(name)
        todo.extend(names_of(dict_of(jobs[name]).get("needs")))
    return seen


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"
