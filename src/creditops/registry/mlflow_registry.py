"""The registry: registering model versions, querying them and managing their aliases.

:class:`ModelRegistry` is creditops' store of record for model versions and the only entry
point callers use. What a version is made of (the run, the bundle, the ``bundle_sha256``
tag, aliases as stages) and the value types are described in
:mod:`creditops.registry.records`.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from creditops.errors import (
    ConfigError,
    CreditopsError,
    InvalidInputError,
    ModelNotFoundError,
    ModelVersionNotFoundError,
    NotFoundError,
)
from creditops.registry.bundles import download_run_artifact, download_verified_bundle
from creditops.registry.mlflow_store import MlflowStore, quiet_mlflow
from creditops.registry.records import (
    BUNDLE_SHA_TAG,
    LATEST,
    MANAGED_TAG,
    RegisteredVersion,
    RegistrationRequest,
    VersionInfo,
)
from creditops.registry.tracking import (
    MAX_TAG_LEN,
    create_training_run,
    log_file,
    log_run,
    log_training_dataset,
    run_params,
    truncate,
    truncated_tags,
)
from creditops.registry.validation import (
    check_alias,
    check_name,
    check_ref,
    check_registration_files,
    check_version,
)

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion


class ModelRegistry:
    """creditops' store of record for model versions, backed by MLflow."""

    def __init__(self, tracking_uri: str, *, artifact_root: Path | None = None) -> None:
        if not tracking_uri.strip():
            raise ConfigError("the MLflow tracking URI is empty", field="mlflow_uri")
        self._store = MlflowStore(tracking_uri, artifact_root)

    def __repr__(self) -> str:
        return f"ModelRegistry({self._store.uri!r})"

    @property
    def tracking_uri(self) -> str:
        return self._store.uri

    # ----------------------------------------------------------------- registration

    def register(self, request: RegistrationRequest) -> RegisteredVersion:
        """Log a training run with the bundle and artifacts (and, given an input example,
        the pyfunc model), then register a version; the run ends once it is registered."""
        name = check_name(request.name)
        check_registration_files(request)
        tags = {**request.tags, BUNDLE_SHA_TAG: request.bundle_sha256}
        with self._store.op(f"registering model {name!r}", download=True, aimed=True):
            client = self._store.client
            run = create_training_run(self._store, name, tags, request)
            run_id = run.info.run_id
            try:
                with quiet_mlflow():
                    logged = self._log_pyfunc(run.info.experiment_id, run_id, request)
                    if request.dataset is not None:
                        log_training_dataset(self._store, run_id, request.dataset)
                model_id = logged[0] if logged else None
                log_run(self._store, run_id, request, model_id)
                source = f"{run.info.artifact_uri.rstrip('/')}/bundle"
                version = self._create_version(name, run_id, source, logged, tags, request)
                client.set_terminated(run_id, "FINISHED")
            except BaseException:
                with contextlib.suppress(Exception):
                    client.set_terminated(run_id, "FAILED")
                raise
        return RegisteredVersion(
            name=name,
            version=str(version.version),
            run_id=run_id,
            model_uri=f"models:/{name}/{version.version}",
            artifact_uri=run.info.artifact_uri,
        )

    def _log_pyfunc(
        self, experiment_id: str, run_id: str, request: RegistrationRequest
    ) -> tuple[str, str] | None:
        """The pyfunc logged model of the run (its id and artifact location), when the
        request has an input example."""
        if request.input_example is None:
            return None
        from creditops.registry.pyfunc_model import log_pyfunc_model

        return log_pyfunc_model(
            self._store.client,
            experiment_id,
            run_id,
            request.bundle_path,
            request.bundle_sha256,
            request.input_example,
            run_params(request),
        )

    def _create_version(  # noqa: PLR0913 - the version's run, sources and what it records
        self,
        name: str,
        run_id: str,
        bundle_source: str,
        logged: tuple[str, str] | None,
        tags: Mapping[str, str],
        request: RegistrationRequest,
    ) -> ModelVersion:
        """A version of the run's logged model (``logged``: id and location) when there is
        one, else of its ``bundle`` directory (no MLmodel needed)."""
        from mlflow.exceptions import MlflowException

        client = self._store.client
        try:
            client.create_registered_model(name, tags={MANAGED_TAG: "true"})
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            if client.get_registered_model(name).tags.get(MANAGED_TAG) != "true":
                client.set_registered_model_tag(name, MANAGED_TAG, "true")

        def create(source: str, model_id: str | None) -> ModelVersion:
            return client.create_model_version(
                name,
                source=source,
                run_id=run_id,
                tags=truncated_tags(tags),
                description=request.description or None,
                model_id=model_id,
            )

        if logged is None:
            return self._await_ready(create(bundle_source, None))
        model_id, location = logged
        try:  # models:/<id>, as MLflow 3 registers a logged model (its UI links the two)
            version = create(f"models:/{model_id}", model_id)
        except MlflowException as exc:
            # MLflow's SQL registry resolves that source through its process-wide client;
            # mlflow.set_tracking_uri() aimed elsewhere defeats the override, so fall back
            # to the logged model's location (loads the same, without the UI link).
            if "Unable to fetch model from model URI" not in str(exc):
                raise
            version = create(location, model_id)
        return self._await_ready(version)

    def _await_ready(self, version: ModelVersion, timeout_s: float = 300.0) -> ModelVersion:
        deadline = time.monotonic() + timeout_s
        while version.status != "READY":
            if version.status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
                raise CreditopsError(
                    f"MLflow could not make {version.name} version {version.version} ready "
                    f"(status {version.status}: {version.status_message or 'no message'})"
                )
            time.sleep(0.2)
            version = self._store.client.get_model_version(version.name, str(version.version))
        return version

    # ----------------------------------------------------------------- queries

    def model_names(self) -> list[str]:
        """Names of the registered models that creditops created, sorted."""
        with self._store.op("listing models"):
            models = _all_pages(
                lambda token: self._store.client.search_registered_models(
                    max_results=1000, page_token=token
                )
            )
        return sorted(m.name for m in models if m.tags.get(MANAGED_TAG) == "true")

    def list_versions(self, name: str | None = None) -> list[VersionInfo]:
        """Versions of ``name`` (or of every creditops model when None), newest first."""
        names = [check_name(name)] if name is not None else self.model_names()
        run_metrics: dict[str, dict[str, float]] = {}
        infos: list[VersionInfo] = []
        for model in names:
            # Searched versions come without their aliases: take them from the model.
            aliases = self._require_model(model)
            infos.extend(
                self._info(v, run_metrics, aliases.get(str(v.version), ()))
                for v in self._versions(model)
            )
        infos.sort(key=lambda i: (i.created_at, i.name, int(i.version)), reverse=True)
        return infos

    def get_version(self, name: str, ref: str) -> VersionInfo:
        """The version ``ref`` of ``name``: a version number, an alias or ``latest``."""
        return self._info(self._resolve(check_name(name), ref), {})

    def find_alias(self, name: str, alias: str) -> VersionInfo | None:
        """The version ``alias`` points at, or None when the alias is not set."""
        name, alias = check_name(name), check_alias(alias)
        try:
            return self._info(self._resolve(name, alias), {})
        except ModelVersionNotFoundError:
            return None

    # ----------------------------------------------------------------- updates

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` at ``version`` (which must exist); moves it if already set."""
        name, alias = check_name(name), check_alias(alias)
        target = self._resolve(name, check_version(name, version))
        with self._store.op(f"setting alias {alias!r} of {name}"):
            self._store.client.set_registered_model_alias(name, alias, str(target.version))

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias``; raises ModelVersionNotFoundError when it is not set."""
        name, alias = check_name(name), check_alias(alias)
        self._resolve(name, alias)
        with self._store.op(f"deleting alias {alias!r} of {name}"):
            self._store.client.delete_registered_model_alias(name, alias)

    def set_version_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        name = check_name(name)
        target = self._resolve(name, check_version(name, version))
        with self._store.op(f"tagging {name} version {target.version}"):
            for key, value in tags.items():
                self._store.client.set_model_version_tag(
                    name, str(target.version), key, truncate(str(value), MAX_TAG_LEN)
                )

    def log_version_artifact(
        self, name: str, version: str, local_path: Path, artifact_dir: str
    ) -> str:
        """Add a file (e.g. a report) to the run of a version; returns its artifact path."""
        target = self._resolve(check_name(name), check_version(name, version))
        if not local_path.is_file():
            raise InvalidInputError(f"{local_path} is not a file", field="artifact")
        if not target.run_id:
            raise NotFoundError(f"{name} version {target.version} has no MLflow run")
        sub_path = f"{artifact_dir.strip('/')}/{local_path.name}".lstrip("/")
        with (
            self._store.op(f"logging {sub_path} for {name} version {target.version}"),
            tempfile.TemporaryDirectory(prefix="creditops-artifact-") as tmp,
        ):
            log_file(self._store, target.run_id, local_path, sub_path, Path(tmp))
        return sub_path

    def log_version_metrics(self, name: str, version: str, metrics: Mapping[str, float]) -> None:
        """Add metrics (e.g. ``replay_passed``) to the run of a registered version, stamped
        now: a check run again adds a point to each metric's history, the last one shows."""
        from mlflow.entities import Metric

        target = self._resolve(check_name(name), check_version(name, version))
        if not target.run_id:
            raise NotFoundError(f"{name} version {target.version} has no MLflow run")
        bad = [k for k, v in metrics.items() if not math.isfinite(float(v))]
        if bad:
            raise InvalidInputError(f"metrics must be finite numbers; got {bad}", field="metrics")
        now_ms = int(time.time() * 1000)
        points = [Metric(key, float(value), now_ms, 0) for key, value in metrics.items()]
        with self._store.op(f"logging metrics for {name} version {target.version}"):
            self._store.client.log_batch(target.run_id, metrics=points)

    # ----------------------------------------------------------------- downloads

    def download_bundle(self, name: str, ref: str, dst_dir: Path) -> Path:
        """Download ``bundle.json`` of a version and verify it against its recorded hash."""
        return download_verified_bundle(self._store, self.get_version(name, ref), dst_dir)

    def download_artifact(self, name: str, ref: str, artifact_path: str, dst_dir: Path) -> Path:
        """Download one artifact (file or directory) of a version's run into ``dst_dir``."""
        return download_run_artifact(
            self._store, self.get_version(name, ref), artifact_path, dst_dir
        )

    # ----------------------------------------------------------------- internals

    def _require_model(self, name: str) -> dict[str, tuple[str, ...]]:
        """Raise ModelNotFoundError unless ``name`` exists; returns version -> aliases."""
        with self._store.op(f"reading model {name!r}"):
            try:
                model = self._store.client.get_registered_model(name)
            except Exception as exc:
                if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
                    raise ModelNotFoundError(name) from exc
                raise
        by_version: dict[str, list[str]] = {}
        for alias, version in sorted(dict(model.aliases or {}).items()):
            by_version.setdefault(str(version), []).append(alias)
        return {version: tuple(aliases) for version, aliases in by_version.items()}

    def _versions(self, name: str) -> list[ModelVersion]:
        with self._store.op(f"listing versions of {name!r}"):
            return _all_pages(
                lambda token: self._store.client.search_model_versions(
                    filter_string=f"name = '{name}'", page_token=token
                )
            )

    def _resolve(self, name: str, ref: str) -> ModelVersion:
        """The model version a reference points at (version number, ``latest`` or alias)."""
        ref = check_ref(name, ref)
        self._require_model(name)
        if ref == LATEST:
            versions = self._versions(name)
            if not versions:
                raise ModelVersionNotFoundError(name, ref)
            ref = str(max(int(v.version) for v in versions))  # re-read below for aliases
        with self._store.op(f"reading {name} {ref!r}"):
            try:
                if ref.isdigit():
                    return self._store.client.get_model_version(name, ref)
                return self._store.client.get_model_version_by_alias(name, ref)
            except Exception as exc:
                # The model exists and ``ref`` is well formed, so MLflow's "not found"
                # (RESOURCE_DOES_NOT_EXIST, or INVALID_PARAMETER_VALUE for aliases) is ours.
                code = getattr(exc, "error_code", None)
                if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise ModelVersionNotFoundError(name, ref) from exc
                raise

    def _info(
        self,
        version: ModelVersion,
        run_metrics: dict[str, dict[str, float]],
        aliases: tuple[str, ...] | None = None,
    ) -> VersionInfo:
        run_id = version.run_id or ""
        if run_id and run_id not in run_metrics:
            with self._store.op(f"reading run {run_id}"):
                try:
                    run_metrics[run_id] = dict(self._store.client.get_run(run_id).data.metrics)
                except Exception as exc:  # a deleted run leaves the version without metrics
                    if getattr(exc, "error_code", None) != "RESOURCE_DOES_NOT_EXIST":
                        raise
                    run_metrics[run_id] = {}
        return VersionInfo(
            name=version.name,
            version=str(version.version),
            aliases=tuple(sorted(version.aliases or ())) if aliases is None else aliases,
            run_id=run_id,
            created_at=datetime.fromtimestamp((version.creation_timestamp or 0) / 1000, tz=UTC),
            tags=dict(version.tags or {}),
            metrics=run_metrics.get(run_id, {}),
            description=version.description or "",
        )


def _all_pages(fetch: Callable[[str | None], Any]) -> list[Any]:
    items: list[Any] = []
    token: str | None = None
    while True:
        page = fetch(token)
        items.extend(page)
        token = page.token
        if not token:
            return items
