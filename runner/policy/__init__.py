"""The default-deny policy (SPEC 5): the model, loading it failing closed, the capabilities
a job asks for, the decision on each, and the security checks a policy may enforce.
May import: `runner.mission`, `runner.engine` (the tool catalog), `runner.expressions`,
`runner.secrets` and the base modules.
"""
