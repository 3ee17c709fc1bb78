"""The MLflow store behind a registry: URI scheme, artifact root, client and error handling.

creditops uses one ``MlflowClient(tracking_uri=..., registry_uri=...)`` per
:class:`~creditops.registry.mlflow_registry.ModelRegistry` and never the fluent API
(``mlflow.set_tracking_uri``, ``mlflow.start_run``), so several registries with different
stores can live in one process. MLflow is imported lazily: constructing a registry costs
nothing until the first call that needs the store.

:class:`MlflowStore` holds that client and :meth:`MlflowStore.op`, the context every MLflow
call runs in. The registry that uses it is in :mod:`creditops.registry.mlflow_registry`; run
logging in :mod:`creditops.registry.tracking`; bundle downloads in
:mod:`creditops.registry.bundles`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from creditops.errors import ConfigError, CreditopsError, InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_NOISY_LOGGERS = ("mlflow.store.db.utils", "alembic")

# Environment overrides are process-wide, so changes are serialised and always undone.
_ENV_LOCK = threading.RLock()


class MlflowStore:
    """One tracking/registry URI and its lazily created MLflow client."""

    def __init__(self, uri: str, artifact_root: Path | None) -> None:
        self.uri = uri
        self.scheme = _scheme(uri)
        self.artifact_root = _default_artifact_root(uri, artifact_root)
        self._client_obj: MlflowClient | None = None
        self._client_lock = threading.Lock()

    @property
    def client(self) -> MlflowClient:
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
                return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
            except Exception as exc:
                message = getattr(exc, "message", None) or str(exc)
                raise ConfigError(
                    f"cannot use MLflow store {self.uri!r}: {message}", field="mlflow_uri"
                ) from exc

    @contextlib.contextmanager
    def op(self, what: str, *, download: bool = False, aimed: bool = False) -> Iterator[None]:
        """Run MLflow calls with creditops errors and a quiet, well-aimed environment.

        ``aimed`` points MLflow's process-wide default client at this store too: its SQL
        registry resolves a ``models:/<model_id>`` version source through that client."""
        overrides: dict[str, str] = {}
        if download and "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ:
            overrides["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        if self.scheme == "file" or aimed:
            # MLflow's file registry store reads versions through a default MlflowClient(),
            # which would otherwise create ./mlflow.db in the working directory.
            overrides["MLFLOW_TRACKING_URI"] = self.uri
        with scoped_env(overrides):
            try:
                yield
            except CreditopsError:
                raise
            except Exception as exc:
                from mlflow.exceptions import MlflowException

                if not isinstance(exc, MlflowException):
                    raise
                raise _translate(exc, what) from exc


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Silence what MLflow says while it saves a model or profiles a dataset: INFO and
    WARNING lines about type hints, pickling and example validation, and UserWarnings about
    schemas, none of which concerns a creditops user. Errors still show."""
    logger = logging.getLogger("mlflow")
    with _ENV_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)


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
    if scheme in DB_SCHEMES:
        raise ConfigError(
            f"MLflow store {uri!r} is a database: give an artifact root for its artifacts",
            field="mlflow_uri",
        )
    return None


def _translate(exc: Any, what: str) -> CreditopsError:
    code = getattr(exc, "error_code", "")
    message = f"{what}: {getattr(exc, 'message', None) or exc}"
    if code == "RESOURCE_DOES_NOT_EXIST":
        return NotFoundError(message)
    if code in ("INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST"):
        return InvalidInputError(message)
    return CreditopsError(f"MLflow error while {message}")


@contextlib.contextmanager
def scoped_env(overrides: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block and restore them after (serialised: the
    environment is process-wide). Also used by the batch scorer's fork server start."""
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
