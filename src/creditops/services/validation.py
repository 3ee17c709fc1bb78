"""Run the validation gate on a registered version and record the verdict on it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from creditops.features.dataset import TrainingData
from creditops.modeling.bundle import ScoringModel
from creditops.modeling.evaluation import Evaluation, evaluate_model
from creditops.modeling.gate import (
    GateProfile,
    GateResult,
    champion_comparison,
    evaluate_gate,
    load_gate_profile,
)
from creditops.modeling.lgbm import check_monotone
from creditops.modeling.metrics import delong_test
from creditops.monitoring.drift.binned import drift_from_profile
from creditops.reporting.model_report import render_model_report
from creditops.services.context import AppContext
from creditops.services.model_versions import LoadedModel, load_model, load_test_set
from creditops.services.training import ReportSubject, build_report_data

MONOTONE_SAMPLE_ROWS = 200


@dataclass
class ValidationOutcome:
    name: str
    version: str
    result: GateResult
    report: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "profile": self.result.profile,
            "passed": self.result.passed,
            "checks": [c.model_dump() for c in self.result.checks],
            "champion": self.result.champion,
            "report": str(self.report),
        }


def evaluate_on_test_set(model: ScoringModel, test: pd.DataFrame, seed: int) -> Evaluation:
    """Re-score a stored test split with ``model`` (metrics, fairness, monotonicity)."""
    target = model.spec.target.column
    y = test[target].to_numpy(dtype=np.int8)
    data = TrainingData(
        frame=test.drop(columns=[target]),
        y=y,
        is_test=None,
        data_sha256="",
        n_rows_read=len(test),
    )
    x = model.encoder.transform(data.frame)
    evaluation = evaluate_model(model, data, x, np.arange(len(test)), scorecard=None)
    if model.booster is not None and model.spec.monotone:
        rng = np.random.default_rng(seed)
        rows = rng.choice(len(test), size=min(MONOTONE_SAMPLE_ROWS, len(test)), replace=False)
        evaluation.monotonicity = [
            c.to_dict()
            for c in check_monotone(
                model.booster, x[rows], model.encoder.feature_names, model.spec.monotone
            )
        ]
    return evaluation


@dataclass
class Judgement:
    """A candidate through the gate: the verdict, its evaluation on the rows it was judged
    on, and the champion comparison (None without a champion)."""

    result: GateResult
    evaluation: Evaluation
    champion: dict[str, Any] | None


def judge(
    model: ScoringModel,
    holdout: pd.DataFrame,
    profile: GateProfile,
    champion: LoadedModel | None,
    own_test: pd.DataFrame,
) -> Judgement:
    """Score ``holdout`` (features and a 0/1 target) with the candidate and the champion,
    apply the profile; its drift rule compares the candidate's own test split
    (``own_test``) with its training reference."""
    seed = int(model.bundle.training.get("seed", 0))
    evaluation = evaluate_on_test_set(model, holdout, seed)
    comparison = None
    if profile.champion.enabled and champion is not None:
        target = model.spec.target.column
        x_champion = champion.model.encoder.transform(holdout.drop(columns=[target]))
        pd_champion = champion.model.predict_pd(x_champion)
        paired = delong_test(evaluation.y_test, evaluation.pd_test, pd_champion)
        comparison = champion_comparison(paired.auc_a, paired.auc_b, paired.se, profile.champion)
        comparison["version"] = champion.info.version
    drift_psi = None
    if profile.drift is not None:
        features = list(model.spec.features)
        drift = drift_from_profile(model.bundle.reference_profile, own_test[features])
        drift_psi = {f.feature: f.psi for f in drift.features}
    result = evaluate_gate(
        profile,
        evaluation.metrics,
        evaluation.fairness,
        evaluation.monotonicity,
        comparison,
        drift_psi,
    )
    return Judgement(result, evaluation, comparison)


def validate(
    ctx: AppContext, name: str, ref: str | None, profile_ref: str | None
) -> ValidationOutcome:
    """Gate ``name`` at ``ref`` (default: the newest version) against a profile."""
    registry = ctx.registry
    if ref is None:
        versions = registry.list_versions(name)
        ref = versions[0].version if versions else "latest"
    candidate = load_model(ctx, name, ref)
    version = candidate.info.version
    profile = load_gate_profile(profile_ref or candidate.info.tags.get("gate_profile", "default"))
    test = load_test_set(ctx, name, version)
    production = registry.find_alias(name, "production")
    incumbent = None
    if profile.champion.enabled and production is not None and production.version != version:
        incumbent = load_model(ctx, name, production.version)
    verdict = judge(candidate.model, test, profile, incumbent, test)
    result, evaluation, champion = verdict.result, verdict.evaluation, verdict.champion
    now = datetime.now(UTC).isoformat(timespec="seconds")
    registry.set_version_tags(
        name,
        version,
        {
            "gate_passed": "true" if result.passed else "false",
            "gate_profile": profile.name,
            "gate_validated_at": now,
            "gate_failed_checks": ",".join(c.metric for c in result.failed)[:500],
        },
    )
    lineage = {
        k: v
        for k, v in candidate.info.tags.items()
        if k.endswith("sha256") or k in ("git_commit", "algorithm", "policy_version")
    }
    report = ctx.reports_dir / name / f"v{version}" / f"validation-{profile.name}.html"
    render_model_report(
        build_report_data(
            ReportSubject(
                f"Validation report: {name} v{version} against gate '{profile.name}'",
                name,
                version,
                candidate.model.algorithm,
                lineage,
            ),
            evaluation,
            gate={
                "passed": result.passed,
                "profile": profile.name,
                "checks": [c.model_dump() for c in result.checks],
            },
            champion=champion,
        ),
        report,
    )
    registry.log_version_artifact(name, version, report, "reports")
    return ValidationOutcome(name=name, version=version, result=result, report=report)
