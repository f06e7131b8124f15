"""Missions, from file to frozen records: the one way in (SPEC 3 and 4).

Holds the safe YAML loader with positions, the Cerberus schema of a mission, the semantic
checks (`checks/`), the frozen records the rest of runner works on (`model`), the expanded
plan (matrix instances, DAG levels), typed inputs, the `uses:` action files and what
`services:` may ask for (`services`).
May import: `runner.expressions`, `runner.secrets`, and the base modules (`errors`,
`findings`, `output`, `durable`).
"""
