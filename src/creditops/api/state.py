"""Everything a request handler reaches, built once per process by the app factory."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from creditops.api.batching import DecisionBatcher
from creditops.api.fastpath import FastRoute
from creditops.api.metrics import ServiceMetrics
from creditops.api.security import Authenticator
from creditops.services.context import AppContext
from creditops.services.serving import DecisionResult, ModelRouter
from creditops.settings import Settings
from creditops.store.admin_repositories import ModelControlRepository
from creditops.store.decision_log import DecisionLogWriter
from creditops.store.decision_records import DecisionRecord

APPROVAL_WINDOW = 1000


class ModelControls:
    """Suspension state per model, re-read from the database at most every ``ttl_s`` so a
    suspend on one worker reaches the others within that time."""

    def __init__(self, sessions: sessionmaker[Session], ttl_s: float = 1.0) -> None:
        self._sessions = sessions
        self._ttl = ttl_s
        self._state: dict[str, bool] = {}
        self._read_at = 0.0

    def refresh(self) -> None:
        with self._sessions() as session:
            repo = ModelControlRepository(session)
            self._state = {row.model_name: bool(row.suspended) for row in repo.list()}
        self._read_at = time.monotonic()

    def is_suspended(self, model: str) -> bool:
        if time.monotonic() - self._read_at > self._ttl:
            self.refresh()
        return self._state.get(model, False)


@dataclass
class ApiState:
    settings: Settings
    ctx: AppContext
    router: ModelRouter
    auth: Authenticator
    decision_log: DecisionLogWriter
    sessions: sessionmaker[Session]
    controls: ModelControls
    metrics: ServiceMetrics
    engine: Engine
    fast_routes: dict[str, FastRoute] = field(default_factory=dict)  # see api/fastpath.py
    batcher: DecisionBatcher | None = None  # see api/batching.py; set by the app factory
    _recent: dict[str, deque[bool]] = field(default_factory=dict)
    _approved: dict[str, int] = field(default_factory=dict)  # approvals in _recent

    @staticmethod
    def to_record(
        result: DecisionResult,
        inputs: dict[str, Any],
        latency_ms: float,
        request_id: str,
        key_id: str | None,
    ) -> DecisionRecord:
        return DecisionRecord(
            decision_id=result.decision_id,
            application_id=result.application_id,
            model_name=result.model_name,
            model_version=result.model_version,
            policy_version=result.policy_version,
            pd=result.pd,
            score=result.score,
            decision=result.decision,
            reasons=result.reason_dicts,
            inputs=inputs,
            latency_ms=latency_ms,
            created_at=result.created_at,
            request_id=request_id,
            api_key_id=key_id,
            route=result.route,
            suspended=result.suspended,
        )

    def observe_decisions(self, results: Sequence[DecisionResult]) -> None:
        m = self.metrics
        for r in results:
            m.child(m.predictions, r.model_name, r.model_version, r.decision).inc()
            m.child(m.pd, r.model_name).observe(r.pd)
            m.child(m.score, r.model_name).observe(r.score)
            window = self._recent.setdefault(r.model_name, deque(maxlen=APPROVAL_WINDOW))
            approved = r.decision == "approve"
            # keep a running count instead of summing the window on every request
            dropped = window[0] if len(window) == APPROVAL_WINDOW else False
            self._approved[r.model_name] = (
                self._approved.get(r.model_name, 0) + int(approved) - int(dropped)
            )
            window.append(approved)
        for name in {r.model_name for r in results}:
            window = self._recent[name]
            m.child(m.approval_rate, name).set(self._approved[name] / len(window))
