"""Implementation verification (issue 17): ``creditops replay`` against a REAL ``creditops
serve`` (uvicorn) process on 127.0.0.1.

The Taiwan demo model is trained twice into one CREDITOPS_HOME (versions 1 and 2) and
version 1 is put back in production, so every server of this module serves version 1 and
version 2 exists to be asked for. The expected row count comes from the data file (its
``_is_test`` rows), not from the code under test; the tampered run is a suspended model
(the service's kill switch), which turns every answer into a review.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from creditops.cli import app
from creditops.services.access import audit_entries
from creditops.services.context import AppContext
from creditops.services.model_versions import load_model, load_test_set, promote
from creditops.services.replay import replay
from creditops.services.scoring import scored_frame
from creditops.settings import Settings
from creditops.store.engine import create_db_engine, session_factory
from tests.factories import train_demo_model
from tests.integration.server_harness import (
    ApiKey,
    ServerProcess,
    create_key,
    free_port,
    run_cli,
    running_server,
    service_env,
)

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / "data"
MODEL = "taiwan"
SPLIT = pd.read_csv(DATA / "taiwan_credit_card.csv", usecols=["_is_test"])["_is_test"]
TEST_ROWS = int(SPLIT.sum())
FIELDS = {"version", "application_id", "pd", "score", "decision", "reasons"}
KEYS = {"predictor": ["predict"], "admin": ["admin"], "reader": ["read"]}


@dataclass(frozen=True)
class Service:
    server: ServerProcess
    home: Path
    database_url: str
    env: dict[str, str]
    keys: dict[str, ApiKey]

    @property
    def url(self) -> str:
        return self.server.base_url

    def key(self, name: str = "predictor") -> str:
        return self.keys[name].key

    def ctx(self) -> AppContext:
        return AppContext(Settings(home=self.home, mlflow_uri=None))

    def replays(self) -> list[dict[str, Any]]:
        """The audit trail's ``model.replay`` entries, newest first."""
        engine = create_db_engine(self.database_url)
        try:
            return audit_entries(session_factory(engine), 100, "model.replay")
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("replay")


@pytest.fixture(scope="module")
def home(workdir: Path) -> Path:
    """Versions 1 and 2 of the demo model; version 1 in production."""
    home = workdir / "home"
    assert train_demo_model(home, mlflow_uri=None) == "1"
    assert train_demo_model(home, mlflow_uri=None) == "2"
    ctx = AppContext(Settings(home=home, mlflow_uri=None))
    promote(ctx, MODEL, "1", "production", force=True, reason="test fixture", actor="tests")
    return home


@contextmanager
def serving(home: Path, workdir: Path, tag: str, **settings: str) -> Iterator[Service]:
    """A server on its own SQLite database, with a predict, an admin and a read-only key."""
    url = f"sqlite:///{workdir / f'{tag}.db'}"
    env = service_env(home, url)
    keys = {name: create_key(env, workdir, name, scopes) for name, scopes in KEYS.items()}
    with running_server(home, url, workdir / f"{tag}.log", extra_env=settings) as server:
        yield Service(server, home, url, env, keys)


@pytest.fixture(scope="module")
def service(home: Path, workdir: Path) -> Iterator[Service]:
    """The service as it ships: reasons for adverse decisions only, batches up to 1000."""
    with serving(home, workdir, "main") as svc:
        yield svc


@pytest.fixture()
def cli_env(service: Service, monkeypatch: pytest.MonkeyPatch) -> Service:
    """The in-process CLI's environment: the service's home and database, nothing else."""
    for name, value in service.env.items():
        if name.startswith("CREDITOPS_"):
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("CREDITOPS_MLFLOW_URI", raising=False)
    monkeypatch.delenv("CREDITOPS_API_KEY", raising=False)
    return service


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["replay", *args], terminal_width=200)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


