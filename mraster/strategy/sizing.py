"""Position size and bracket levels.

``ASTER_RISK_PER_TRADE`` is the most one trade may lose at its stop (before slippage). The base
size (multiplier 1) is ``ASTER_DEFAULT_NOTIONAL`` when set, else the size that risks a third of
that budget (``BASE_SHARE``); the size multiplier — the policy's bucket × confidence sizing,
clamped to [``ASTER_SIZE_MULT_FLOOR``, ``ASTER_SIZE_MULT_CAP``] — scales the base, and the result
is cut to the risk budget. So FLOOR 1.0 forces at least the base size, raising CAP never shrinks a
trade, and no multiplier or base notional can push a trade above the risk the user set.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

from mraster.exchange.rules import SymbolRules, bracket_rounding

BUCKET_MULT = {"S": 1.0, "M": 2.0, "L": 3.0}
BASE_SHARE = 1 / 3  # the base size risks a third of ASTER_RISK_PER_TRADE; an L trade all of it


def confidence_mult(conf: float, s: Mapping[str, Any]) -> float:
    if not s["ASTER_CONFIDENCE_SIZING"]:
        return 1.0
    conf = min(max(conf, 0.0), 1.0)
    lo, hi = s["ASTER_CONFIDENCE_SIZE_MIN"], s["ASTER_CONFIDENCE_SIZE_MAX"]
    curve = lo + (hi - lo) * conf ** s["ASTER_CONFIDENCE_SIZE_EXP"]
    blend = s["ASTER_CONFIDENCE_SIZE_BLEND"]
    return (1 - blend) * 1.0 + blend * curve


def size_multiplier(bucket: str, conf: float, s: Mapping[str, Any]) -> float:
    """Policy bucket (S/M/L) × confidence multiplier, clamped to [FLOOR, CAP]."""
    m = BUCKET_MULT.get(bucket, 1.0) * confidence_mult(conf, s)
    return min(max(m, s["ASTER_SIZE_MULT_FLOOR"]), s["ASTER_SIZE_MULT_CAP"])


@dataclass
class Order:
    qty: Decimal
    notional: float
    risk_usdt: float
    stop: Decimal
    take_profit: Decimal
    leverage: int
    reason: str | None = None  # a reason code when the trade must be skipped


def plan_order(*, side: str, price: float, atr: float, equity: float, used_margin: float,
               rules: SymbolRules, mult: float, max_leverage: int,
               s: Mapping[str, Any]) -> Order:
    """Risk-based quantity and bracket levels; a reason code instead when it cannot be done
    within the user's limits (never rounded up beyond the user's risk)."""
    lev = max(1, min(int(s["ASTER_LEVERAGE"]), int(max_leverage)))
    d = 1 if side == "BUY" else -1
    stop_dist = s["ASTER_SL_ATR_MULT"] * atr
    sl_dir, tp_dir = bracket_rounding(side)
    stop = rules.round_price(price - d * stop_dist, sl_dir)
    tp = rules.round_price(price + d * s["ASTER_TP_ATR_MULT"] * atr, tp_dir)
    if stop_dist <= 0 or stop <= 0:
        return Order(Decimal(0), 0, 0, stop, tp, lev, "no_signal")
    m = min(mult, s["ASTER_SIZE_MULT_CAP"])
    real_dist = abs(price - float(stop))
    budget = equity * s["ASTER_RISK_PER_TRADE"] / real_dist * price  # the most one trade may hold
    base = s["ASTER_DEFAULT_NOTIONAL"] or budget * BASE_SHARE
    notional = min(base * m, budget)
    if s["ASTER_MAX_NOTIONAL_USDT"] > 0:
        notional = min(notional, s["ASTER_MAX_NOTIONAL_USDT"])
    margin_left = equity * s["ASTER_EQUITY_FRACTION"] - used_margin
    if margin_left <= 0:
        return Order(Decimal(0), 0, 0, stop, tp, lev, "exposure")
    notional = min(notional, margin_left * lev)
    qty = rules.round_qty(notional / price, market=True)
    if rules.market_max_qty and qty > rules.market_max_qty:
        # the exchange's largest market order (a coin priced in millionths of a dollar reaches
        # it): a smaller trade than planned, never one the exchange refuses (-4005) every scan
        qty = rules.round_qty(rules.market_max_qty, market=True)
    real_notional = float(qty) * price
    if qty <= 0 or qty < rules.market_min_qty or real_notional < float(rules.min_notional):
        return Order(qty, real_notional, 0, stop, tp, lev, "min_notional")
    return Order(qty, real_notional, float(qty) * real_dist, stop, tp, lev)
