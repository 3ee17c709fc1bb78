"""The model-risk evidence pack of a version (``creditops evidence``, ``docs/evidence.md``).

What an independent validator asks for before a model may decide, built from the registry
for one version, reproducibly: the model card (the spec's ``model_card``, lineage, algorithm),
discrimination (AUC with its DeLong interval, Gini, KS, gains by decile), the benchmark
(the WoE scorecard fitted beside a LightGBM version, on the same rows), calibration
(Brier and Brier skill, calibration-in-the-large, Hosmer-Lemeshow, reliability by PD decile,
per-decision-band binomial and Jeffreys back-tests with traffic lights), fairness in lending
terms (adverse impact ratio with the four-fifths flag and Fisher's test, standardised mean
difference of scores, "insufficient data" for small groups) and the governance record (the
version's lineage tags, its gate verdict or override, and the audit trail of the model).
Findings list what a validator would raise.

Everything is computed on the version's stored test split, scored by the version itself;
the pack ships those predictions (``predictions.csv``) so that every number in it can be
recomputed from them (the tests do). Files: ``evidence.json`` (schema
``creditops.evidence/1``), ``evidence.html`` (self-contained, opens offline) and
``predictions.csv``, in ``reports/evidence/<name>-v<version>/`` under ``CREDITOPS_HOME``
unless another directory is given, and logged to the version's MLflow run (``evidence/``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from creditops.domain.windows import utc_text
from creditops.errors import ConfigError, ConflictError, DataError
from creditops.features.dataset import read_table
from creditops.features.encoder import FeatureEncoder
from creditops.features.spec import Spec
from creditops.modeling.fairness import protected_groups
from creditops.modeling.lgbm import check_monotone
from creditops.modeling.metrics import (
    brier_score,
    calibration_in_the_large,
    calibration_table,
    delong_auc_ci,
    delong_test,
    finite_or_none,
    gains_table,
    gini,
    hosmer_lemeshow,
    ks_statistic,
)
from creditops.modeling.scorecard import WoeScorecard
from creditops.monitoring.drift.statistics import psi
from creditops.monitoring.validation_tests import (
    adverse_impact_ratio,
    auc_decline_test,
    band_calibration_tests,
    brier_skill_score,
    characteristic_stability,
    standardized_mean_difference,
)
from creditops.reporting.evidence_report import render_evidence_html
from creditops.reporting.pdf import find_chromium, print_pdf
from creditops.services.context import AppContext
from creditops.services.model_versions import LoadedModel, gate_passed, load_model, load_test_set
from creditops.settings import EvidenceSettings
from creditops.store.admin_repositories import AuditRepository

log = logging.getLogger("creditops.evidence")
EVIDENCE_SCHEMA = "creditops.evidence/1"
DECILES = 10
HL_ALPHA = 0.05
LINEAGE_TAGS = (
    "git_commit",
    "creditops_version",
    "data_sha256",
    "spec_sha256",
    "settings_sha256",
    "bundle_sha256",
    "policy_version",
    "algorithm",
)
BOOSTER_PARAMETERS = (
    "objective",
    "boosting",
    "num_iterations",
    "learning_rate",
    "num_leaves",
    "max_depth",
    "min_data_in_leaf",
    "min_sum_hessian_in_leaf",
    "feature_fraction",
    "bagging_fraction",
    "bagging_freq",
    "lambda_l1",
    "lambda_l2",
    "min_gain_to_split",
    "max_bin",
    "monotone_constraints",
    "monotone_constraints_method",
    "seed",
)
MODEL_CARD_TEXTS = ("purpose", "intended_use", "target_definition", "owner")
MODEL_CARD_LISTS = ("out_of_scope", "limitations")


@dataclass(frozen=True)
class EvidenceOutcome:
    name: str
    version: str
    directory: Path
    findings: list[str]
    files: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "directory": str(self.directory),
            "files": [str(self.directory / f) for f in self.files],
            "findings": self.findings,
        }


EVIDENCE_FILES = ("evidence.html", "evidence.json", "predictions.csv")


@dataclass(frozen=True)
class EvidenceRequest:
    """Which version, where the pack goes (None: under the reports directory), and a later
    sample (a CSV or Parquet file of applicants, with outcomes or not) for stability."""

    name: str
    ref: str
    output: Path | None = None
    later: Path | None = None


def build_evidence(
    ctx: AppContext, sessions: sessionmaker[Session], request: EvidenceRequest
) -> EvidenceOutcome:
    """Build the pack of ``request.name`` at ``request.ref`` (a version or an alias)."""
    name = request.name
    loaded = load_model(ctx, name, request.ref)
    version = loaded.info.version
    test = load_test_set(ctx, name, version)
    predictions = scored_test_split(loaded, test)
    pack = evidence_document(loaded, predictions, _audit_entries(sessions, name, version))
    files = list(EVIDENCE_FILES)
    if request.later is not None:
        later = read_table(request.later)
        later_predictions = scored_later_sample(loaded, later)
        pack["stability"] = stability(loaded, (test, predictions), (later, later_predictions))
        pack["stability"]["later_sample"] = request.later.name
        pack["findings"] += stability_findings(pack["stability"])
        files.append("later_predictions.csv")
    directory = request.output or ctx.reports_dir / "evidence" / f"{name}-v{version}"
    directory.mkdir(parents=True, exist_ok=True)
    if request.later is not None:
        later_predictions.to_csv(directory / "later_predictions.csv", index=False)
    predictions.to_csv(directory / "predictions.csv", index=False)
    (directory / "evidence.json").write_bytes(
        orjson.dumps(pack, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    (directory / "evidence.html").write_text(render_evidence_html(pack), encoding="utf-8")
    pdf = evidence_pdf(ctx.settings.evidence, directory)
    if pdf is not None:
        files.append(pdf.name)
    for file in files:
        ctx.registry.log_version_artifact(name, version, directory / file, "evidence")
    return EvidenceOutcome(name, version, directory, pack["findings"], files)


def evidence_pdf(settings: EvidenceSettings, directory: Path) -> Path | None:
    """``evidence.pdf`` printed from the HTML, or None when no Chromium is to be had and
    the settings allow that (``evidence.pdf``: auto)."""
    if settings.pdf == "never":
        return None
    chromium = find_chromium(settings.chromium)
    if chromium is None:
        if settings.pdf == "always":
            raise ConfigError(
                "evidence.pdf is 'always' but no Chromium was found (install chromium, or "
                "set CREDITOPS_EVIDENCE__CHROMIUM)",
                field="evidence.chromium",
            )
        log.warning("no evidence.pdf: no Chromium found (see docs/evidence.md)")
        return None
    pdf = directory / "evidence.pdf"
    return print_pdf(directory / "evidence.html", pdf, chromium, settings.pdf_timeout_s)


def scored_test_split(loaded: LoadedModel, test: pd.DataFrame) -> pd.DataFrame:
    """One row per test applicant: id, observed default, pd, score, decision, and the group
    of every protected attribute (banded as the fairness metrics band them)."""
    model = loaded.model
    spec = model.spec
    scored = model.score_frame(test, reasons="none")
    out = pd.DataFrame(
        {
            "row": np.arange(len(test)),
            "defaulted": test[spec.target.column].to_numpy(dtype=np.int8),
            "pd": scored.pd,
            "score": scored.score,
            "decision": scored.decision.astype(str),
        }
    )
    if spec.id_column and spec.id_column in test.columns:
        out.insert(0, "id", test[spec.id_column].astype(str).to_numpy())
    baseline = benchmark_scorecard(loaded)
    if baseline is not None:
        out["baseline_pd"] = baseline.predict_pd(model.encoder.transform(test))
    for attribute in spec.protected:
        if attribute in test.columns:
            out[f"group_{attribute}"] = protected_groups(test, spec, attribute)
    return out


def benchmark_scorecard(loaded: LoadedModel) -> WoeScorecard | None:
    """The WoE scorecard fitted beside a LightGBM version as its benchmark, if stored."""
    model = loaded.model
    stored = model.bundle.training.get("baseline_scorecard")
    if model.scorecard is not None or not stored:
        return None
    return WoeScorecard.from_dict(stored)


def evidence_document(
    loaded: LoadedModel, predictions: pd.DataFrame, audit: list[dict[str, Any]]
) -> dict[str, Any]:
    """The pack as a JSON-ready document (see the module docstring)."""
    spec = loaded.model.spec
    y = predictions["defaulted"].to_numpy()
    pd_values = predictions["pd"].to_numpy()
    card = model_card(loaded)
    sections = {
        "model_card": card,
        "discrimination": discrimination(y, pd_values, predictions["score"].to_numpy()),
        "calibration": calibration(y, pd_values, predictions["decision"].to_numpy()),
        "benchmark": benchmark(predictions),
        "fairness": fairness(spec, predictions),
        "governance": governance(loaded, audit),
    }
    return {
        "schema": EVIDENCE_SCHEMA,
        "model": {"name": loaded.info.name, "version": loaded.info.version},
        "generated_at": utc_text(datetime.now(UTC)),
        "sample": {
            "name": "test split stored with the version",
            "rows": len(predictions),
            "defaults": int(y.sum()),
        },
        **sections,
        "findings": findings(sections),
    }


def model_card(loaded: LoadedModel) -> dict[str, Any]:
    model = loaded.model
    spec = model.spec
    card = spec.model_card.model_dump() if spec.model_card else {}
    training = model.bundle.training
    return {
        **{field: card.get(field) for field in MODEL_CARD_TEXTS},
        **{field: list(card.get(field) or []) for field in MODEL_CARD_LISTS},
        "algorithm": model.bundle.algorithm,
        "trees": model.booster.num_trees() if model.booster is not None else None,
        "hyperparameters": booster_parameters(model.booster.model_to_string())
        if model.booster is not None
        else dict(training.get("params") or {}),
        "calibration_method": training.get("calibration_method"),
        "features": list(model.encoder.feature_names),
        "excluded_from_model": list(spec.exclude_from_model),
        "monotone": dict(spec.monotone),
        "rows": {k: training.get(k) for k in ("n_fit", "n_calibration", "n_test")},
        "base_default_rate": training.get("base_default_rate"),
        "policy": {
            k: model.bundle.policy.get(k)
            for k in ("version", "approve_min_score", "decline_below_score")
        },
        "declared_metrics": {
            k: finite_or_none(v)
            for k, v in sorted(loaded.info.metrics.items())
            if k in ("auc", "gini", "ks", "brier", "calibration_in_the_large")
        },
    }


def booster_parameters(model_text: str) -> dict[str, str]:
    """The training parameters LightGBM wrote into the model (its ``parameters:`` block),
    those a validator reads: the effective values, defaults included."""
    start, end = model_text.find("\nparameters:\n"), model_text.find("\nend of parameters")
    found: dict[str, str] = {}
    for line in model_text[start:end].splitlines() if start >= 0 else []:
        key, _, value = line.strip().strip("[]").partition(": ")
        if key in BOOSTER_PARAMETERS:
            found[key] = value
    return found


def discrimination(y: np.ndarray, pd_values: np.ndarray, score: np.ndarray) -> dict[str, Any]:
    interval = delong_auc_ci(y, pd_values)
    return {
        "auc": interval.to_dict(),
        "gini": finite_or_none(gini(interval.auc)),
        "ks": finite_or_none(ks_statistic(y, pd_values)),
        # deciles of the score, the riskiest (lowest scores) first
        "gains": [row.to_dict() for row in gains_table(y, score, DECILES)],
    }


def _headline(y: np.ndarray, pd_values: np.ndarray) -> dict[str, Any]:
    interval = delong_auc_ci(y, pd_values)
    return {
        "auc": finite_or_none(interval.auc),
        "auc_lower": finite_or_none(interval.lower),
        "auc_upper": finite_or_none(interval.upper),
        "gini": finite_or_none(gini(interval.auc)),
        "ks": finite_or_none(ks_statistic(y, pd_values)),
        "brier": finite_or_none(brier_score(y, pd_values)),
    }


def benchmark(predictions: pd.DataFrame) -> dict[str, Any] | None:
    """The production algorithm next to its WoE scorecard benchmark on the same rows: the
    headline metrics, the uplift, and the paired DeLong test of the two AUCs."""
    if "baseline_pd" not in predictions.columns:
        return None
    y = predictions["defaulted"].to_numpy()
    model, baseline = predictions["pd"].to_numpy(), predictions["baseline_pd"].to_numpy()
    rows = {"model": _headline(y, model), "scorecard": _headline(y, baseline)}
    uplift = {
        key: rows["model"][key] - rows["scorecard"][key]
        for key in ("auc", "gini", "ks", "brier")
        if rows["model"][key] is not None and rows["scorecard"][key] is not None
    }
    paired = delong_test(y, model, baseline)
    return {
        **rows,
        "uplift": uplift,
        "delong": {"z": finite_or_none(paired.z), "p_value": finite_or_none(paired.p_value)},
    }


def calibration(y: np.ndarray, pd_values: np.ndarray, decision: np.ndarray) -> dict[str, Any]:
    hl = hosmer_lemeshow(y, pd_values, DECILES)
    return {
        "brier": finite_or_none(brier_score(y, pd_values)),
        "brier_skill": finite_or_none(brier_skill_score(y, pd_values)),
        "calibration_in_the_large": finite_or_none(calibration_in_the_large(y, pd_values)),
        "hosmer_lemeshow": hl.to_dict(),
        "reliability": [row.to_dict() for row in calibration_table(y, pd_values, DECILES)],
        "bands": [row.to_dict() for row in band_calibration_tests(y, pd_values, decision)],
    }


def reference_group(spec: Spec, attribute: str, groups: pd.Series) -> tuple[str, str]:
    """The group ``attribute``'s others are compared with, and where that choice came from."""
    named = spec.model_card.reference_groups.get(attribute) if spec.model_card else None
    if named is not None:
        return named, "model_card.reference_groups"
    return str(groups.value_counts().idxmax()), "the largest group (none named in the spec)"


