"""A/B tests end to end, with a real server and worker: a stricter v2 against v1 on the
default rate among approved applicants, with the applicants' real outcomes reported back,
concludes for v2 before its maximum duration and promotes it through the deployment path;
the history endpoint answers for instants before, during, just before, at and after the
switch; the audit chain verifies; two identical versions end as "no difference"."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from creditops.services.context import AppContext
from creditops.services.training import TrainRequest, train_and_register
from creditops.settings import Settings
from tests.e2e.test_retraining_e2e import worker
from tests.factories import train_demo_model
from tests.integration.server_harness import creditops_command, running_server, service_env
from tests.integration.test_deployments_server import add_versions, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
DATA = Path(__file__).resolve().parents[2] / "data"
INTERVAL = "0.5"


def population() -> tuple[list[dict[str, Any]], list[bool]]:
    frame = pd.read_csv(DATA / "taiwan_credit_card.csv")
    defaulted = [bool(v) for v in frame["target"]]
    features = frame.drop(columns=["id", "target", "_is_test"]).to_dict(orient="records")
    return features, defaulted


def run_until_concluded(
    client: httpx.Client, experiment: str, start: int, count: int, with_outcomes: bool
) -> dict[str, Any]:
    """Send applicants (and their real outcomes) in chunks until the experiment ends."""
    features, defaulted = population()
    for chunk in range(start, start + count, 1000):
        rows = range(chunk, min(chunk + 1000, start + count))
        decided: list[dict[str, Any]] = []
        for part in (rows[:500], rows[500:]):
            body = {
                "applications": [
                    {"application_id": f"ab-{i}", "features": features[i]} for i in part
                ]
            }
            answer = client.post("/v1/models/taiwan/predict", json=body)
            assert answer.status_code == 200, answer.text
            decided += answer.json()["decisions"]
        if with_outcomes:
            outcomes = [
                {
                    "decision_id": d["decision_id"],
                    "defaulted": defaulted[int(d["application_id"][3:])],
                }
                for d in decided
            ]
            assert client.post("/v1/feedback", json={"outcomes": outcomes}).status_code == 200
        time.sleep(4 * float(INTERVAL))  # a look or more
        state = client.get(f"/v1/models/ab-tests/{experiment}").json()
        if state["state"] != "progressing":
            return state
    return client.get(f"/v1/models/ab-tests/{experiment}").json()


def history(client: httpx.Client, at: datetime) -> dict[str, Any]:
    answer = client.get("/v1/models/taiwan/history", params={"at": at.isoformat()})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def shares(found: dict[str, Any]) -> dict[str, float]:
    return {s["version"]: s["share"] for s in found["serving"]}


def test_an_ab_test_finds_the_better_model_and_promotes_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    train_demo_model(home, mlflow_uri=None)
    policy = yaml.safe_load((DATA / "policies/taiwan.yaml").read_text())
    policy.update(version="strict", approve_min_score=560)
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump(policy))
    ctx = AppContext(Settings(home=home))
    v2 = train_and_register(
        ctx,
        TrainRequest(
            spec_path=DATA / "specs/taiwan.yaml",
            data_path=DATA / "taiwan_credit_card.csv",
            name="taiwan",
            policy_path=strict,
        ),
    ).version
    ctx.registry.set_version_tags("taiwan", v2, {"gate_passed": "true"})
    url = f"sqlite:///{tmp_path / 'ab.db'}"
    env = service_env(
        home,
        url,
        CREDITOPS_SERVE__AUTH_ENABLED="false",
        CREDITOPS_SERVE__RELOAD_INTERVAL_S=INTERVAL,
        CREDITOPS_DEPLOY__EVALUATE_INTERVAL_S=INTERVAL,
        CREDITOPS_RETRAIN__TRIGGERS="[]",
        CREDITOPS_MONITOR__EVERY_PREDICTIONS="1000000",
    )
    with (
        running_server(home, url, tmp_path / "api.log", extra_env=env) as server,
        worker(env, tmp_path, tmp_path / "worker.log"),
        server.client() as client,
    ):
        # production as a user puts it there: through creditops, so the audit trail has it
        promoted = subprocess.run(
            [*creditops_command(), "models", "promote", "--name", "taiwan", "--version", "1",
             "--to", "production", "--force", "--reason", "the baseline"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert promoted.returncode == 0, promoted.stderr
        before = datetime.now(UTC)
        body = {
            "name": "taiwan",
            "treatment_version": v2,
            "metric": "default_rate",
            "mde": 0.03,
            # a stricter policy approves fewer applicants: that is the point, not a breach
            "guardrails": {"max_approval_rate_change": 1.0, "min_fairness_ratio": 0.0},
        }
        started = client.post("/v1/models/ab-test", json=body)
        assert started.status_code == 202, started.text
        experiment = started.json()["id"]
        wait_for(client, experiment, {"progressing"}, 30)
        time.sleep(3 * float(INTERVAL))
        during = datetime.now(UTC)
        ended = run_until_concluded(client, experiment, 0, 20_000, with_outcomes=True)
        assert ended["state"] == "succeeded", (tmp_path / "worker.log").read_text()[-3000:]
        last = ended["last_look"]
        assert last["verdict"] == "treatment_wins" and last["upper"] < 0 and last["p_value"] <= 0.05
        arms = ended["arms"]
        assert arms["treatment"]["default_rate_approved"] < arms["control"]["default_rate_approved"]
        for arm in arms.values():  # per-arm intervals once outcomes exist
            rate = arm["default_rate_approved_interval"]
            assert rate["lower"] < rate["rate"] < rate["upper"]
            assert arm["auc"]["lower"] < arm["auc"]["auc"] < arm["auc"]["upper"]
        assert ended["looks"] and ended["sample_size_per_arm"]
        switch = datetime.fromisoformat(ended["finished_at"])
        assert switch - before < timedelta(hours=48)
        production = AppContext(Settings(home=home)).registry.find_alias("taiwan", "production")
        assert production is not None and production.version == v2
        report = client.get(f"/v1/models/ab-tests/{experiment}/report")
        assert report.status_code == 200 and "always-valid p-value" in report.text
        assert "data:image/svg+xml;base64," in report.text

        # who answered when, replayed from the audit trail
        assert shares(history(client, before)) == {"1": 1.0}
        assert "models promote" not in str(history(client, before)["production_put_by"])
        assert "cli:" in str(history(client, before)["production_put_by"])
        assert shares(history(client, during)) == {"1": 0.5, v2: 0.5}
        assert history(client, during)["deployment"]["strategy"] == "ab_test"
        just_before = history(client, switch - timedelta(milliseconds=50))
        assert shares(just_before) == {"1": 0.5, v2: 0.5}
        at_switch = history(client, switch + timedelta(milliseconds=50))
        assert shares(at_switch) == {v2: 1.0} and "worker" in at_switch["production_put_by"]
        assert shares(history(client, datetime.now(UTC))) == {v2: 1.0}

        # two identical versions (v3 is v2's bundle): no difference
        add_versions(home, 1, source=v2)
        same = {"name": "taiwan", "treatment_version": "3", "metric": "approval_rate", "mde": 0.03}
        again = client.post("/v1/models/ab-test", json=same)
        assert again.status_code == 202, again.text
        second = again.json()["id"]
        wait_for(client, second, {"progressing"}, 30)
        time.sleep(3 * float(INTERVAL))
        ended = run_until_concluded(client, second, 0, 20_000, with_outcomes=False)
        assert ended["state"] == "aborted", ended["history"][-1]
        assert ended["last_look"]["verdict"] == "no_difference"
        assert ended["last_look"]["lower"] > -0.03 and ended["last_look"]["upper"] < 0.03
        production = AppContext(Settings(home=home)).registry.find_alias("taiwan", "production")
        assert production is not None and production.version == v2  # control kept
    verified = subprocess.run(
        [*creditops_command(), "audit", "verify"], env=env, capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stderr
    assert "audit trail intact" in verified.stdout
