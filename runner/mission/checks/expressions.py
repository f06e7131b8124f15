"""Expressions wherever they may appear, each checked with the Scope of its place.

Scopes follow GitHub's context-availability table (docs: contexts#context-availability),
with runner's `mission` context wherever `github` is:
    top env                     github mission vars inputs secrets
    run-name, concurrency       github mission vars inputs
    job if                      + needs (when the job has needs); status functions
    strategy.matrix             + needs
    job name/runs-on/timeout-minutes/continue-on-error/with/container/services/...
                                + needs, strategy, matrix (empty in a job without a matrix:
                                a warning for each key read)
    environment.url             + job runner env steps (every step id of the job)
    job env, secrets            + secrets
    container env, services.*.env
                                + secrets env job runner
    container/services credentials
                                + secrets env
    defaults                    + env
    job outputs                 + secrets env job runner steps (every step id of the job)
    step name/run/with/env/working-directory/timeout-minutes/continue-on-error
                                + secrets env job runner steps (earlier step ids); hashFiles
    step if                     as a step, without secrets; status functions
    verify checks               github mission vars inputs jobs (bare expressions)
An undefined matrix key is a warning (runner.expressions); `inputs.<name>` is checked
against the declared inputs (top-level `inputs`, workflow_dispatch/workflow_call inputs)
when there are any, `needs.<job>.outputs.<name>` against the outputs that job declares.
Also:
    (error)   verify: no job 'x' in this mission (jobs: a, b)
    (note)    secrets.GITHUB_TOKEN means nothing here: it evaluates to empty `if:` checks (rule if-cond):
    (error)   if: has text around ${{ }}, so it is a non-empty string and always true; ...
              when the condition starts with ${{ (the author meant one expression)
    (warning) the same when text precedes the first ${{ (a deliberate template)
    (warning) if: is the constant false; remove it or make it an expression
"""

from __future__ import annotations

from typing import Any

from runner import expressions as ex
from runner.expressions import parser as ep
from runner.findings import Severity
from runner.mission.checks.base import Reporter, dict_of, list_of, names_of, one_expression, show
from runner.mission.yaml_loader import join
from runner.secrets.sources import GITHUB_TOKEN, GITHUB_TOKEN_NOTE

# GitHub's context-availability table (docs: contexts#context-availability), plus `mission`
BASE = frozenset({"github", "mission", "vars", "inputs"})
FUNCTIONS = frozenset(
    {"contains", "startsWith", "endsWith", "format", "join", "toJSON", "fromJSON"}
)
STEP_FUNCTIONS = FUNCTIONS | {"hashFiles"}
IF_FUNCTIONS = FUNCTIONS | ex.STATUS_FUNCTIONS


