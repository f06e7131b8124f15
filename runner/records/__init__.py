"""What a run leaves behind and reports: result values, the typed events of a run
(`events`), the sink every event goes through, the event log, and the run directories
`.runner/runs/<run-id>/` with the one rule that tells a live run (`rundirs`).
May import: `runner.secrets` and the base modules.
"""
