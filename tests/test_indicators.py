"""Our numpy indicators against TA-Lib (the reference implementation) on real candles."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from mraster.market.indicators import adx, atr, ema, rsi


@pytest.mark.parametrize("name", ["ETH_BTC-5m.csv", "ADA_BTC-5m.csv", "XRPUSDT-5m-futures.csv"])
def test_indicators_equal_talib(data_dir, name):
    df = pd.read_csv(data_dir / name)
    h, l, c = (df[k].to_numpy(float) for k in ("high", "low", "close"))
    pairs = {"rsi": (rsi(c, 14), talib.RSI(c, 14)), "atr": (atr(h, l, c, 14), talib.ATR(h, l, c, 14)),
             "adx": (adx(h, l, c, 14), talib.ADX(h, l, c, 14)),
             "ema21": (ema(c, 21), talib.EMA(c, 21)), "ema55": (ema(c, 55), talib.EMA(c, 55))}
    for key, (ours, ref) in pairs.items():
        assert np.array_equal(np.isnan(ours), np.isnan(ref)), f"{key}: warm-up differs"
        m = ~np.isnan(ref)
        rel = np.abs(ours[m] - ref[m]) / np.maximum(np.abs(ref[m]), 1e-12)
        assert rel.max() < 1e-6, key


def test_short_series_are_all_nan():
    x = np.arange(10, dtype=float)
    assert np.isnan(rsi(x, 14)).all() and np.isnan(atr(x, x, x, 14)).all()
