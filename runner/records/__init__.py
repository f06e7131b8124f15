"""What a run leaves behind and reports: result values, the typed events of a run
(`events`), the sink every event goes through, and the event log of
`.runner/runs/<run-id>/`.
May import: `runner.secrets` and the base modules.
"""
