"""FastAPI service: /v1 resources, auth, schemas (see docs/architecture.md for the contract)."""

__version__ = "0.1.0"
