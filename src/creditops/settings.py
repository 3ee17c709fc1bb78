"""Typed configuration (pydantic-settings).

Every setting can come from the environment (prefix ``CREDITOPS_``, nested sections with
``__``, e.g. ``CREDITOPS_TRAINING__SEED=7``) or from an optional ``creditops.toml`` in the
working directory. Nothing is read at import time: call :func:`get_settings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from creditops.alerts.settings import AlertSettings


class TrainingSettings(BaseModel):
    """Defaults for ``creditops train``; the CLI flags override them."""

    seed: int = Field(default=42, description="Seed for splits, LightGBM and the scorecard.")
    test_share: float = Field(
        default=0.25, gt=0, lt=1, description="Test share when the spec has no split column."
    )
    calibration_share: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="Share of the training part held out to fit the calibrator.",
    )
    calibration_method: str = Field(
        default="auto",
        pattern="^(auto|isotonic|platt|none)$",
        description="auto (pick by cross-validated Brier on the calibration fold), isotonic, "
        "platt or none.",
    )
    max_dirty_share: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Largest share of rows with unparseable values that training drops "
        "(with a warning) before it refuses the file.",
    )


class ServeSettings(BaseModel):
    """The decision service (``creditops serve``)."""

    host: str = Field(default="127.0.0.1", description="Interface to bind.")
    port: int = Field(default=8000, ge=1, le=65535, description="TCP port.")
    workers: int = Field(default=1, ge=1, le=64, description="Uvicorn worker processes.")
    models: list[str] = Field(
        default_factory=list,
        description="Models to serve; empty = every registered model with a production alias.",
    )
    default_model: str | None = Field(
        default=None, description="Model behind the seed route POST /predict (default: first)."
    )
    max_batch: int = Field(default=1000, ge=1, description="Most applications in one request.")
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="Largest request body.")
    auth_enabled: bool = Field(
        default=True, description="Require API keys. Disable only for local demos."
    )
    metrics_public: bool = Field(
        default=True, description="Serve /metrics without a key (else scope 'monitor')."
    )
    reasons_for: Literal["adverse", "all"] = Field(
        default="adverse",
        description="Compute reason codes for 'all' decisions or only 'adverse' ones "
        "(review and decline), which need them for notices.",
    )
    fast_path: bool = Field(
        default=True,
        description="Serve well-formed, authorised predict requests on a hand-written ASGI "
        "path (same models, auth and responses; anything else goes through FastAPI). Off: "
        "every request goes through FastAPI.",
    )
    batch_wait_ms: float = Field(
        default=1.0,
        ge=0,
        le=100,
        description="Dynamic batching of single-applicant requests: while requests keep "
        "arriving, the event loop gathers them for up to this long before it scores them "
        "together (0: only those ready in the same loop turn).",
    )
    reload_interval_s: float = Field(
        default=30.0,
        ge=0,
        description="How often each worker checks the production alias and swaps in a new "
        "version (0 = never).",
    )
    slow_threads: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Threads for the slow work the API does on request (monitoring checks, "
        "test alerts), apart from the request thread pool so it cannot starve key "
        "look-ups, feedback or readiness.",
    )
    slow_queue: int = Field(
        default=16,
        ge=0,
        le=10_000,
        description="Slow requests that may wait for one of those threads; more are "
        "refused at once with 503 busy and Retry-After.",
    )
    retention_days: int = Field(
        default=762,
        ge=1,
        le=36_600,
        description="Decision records kept this long (default 25 months).",
    )
    log_batch_max: int = Field(default=512, ge=1, description="Group commit: most records.")
    log_batch_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description="Group commit: extra wait for more records before a commit. 0 commits "
        "what is queued at once; requests arriving during a commit form the next batch.",
    )


class ModelMonitorSettings(BaseModel):
    """Per-model overrides of the monitoring schedule and thresholds."""

    every_hours: float | None = Field(default=None, description="Overrides every_hours.")
    every_predictions: int | None = Field(default=None, description="Overrides every_predictions.")
    drift: dict[str, Any] = Field(
        default_factory=dict, description="Merged over the global drift configuration."
    )


class MonitorSettings(BaseModel):
    """Scheduled checks in ``creditops worker`` and the defaults of on-demand checks."""

    every_hours: float = Field(default=6.0, gt=0, description="Check every N hours.")
    every_predictions: int = Field(
        default=100, ge=1, description="Also check after every M new decisions of a model."
    )
    tick_seconds: float = Field(
        default=30.0, gt=0, description="How often the worker looks for due checks."
    )
    window_hours: float = Field(
        default=24.0, gt=0, description="Default window of logged decisions a check reads."
    )
    performance_window: int = Field(
        default=1000, ge=10, description="Labelled decisions in the performance window."
    )
    max_performance_drop: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="Relative drop of AUC, accuracy or F1 that is critical (alerts; against "
        "the validation figure it also triggers retraining).",
    )
    warning_performance_drop: float = Field(
        default=0.03,
        gt=0,
        lt=1,
        description="Relative drop from which performance is a warning (alerts, never retrains).",
    )
    min_rows: dict[str, int] = Field(
        default_factory=lambda: {
            "data_drift": 1000,
            "prediction_drift": 1000,
            "performance": 200,
            "fairness": 500,
        },
        description="Fewest rows (labelled decisions for performance) a check judges; below "
        "it the check reports insufficient_data, never alerts and never triggers "
        "retraining. Defaults: see docs/decisions/0008-retraining.md (the power of each "
        "test at its effect floor).",
    )
    fairness_min_ratio: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="A disparate impact ratio in production below this raises a fairness "
        "warning (0.8 = the four-fifths rule).",
    )
    drift: dict[str, Any] = Field(
        default_factory=dict, description="Drift configuration (methods, thresholds, overrides)."
    )
    hysteresis: dict[str, int] = Field(
        default_factory=lambda: {
            "raise_after": 1,
            "raise_window": 1,
            "clear_after": 2,
            "clear_window": 2,
        },
        description="Debouncing of alert levels across check windows: a level is raised by "
        "raise_after of the last raise_window checks and cleared by clear_after of the last "
        "clear_window (default: raise at once, clear after two clean checks).",
    )
    models: dict[str, ModelMonitorSettings] = Field(default_factory=dict)

    def for_model(self, name: str) -> tuple[float, int, dict[str, Any]]:
        """(every_hours, every_predictions, drift config) for one model."""
        own = self.models.get(name, ModelMonitorSettings())
        return (
            own.every_hours or self.every_hours,
            own.every_predictions or self.every_predictions,
            {**self.drift, **own.drift},
        )


TriggerKind = Literal["drift", "performance", "schedule", "new_data"]


class RetrainSettings(BaseModel):
    """Automated retraining (``creditops worker`` runs the jobs): triggers, the data a job
    assembles, its checks and its gate. Per-model overrides in ``models``."""

    triggers: list[TriggerKind] = Field(
        default_factory=lambda: list[TriggerKind](["drift", "performance", "new_data"]),
        description="Triggers the worker acts on (manual requests always work). The "
        "schedule trigger also needs `schedule`.",
    )
    schedule: str | None = Field(
        default=None,
        description="Cron expression (UTC) of scheduled retraining, e.g. '0 2 * * 0' "
        "(weekly, Sunday 02:00); none by default.",
    )
    drift_sustained_hours: float = Field(
        default=24.0,
        ge=0,
        description="Drift triggers retraining only when every data-drift check of this "
        "long held the condition (0: the latest check alone).",
    )
    drift_score: float = Field(
        default=0.7, gt=0, le=1, description="Dataset drift score above which drift counts."
    )
    drift_share: float = Field(
        default=0.3, gt=0, le=1, description="Drifted share of features above which drift counts."
    )
    new_data_outcomes: int = Field(
        default=5000,
        ge=1,
        description="Matured outcomes since the model's last training that trigger retraining.",
    )
    outcome_maturity_days: float = Field(
        default=0.0,
        ge=0,
        description="An outcome counts once its decision is this old (0: when recorded). Set "
        "it when outcomes are recorded before their observation window closes.",
    )
    cooldown_hours: float = Field(
        default=24.0, ge=0, description="No new job this long after one finished, unless forced."
    )
    window_days: float = Field(
        default=365.0, gt=0, description="Logged decisions older than this are not used."
    )
    max_production_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Largest share of production rows in the assembled training data.",
    )
    production_weight: int = Field(
        default=1,
        ge=1,
        le=10,
        description="Each production training row counts this many times (repeated).",
    )
    oot_share: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Share of the matured production rows, the most recent, held out as the "
        "out-of-time part of the common holdout (never trained on).",
    )
    min_rows: int = Field(default=1000, ge=10, description="Fewest training rows a job accepts.")
    min_class_rows: int = Field(
        default=50, ge=1, description="Fewest defaults and non-defaults a job accepts."
    )
    max_missing_share: float = Field(
        default=0.2, ge=0, le=1, description="Largest share of missing values in any feature."
    )
    gate_profile: str | None = Field(
        default=None,
        description="Gate profile (path or built-in) of retrained versions; default: the "
        "parent version's profile, else 'default'.",
    )
    tune_trials: int = Field(default=0, ge=0, description="Optuna trials per job (0: none).")
    tune_timeout_s: float | None = Field(default=None, gt=0, description="Tuning time budget.")
    models: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-model overrides of the settings above."
    )

    def for_model(self, name: str) -> RetrainSettings:
        """These settings with the model's overrides applied."""
        own = self.models.get(name)
        if not own:
            return self
        return RetrainSettings.model_validate({**self.model_dump(), **own, "models": {}})


