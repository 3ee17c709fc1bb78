"""The floor of ``serve_vs_mlflow.py``: the least a FastAPI service can do per request.

One ``async`` endpoint that takes the encoded features as JSON, builds the row and calls
``booster.predict``; no auth, no logging, no metrics, no calibration, no reason codes. It is
the speed limit for any Python service around the same booster on the same uvicorn, so
creditops is measured against it. ``async def`` scores inline on the event loop (a ``def``
endpoint would pay a thread hand-off per request and make the floor slower).

Served by the benchmark with
``uvicorn --app-dir benchmarks --factory _floor_app:create_app``; the environment variable
``FLOOR_CONFIG`` names a JSON file ``{"model_file": ..., "features": [...]}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightgbm as lgb
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel


class FloorRequest(BaseModel):
    features: dict[str, float]


class FloorResponse(BaseModel):
    pd: float


def create_app() -> FastAPI:
    config = json.loads(Path(os.environ["FLOOR_CONFIG"]).read_text())
    booster = lgb.Booster(model_file=config["model_file"])
    names: list[str] = list(config["features"])
    app = FastAPI(title="floor: booster.predict behind FastAPI")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    async def predict(body: FloorRequest) -> FloorResponse:
        row = np.array([[body.features.get(n, np.nan) for n in names]], dtype=np.float64)
        return FloorResponse(pd=float(booster.predict(row)[0]))

    return app