class ExpressionChecks(Reporter):
    def _expressions(self, top: dict[str, Any], jobs: dict[str, Any]) -> None:
        base = ex.Scope(BASE, FUNCTIONS, inputs=self.inputs)
        self._texts(top.get("run-name"), "run-name", base)
        self._texts(top.get("concurrency"), "concurrency", base)
        self._texts(
            top.get("env"), "env", ex.Scope(BASE | {"secrets"}, FUNCTIONS, inputs=self.inputs)
        )
        for job_id, job in jobs.items():
            if isinstance(job, dict):
                self._job_expressions(job_id, job, jobs)
        verify = ex.Scope(BASE | {"jobs"}, FUNCTIONS, inputs=self.inputs)
        for index, check in enumerate(list_of(top.get("verify"))):
            text = dict_of(check).get("check")
            if isinstance(text, str):
                sub = f"verify[{index}].check"
                self._expression(text, sub, verify, bare=True)
                known = {j.lower() for j in jobs}
                for name, offset in references(text, "jobs", bare=True):
                    if name.lower() not in known:
                        self.add(
                            sub,
                            f"no job '{name}' in this mission (jobs: {', '.join(jobs) or 'none'})",
                            "expression",
                            at=self.doc.locate(sub, offset),
                        )

    def _job_expressions(self, job_id: str, job: dict[str, Any], jobs: dict[str, Any]) -> None:
        keypath = join("jobs", job_id)
        needs = frozenset(names_of(job.get("needs")))
        strategy = dict_of(job.get("strategy"))
        matrix = strategy.get("matrix")
        matrix_keys: frozenset[str] | None = frozenset()  # no matrix: `matrix` is empty
        contexts = set(BASE) | {"strategy", "matrix"}
        if needs:
            contexts.add("needs")
        if matrix is not None:
            matrix_keys = None
            if isinstance(matrix, dict) and not isinstance(matrix.get("include"), str):
                keys = {k for k in matrix if k not in ("include", "exclude")}
                for entry in list_of(matrix.get("include")):
                    keys.update(dict_of(entry))
                matrix_keys = frozenset(keys)
        common = {
            "needs": needs or None,
            "matrix_keys": matrix_keys,
            "inputs": self.inputs,
            "needs_outputs": _declared_outputs(needs, jobs),
        }

        def scope(
            extra: set[str] | frozenset[str], functions: frozenset[str] = FUNCTIONS, **more: Any
        ) -> ex.Scope:
            return ex.Scope(frozenset(contexts | set(extra)), functions, **{**common, **more})

        job_scope = scope(set())
        with_secrets = scope({"secrets"})
        pre_strategy = ex.Scope(
            frozenset(BASE | ({"needs"} if needs else set())),
            FUNCTIONS,
            needs=needs or None,
            inputs=self.inputs,
        )
        self._condition(
            job.get("if"),
            f"{keypath}.if",
            ex.Scope(
                frozenset(BASE | ({"needs"} if needs else set())),
                IF_FUNCTIONS,
                needs=needs or None,
                inputs=self.inputs,
            ),
        )
        for key in (
            "name",
            "runs-on",
            "concurrency",
            "timeout-minutes",
            "continue-on-error",
            "with",
            "tools",
        ):
            self._texts(job.get(key), f"{keypath}.{key}", job_scope)
        self._texts(strategy.get("matrix"), f"{keypath}.strategy.matrix", pre_strategy)
        for key in ("fail-fast", "max-parallel"):
            self._texts(strategy.get(key), f"{keypath}.strategy.{key}", job_scope)
        self._texts(job.get("env"), f"{keypath}.env", with_secrets)
        self._texts(job.get("secrets"), f"{keypath}.secrets", with_secrets)
        container = job.get("container")
        if isinstance(container, dict):
            for key, value in container.items():
                sub = f"{keypath}.container.{key}"
                if key == "env":
                    self._texts(value, sub, scope({"secrets", "env", "job", "runner"}))
                elif key == "credentials":
                    self._texts(value, sub, scope({"secrets", "env"}))
                else:
                    self._texts(value, sub, job_scope)
        else:
            self._texts(container, f"{keypath}.container", job_scope)
        self._texts(job.get("defaults"), f"{keypath}.defaults", scope({"env"}))
        steps = list_of(job.get("steps"))
        all_ids = frozenset(
            s["id"] for s in steps if isinstance(s, dict) and isinstance(s.get("id"), str)
        )
        environment = job.get("environment")
        for key, value in dict_of(environment).items():
            sub = f"{keypath}.environment.{key}"
            if key == "url":
                where = scope({"job", "runner", "env", "steps"}, step_ids=all_ids)
                self._texts(value, sub, where)
            else:
                self._texts(value, sub, job_scope)
        if not isinstance(environment, dict):
            self._texts(environment, f"{keypath}.environment", job_scope)
        for name, service in dict_of(job.get("services")).items():
            base = join(f"{keypath}.services", name)
            if not isinstance(service, dict):
                self._texts(service, base, job_scope)
                continue
            for key, value in service.items():
                if key == "env":
                    where = scope({"secrets", "env", "job", "runner"})
                elif key == "credentials":
                    where = scope({"secrets", "env"})
                else:
                    where = job_scope
                self._texts(value, join(base, key), where)
        self._texts(
            job.get("outputs"),
            f"{keypath}.outputs",
            scope({"secrets", "env", "job", "runner", "steps"}, step_ids=all_ids),
        )
        prior: set[str] = set()
        step_extra = {"job", "runner", "env", "steps"}
        for index, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            sub = f"{keypath}.steps[{index}]"
            ids = frozenset(prior)
            in_step = scope(step_extra | {"secrets"}, STEP_FUNCTIONS, step_ids=ids)
            for key in (
                "name",
                "run",
                "with",
                "env",
                "working-directory",
                "timeout-minutes",
                "continue-on-error",
            ):
                self._texts(step.get(key), f"{sub}.{key}", in_step)
            self._condition(
                step.get("if"),
                f"{sub}.if",
                scope(step_extra, STEP_FUNCTIONS | ex.STATUS_FUNCTIONS, step_ids=ids),
            )
            if isinstance(step.get("id"), str):
                prior.add(step["id"])

    def _texts(self, value: Any, keypath: str, scope: ex.Scope) -> None:
        """Check every string under value (mapping values, list items) as text with ${{ }}."""
        if isinstance(value, str):
            if "${{" in value:
                self._expression(value, keypath, scope, bare=False)
        elif isinstance(value, dict):
            for key, sub in value.items():
                if "${{" in key:  # an env name computed at run time
                    self._expression(key, join(keypath, key), scope, bare=False, key=True)
                self._texts(sub, join(keypath, key), scope)
        elif isinstance(value, list):
            for index, sub in enumerate(value):
                self._texts(sub, f"{keypath}[{index}]", scope)

    def _condition(self, value: Any, keypath: str, scope: ex.Scope) -> None:
        if value is None:
            return
        if not isinstance(value, str):
            shown = show(value)
            self.add(
                keypath,
                f"if: is the constant {shown}; remove it or make it an expression",
                "if-cond",
                Severity.WARNING,
            )
            return
        if "${{" not in value:
            self._expression(value, keypath, scope, bare=True)
            return
        if not one_expression(value):
            # GitHub renders such a condition as a string, which is true when not empty.
            # Starting with ${{ shows the author meant it to delimit the condition: an error;
            # text before it (`(${{ a }} || ${{ b }})`) is a deliberate template: a warning.
            self.add(
                keypath,
                "if: has text around ${{ }}, so it is a non-empty string and always true; "
                "write the whole condition inside one ${{ }}",
                "if-cond",
                Severity.ERROR if value.startswith("${{") else Severity.WARNING,
            )
        self._expression(value, keypath, scope, bare=False)

    def _expression(
        self, text: str, keypath: str, scope: ex.Scope, *, bare: bool, key: bool = False
    ) -> None:
        if "github_token" in text.lower():
            for name, offset in references(text, "secrets", bare=bare):
                if name.upper() == GITHUB_TOKEN:
                    self.add(
                        keypath,
                        GITHUB_TOKEN_NOTE,
                        "github-only",
                        Severity.NOTE,
                        at=self.doc.locate(keypath, offset),
                    )
        for problem in ex.check(text, scope, bare=bare):
            if key:
                line, col = self.doc.key_at(keypath)
                at = (line, col + problem.offset)
            else:
                at = self.doc.locate(keypath, problem.offset)
            self.add(keypath, problem.message, problem.rule, problem.severity, at=at)


