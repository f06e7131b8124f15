"""A run of a mission, end to end: the session, the scheduler over the DAG, one job, one
step's container attempt, the repository snapshot (seeded once, shared) and the job's
workspace over it, the read-only history a job may ask for, its services (sidecars), artifacts (with `tarstream`), the built-in
actions and the `actions/cache` store,
step output and workflow commands, the expression contexts, retries and the `verify:`
post-conditions.
May import every package below it: `policy`, `mission`, `engine`, `audit`, `report`,
`records`, `expressions`, `secrets` and the base modules. Only `runner.commands` imports it.
"""
