"""Dynamic batching on the event loop: same decisions as one by one, errors kept apart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from creditops.errors import InvalidInputError
from creditops.features.dataset import load_training_data
from creditops.features.spec import load_spec
from creditops.modeling.training import TrainOptions, train_model
from creditops.registry.records import VersionInfo
from creditops.services.decisions import (
    Application,
    DecisionBatcher,
    DecisionResult,
    decide,
)
from creditops.services.serving import ServingSlot

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def slot_and_apps() -> tuple[ServingSlot, list[Application]]:
    spec = load_spec(DATA / "specs/taiwan.yaml")
    data = load_training_data(DATA / "taiwan_credit_card.csv", spec, max_dirty_share=0.01)
    model = train_model(data, spec, TrainOptions()).model
    info = VersionInfo("taiwan", "1", ("production",), "run", datetime.now(UTC), {}, {}, "")
    frame = data.frame.head(40)
    apps = [
        Application(
            f"a{i}",
            {f: (None if v != v else v) for f, v in row.items() if f in model.spec.features},
        )
        for i, row in enumerate(frame.to_dict(orient="records"))
    ]
    return ServingSlot("taiwan", "1", model, info), apps


def _same(batched: DecisionResult, alone: DecisionResult) -> None:
    assert batched.application_id == alone.application_id
    assert batched.pd == alone.pd and batched.score == alone.score
    assert batched.decision == alone.decision
    assert batched.reason_dicts == alone.reason_dicts


def test_concurrent_requests_share_batches_and_get_their_own_decisions(
    slot_and_apps: tuple[ServingSlot, list[Application]],
) -> None:
    slot, apps = slot_and_apps
    batcher = DecisionBatcher("adverse", max_rows=16)

    async def scenario() -> list[DecisionResult]:
        return await asyncio.gather(*(batcher.decide(slot, a, suspended=False) for a in apps))

    results = asyncio.run(scenario())
    assert batcher.rows == len(apps) == 40
    assert batcher.batches == 3  # 40 requests in one turn: batches of 16, 16 and 8
    assert any(r.decision != "approve" for r in results)  # reasons were computed too
    for app, result in zip(apps, results, strict=True):
        _same(result, decide(slot, [app], reasons="adverse", suspended=False)[0])


def test_a_failing_applicant_fails_alone(
    slot_and_apps: tuple[ServingSlot, list[Application]],
) -> None:
    slot, apps = slot_and_apps
    bad = Application("bad", {**apps[0].features, "limit_bal": "a lot"})
    batcher = DecisionBatcher("adverse", max_rows=16)

    async def scenario() -> list[Any]:
        calls = [batcher.decide(slot, a, suspended=False) for a in [apps[1], bad, apps[2]]]
        return await asyncio.gather(*calls, return_exceptions=True)

    first, error, third = asyncio.run(scenario())
    assert isinstance(error, InvalidInputError) and error.field == "limit_bal"
    _same(first, decide(slot, [apps[1]], reasons="adverse", suspended=False)[0])
    _same(third, decide(slot, [apps[2]], reasons="adverse", suspended=False)[0])


def test_suspended_and_live_requests_are_batched_apart(
    slot_and_apps: tuple[ServingSlot, list[Application]],
) -> None:
    slot, apps = slot_and_apps
    batcher = DecisionBatcher("adverse", max_rows=16)

    async def scenario() -> list[DecisionResult]:
        return await asyncio.gather(
            *(batcher.decide(slot, a, suspended=i % 2 == 0) for i, a in enumerate(apps[:6]))
        )

    results = asyncio.run(scenario())
    assert batcher.batches == 2
    for i, result in enumerate(results):
        assert result.suspended == (i % 2 == 0)
        if result.suspended:
            assert result.decision == "review" and result.reasons[0].code == "SUSPENDED"


def test_requests_arriving_over_several_loop_turns_share_a_batch(
    slot_and_apps: tuple[ServingSlot, list[Application]],
) -> None:
    """While applicants keep arriving turn after turn, the batch waits for them; once a turn
    brings none it is decided. With no wait allowed, each turn's arrivals go alone."""
    slot, apps = slot_and_apps

    async def one_per_turn(batcher: DecisionBatcher, count: int) -> list[DecisionResult]:
        tasks = []
        for app in apps[:count]:
            tasks.append(asyncio.ensure_future(batcher.decide(slot, app, suspended=False)))
            await asyncio.sleep(0)  # the next applicant arrives one loop turn later
        return await asyncio.gather(*tasks)

    patient = DecisionBatcher("adverse", max_rows=16, max_wait_ms=1000.0)
    results = asyncio.run(one_per_turn(patient, 6))
    assert (patient.batches, patient.rows) == (1, 6)
    for app, result in zip(apps[:6], results, strict=True):
        _same(result, decide(slot, [app], reasons="adverse", suspended=False)[0])

    eager = DecisionBatcher("adverse", max_rows=16, max_wait_ms=0.0)
    asyncio.run(one_per_turn(eager, 6))
    assert eager.rows == 6 and eager.batches >= 3  # no waiting: a batch per turn or two


def test_the_wait_is_bounded_while_applicants_keep_arriving(
    slot_and_apps: tuple[ServingSlot, list[Application]],
) -> None:
    slot, apps = slot_and_apps
    batcher = DecisionBatcher("adverse", max_rows=1000, max_wait_ms=5.0)

    async def steady_stream() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = asyncio.ensure_future(batcher.decide(slot, apps[0], suspended=False))
        stream = []
        while not first.done():  # one new applicant every turn, never a quiet turn
            app = apps[(len(stream) + 1) % len(apps)]
            stream.append(asyncio.ensure_future(batcher.decide(slot, app, suspended=False)))
            await asyncio.sleep(0)
        waited = loop.time() - started
        await asyncio.gather(*stream)
        return waited

    waited = asyncio.run(steady_stream())
    assert batcher.batches >= 1 and batcher.rows > 1
    assert 0.005 <= waited < 0.5  # decided once 5 ms had passed, not when the stream ended
