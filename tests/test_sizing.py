"""Sizing settings do what their help says (README's sizing rows)."""
from __future__ import annotations

from pathlib import Path

import pytest

from mraster import settings as st
from mraster.sim.exchange import SimExchange
from mraster.sim.market import SyntheticMarket
from mraster.strategy.sizing import BASE_SHARE, plan_order

RULES = SimExchange(SyntheticMarket(1, seed=3, manual=True, history=50)).rules
SYM = next(iter(RULES))


def plan(mult: float, **over) -> float:
    s = {**dict(st.load(environ={}, env_file=Path("/nonexistent"))), "ASTER_LEVERAGE": 20,
         "ASTER_EQUITY_FRACTION": 1.0, **over}
    price = 100.0
    o = plan_order(side="BUY", price=price, atr=1.0, equity=1_000_000.0, used_margin=0.0,
                   rules=RULES[SYM], mult=mult, max_leverage=20, s=s)
    assert o.reason is None, o.reason
    return o.notional


def test_raising_the_cap_never_shrinks_a_trade():
    for m in (0.5, 1.0, 2.0, 3.0, 5.0):
        assert plan(m, ASTER_SIZE_MULT_CAP=6.0) >= plan(m, ASTER_SIZE_MULT_CAP=3.0) * 0.999
        assert plan(m, ASTER_SIZE_MULT_CAP=1.0) <= plan(m, ASTER_SIZE_MULT_CAP=3.0) * 1.001


def test_the_floor_forces_at_least_the_base_size():
    base = plan(1.0)
    assert plan(0.2) < base * 0.5
    from mraster.strategy.sizing import size_multiplier
    s = {**dict(st.load(environ={}, env_file=Path("/nonexistent"))), "ASTER_SIZE_MULT_FLOOR": 1.0,
         "ASTER_CONFIDENCE_SIZING": False}
    assert size_multiplier("S", 0.0, s) >= 1.0


def test_an_order_never_exceeds_the_exchanges_largest_market_quantity():
    """A coin priced in millionths of a dollar: the planned size is more coins than one market
    order may hold (the exchange answers -4005); the order is cut to that largest quantity, with
    its risk and notional, and the simulator accepts it."""
    from dataclasses import replace
    from decimal import Decimal

    rules = replace(RULES[SYM], market_max_qty=Decimal("40"), max_qty=Decimal("40"))
    s = {**dict(st.load(environ={}, env_file=Path("/nonexistent"))), "ASTER_LEVERAGE": 20}
    o = plan_order(side="BUY", price=100.0, atr=1.0, equity=1_000_000.0, used_margin=0.0,
                   rules=rules, mult=1.0, max_leverage=20, s=s)
    assert o.reason is None and o.qty == Decimal("40")
    assert o.notional == pytest.approx(4_000.0) and o.risk_usdt == pytest.approx(40 * (100 - float(o.stop)))
    rules.check_order(o.qty, 100.0, market=True)  # what the exchange checks: no -4005


def test_the_default_notional_is_the_base_size_within_the_risk_budget():
    assert plan(1.0, ASTER_DEFAULT_NOTIONAL=5_000) == pytest.approx(5_000, rel=0.01)
    assert plan(2.0, ASTER_DEFAULT_NOTIONAL=5_000) == pytest.approx(10_000, rel=0.01)
    # risk budget: 1,000,000 × 0.006 at a 1-point stop on 100 = 600,000 notional at most
    budget = plan(3.0)
    assert budget == pytest.approx(1_000_000 * 0.006 / 1.0 * 100, rel=0.01)
    assert plan(1.0) == pytest.approx(budget * BASE_SHARE, rel=0.01)
    assert plan(3.0, ASTER_DEFAULT_NOTIONAL=10**8) == pytest.approx(budget, rel=0.01)


def test_the_advisor_sees_depth_imbalance_and_the_planned_orders_slippage():
    from mraster.strategy.orderbook import book_context

    bids = [["99.9", "2"], ["99.5", "3"], ["98.5", "10"]]
    asks = [["100.1", "1"], ["100.4", "4"], ["101.5", "10"]]
    c = book_context(bids, asks, "BUY", 3.0)  # walks 1 at 100.1 and 2 at 100.4
    assert c["depth_0.5pct"] == {"bid_qty": 5.0, "ask_qty": 5.0, "bid_quote": 498.3,
                                 "ask_quote": 501.7}
    assert c["depth_1pct"]["bid_qty"] == 5.0 and c["depth_1pct"]["ask_qty"] == 5.0
    assert c["imbalance_by_level"] == {"1": round(1 / 3, 4)}
    avg = (100.1 + 2 * 100.4) / 3
    assert c["slippage_bps"] == pytest.approx((avg / 100.1 - 1) * 1e4, abs=1e-3) and c["fillable"]
    sell = book_context(bids, asks, "SELL", 2.0)
    assert sell["slippage_bps"] == 0.0  # the best bid holds it all
    too_big = book_context(bids, asks, "BUY", 50.0)
    assert too_big["fillable"] is False and too_big["slippage_bps"] is None
    assert book_context([], asks, "BUY", 1.0) is None
