"""The typed core: the entry order's outcome state machine, positions as records that survive
the state file, and the pure evaluator (the same answer from the same inputs, with no I/O)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DATA, position
from mraster import settings as st
from mraster.backtest.data import ReplayData
from mraster.backtest.runner import WARMUP_CANDLES
from mraster.domain import (Intent, Order, OrderStatus, Position, PositionStatus, Side, Trade,
                            next_entry_status, positions_of)
from mraster.engine.evaluator import Portfolio, Skip, decide
from mraster.engine.market_data import snapshot
from mraster.engine.reconciler import by_symbol
from mraster.policy import BanditPolicy
from mraster.sim.exchange import SimExchange
from mraster.sim.market import BASE_MS, replay_market
from mraster.store import JsonDocument

S = st.load(environ={"ASTER_MIN_EDGE_R": "0", "ASTER_NON_ARB_FILTER_ENABLED": "false",
                     "ASTER_FUNDING_FILTER_ENABLED": "false", "ASTER_WICKINESS_MAX": "1",
                     "ASTER_SPREAD_BPS_MAX": "0.1", "ASTER_ALPHA_ENABLED": "false"},
            env_file=Path("/none"))


def test_an_entry_ends_only_on_the_exchanges_word():
    sent = OrderStatus.SENT
    assert next_entry_status(sent, "filled") is OrderStatus.FILLED
    assert next_entry_status(sent, "refused") is OrderStatus.REJECTED
    unknown = next_entry_status(sent, "unknown")  # lost answer, 5xx, timeout: not a refusal
    assert unknown is OrderStatus.UNKNOWN
    assert next_entry_status(unknown, "unknown") is OrderStatus.UNKNOWN  # a failed lookup
    assert next_entry_status(unknown, "filled") is OrderStatus.FILLED
    assert next_entry_status(unknown, "refused") is OrderStatus.REJECTED
    for final in (OrderStatus.FILLED, OrderStatus.REJECTED):  # a late answer reopens nothing
        for event in ("filled", "refused", "unknown"):
            with pytest.raises(ValueError, match=final.value):
                next_entry_status(final, event)


def test_a_position_round_trips_through_the_state_file_and_keeps_what_it_does_not_know(tmp_path):
    pos = position(symbol="BTCUSDT", side="SELL", entry=90_000.0, initial_stop=91_000.0,
                   take_profit=88_000.0, atr=500.0, qty=0.01, opened_at=1_700_000_000_000,
                   bracket_seq={"stop": 2}, stop_rule="trailing", added_by_a_newer_version=[1, 2])
    assert pos.side is Side.SELL and pos.r_at(89_000.0) == pytest.approx(1.0)
    doc = JsonDocument(tmp_path / "aster_state.json")
    doc.write({"positions": {"t": pos}})
    raw = json.loads((tmp_path / "aster_state.json").read_text())["positions"]["t"]
    assert raw["side"] == "SELL" and raw["status"] == "open" and raw["entry_status"] == "filled"
    assert raw["added_by_a_newer_version"] == [1, 2]  # written back unchanged
    again = positions_of(doc.read())["t"]
    assert again == pos
    # a file from before the typed model: no client id, no order status; pending = unknown
    old = Position.from_dict({"symbol": "ETHUSDT", "side": "BUY", "status": "pending",
                              "opened_at": 1, "qty": 1, "entry": 2000, "initial_stop": 1990,
                              "stop": 1990, "take_profit": 2020}, "abc-1f2e")
    assert old.entry_client_id.endswith("-E-abc-1f2e") and old.entry_status is OrderStatus.UNKNOWN
    assert not old.is_open and old.status is PositionStatus.PENDING


def test_a_trade_record_adds_up():
    t = Trade(symbol="XRPUSDT", side=Side.SELL, qty=10.0, entry=0.6, exit=0.58, initial_stop=0.61,
              stop=0.61, take_profit=0.57, opened_at=1, closed_at=2, pnl=0.2 - 0.004 - 0.001,
              fees=0.004, funding=-0.001, r=(0.2 - 0.005) / 0.1, reason="take_profit",
              client_id="x")
    d = t.to_dict()
    assert d["side"] == "SELL" and json.loads(json.dumps(d)) == d
    gross = -1 * (d["exit"] - d["entry"]) * d["qty"]
    assert d["pnl"] == pytest.approx(gross - d["fees"] + d["funding"], rel=1e-9)


def moments():
    """(symbol, snapshot, features) at every 11th candle of real XRPUSDT and ETHBTC history."""
    market = replay_market(DATA, ["ETHBTC", "XRPUSDT"], manual=True, warmup=WARMUP_CANDLES)
    sim, data = SimExchange(market), ReplayData(market, "5m", "1h")
    for sym, series in market.series.items():
        for t in (series.t[WARMUP_CANDLES::11] + BASE_MS).tolist():
            market.clock.set(t)
            ltf, htf = data.candles(sym, t)
            snap = snapshot(sym, by_symbol(sim.ticker_24h()), by_symbol(sim.book_ticker()),
                            by_symbol(sim.premium_index()))
            yield sym, snap, data.features(sym, ltf, htf), t


def test_the_evaluator_answers_from_its_inputs_alone():
    """The same snapshot, features, portfolio and settings give the same answer, with no
    exchange anywhere; the portfolio's limits turn every intent into the user's reason, and
    a symbol the user holds is refused before anything else is looked at."""
    intents = 0
    for sym, snap, f, now in moments():
        free = Portfolio(positions={}, now_ms=now)
        first = decide(sym, snap, f, free, S, policy=BanditPolicy.from_settings(S))
        again = decide(sym, snap, f, free, S, policy=BanditPolicy.from_settings(S))
        assert first == again
        theirs = Portfolio(positions={}, off_limits=frozenset({sym}), now_ms=now)
        if f is not None:
            assert decide(sym, snap, f, theirs, S, policy=None) == \
                Skip("external_position", {"rsi": round(f.rsi, 2), "htf_trend": f.htf_trend})
        if isinstance(first, Intent):
            intents += 1
            assert first.side in (Side.BUY, Side.SELL) and first.expected_r >= S["ASTER_MIN_EDGE_R"]
            held = Portfolio(positions={"t": position(symbol=sym)}, now_ms=now)
            assert decide(sym, snap, f, held, S, policy=BanditPolicy.from_settings(S)).reason == \
                "max_open_symbol"
            cooling = Portfolio(positions={}, cooldowns={sym: now + 1}, now_ms=now)
            assert decide(sym, snap, f, cooling, S, policy=BanditPolicy.from_settings(S)).reason \
                == "cooldown"
            paused = Portfolio(positions={}, paused=True, now_ms=now)
            assert decide(sym, snap, f, paused, S, policy=BanditPolicy.from_settings(S)).reason \
                == "paused"
        else:
            assert first.reason
    assert intents >= 5


def test_orders_say_what_the_exchange_needs_and_nothing_else():
    stop = Order("BTCUSDT", Side.SELL, "STOP_MARKET", "mra1-S-t", stop_price="89000.1",
                 close_position=True)
    assert stop.params() == {"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET",
                             "newClientOrderId": "mra1-S-t", "stopPrice": "89000.1",
                             "workingType": "MARK_PRICE", "closePosition": True}
    entry = Order("BTCUSDT", Side.BUY, "MARKET", "mra1-E-t", quantity="0.012", result=True)
    assert entry.params() == {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                              "newClientOrderId": "mra1-E-t", "quantity": "0.012",
                              "newOrderRespType": "RESULT"}


def test_an_order_id_of_the_wrong_shape_is_no_order_of_the_bot():
    """Client ids are remembered once parsed (every cycle parses those of every open order);
    an answer holding an id that is no string (a list, a number, null) is simply not the
    bot's, twice in a row, instead of failing the cycle."""
    from mraster.execution import ids

    cid = ids.order_id("S", ids.new_token(1_700_000_000_000, "7f3c"))
    for _ in range(2):
        assert ids.parse(cid) == ("S", cid.split("-", 2)[2])
        assert ids.parse(cid.upper()) is None and ids.parse("") is None
        for odd in (None, 7, ["mra1-S-x-7f3c"], {"id": cid}):
            assert ids.parse(odd) is None
            assert ids.bracket_kind({"clientOrderId": odd, "type": "STOP_MARKET",
                                     "closePosition": True}) == "stop"  # hand-placed: a stop
