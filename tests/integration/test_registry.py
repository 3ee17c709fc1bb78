"""The MLflow registry adapter against real MLflow stores (SQLite, and a file store).

Read-only tests share one module-scoped SQLite store (fresh databases cost 1-2 s of schema
migrations each); tests that change aliases, tags or artifacts register their own model in
it, and the tests about store setup (default artifact root, working directory, file store)
each get a fresh store.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest
from mlflow.tracking import MlflowClient

from creditops.errors import (
    ConfigError,
    IntegrityError,
    InvalidInputError,
    ModelNotFoundError,
    ModelVersionNotFoundError,
    NotFoundError,
)
from creditops.registry.mlflow_registry import ModelRegistry
from creditops.registry.records import RegisteredVersion, RegistrationRequest

pytestmark = pytest.mark.integration

NAME = "pd-retail"
OTHER = "pd-cards"
LINEAGE = {"data_sha256": "d" * 64, "spec_sha256": "e" * 64, "git_commit": "abc123"}
_counter = itertools.count()


def _write_bundle(folder: Path, label: str) -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"bundle-{label}.json"  # deliberately not named bundle.json
    data = json.dumps({"format": 1, "label": label}, sort_keys=True).encode()
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _request(
    name: str,
    folder: Path,
    label: str,
    *,
    metrics: dict[str, float] | None = None,
    params: dict[str, str | int | float] | None = None,
    **overrides: object,
) -> RegistrationRequest:
    bundle, sha = _write_bundle(folder, f"{name}-{label}")
    report = folder / f"report-{name}-{label}.html"
    report.write_text(f"<html>{name} {label}</html>")
    spec = folder / f"spec-{name}-{label}.yml"
    spec.write_text(f"target: default  # {label}\n")
    fields: dict[str, object] = {
        "name": name,
        "bundle_path": bundle,
        "bundle_sha256": sha,
        "params": params if params is not None else {"seed": 7},
        "metrics": metrics if metrics is not None else {"auc": 0.7},
        "tags": {**LINEAGE, "algorithm": "lightgbm"},
        "artifacts": {"reports/evaluation.html": report, "spec/spec.yaml": spec},
        "description": f"{name} {label}",
    }
    fields.update(overrides)
    return RegistrationRequest(**fields)  # type: ignore[arg-type]


def _local_path(artifact_uri: str) -> Path:
    return Path(url2pathname(urlparse(artifact_uri).path))


@dataclass
class Shared:
    registry: ModelRegistry
    home: Path
    artifact_root: Path
    v1: RegisteredVersion
    v2: RegisteredVersion
    cards: RegisteredVersion
    started: datetime


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    home = tmp_path_factory.mktemp("shared")
    root = home / "explicit-artifacts"
    registry = ModelRegistry(f"sqlite:///{home / 'mlflow.db'}", artifact_root=root)
    started = datetime.now(UTC)
    v1 = registry.register(
        _request(
            NAME,
            home / "in",
            "v1",
            metrics={"auc": 0.71, "gini": 0.42, "nan_metric": math.nan, "inf_metric": math.inf},
            params={"seed": 7, "share": 0.25, "long": "x" * 7000},
        )
    )
    v2 = registry.register(_request(NAME, home / "in", "v2", metrics={"auc": 0.74}))
    cards = registry.register(_request(OTHER, home / "in", "v1"))
    registry.set_alias(NAME, "production", "1")
    registry.set_alias(NAME, "staging", "2")
    return Shared(registry, home, root, v1, v2, cards, started)


@pytest.fixture
def fresh(shared: Shared) -> Iterator[str]:
    """A model of its own (two versions) in the shared store, for tests that change it."""
    name = f"tmp-{next(_counter)}"
    for label in ("v1", "v2"):
        shared.registry.register(_request(name, shared.home / "in", label))
    yield name


# ------------------------------------------------------------------ registration


def test_register_returns_version_uri_and_stores_files_under_artifact_root(
    shared: Shared,
) -> None:
    assert (shared.v1.name, shared.v1.version, shared.v2.version) == (NAME, "1", "2")
    assert shared.v2.model_uri == f"models:/{NAME}/2"
    assert shared.cards.version == "1"
    run_dir = _local_path(shared.v1.artifact_uri)
    assert run_dir.is_relative_to(shared.artifact_root.resolve())
    stored = (run_dir / "bundle" / "bundle.json").read_bytes()
    assert json.loads(stored) == {"format": 1, "label": f"{NAME}-v1"}
    assert (run_dir / "spec" / "spec.yaml").read_text() == "target: default  # v1\n"


def test_run_is_finished_with_params_tags_and_finite_metrics(shared: Shared) -> None:
    client = MlflowClient(tracking_uri=shared.registry.tracking_uri)
    run = client.get_run(shared.v1.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == f"{NAME}-train"
    assert run.data.params["seed"] == "7"
    assert run.data.params["share"] == "0.25"
    long = run.data.params["long"]
    assert len(long) <= 6000 and long.startswith("x" * 5000)
    assert run.data.metrics == {"auc": 0.71, "gini": 0.42}
    for key, value in LINEAGE.items():
        assert run.data.tags[key] == value
    expected_sha = hashlib.sha256((shared.home / "in" / f"bundle-{NAME}-v1.json").read_bytes())
    assert run.data.tags["bundle_sha256"] == expected_sha.hexdigest()
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == f"creditops/{NAME}"


def test_version_info_carries_tags_metrics_and_creation_time(shared: Shared) -> None:
    info = shared.registry.get_version(NAME, "1")
    assert info.run_id == shared.v1.run_id
    assert info.metrics == {"auc": 0.71, "gini": 0.42}  # NaN and inf were skipped
    assert {k: info.tags[k] for k in LINEAGE} == LINEAGE
    assert info.tags["algorithm"] == "lightgbm"
    bundle = shared.home / "in" / f"bundle-{NAME}-v1.json"
    assert info.tags["bundle_sha256"] == hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert info.description == f"{NAME} v1"
    assert info.created_at.tzinfo is not None
    assert info.created_at.utcoffset() == timedelta(0)
    assert shared.started - timedelta(seconds=1) <= info.created_at <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("ref", "version", "aliases"),
    [
        ("1", "1", ("production",)),
        ("01", "1", ("production",)),
        ("2", "2", ("staging",)),
        ("production", "1", ("production",)),
        ("staging", "2", ("staging",)),
        ("latest", "2", ("staging",)),
    ],
    ids=["number", "leading-zero", "number-2", "production", "staging", "latest"],
)
def test_get_version_by_number_alias_or_latest(
    shared: Shared, ref: str, version: str, aliases: tuple[str, ...]
) -> None:
    info = shared.registry.get_version(NAME, ref)
    assert (info.name, info.version, info.aliases) == (NAME, version, aliases)


def test_list_versions_newest_first_with_aliases(shared: Shared) -> None:
    versions = shared.registry.list_versions(NAME)
    assert [(v.version, v.aliases) for v in versions] == [
        ("2", ("staging",)),
        ("1", ("production",)),
    ]
    assert versions[1].metrics == {"auc": 0.71, "gini": 0.42}

    everything = shared.registry.list_versions()
    ours = [(v.name, v.version) for v in everything if v.name in (NAME, OTHER)]
    assert ours == [(OTHER, "1"), (NAME, "2"), (NAME, "1")]
    stamps = [v.created_at for v in everything]
    assert stamps == sorted(stamps, reverse=True)


def test_model_names_only_lists_creditops_models(shared: Shared) -> None:
    client = MlflowClient(tracking_uri=shared.registry.tracking_uri)
    client.create_registered_model("someone-elses-model")
    names = shared.registry.model_names()
    assert {NAME, OTHER} <= set(names)
    assert "someone-elses-model" not in names
    assert names == sorted(names)
    assert all(v.name != "someone-elses-model" for v in shared.registry.list_versions())


# ------------------------------------------------------------------ downloads


def test_download_bundle_by_version_and_by_alias_gives_identical_verified_bytes(
    shared: Shared, tmp_path: Path
) -> None:
    by_version = shared.registry.download_bundle(NAME, "1", tmp_path / "a")
    by_alias = shared.registry.download_bundle(NAME, "production", tmp_path / "b")
    assert by_version.name == by_alias.name == "bundle.json"
    assert by_version.read_bytes() == by_alias.read_bytes()
    original = (shared.home / "in" / f"bundle-{NAME}-v1.json").read_bytes()
    assert by_version.read_bytes() == original
    staging = shared.registry.download_bundle(NAME, "staging", tmp_path / "c")
    assert staging.read_bytes() != original


def test_download_artifact_returns_the_logged_file(shared: Shared, tmp_path: Path) -> None:
    report = shared.registry.download_artifact(NAME, "2", "reports/evaluation.html", tmp_path)
    assert report.read_text() == f"<html>{NAME} v2</html>"
    spec = shared.registry.download_artifact(NAME, "staging", "spec/spec.yaml", tmp_path / "s")
    assert spec.name == "spec.yaml"
    assert spec.read_text() == "target: default  # v2\n"


@pytest.mark.parametrize(
    ("artifact", "error"),
    [
        ("reports/missing.html", NotFoundError),
        ("../outside.txt", InvalidInputError),
        ("/etc/passwd", InvalidInputError),
        ("", InvalidInputError),
    ],
    ids=["missing", "parent-dir", "absolute", "empty"],
)
def test_download_artifact_rejects_missing_or_unsafe_paths(
    shared: Shared, tmp_path: Path, artifact: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        shared.registry.download_artifact(NAME, "1", artifact, tmp_path)


def test_tampered_bundle_raises_integrity_error_naming_hashes(
    shared: Shared, fresh: str, tmp_path: Path
) -> None:
    info = shared.registry.get_version(fresh, "1")
    stored = _local_path(_artifact_uri(shared, info.run_id)) / "bundle" / "bundle.json"
    assert stored.is_relative_to(shared.artifact_root.resolve())
    expected = info.tags["bundle_sha256"]
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == expected
    with stored.open("ab") as fh:
        fh.write(b" ")
    actual = hashlib.sha256(stored.read_bytes()).hexdigest()

    with pytest.raises(IntegrityError) as caught:
        shared.registry.download_bundle(fresh, "1", tmp_path)
    message = str(caught.value)
    assert fresh in message and "version 1" in message
    assert expected in message and actual in message
    assert not (tmp_path / "bundle.json").exists()  # the corrupt copy is not left behind
    assert shared.registry.download_bundle(fresh, "2", tmp_path / "ok").is_file()


def test_wrong_recorded_hash_raises_integrity_error(
    shared: Shared, fresh: str, tmp_path: Path
) -> None:
    shared.registry.set_version_tags(fresh, "2", {"bundle_sha256": "0" * 64})
    with pytest.raises(IntegrityError, match="0" * 64):
        shared.registry.download_bundle(fresh, "2", tmp_path)


def _artifact_uri(shared: Shared, run_id: str) -> str:
    client = MlflowClient(tracking_uri=shared.registry.tracking_uri)
    return str(client.get_run(run_id).info.artifact_uri)


# ------------------------------------------------------------------ aliases and tags


def test_alias_set_move_find_and_delete(shared: Shared, fresh: str) -> None:
    registry = shared.registry
    assert registry.find_alias(fresh, "staging") is None
    registry.set_alias(fresh, "staging", "1")
    found = registry.find_alias(fresh, "staging")
    assert found is not None and found.version == "1"

    registry.set_alias(fresh, "staging", "2")  # move
    found = registry.find_alias(fresh, "staging")
    assert found is not None and found.version == "2"
    assert registry.get_version(fresh, "1").aliases == ()
    assert [v.aliases for v in registry.list_versions(fresh)] == [("staging",), ()]

    registry.delete_alias(fresh, "staging")
    assert registry.find_alias(fresh, "staging") is None
    with pytest.raises(ModelVersionNotFoundError):
        registry.get_version(fresh, "staging")
    with pytest.raises(ModelVersionNotFoundError):
        registry.delete_alias(fresh, "staging")


def test_set_version_tags_changes_only_that_version(shared: Shared, fresh: str) -> None:
    shared.registry.set_version_tags(fresh, "1", {"gate_passed": "true", "gate_profile": "x"})
    one = shared.registry.get_version(fresh, "1")
    two = shared.registry.get_version(fresh, "2")
    assert (one.tags["gate_passed"], one.tags["gate_profile"]) == ("true", "x")
    assert "gate_passed" not in two.tags
    assert one.tags["data_sha256"] == LINEAGE["data_sha256"]  # earlier tags are kept


def test_log_version_artifact_adds_a_downloadable_file(
    shared: Shared, fresh: str, tmp_path: Path
) -> None:
    report = tmp_path / "validation-default.html"
    report.write_text("<html>gate</html>")
    path = shared.registry.log_version_artifact(fresh, "2", report, "reports")
    assert path == "reports/validation-default.html"
    back = shared.registry.download_artifact(fresh, "2", path, tmp_path / "dl")
    assert back.read_text() == "<html>gate</html>"


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda r: r.get_version("no-such-model", "1"), ModelNotFoundError),
        (lambda r: r.get_version(NAME, "99"), ModelVersionNotFoundError),
        (lambda r: r.get_version(NAME, "champion"), ModelVersionNotFoundError),
        (lambda r: r.get_version("no-such-model", "latest"), ModelNotFoundError),
        (lambda r: r.list_versions("no-such-model"), ModelNotFoundError),
        (lambda r: r.find_alias("no-such-model", "production"), ModelNotFoundError),
        (lambda r: r.set_alias(NAME, "staging", "99"), ModelVersionNotFoundError),
        (lambda r: r.set_version_tags(NAME, "99", {"a": "b"}), ModelVersionNotFoundError),
        (lambda r: r.download_bundle(NAME, "99", Path("unused")), ModelVersionNotFoundError),
        (lambda r: r.download_bundle(NAME, "champion", Path("x")), ModelVersionNotFoundError),
        (lambda r: r.get_version(NAME, "bad ref!"), InvalidInputError),
        (lambda r: r.set_alias(NAME, "latest", "1"), InvalidInputError),
        (lambda r: r.set_alias(NAME, "v2", "1"), InvalidInputError),
        (lambda r: r.set_alias(NAME, "pro duction", "1"), InvalidInputError),
        (lambda r: r.set_alias(NAME, "staging", "two"), InvalidInputError),
    ],
    ids=[
        "unknown-model",
        "unknown-version",
        "unknown-alias",
        "latest-of-unknown-model",
        "list-unknown-model",
        "find-alias-unknown-model",
        "alias-to-unknown-version",
        "tag-unknown-version",
        "download-unknown-version",
        "download-unknown-alias",
        "malformed-ref",
        "reserved-alias-latest",
        "reserved-alias-version",
        "alias-with-space",
        "non-numeric-version",
    ],
)
def test_errors(shared: Shared, call: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        call(shared.registry)  # type: ignore[operator]
    assert shared.registry.find_alias(NAME, "staging") is not None  # nothing was moved


def test_find_alias_of_unset_alias_is_none(shared: Shared) -> None:
    assert shared.registry.find_alias(NAME, "champion") is None


@pytest.mark.parametrize(
    "name",
    ["", "a/b", "a b", "x" * 65, "..", "-lead", "naïve", "a:b", "models:/x"],
    ids=[
        "empty",
        "slash",
        "space",
        "too-long",
        "dots",
        "leading-dash",
        "non-ascii",
        "colon",
        "uri",
    ],
)
def test_invalid_model_names_are_rejected(shared: Shared, name: str) -> None:
    with pytest.raises(InvalidInputError):
        shared.registry.get_version(name, "1")
    with pytest.raises(InvalidInputError):
        shared.registry.register(replace(_request(NAME, shared.home / "bad", "v1"), name=name))


def test_longest_valid_name_is_accepted(shared: Shared) -> None:
    with pytest.raises(ModelNotFoundError):  # valid, just not registered
        shared.registry.get_version("a.b_c-" + "x" * 58, "1")


def test_register_refuses_a_bundle_that_does_not_match_its_hash(shared: Shared) -> None:
    request = _request("hash-mismatch", shared.home / "in", "v1", bundle_sha256="f" * 64)
    with pytest.raises(IntegrityError):
        shared.registry.register(request)
    with pytest.raises(ModelNotFoundError):
        shared.registry.get_version("hash-mismatch", "1")


@pytest.mark.parametrize(
    "artifacts",
    [{"reports/x.html": Path("/does/not/exist.html")}, {"../evil.txt": Path(__file__)}],
    ids=["missing-file", "escaping-path"],
)
def test_register_validates_artifacts_before_logging(
    shared: Shared, artifacts: dict[str, Path]
) -> None:
    request = _request("bad-artifacts", shared.home / "in", "v1", artifacts=artifacts)
    with pytest.raises(InvalidInputError):
        shared.registry.register(request)
    client = MlflowClient(tracking_uri=shared.registry.tracking_uri)
    assert client.get_experiment_by_name("creditops/bad-artifacts") is None


def test_failure_while_logging_marks_the_run_failed_and_registers_nothing(shared: Shared) -> None:
    request = _request("failing", shared.home / "in", "v1", params={"bad key!": 1})
    with pytest.raises(InvalidInputError):
        shared.registry.register(request)
    client = MlflowClient(tracking_uri=shared.registry.tracking_uri)
    experiment = client.get_experiment_by_name("creditops/failing")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    with pytest.raises(ModelNotFoundError):
        shared.registry.get_version("failing", "latest")


@pytest.mark.parametrize(
    "uri",
    ["", "postgresql://user@localhost/mlflow"],
    ids=["empty", "database-without-artifact-root"],
)
def test_unusable_configuration_is_a_config_error(uri: str) -> None:
    with pytest.raises(ConfigError):
        ModelRegistry(uri)


# ------------------------------------------------------------------ fresh stores


def _roundtrip(registry: ModelRegistry, inputs: Path, out: Path) -> None:
    """Register two versions, promote one, and read everything back."""
    first = registry.register(_request("fresh", inputs, "v1", metrics={"auc": 0.8}))
    registry.register(_request("fresh", inputs, "v2"))
    registry.set_alias("fresh", "production", first.version)
    assert [v.version for v in registry.list_versions("fresh")] == ["2", "1"]
    assert registry.get_version("fresh", "production").metrics == {"auc": 0.8}
    bundle = registry.download_bundle("fresh", "production", out / "bundle")
    assert bundle.read_bytes() == (inputs / "bundle-fresh-v1.json").read_bytes()
    report = registry.download_artifact("fresh", "2", "reports/evaluation.html", out / "r")
    assert report.read_text() == "<html>fresh v2</html>"
    assert registry.model_names() == ["fresh"]
    assert registry.find_alias("fresh", "staging") is None
    with pytest.raises(ModelVersionNotFoundError):
        registry.get_version("fresh", "3")
    with pytest.raises(ModelNotFoundError):
        registry.get_version("other", "1")


def test_fresh_sqlite_store_writes_nothing_to_cwd_and_is_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    home = tmp_path / "home"
    home.mkdir()
    registry = ModelRegistry(f"sqlite:///{home / 'mlflow.db'}")  # default artifact root
    _roundtrip(registry, tmp_path / "in", tmp_path / "out")

    assert list(cwd.iterdir()) == []
    stored = list((home / "mlartifacts").rglob("bundle.json"))
    assert len(stored) == 2
    err = capfd.readouterr().err
    assert "Creating initial MLflow database tables" not in err
    assert "Downloading artifacts" not in err


def test_file_store_refused_without_mlflow_opt_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    registry = ModelRegistry((tmp_path / "fs").as_uri())
    with pytest.raises(ConfigError, match="fs"):
        registry.model_names()


def test_file_store_roundtrip_when_opted_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MLflow 3 keeps the file store in maintenance mode behind MLFLOW_ALLOW_FILE_STORE.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    registry = ModelRegistry((tmp_path / "fs").as_uri())
    try:
        registry.model_names()
    except ConfigError as exc:
        pytest.skip(f"MLflow refuses file stores even when opted in: {exc}")
    _roundtrip(registry, tmp_path / "in", tmp_path / "out")
    assert list(cwd.iterdir()) == []
    assert "MLFLOW_TRACKING_URI" not in os.environ  # the scoped override was undone
