"""API-key scopes, key hashing and the principal a key stands for (shared by the API and
the key-management use cases)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

SCOPES = (
    "predict",
    "explain",
    "feedback",
    "read",
    "monitor",
    "retrain",
    "deploy",
    "promote",
    "rollback",
    "admin",
)


def hash_key(key: str) -> str:
    """Keys are high-entropy random strings, so a plain sha256 is a safe, fast digest."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key (its id, name and scopes). ``admin`` grants every scope."""

    key_id: str | None
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    @property
    def actor(self) -> str:
        """How the audit trail names this caller: the key id, else the name."""
        return self.key_id or self.name


ANONYMOUS = Principal(key_id=None, name="anonymous (auth disabled)", scopes=frozenset(SCOPES))
