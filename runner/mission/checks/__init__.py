"""Semantic checks of a mission after the schema, each finding with its exact position.

`checker.Checker` runs them all; `base` holds what they share, `content` the checks of
artifacts and credentials, `expressions` every `${{ }}` in the place it appears.
May import what `runner.mission` may.
"""
