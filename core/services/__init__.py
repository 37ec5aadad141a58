"""Domain services: the only code that reads or writes the database for the API and the CLI.

Routes call these functions; they raise `core.services.errors.DomainError` subclasses, which the API
maps to HTTP in one place (api/errors.py). Functions take a `Session` and never commit unless their
docstring says so, so a caller can group several into one transaction.
"""
