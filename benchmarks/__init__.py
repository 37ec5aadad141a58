"""Benchmarks of the platform, kept out of the shipped packages: `python -m benchmarks.<name> --help`.

Each prints JSON; docs/benchmarks.md records the figures with the command that produced them.
`benchmarks.fresh_db` builds the fresh, migrated databases they (and tests/conftest.py) run against.
"""
