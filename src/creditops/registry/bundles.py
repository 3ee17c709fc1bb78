"""Downloads from a version's run: the bundle, verified against its recorded hash, and
any other artifact.

A bundle whose sha256 differs from the version's ``bundle_sha256`` tag is deleted and
refused, so a cache never keeps a tampered bundle. The versions themselves are resolved by
:class:`~creditops.registry.mlflow_registry.ModelRegistry` in
:mod:`creditops.registry.mlflow_registry`; the client in :mod:`creditops.registry.mlflow_store`.
"""

from __future__ import annotations

from pathlib import Path

from creditops.errors import IntegrityError, NotFoundError
from creditops.registry.mlflow_store import MlflowStore
from creditops.registry.records import BUNDLE_ARTIFACT, BUNDLE_SHA_TAG, VersionInfo
from creditops.registry.validation import check_artifact_path, sha256_file


def download_verified_bundle(store: MlflowStore, info: VersionInfo, dst_dir: Path) -> Path:
    """Download ``bundle.json`` of a version and verify it against its recorded hash."""
    expected = info.tags.get(BUNDLE_SHA_TAG, "")
    if not expected:
        raise IntegrityError(
            f"{info.name} version {info.version} has no {BUNDLE_SHA_TAG} tag; "
            "its bundle cannot be verified"
        )
    path = download_run_artifact(store, info, BUNDLE_ARTIFACT, dst_dir)
    actual = sha256_file(path)
    if actual != expected:
        path.unlink(missing_ok=True)  # never leave a tampered bundle in a cache
        raise IntegrityError(
            f"bundle of model {info.name!r} version {info.version} is corrupt or was "
            f"modified: expected sha256 {expected}, got {actual}"
        )
    return path


def download_run_artifact(
    store: MlflowStore, info: VersionInfo, artifact_path: str, dst_dir: Path
) -> Path:
    """Download one artifact (file or directory) of a version's run into ``dst_dir``."""
    artifact_path = check_artifact_path(artifact_path)
    if not info.run_id:
        raise NotFoundError(f"{info.name} version {info.version} has no MLflow run")
    dst_dir.mkdir(parents=True, exist_ok=True)
    what = f"{info.name} version {info.version} artifact {artifact_path!r}"
    with store.op(f"downloading {what}", download=True):
        local = store.client.download_artifacts(info.run_id, artifact_path, str(dst_dir))
    return Path(local)
