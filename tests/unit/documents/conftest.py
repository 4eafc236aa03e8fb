"""The documents tests' fixtures live in support.py (importable by the tests, unlike a conftest)."""

from unit.documents.support import pki, token, tsa

__all__ = ["pki", "token", "tsa"]
