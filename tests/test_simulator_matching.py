"""Simulator matching details the bot relies on: LIMIT fills with the maker fee, triggers on mark
or last price per workingType (with the real XRPUSDT mark-price basis), 300 synthetic symbols, and
paper trading on market data fetched over HTTP."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from conftest import API_KEY, API_SECRET, DATA
from mraster.exchange import errors as E
from mraster.exchange.rest import AsterRest
from mraster.execution.paper import PaperExchange
from mraster.sim.exchange import SimExchange
from mraster.sim.market import SyntheticMarket, replay_market
from mraster.sim.matching import MAKER_FEE, Account, SimError


def test_replayed_xrp_mark_price_uses_the_real_basis():
    m = replay_market(DATA, ["XRPUSDT"], manual=True, warmup=0)
    s = m.series["XRPUSDT"]
    mark = __import__("numpy").loadtxt(DATA / "XRPUSDT-1h-mark.csv", delimiter=",", skiprows=1)
    t0, mark_close = int(mark[30][0]), mark[30][4]
    last_5m = int((s.t >= t0).argmax()) + 11  # the hour's last 5m candle
    assert s.t[last_5m] == t0 + 55 * 60_000
    q = m.quote("XRPUSDT", int(s.t[last_5m]) + 5 * 60_000 - 1)
    assert q["mark"] / q["last"] - 1 == pytest.approx(mark_close / s.c[last_5m] - 1)
    assert abs(q["mark"] / q["last"] - 1) < 0.01 and q["mark"] != q["last"]


def test_stops_trigger_on_mark_or_last_price_per_working_type():
    market = SyntheticMarket(2, seed=3, manual=True, history=300)
    sym = next(iter(market.series))
    market.quote(sym)  # the synthetic series is extended up to the clock first
    market.series[sym].basis[:] = 0.01  # mark 1% above the last trade
    sim = SimExchange(market)
    m, acct, now = sim.matching, Account(balance=10_000), market.clock.now_ms()
    q = market.quote(sym)
    qty = str(sim.rules[sym].round_qty(100 / q["ask"], market=True))
    m.new_order(acct, {"symbol": sym, "side": "BUY", "type": "MARKET", "quantity": qty}, now)
    level = str(sim.rules[sym].round_price(q["last"] * 1.005, "down"))  # between last and mark
    order = {"symbol": sym, "side": "SELL", "type": "STOP_MARKET", "stopPrice": level,
             "closePosition": "true"}
    with pytest.raises(SimError) as exc:  # on last price it would fire at once
        m.new_order(acct, {**order, "workingType": "CONTRACT_PRICE"}, now)
    assert exc.value.code == -2021
    placed = m.new_order(acct, {**order, "workingType": "MARK_PRICE"}, now)
    assert placed.status == "NEW"
    low = float(level) / 1.01 * 1.001  # last dips to just above level/1.01: mark stays above level
    assert m.evaluate(acct, sym, low, q["last"], now, mark_factor=1.01) == []
    low = float(level) / 1.01 * 0.999  # now the mark crosses the level
    assert m.evaluate(acct, sym, low, q["last"], now, mark_factor=1.01) == [placed]


def test_limit_orders_rest_then_fill_at_their_price_with_the_maker_fee(sim_factory):
    sim, url, _ = sim_factory(n=3, seed=4)

    async def go():
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            sym = next(iter(sim.market.series))
            bid = float((await c.book_ticker(sym))["bidPrice"])
            rules = sim.rules[sym]
            price = rules.round_price(bid * 0.997, "down")
            qty = rules.round_qty(50 / float(price))
            o = await c.new_order(symbol=sym, side="BUY", type="LIMIT", price=str(price),
                                  quantity=str(qty), timeInForce="GTC", newClientOrderId="lim-1")
            assert o["status"] == "NEW"
            for _ in range(2000):  # five-minute steps until the market trades down to the limit
                if (await c.query_order(sym, client_id="lim-1"))["status"] == "FILLED":
                    break
                sim.step(5 * 60_000)
            filled = await c.query_order(sym, client_id="lim-1")
            assert filled["status"] == "FILLED" and float(filled["avgPrice"]) == float(price)
            trade = (await c.user_trades(sym))[-1]
            assert float(trade["commission"]) == pytest.approx(float(qty) * float(price) * MAKER_FEE)
    asyncio.run(go())


def test_the_offline_market_runs_on_this_computers_clock():
    """The offline paper market's trades and the log (wall clock) agree: its clock starts at
    the time it was made, inside a forming candle, not at that candle's open (up to five
    minutes earlier, so a close clicked at 04:01:08 was booked at 03:56:52)."""
    before = int(time.time() * 1000)
    sim = SimExchange(SyntheticMarket(2, seed=1, history=50))
    now, after = sim.now(), int(time.time() * 1000)
    assert before <= now <= after + 1000
    forming = sim.klines("BTCUSDT", "5m", 1)[-1]
    assert forming[0] == before // 300_000 * 300_000 or forming[0] == after // 300_000 * 300_000


def test_three_hundred_synthetic_symbols_are_served(sim_factory):
    _, url, _ = sim_factory(market=SyntheticMarket(300, seed=9, manual=True, history=300))

    async def go():
        async with AsterRest(url) as c:
            info = await c.exchange_info()
            assert len(info["symbols"]) == 300
            assert len(await c.ticker_24h()) == 300 and len(await c.premium_index()) == 300
            last = info["symbols"][-1]["symbol"]
            assert last == "SYN299USDT" and len(await c.klines(last, "1h", limit=10)) == 10
    asyncio.run(go())


def test_paper_exchange_trades_on_market_data_from_http_and_survives_a_restart(sim_factory):
    sim, url, _ = sim_factory(n=3, seed=6)
    saved = {}

    async def go():
        market = AsterRest(url)
        paper = PaperExchange(market, balance=1_000, persist=lambda a: saved.update(acct=a))
        sym = next(iter(sim.market.series))
        await paper.exchange_info()
        book = await paper.book_ticker(sym)
        await paper.premium_index(sym)
        qty = sim.rules[sym].round_qty(100 / float(book["askPrice"]), market=True)
        o = await paper.new_order(symbol=sym, side="BUY", type="MARKET", quantity=str(qty),
                                  newClientOrderId="paper-1")
        assert o["status"] == "FILLED" and float(o["avgPrice"]) >= float(book["askPrice"])
        assert not sim.accounts  # nothing reached the simulator's own accounts: fills are local
        with pytest.raises(E.WouldTrigger):  # the matching rules are the simulator's
            await paper.new_order(symbol=sym, side="SELL", type="STOP_MARKET", closePosition=True,
                                  stopPrice=str(sim.rules[sym].round_price(float(book["askPrice"]) * 1.05, "up")),
                                  workingType="CONTRACT_PRICE", newClientOrderId="paper-2")
        await paper.close()
        again = PaperExchange(AsterRest(url), balance=1_000, saved=saved["acct"])
        await again.exchange_info()
        await again.book_ticker(sym)  # the bot refreshes quotes before it reconciles
        await again.premium_index(sym)
        rows = await again.position_risk(sym)
        assert float(rows[0]["positionAmt"]) == float(qty)
        await again.close()
    asyncio.run(go())


def test_the_24h_ticker_counts_only_volume_already_traded():
    """At a candle's open, none of its volume has traded yet; halfway, half of it has."""
    m = replay_market(DATA, ["XRPUSDT"], manual=True, warmup=0)
    s = m.series["XRPUSDT"]
    i = 400
    expect = float((s.v[i - 287:i] * s.c[i - 287:i]).sum())
    at_open = m.stats_24h("XRPUSDT", int(s.t[i]))
    assert at_open["quote_volume"] == pytest.approx(expect, rel=1e-12)
    assert at_open["volume"] == pytest.approx(float(s.v[i - 287:i].sum()), rel=1e-12)
    half = m.stats_24h("XRPUSDT", int(s.t[i]) + 150_000)
    assert half["volume"] == pytest.approx(float(s.v[i - 287:i].sum() + s.v[i] / 2), rel=1e-12)