class DeploySettings(BaseModel):
    """Deployments (``docs/deployments.md``): strategies, canary steps and their gate,
    automatic rollback. The worker drives deployments; each API process follows them."""

    default_strategy: Literal["immediate", "canary", "blue_green", "shadow", "rolling"] = Field(
        default="immediate", description="Strategy of `POST /v1/models/promote`."
    )
    canary_steps: list[float] = Field(
        default_factory=lambda: [0.05, 0.25, 0.5, 1.0],
        description="Traffic shares of a canary's steps (the last promotes).",
    )
    step_interval_s: float = Field(
        default=1800.0, ge=0.1, description="Time on each canary step before its gate."
    )
    evaluate_interval_s: float = Field(
        default=10.0,
        ge=0.1,
        description="How often the worker looks at deployments in progress (health, error "
        "rate and latency roll back within one such interval).",
    )
    keep_warm_s: float = Field(
        default=3600.0,
        ge=0,
        description="How long each API process keeps the previous version loaded after a "
        "switch, for an instant rollback.",
    )
    ready_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="A candidate not loaded and healthy in every serving process within "
        "this time is rolled back.",
    )
    process_stale_s: float = Field(
        default=120.0,
        gt=0,
        description="A serving process not heard from for this long is no longer waited for.",
    )
    shadow_queue: int = Field(
        default=2048,
        ge=0,
        description="Shadow decisions that may wait to be scored; beyond, they are dropped "
        "(counted) so that the shadow never slows the answers.",
    )
    max_error_rate: float = Field(default=0.10, ge=0, le=1, description="Candidate errors.")
    max_p99_latency_ms: float = Field(default=250.0, gt=0, description="Candidate p99 latency.")
    max_pd_psi: float = Field(default=0.25, ge=0, description="PSI of PDs, candidate vs stable.")
    max_pd_ks: float = Field(default=0.25, ge=0, le=1, description="KS of PDs, same arms.")
    max_approval_rate_diff: float = Field(
        default=0.10, ge=0, le=1, description="Largest approval-rate difference of the arms."
    )
    min_fairness_ratio: float = Field(
        default=0.8, ge=0, le=1, description="Disparate impact ratio floor per attribute."
    )
    max_fairness_drop: float = Field(
        default=0.05, ge=0, le=1, description="Tolerated ratio drop against the stable arm."
    )
    min_decisions: int = Field(
        default=200, ge=1, description="Decisions per arm before a step is judged."
    )
    require_evidence: bool = Field(
        default=False,
        description="A version may become production (a deployment, or `models promote --to "
        "production`) only after a passed implementation replay (`creditops replay`) of that "
        "version and with its monotonicity proof holding on its test split (docs/evidence.md).",
    )
    four_eyes: bool = Field(
        default=False,
        description="Four-eyes promotion: a deployment (or experiment) that lets a new version "
        "answer waits for a second key holder with scope 'promote' to approve it; the direct "
        "alias move of `models promote --to production` is refused.",
    )
    inject_faults: list[str] = Field(
        default_factory=list,
        description="Testing only: 'model:version' entries whose scoring raises (health "
        "check included), or 'model:version:requests' (all but the health check), to prove "
        "the automatic rollback.",
    )


