"""Backends of the contract tests (memory, real Redis)."""

from tests.backends import backend, fanout

__all__ = ["backend", "fanout"]