def test_quotes_and_24h_stats_of_consecutive_steps_equal_those_worked_out_one_by_one():
    """An engine stepping candle by candle gets its quotes (last, bid, ask, mark, index,
    funding) and 24 h tickers from blocks of moments worked out at once; every number must be
    the one the simulator works out for the moment alone, bit for bit — from before the data
    starts, over gaps and block edges, to after it ends (XRPUSDT: mark basis, index premium
    and funding settlements of its own), and the same again when the steps jump or fall
    between candles (those are worked out alone)."""
    from mraster.sim.market import BASE_MS

    pairs = ["ETHBTC", "XLMBTC", "XRPUSDT"]
    stepped = replay_market(DATA, pairs, manual=True, warmup=0)
    alone = replay_market(DATA, pairs, manual=True, warmup=0)
    for sym in pairs:
        t = stepped.series[sym].t
        moments = [*range(int(t[0]) - 3 * BASE_MS, int(t[0]) + 150 * BASE_MS, BASE_MS),
                   *range(int(t[-1]) - 100 * BASE_MS, int(t[-1]) + 5 * BASE_MS, BASE_MS),
                   int(t[-1]) + 9 * BASE_MS, int(t[900]) + 61_000, int(t[900]) + 2 * BASE_MS]
        for now in moments:
            for got, want, names in (
                    (stepped.stats_24h(sym, now), alone._stats_one(sym, now),
                     {"open", "high", "low", "last", "volume", "quote_volume"}),
                    (stepped.quote(sym, now), alone._quote_one(sym, now),
                     {"last", "bid", "ask", "mark", "index", "funding"})):
                assert set(got) == set(want) == names
                # the same double (repr tells 0.1 from 0.1000000000000000055…), not just ==
                assert {k: repr(float(v)) for k, v in got.items()} == \
                    {k: repr(float(v)) for k, v in want.items()}, (sym, now)
    # the consecutive steps did come from blocks
    assert {key for key in stepped._blocks} == {(w, s) for w in ("day", "quote") for s in pairs}
    xrp = stepped.series["XRPUSDT"]
    assert xrp.basis is not None and xrp.funding_times is not None  # the perpetual's own parts


