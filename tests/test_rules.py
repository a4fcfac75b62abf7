from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings, strategies as st

from mraster.exchange.rules import RuleViolation, SymbolRules, bracket_rounding

TICKS = [Decimal(x) for x in ("0.00000001", "0.0001", "0.001", "0.01", "0.1", "0.5", "1", "10")]
STEPS = [Decimal(x) for x in ("0.001", "0.01", "0.1", "1", "10", "100")]


def make(tick, step, min_notional=Decimal(5)):
    return SymbolRules("XUSDT", tick=tick, step=step, min_qty=step, max_qty=Decimal(10**9),
                       market_step=step, market_min_qty=step, market_max_qty=Decimal(10**9),
                       min_notional=min_notional, min_price=tick)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TICKS), st.sampled_from(STEPS),
       st.floats(min_value=1e-6, max_value=1e6), st.floats(min_value=0, max_value=1e7),
       st.sampled_from(["down", "up", "nearest"]))
def test_rounded_orders_pass_the_rules_or_are_refused(tick, step, price, qty, direction):
    r = make(tick, step)
    p = r.round_price(price, direction)
    q = r.round_qty(qty)
    assert q <= Decimal(str(qty))  # never rounded up beyond the intended size
    if direction == "down":
        assert p <= Decimal(str(price))
    if direction == "up":
        assert p >= Decimal(str(price))
    try:
        r.check_order(q, p)
    except RuleViolation as exc:  # refused: only for sizes or prices the rules cannot represent
        assert exc.code in (-4001, -4003, -4004, -4013, -4164)
        if exc.code == -4164:
            assert q * p < r.min_notional


def test_bracket_rounding_is_protective():
    assert bracket_rounding("LONG") == ("down", "up")
    assert bracket_rounding("SELL") == ("up", "down")
    r = make(Decimal("0.01"), Decimal("0.1"))
    assert r.round_price("100.019", "down") == Decimal("100.01")
    assert r.round_price("100.011", "up") == Decimal("100.02")
    assert r.round_qty("1.29") == Decimal("1.2")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(STEPS), st.integers(min_value=1, max_value=10**6),
       st.integers(min_value=1, max_value=10**4))
def test_a_close_in_pieces_adds_up_and_every_piece_is_accepted(step, steps_held, steps_max):
    """A position larger than the largest market order closes in pieces: together exactly the
    position, each one an order the exchange accepts (on the step, within its limits); at most
    ten, which then cover ten times the largest order."""
    import dataclasses

    r = dataclasses.replace(make(Decimal("0.01"), step), market_max_qty=step * steps_max)
    qty = step * steps_held
    pieces = r.market_pieces(qty)
    assert sum(pieces) == min(qty, 10 * r.market_max_qty) and len(pieces) <= 10
    for q in pieces:
        r.check_qty(q, market=True)  # raises RuleViolation if the exchange would refuse it
    if qty <= r.market_max_qty:
        assert pieces == [qty]


def test_a_price_rounded_again_is_rounded_on_its_own_symbols_tick():
    """Roundings are remembered (every cycle rounds each position's brackets again): by tick,
    direction and the price's type, never across symbols."""
    fine, coarse = make(Decimal("0.01"), Decimal("1")), make(Decimal("0.5"), Decimal("1"))
    for _ in range(2):
        assert fine.round_price(101.26, "down") == Decimal("101.26")
        assert coarse.round_price(101.26, "down") == Decimal("101.0")
        assert coarse.round_price(101.26, "up") == Decimal("101.5")
        assert str(fine.round_price(3, "nearest")) == str(fine.round_price(3.0)) == "3.00"