def fairness(spec: Spec, predictions: pd.DataFrame) -> list[dict[str, Any]]:
    """Per protected attribute: AIR of approval rates and SMD of scores."""
    approved = (predictions["decision"] == "approve").to_numpy()
    out = []
    for attribute in spec.protected:
        column = f"group_{attribute}"
        if column not in predictions.columns:
            continue
        groups = predictions[column].astype(str)
        reference, chosen_by = reference_group(spec, attribute, groups)
        air = adverse_impact_ratio(approved, groups.to_numpy(), reference)
        smd = standardized_mean_difference(
            predictions["score"].to_numpy(), groups.to_numpy(), reference
        )
        out.append(
            {
                "attribute": attribute,
                "reference_group": reference,
                "reference_chosen_by": chosen_by,
                "labels": dict(spec.value_labels.get(attribute, {})),
                "adverse_impact": air.to_dict(),
                "score_difference": smd.to_dict(),
            }
        )
    return out


def governance(loaded: LoadedModel, audit: list[dict[str, Any]]) -> dict[str, Any]:
    info = loaded.info
    tags = info.tags
    return {
        "registered_at": utc_text(info.created_at) if info.created_at else None,
        "run_id": info.run_id,
        "aliases": list(info.aliases),
        "lineage": {tag: tags.get(tag) for tag in LINEAGE_TAGS},
        "gate_passed": gate_passed(info),
        "gate_override": {
            "by": tags.get("gate_override_by"),
            "at": tags.get("gate_override_at"),
            "reason": tags.get("gate_override_reason"),
        }
        if "gate_override_by" in tags
        else None,
        "implementation_replay": last_replay(audit, info.name, info.version),
        "audit": audit,
    }


