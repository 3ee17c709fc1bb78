"""Repositories of the service's administration: API keys, the audit trail and per-model
controls (suspension).

Like every repository they never commit (see :mod:`creditops.store.repositories`, which also
holds the shared helpers and the decision log's repositories); monitoring reports and the
monitoring worker's state are in :mod:`creditops.store.monitoring_repositories`.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from creditops.errors import InvalidInputError
from creditops.store.audit_chain import GENESIS, normalise, record_hash, verify_chain
from creditops.store.repositories import positive, rowcount, upsert_insert, utc_now
from creditops.store.tables import ApiKeyRow, AuditHeadRow, AuditRow, ModelControlRow

__all__ = [
    "ApiKeyRepository",
    "AuditRepository",
    "ModelControlRepository",
]

AUDIT_OUTCOMES = frozenset({"ok", "denied", "error"})


class ApiKeyRepository:
    """API keys. Only the sha256 of a secret is stored and looked up.

    :meth:`touch` is a write: the caller should throttle it (e.g. once a minute per key)
    rather than call it on every request, or it defeats the decision log's group commit.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(
        self,
        key_id: str,
        name: str,
        key_hash: str,
        scopes: builtins.list[str],
        *,
        created_at: datetime | None = None,
    ) -> ApiKeyRow:
        row = ApiKeyRow(
            key_id=key_id,
            name=name,
            key_hash=key_hash,
            scopes=builtins.list(scopes),
            created_at=created_at or utc_now(),
        )
        self.session.add(row)
        self.session.flush()
        return row

    def get(self, key_id: str) -> ApiKeyRow | None:
        return self.session.get(ApiKeyRow, key_id)

    def get_active_by_hash(self, key_hash: str) -> ApiKeyRow | None:
        query = select(ApiKeyRow).where(
            ApiKeyRow.key_hash == key_hash, ApiKeyRow.revoked_at.is_(None)
        )
        return self.session.scalars(query).one_or_none()

    def list(self) -> builtins.list[ApiKeyRow]:
        """All keys, revoked ones included, oldest first."""
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.key_id)
        return builtins.list(self.session.scalars(query))

    def revoke(self, key_id: str, *, at: datetime | None = None) -> bool:
        """Revoke a key; False if it does not exist or was already revoked."""
        stmt = (
            update(ApiKeyRow)
            .where(ApiKeyRow.key_id == key_id, ApiKeyRow.revoked_at.is_(None))
            .values(revoked_at=at or utc_now())
            .execution_options(synchronize_session="fetch")
        )
        return rowcount(self.session.execute(stmt)) == 1

    def touch(self, key_id: str, at: datetime) -> None:
        """Set the key's ``last_used_at`` to ``at``."""
        stmt = (
            update(ApiKeyRow)
            .where(ApiKeyRow.key_id == key_id)
            .values(last_used_at=at)
            .execution_options(synchronize_session="fetch")
        )
        self.session.execute(stmt)


class AuditRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(  # noqa: PLR0913 - the columns of one row
        self,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        details: dict[str, Any] | None = None,
        *,
        at: datetime | None = None,
    ) -> AuditRow:
        if outcome not in AUDIT_OUTCOMES:
            raise InvalidInputError(
                f"outcome must be one of {sorted(AUDIT_OUTCOMES)}.", field="outcome"
            )
        when = (at or utc_now()).astimezone(UTC)
        seq, prev_hash = self._advance_head()
        clean = normalise(details)
        row = AuditRow(
            at=when,
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            details=clean,
            seq=seq,
            prev_hash=prev_hash,
            hash=record_hash(seq, when, actor, action, target, outcome, clean, prev_hash),
        )
        self.session.execute(update(AuditHeadRow).where(AuditHeadRow.id == 1).values(hash=row.hash))
        self.session.add(row)
        self.session.flush()
        return row

    def _advance_head(self) -> tuple[int, str]:
        """Take the next ``seq`` and the previous hash. The UPDATE comes first so that it
        takes the write lock before anything is read: concurrent writers queue here and
        the chain never forks (store/audit_chain.py)."""
        found = self.session.execute(
            update(AuditHeadRow)
            .where(AuditHeadRow.id == 1)
            .values(seq=AuditHeadRow.seq + 1)
            .returning(AuditHeadRow.seq, AuditHeadRow.hash)
        ).one_or_none()
        if found is None:  # a database created without the migrations: the first record
            self.session.add(AuditHeadRow(id=1, seq=1, hash=GENESIS))
            self.session.flush()
            return 1, GENESIS
        return int(found[0]), str(found[1])

    def verify(self) -> dict[str, Any]:
        """Walk the chain (store/audit_chain.verify_chain)."""
        head = self.session.get(AuditHeadRow, 1)
        records = self.session.scalars(select(AuditRow).order_by(AuditRow.seq)).yield_per(1000)
        return verify_chain(records, head.seq if head else None, head.hash if head else None)

    def all_in_order(self) -> Iterator[AuditRow]:
        return iter(self.session.scalars(select(AuditRow).order_by(AuditRow.seq)).yield_per(1000))

    def about_model(self, name: str, version: str, limit: int = 500) -> builtins.list[AuditRow]:
        """The entries about model ``name`` as a whole (deployments, suspensions, rollbacks)
        or about its ``version`` (``name:version``: promotions, gate overrides), oldest
        first, the newest ``limit`` of them."""
        positive("limit", limit)
        query = (
            select(AuditRow)
            .where(AuditRow.target.in_([name, f"{name}:{version}"]))
            .order_by(AuditRow.at.desc(), AuditRow.id.desc())
            .limit(limit)
        )
        return builtins.list(reversed(builtins.list(self.session.scalars(query))))

    def list(
        self, limit: int = 100, action: str | None = None, target: str | None = None
    ) -> builtins.list[AuditRow]:
        """The newest ``limit`` entries (of ``action`` and ``target`` only, if given),
        newest first."""
        positive("limit", limit)
        query = select(AuditRow)
        if action is not None:
            query = query.where(AuditRow.action == action)
        if target is not None:
            query = query.where(AuditRow.target == target)
        query = query.order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit)
        return builtins.list(self.session.scalars(query))


class ModelControlRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, model_name: str) -> ModelControlRow | None:
        return self.session.get(ModelControlRow, model_name)

    def set(
        self,
        model_name: str,
        suspended: bool,
        reason: str,
        actor: str,
        *,
        at: datetime | None = None,
    ) -> ModelControlRow:
        """Create or replace the controls of ``model_name``; returns the stored row."""
        values = {
            "model_name": model_name,
            "suspended": suspended,
            "reason": reason,
            "updated_at": at or utc_now(),
            "updated_by": actor,
        }
        stmt = upsert_insert(self.session, ModelControlRow).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["model_name"],
            set_={k: stmt.excluded[k] for k in values if k != "model_name"},
        )
        self.session.execute(stmt)
        query = (
            select(ModelControlRow)
            .where(ModelControlRow.model_name == model_name)
            .execution_options(populate_existing=True)
        )
        return self.session.scalars(query).one()

    def list(self) -> builtins.list[ModelControlRow]:
        """The controls of every model that has any, by model name."""
        query = select(ModelControlRow).order_by(ModelControlRow.model_name)
        return builtins.list(self.session.scalars(query))
