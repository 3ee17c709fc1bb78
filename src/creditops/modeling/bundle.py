"""The model bundle: everything needed to score, explain and monitor, in one JSON file.

A bundle holds the spec, the feature encoder, the model (LightGBM model text or the
scorecard's tables), the calibrator, the score scaling, the decision policy and the
reference profile. It is written as canonical JSON (sorted keys, no whitespace), so its
sha256 is a content hash: the same data and spec give the same hash, and any change to the
file is detected when it is loaded from the registry.

:class:`ScoringModel` is the runtime form: the same content with the LightGBM booster and
scorecard rebuilt, ready to score frames (batch) or encoded rows (the API's hot path).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from creditops.domain.policy import DecisionPolicy, PolicyOutcome
from creditops.domain.scaling import ScoreScaling
from creditops.errors import DataError, IntegrityError, InvalidInputError
from creditops.features.encoder import FeatureEncoder
from creditops.features.spec import Spec, parse_spec
from creditops.modeling.calibration import Calibrator
from creditops.modeling.explain import MAX_REASONS, PrincipalReasons, ReasonFamilies
from creditops.modeling.explain import principal_reasons as select_reasons
from creditops.modeling.fastpredict import SingleRowPredictor
from creditops.modeling.scorecard import WoeScorecard
from creditops.modeling.treeshap import TreeShapExplainer

Algorithm = Literal["lightgbm", "logistic"]
ReasonsFor = Literal["all", "adverse", "none"]
BUNDLE_FORMAT = 1
PARALLEL_ROWS = 1000
SINGLE_ROW_CALLS_MAX = 32  # up to this many rows, score row by row via the C single-row API


def _threads(x: npt.NDArray[np.float64]) -> int:
    """LightGBM threads for scoring ``x``: every core (0) for a large batch, which does not
    change the result; one for a few rows, so a single applicant on the API's hot path does
    not fan out to every core and starve the event loop and the decision-log writer."""
    return 0 if x.shape[0] >= PARALLEL_ROWS else 1


@dataclass
class ModelBundle:
    """Serialisable content of a model version."""

    spec: dict[str, Any]
    algorithm: Algorithm
    encoder: dict[str, Any]
    calibrator: dict[str, Any]
    policy: dict[str, Any]
    reference_profile: dict[str, Any]
    training: dict[str, Any]
    booster: str | None = None
    scorecard: dict[str, Any] | None = None
    format: int = BUNDLE_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        payload = {
            "format": self.format,
            "spec": self.spec,
            "algorithm": self.algorithm,
            "encoder": self.encoder,
            "calibrator": self.calibrator,
            "policy": self.policy,
            "reference_profile": self.reference_profile,
            "training": self.training,
            "booster": self.booster,
            "scorecard": self.scorecard,
            "extra": self.extra,
        }
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()

    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def save(self, path: Path) -> str:
        """Write the bundle; returns its sha256."""
        data = self.to_bytes()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelBundle:
        try:
            payload = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IntegrityError(f"model bundle is not valid JSON: {exc}") from None
        if payload.get("format") != BUNDLE_FORMAT:
            raise IntegrityError(f"unsupported bundle format {payload.get('format')!r}")
        return cls(**payload)

    @classmethod
    def load(cls, path: Path, *, expected_sha256: str | None = None) -> ModelBundle:
        data = path.read_bytes()
        if expected_sha256 is not None:
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected_sha256:
                raise IntegrityError(
                    f"bundle {path} has sha256 {actual}, expected {expected_sha256}: refusing "
                    "to load a modified artifact"
                )
        return cls.from_bytes(data)


@dataclass(frozen=True)
class ScoredBatch:
    """Scores, decisions and principal reasons for a batch of applicants."""

    pd: npt.NDArray[np.float64]
    score: npt.NDArray[np.float64]
    decision: npt.NDArray[np.object_]
    reason_codes: npt.NDArray[np.object_]  # (n, 4), None where empty
    reason_texts: npt.NDArray[np.object_]
    reason_features: npt.NDArray[np.object_]
    reason_contributions: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Scores:
    """PD, score and policy outcome of a batch, before reason codes."""

    pd: npt.NDArray[np.float64]
    score: npt.NDArray[np.float64]
    outcome: PolicyOutcome
    # per row, the first input that may not be missing and is (None where none is); such
    # rows are decided ``review`` under ``missing.on_missing: review``
    missing: npt.NDArray[np.object_] | None = None

    def rows_needing_reasons(self, reasons: ReasonsFor) -> npt.NDArray[np.intp]:
        """The rows that get reason codes: all, the adverse (review/decline) ones, or none."""
        if reasons == "all":
            return np.arange(self.pd.shape[0])
        if reasons == "adverse":
            return np.flatnonzero(self.outcome.decision != "approve")
        return np.arange(0)


class ScoringModel:
    """A bundle made ready to score."""

    def __init__(self, bundle: ModelBundle) -> None:
        self.bundle = bundle
        self.spec: Spec = parse_spec(bundle.spec)
        self.algorithm: Algorithm = bundle.algorithm
        self.encoder = FeatureEncoder.from_dict(bundle.encoder)
        self.calibrator = Calibrator.from_dict(bundle.calibrator)
        self.scaling = ScoreScaling(**self.spec.scaling.model_dump())
        self.policy = DecisionPolicy.model_validate(bundle.policy)
        self.booster: lgb.Booster | None = None
        self._single_row: SingleRowPredictor | None = None
        self.scorecard: WoeScorecard | None = None
        if bundle.algorithm == "lightgbm":
            if bundle.booster is None:
                raise IntegrityError("lightgbm bundle has no booster")
            self.booster = lgb.Booster(model_str=bundle.booster)
            self._single_row = SingleRowPredictor.create(self.booster)
            used = [c > 0 for c in self.booster.feature_importance(importance_type="split")]
        else:
            if bundle.scorecard is None:
                raise IntegrityError("logistic bundle has no scorecard")
            self.scorecard = WoeScorecard.from_dict(bundle.scorecard)
            used_names = set(self.scorecard.used_features())
            used = [name in used_names for name in self.encoder.feature_names]
        self.used_features = [n for n, u in zip(self.encoder.feature_names, used, strict=True) if u]
        self.families = ReasonFamilies.build(
            self.encoder.feature_names, self.spec.reason_catalogue(), used
        )
        self.required_columns = np.asarray(
            [
                j
                for j, name in enumerate(self.encoder.feature_names)
                if not self.spec.may_be_missing(name)
            ],
            dtype=np.intp,
        )

    def score_checked(
        self,
        frame: pd.DataFrame,
        x: npt.NDArray[np.float64] | None = None,
        *,
        reasons: ReasonsFor = "all",
    ) -> ScoredBatch:
        """Score raw applicant columns as ``creditops score`` and the pyfunc model do: text
        in a numeric column and an input the spec does not allow missing are refused, not
        scored. ``x`` is ``frame`` already encoded (strictly), when the caller has it."""
        if x is None:
            x = self.encoder.transform(frame, strict=True)
        self.refuse_missing(x)
        return self.score_encoded(x, frame, reasons=reasons)

    def refuse_missing(self, x: npt.NDArray[np.float64]) -> None:
        """Under ``missing.on_missing: refuse``, raise naming the first input that may not
        be missing, how many rows miss it and which (1-based data rows)."""
        missing = self.missing_required(x)
        if missing is None or self.spec.missing.on_missing != "refuse":
            return
        first = str(next(m for m in missing if m is not None))
        rows = np.flatnonzero(np.isnan(x[:, self.encoder.feature_names.index(first)]))
        raise DataError(
            f"{first} is missing in {rows.size} row(s), and the spec does not allow it "
            "missing (missing.allowed); fill it, or set missing.on_missing: review",
            field=first,
            count=int(rows.size),
            examples=[int(r) + 1 for r in rows[:5]],
        )

    def missing_required(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.object_] | None:
        """Per encoded row, the first input that may not be missing and is (None where
        none is); None when no row misses one."""
        if not self.required_columns.size:
            return None
        absent = np.isnan(x[:, self.required_columns])
        if not absent.any():
            return None
        names = np.asarray(
            [self.encoder.feature_names[j] for j in self.required_columns] + [None], dtype=object
        )
        first = np.where(absent.any(axis=1), absent.argmax(axis=1), len(names) - 1)
        return names[first]

    @cached_property
    def _treeshap(self) -> TreeShapExplainer | None:
        """The precomputed TreeSHAP tables, built on first use (about 30 ms for the demo
        model; training never needs them). The API builds them when it loads a model
        (:meth:`prepare_for_serving`), so no request pays for that."""
        if self.booster is None:
            return None
        return TreeShapExplainer.from_booster(self.booster)

    def prepare_for_serving(self) -> None:
        """Build what the first decision would otherwise build: the TreeSHAP tables."""
        if self._treeshap is not None:
            _ = self._treeshap.cells

    @classmethod
    def from_file(cls, path: Path, *, expected_sha256: str | None = None) -> ScoringModel:
        return cls(ModelBundle.load(path, expected_sha256=expected_sha256))

    # -- raw model outputs -------------------------------------------------------------
    def margin(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Raw score in log-odds space, before calibration."""
        if self._single_row is not None and x.shape[0] <= SINGLE_ROW_CALLS_MAX:
            # a few rows (one applicant, or the API's dynamic batch): one cheap C call per
            # row beats Booster.predict's fixed Python cost of about 20 us
            return self._single_row.raw_scores(x)
        if self.booster is not None:
            return np.asarray(
                self.booster.predict(x, raw_score=True, num_threads=_threads(x)), dtype=np.float64
            )
        assert self.scorecard is not None
        return self.scorecard.decision_function(x)

    def contributions(
        self, x: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Per-feature contributions and base values; their sum equals :meth:`margin`.

        LightGBM models: exact path-dependent TreeSHAP from the precomputed tables of
        :mod:`creditops.modeling.treeshap` (the same numbers as LightGBM's ``pred_contrib``,
        3x faster for one row and 2-4x for batches), or LightGBM's own for a model the
        tables do not cover. The tables run under the GIL, on the caller's thread; on the
        API's hot path that measured better than LightGBM's in a worker thread, whose GIL
        hand-offs cost more latency than they saved (decision 0006).
        """
        if self._treeshap is not None:
            full = self._treeshap.contributions(x)
            return full[:, :-1], full[:, -1]
        if self.booster is not None:
            full = np.asarray(
                self.booster.predict(x, pred_contrib=True, num_threads=_threads(x)),
                dtype=np.float64,
            )
            return full[:, :-1], full[:, -1]
        assert self.scorecard is not None
        contrib = self.scorecard.contributions(x)
        return contrib, np.full(x.shape[0], self.scorecard.base_value_, dtype=np.float64)

    def reason_contributions(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """What pushes each applicant towards default (TreeSHAP, or scorecard shortfall)."""
        if self.booster is not None:
            return self.contributions(x)[0]
        assert self.scorecard is not None
        return self.scorecard.reason_contributions(x)

    def predict_pd(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return self.calibrator.predict(self.margin(x))

    # -- scoring ---------------------------------------------------------------------
    def score_frame(self, frame: pd.DataFrame, *, reasons: ReasonsFor = "all") -> ScoredBatch:
        """Score a frame of raw applicant values, vectorised."""
        return self.score_encoded(self.encoder.transform(frame), frame, reasons=reasons)

    def score_encoded(
        self,
        x: npt.NDArray[np.float64],
        raw: pd.DataFrame | Mapping[str, Sequence[object]] | None,
        *,
        reasons: ReasonsFor = "all",
    ) -> ScoredBatch:
        """Score encoded rows; ``raw`` holds the columns knock-out rules read.

        ``reasons="adverse"`` computes reason codes only for review and decline decisions
        (the ones a notice or a reviewer needs); TreeSHAP costs far more than the
        prediction itself, so the API's hot path uses it.
        """
        scored = self.score_without_reasons(x, raw)
        rows = scored.rows_needing_reasons(reasons)
        contributions = self.reason_contributions(x[rows]) if rows.size else None
        return self.with_reasons(scored, rows, contributions)

    def score_without_reasons(
        self,
        x: npt.NDArray[np.float64],
        raw: pd.DataFrame | Mapping[str, Sequence[object]] | None,
    ) -> Scores:
        """Step one of :meth:`score_encoded`: PD, score and decision (cheap). A row missing
        an input that may not be missing is decided ``review`` when the spec says so (the
        boundaries refuse such rows under ``refuse``, see :class:`MissingPolicy`)."""
        pd_values = self.predict_pd(x)
        score = self.scaling.points(pd_values)
        outcome = self.policy.decide(score, raw)
        missing = self.missing_required(x)
        if missing is not None and self.spec.missing.on_missing == "review":
            routed = (missing != None) & (outcome.knockout_index < 0)  # noqa: E711 - elementwise
            outcome.decision[routed] = "review"
        return Scores(pd_values, score, outcome, missing)

    def with_reasons(
        self,
        scored: Scores,
        rows: npt.NDArray[np.intp],
        contributions: npt.NDArray[np.float64] | None,
    ) -> ScoredBatch:
        """Step two: principal reasons of ``rows`` from their ``reason_contributions``
        (computed by the caller, e.g. in a worker thread) and knock-out reasons."""
        outcome = scored.outcome
        n = scored.pd.shape[0]
        codes = np.full((n, MAX_REASONS), None, dtype=object)
        texts = np.full((n, MAX_REASONS), None, dtype=object)
        features = np.full((n, MAX_REASONS), None, dtype=object)
        values = np.zeros((n, MAX_REASONS), dtype=np.float64)
        if rows.size:
            if contributions is None or contributions.shape[0] != rows.size:
                raise ValueError("with_reasons needs one row of contributions per selected row")
            selected = select_reasons(contributions, self.families)
            self._fill_reasons(selected, rows, codes, texts, features, values)
        if (outcome.knockout_index >= 0).any():
            self._prepend_knockouts(outcome.knockout_index, codes, texts, features, values)
        if scored.missing is not None and self.spec.missing.on_missing == "review":
            self._prepend_missing(scored.missing, outcome, codes, texts, features, values)
        decision = outcome.decision
        return ScoredBatch(scored.pd, scored.score, decision, codes, texts, features, values)

    def _fill_reasons(  # noqa: PLR0913 - fills the four reason columns in place
        self,
        reasons: PrincipalReasons,
        rows: npt.NDArray[np.int64],
        codes: npt.NDArray[np.object_],
        texts: npt.NDArray[np.object_],
        features: npt.NDArray[np.object_],
        values: npt.NDArray[np.float64],
    ) -> None:
        code_names = np.array([c.code for c in self.families.codes] + [None], dtype=object)
        code_texts = np.array([c.text for c in self.families.codes] + [None], dtype=object)
        feature_names = np.array([*self.encoder.feature_names, None], dtype=object)
        codes[rows] = code_names[reasons.code_index]
        texts[rows] = code_texts[reasons.code_index]
        features[rows] = feature_names[reasons.feature_index]
        values[rows] = reasons.contribution

    def _prepend_knockouts(
        self,
        knockout_index: npt.NDArray[np.int64],
        codes: npt.NDArray[np.object_],
        texts: npt.NDArray[np.object_],
        features: npt.NDArray[np.object_],
        values: npt.NDArray[np.float64],
    ) -> None:
        """A knock-out rule's own reason becomes the first reason of the rows it declined."""
        rows = np.flatnonzero(knockout_index >= 0)
        rules = [self.policy.knockouts[knockout_index[r]] for r in rows]
        reason = (
            [rule.reason_code for rule in rules],
            [rule.reason_text for rule in rules],
            [rule.feature for rule in rules],
        )
        _prepend(rows, reason, codes, texts, features, values)

    def _prepend_missing(  # noqa: PLR0913 - fills the four reason columns in place
        self,
        missing: npt.NDArray[np.object_],
        outcome: PolicyOutcome,
        codes: npt.NDArray[np.object_],
        texts: npt.NDArray[np.object_],
        features: npt.NDArray[np.object_],
        values: npt.NDArray[np.float64],
    ) -> None:
        """The missing-input reason becomes the first reason of the rows routed to review."""
        rows = np.flatnonzero((missing != None) & (outcome.knockout_index < 0))  # noqa: E711
        policy = self.spec.missing
        n = rows.size
        reason = ([policy.reason_code] * n, [policy.reason_text] * n, list(missing[rows]))
        _prepend(rows, reason, codes, texts, features, values)


def _prepend(  # noqa: PLR0913 - one reason into the four reason columns
    rows: npt.NDArray[np.intp],
    reason: tuple[Sequence[object], Sequence[object], Sequence[object]],
    codes: npt.NDArray[np.object_],
    texts: npt.NDArray[np.object_],
    features: npt.NDArray[np.object_],
    values: npt.NDArray[np.float64],
) -> None:
    """Put a rule's reason (code, text, feature per row) first in ``rows``, shifting the
    model's reasons down; a rule contributes 0 to the score."""
    for array in (codes, texts, features):
        array[rows, 1:] = array[rows, :-1]
    values[rows, 1:] = values[rows, :-1]
    codes[rows, 0], texts[rows, 0], features[rows, 0] = reason
    values[rows, 0] = 0.0


def check_frame_columns(frame: pd.DataFrame, model: ScoringModel) -> None:
    """Raise a clear error when a scoring input lacks model features."""
    needed = model.encoder.feature_names
    absent = [c for c in needed if c not in frame.columns]
    if absent:
        raise InvalidInputError(
            f"input lacks {len(absent)} model feature column(s): {absent[:5]}", field=absent[0]
        )
