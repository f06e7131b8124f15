"""Secrets: where a run's secrets come from (`sources`), the forms a value may be printed
in (`forms`), the views of a text the matcher sees (`normalise`), well-known credential
formats (`credentials`), the redactor that masks them in everything runner writes
(`redact`), and finding them in bytes that leave a job (`scan`).
May import: only the base modules.
"""
