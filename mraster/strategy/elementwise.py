"""One formula for one number or for many.

The decision functions run on a single symbol in the live loop and on whole histories (numpy
arrays) in a backtest. ``ops(...)`` hands them numpy for arrays and, for plain numbers, a
stand-in with numpy's names at Python speed. The results are the same: comparisons, min/max and
abs are exact either way, and tanh goes through numpy in both.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np


class _One:
    @staticmethod
    def where(cond: Any, a: Any, b: Any) -> Any:
        return a if cond else b

    @staticmethod
    def clip(x: float, lo: float, hi: float) -> float:
        return min(max(x, lo), hi)

    @staticmethod
    def logical_not(x: Any) -> bool:
        return not x

    @staticmethod
    def logical_and(a: Any, b: Any) -> bool:
        return bool(a) and bool(b)

    @staticmethod
    def tanh(x: float) -> float:
        return float(np.tanh(x))

    @staticmethod
    def errstate(**_: str) -> contextlib.nullcontext:
        return contextlib.nullcontext()

    maximum = staticmethod(max)
    abs = staticmethod(abs)
    isnan = staticmethod(math.isnan)


ONE = _One()


def many(*values: Any) -> bool:
    for v in values:  # (a loop: asked a dozen times per symbol, a generator cost twice as much)
        if isinstance(v, np.ndarray) and v.ndim:
            return True
    return False


def ops(*values: Any) -> Any:
    """numpy when any value is an array, else the one-number stand-in."""
    return np if many(*values) else ONE
