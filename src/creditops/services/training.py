"""Train a model from a spec and a file, register it in MLflow, write its report."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from creditops.domain.policy import DecisionPolicy, load_policy
from creditops.errors import InvalidInputError
from creditops.features.dataset import TrainingData, load_training_data
from creditops.features.spec import Spec, load_spec
from creditops.modeling.bundle import Algorithm
from creditops.modeling.calibration import CalibrationMethod
from creditops.modeling.evaluation import Evaluation, json_safe
from creditops.modeling.training import Progress, TrainingResult, TrainOptions, train_model
from creditops.registry.records import RegisteredVersion, RegistrationRequest, TrainingDataset
from creditops.reporting.model_report import ModelReportData, render_model_report
from creditops.reporting.scorecard_files import write_scorecard_files
from creditops.services.context import AppContext, git_commit
from creditops.services.model_versions import SETTINGS_ARTIFACT, TEST_SET_ARTIFACT


@dataclass(frozen=True)
class TrainRequest:
    spec_path: Path
    data_path: Path
    name: str | None = None
    algorithm: Algorithm = "lightgbm"
    policy_path: Path | None = None
    seed: int | None = None
    calibration: CalibrationMethod | None = None
    tune_trials: int = 0
    tune_timeout_s: float | None = None


@dataclass
class TrainOutcome:
    name: str
    version: str
    run_id: str
    model_uri: str
    tracking_uri: str
    bundle_sha256: str
    metrics: dict[str, float | None]
    baseline_metrics: dict[str, float | None] | None
    uncalibrated_metrics: dict[str, float | None]
    report: Path
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "tracking_uri": self.tracking_uri,
            "bundle_sha256": self.bundle_sha256,
            "metrics": self.metrics,
            "baseline_metrics": self.baseline_metrics,
            "uncalibrated_metrics": self.uncalibrated_metrics,
            "report": str(self.report),
            "warnings": self.warnings,
        }


def _params(result: TrainingResult, request: TrainRequest) -> dict[str, str | int | float]:
    """The run's params: the training choices and the learner's effective hyperparameters
    (``lgbm.num_leaves``, ...; ``scorecard.C``, ... for ``logistic``)."""
    training = result.bundle.training
    params: dict[str, str | int | float] = {
        "algorithm": result.bundle.algorithm,
        "seed": int(training["seed"]),
        "calibration_method": str(training["calibration_method"]),
        "n_fit": int(training["n_fit"]),
        "n_calibration": int(training["n_calibration"]),
        "n_test": int(training["n_test"]),
        "policy_version": str(result.bundle.policy["version"]),
        "approve_min_score": float(result.bundle.policy["approve_min_score"]),
        "decline_below_score": float(result.bundle.policy["decline_below_score"]),
        "data_file": request.data_path.name,
    }
    prefix = "lgbm" if result.bundle.algorithm == "lightgbm" else "scorecard"
    for key, value in result.hyperparameters.items():
        params[f"{prefix}.{key}"] = value if isinstance(value, (int, float, str)) else str(value)
    return params


def _metrics(evaluation: Evaluation) -> dict[str, float]:
    metrics = dict(evaluation.metrics)
    for key, value in evaluation.uncalibrated_metrics.items():
        metrics[f"uncalibrated_{key}"] = value
    for key, value in (evaluation.baseline_metrics or {}).items():
        metrics[f"baseline_{key}"] = value
    for key, value in (evaluation.uplift or {}).items():
        metrics[f"uplift_{key}"] = value
    for item in evaluation.fairness:
        for key in (
            "demographic_parity_ratio",
            "equal_opportunity_ratio",
            "disparate_impact_ratio",
            "fairness_score",
        ):
            if item.get(key) is not None:
                metrics[f"fairness_{item['attribute']}_{key}"] = float(item[key])
    return metrics


def evaluation_json(evaluation: Evaluation) -> dict[str, Any]:
    return {
        "metrics": json_safe(evaluation.metrics),
        "uncalibrated_metrics": json_safe(evaluation.uncalibrated_metrics),
        "baseline_metrics": json_safe(evaluation.baseline_metrics or {}),
        "calibration_table": evaluation.calibration_table,
        "gains_table": evaluation.gains_table,
        "fairness": evaluation.fairness,
        "iv_table": evaluation.iv_table,
        "monotonicity": evaluation.monotonicity,
        "feature_importance": evaluation.feature_importance,
    }


@dataclass(frozen=True)
class ReportSubject:
    """What a model report is about: its title, the version and its lineage."""

    title: str
    name: str
    version: str | None
    algorithm: str
    lineage: dict[str, str]


def build_report_data(
    subject: ReportSubject, evaluation: Evaluation, **extra: Any
) -> ModelReportData:
    """The report's input from an evaluation (shared by training and validation)."""
    return ModelReportData(
        title=subject.title,
        model_name=subject.name,
        version=subject.version,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        algorithm=subject.algorithm,
        lineage=subject.lineage,
        metrics=evaluation.metrics,
        y_test=evaluation.y_test,
        pd_test=evaluation.pd_test,
        score_test=evaluation.score_test,
        calibration_table=evaluation.calibration_table,
        gains_table=evaluation.gains_table,
        fairness=evaluation.fairness,
        baseline_name="logistic WoE scorecard" if evaluation.baseline_metrics else None,
        baseline_metrics=evaluation.baseline_metrics,
        baseline_pd_test=evaluation.baseline_pd_test,
        uncalibrated_metrics=evaluation.uncalibrated_metrics,
        iv_table=evaluation.iv_table or None,
        feature_importance=evaluation.feature_importance or None,
        monotonicity=evaluation.monotonicity or None,
        classification_cutoff=evaluation.classification_cutoff,
        scorecard=evaluation.scorecard,
        value_labels=evaluation.value_labels,
        **extra,
    )


