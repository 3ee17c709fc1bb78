"""LightGBM's single-row prediction API, for the decision service's one-applicant requests.

``Booster.predict`` is built for matrices: for one row it spends about 20 us in Python
(input checks, a predictor object, parameter strings) around about 5 us of C++. LightGBM's C
API has a path made for this case, ``LGBM_BoosterPredictForMatSingleRowFast``: the
configuration (prediction type, thread count, row width) is parsed once into a "fast
config" handle and every call only passes the row. The Python package does not wrap it, so
this module calls it through the package's own ctypes library handle.

It is an optimisation only: :meth:`SingleRowPredictor.create` returns ``None`` when the
installed LightGBM lacks the entry points (the caller then uses ``Booster.predict``), and
the tests check it returns exactly what ``Booster.predict(raw_score=True)`` returns.
A fast-config handle holds per-call scratch buffers, so calls are serialised with a lock.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import weakref
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

_PREDICT_RAW_SCORE = 1  # C_API_PREDICT_RAW_SCORE in LightGBM's c_api.h
_DTYPE_FLOAT64 = 1  # C_API_DTYPE_FLOAT64


def _library() -> Any | None:
    lib = getattr(lgb.basic, "_LIB", None)
    needed = (
        "LGBM_BoosterPredictForMatSingleRowFastInit",
        "LGBM_BoosterPredictForMatSingleRowFast",
        "LGBM_FastConfigFree",
        "LGBM_GetLastError",
    )
    if lib is None or not all(hasattr(lib, name) for name in needed):
        return None
    return lib


def _gil_holding(lib: Any) -> Any:
    """The same library, called WITHOUT releasing the GIL (``ctypes.PyDLL``).

    A ctypes call through a ``CDLL`` releases the GIL and must take it back afterwards; when
    another thread (the decision-log writer) took it meanwhile, a 5 us prediction waits for
    that thread. The single-row call is far shorter than a GIL hand-off, so it keeps the GIL.
    """
    return ctypes.PyDLL(lib._name, handle=lib._handle)


def _free(lib: Any, handle: ctypes.c_void_p) -> None:
    lib.LGBM_FastConfigFree(handle)


class SingleRowPredictor:
    """Raw scores (log-odds) of one row at a time, one thread, same trees as ``predict``."""

    def __init__(self, lib: Any, booster: lgb.Booster, handle: ctypes.c_void_p) -> None:
        self._lib = lib
        predict = _gil_holding(lib).LGBM_BoosterPredictForMatSingleRowFast
        # Declared, so that plain integer addresses can be passed: building a ctypes pointer
        # object per row cost more than the prediction.
        predict.argtypes = [
            ctypes.c_void_p,  # fast config handle
            ctypes.c_void_p,  # the row's float64 values
            ctypes.POINTER(ctypes.c_int64),  # out: number of results
            ctypes.c_void_p,  # out: the raw score (float64)
        ]
        predict.restype = ctypes.c_int
        self._predict = predict
        self._booster = booster  # keeps the booster (and its C handle) alive
        self._handle = handle
        self._width = booster.num_feature()
        self._out_len = ctypes.c_int64(0)
        self._out_len_ref = ctypes.pointer(self._out_len)
        self._lock = threading.Lock()
        weakref.finalize(self, _free, lib, handle)

    @classmethod
    def create(cls, booster: lgb.Booster) -> SingleRowPredictor | None:
        """A predictor for ``booster``, or None when this LightGBM cannot provide one."""
        lib = _library()
        if lib is None:
            return None
        iterations = booster.best_iteration if booster.best_iteration > 0 else -1
        handle = ctypes.c_void_p()
        status = lib.LGBM_BoosterPredictForMatSingleRowFastInit(
            booster._handle,  # the package exposes no public handle
            ctypes.c_int(_PREDICT_RAW_SCORE),
            ctypes.c_int(0),  # start iteration
            ctypes.c_int(iterations),
            ctypes.c_int(_DTYPE_FLOAT64),
            ctypes.c_int32(booster.num_feature()),
            ctypes.c_char_p(b"num_threads=1"),
            ctypes.byref(handle),
        )
        if status != 0 or booster.num_model_per_iteration() != 1:
            log.info("LightGBM single-row fast path unavailable; using Booster.predict")
            if status == 0:
                _free(lib, handle)
            return None
        return cls(lib, booster, handle)

    def raw_scores(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The raw scores of the rows of ``x`` (shape ``(rows, n_features)``), one C call each
        (for a few rows; ``Booster.predict`` is the better choice for many)."""
        data = np.ascontiguousarray(x, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != self._width:
            raise ValueError(f"expected {self._width} features, got shape {data.shape}")
        out = np.empty(data.shape[0], dtype=np.float64)
        row_bytes, out_bytes = data.strides[0], out.itemsize
        row_at, out_at = data.ctypes.data, out.ctypes.data
        predict, handle, out_len = self._predict, self._handle, self._out_len_ref
        with self._lock:
            for i in range(data.shape[0]):
                status = predict(handle, row_at + i * row_bytes, out_len, out_at + i * out_bytes)
                if status != 0:
                    message = self._lib.LGBM_GetLastError()  # restype c_char_p, set by lightgbm
                    text = message.decode() if isinstance(message, bytes) else str(message)
                    raise lgb.basic.LightGBMError(text)
        return out
