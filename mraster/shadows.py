"""Shadow trades: signals the alpha model vetoed, followed as if they had been taken, so that the
model keeps learning while it says no.

The alpha model learns only from outcomes. Taught by closed trades alone, a model that vetoes
every signal after a losing start never sees another outcome and never changes its mind: over
the seven 5m pairs with the defaults, the bot traded for 19 hours and then vetoed 9,290 signals
in 18 days. Each vetoed signal now opens a shadow with the stop and take-profit the trade would
have had (``ASTER_SL_ATR_MULT`` / ``ASTER_TP_ATR_MULT`` ATRs from the signal's close); the first
later candle of the signal timeframe that reaches one of them settles it, and the model learns
+TP/SL in R for the target, −1 for the stop (a candle that reaches both counts as the stop: its
path inside is unknown), both net of fees and the spread. No order, no money: only the
model's weights change.

The same numbers everywhere: live and in paper mode from the closed candles the cycle reads, in a
backtest from the replay's candles, whether the engine runs the step or the backtest skips it
(``backtest.idle`` settles the shadows of skipped steps with these functions).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from mraster.domain import is_symbol
from mraster.strategy.signals import TAKER_FEE

MAX_AGE = 96  # candles of the signal timeframe a shadow waits for its stop or target
MAX_OPEN = 2000  # shadows followed at once (the oldest go first)
LEVELS = ("stop", "tp", "r_win", "r_loss")


def open_shadow(symbol: str, side: str, signal_t: int, price: float, atr: float,
                spread: float, x: Sequence[float], s: Mapping[str, Any]) -> dict[str, Any] | None:
    """The shadow of a signal vetoed at the candle opened at ``signal_t`` (None without a
    usable ATR: the trade would have had no stop either). Its R are net of what a trade pays,
    as the edge counts it: taker fees both ways and the spread, in R of the stop distance."""
    if not (atr > 0 and price > 0):
        return None
    sign = 1 if side == "BUY" else -1
    sl, tp = s["ASTER_SL_ATR_MULT"], s["ASTER_TP_ATR_MULT"]
    cost = (2 * TAKER_FEE + spread) * price / (sl * atr)
    return {"symbol": symbol, "side": side, "t": int(signal_t),
            "stop": price - sign * sl * atr, "tp": price + sign * tp * atr,
            "r_win": tp / sl - cost, "r_loss": -1.0 - cost,
            "x": np.asarray(x, dtype=float).tolist()}  # plain floats: saved with the state as is


def settle(sh: Mapping[str, Any], t: np.ndarray, h: np.ndarray, l: np.ndarray,
           interval_ms: int) -> tuple[int, float | None] | None:
    """(when, R) once the closed candles ``t``/``h``/``l`` (open times ascending) settle the
    shadow: the close time of the candle that reached the stop (R −1) or the target (R
    ``r_win``), or of its ``MAX_AGE``-th candle with neither (R None: it expired, nothing to
    learn). None while neither has happened. When the candles no longer reach back to the signal
    (a bot that was off for longer than its window), the shadow expires."""
    if not len(t):
        return None
    if int(t[0]) > sh["t"]:  # the candles since the signal are no longer all here
        return int(t[-1]) + interval_ms, None
    a = int(np.searchsorted(t, sh["t"], side="right"))
    b = min(len(t), a + MAX_AGE)
    hi, lo = h[a:b], l[a:b]
    if sh["side"] == "BUY":
        stop, win = lo <= sh["stop"], hi >= sh["tp"]
    else:
        stop, win = hi >= sh["stop"], lo <= sh["tp"]
    hit = np.flatnonzero(stop | win)
    if len(hit):
        k = int(hit[0])
        return int(t[a + k]) + interval_ms, float(sh["r_loss"] if stop[k] else sh["r_win"])
    if b - a == MAX_AGE:
        return int(t[b - 1]) + interval_ms, None
    return None


def keep(shadows: list[dict[str, Any]], new: dict[str, Any]) -> bool:
    """Add ``new`` unless the same signal (symbol and candle) is followed already; past
    ``MAX_OPEN`` the oldest signal goes (by candle, then symbol: the engine evaluates symbols
    by volume, so the order they were opened in is not the same in every run)."""
    if any(o["symbol"] == new["symbol"] and o["t"] == new["t"] for o in shadows):
        return False
    shadows.append(new)
    if len(shadows) > MAX_OPEN:
        shadows.remove(min(shadows, key=lambda o: (o["t"], o["symbol"])))
    return True


def restore(saved: Any, width: int) -> tuple[list[dict[str, Any]], int]:
    """The open shadows a state file kept, and how many were left out: one that is not whole,
    names no exchange symbol, or whose features do not fit the policy's ``width`` (another
    version's features). A shadow only teaches, so a lost one costs a lesson; a wrong one would
    teach the model nonsense. As ``keep`` would: each signal once, the newest ``MAX_OPEN``
    (sorted once, so a file holding very many costs no more than reading it)."""
    rows = saved if isinstance(saved, list) else []
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for sh in rows:
        try:
            x = np.asarray(sh["x"], dtype=float)
            one = {"symbol": sh["symbol"], "side": sh["side"], "t": int(sh["t"]),
                   **{k: float(sh[k]) for k in LEVELS}, "x": x.tolist()}
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
        if is_symbol(one["symbol"]) and \
                one["side"] in ("BUY", "SELL") and x.shape == (width,) and \
                np.isfinite(x).all() and np.isfinite([one[k] for k in LEVELS]).all():
            out.setdefault((one["symbol"], one["t"]), one)
    newest = set(sorted(out, key=lambda k: (k[1], k[0]))[-MAX_OPEN:])
    kept = [sh for key, sh in out.items() if key in newest]
    return kept, len(rows) - len(kept)


def teach(policy: Any, lessons: list[tuple[int, dict[str, Any], float]]) -> None:
    """Teach ``policy`` the settled shadows ``(when, shadow, R)`` in one order everywhere: by
    when they settled, then by signal candle and symbol."""
    for _, sh, r in sorted(lessons, key=lambda k: (k[0], k[1]["t"], k[1]["symbol"])):
        policy.learn_shadow(sh["x"], r)
