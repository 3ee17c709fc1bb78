"""API-key scopes and key hashing (shared by the API and the key-management use cases)."""

from __future__ import annotations

import hashlib

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
