"""The decision use case: score applicants with the version that serves them, commit every
decision to the decision log before it is returned, and count it.

:class:`DecisionService` is what the API's predict and explain routes call. One call:

1. asks :class:`~creditops.services.serving.ModelRouter` which version answers, and the
   kill switch (:class:`ModelControls`) whether automated decisioning is suspended;
2. decides: a lone applicant joins the current dynamic batch (:class:`DecisionBatcher`),
   a batch of at least :data:`THREAD_BATCH_ROWS` is scored in a worker thread so the event
   loop stays free, anything in between is scored inline (decision 0006);
3. waits for the group commit that stores the decisions
   (:class:`~creditops.store.decision_log.DecisionLogWriter`): an answer is only ever
   returned for a decision that is durably logged;
4. reports the decisions to the observer the app wired in (Prometheus counters).

:func:`decide` itself is pure CPU work on one served version: encode, score, reason codes,
policy, and the kill switch's override to review.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property, partial
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session, sessionmaker

from creditops.modeling.bundle import ReasonsFor, ScoredBatch, ScoringModel
from creditops.services.serving import ModelRoute, ModelRouter, ServingSlot
from creditops.store.admin_repositories import AuditRepository, ModelControlRepository
from creditops.store.decision_log import DecisionLogWriter
from creditops.store.decision_records import DecisionRecord
from creditops.store.deployment_repositories import ShadowRepository

log = logging.getLogger(__name__)

# Batches at least this large are scored in a worker thread so the event loop stays free;
# a single applicant is cheaper to score inline than to hand to a thread.
THREAD_BATCH_ROWS = 16
SUSPENDED_CODE = "SUSPENDED"
SUSPENDED_TEXT = "automated decisioning suspended"


@dataclass(frozen=True)
class Application:
    application_id: str
    features: dict[str, Any]


@dataclass(frozen=True)
class Reason:
    code: str
    text: str
    feature: str | None
    value: Any
    contribution: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "text": self.text,
            "feature": self.feature,
            "value": self.value,
            "contribution": self.contribution,
        }


@dataclass(frozen=True)
class DecisionResult:
    decision_id: str
    application_id: str
    model_name: str
    model_version: str
    policy_version: str
    route: str
    pd: float
    score: float
    decision: str
    reasons: list[Reason]
    suspended: bool
    created_at: datetime
    score_range: tuple[float | None, float | None]
    deployment_id: str | None = None

    @cached_property
    def reason_dicts(self) -> list[dict[str, Any]]:
        """The reasons as JSON objects, built once for the response and the decision log."""
        return [r.to_dict() for r in self.reasons]


@dataclass(frozen=True)
class ServedModel:
    """A model this service answers for: the version that serves it and its state."""

    name: str
    version: str
    suspended: bool
    aliases: dict[str, str]
    features: dict[str, str]


# -- the use case -----------------------------------------------------------------------
class DecisionService:
    """Decide, log and count (see the module docstring). One per API process."""

    def __init__(
        self,
        router: ModelRouter,
        decision_log: DecisionLogWriter,
        controls: ModelControls,
        *,
        reasons_for: ReasonsFor,
        batch_wait_ms: float,
    ) -> None:
        self.router = router
        self.controls = controls
        self.decision_log = decision_log
        self._reasons: ReasonsFor = reasons_for
        self.batcher = DecisionBatcher(reasons_for, THREAD_BATCH_ROWS, batch_wait_ms)
        # Called with every group of decisions after they were logged (metrics); set by
        # the app factory.
        self.on_decided: Callable[[Sequence[DecisionResult]], None] | None = None
        # Scores a shadow candidate off the response path; set by the app factory.
        self.shadow: ShadowScorer | None = None

    async def decide(
        self,
        model: str,
        applications: list[Application],
        *,
        request_id: str | None,
        key_id: str | None,
    ) -> list[DecisionResult]:
        """Decide on ``applications`` with the version serving ``model``; return once every
        decision is committed to the decision log. The request id (the caller's, else the
        first decision's id) and the calling API key are logged with each decision."""
        started = time.perf_counter()
        route = self.router.model_route(model)
        suspended = self.controls.is_suspended(model)
        if route.candidate is None or route.shadow:
            results = await self._decide_with(route.stable, applications, suspended)
        else:  # a deployment splits the traffic: each applicant goes to its arm
            results = await self._decide_split(route, applications, suspended)
        latency_ms = (time.perf_counter() - started) * 1000.0
        request_id = request_id or results[0].decision_id
        await self.decision_log.write(
            [
                _decision_record(r, a.features, latency_ms, request_id, key_id)
                for r, a in zip(results, applications, strict=True)
            ]
        )
        if self.on_decided is not None:
            self.on_decided(results)
        if route.shadow and route.candidate is not None and self.shadow is not None:
            self.shadow.submit(route.candidate, applications, results)
        return results

    async def _decide_with(
        self, slot: ServingSlot, applications: list[Application], suspended: bool
    ) -> list[DecisionResult]:
        if len(applications) >= THREAD_BATCH_ROWS:
            return await anyio.to_thread.run_sync(
                partial(decide, slot, applications, reasons=self._reasons, suspended=suspended)
            )
        if len(applications) == 1:
            return [await self.batcher.decide(slot, applications[0], suspended=suspended)]
        return decide(slot, applications, reasons=self._reasons, suspended=suspended)

    async def _decide_split(
        self, route: ModelRoute, applications: list[Application], suspended: bool
    ) -> list[DecisionResult]:
        """Each applicant decided by the arm the route picks. A candidate that fails is
        counted (the worker rolls it back on its error rate) and its applicants are decided
        by the stable version: the caller gets an answer either way."""
        arms: dict[int, tuple[ServingSlot, list[int]]] = {}
        for i, application in enumerate(applications):
            slot = route.pick(application.application_id)
            arms.setdefault(id(slot), (slot, []))[1].append(i)
        results: list[DecisionResult | None] = [None] * len(applications)
        for slot, indexes in arms.values():
            group = [applications[i] for i in indexes]
            if slot is route.candidate and slot.deployment_id is not None:
                try:
                    decided = await self._decide_with(slot, group, suspended)
                except Exception as exc:
                    log.warning(
                        "candidate %s v%s failed; the stable version answers: %r",
                        slot.name,
                        slot.version,
                        exc,
                    )
                    self.router.count_candidate(slot.deployment_id, failed=True)
                    decided = await self._decide_with(route.stable, group, suspended)
                else:
                    self.router.count_candidate(slot.deployment_id, failed=False)
            else:
                decided = await self._decide_with(slot, group, suspended)
            for i, result in zip(indexes, decided, strict=True):
                results[i] = result
        return [r for r in results if r is not None]

    def explain(self, model: str, features: dict[str, Any]) -> dict[str, Any]:
        """Every feature's contribution for one applicant with the version serving ``model``."""
        slot = self.router.stable(model)
        result = explain(slot, features)
        result["model"] = {"name": slot.name, "version": slot.version}
        return result

    def served_models(self) -> list[ServedModel]:
        return [
            ServedModel(
                name=slot.name,
                version=slot.version,
                suspended=self.controls.is_suspended(slot.name),
                aliases={a: slot.version for a in slot.info.aliases},
                features=dict(slot.model.spec.features),
            )
            for slot in self.router.slots()
        ]

    def check_served(self, model: str) -> None:
        """:class:`~creditops.errors.ModelNotFoundError` unless this service serves ``model``."""
        self.router.route(model)

    def log_queue_depth(self) -> int:
        """Decisions waiting for their group commit."""
        return self.decision_log.queue_depth()

    def serving_version(self, model: str) -> str | None:
        """The version this process serves for ``model`` (None when it serves none)."""
        return {s.name: s.version for s in self.router.slots()}.get(model)

    def suspend(self, model: str, suspended: bool, reason: str, actor: str) -> dict[str, Any]:
        """The kill switch: route every new decision of ``model`` to review (or resume),
        with an audit entry; takes effect in this process at once and in the others within
        :class:`ModelControls`' refresh period."""
        self.router.route(model)  # ModelNotFoundError for a model this service does not serve
        return self.controls.set(model, suspended, reason, actor)


def _decision_record(
    result: DecisionResult,
    inputs: dict[str, Any],
    latency_ms: float,
    request_id: str,
    key_id: str | None,
) -> DecisionRecord:
    """The decision log's row of one decision."""
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
        deployment_id=result.deployment_id,
    )