def last_replay(audit: list[dict[str, Any]], name: str, version: str) -> dict[str, Any] | None:
    """The version's last implementation replay (``creditops replay``), from the audit
    trail: when, against which service, how many rows, passed or not and why."""
    replays = [
        e for e in audit if e["action"] == REPLAY_ACTION and e["target"] == f"{name}:{version}"
    ]
    if not replays:
        return None
    last = replays[-1]
    details = last["details"] or {}
    return {
        "at": last["at"],
        "actor": last["actor"],
        "passed": bool(details.get("passed")) and last["outcome"] == "ok",
        "message": details.get("message"),
        "url": details.get("url"),
        "rows_compared": details.get("rows_compared"),
    }


def _audit_entries(
    sessions: sessionmaker[Session], name: str, version: str
) -> list[dict[str, Any]]:
    with sessions() as session:
        rows = AuditRepository(session).about_model(name, version)
    return [
        {
            "at": utc_text(row.at),
            "actor": row.actor,
            "action": row.action,
            "target": row.target,
            "outcome": row.outcome,
            "details": row.details,
        }
        for row in rows
    ]


def findings(sections: Mapping[str, Any]) -> list[str]:
    """What a validator would raise, in the order of the pack."""
    card = sections["model_card"]
    missing = [f for f in (*MODEL_CARD_TEXTS, *MODEL_CARD_LISTS) if not card.get(f)]
    found = [f"model card: not stated in the spec: {', '.join(missing)}"] if missing else []
    found += _calibration_findings(sections["calibration"])
    for item in sections["fairness"]:
        found += [
            f"fairness: {item['attribute']} group {row['group']} has an adverse impact ratio "
            f"of {row['adverse_impact_ratio']:.3f} (below 0.8)"
            for row in item["adverse_impact"]["rows"]
            if row["status"] == "fail"
        ]
    bench = sections["benchmark"]
    if bench is not None and bench["uplift"].get("auc", 0.0) <= 0.0:
        found.append("benchmark: the model does not discriminate better than its scorecard")
    return found + _governance_findings(sections["governance"])


