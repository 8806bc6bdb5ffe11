"""Score rows with a loaded LightGBM booster by one C call, prepared once per model.

``lightgbm.Booster.predict`` rebuilds its predictor on every call (an
``_InnerPredictor``, its parameter string, checks of the data's type): at
the ranker's serving size, a few dozen rows per answer, that costs about
as much again as the trees themselves. ``BoosterScorer`` prepares the call
to the same C function, ``LGBM_BoosterPredictForMat``, once, and makes it
with the same arguments ``Booster.predict(rows, num_threads=1)`` passes, so
the scores are the same numbers (tests/models/test_booster_scoring.py).
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

# LightGBM's C API constants (c_api.h): float64 data, row-major, normal prediction.
_FLOAT64 = 1
_ROW_MAJOR = 1
_PREDICT_NORMAL = 0
# What Booster.predict(..., num_threads=1) passes as its prediction parameters.
_PARAMETERS = b"num_threads=1"


def _reference(values: np.ndarray) -> Any:
    """Return a ctypes reference to a writable float64 array's first value.

    Through the buffer protocol: a quarter of what ``ndarray.ctypes.data``
    costs, paid twice per answer.
    """
    return ctypes.byref(ctypes.c_double.from_buffer(values))  # type: ignore[arg-type]


class BoosterScorer:
    """Scores rows with a LightGBM booster as ``booster.predict(rows, num_threads=1)`` does.

    Args:
        booster: A loaded ``lightgbm.Booster``; the scorer keeps it alive.
    """

    def __init__(self, booster: Any) -> None:
        from lightgbm.basic import _LIB  # the library lightgbm loaded

        self.booster = booster
        self._handle = booster._handle.value
        self._features = booster.num_feature()
        # The iterations Booster.predict scores with from the first one (0: all).
        self._iterations = booster.best_iteration
        # The same library under a prototype of our own: declaring argument
        # types on lightgbm's function object would change how lightgbm calls it.
        self._library = ctypes.CDLL(_LIB._name)
        predict = self._library.LGBM_BoosterPredictForMat
        predict.restype = ctypes.c_int
        predict.argtypes = [
            ctypes.c_void_p,  # booster handle
            ctypes.c_void_p,  # data
            ctypes.c_int,  # data type
            ctypes.c_int32,  # rows
            ctypes.c_int32,  # columns
            ctypes.c_int,  # row-major
            ctypes.c_int,  # prediction type
            ctypes.c_int,  # start iteration
            ctypes.c_int,  # iterations
            ctypes.c_char_p,  # parameters
            ctypes.POINTER(ctypes.c_int64),  # scores written
            ctypes.c_void_p,  # scores
        ]
        self._predict = predict

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """Return the booster's score of each row (float64, one per row).

        Args:
            rows: (n, the booster's number of features) values.

        Raises:
            ValueError: The rows have another number of columns, or LightGBM
                refused them (its message).
        """
        if rows.dtype != np.float64 or not (rows.flags.c_contiguous and rows.flags.writeable):
            # (A writable copy: ctypes takes the address of a writable buffer only.)
            rows = np.array(rows, dtype=np.float64, order="C")
        if rows.ndim != 2 or rows.shape[1] != self._features:
            raise ValueError(f"rows of shape {rows.shape}; the booster scores {self._features}")
        out = np.empty(len(rows))
        if len(rows) == 0:
            return out
        written = ctypes.c_int64(0)
        failed = self._predict(
            self._handle,
            _reference(rows),
            _FLOAT64,
            len(rows),
            self._features,
            _ROW_MAJOR,
            _PREDICT_NORMAL,
            0,
            self._iterations,
            _PARAMETERS,
            ctypes.byref(written),
            _reference(out),
        )
        if failed or written.value != len(rows):
            from lightgbm.basic import _LIB

            raise ValueError(
                f"LightGBM could not score the rows: {_LIB.LGBM_GetLastError().decode()}"
            )
        return out
