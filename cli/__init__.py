"""The `basis` command line (entry point `cli.main:main`); see cli/main.py."""
