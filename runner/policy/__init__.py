"""The default-deny policy (SPEC 5), by responsibility:

    capabilities     what a job instance asks for (`Kind`, `Capability`)
    security_checks  the checks a policy may enforce (`SecurityCheck`) and their findings
    model            the policy as values: `Policy`, `Rule`, `Limits`, `Grants`
    loader           reading a policy file, failing closed (`load_policy`)
    decisions        the decision on every request (`decide`), what a job may use (`granted`)
    diff             what changes between two policies (`diff`)

Adding a capability kind: a `Kind` member and its request in `capabilities`; then mypy
points at every `match` that must handle it (model, decisions, diff), and the tests at
`schemas/policy.yml` and docs/policy.md.
May import: `runner.mission`, `runner.engine` (the tool catalog), `runner.expressions`,
`runner.secrets` and the base modules.
"""