# -- the kill switch --------------------------------------------------------------------
class ModelControls:
    """The kill switch: suspension state per model, re-read from the database at most every
    ``ttl_s`` so a suspend on one worker reaches the others within that time. Reads use
    ``readonly`` sessions (they must not take SQLite's write lock on the hot path)."""

    def __init__(
        self,
        readonly: sessionmaker[Session],
        writable: sessionmaker[Session],
        ttl_s: float = 1.0,
    ) -> None:
        self._sessions = readonly
        self._writable = writable
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

    def set(self, model: str, suspended: bool, reason: str, actor: str) -> dict[str, Any]:
        """Store the switch of ``model`` with an audit entry (one transaction), then re-read."""
        with self._writable.begin() as session:
            ModelControlRepository(session).set(model, suspended, reason, actor)
            AuditRepository(session).add(
                actor=actor,
                action="model.suspend" if suspended else "model.resume",
                target=model,
                outcome="ok",
                details={"reason": reason},
            )
        self.refresh()
        return {"model": model, "suspended": suspended, "reason": reason}


# -- scoring ----------------------------------------------------------------------------
def decide(
    slot: ServingSlot,
    applications: Sequence[Application],
    *,
    reasons: ReasonsFor,
    suspended: bool,
) -> list[DecisionResult]:
    """Score applications with one slot. Pure CPU work: no I/O, no awaiting."""
    if slot.fault:
        raise RuntimeError(f"injected fault: {slot.name} v{slot.version} (deploy.inject_faults)")
    model = slot.model
    x, raw = _encode(model, applications)
    batch = model.score_encoded(x, raw, reasons=reasons)
    return _results(slot, applications, batch, suspended=suspended)


