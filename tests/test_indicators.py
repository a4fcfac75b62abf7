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


def test_the_bots_last_value_functions_equal_the_whole_series(data_dir):
    """features() uses the *_last functions on its 200-candle window; they must give the last
    value of the whole-series ones (on that window) at every position of real data."""
    from mraster.market.indicators import adx_last, atr_last, ema_last, rsi_last

    df = pd.read_csv(data_dir / "XRPUSDT-5m-futures.csv")
    h, l, c = (df[k].to_numpy(float) for k in ("high", "low", "close"))
    for end in range(200, len(c), 97):
        w = slice(end - 200, end)
        hw, lw, cw = h[w], l[w], c[w]
        for ours, ref in ((rsi_last(cw), rsi(cw)[-1]), (atr_last(hw, lw, cw), atr(hw, lw, cw)[-1]),
                          (adx_last(hw, lw, cw), adx(hw, lw, cw)[-1]), (ema_last(cw, 21), ema(cw, 21)[-1]),
                          (ema_last(cw[:-4], 55), ema(cw, 55)[-5])):
            assert ours == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("name", ["ETH_BTC-5m.csv", "XRPUSDT-5m-futures.csv"])
def test_many_windows_at_once_equal_each_window_alone(data_dir, name):
    """A backtest computes the indicators of thousands of windows as the rows of one matrix
    (ADX's running sums then go column by column across the rows); every row equals the same
    window computed alone, as the live bot computes it, to the last bit: full windows and
    shorter ones, in the backtest's chunks of 512 rows and in a few rows at a time."""
    from numpy.lib.stride_tricks import sliding_window_view as windows

    from mraster.market.indicators import (adx_from_moves, atr_from_moves, ema_last, moves,
                                           rsi_from_moves)

    df = pd.read_csv(data_dir / name)
    h, l, c = (df[k].to_numpy(float) for k in ("high", "low", "close"))
    mv = moves(h, l, c)
    for n in (200, 60):
        w = {k: windows(v, n - 1) for k, v in mv.items()}
        close = windows(c, n)
        each = {"rsi": lambda x: rsi_from_moves(w["gain"][x], w["loss"][x]),
                "atr": lambda x: atr_from_moves(w["tr"][x]),
                "adx": lambda x: adx_from_moves(w["pdm"][x], w["mdm"][x]),
                "ema21": lambda x: ema_last(close[x], 21), "ema55": lambda x: ema_last(close[x], 55)}
        rows = len(close)
        for key, f in each.items():
            for chunk in (512, 3):
                at = np.arange(0, rows, 5 if chunk == 512 else 211)
                bulk = np.concatenate([f(slice(a, a + chunk)) for a in range(0, rows, chunk)])
                alone = np.array([f(k) for k in at])
                assert np.array_equal(bulk[at], alone, equal_nan=True), (key, n, chunk)
                assert not np.isnan(alone).all(), key


def test_a_windows_indicators_do_not_depend_on_how_its_candles_lie_in_memory(data_dir):
    """The live bot computes each window from the columns of its parsed candle rows (strided
    arrays); a backtest from views into its whole history, starting at any address. The sums
    over a window (SIMD lanes for contiguous operands) must give the same bits however the
    window lies, or the backtest would drift from the live screen by a last bit."""
    from mraster.market.indicators import adx_last, atr_last, ema_last, rsi_last

    df = pd.read_csv(data_dir / "XRPUSDT-5m-futures.csv")
    h, l, c = (df[k].to_numpy(float) for k in ("high", "low", "close"))

    def placed(x: np.ndarray, how: int) -> np.ndarray:
        if how < 0:  # a column of rows, as the live client parses them
            rows = np.zeros((len(x), -how))
            rows[:, -how - 1] = x
            return rows[:, -how - 1]
        buf = np.empty(len(x) + 8)
        buf[how:how + len(x)] = x
        return buf[how:how + len(x)]

    for end in range(200, len(c), 389):
        w = slice(end - 200, end)
        seen = {(rsi_last(placed(c[w], k)), atr_last(*(placed(x[w], k) for x in (h, l, c))),
                 adx_last(*(placed(x[w], k) for x in (h, l, c))), ema_last(placed(c[w], k), 21),
                 ema_last(placed(c[w], k), 55)) for k in (*range(8), -2, -6)}
        assert len(seen) == 1, end
