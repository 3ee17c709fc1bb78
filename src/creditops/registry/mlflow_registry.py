"""MLflow adapter: runs, registered models, model versions, aliases and bundle downloads.

This is the only module of creditops that talks to MLflow. It uses one
``MlflowClient(tracking_uri=..., registry_uri=...)`` per :class:`ModelRegistry` and never
the fluent API (``mlflow.set_tracking_uri``, ``mlflow.start_run``), so several registries
with different stores can live in one process. MLflow is imported lazily: constructing a
registry costs nothing until the first call that needs the store.

A creditops model version is a run with the bundle under ``bundle/bundle.json`` plus a
registered-model version whose source is that ``bundle`` directory and whose
``bundle_sha256`` tag is the bundle's identity. Stages are registered-model aliases.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from creditops.errors import (
    ConfigError,
    CreditopsError,
    IntegrityError,
    InvalidInputError,
    ModelNotFoundError,
    ModelVersionNotFoundError,
    NotFoundError,
)

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

BUNDLE_ARTIFACT = "bundle/bundle.json"
BUNDLE_SHA_TAG = "bundle_sha256"
MANAGED_TAG = "creditops.managed"
LATEST = "latest"

# MLflow's limits (mlflow.utils.validation: MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH and
# the batch sizes of log_batch).
_MAX_PARAM_LEN = 6000
_MAX_TAG_LEN = 8000
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_TRUNCATED = "...[truncated]"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,254}$")
_VERSION_ALIAS_RE = re.compile(r"^[vV]\d+$")  # reserved by MLflow for version aliases
_DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_NOISY_LOGGERS = ("mlflow.store.db.utils", "alembic")

# Environment overrides are process-wide, so changes are serialised and always undone.
_ENV_LOCK = threading.RLock()


@dataclass(frozen=True)
class RegistrationRequest:
    name: str
    bundle_path: Path
    bundle_sha256: str
    params: Mapping[str, str | int | float]
    metrics: Mapping[str, float]
    tags: Mapping[str, str]
    artifacts: Mapping[str, Path]
    description: str = ""
    experiment: str | None = None


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    model_uri: str
    artifact_uri: str


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str
    created_at: datetime
    tags: dict[str, str]
    metrics: dict[str, float]
    description: str


class ModelRegistry:
    """creditops' store of record for model versions, backed by MLflow."""

    def __init__(self, tracking_uri: str, *, artifact_root: Path | None = None) -> None:
        if not tracking_uri.strip():
            raise ConfigError("the MLflow tracking URI is empty", field="mlflow_uri")
        self._uri = tracking_uri
        self._scheme = _scheme(tracking_uri)
        self._artifact_root = _default_artifact_root(tracking_uri, artifact_root)
        self._client_obj: MlflowClient | None = None
        self._client_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ModelRegistry({self._uri!r})"

    @property
    def tracking_uri(self) -> str:
        return self._uri

    # ----------------------------------------------------------------- registration

    def register(self, request: RegistrationRequest) -> RegisteredVersion:
        """Log a training run with the bundle and artifacts, then register a version."""
        name = _check_name(request.name)
        _check_registration_files(request)
        tags = {**request.tags, BUNDLE_SHA_TAG: request.bundle_sha256}
        experiment = request.experiment or f"creditops/{name}"
        with self._op(f"registering model {name!r}"):
            client = self._client
            run_tags = {**tags, "creditops.model_name": name}
            if request.description:
                run_tags["mlflow.note.content"] = request.description
            run = client.create_run(
                self._experiment_id(experiment),
                run_name=f"{name}-train",
                tags=_truncated_tags(run_tags),
            )
            run_id = run.info.run_id
            try:
                self._log_run(run_id, request)
                client.set_terminated(run_id, "FINISHED")
                version = self._create_version(name, run_id, run.info.artifact_uri, tags, request)
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

    def _log_run(self, run_id: str, request: RegistrationRequest) -> None:
        from mlflow.entities import Metric, Param

        client = self._client
        now_ms = int(time.time() * 1000)
        params = [Param(k, _truncate(str(v), _MAX_PARAM_LEN)) for k, v in request.params.items()]
        metrics = [Metric(k, float(v), now_ms, 0) for k, v in request.metrics.items() if _finite(v)]
        for i in range(0, len(params), _PARAMS_PER_BATCH):
            client.log_batch(run_id, params=params[i : i + _PARAMS_PER_BATCH])
        for i in range(0, len(metrics), _METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=metrics[i : i + _METRICS_PER_BATCH])
        with tempfile.TemporaryDirectory(prefix="creditops-register-") as tmp:
            self._log_file(run_id, request.bundle_path, BUNDLE_ARTIFACT, Path(tmp))
            for sub_path, local in request.artifacts.items():
                self._log_file(run_id, local, sub_path, Path(tmp))

    def _log_file(self, run_id: str, local: Path, sub_path: str, scratch: Path) -> None:
        """Log ``local`` so that it is stored exactly at ``sub_path`` in the run."""
        target = PurePosixPath(_check_artifact_path(sub_path))
        if local.name != target.name:  # MLflow keeps the local file name: copy to rename
            staged = scratch / f"{len(list(scratch.iterdir()))}" / target.name
            staged.parent.mkdir(parents=True)
            shutil.copyfile(local, staged)
            local = staged
        parent = str(target.parent)
        self._client.log_artifact(run_id, str(local), None if parent == "." else parent)

    def _create_version(
        self,
        name: str,
        run_id: str,
        artifact_uri: str,
        tags: Mapping[str, str],
        request: RegistrationRequest,
    ) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        client = self._client
        try:
            client.create_registered_model(name, tags={MANAGED_TAG: "true"})
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            if client.get_registered_model(name).tags.get(MANAGED_TAG) != "true":
                client.set_registered_model_tag(name, MANAGED_TAG, "true")
        # A plain artifact directory is accepted as a version source (no MLmodel needed).
        version = client.create_model_version(
            name,
            source=f"{artifact_uri.rstrip('/')}/bundle",
            run_id=run_id,
            tags=_truncated_tags(tags),
            description=request.description or None,
        )
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
            version = self._client.get_model_version(version.name, str(version.version))
        return version

    # ----------------------------------------------------------------- queries

    def model_names(self) -> list[str]:
        """Names of the registered models that creditops created, sorted."""
        with self._op("listing models"):
            models = _all_pages(
                lambda token: self._client.search_registered_models(
                    max_results=1000, page_token=token
                )
            )
        return sorted(m.name for m in models if m.tags.get(MANAGED_TAG) == "true")

    def list_versions(self, name: str | None = None) -> list[VersionInfo]:
        """Versions of ``name`` (or of every creditops model when None), newest first."""
        names = [_check_name(name)] if name is not None else self.model_names()
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
        return self._info(self._resolve(_check_name(name), ref), {})

    def find_alias(self, name: str, alias: str) -> VersionInfo | None:
        """The version ``alias`` points at, or None when the alias is not set."""
        name, alias = _check_name(name), _check_alias(alias)
        try:
            return self._info(self._resolve(name, alias), {})
        except ModelVersionNotFoundError:
            return None

    # ----------------------------------------------------------------- updates

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` at ``version`` (which must exist); moves it if already set."""
        name, alias = _check_name(name), _check_alias(alias)
        target = self._resolve(name, _check_version(name, version))
        with self._op(f"setting alias {alias!r} of {name}"):
            self._client.set_registered_model_alias(name, alias, str(target.version))

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias``; raises ModelVersionNotFoundError when it is not set."""
        name, alias = _check_name(name), _check_alias(alias)
        self._resolve(name, alias)
        with self._op(f"deleting alias {alias!r} of {name}"):
            self._client.delete_registered_model_alias(name, alias)

    def set_version_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        name = _check_name(name)
        target = self._resolve(name, _check_version(name, version))
        with self._op(f"tagging {name} version {target.version}"):
            for key, value in tags.items():
                self._client.set_model_version_tag(
                    name, str(target.version), key, _truncate(str(value), _MAX_TAG_LEN)
                )

    def log_version_artifact(
        self, name: str, version: str, local_path: Path, artifact_dir: str
    ) -> str:
        """Add a file (e.g. a report) to the run of a version; returns its artifact path."""
        target = self._resolve(_check_name(name), _check_version(name, version))
        if not local_path.is_file():
            raise InvalidInputError(f"{local_path} is not a file", field="artifact")
        if not target.run_id:
            raise NotFoundError(f"{name} version {target.version} has no MLflow run")
        sub_path = f"{artifact_dir.strip('/')}/{local_path.name}".lstrip("/")
        with (
            self._op(f"logging {sub_path} for {name} version {target.version}"),
            tempfile.TemporaryDirectory(prefix="creditops-artifact-") as tmp,
        ):
            self._log_file(target.run_id, local_path, sub_path, Path(tmp))
        return sub_path

    # ----------------------------------------------------------------- downloads

    def download_bundle(self, name: str, ref: str, dst_dir: Path) -> Path:
        """Download ``bundle.json`` of a version and verify it against its recorded hash."""
        info = self.get_version(name, ref)
        expected = info.tags.get(BUNDLE_SHA_TAG, "")
        if not expected:
            raise IntegrityError(
                f"{info.name} version {info.version} has no {BUNDLE_SHA_TAG} tag; "
                "its bundle cannot be verified"
            )
        path = self._download(info, BUNDLE_ARTIFACT, dst_dir)
        actual = _sha256_file(path)
        if actual != expected:
            path.unlink(missing_ok=True)  # never leave a tampered bundle in a cache
            raise IntegrityError(
                f"bundle of model {info.name!r} version {info.version} is corrupt or was "
                f"modified: expected sha256 {expected}, got {actual}"
            )
        return path

    def download_artifact(self, name: str, ref: str, artifact_path: str, dst_dir: Path) -> Path:
        """Download one artifact (file or directory) of a version's run into ``dst_dir``."""
        return self._download(self.get_version(name, ref), artifact_path, dst_dir)

    def _download(self, info: VersionInfo, artifact_path: str, dst_dir: Path) -> Path:
        artifact_path = _check_artifact_path(artifact_path)
        if not info.run_id:
            raise NotFoundError(f"{info.name} version {info.version} has no MLflow run")
        dst_dir.mkdir(parents=True, exist_ok=True)
        what = f"{info.name} version {info.version} artifact {artifact_path!r}"
        with self._op(f"downloading {what}", download=True):
            local = self._client.download_artifacts(info.run_id, artifact_path, str(dst_dir))
        return Path(local)

    # ----------------------------------------------------------------- internals

    @property
    def _client(self) -> MlflowClient:
        """The MLflow client, created (and the store initialised) on first use."""
        with self._client_lock:
            if self._client_obj is None:
                self._client_obj = self._make_client()
            return self._client_obj

    def _make_client(self) -> MlflowClient:
        for logger_name in _NOISY_LOGGERS:  # schema migrations log at INFO on a new db
            noisy = logging.getLogger(logger_name)
            if noisy.level == logging.NOTSET:
                noisy.setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from mlflow.tracking import MlflowClient

            try:
                return MlflowClient(tracking_uri=self._uri, registry_uri=self._uri)
            except Exception as exc:
                message = getattr(exc, "message", None) or str(exc)
                raise ConfigError(
                    f"cannot use MLflow store {self._uri!r}: {message}", field="mlflow_uri"
                ) from exc

    @contextlib.contextmanager
    def _op(self, what: str, *, download: bool = False) -> Iterator[None]:
        """Run MLflow calls with creditops errors and a quiet, well-aimed environment."""
        overrides: dict[str, str] = {}
        if download and "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ:
            overrides["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        if self._scheme == "file":
            # MLflow's file registry store reads versions through a default MlflowClient(),
            # which would otherwise create ./mlflow.db in the working directory.
            overrides["MLFLOW_TRACKING_URI"] = self._uri
        with _scoped_env(overrides):
            try:
                yield
            except CreditopsError:
                raise
            except Exception as exc:
                from mlflow.exceptions import MlflowException

                if not isinstance(exc, MlflowException):
                    raise
                raise _translate(exc, what) from exc

    def _experiment_id(self, experiment: str) -> str:
        from mlflow.exceptions import MlflowException

        client = self._client
        found = client.get_experiment_by_name(experiment)
        if found is None:
            location = None
            if self._artifact_root is not None and self._scheme in _DB_SCHEMES:
                slug = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._") or "default"
                location = f"{self._artifact_root.resolve().as_uri()}/{slug}"
            try:
                return client.create_experiment(experiment, artifact_location=location)
            except MlflowException as exc:  # created concurrently by another process
                found = client.get_experiment_by_name(experiment)
                if found is None:
                    raise
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
        if found.lifecycle_stage != "active":
            raise ConfigError(
                f"MLflow experiment {experiment!r} is deleted; restore it or permanently "
                "delete it (mlflow gc) before registering",
                field="experiment",
            )
        return str(found.experiment_id)

    def _require_model(self, name: str) -> dict[str, tuple[str, ...]]:
        """Raise ModelNotFoundError unless ``name`` exists; returns version -> aliases."""
        with self._op(f"reading model {name!r}"):
            try:
                model = self._client.get_registered_model(name)
            except Exception as exc:
                if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
                    raise ModelNotFoundError(name) from exc
                raise
        by_version: dict[str, list[str]] = {}
        for alias, version in sorted(dict(model.aliases or {}).items()):
            by_version.setdefault(str(version), []).append(alias)
        return {version: tuple(aliases) for version, aliases in by_version.items()}

    def _versions(self, name: str) -> list[ModelVersion]:
        with self._op(f"listing versions of {name!r}"):
            return _all_pages(
                lambda token: self._client.search_model_versions(
                    filter_string=f"name = '{name}'", page_token=token
                )
            )

    def _resolve(self, name: str, ref: str) -> ModelVersion:
        """The model version a reference points at (version number, ``latest`` or alias)."""
        ref = _check_ref(name, ref)
        self._require_model(name)
        if ref == LATEST:
            versions = self._versions(name)
            if not versions:
                raise ModelVersionNotFoundError(name, ref)
            ref = str(max(int(v.version) for v in versions))  # re-read below for aliases
        with self._op(f"reading {name} {ref!r}"):
            try:
                if ref.isdigit():
                    return self._client.get_model_version(name, ref)
                return self._client.get_model_version_by_alias(name, ref)
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
            with self._op(f"reading run {run_id}"):
                try:
                    run_metrics[run_id] = dict(self._client.get_run(run_id).data.metrics)
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


# --------------------------------------------------------------------- helpers


def _scheme(uri: str) -> str:
    scheme = urlparse(uri).scheme.lower()
    if scheme in ("", "file") or len(scheme) == 1:  # plain path (or a Windows drive)
        return "file"
    return scheme.split("+", 1)[0]  # postgresql+psycopg2 -> postgresql


def _default_artifact_root(uri: str, given: Path | None) -> Path | None:
    """Artifacts of a database store go next to a SQLite file unless a root is given.

    Without an explicit ``artifact_location`` MLflow would put them under ``./mlruns`` of
    whatever the working directory happens to be.
    """
    if given is not None:
        return given.expanduser()
    scheme = _scheme(uri)
    if scheme == "sqlite":
        db = uri.split(":///", 1)[1].split("?", 1)[0] if ":///" in uri else ""
        if db and db != ":memory:":
            return Path(db).expanduser().resolve().parent / "mlartifacts"
    if scheme in _DB_SCHEMES:
        raise ConfigError(
            f"MLflow store {uri!r} is a database: give an artifact root for its artifacts",
            field="mlflow_uri",
        )
    return None


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidInputError(
            f"invalid model name {name!r}: use 1-64 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit",
            field="name",
        )
    return name


def _check_alias(alias: str) -> str:
    if not _ALIAS_RE.match(alias) or alias.lower() == LATEST or _VERSION_ALIAS_RE.match(alias):
        raise InvalidInputError(
            f"invalid alias {alias!r}: use letters, digits, '-' or '_', starting with a letter "
            "('latest' and 'v<number>' are reserved)",
            field="alias",
        )
    return alias


def _check_version(name: str, version: str) -> str:
    version = str(version).strip()
    if not version.isdigit():
        raise InvalidInputError(
            f"invalid version {version!r} of {name}: expected a number", field="version"
        )
    return str(int(version))


def _check_ref(name: str, ref: str) -> str:
    ref = str(ref).strip()
    if ref.isdigit():
        return str(int(ref))
    if ref.lower() == LATEST:
        return LATEST
    if not _ALIAS_RE.match(ref):
        raise InvalidInputError(
            f"invalid reference {ref!r} to a version of {name}: give a version number or an alias",
            field="version",
        )
    return ref


def _check_artifact_path(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or ".." in parts or "\\" in path:
        raise InvalidInputError(f"invalid artifact path {path!r}", field="artifact")
    return "/".join(parts)


def _check_registration_files(request: RegistrationRequest) -> None:
    if not request.bundle_path.is_file():
        raise InvalidInputError(f"bundle file {request.bundle_path} does not exist", field="bundle")
    actual = _sha256_file(request.bundle_path)
    if actual != request.bundle_sha256:
        raise IntegrityError(
            f"bundle {request.bundle_path} has sha256 {actual}, not the declared "
            f"{request.bundle_sha256}"
        )
    tagged = request.tags.get(BUNDLE_SHA_TAG)
    if tagged is not None and tagged != request.bundle_sha256:
        raise InvalidInputError(
            f"tag {BUNDLE_SHA_TAG}={tagged} contradicts the bundle's sha256", field="tags"
        )
    for sub_path, local in request.artifacts.items():
        _check_artifact_path(sub_path)
        if not local.is_file():
            raise InvalidInputError(f"artifact file {local} does not exist", field="artifacts")


def _translate(exc: Any, what: str) -> CreditopsError:
    code = getattr(exc, "error_code", "")
    message = f"{what}: {getattr(exc, 'message', None) or exc}"
    if code == "RESOURCE_DOES_NOT_EXIST":
        return NotFoundError(message)
    if code in ("INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST"):
        return InvalidInputError(message)
    return CreditopsError(f"MLflow error while {message}")


def _all_pages(fetch: Callable[[str | None], Any]) -> list[Any]:
    items: list[Any] = []
    token: str | None = None
    while True:
        page = fetch(token)
        items.extend(page)
        token = page.token
        if not token:
            return items


@contextlib.contextmanager
def _scoped_env(overrides: Mapping[str, str]) -> Iterator[None]:
    if not overrides:
        yield
        return
    with _ENV_LOCK:
        saved = {key: os.environ.get(key) for key in overrides}
        os.environ.update(overrides)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _truncate(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - len(_TRUNCATED)] + _TRUNCATED


def _truncated_tags(tags: Mapping[str, str]) -> dict[str, str]:
    return {k: _truncate(str(v), _MAX_TAG_LEN) for k, v in tags.items()}


def _finite(value: float) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