def health_check(slot: ServingSlot) -> None:
    """Score one applicant with every feature missing: the bundle loads, encodes and
    scores, and its PD is a probability. Raises on failure."""
    if slot.fault == "requests":  # the test-only fault that spares the health check
        slot = replace(slot, fault="")
    result = decide(slot, [Application("health-check", {})], reasons="all", suspended=False)[0]
    if not 0.0 <= result.pd <= 1.0:
        raise ValueError(f"health check: PD {result.pd} is not a probability")


def _encode(
    model: ScoringModel, applications: Sequence[Application]
) -> tuple[npt.NDArray[np.float64], dict[str, list[Any]] | None]:
    encoder = model.encoder
    x = encoder.encode_rows([a.features for a in applications])
    raw = {f: [a.features.get(f) for a in applications] for f in model.policy.knockout_features()}
    return x, raw or None


def _reasons_of(batch: ScoredBatch, row: int, application: Application) -> list[Reason]:
    found = []
    for j in range(batch.reason_codes.shape[1]):
        code = batch.reason_codes[row, j]
        if code is None:
            break
        feature = batch.reason_features[row, j]
        found.append(
            Reason(
                code=str(code),
                text=str(batch.reason_texts[row, j]),
                feature=feature,
                value=application.features.get(feature) if feature else None,
                contribution=float(batch.reason_contributions[row, j]),
            )
        )
    return found


def _results(
    slot: ServingSlot,
    applications: Sequence[Application],
    batch: ScoredBatch,
    *,
    suspended: bool,
) -> list[DecisionResult]:
    model = slot.model
    now = datetime.now(UTC)
    ids = _decision_ids(len(applications))
    score_range = model.scaling.score_range()
    results = []
    for i, app in enumerate(applications):
        found = _reasons_of(batch, i, app)
        decision = str(batch.decision[i])
        if suspended:
            decision = "review"
            found = [Reason(SUSPENDED_CODE, SUSPENDED_TEXT, None, None, 0.0), *found[:3]]
        results.append(
            DecisionResult(
                decision_id=ids[i],
                application_id=app.application_id,
                model_name=slot.name,
                model_version=slot.version,
                policy_version=model.policy.version,
                route=slot.route,
                pd=float(batch.pd[i]),
                score=float(batch.score[i]),
                decision=decision,
                reasons=found,
                suspended=suspended,
                created_at=now,
                score_range=score_range,
                deployment_id=slot.deployment_id,
            )
        )
    return results


