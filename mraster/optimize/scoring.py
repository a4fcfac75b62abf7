"""Objectives a trader understands, from one backtest; and the constraints a trial must meet.

Every objective is "higher is better". A trial that breaks a constraint keeps its score, and
Optuna's constrained TPE steers away from it; it is never chosen as the best.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mraster.backtest.report import ratios
from mraster.metrics import max_drawdown, trade_stats

OBJECTIVES = {
    "expectancy": "expectancy in R per trade",
    "sortino": "Sortino ratio of the equity curve (annualised)",
    "profit_factor": "profit factor (gross win ÷ gross loss)",
    "calmar": "Calmar ratio (annualised return ÷ maximum drawdown)",
}
CLIP = 100.0  # keeps one lucky window from dominating TPE's model


@dataclass(frozen=True)
class Score:
    value: float
    trades: int
    max_drawdown_pct: float
    total_return: float
    metrics: dict[str, Any]

    def violations(self, max_dd: float, min_trades: int) -> list[float]:
        """Optuna's form: each entry ≤ 0 when met."""
        return [self.max_drawdown_pct - max_dd, float(min_trades - self.trades)]


def _clip(x: float | None) -> float:
    if x is None or not math.isfinite(x):
        return 0.0
    return max(-CLIP, min(CLIP, float(x)))


def score(result: Any, objective: str) -> Score:
    """``result``: a ``BacktestResult``."""
    trades = result.state.get("history", [])
    curve = result.equity
    stats = trade_stats(trades)
    dd = max_drawdown(curve)["max_drawdown_pct"] or 0.0
    start, end = (curve[0][1], curve[-1][1]) if curve else (1.0, 1.0)
    ret = end / start - 1 if start else 0.0
    days = max(1e-9, (result.end_ms - result.start_ms) / 86_400_000)
    annual = (1 + ret) ** (365 / days) - 1 if ret > -1 else -1.0
    metrics = {"expectancy": stats["expectancy_r"] or 0.0,
               "sortino": ratios(curve, 365 * 288)["sortino"],
               "profit_factor": (stats["profit_factor"] if stats["profit_factor"] is not None
                                 else (CLIP if stats["wins"] else 0.0)),
               "calmar": annual / dd if dd > 0 else (CLIP if ret > 0 else 0.0),
               "win_rate": stats["win_rate"], "total_pnl": stats["total_pnl"]}
    return Score(_clip(metrics[objective]), stats["trades"], dd, ret, metrics)
