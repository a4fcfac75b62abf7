"""Performance figures a trader reads first, from closed trades and the equity curve.

Pure functions, shared by the dashboard and the reports, so both always agree.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence


def trade_stats(trades: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Count, win rate, profit factor (gross win / gross loss; None without losses), expectancy
    in R and total PnL (fees and funding included, as booked)."""
    pnls = [float(t.get("pnl") or 0.0) for t in trades]
    rs = [float(t.get("r") or 0.0) for t in trades]
    if not pnls:
        return {"trades": 0, "wins": 0, "losses": 0, "win_rate": None, "profit_factor": None,
                "expectancy_r": None, "total_pnl": 0.0, "avg_pnl": None}
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p <= 0]
    gross_loss = -sum(losses)
    return {"trades": len(pnls), "wins": len(wins), "losses": len(losses),
            "win_rate": len(wins) / len(pnls),
            "profit_factor": (sum(wins) / gross_loss) if gross_loss > 0 else None,
            "expectancy_r": sum(rs) / len(rs), "total_pnl": sum(pnls),
            "avg_pnl": sum(pnls) / len(pnls)}


def max_drawdown(curve: Sequence[Sequence[float]]) -> dict[str, float | None]:
    """Largest peak-to-trough fall of an equity curve [[time, equity], ...], in USDT and as a
    fraction of the peak."""
    peak, worst, worst_frac = -math.inf, 0.0, 0.0
    for _, eq in curve:
        peak = max(peak, eq)
        worst = max(worst, peak - eq)
        if peak > 0:
            worst_frac = max(worst_frac, (peak - eq) / peak)
    if not curve:
        return {"max_drawdown": None, "max_drawdown_pct": None}
    return {"max_drawdown": worst, "max_drawdown_pct": worst_frac}
