"""Which model version answers a request, and the decisions it returns.

:class:`ModelRouter` is the one component that decides routing. Today every request for a
model goes to the version behind its ``production`` alias; canary, shadow and A/B routing
will plug in here as a pure function of (deployment state, application id hash), so every
replica agrees without coordination. Slots are replaced by assigning a new immutable
object, which is atomic for readers.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from creditops.errors import ModelNotFoundError
from creditops.modeling.bundle import ReasonsFor, ScoredBatch, ScoringModel
from creditops.registry.records import VersionInfo
from creditops.services.context import AppContext
from creditops.services.model_versions import load_model

SUSPENDED_CODE = "SUSPENDED"
SUSPENDED_TEXT = "automated decisioning suspended"


@dataclass(frozen=True)
class ServingSlot:
    name: str
    version: str
    model: ScoringModel
    info: VersionInfo
    route: str = "production"
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class ModelRouter:
    def __init__(self, slots: dict[str, ServingSlot] | None = None) -> None:
        self._slots: dict[str, ServingSlot] = dict(slots or {})

    def names(self) -> list[str]:
        return sorted(self._slots)

    def slots(self) -> list[ServingSlot]:
        return [self._slots[n] for n in self.names()]

    def route(self, name: str, application_id: str | None = None) -> ServingSlot:
        del application_id  # used by canary / A/B routing
        try:
            return self._slots[name]
        except KeyError:
            raise ModelNotFoundError(name) from None

    def swap(self, slot: ServingSlot) -> None:
        slots = dict(self._slots)
        slots[slot.name] = slot
        self._slots = slots


def refresh_router(ctx: AppContext, router: ModelRouter) -> list[str]:
    """Swap in the version now behind each served model's production alias.

    Returns what changed, as messages. A new version whose spec has different features is
    not swapped in: its request schema would differ from the routes this process registered
    at start-up, so it needs a restart (which the message says).
    """
    changes = []
    for slot in router.slots():
        current = ctx.registry.find_alias(slot.name, "production")
        if current is None or current.version == slot.version:
            continue
        loaded = load_model(ctx, slot.name, current.version)
        loaded.model.prepare_for_serving()
        if loaded.model.spec.features != slot.model.spec.features:
            changes.append(
                f"{slot.name}: production is now v{current.version} with different features; "
                "restart the service to serve it"
            )
            continue
        router.swap(ServingSlot(slot.name, loaded.info.version, loaded.model, loaded.info))
        changes.append(f"{slot.name}: now serving v{loaded.info.version} (was v{slot.version})")
    return changes


def load_router(ctx: AppContext, names: Sequence[str]) -> ModelRouter:
    """Load the production version of each named model (every aliased model if empty)."""
    if not names:
        names = [n for n in ctx.registry.model_names() if ctx.registry.find_alias(n, "production")]
    slots = {}
    for name in names:
        loaded = load_model(ctx, name, "production")
        loaded.model.prepare_for_serving()
        slots[name] = ServingSlot(name, loaded.info.version, loaded.model, loaded.info)
    return ModelRouter(slots)


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

    @cached_property
    def reason_dicts(self) -> list[dict[str, Any]]:
        """The reasons as JSON objects, built once for the response and the decision log."""
        return [r.to_dict() for r in self.reasons]


def decide(
    slot: ServingSlot,
    applications: Sequence[Application],
    *,
    reasons: ReasonsFor,
    suspended: bool,
) -> list[DecisionResult]:
    """Score applications with one slot. Pure CPU work: no I/O, no awaiting."""
    model = slot.model
    x, raw = _encode(model, applications)
    batch = model.score_encoded(x, raw, reasons=reasons)
    return _results(slot, applications, batch, suspended=suspended)


def _encode(
    model: ScoringModel, applications: Sequence[Application]
) -> tuple[npt.NDArray[np.float64], dict[str, list[Any]] | None]:
    encoder = model.encoder
    x = encoder.encode_rows([a.features for a in applications])
    raw = {f: [a.features.get(f) for a in applications] for f in model.policy.knockout_features()}
    return x, raw or None


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
    results = []
    for i, app in enumerate(applications):
        found = []
        for j in range(batch.reason_codes.shape[1]):
            code = batch.reason_codes[i, j]
            if code is None:
                break
            feature = batch.reason_features[i, j]
            found.append(
                Reason(
                    code=str(code),
                    text=str(batch.reason_texts[i, j]),
                    feature=feature,
                    value=app.features.get(feature) if feature else None,
                    contribution=float(batch.reason_contributions[i, j]),
                )
            )
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
                score_range=model.scaling.score_range(),
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


def elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