def _calibration_findings(section: Mapping[str, Any]) -> list[str]:
    found = []
    hl_p = section["hosmer_lemeshow"].get("p_value")
    if hl_p is not None and hl_p < HL_ALPHA:
        found.append(f"calibration: Hosmer-Lemeshow rejects at {HL_ALPHA} (p = {hl_p:.3g})")
    found += [
        f"calibration: band {band['band']} is {band['light']} (observed "
        f"{band['observed_rate']:.3f} against PD {band['mean_pd']:.3f})"
        for band in section["bands"]
        if band.get("light") in ("amber", "red")
    ]
    return found


def _governance_findings(section: Mapping[str, Any]) -> list[str]:
    found = []
    replay = section["implementation_replay"]
    if replay is None:
        found.append("implementation: the version was never replayed through the service")
    elif not replay["passed"]:
        found.append(f"implementation: the last replay failed: {replay['message']}")
    override = section["gate_override"]
    if override:
        found.append(f"governance: the gate was overridden by {override['by']}")
    return found


# -- stability against a later sample -----------------------------------------------------
PSI_WARNING, PSI_CRITICAL = 0.1, 0.25
DECLINE_ALPHA = 0.05


def scored_later_sample(loaded: LoadedModel, later: pd.DataFrame) -> pd.DataFrame:
    """The later sample scored by the version (refused as ``creditops score`` refuses it),
    with its outcomes when it has the target column."""
    model = loaded.model
    target = model.spec.target.column
    scored = model.score_checked(later.drop(columns=[target], errors="ignore"), reasons="none")
    out = pd.DataFrame(
        {
            "row": np.arange(len(later)),
            "pd": scored.pd,
            "score": scored.score,
            "decision": scored.decision.astype(str),
        }
    )
    if target in later.columns:
        outcome = pd.to_numeric(later[target], errors="coerce")
        if outcome.isna().any() or not outcome.isin([0, 1]).all():
            raise DataError(
                f"the later sample's {target!r} column must hold 0 or 1 in every row",
                field=target,
            )
        out.insert(1, "defaulted", outcome.astype(np.int8).to_numpy())
    return out