# -- it passes on the served version ----------------------------------------------------------
def test_the_whole_test_split_is_served_as_developed(service: Service) -> None:
    result = replay(service.ctx(), MODEL, "1", service.url, service.key())
    assert result.passed, result.message
    assert result.test_rows == result.rows_selected == result.rows_compared == TEST_ROWS
    assert result.mismatches == dict.fromkeys(result.mismatches, 0)
    assert set(result.mismatches) == FIELDS
    assert result.mismatched_rows == 0 and result.examples == ()
    assert result.served_versions == {"1": TEST_ROWS}
    assert result.max_pd_relative_difference <= 1e-12
    # by default the service explains review and decline decisions only: the approvals it
    # answers without reasons are counted, not compared, and every other row is compared
    assert result.reasons_not_served > 0
    assert result.reasons_compared + result.reasons_not_served == TEST_ROWS
    assert result.started_at <= result.finished_at
    assert result.to_dict()["started_at"].endswith("Z")


def test_cli_json_on_the_real_server_is_recorded(service: Service) -> None:
    env = service.env | {"CREDITOPS_API_KEY": service.key()}
    args = ["replay", "--name", MODEL, "--version", "1", "--url", service.url]
    done = run_cli([*args, "--rows", "300", "--json"], env, cwd=service.home)
    payload = json.loads(done.stdout)
    assert payload["passed"] is True, payload["message"]
    assert (payload["rows_selected"], payload["rows_compared"]) == (300, 300)
    assert payload["test_rows"] == TEST_ROWS
    assert payload["mismatches"] == dict.fromkeys(FIELDS, 0)
    assert payload["examples"] == []
    assert payload["reasons"]["compared"] + payload["reasons"]["not_served"] == 300
    assert payload["started_at"].endswith("Z") and payload["finished_at"].endswith("Z")
    assert payload["seconds"] >= 0
    # the version's MLflow run holds the result and the metrics
    ctx = service.ctx()
    info = ctx.registry.get_version(MODEL, "1")
    assert info.metrics["replay_passed"] == 1.0
    assert info.metrics["replay_rows"] == 300.0
    artifact = payload["artifact"]
    assert artifact.startswith("replay/replay-") and artifact.endswith(".json")
    stored = json.loads(
        ctx.registry.download_artifact(MODEL, "1", artifact, service.home / "dl").read_text()
    )
    assert stored["passed"] is True and stored["rows_compared"] == 300
    # and the audit trail has the entry
    entry = service.replays()[0]
    assert (entry["target"], entry["outcome"]) == (f"{MODEL}:1", "ok")
    assert entry["actor"].startswith("cli:")
    assert entry["details"]["rows_compared"] == 300 and entry["details"]["passed"] is True


# -- it fails when the service answers differently --------------------------------------------
def test_another_served_version_fails_and_says_so(cli_env: Service) -> None:
    code, out, _ = invoke(
        "--name", MODEL, "--version", "2", "--url", cli_env.url, "--api-key", cli_env.key(),
        "--rows", "600", "--json",
    )  # fmt: skip
    assert code == 1
    payload = json.loads(out)
    assert payload["passed"] is False
    assert "answered with version 1, not 2" in payload["message"]
    assert payload["served_versions"] == {"1": payload["rows_compared"]}
    assert payload["mismatches"]["version"] == payload["rows_compared"]
    assert 0 < payload["rows_compared"] < 600  # stopped after the batch that showed it
    assert payload["examples"][0]["field"] == "version"
    assert (payload["examples"][0]["development"], payload["examples"][0]["served"]) == ("2", "1")
    entry = cli_env.replays()[0]
    assert (entry["target"], entry["outcome"]) == (f"{MODEL}:2", "error")
    assert entry["details"]["passed"] is False


@contextmanager
def suspended(service: Service) -> Iterator[None]:
    with service.server.client(service.key("admin")) as client:
        answer = client.post(f"/v1/models/{MODEL}/suspend", json={"reason": "replay test"})
        assert answer.status_code == 200, answer.text
        try:
            yield
        finally:
            answer = client.post(f"/v1/models/{MODEL}/resume", json={"reason": "done"})
            assert answer.status_code == 200, answer.text