@dataclass
class TrainedVersion:
    """A model trained and evaluated in memory, not registered yet: what it was trained
    on, with which settings, and its lineage tags."""

    name: str
    request: TrainRequest
    data: TrainingData
    result: TrainingResult
    settings: dict[str, Any]  # the resolved training settings (training_settings.json)
    lineage: dict[str, str]
    artifacts: dict[str, Path] = field(default_factory=dict)  # more files for the run
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))  # training began


def train_and_register(
    ctx: AppContext, request: TrainRequest, progress: Progress | None = None
) -> TrainOutcome:
    """Read the data, train and evaluate, register the version with its lineage and
    artefacts, and write its evaluation report."""
    say = progress or (lambda _msg: None)
    return register_version(ctx, train_version(ctx, request, say), say)


def train_version(
    ctx: AppContext,
    request: TrainRequest,
    say: Progress,
    settings: dict[str, Any] | None = None,
) -> TrainedVersion:
    """Read the data and train; ``settings`` (a version's training_settings.json) replaces
    the request's and the configured choices, so that a retraining repeats them exactly."""
    spec = load_spec(request.spec_path)
    name = request.name or spec.name
    if not name:
        raise InvalidInputError(
            "a model name is needed: pass --name or set name: in the spec", field="name"
        )
    resolved = settings or training_settings(ctx, request, spec)
    started_at = datetime.now(UTC)
    say(f"reading {request.data_path.name}")
    data = load_training_data(
        request.data_path, spec, max_dirty_share=float(resolved["max_dirty_share"])
    )
    for warning in data.warnings:
        say(f"warning: {warning}")
    result = train_model(data, spec, options_from_settings(resolved), progress=say)
    lineage = {
        "data_sha256": data.data_sha256,
        "data_path": str(request.data_path.resolve()),
        "spec_sha256": spec.sha256(),
        "settings_sha256": canonical_sha256(resolved),
        "bundle_sha256": result.bundle.sha256(),
        "git_commit": git_commit(),
        "algorithm": str(resolved["algorithm"]),
        "policy_version": str(result.bundle.policy["version"]),
        "creditops_version": _version(),
    }
    return TrainedVersion(name, request, data, result, resolved, lineage, started_at=started_at)


def register_version(
    ctx: AppContext, trained: TrainedVersion, say: Progress, tags: dict[str, str] | None = None
) -> TrainOutcome:
    """Register a trained version (lineage plus ``tags``) with its artefacts and report."""
    say("registering in MLflow")
    lineage = {**trained.lineage, **(tags or {})}
    registered, report = _register(ctx, trained, lineage, say)
    evaluation = trained.result.evaluation
    return TrainOutcome(
        name=trained.name,
        version=registered.version,
        run_id=registered.run_id,
        model_uri=registered.model_uri,
        tracking_uri=ctx.registry.tracking_uri,
        bundle_sha256=lineage["bundle_sha256"],
        metrics=json_safe(evaluation.metrics),
        baseline_metrics=json_safe(evaluation.baseline_metrics)
        if evaluation.baseline_metrics
        else None,
        uncalibrated_metrics=json_safe(evaluation.uncalibrated_metrics),
        report=report,
        warnings=trained.data.warnings,
    )


