"""``creditops evidence``: the pack of the demo model, every number recomputed here from the
predictions it ships (scikit-learn, scipy and pandas, not creditops' own functions), the HTML
self-contained, the files logged to the version's MLflow run."""

from __future__ import annotations

import html as html_text
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pypdfium2 as pdfium
import pytest
from scipy import stats
from sklearn.metrics import brier_score_loss, roc_auc_score
from typer.testing import CliRunner

from creditops.cli import app
from creditops.errors import ConflictError
from creditops.modeling.bundle import ModelBundle
from creditops.registry.records import RegistrationRequest
from creditops.services.context import AppContext
from creditops.services.deployments import promote_alias
from creditops.services.model_versions import TEST_SET_ARTIFACT, load_model, load_test_set
from creditops.services.scoring import scored_frame
from creditops.settings import Settings
from creditops.store.admin_repositories import AuditRepository
from creditops.store.engine import create_db_engine, session_factory
from creditops.store.migrations_api import ensure_current
from tests.factories import train_demo_model

pytestmark = pytest.mark.integration
TOLERANCE = 1e-9
DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("evidence-home")
    train_demo_model(home)
    return home


def evidence(home: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("CREDITOPS_HOME", str(home))
    result = CliRunner().invoke(app, ["evidence", "--name", "taiwan", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def pack(home: Path) -> tuple[dict[str, Any], pd.DataFrame, Path, dict[str, Any]]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        code, out, err = evidence(home, monkeypatch, "--version", "1", "--json")
    assert code == 0, err
    result = json.loads(out)
    directory = Path(result["directory"])
    document = json.loads((directory / "evidence.json").read_text())
    predictions = pd.read_csv(directory / "predictions.csv", dtype={"id": str})
    return document, predictions, directory, result


def test_the_predictions_are_the_versions_answers_on_its_test_split(
    home: Path, pack: tuple[dict[str, Any], pd.DataFrame, Path, dict[str, Any]]
) -> None:
    _, predictions, _, _ = pack
    ctx = AppContext(Settings(home=home))
    loaded = load_model(ctx, "taiwan", "1")
    test = load_test_set(ctx, "taiwan", "1")
    expected = scored_frame(test.drop(columns=["target"]), loaded.model, "taiwan", "1")
    assert len(predictions) == len(test)
    np.testing.assert_array_equal(predictions["defaulted"], test["target"])
    np.testing.assert_array_equal(predictions["pd"], expected["pd"])
    np.testing.assert_array_equal(predictions["score"], expected["score"])
    assert predictions["decision"].tolist() == expected["decision"].tolist()


def test_discrimination_is_recomputed_from_the_predictions(
    pack: tuple[dict[str, Any], pd.DataFrame, Path, dict[str, Any]],
) -> None:
    document, predictions, _, _ = pack
    y, pd_values = predictions["defaulted"], predictions["pd"]
    section = document["discrimination"]
    auc = roc_auc_score(y, pd_values)
    assert section["auc"]["auc"] == pytest.approx(auc, abs=TOLERANCE)
    assert section["gini"] == pytest.approx(2 * auc - 1, abs=TOLERANCE)
    assert section["auc"]["lower"] < auc < section["auc"]["upper"]
    half = stats.norm.ppf(0.975) * section["auc"]["se"]
    assert section["auc"]["upper"] == pytest.approx(auc + half, abs=TOLERANCE)
    ks = stats.ks_2samp(pd_values[y == 1], pd_values[y == 0]).statistic
    assert section["ks"] == pytest.approx(ks, abs=TOLERANCE)
    gains = pd.DataFrame(section["gains"])
    assert gains["count"].sum() == len(predictions) and gains["bads"].sum() == y.sum()
    assert (gains["score_min"].diff().dropna() > 0).all()  # riskiest (lowest scores) first
    capture = gains["bads"].cumsum() / y.sum()
    np.testing.assert_allclose(gains["cumulative_bad_capture"], capture, atol=TOLERANCE)
    for row in section["gains"]:
        inside = predictions[predictions["score"].between(row["score_min"], row["score_max"])]
        assert row["count"] <= len(inside)  # ties at the edges can share a value


def test_the_benchmark_scorecard_is_recomputed_from_the_predictions(
    pack: tuple[dict[str, Any], pd.DataFrame, Path, dict[str, Any]],
) -> None:
    document, predictions, _, _ = pack
    section = document["benchmark"]
    y = predictions["defaulted"]
    for key, column in (("model", "pd"), ("scorecard", "baseline_pd")):
        assert section[key]["auc"] == pytest.approx(roc_auc_score(y, predictions[column]))
        brier = brier_score_loss(y, predictions[column])
        assert section[key]["brier"] == pytest.approx(brier, abs=TOLERANCE)
    uplift = section["model"]["auc"] - section["scorecard"]["auc"]
    assert section["uplift"]["auc"] == pytest.approx(uplift, abs=TOLERANCE)
    assert not np.allclose(predictions["pd"], predictions["baseline_pd"])  # two models
    assert 0.0 <= section["delong"]["p_value"] <= 1.0


def test_calibration_is_recomputed_from_the_predictions(
    pack: tuple[dict[str, Any], pd.DataFrame, Path, dict[str, Any]],
) -> None:
    document, predictions, _, _ = pack
    y, pd_values = predictions["defaulted"], predictions["pd"]
    section = document["calibration"]
    brier = brier_score_loss(y, pd_values)
    assert section["brier"] == pytest.approx(brier, abs=TOLERANCE)
    rate = y.mean()
    assert section["brier_skill"] == pytest.approx(1 - brier / (rate * (1 - rate)), abs=1e-9)
    assert section["calibration_in_the_large"] == pytest.approx(
        pd_values.mean() - rate, abs=TOLERANCE
    )
    bands = {row["band"]: row for row in section["bands"]}
    assert set(bands) == set(predictions["decision"])
    for band, rows in predictions.groupby("decision"):
        row = bands[str(band)]
        n, d, p = len(rows), int(rows["defaulted"].sum()), float(rows["pd"].mean())
        assert (row["n"], row["defaults"]) == (n, d)
        assert row["mean_pd"] == pytest.approx(p, abs=TOLERANCE)
        binomial = stats.binomtest(d, n, p, alternative="greater").pvalue
        assert row["binomial_p_value"] == pytest.approx(binomial, abs=1e-9)
        jeffreys = stats.beta.cdf(p, d + 0.5, n - d + 0.5)
        assert row["jeffreys_p_value"] == pytest.approx(jeffreys, abs=1e-9)
        light = "green" if jeffreys >= 0.05 else "amber" if jeffreys >= 0.01 else "red"
        assert row["light"] == light


def test_fairness_is_recomputed_from_the_predictions(
    pack: tuple[dict[str, Any], pd.DataFrame, Path, dict[str, Any]],
) -> None:
    document, predictions, _, _ = pack
    sections = {item["attribute"]: item for item in document["fairness"]}
    assert set(sections) == {"sex", "age", "marriage"}
    assert sections["sex"]["reference_group"] == "1"  # named in the spec's model card
    assert sections["sex"]["reference_chosen_by"] == "model_card.reference_groups"
    largest = predictions["group_age"].value_counts().idxmax()
    assert sections["age"]["reference_group"] == largest  # none named: the largest
    approved = predictions["decision"] == "approve"
    for attribute, item in sections.items():
        groups = predictions[f"group_{attribute}"].astype(str)
        rates = approved.groupby(groups).mean()
        reference = item["reference_group"]
        for row in item["adverse_impact"]["rows"]:
            group = row["group"]
            assert row["n"] == int((groups == group).sum())
            assert row["approval_rate"] == pytest.approx(rates[group], abs=TOLERANCE)
            if row["status"] != "reference":
                air = rates[group] / rates[reference]
                assert row["adverse_impact_ratio"] == pytest.approx(air, abs=TOLERANCE)
                table = pd.crosstab(groups[groups.isin([group, reference])], approved)
                expected_p = stats.fisher_exact(table.to_numpy()).pvalue
                assert row["fisher_p_value"] == pytest.approx(expected_p, rel=1e-9)
        scores = predictions["score"]
        ref_scores = scores[groups == reference]
        for row in item["score_difference"]["rows"]:
            mine = scores[groups == row["group"]]
            if row["status"] == "reference" or row["smd"] is None:
                continue
            pooled = np.sqrt(
                ((len(mine) - 1) * mine.var(ddof=1) + (len(ref_scores) - 1) * ref_scores.var())
                / (len(mine) + len(ref_scores) - 2)
            )
            expected_smd = (mine.mean() - ref_scores.mean()) / pooled
            assert row["smd"] == pytest.approx(expected_smd, abs=1e-9)


def test_model_card_governance_and_findings(
    pack: tuple[dict[str, Any], pd.DataFrame, Path, dict[str, Any]],
) -> None:
    document, _, _, result = pack
    card = document["model_card"]
    assert card["purpose"] and card["target_definition"] and card["out_of_scope"]
    assert card["monotone"] == {"pay_0": "increasing", "limit_bal": "decreasing"}
    assert card["hyperparameters"]["num_leaves"] and card["trees"] > 0
    governance = document["governance"]
    assert re.fullmatch(r"[0-9a-f]{64}", governance["lineage"]["bundle_sha256"])
    assert governance["gate_override"]["reason"] == "test fixture"
    assert governance["aliases"] == ["production"]
    assert result["findings"] == document["findings"]
    assert not any(f.startswith("model card") for f in document["findings"])  # all stated
    assert "governance: the gate was overridden by tests" in document["findings"]
    assert governance["implementation_replay"] is None
    assert (
        "implementation: the version was never replayed through the service"
        in (document["findings"])
    )
    failing = [
        (item["attribute"], row["group"])
        for item in document["fairness"]
        for row in item["adverse_impact"]["rows"]
        if row["status"] == "fail"
    ]
    for attribute, group in failing:  # every failing group is a finding, and only those
        assert any(f"{attribute} group {group} " in f for f in document["findings"])
    assert sum(f.startswith("fairness") for f in document["findings"]) == len(failing)


def test_the_html_is_self_contained_and_shows_every_section(
    pack: tuple[dict[str, Any], pd.DataFrame, Path, dict[str, Any]],
) -> None:
    document, _, directory, _ = pack
    html = (directory / "evidence.html").read_text()
    for section in ("findings", "model-card", "discrimination", "benchmark", "calibration"):
        assert f'id="{section}"' in html
    assert 'id="governance"' in html and 'id="fairness"' in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing to fetch
    assert "<script" not in html
    assert f"{document['discrimination']['auc']['auc']:.4f}" in html
    assert document["model_card"]["purpose"].split()[0] in html


SECTION_TITLES = (
    "Findings",
    "Model card",
    "Discrimination",
    "Benchmark: the WoE scorecard beside the model",
    "Calibration",
    "Fairness in lending terms",
    "Governance record",
)


def test_the_pdf_has_every_section_and_no_table_cut_off(
    pack: tuple[dict[str, Any], pd.DataFrame, Path, dict[str, Any]],
) -> None:
    """The PDF is looked at: its pages rendered to images, their text read. Every section
    title, every table header and every table cell of the HTML is in the PDF's text (a table
    cut off at a page edge loses cells; Chromium wraps or shrinks, it must not clip), and
    nothing is drawn in the page margins."""
    document, _, directory, result = pack
    assert str(directory / "evidence.pdf") in result["files"]
    pdf = pdfium.PdfDocument(directory / "evidence.pdf")
    text = ""
    for index in range(len(pdf)):
        page = pdf[index]
        text += page.get_textpage().get_text_range() + "\n"
        image = np.asarray(page.render(scale=2).to_pil().convert("L"))
        width = image.shape[1]
        margin = int(width * 8 / 297)  # 8 of the 12 mm margin of an A4 landscape page
        for name, strip in (
            ("left", image[:, :margin]),
            ("right", image[:, -margin:]),
            ("top", image[:margin, :]),
            ("bottom", image[-margin:, :]),
        ):
            assert strip.min() > 200, f"page {index + 1}: something drawn in the {name} margin"
    flat = " ".join(text.split())
    for title in SECTION_TITLES:
        assert title in flat, title
    html = (directory / "evidence.html").read_text()
    compact = "".join(text.split())
    cells = re.findall(r"<t[hd][^>]*>([^<]+)</t[hd]>", html)
    assert len(cells) > 300
    for cell in set(cells):
        value = "".join(html_text.unescape(cell).split())
        assert value in compact, cell
    assert f"{document['discrimination']['auc']['auc']:.4f}" in flat


def test_the_pack_is_logged_to_the_versions_run(
    home: Path, pack: tuple[dict[str, Any], pd.DataFrame, Path, dict[str, Any]]
) -> None:
    document, _, _, _ = pack
    settings = Settings(home=home)
    client = mlflow.MlflowClient(settings.tracking_uri)
    run_id = document["governance"]["run_id"]
    logged = {Path(a.path).name for a in client.list_artifacts(run_id, "evidence")}
    assert logged == {"evidence.html", "evidence.json", "evidence.pdf", "predictions.csv"}


def test_an_unknown_version_is_one_line(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = evidence(home, monkeypatch, "--version", "99")
    assert code != 0 and err.startswith("error:") and err.count("\n") == 1


def later_sample(path: Path) -> Path:
    """A later book: Taiwan rows whose limits were halved (so the scores move and
    limit_bal's CSI is large), with their outcomes."""
    frame = pd.read_csv(DATA / "taiwan_credit_card.csv", nrows=4000)
    frame["limit_bal"] = frame["limit_bal"] * 0.5
    frame.to_csv(path, index=False)
    return path


def test_stability_against_a_later_sample(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = later_sample(tmp_path / "later.csv")
    out_dir = tmp_path / "pack"
    code, out, err = evidence(
        home, monkeypatch, "--version", "1", "--later", str(later), "--output", str(out_dir),
        "--json",
    )  # fmt: skip
    assert code == 0, err
    assert str(out_dir / "later_predictions.csv") in json.loads(out)["files"]
    document = json.loads((out_dir / "evidence.json").read_text())
    section = document["stability"]
    dev = pd.read_csv(out_dir / "predictions.csv")
    new = pd.read_csv(out_dir / "later_predictions.csv")
    # score PSI over the development deciles, recomputed
    edges = np.unique(np.quantile(dev["score"], np.linspace(0.1, 0.9, 9)))
    p = np.bincount(np.searchsorted(edges, dev["score"]), minlength=edges.size + 1) / len(dev)
    q = np.bincount(np.searchsorted(edges, new["score"]), minlength=edges.size + 1) / len(new)
    p, q = np.where(p == 0, 1e-4, p), np.where(q == 0, 1e-4, q)
    assert section["score_psi"]["psi"] == pytest.approx(np.sum((q - p) * np.log(q / p)))
    # limit_bal moved most, and the attribution adds up to the change of the mean margin
    csi = {row["characteristic"]: row for row in section["characteristics"]}
    assert section["characteristics"][0]["characteristic"] == "limit_bal"
    assert csi["limit_bal"]["level"] == "critical"
    assert any("limit_bal CSI" in f for f in document["findings"])
    ctx = AppContext(Settings(home=home))
    model = load_model(ctx, "taiwan", "1").model
    test = load_test_set(ctx, "taiwan", "1")
    later_frame = pd.read_csv(later)
    margin_shift = (
        model.margin(model.encoder.transform(later_frame)).mean()
        - model.margin(model.encoder.transform(test)).mean()
    )
    assert section["score_shift"]["total"] == pytest.approx(margin_shift, abs=1e-9)
    assert section["score_shift"]["rows"][0]["feature"] == "limit_bal"
    # the AUC-decline test on the later outcomes
    decline = section["auc_decline"]
    assert decline["auc_new"] == pytest.approx(roc_auc_score(new["defaulted"], new["pd"]))
    assert decline["auc_dev"] == pytest.approx(roc_auc_score(dev["defaulted"], dev["pd"]))
    z = (decline["auc_dev"] - decline["auc_new"]) / decline["se"]
    assert decline["p_value"] == pytest.approx(stats.norm.sf(z), abs=1e-12)
    html = (out_dir / "evidence.html").read_text()
    assert 'id="stability"' in html and "later.csv" in html


def test_a_later_sample_with_bad_outcomes_is_one_line(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = pd.read_csv(DATA / "taiwan_credit_card.csv", nrows=50)
    frame.loc[3, "target"] = 7
    frame.to_csv(tmp_path / "bad.csv", index=False)
    code, _, err = evidence(
        home, monkeypatch, "--version", "1", "--later", str(tmp_path / "bad.csv")
    )
    assert code != 0 and "'target' column must hold 0 or 1" in err and err.count("\n") == 1


def register_copy(home: Path, tmp_path: Path, monotone: dict[str, str] | None = None) -> str:
    """Version 1's bundle (its spec's monotone directions replaced, when given) and test
    split registered as a new version; its number."""
    ctx = AppContext(Settings(home=home))
    info = ctx.registry.get_version("taiwan", "1")
    path = ctx.registry.download_bundle("taiwan", "1", tmp_path / "bundle")
    bundle = ModelBundle.load(path)
    if monotone is not None:
        bundle = replace(bundle, spec={**bundle.spec, "monotone": monotone})
    saved = tmp_path / "copy" / "bundle.json"
    saved.parent.mkdir(parents=True)
    sha = bundle.save(saved)
    test_split = ctx.registry.download_artifact("taiwan", "1", TEST_SET_ARTIFACT, tmp_path)
    registered = ctx.registry.register(
        RegistrationRequest(
            name="taiwan",
            bundle_path=saved,
            bundle_sha256=sha,
            params={},
            metrics=info.metrics,
            tags={"gate_passed": "true"},
            artifacts={TEST_SET_ARTIFACT: test_split},
        )
    )
    return registered.version


def record_replay_outcome(home: Path, version: str, *, passed: bool) -> None:
    """What `creditops replay` writes to the audit trail (tests/integration/test_replay.py
    runs the real replay), as the precondition reads it."""
    sessions = session_factory(create_db_engine(Settings(home=home).database))
    with sessions.begin() as session:
        AuditRepository(session).add(
            actor="tests",
            action="model.replay",
            target=f"taiwan:{version}",
            outcome="ok" if passed else "error",
            details={"passed": passed, "message": "ok" if passed else "12 rows differ: pd 12"},
        )


def test_promotion_requires_a_passed_replay_and_the_monotonicity_proof(
    home: Path, tmp_path: Path
) -> None:
    settings = Settings(home=home, deploy={"require_evidence": True})
    ctx = AppContext(settings)
    ensure_current(settings.database)
    sessions = session_factory(create_db_engine(settings.database))

    def promote(version: str) -> Any:
        return promote_alias(
            ctx, sessions, "taiwan", version, "production", force=False, reason="t", actor="t"
        )

    good = register_copy(home, tmp_path / "good")
    with pytest.raises(ConflictError, match=r"never replayed; run `creditops replay"):
        promote(good)
    record_replay_outcome(home, good, passed=False)
    with pytest.raises(ConflictError, match=r"last implementation replay .* failed: 12 rows"):
        promote(good)
    assert ctx.registry.find_alias("taiwan", "production").version == "1"  # type: ignore[union-attr]
    record_replay_outcome(home, good, passed=True)
    assert promote(good).version == good
    with pytest.MonkeyPatch.context() as monkeypatch:
        code, out, err = evidence(home, monkeypatch, "--version", good, "--json")
    assert code == 0, err
    pack = json.loads((Path(json.loads(out)["directory"]) / "evidence.json").read_text())
    replayed = pack["governance"]["implementation_replay"]
    assert replayed["passed"] is True and replayed["actor"] == "tests"
    assert not any(f.startswith("implementation") for f in pack["findings"])
    # the model is constrained increasing in pay_0: declaring it decreasing breaks the proof
    broken = register_copy(home, tmp_path / "broken", {"pay_0": "decreasing"})
    record_replay_outcome(home, broken, passed=True)
    with pytest.raises(ConflictError, match=r"monotonicity proof fails .* pay_0 \(decreasing\)"):
        promote(broken)
    off = AppContext(Settings(home=home))  # without the setting nothing is required
    promote_alias(off, sessions, "taiwan", "1", "production", force=True, reason="t", actor="t")
    assert ctx.registry.find_alias("taiwan", "production").version == "1"  # type: ignore[union-attr]
