"""Packages are found, not listed: every package under runner/ ships, plus the Cerberus
schemas, which live in schemas/ at the top of the repository (SPEC 2) and ship as
`runner.schemas`. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["runner", "runner.*"]), "runner.schemas"],
    package_dir={"runner.schemas": "schemas"},
)