def _decision_ids(count: int) -> list[str]:
    """Random (version 4) UUIDs, as ``uuid.uuid4()`` makes them, from one ``os.urandom``
    call for the whole batch instead of one system call per decision."""
    entropy = os.urandom(16 * count)
    return [str(uuid.UUID(bytes=entropy[16 * i : 16 * i + 16], version=4)) for i in range(count)]


def explain(slot: ServingSlot, features: dict[str, Any]) -> dict[str, Any]:
    """Every feature's contribution (log-odds) for one applicant, plus the base value."""
    model = slot.model
    x = model.encoder.encode_row(features)
    contrib, base = model.contributions(x)
    margin = float(model.margin(x)[0])
    pd_value = float(model.calibrator.predict(np.array([margin]))[0])
    return {
        "base_value": float(base[0]),
        "raw_score": margin,
        "pd": pd_value,
        "score": float(model.scaling.points([pd_value])[0]),
        "contributions": [
            {
                "feature": name,
                "value": features.get(name),
                "contribution": float(contrib[0, j]),
                "used_by_model": name in model.used_features,
            }
            for j, name in enumerate(model.encoder.feature_names)
        ],
    }


# -- dynamic batching -------------------------------------------------------------------
_Waiting = tuple[Application, "asyncio.Future[DecisionResult]"]


class DecisionBatcher:
    """Dynamic batching of single-applicant decisions on the event loop.

    Under load several predict requests arrive close together. Scoring them one by one pays
    NumPy's, LightGBM's and the TreeSHAP tables' per-call overhead (a few hundred
    microseconds) once per applicant; scoring them together pays it once per batch. The
    batcher collects the applicants that ask for a decision and checks once per turn of the
    event loop (``call_soon``, no timer): if more arrived during the last turn, it waits one
    more turn, up to ``max_wait_ms`` after the first; when a turn brings none, or the batch
    reaches ``max_rows``, it decides the batch with one call of :func:`decide` per served
    model version. An idle service so adds two loop turns (microseconds) to a lone request.
    Under load the batches grow from about 4 to 10-16 applicants, which halved the event
    loop's time per request (decision 0006). The batch is decided inline in that callback:
    scoring is pure CPU work under the GIL, so a hand-off to another thread or task would
    only add latency.

    Each request still gets its own result; if a batch fails as a whole, its applicants are
    decided one by one so that an error reaches only the request it belongs to. Scores do
    not depend on batching: every step is row-wise, and the tests compare batched and single
    decisions.
    """

    def __init__(self, reasons: ReasonsFor, max_rows: int, max_wait_ms: float = 1.0) -> None:
        self._reasons = reasons
        self._max_rows = max_rows
        self._max_wait_s = max_wait_ms / 1000.0
        self._pending: dict[tuple[int, bool], tuple[ServingSlot, list[_Waiting]]] = {}
        self._scheduled = False
        self._arrived = 0  # applicants added since the last flush check
        self._oldest = 0.0  # loop time of the first applicant waiting
        self.batches = 0  # decided batches (for tests and debugging)
        self.rows = 0

    async def decide(
        self, slot: ServingSlot, application: Application, *, suspended: bool
    ) -> DecisionResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[DecisionResult] = loop.create_future()
        key = (id(slot), suspended)
        waiting = self._pending.setdefault(key, (slot, []))[1]
        waiting.append((application, future))
        self._arrived += 1
        if len(waiting) >= self._max_rows:
            self._run(key)
        elif not self._scheduled:
            self._scheduled = True
            self._oldest = loop.time()
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        if self._arrived and loop.time() - self._oldest < self._max_wait_s:
            self._arrived = 0
            loop.call_soon(self._flush)  # arrivals in the last turn: one more turn
            return
        self._scheduled = False
        self._arrived = 0
        for key in list(self._pending):
            self._run(key)

    def _run(self, key: tuple[int, bool]) -> None:
        slot, waiting = self._pending.pop(key)
        suspended = key[1]
        self.batches += 1
        self.rows += len(waiting)
        try:
            results = self._decide(slot, [a for a, _ in waiting], suspended)
        except Exception as exc:
            if len(waiting) == 1:
                _settle(waiting[0][1], None, exc)
                return
            log.warning("a batch of %d decisions failed; deciding them one by one", len(waiting))
            for application, future in waiting:  # isolate the failing applicant
                try:
                    one = self._decide(slot, [application], suspended)
                except Exception as one_exc:
                    _settle(future, None, one_exc)
                else:
                    _settle(future, one[0], None)
            return
        for (_, future), result in zip(waiting, results, strict=True):
            _settle(future, result, None)

    def _decide(
        self, slot: ServingSlot, applications: list[Application], suspended: bool
    ) -> list[DecisionResult]:
        return decide(slot, applications, reasons=self._reasons, suspended=suspended)