def test_a_suspended_model_fails_with_counted_examples(cli_env: Service) -> None:
    rows = 300
    ctx = cli_env.ctx()
    loaded = load_model(ctx, MODEL, "1")
    developed = scored_frame(load_test_set(ctx, MODEL, "1").head(rows), loaded.model, MODEL, "1")
    not_review = int((developed["decision"] != "review").sum())
    assert 0 < not_review < rows
    with suspended(cli_env):
        result = replay(ctx, MODEL, "1", cli_env.url, cli_env.key(), rows=rows)
        code, out, err = invoke(
            "--name", MODEL, "--version", "1", "--url", cli_env.url, "--api-key", cli_env.key(),
            "--rows", "300",
        )  # fmt: skip
    assert not result.passed and result.rows_compared == rows
    # a suspended model answers review, with SUSPENDED first among the reasons, for everyone
    assert result.mismatches["decision"] == not_review
    assert result.mismatches["reasons"] == rows
    assert result.mismatches["pd"] == result.mismatches["score"] == 0
    assert result.mismatched_rows == rows
    assert len(result.examples) == 10
    for example in result.examples:
        if example.field == "decision":
            assert example.served == "review" and example.development != "review"
        else:
            assert example.field == "reasons" and example.served[0] == "SUSPENDED"
    # the CLI: one summary line, then the examples, exit 1
    assert code == 1 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith(f"replay of {MODEL} v1 against {cli_env.url} failed: 300 of 300")
    assert f"decision {not_review}" in lines[0] and "reasons 300" in lines[0]
    assert len(lines) == 11 and all(line.startswith("  row ") for line in lines[1:])


# -- settings that must not change the answers ------------------------------------------------
def test_all_reasons_and_small_batches_still_pass(home: Path, workdir: Path) -> None:
    """``reasons_for=all``: the approvals' reasons are compared too; ``max_batch=100``: the
    replay's batches of 250 are refused as too large and sent again in halves."""
    settings = {"CREDITOPS_SERVE__REASONS_FOR": "all", "CREDITOPS_SERVE__MAX_BATCH": "100"}
    with serving(home, workdir, "all-reasons", **settings) as svc:
        result = replay(svc.ctx(), MODEL, "1", svc.url, svc.key(), rows=600)
    assert result.passed, result.message
    assert (result.rows_compared, result.reasons_compared, result.reasons_not_served) == (
        600,
        600,
        0,
    )


# -- bad input: one line, exit 2 --------------------------------------------------------------
BAD_INPUT: dict[str, tuple[dict[str, str | None], str]] = {
    "unreachable": ({"--url": "http://127.0.0.1:{free}"}, "cannot reach the service at"),
    "not-a-url": ({"--url": "localhost:8000"}, "--url must be the service's base URL"),
    "wrong-key": ({"--api-key": "co_00000000_nope"}, "refused the API key (401"),
    "no-key": ({"--api-key": None}, "refused the API key (401"),
    "no-predict-scope": ({"--api-key": "{reader}"}, "it needs the predict scope"),
    "unknown-model": ({"--name": "nosuch"}, "Model 'nosuch' is not registered"),
}


@pytest.mark.parametrize(("changed", "said"), BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_one_line_and_exit_2(
    cli_env: Service, changed: dict[str, str | None], said: str
) -> None:
    options: dict[str, str | None] = {
        "--name": MODEL,
        "--version": "1",
        "--url": cli_env.url,
        "--api-key": cli_env.key(),
    } | changed
    fill = {"free": free_port(), "reader": cli_env.key("reader")}
    args = [x for k, v in options.items() if v is not None for x in (k, v.format(**fill))]
    before = len(cli_env.replays())
    code, out, err = invoke(*args)
    assert code == 2, (out, err)
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and said in err, err
    assert len(cli_env.replays()) == before  # nothing was replayed, nothing recorded