def training_settings(ctx: AppContext, request: TrainRequest, spec: Spec) -> dict[str, Any]:
    """Every choice that shapes a training run besides the spec and the data, resolved from
    the request over the configured defaults: hashed into ``settings_sha256`` and stored
    with the version (training_settings.json)."""
    options = _options(ctx, request)
    defaults = ctx.settings.training
    max_dirty = (
        spec.max_dirty_share if spec.max_dirty_share is not None else defaults.max_dirty_share
    )
    return {
        "algorithm": options.algorithm,
        "seed": options.seed,
        "test_share": options.test_share,
        "calibration_share": options.calibration_share,
        "calibration_method": options.calibration_method,
        "policy": options.policy.model_dump(mode="json") if options.policy else None,
        "tune_trials": options.tune_trials,
        "tune_timeout_s": options.tune_timeout_s,
        "max_dirty_share": max_dirty,
    }


def options_from_settings(settings: dict[str, Any]) -> TrainOptions:
    policy = settings.get("policy")
    return TrainOptions(
        algorithm=settings["algorithm"],
        seed=int(settings["seed"]),
        test_share=float(settings["test_share"]),
        calibration_share=float(settings["calibration_share"]),
        calibration_method=settings["calibration_method"],
        policy=DecisionPolicy.model_validate(policy) if policy else None,
        tune_trials=int(settings["tune_trials"]),
        tune_timeout_s=settings.get("tune_timeout_s"),
    )


def canonical_sha256(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _options(ctx: AppContext, request: TrainRequest) -> TrainOptions:
    """The request's choices over the settings' defaults."""
    defaults = ctx.settings.training
    return TrainOptions(
        algorithm=request.algorithm,
        seed=request.seed if request.seed is not None else defaults.seed,
        test_share=defaults.test_share,
        calibration_share=defaults.calibration_share,
        calibration_method=request.calibration or defaults.calibration_method,  # type: ignore[arg-type]
        policy=load_policy(request.policy_path) if request.policy_path else None,
        tune_trials=request.tune_trials,
        tune_timeout_s=request.tune_timeout_s,
    )


def _register(
    ctx: AppContext, trained: TrainedVersion, lineage: dict[str, str], say: Progress
) -> tuple[RegisteredVersion, Path]:
    """Register the bundle with its params, metrics, lineage tags and artefacts (spec,
    training settings, evaluation, test split), then write and attach the report."""
    result, request, name = trained.result, trained.request, trained.name
    evaluation = result.evaluation
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundle_path = work / "bundle.json"
        bundle_sha = result.bundle.save(bundle_path)
        spec_copy = work / "spec.yaml"
        shutil.copyfile(request.spec_path, spec_copy)
        settings_path = work / "training_settings.json"
        settings_path.write_text(json.dumps(trained.settings, indent=2, sort_keys=True))
        evaluation_path = work / "evaluation.json"
        evaluation_path.write_text(json.dumps(evaluation_json(evaluation), indent=2, default=str))
        test_path = work / "test_set.parquet"
        evaluation.test_frame.to_parquet(test_path, index=False)
        registered = ctx.registry.register(
            RegistrationRequest(
                name=name,
                bundle_path=bundle_path,
                bundle_sha256=bundle_sha,
                params=_params(result, request),
                metrics=_metrics(evaluation),
                tags=lineage,
                artifacts={
                    "spec/spec.yaml": spec_copy,
                    SETTINGS_ARTIFACT: settings_path,
                    "evaluation/evaluation.json": evaluation_path,
                    TEST_SET_ARTIFACT: test_path,
                    **trained.artifacts,
                },
                description=f"{lineage['algorithm']} model trained on {request.data_path.name}",
                input_example=evaluation.test_frame,
                dataset=_training_dataset(trained),
                started_at=trained.started_at,
            )
        )
        say("writing the evaluation report")
        report = ctx.reports_dir / name / f"v{registered.version}" / "evaluation.html"
        title = f"Evaluation report: {name} v{registered.version}"
        subject = ReportSubject(title, name, registered.version, lineage["algorithm"], lineage)
        render_model_report(
            build_report_data(subject, evaluation, notes=tuple(result.warnings)), report
        )
        ctx.registry.log_version_artifact(name, registered.version, report, "reports")
        if evaluation.scorecard is not None:  # its binning and points tables, beside it
            for path in write_scorecard_files(evaluation.scorecard, report.parent):
                ctx.registry.log_version_artifact(name, registered.version, path, "reports")
    return registered, report


def _training_dataset(trained: TrainedVersion) -> TrainingDataset:
    """The data read for training, with its target, as the run's input."""
    target = trained.result.model.spec.target.column
    frame = trained.data.frame.assign(**{target: trained.data.y})
    path = trained.request.data_path
    return TrainingDataset(
        frame=frame,
        name=path.name,
        source=str(path.resolve()),
        sha256=trained.data.data_sha256,
        target=target,
    )


def _version() -> str:
    from creditops import __version__

    return __version__