def _settle(
    future: asyncio.Future[DecisionResult],
    result: DecisionResult | None,
    error: BaseException | None,
) -> None:
    if future.done():  # the request was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert result is not None
        future.set_result(result)


# -- shadow scoring -----------------------------------------------------------------------
_ShadowItem = tuple[ServingSlot, Sequence[Application], Sequence[DecisionResult]]


class ShadowScorer:
    """Scores a shadow candidate on the decisions already answered, off the response path.

    :meth:`submit` only queues (the request returns at once, with the answer of the
    version that serves); :meth:`run`, a task of the app's lifespan, wakes every
    ``interval_s``, scores everything queued in one batch per version in a worker thread
    and stores the shadow decisions (``shadow_decisions``, never the decision log). Beyond
    ``max_queue`` waiting applicants new ones are dropped and counted, so a shadow can never
    hold up or pile up behind the answers.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        reasons: ReasonsFor,
        max_queue: int,
        interval_s: float = 0.25,
    ) -> None:
        self._sessions = sessions
        self._reasons = reasons
        self._max_queue = max_queue
        self._interval = interval_s
        self._queue: list[_ShadowItem] = []
        self._waiting = 0
        self.scored = 0
        self.dropped = 0
        self.failed = 0

    def submit(
        self,
        slot: ServingSlot,
        applications: Sequence[Application],
        answered: Sequence[DecisionResult],
    ) -> None:
        if self._waiting + len(applications) > self._max_queue:
            self.dropped += len(applications)
            return
        self._queue.append((slot, applications, answered))
        self._waiting += len(applications)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def flush(self) -> None:
        if not self._queue:
            return
        batch, self._queue, self._waiting = self._queue, [], 0
        await anyio.to_thread.run_sync(self._score_and_store, batch)

    def _score_and_store(self, batch: list[_ShadowItem]) -> None:
        by_slot: dict[int, tuple[ServingSlot, list[Application], list[DecisionResult]]] = {}
        for slot, applications, answered in batch:
            entry = by_slot.setdefault(id(slot), (slot, [], []))
            entry[1].extend(applications)
            entry[2].extend(answered)
        rows: list[dict[str, Any]] = []
        for slot, applications, answered in by_slot.values():
            try:
                shadows = decide(slot, applications, reasons=self._reasons, suspended=False)
            except Exception as exc:
                self.failed += len(applications)
                log.warning("shadow %s v%s failed to score: %r", slot.name, slot.version, exc)
                continue
            rows.extend(
                {
                    "decision_id": s.decision_id,
                    "primary_decision_id": a.decision_id,
                    "deployment_id": slot.deployment_id or "",
                    "application_id": a.application_id,
                    "model_name": slot.name,
                    "model_version": slot.version,
                    "pd": s.pd,
                    "score": s.score,
                    "decision": s.decision,
                    "reasons": s.reason_dicts,
                    "created_at": s.created_at,
                }
                for s, a in zip(shadows, answered, strict=True)
            )
        if not rows:
            return
        try:
            with self._sessions.begin() as session:
                ShadowRepository(session).add_all(rows)
        except Exception as exc:  # a shadow record lost is not an answer lost
            self.failed += len(rows)
            log.warning("could not store %d shadow decisions: %r", len(rows), exc)
            return
        self.scored += len(rows)