class EventSettings(BaseModel):
    """Events for downstream systems (``docs/events.md``): the transactional outbox the
    services write and the publisher (``creditops worker`` or ``creditops publish``) that
    sends it to NATS JetStream."""

    enabled: bool = Field(
        default=False,
        description="Write an event for every decision, outcome and review override to "
        "the outbox (in the same transaction), and let the worker publish them. Off: no "
        "events are written or published.",
    )
    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        description="NATS server(s) of the publisher, comma-separated.",
    )
    stream: str = Field(
        default="CREDITOPS_EVENTS",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="JetStream stream that stores the events.",
    )
    subject_prefix: str = Field(
        default="creditops",
        pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$",
        description="Subjects are <prefix>.decisions.<model>, <prefix>.outcomes.<model>, "
        "<prefix>.reviews.<model> and <prefix>.deployments.<model>.",
    )
    create_stream: bool = Field(
        default=True,
        description="Create the stream (subjects <prefix>.>, file storage) when it does not "
        "exist. Off: it must exist already.",
    )
    duplicate_window_s: float = Field(
        default=120.0,
        gt=0,
        description="JetStream's de-duplication window of a created stream: a re-sent event "
        "id within it is dropped by the server.",
    )
    batch_size: int = Field(
        default=500, ge=1, le=10_000, description="Most unsent events read per pass."
    )
    poll_interval_s: float = Field(
        default=0.2, gt=0, description="Wait between passes when the outbox is empty."
    )
    publish_timeout_s: float = Field(
        default=5.0, gt=0, description="Longest wait for the broker's acknowledgement."
    )
    retry_max_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest back-off between attempts while the broker is unreachable.",
    )
    keep_sent_hours: float = Field(
        default=24.0, ge=0, description="Sent events are deleted from the outbox after this."
    )


