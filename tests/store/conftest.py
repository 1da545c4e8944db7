"""Backends of the contract tests (memory, real Redis)."""

from tests.backends import backend, make_store

__all__ = ["backend", "make_store"]
