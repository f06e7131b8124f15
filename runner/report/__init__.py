"""What a user sees of a run: the plain view for CI, the live view on a terminal, the
replay of an event log for `runner logs`, the shared display pieces, annotations (shown
compiler style, kept bounded), the summary and JUnit.
May import: `runner.records`, `runner.secrets` and the base modules.
"""