def test_bulk_decimals_equal_the_exchange_strings_parsed_one_by_one():
    """A backtest parses the exchange's decimal strings for its whole history at once; every
    number must equal what a client gets from the string (10 significant digits, or 8 decimal
    places for funding), across magnitudes, signs, exact ties and values already round."""
    from mraster.sim.exchange import _rate
    from mraster.sim.market import _num, as_sent
    rng = np.random.default_rng(11)
    parts = [rng.random(20_000) * 10.0 ** e * rng.choice([-1, 1], 20_000) for e in range(-12, 16, 3)]
    x = np.concatenate(parts + [np.round(parts[3], 8), np.array([0.0, -0.0, 0.125, 2.5e-9,
                                                                 1.0000000005, 123456789012345.0])])
    assert np.array_equal(as_sent(x), [float(_num(v)) for v in x.tolist()])
    assert np.array_equal(as_sent(x, _rate, places=8), [float(_rate(v)) for v in x.tolist()])


def test_a_stop_crossed_inside_a_candle_fills_at_its_price_and_a_gap_at_the_open():
    """A backtest looks at the clock once per candle. A long's stop that the price falls
    through mid-candle must fill at the stop, not at the candle's close (that would book every
    backtest stop far worse than a live one); a candle that opens beyond the stop fills at its
    open."""
    from mraster.sim.market import BASE_MS, Market, Series, SimClock

    t = 1_700_000_100_000 // BASE_MS * BASE_MS + BASE_MS * np.arange(4, dtype=np.int64)
    o, c = np.array([100.0, 100.0, 90.0, 80.0]), np.array([100.0, 90.0, 90.0, 80.0])
    h, l = np.maximum(o, c), np.minimum(o, c)
    c[2], l[2] = 90.0, 90.0  # candle 2 is flat at 90, candle 3 opens at 80: a gap
    market = Market([Series("TSTUSDT", "TST", "USDT", t, o, h, l, c, np.full(4, 1e6),
                            tick=0.01, step=0.001)], SimClock(int(t[1]), manual=True))
    fills = []
    for level in (95.0, 85.0):
        market.clock.set(int(t[1]))
        sim = SimExchange(market)
        m, acct = sim.matching, sim.account("k")
        sim.advance()  # the exchange has looked at the market up to the order's moment
        m.new_order(acct, {"symbol": "TSTUSDT", "side": "BUY", "type": "MARKET",
                           "quantity": "0.1"}, int(t[1]))
        stop = m.new_order(acct, {"symbol": "TSTUSDT", "side": "SELL", "type": "STOP_MARKET",
                                  "stopPrice": str(level), "closePosition": "true"}, int(t[1]))
        for _ in range(3):
            sim.step(BASE_MS)
        assert stop.status == "FILLED"
        fills.append(float(stop.avgPrice))
    assert fills[0] == pytest.approx(95.0, rel=1e-4)  # crossed on the way from 100 to 90
    assert fills[1] == pytest.approx(80.0, rel=1e-4)  # never traded between 90 and 80: the open


