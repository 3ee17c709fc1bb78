"""Who may call the service: API keys (created, listed, revoked; stored only as hashes),
the look-up that turns a presented key into a :class:`~creditops.domain.access.Principal`,
and the audit trail of administrative actions."""

from __future__ import annotations

import getpass
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from creditops.domain.access import Principal, hash_key
from creditops.domain.windows import utc_text
from creditops.errors import InvalidInputError, NotFoundError
from creditops.store.admin_repositories import ApiKeyRepository, AuditRepository
from creditops.store.tables import ApiKeyRow

KEY_PREFIX = "co"
log = logging.getLogger(__name__)


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


@dataclass(frozen=True)
class CreatedKey:
    key: str
    key_id: str
    name: str
    scopes: list[str]


def create_key(
    sessions: sessionmaker[Session],
    name: str,
    scopes: Sequence[str],
    valid: Sequence[str],
    actor: str,
) -> CreatedKey:
    unknown = [s for s in scopes if s not in valid]
    if unknown or not scopes:
        raise InvalidInputError(
            f"--scopes must be a comma-separated subset of {', '.join(valid)}; got {list(scopes)}",
            field="scopes",
        )
    if not name.strip():
        raise InvalidInputError("--name must not be empty", field="name")
    key_id = secrets.token_hex(4)
    key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(24)}"
    with sessions.begin() as session:
        ApiKeyRepository(session).add(
            key_id=key_id, name=name, key_hash=hash_key(key), scopes=sorted(set(scopes))
        )
        AuditRepository(session).add(
            actor=actor,
            action="key.create",
            target=key_id,
            outcome="ok",
            details={"name": name, "scopes": sorted(set(scopes))},
        )
    return CreatedKey(key=key, key_id=key_id, name=name, scopes=sorted(set(scopes)))


def list_keys(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    with sessions() as session:
        return [key_dict(r) for r in ApiKeyRepository(session).list()]


def revoke_key(sessions: sessionmaker[Session], key_id: str, actor: str) -> None:
    with sessions.begin() as session:
        if not ApiKeyRepository(session).revoke(key_id):
            raise NotFoundError(f"no active API key with id {key_id!r}", field="key_id")
        AuditRepository(session).add(
            actor=actor, action="key.revoke", target=key_id, outcome="ok", details={}
        )


def key_dict(row: ApiKeyRow) -> dict[str, Any]:
    return {
        "id": row.key_id,
        "name": row.name,
        "scopes": list(row.scopes),
        "created_at": utc_text(row.created_at),
        "revoked_at": utc_text(row.revoked_at) if row.revoked_at else None,
        "last_used_at": utc_text(row.last_used_at) if row.last_used_at else None,
    }


def audit_entries(
    sessions: sessionmaker[Session], limit: int, action: str | None
) -> list[dict[str, Any]]:
    with sessions() as session:
        return [
            {
                "id": r.id,
                "at": utc_text(r.at),
                "actor": r.actor,
                "action": r.action,
                "target": r.target,
                "outcome": r.outcome,
                "details": r.details,
            }
            for r in AuditRepository(session).list(limit=limit, action=action)
        ]


def find_key(
    readonly: sessionmaker[Session], writable: sessionmaker[Session], key_hash: str
) -> Principal | None:
    """The principal of an active key with this hash, and a record that it was used.

    The API's authenticator caches the answer for a few seconds per key, so
    ``last_used_at`` is written at most once per key per cache period and is accurate to
    that period. A failed write is logged, never turned into a refused request.
    """
    with readonly() as session:
        row = ApiKeyRepository(session).get_active_by_hash(key_hash)
        if row is None:
            return None
        principal = Principal(key_id=row.key_id, name=row.name, scopes=frozenset(row.scopes))
    try:
        with writable.begin() as session:
            ApiKeyRepository(session).touch(row.key_id, datetime.now(UTC))
    except SQLAlchemyError as exc:
        log.warning("could not record the use of API key %s: %s", row.key_id, exc)
    return principal