def decile_edges(values: np.ndarray) -> np.ndarray:
    """The distinct inner deciles of the finite ``values``: the bins of a PSI."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.empty(0)
    return np.unique(np.quantile(finite, np.linspace(0.1, 0.9, 9)))


def binned_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin ``(-inf, e1], (e1, e2], ..., (ek, inf)``, then one bin for NaN."""
    finite = np.isfinite(values)
    counts = np.bincount(
        np.searchsorted(edges, values[finite], side="left"), minlength=edges.size + 1
    )
    return np.append(counts, np.count_nonzero(~finite))


def _category_counts(dev: np.ndarray, later: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes = np.unique(np.concatenate([dev[np.isfinite(dev)], later[np.isfinite(later)]]))

    def count(values: np.ndarray) -> np.ndarray:
        found = np.searchsorted(codes, values[np.isfinite(values)])
        per_code = np.bincount(found, minlength=codes.size)
        return np.append(per_code, np.count_nonzero(~np.isfinite(values)))

    return count(dev), count(later)


def characteristic_counts(
    encoder: FeatureEncoder, x_dev: np.ndarray, x_later: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per input, the development and later counts per bin: the development deciles for a
    numeric input, the categories seen in either sample for a categorical one, then one bin
    for missing values."""
    reference: dict[str, np.ndarray] = {}
    current: dict[str, np.ndarray] = {}
    for j, (feature, is_cat) in enumerate(
        zip(encoder.feature_names, encoder.categorical, strict=True)
    ):
        if is_cat:
            reference[feature], current[feature] = _category_counts(x_dev[:, j], x_later[:, j])
        else:
            edges = decile_edges(x_dev[:, j])
            reference[feature] = binned_counts(x_dev[:, j], edges)
            current[feature] = binned_counts(x_later[:, j], edges)
    return reference, current


def stability(
    loaded: LoadedModel,
    development: tuple[pd.DataFrame, pd.DataFrame],
    later: tuple[pd.DataFrame, pd.DataFrame],
) -> dict[str, Any]:
    """Score PSI, CSI per input, the score-shift attribution and, with outcomes in the
    later sample, the AUC-decline test: the test split against the later sample."""
    model = loaded.model
    (dev_frame, dev_scored), (later_frame, later_scored) = development, later
    edges = decile_edges(dev_scored["score"].to_numpy())
    dev_counts = binned_counts(dev_scored["score"].to_numpy(), edges)
    later_counts = binned_counts(later_scored["score"].to_numpy(), edges)
    score_psi = psi(dev_counts, later_counts)
    x_dev = model.encoder.transform(dev_frame)
    x_later = model.encoder.transform(later_frame)
    reference, current = characteristic_counts(model.encoder, x_dev, x_later)
    features = list(model.encoder.feature_names)
    result: dict[str, Any] = {
        "rows": {"development": len(dev_frame), "later": len(later_frame)},
        "score_psi": {
            "psi": finite_or_none(score_psi),
            "level": _level(score_psi),
            "edges": edges.tolist(),
            "development_counts": dev_counts.tolist(),
            "later_counts": later_counts.tolist(),
        },
        "characteristics": [r.to_dict() for r in characteristic_stability(reference, current)],
        "score_shift": score_shift(
            model.contributions(x_dev)[0], model.contributions(x_later)[0], features
        ),
        "auc_decline": None,
    }
    if "defaulted" in later_scored.columns:
        result["auc_decline"] = auc_decline_test(
            dev_scored["defaulted"], dev_scored["pd"], later_scored["defaulted"], later_scored["pd"]
        ).to_dict()
    return result


def _level(value: float) -> str:
    if value >= PSI_CRITICAL:
        return "critical"
    return "warning" if value >= PSI_WARNING else "ok"


def score_shift(
    dev_contributions: np.ndarray, later_contributions: np.ndarray, features: list[str]
) -> dict[str, Any]:
    """Which input moved the scores: per input the mean contribution (log-odds towards
    default: TreeSHAP, or the scorecard's points as log-odds) in each sample and the
    difference, largest first. The differences add up to the change of the mean raw score
    (the contributions are additive), so the table accounts for the whole shift."""
    dev_mean = dev_contributions.mean(axis=0)
    later_mean = later_contributions.mean(axis=0)
    shifts = later_mean - dev_mean
    order = sorted(range(len(features)), key=lambda j: (-abs(float(shifts[j])), features[j]))
    rows = [
        {
            "feature": features[j],
            "development_mean": float(dev_mean[j]),
            "later_mean": float(later_mean[j]),
            "shift": float(shifts[j]),
        }
        for j in order
    ]
    return {"unit": "log-odds towards default", "rows": rows, "total": float(shifts.sum())}


def stability_findings(section: Mapping[str, Any]) -> list[str]:
    found = []
    score_psi = section["score_psi"]
    if score_psi["level"] != "ok":
        found.append(f"stability: score PSI {score_psi['psi']:.3f} ({score_psi['level']})")
    for row in section["characteristics"]:
        if row["level"] == "critical":
            found.append(f"stability: {row['characteristic']} CSI {row['csi']:.3f} (critical)")
    decline = section["auc_decline"]
    if decline is not None and (decline.get("p_value") or 1.0) < DECLINE_ALPHA:
        found.append(
            f"stability: the AUC declined from {decline['auc_dev']:.3f} to "
            f"{decline['auc_new']:.3f} (one-sided p {decline['p_value']:.3g})"
        )
    return found


# -- evidence as a precondition of promotion ----------------------------------------------
MONOTONE_SAMPLE_ROWS = 500
REPLAY_ACTION = "model.replay"


def check_promotion_evidence(
    ctx: AppContext, sessions: sessionmaker[Session], name: str, version: str
) -> None:
    """With ``deploy.require_evidence``: refuse (a :class:`ConflictError` that says why and
    what to do) a version without a passed implementation replay, whose last replay found
    differences, or whose declared monotone directions fail the proof on its test split."""
    if not ctx.settings.deploy.require_evidence:
        return
    subject = f"{name} v{version} may not become production (deploy.require_evidence)"
    with sessions() as session:
        replays = AuditRepository(session).list(
            limit=1, action=REPLAY_ACTION, target=f"{name}:{version}"
        )
    if not replays:
        raise ConflictError(
            f"{subject}: it was never replayed; run `creditops replay --name {name} "
            f"--version {version} --url URL` against a service that serves it",
            field="version",
        )
    last = replays[0]
    if last.outcome != "ok" or not (last.details or {}).get("passed", False):
        message = (last.details or {}).get("message", "it differed")
        raise ConflictError(
            f"{subject}: its last implementation replay ({utc_text(last.at)}) failed: {message}",
            field="version",
        )
    loaded = load_model(ctx, name, version)
    broken = monotonicity_failures(loaded, load_test_set(ctx, name, version))
    if broken:
        raise ConflictError(
            f"{subject}: the monotonicity proof fails on its test split for {', '.join(broken)}",
            field="version",
        )


def monotonicity_failures(loaded: LoadedModel, test: pd.DataFrame) -> list[str]:
    """The declared monotone inputs whose direction the model breaks for some of the first
    ``MONOTONE_SAMPLE_ROWS`` test rows (the proof of :func:`check_monotone`)."""
    model = loaded.model
    if model.booster is None or not model.spec.monotone:
        return []
    x = model.encoder.transform(test.head(MONOTONE_SAMPLE_ROWS))
    checks = check_monotone(model.booster, x, model.encoder.feature_names, model.spec.monotone)
    return [f"{c.feature} ({c.direction})" for c in checks if not c.passed]
