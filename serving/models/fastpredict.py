"""LightGBM prediction for one row in tens of microseconds, and for N rows in one call.

`Booster.predict` re-parses its parameters and builds a predictor on every call: about 110 µs
for one row, most of it set-up. LightGBM's C API has a "single row fast" pair that does the
set-up once (`LGBM_BoosterPredictForMatSingleRowFastInit`) and then only walks the trees
(`LGBM_BoosterPredictForMatSingleRowFast`). The Python package has no wrapper for it, so we call
it through the package's own library handle (`lightgbm.basic._LIB`) and the booster's private
`_handle`. That is why pyproject pins LightGBM's minor version, and why
tests/serving/test_fastpredict.py compares this path with `Booster.predict` on 10,000 rows: a
LightGBM upgrade that changes either private name or the C signature fails that test.

A FastPredictor owns one input buffer: use it from one thread at a time (the service calls it
from the event loop only).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Final

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _LIB, _safe_call

C_API_DTYPE_FLOAT64: Final = 1
C_API_PREDICT_NORMAL: Final = 0
C_API_PREDICT_RAW_SCORE: Final = 1


class FastPredictError(ValueError):
    """A booster the fast path cannot serve (e.g. multiclass), named with the reason."""


class FastPredictor:
    """One booster compiled for single-row calls; `predict_one` gives what `Booster.predict` does.

    `raw_score=False` (the default) returns the objective's transformed output (the probability
    for a binary model), which is what the bundle calibrators were fitted on.
    """

    def __init__(self, booster: lgb.Booster, *, raw_score: bool = False) -> None:
        if booster.num_model_per_iteration() != 1:
            raise FastPredictError(
                f"fast single-row prediction needs one output per row; this booster has "
                f"{booster.num_model_per_iteration()} (multiclass)"
            )
        self._booster = booster  # the C config points into the booster: keep it alive
        self.raw_score = raw_score
        self.num_features: int = booster.num_feature()
        self._config = ctypes.c_void_p()
        predict_type = C_API_PREDICT_RAW_SCORE if raw_score else C_API_PREDICT_NORMAL
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(predict_type),
                ctypes.c_int(0),  # start_iteration
                ctypes.c_int(-1),  # num_iteration: all (best_iteration is already cut at save)
                ctypes.c_int(C_API_DTYPE_FLOAT64),
                ctypes.c_int32(self.num_features),
                b"num_threads=1",
                ctypes.byref(self._config),
            )
        )
        self._row = (ctypes.c_double * self.num_features)()
        self._out = ctypes.c_double(0.0)
        self._out_len = ctypes.c_int64(0)
        self._fn = _LIB.LGBM_BoosterPredictForMatSingleRowFast
        self._args = (
            self._config,
            self._row,
            ctypes.byref(self._out_len),
            ctypes.byref(self._out),
        )

    def predict_one(self, row: Sequence[float]) -> float:
        """Score one encoded row (length `num_features`, NaN = missing)."""
        if len(row) != self.num_features:
            raise FastPredictError(f"row has {len(row)} values, model has {self.num_features}")
        self._row[:] = row
        if self._fn(*self._args) != 0:
            _safe_call(-1)  # raises LightGBMError with LightGBM's own message
        return self._out.value

    def predict_many(self, x: np.ndarray) -> np.ndarray:
        """Score a 2-d float64 matrix with one `Booster.predict` call: cheaper than a loop of
        single rows once there are more than a handful of rows."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise FastPredictError(
                f"matrix has shape {x.shape}, model needs (n, {self.num_features})"
            )
        if x.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        out = self._booster.predict(x, raw_score=self.raw_score, num_threads=1)
        return np.asarray(out, dtype=np.float64)

    def __del__(self) -> None:
        config = getattr(self, "_config", None)
        if config is not None and config.value:
            _LIB.LGBM_FastConfigFree(config)
            config.value = None
