"""The screen: every check a symbol passes before the sentinel, the entry gate and the policy.

Market hygiene, the RSI signal, the side's funding and non-arbitrage checks and the expected
edge, in that order; the first failing check names the reason. The same formulas take one
symbol's numbers or arrays: the engine screens all its symbols of one moment at once
(``screen_each``), a backtest a symbol's whole history at once to find the moments where the
policy has something to decide.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

import numpy as np

from mraster.strategy.elementwise import many
from mraster.strategy.filters import (Snapshot, first_reason, market_filters, reason_codes,
                                      reason_names, side_filters, side_names, unless)
from mraster.strategy.signals import Features, expected_r, rsi_signal, win_probability

MARKET_REASONS = frozenset({"min_qvol", "spread", "wicky"})
SIGNAL_REASONS = frozenset({"no_signal", "trend_misaligned"})


@dataclass
class Screen:
    """One screen's answer; of arrays, reasons and sides are a byte per row, indices into
    ``filters.REASON_CODES`` and ``filters.SIDE_CODES``."""

    reason: Any      # None when the symbol goes on to the gate and the policy
    side: Any        # BUY / SELL once the signal fired, else None
    win_prob: Any
    expected_r: Any


def _first_of(*reasons: Any) -> Any:
    """The first reason given (None: none); of arrays, the first nonzero code of each row (a
    check answering one name for every row counts as that name's code in each)."""
    if not many(*reasons):
        return next((r for r in reasons if r is not None), None)
    out = None
    for r in reversed(reasons):
        if r is not None:  # a check left out (no array) gives no reason
            r = reason_codes(r)
            out = r if out is None else np.where(r != 0, r, out)
    return out


def edge(f: Features, snap: Snapshot, s: Mapping[str, Any], side: Any) -> tuple[Any, Any]:
    """The prior win probability and the expected R of a trade on ``side``."""
    p = win_probability(f, side)
    return p, expected_r(p, s["ASTER_SL_ATR_MULT"], s["ASTER_TP_ATR_MULT"], f.atr, f.price,
                         snap.spread, snap.funding, side)


def screen(f: Features, snap: Snapshot, s: Mapping[str, Any]) -> Screen:
    sig = rsi_signal(f, s)
    p, er = edge(f, snap, s, sig.side)
    reason = _first_of(market_filters(snap, f.wickiness, s), unless(sig.reason, "signal"),
                       side_filters(snap, sig.side, s),
                       first_reason(("edge_r", er < s["ASTER_MIN_EDGE_R"])))
    return Screen(reason, sig.side, p, er)


BULK_FROM = 12  # pairs from which one array screen is faster than a screen of each
_FEATURES = tuple(x.name for x in fields(Features))
_SNAPSHOT = tuple(x.name for x in fields(Snapshot))


def screen_each(pairs: Sequence[tuple[Features, Snapshot]], s: Mapping[str, Any]) -> list[Screen]:
    """``screen`` of each (features, quotes) pair, worked out as one array screen: the live cycle
    screens its whole universe at once (a symbol's screen one at a time was a fifth of a warm
    cycle's work). Equal to ``screen`` of each pair, as the bulk history screen is; the answers
    are plain Python values. A few pairs are screened one by one: the array screen's fixed cost
    (about 0.2 ms) is that of ten scalar screens."""
    if len(pairs) < BULK_FROM:
        return [screen(f, snap, s) for f, snap in pairs]
    f = Features(**{k: np.array([getattr(p[0], k) for p in pairs]) for k in _FEATURES})
    snap = Snapshot(**{k: np.array([getattr(p[1], k) for p in pairs], dtype=float)
                       for k in _SNAPSHOT})
    sc = screen(f, snap, s)
    return [Screen(*one) for one in zip(reason_names(sc.reason).tolist(),
                                        side_names(sc.side).tolist(),
                                        sc.win_prob.tolist(), sc.expected_r.tolist())]


def policy_context(f: Features, snap: Snapshot, sc: Screen) -> dict[str, Any]:
    """What the policy's features are built from, for a candidate the screen passed (numbers, or
    arrays of many): one definition for the engine and a backtest's bulk verdicts."""
    return {**vars(f), "side": sc.side, "spread": snap.spread, "funding": snap.funding,
            "premium_gap": snap.premium_gap, "quote_volume": snap.quote_volume,
            "win_prob": sc.win_prob, "expected_r": sc.expected_r}
