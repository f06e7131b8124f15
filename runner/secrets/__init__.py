"""Secrets: where a run's secrets come from, well-known credential formats, and the
redactor that masks them in everything runner writes.
May import: only the base modules.
"""
