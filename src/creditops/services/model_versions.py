"""Model versions: listing, loading (hash-verified) and promotion."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from creditops.domain.windows import utc_text
from creditops.errors import InvalidInputError, ModelNotFoundError
from creditops.modeling.bundle import ScoringModel
from creditops.registry.records import VersionInfo
from creditops.services.context import AppContext

ALIASES = ("staging", "production")
TEST_SET_ARTIFACT = "evaluation/test_set.parquet"
SETTINGS_ARTIFACT = "spec/training_settings.json"  # the resolved training settings


@dataclass(frozen=True)
class LoadedModel:
    model: ScoringModel
    info: VersionInfo


def resolve_ref(version: str | None, alias: str | None) -> str:
    """A version number or an alias; ``production`` when neither is given."""
    if version and alias:
        raise InvalidInputError("give either --version or --alias, not both", field="version")
    return version or alias or "production"


def load_model(ctx: AppContext, name: str, ref: str) -> LoadedModel:
    """Download the bundle of ``name`` at ``ref`` and verify its hash before using it."""
    info = ctx.registry.get_version(name, ref)
    # A private temporary folder per load: several worker processes start at once, and a
    # shared cache file could be read while another process is still writing it.
    with tempfile.TemporaryDirectory(prefix="bundle-") as tmp:
        path = ctx.registry.download_bundle(name, info.version, Path(tmp))
        model = ScoringModel.from_file(path, expected_sha256=info.tags.get("bundle_sha256"))
    return LoadedModel(model=model, info=info)


def load_test_set(ctx: AppContext, name: str, version: str) -> pd.DataFrame:
    """The test split stored with a version (features, protected attributes, target)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = ctx.registry.download_artifact(name, version, TEST_SET_ARTIFACT, Path(tmp))
        return pd.read_parquet(path)


def registered_versions(ctx: AppContext, name: str) -> list[VersionInfo]:
    """Every registered version of ``name``; :class:`ModelNotFoundError` when there is none."""
    versions = ctx.registry.list_versions(name)
    if not versions:
        raise ModelNotFoundError(name)
    return versions


def list_models(ctx: AppContext, name: str | None = None) -> list[dict[str, Any]]:
    rows = []
    for info in ctx.registry.list_versions(name):
        rows.append(
            {
                "name": info.name,
                "version": info.version,
                "aliases": list(info.aliases),
                "created_at": utc_text(info.created_at),
                "algorithm": info.tags.get("algorithm", ""),
                "gate_passed": gate_passed(info),
                "bundle_sha256": info.tags.get("bundle_sha256", ""),
                "metrics": {
                    k: info.metrics[k] for k in ("auc", "gini", "ks", "brier") if k in info.metrics
                },
            }
        )
    return rows


def gate_passed(info: VersionInfo) -> bool | None:
    """The validation gate's verdict as a boolean (None: never validated). MLflow keeps
    tags as text; everything creditops prints turns them back into JSON booleans."""
    return {"true": True, "false": False}.get(info.tags.get("gate_passed", ""))


def servable(info: VersionInfo) -> tuple[bool, str]:
    """Whether a version may decide on applicants, and why: it passed its validation gate,
    or an override of the gate was recorded by ``models promote --force --reason`` (who,
    why, when). Anything else, e.g. an alias moved by hand in the MLflow UI, is refused."""
    if info.tags.get("gate_passed") == "true":
        return True, "passed its validation gate"
    if info.tags.get("gate_override_by") and info.tags.get("gate_override_reason"):
        return True, (
            f"gate overridden by {info.tags['gate_override_by']}: "
            f"{info.tags['gate_override_reason']}"
        )
    state = info.tags.get("gate_passed")
    why = "it has not been validated" if state is None else "it failed its validation gate"
    return False, f"{why} and no override is recorded"


def promote(  # noqa: PLR0913 - the version, the alias, and the override's who and why
    ctx: AppContext,
    name: str,
    version: str,
    alias: str,
    *,
    force: bool = False,
    reason: str = "",
    actor: str = "cli",
) -> VersionInfo:
    """Point ``alias`` at ``version``; production requires a passed validation gate, or
    ``force`` with a ``reason``, which is recorded on the version as an override (who, why,
    when) so that the serving processes accept it."""
    if alias not in ALIASES:
        raise InvalidInputError(
            f"--to must be one of {', '.join(ALIASES)}; got {alias!r}", field="to"
        )
    info = ctx.registry.get_version(name, version)
    ok, why = servable(info)
    if alias == "production" and not ok:
        if not force:
            raise InvalidInputError(
                f"{name} version {info.version} cannot go to production: {why}; run "
                f"`creditops validate --name {name} --version {info.version}` first, or "
                "pass --force with --reason to record an override",
                field="version",
            )
        if not reason.strip():
            raise InvalidInputError(
                "--force needs --reason: an override of the validation gate is recorded "
                "with who asked and why",
                field="reason",
            )
        ctx.registry.set_version_tags(
            name,
            info.version,
            {
                "gate_override_by": actor,
                "gate_override_reason": reason.strip(),
                "gate_override_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
    ctx.registry.set_alias(name, alias, info.version)
    return ctx.registry.get_version(name, info.version)
