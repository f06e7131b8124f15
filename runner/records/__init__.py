"""What a run leaves behind and reports: result values, the sink every report goes
through, and the event log of `.runner/runs/<run-id>/`.
May import: `runner.secrets` and the base modules.
"""