def test_in_process_answers_are_fresh_and_an_order_read_while_open_reads_filled_later():
    """A backtest's client asks the simulator for the same rows many times a step: the rows it
    gets are its own (changing one changes no later answer), a repeated ``positionRisk`` is the
    simulator's answer, and an open order's row, kept between reads, turns FILLED when the
    order fills."""
    from mraster.execution.paper import LocalExchange
    from mraster.sim.market import BASE_MS, Market, Series, SimClock

    t = 1_700_000_100_000 // BASE_MS * BASE_MS + BASE_MS * np.arange(4, dtype=np.int64)
    o, c = np.array([100.0, 100.0, 90.0, 90.0]), np.array([100.0, 90.0, 90.0, 90.0])
    market = Market([Series("TSTUSDT", "TST", "USDT", t, o, np.maximum(o, c), np.minimum(o, c),
                            c, np.full(4, 1e6), tick=0.01, step=0.001)],
                    SimClock(int(t[1]), manual=True))
    sim = SimExchange(market)
    ex = LocalExchange(sim, sole_client=True)

    async def go():
        await ex.new_order(symbol="TSTUSDT", side="BUY", type="MARKET", quantity="0.1",
                           newClientOrderId="e-1")
        await ex.new_order(symbol="TSTUSDT", side="SELL", type="STOP_MARKET", stopPrice="95",
                           closePosition=True, newClientOrderId="s-1")
        first = await ex.position_risk()
        assert all(type(v) in (str, int, float, bool) for row in first for v in row.values())
        first[0]["positionAmt"] = "999"
        again = await ex.position_risk()
        assert again == sim.handle_signed("paper", "GET", "positionRisk", {})
        assert float(again[0]["positionAmt"]) == 0.1
        acct = await ex.account()
        acct["positions"][0]["positionAmt"] = "999"
        assert float((await ex.account())["positions"][0]["positionAmt"]) == 0.1
        (open_row,) = await ex.open_orders("TSTUSDT")
        assert open_row["status"] == "NEW" and float(open_row["executedQty"]) == 0
        sim.step(BASE_MS)  # the price falls through the stop
        filled = await ex.query_order("TSTUSDT", client_id="s-1")
        assert filled["status"] == "FILLED" and float(filled["executedQty"]) == 0.1
        assert float(filled["avgPrice"]) == pytest.approx(95.0, rel=1e-4)
        assert await ex.open_orders("TSTUSDT") == [] and open_row["status"] == "NEW"
        assert float((await ex.position_risk())[0]["positionAmt"]) == 0
    asyncio.run(go())