def _declared_outputs(
    needs: frozenset[str], jobs: dict[str, Any]
) -> tuple[tuple[str, frozenset[str] | None], ...]:
    """The outputs each needed job declares; None for one whose outputs cannot be known
    (a reusable workflow call, outputs given as an expression)."""
    found: list[tuple[str, frozenset[str] | None]] = []
    for name in sorted(needs):
        job = dict_of(jobs.get(name))
        outputs = job.get("outputs")
        known = "uses" not in job and (outputs is None or isinstance(outputs, dict))
        found.append((name, frozenset(dict_of(outputs)) if known else None))
    return tuple(found)


def references(text: str, context: str, *, bare: bool) -> list[tuple[str, int]]:
    """(name, offset in text) of each `context.name` / `context['name']` in the expressions
    of text; expressions that do not parse give none (`check` reports them)."""
    if bare and "${{" not in text:
        sources = [(0, text)]
    else:
        try:
            sources = [(start + 3, inner) for start, inner in ex.find_expressions(text)]
        except ex.ExpressionError:
            return []
    found: list[tuple[str, int]] = []
    for base, source in sources:
        try:
            tokens = ep.tokenize(source)
        except ex.ExpressionError:
            continue
        for i, tok in enumerate(tokens[:-2]):
            after_dot = i > 0 and tokens[i - 1].text == "."
            if tok.kind != "name" or tok.text.lower() != context or after_dot:
                continue
            nxt, name = tokens[i + 1], tokens[i + 2]
            if nxt.text == "." and name.kind == "name":
                found.append((name.text, base + name.offset))
            elif nxt.text == "[" and name.kind == "string" and isinstance(name.value, str):
                found.append((name.value, base + name.offset))
    return found