class EvidenceSettings(BaseModel):
    """The evidence pack of ``creditops evidence`` (``docs/evidence.md``)."""

    pdf: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="Render evidence.pdf from the HTML with a headless Chromium: 'auto' when "
        "one is found (else the pack says why there is no PDF), 'always' (no Chromium is an "
        "error), 'never'.",
    )
    chromium: str | None = Field(
        default=None,
        description="The Chromium (or Chrome) executable for the PDF; default: the first "
        "of chromium, chromium-browser, google-chrome on the PATH.",
    )
    pdf_timeout_s: float = Field(
        default=120.0, gt=0, description="Longest wait for Chromium to print the PDF."
    )


class Settings(BaseSettings):
    """Root settings of creditops."""

    model_config = SettingsConfigDict(
        env_prefix="CREDITOPS_",
        env_nested_delimiter="__",
        toml_file="creditops.toml",
        extra="ignore",
    )

    home: Path = Field(
        default=Path(".creditops"),
        description="Directory that holds all local state: MLflow store and artifacts, "
        "reports, the service database.",
    )
    mlflow_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; default: a SQLite store under CREDITOPS_HOME.",
    )
    database_url: str | None = Field(
        default=None,
        description="Service database URL; default: SQLite (WAL) under CREDITOPS_HOME.",
    )
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)
    deploy: DeploySettings = Field(default_factory=DeploySettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls),
            file_secret_settings,
        )

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_uri:
            return self.mlflow_uri
        return f"sqlite:///{self.home_dir / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.home_dir / "mlartifacts"

    @property
    def database(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home_dir / 'creditops.db'}"

    @property
    def reports_dir(self) -> Path:
        return self.home_dir / "reports"


def get_settings() -> Settings:
    """Read the settings from the environment (and ``creditops.toml``) now."""
    return Settings()
