"""Typed configuration (pydantic-settings).

Every setting can come from the environment (prefix ``CREDITOPS_``, nested sections with
``__``, e.g. ``CREDITOPS_TRAINING__SEED=7``) or from an optional ``creditops.toml`` in the
working directory. Nothing is read at import time: call :func:`get_settings`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


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
        default="isotonic", pattern="^(isotonic|platt)$", description="isotonic or platt."
    )
    max_dirty_share: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Largest share of rows with unparseable values that training drops "
        "(with a warning) before it refuses the file.",
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
    def reports_dir(self) -> Path:
        return self.home_dir / "reports"


def get_settings() -> Settings:
    """Read the settings from the environment (and ``creditops.toml``) now."""
    return Settings()
