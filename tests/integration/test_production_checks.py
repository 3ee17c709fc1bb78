"""Performance and fairness in production against a real SQLite store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chi2_contingency
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sqlalchemy.orm import Session, sessionmaker

from creditops.features.spec import parse_spec
from creditops.monitoring.drift.statistics import two_proportion_z
from creditops.monitoring.fairness import FairnessConfig
from creditops.monitoring.performance import PerformanceConfig
from creditops.services.monitoring import CheckRequest, labelled_performance, production_fairness
from creditops.store.decision_records import DecisionRecord
from creditops.store.engine import create_db_engine, session_factory
from creditops.store.migrations_api import upgrade_database
from creditops.store.repositories import DecisionRepository, OutcomeRepository
from tests.factories import synthetic_spec

pytestmark = pytest.mark.integration
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture()
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade_database(url)
    return session_factory(create_db_engine(url))


def _store(
    sessions: sessionmaker[Session], pd_values, decisions, sexes, defaulted, start: datetime
):  # type: ignore[no-untyped-def]
    records = []
    for i, (p, d, s) in enumerate(zip(pd_values, decisions, sexes, strict=True)):
        records.append(
            DecisionRecord(
                decision_id=str(uuid.uuid4()),
                application_id=f"a{start.day}-{i}",
                model_name="m",
                model_version="1",
                policy_version="p",
                pd=float(p),
                score=500.0,
                decision=d,
                reasons=[],
                inputs={"sex": s, "age": 30},
                latency_ms=1.0,
                created_at=start + timedelta(seconds=i),
                request_id="r",
                api_key_id=None,
                route="production",
                suspended=False,
            )
        )
    with sessions.begin() as session:
        DecisionRepository(session).add_many(records)
        outcomes = OutcomeRepository(session)
        for record, label in zip(records, defaulted, strict=True):
            if label is not None:
                outcomes.record(
                    record.decision_id, record.application_id, bool(label), record.created_at
                )
    return records


def test_performance_window_matches_sklearn_and_detects_a_drop(sessions) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    n = 600
    # early period: informative PDs; later period: PDs unrelated to outcomes
    y1 = rng.random(n) < 0.25
    p1 = np.clip(0.25 + 0.4 * (y1 - 0.25) + rng.normal(0, 0.1, n), 0.01, 0.99)
    y2 = rng.random(n) < 0.25
    p2 = rng.uniform(0.05, 0.6, n)
    d1 = np.where(p1 < 0.25, "approve", "decline")
    d2 = np.where(p2 < 0.25, "approve", "decline")
    _store(sessions, p1, d1, ["F"] * n, y1, T0)
    unlabelled = [None] * 50
    _store(sessions, p2[:50], d2[:50], ["F"] * 50, unlabelled, T0 + timedelta(days=2))
    _store(sessions, p2, d2, ["F"] * n, y2, T0 + timedelta(days=3))

    validation = {"auc": 0.8, "accuracy": 0.7, "f1": 0.5}
    result = labelled_performance(sessions, "m", validation, PerformanceConfig(window=n))
    assert result["n_labelled"] == n and result["n_unlabelled"] == 50
    bad = d2 != "approve"
    assert result["current"]["auc"] == pytest.approx(roc_auc_score(y2, p2), abs=1e-12)
    assert result["current"]["accuracy"] == pytest.approx(accuracy_score(y2, bad), abs=1e-12)
    assert result["current"]["f1"] == pytest.approx(f1_score(y2, bad), abs=1e-12)
    assert result["baseline"]["auc"] == pytest.approx(roc_auc_score(y1, p1), abs=1e-12)
    assert result["level"] == "critical" and "auc" in result["breaches"]
    assert result["drop_vs_baseline"]["auc"] > 0.05


def test_two_proportion_test_matches_chi_square() -> None:
    z, p = two_proportion_z(30, 100, 45, 100)  # z > 0: the second proportion is higher
    assert z > 0
    chi2, p_ref, _, _ = chi2_contingency([[45, 55], [30, 70]], correction=False)
    assert z is not None and z**2 == pytest.approx(chi2, rel=1e-12)
    assert p == pytest.approx(p_ref, rel=1e-12)


def test_fairness_in_production_and_its_drift(sessions) -> None:  # type: ignore[no-untyped-def]
    spec = parse_spec(synthetic_spec())
    n = 400
    sexes = ["F", "M"] * (n // 2)
    equal = ["approve" if (i // 2) % 4 else "decline" for i in range(n)]  # 75% in both groups
    _store(sessions, [0.1] * n, equal, sexes, [None] * n, T0)
    # later: women approved far less often
    skewed = [  # women 50%, men still 75%
        ("approve" if (i // 2) % 2 == 0 else "decline")
        if s == "F"
        else ("approve" if (i // 2) % 4 else "decline")
        for i, s in enumerate(sexes)
    ]
    later = T0 + timedelta(days=10)
    _store(sessions, [0.1] * n, skewed, sexes, [None] * n, later)
    # the baseline period is the model's first logged day, T0 to T0 + 1 day
    result = production_fairness(
        sessions, spec, CheckRequest(model="m", since=later), FairnessConfig()
    )
    sex = next(a for a in result["attributes"] if a["attribute"] == "sex")
    rates = {g["group"]: g["approval_rate"] for g in sex["groups"]}
    approved = np.array([d == "approve" for d in skewed])
    mask_f = np.array([s == "F" for s in sexes])
    assert rates["F"] == pytest.approx(approved[mask_f].mean())
    assert sex["disparate_impact_ratio"] < 0.8
    drift = {g["group"]: g for g in sex["drift"]}
    assert drift["F"]["significant"] and not drift["M"]["significant"]
    assert result["level"] == "warning"
