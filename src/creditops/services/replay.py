"""Implementation verification (issue 17): replay a version's stored test split through the
running decision service and compare its answers, row for row, with what the development
code (:func:`creditops.services.scoring.scored_frame`) gives for the same rows.

What is compared:

- the version: every answer names the version that decided it; an answer from another
  version fails the replay, which stops after the batch that showed it (the rest would be
  a comparison with the wrong model, and more decisions in the service's log);
- ``pd``: equal within :data:`PD_RELATIVE_TOLERANCE` (1e-12) relative. The two sides reach
  LightGBM through different entry points (the service's row encoder and, for small
  batches, the single-row C API; the development code's frame encoder and
  ``Booster.predict``), so bit equality is what they give today, not a contract; a
  re-associated sum over a few hundred trees moves a PD by about 1e-15, while a real
  defect (a wrong encoder, feature order, calibrator or version) moves it by far more
  than 1e-12. The largest relative difference seen is reported either way;
- ``score``: equal at its published 2 decimals (it is the number the policy decides on);
- ``decision``: equal;
- ``reasons``: the reason codes, equal and in order, on every row the service explained.
  By default the service explains review and decline decisions only
  (``serve.reasons_for: adverse``): an approval it answers without reasons, where the
  development code has some, is not compared, and the result counts those rows.

The applicants go as the API's batch requests of at most :data:`BATCH_ROWS` rows, one
after another (a service scores on its event loop, so parallel batches would not finish
sooner, and one at a time keeps the load a replay puts on a production service bounded);
a service whose ``serve.max_batch`` or body limit is smaller gets halved batches. Each
applicant carries every feature of the spec that the test split holds: the model inputs,
and the attributes knock-out rules read (the demo policy declines on ``age``, which is not
a model input), as a client sends them; the spec's id column is the application id. The
service logs every replayed decision like any other; their requests carry
``X-Request-ID: replay-...`` so they can be told apart.

:func:`replay` only reads (the registry, the service); :func:`record_replay` writes the
result to the audit trail and to the version's MLflow run.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from creditops.domain.windows import utc_text
from creditops.errors import (
    ApiKeyRefusedError,
    InvalidInputError,
    ModelNotServedError,
    ServiceCallError,
    ServiceUnreachableError,
)
from creditops.features.spec import Spec, value_key
from creditops.modeling.bundle import ScoringModel
from creditops.modeling.explain import MAX_REASONS
from creditops.services.context import AppContext
from creditops.services.model_versions import load_model, load_test_set
from creditops.services.scoring import scored_frame
from creditops.store.admin_repositories import AuditRepository

PD_RELATIVE_TOLERANCE = 1e-12
SCORE_DECIMALS = 2
BATCH_ROWS = 250
MAX_EXAMPLES = 10
DEFAULT_TIMEOUT_S = 30.0
FIELDS = ("version", "application_id", "pd", "score", "decision", "reasons")
AUDIT_ACTION = "model.replay"
ARTIFACT_DIR = "replay"
REASONS_RULE = (
    "reason codes compared, in order, on every row except approvals the service answered "
    "without reasons where the development code has some: the service explains review and "
    "decline decisions only unless serve.reasons_for is 'all'"
)


# -- the result -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayMismatch:
    """One field of one row where the service and the development code differ."""

    row_id: str
    field: str
    development: Any
    served: Any

    def to_dict(self) -> dict[str, Any]:
        return {
            "row_id": self.row_id,
            "field": self.field,
            "development": self.development,
            "served": self.served,
        }


@dataclass(frozen=True)
class ReplayResult:
    """What a replay compared and found. ``rows_selected`` is the part of the test split
    that was to be replayed (all of it, or the first ``--rows``); ``rows_compared`` falls
    short of it only when the replay stopped on an answer from another version."""

    name: str
    version: str
    url: str
    test_rows: int
    rows_selected: int
    rows_compared: int
    mismatches: dict[str, int]
    mismatched_rows: int
    examples: tuple[ReplayMismatch, ...]
    served_versions: dict[str, int]
    reasons_compared: int
    reasons_not_served: int
    max_pd_relative_difference: float
    started_at: datetime
    finished_at: datetime
    artifact: str | None = None

    @property
    def passed(self) -> bool:
        complete = self.rows_compared == self.rows_selected > 0
        return complete and not any(self.mismatches.values())

    @property
    def seconds(self) -> float:
        return round((self.finished_at - self.started_at).total_seconds(), 3)

    @property
    def message(self) -> str:
        """One line: the verdict and what it rests on."""
        head = f"replay of {self.name} v{self.version} against {self.url}"
        if self.passed:
            unexplained = (
                f" ({self.reasons_not_served} approvals answered without reasons, as "
                "serve.reasons_for: adverse does)"
                if self.reasons_not_served
                else ""
            )
            return (
                f"{head} passed: {self.rows_compared} of {self.test_rows} test rows, pd, "
                f"score and decision equal on every row, reason codes on "
                f"{self.reasons_compared} rows{unexplained}"
            )
        if not self.rows_compared:
            return f"{head} failed: no rows were compared (the stored test split is empty)"
        others = sorted(v for v in self.served_versions if v != self.version)
        if others:
            return (
                f"{head} failed: the service answered with version {', '.join(others)}, "
                f"not {self.version} (stopped after {self.rows_compared} rows)"
            )
        counts = ", ".join(f"{k} {n}" for k, n in self.mismatches.items() if n)
        return (
            f"{head} failed: {self.mismatched_rows} of {self.rows_compared} rows differ ({counts})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "url": self.url,
            "passed": self.passed,
            "message": self.message,
            "test_rows": self.test_rows,
            "rows_selected": self.rows_selected,
            "rows_compared": self.rows_compared,
            "mismatched_rows": self.mismatched_rows,
            "mismatches": dict(self.mismatches),
            "examples": [e.to_dict() for e in self.examples],
            "served_versions": dict(self.served_versions),
            "reasons": {
                "compared": self.reasons_compared,
                "not_served": self.reasons_not_served,
                "rule": REASONS_RULE,
            },
            "pd_relative_tolerance": PD_RELATIVE_TOLERANCE,
            "max_pd_relative_difference": self.max_pd_relative_difference,
            "score_decimals": SCORE_DECIMALS,
            "started_at": utc_text(self.started_at),
            "finished_at": utc_text(self.finished_at),
            "seconds": self.seconds,
            "artifact": self.artifact,
        }


# -- the use cases --------------------------------------------------------------------------
def replay(  # noqa: PLR0913 - the version, the service and its key; rows and timeout are options
    ctx: AppContext,
    name: str,
    version: str,
    base_url: str,
    api_key: str | None,
    *,
    rows: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ReplayResult:
    """Score the stored test split of ``name`` at ``version`` (a number or an alias) with
    the development code, send the same applicants to the service at ``base_url`` and
    compare the answers row for row (see the module docstring). ``rows``: only the first
    ``rows`` rows of the split. Raises a :class:`~creditops.errors.ServiceCallError` when
    the service cannot be reached or used, :class:`~creditops.errors.ModelNotServedError`
    when it does not serve ``name``."""
    url = _checked_url(base_url)
    _check_options(rows, timeout_s)
    started = datetime.now(UTC)
    plan = _plan(ctx, name, version, rows)
    tally = _Tally(plan.version)
    request_id = f"replay-{name}-v{plan.version}-{started:%Y%m%dT%H%M%SZ}"[:64]
    with _client(url, api_key, timeout_s, request_id) as client:
        for start, answers in _served_batches(client, url, name, plan.applications):
            for offset, answer in enumerate(answers):
                tally.compare(plan.expected, start + offset, _served(answer, url))
            if tally.mismatches["version"]:
                break
    return ReplayResult(
        name=name,
        version=plan.version,
        url=url,
        test_rows=plan.test_rows,
        rows_selected=len(plan.applications),
        rows_compared=tally.rows,
        mismatches={f: tally.mismatches[f] for f in FIELDS},
        mismatched_rows=tally.mismatched_rows,
        examples=tuple(tally.examples),
        served_versions=dict(tally.served_versions),
        reasons_compared=tally.reasons_compared,
        reasons_not_served=tally.reasons_not_served,
        max_pd_relative_difference=tally.max_pd_relative,
        started_at=started,
        finished_at=datetime.now(UTC),
    )


def record_replay(
    ctx: AppContext, sessions: sessionmaker[Session], result: ReplayResult, actor: str
) -> ReplayResult:
    """Record a replay: an audit entry (``model.replay`` on ``name:version``, outcome
    ``ok`` when it passed, else ``error``, the audit trail's word for a failed action), then
    on the version's MLflow run the result as ``replay/replay-<time>.json`` and the metrics
    ``replay_passed`` (1 or 0) and ``replay_rows``. Returns the result with its artifact."""
    with sessions.begin() as session:
        AuditRepository(session).add(
            actor=actor,
            action=AUDIT_ACTION,
            target=f"{result.name}:{result.version}",
            outcome="ok" if result.passed else "error",
            details=result.to_dict(),
        )
    stamp = f"{result.started_at:%Y%m%dT%H%M%S%fZ}"
    with tempfile.TemporaryDirectory(prefix="creditops-replay-") as tmp:
        path = Path(tmp) / f"replay-{stamp}.json"
        path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        artifact = ctx.registry.log_version_artifact(
            result.name, result.version, path, ARTIFACT_DIR
        )
    ctx.registry.log_version_metrics(
        result.name,
        result.version,
        {"replay_passed": 1.0 if result.passed else 0.0, "replay_rows": result.rows_compared},
    )
    return replace(result, artifact=artifact)


# -- the development side -------------------------------------------------------------------
@dataclass(frozen=True)
class _Expected:
    """The development code's answers, by row position."""

    ids: list[str]
    pd: list[float]
    score: list[float]
    decision: list[str]
    reasons: list[list[str]]


@dataclass
class _Plan:
    """The rows to replay as API request items, and (once the service has answered the
    first batch, so a wrong address or key fails before the scoring work) the development
    code's answers for them."""

    name: str
    version: str
    test_rows: int
    model: ScoringModel
    frame: pd.DataFrame
    ids: list[str]
    applications: list[dict[str, Any]]
    _expected: _Expected | None = None

    @property
    def expected(self) -> _Expected:
        if self._expected is None:
            scored = scored_frame(self.frame, self.model, self.name, self.version, reasons="all")
            self._expected = _expected(scored, self.ids)
        return self._expected


def _plan(ctx: AppContext, name: str, version: str, rows: int | None) -> _Plan:
    """The version's test split (or its first ``rows``) as API request items."""
    loaded = load_model(ctx, name, version)
    resolved = loaded.info.version
    test = load_test_set(ctx, name, resolved)
    selected = (test.head(rows) if rows is not None else test).reset_index(drop=True)
    spec = loaded.model.spec
    ids = _row_ids(selected, spec)
    applications = _applications(selected, spec, ids)
    return _Plan(name, resolved, len(test), loaded.model, selected, ids, applications)


def _expected(scored: pd.DataFrame, ids: list[str]) -> _Expected:
    """The development code's answers from :func:`scored_frame`'s columns."""
    codes = scored[[f"reason_{i + 1}" for i in range(MAX_REASONS)]].to_numpy(dtype=object)
    return _Expected(
        ids=ids,
        pd=scored["pd"].astype(float).tolist(),
        score=scored["score"].astype(float).tolist(),
        decision=scored["decision"].astype(str).tolist(),
        reasons=[[c for c in row if isinstance(c, str)] for row in codes],
    )


def _row_ids(frame: pd.DataFrame, spec: Spec) -> list[str]:
    """The spec's id column as text (``row-<n>`` where it is absent or empty)."""
    column = spec.id_column
    if not column or column not in frame.columns:
        return [f"row-{i}" for i in range(len(frame))]
    values = frame[column].astype(object).tolist()
    return [
        (value_key(v)[:128] if not _is_missing(v) else "") or f"row-{i}"
        for i, v in enumerate(values)
    ]


def _applications(frame: pd.DataFrame, spec: Spec, ids: list[str]) -> list[dict[str, Any]]:
    """One request item per row: the application id and every spec feature the frame
    holds, as JSON values the API accepts."""
    columns = {
        name: [_json_value(v, categorical=kind == "categorical") for v in frame[name].tolist()]
        for name, kind in spec.features.items()
        if name in frame.columns
    }
    return [
        {"application_id": row_id, "features": {n: values[i] for n, values in columns.items()}}
        for i, row_id in enumerate(ids)
    ]


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _json_value(value: object, *, categorical: bool) -> object:
    """A cell as a client sends it: null for missing, numbers as numbers, a category as
    text or an integer code (an integral float code such as 2.0 becomes 2)."""
    if isinstance(value, np.generic):
        value = value.item()
    if _is_missing(value):
        return None
    if isinstance(value, bool):
        return str(value) if categorical else int(value)
    if isinstance(value, float) and categorical:
        return int(value) if value.is_integer() else str(value)
    if isinstance(value, int | float):
        return value
    return str(value)


# -- the service side -----------------------------------------------------------------------
def _checked_url(base_url: str) -> str:
    url = base_url.strip().rstrip("/")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInputError(
            f"--url must be the service's base URL, e.g. http://127.0.0.1:8000; got {base_url!r}",
            field="url",
        )
    return url


def _check_options(rows: int | None, timeout_s: float) -> None:
    if rows is not None and rows < 1:
        raise InvalidInputError(f"--rows must be at least 1; got {rows}", field="rows")
    if not timeout_s > 0:
        raise InvalidInputError(
            f"--timeout must be a positive number of seconds; got {timeout_s}", field="timeout"
        )


def _client(url: str, api_key: str | None, timeout_s: float, request_id: str) -> httpx.Client:
    headers = {"X-Request-ID": request_id, "User-Agent": "creditops-replay"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return httpx.Client(base_url=url, headers=headers, timeout=timeout_s)


def _served_batches(
    client: httpx.Client, url: str, name: str, applications: list[dict[str, Any]]
) -> Iterator[tuple[int, list[Any]]]:
    """(first row, answers) per batch, in order; a batch the service finds too large is
    sent again in halves."""
    path = f"/v1/models/{name}/predict"
    size, start = BATCH_ROWS, 0
    while start < len(applications):
        chunk = applications[start : start + size]
        response = _post(client, url, path, {"applications": chunk})
        if size > 1 and _too_large(response):
            size //= 2
            continue
        yield start, _decisions(response, url, name, len(chunk))
        start += len(chunk)


def _post(client: httpx.Client, url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    try:
        return client.post(path, json=body)
    except httpx.TimeoutException:
        timeout = client.timeout.read
        raise ServiceUnreachableError(
            f"the service at {url} did not answer within {timeout:g} s", url=url
        ) from None
    except httpx.TransportError as exc:
        raise ServiceUnreachableError(
            f"cannot reach the service at {url}: {exc or type(exc).__name__}", url=url
        ) from None


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _too_large(response: httpx.Response) -> bool:
    """The batch exceeds the service's body limit (413) or ``serve.max_batch`` (422 on
    ``applications``)."""
    if response.status_code == 413:
        return True
    if response.status_code != 422:
        return False
    errors = _problem(response).get("errors") or []
    return any(
        isinstance(e, dict)
        and str(e.get("field", "")).endswith("applications")
        and e.get("type") == "too_long"
        for e in errors
    )


def _decisions(response: httpx.Response, url: str, name: str, expected: int) -> list[Any]:
    """The decisions of a batch answer, or the error that says why there are none."""
    status = response.status_code
    problem = _problem(response)
    detail = str(problem.get("detail") or response.text[:200] or response.reason_phrase)
    if status == 401:
        raise ApiKeyRefusedError(
            f"the service at {url} refused the API key ({status}: {detail}); give a key "
            "with the predict scope (--api-key or CREDITOPS_API_KEY)",
            url=url,
        )
    if status == 403:
        raise ApiKeyRefusedError(
            f"the API key may not predict at {url} ({status}: {detail}); it needs the "
            "predict scope",
            url=url,
        )
    if status == 404 and problem.get("code") == "model_not_found":
        raise ModelNotServedError(name, url)
    if status != 200:
        raise ServiceCallError(
            f"the service at {url} answered {status} to a predict request: {detail}", url=url
        )
    decisions = problem.get("decisions")
    if not isinstance(decisions, list) or len(decisions) != expected:
        raise ServiceCallError(
            f"the answer from {url} is not a batch of {expected} decisions; is it the base "
            "URL of a creditops decision service?",
            url=url,
        )
    return decisions


@dataclass(frozen=True)
class _Served:
    version: str
    application_id: str
    pd: float
    score: float
    decision: str
    reasons: list[str]


def _served(answer: Any, url: str) -> _Served:
    try:
        return _Served(
            version=str(answer["model"]["version"]),
            application_id=str(answer["application_id"]),
            pd=float(answer["pd"]),
            score=float(answer["score"]),
            decision=str(answer["decision"]),
            reasons=[str(r["code"]) for r in answer["reasons"]],
        )
    except (KeyError, TypeError, ValueError):
        raise ServiceCallError(
            f"an answer from {url} is not a creditops decision: {str(answer)[:200]}", url=url
        ) from None


# -- the comparison -------------------------------------------------------------------------
@dataclass
class _Tally:
    """Counts and the first examples of the differences, row after row."""

    version: str
    mismatches: Counter[str] = field(default_factory=Counter)
    examples: list[ReplayMismatch] = field(default_factory=list)
    served_versions: Counter[str] = field(default_factory=Counter)
    rows: int = 0
    mismatched_rows: int = 0
    reasons_compared: int = 0
    reasons_not_served: int = 0
    max_pd_relative: float = 0.0

    def note(self, row_id: str, name: str, development: Any, served: Any) -> None:
        self.mismatches[name] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(ReplayMismatch(row_id, name, development, served))

    def compare(self, expected: _Expected, i: int, served: _Served) -> None:
        row_id, before = expected.ids[i], sum(self.mismatches.values())
        self.rows += 1
        self.served_versions[served.version] += 1
        development: Mapping[str, Any] = {
            "version": self.version,
            "application_id": row_id,
            "decision": expected.decision[i],
        }
        for name, value in development.items():
            if getattr(served, name) != value:
                self.note(row_id, name, value, getattr(served, name))
        self._compare_numbers(row_id, expected.pd[i], expected.score[i], served)
        self._compare_reasons(row_id, expected.reasons[i], served)
        if sum(self.mismatches.values()) > before:
            self.mismatched_rows += 1

    def _compare_numbers(self, row_id: str, pd_value: float, score: float, served: _Served) -> None:
        scale = max(abs(pd_value), abs(served.pd))
        relative = abs(pd_value - served.pd) / scale if scale > 0 else 0.0
        self.max_pd_relative = max(self.max_pd_relative, relative)
        if relative > PD_RELATIVE_TOLERANCE:
            self.note(row_id, "pd", pd_value, served.pd)
        if round(score, SCORE_DECIMALS) != round(served.score, SCORE_DECIMALS):
            self.note(row_id, "score", score, served.score)

    def _compare_reasons(self, row_id: str, codes: list[str], served: _Served) -> None:
        if not served.reasons and served.decision == "approve" and codes:
            self.reasons_not_served += 1  # not explained (serve.reasons_for: adverse)
            return
        self.reasons_compared += 1
        if served.reasons != codes:
            self.note(row_id, "reasons", codes, served.reasons)
