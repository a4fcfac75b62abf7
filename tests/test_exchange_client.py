"""The real REST client against the simulator over HTTP on 127.0.0.1."""
from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from conftest import API_KEY, API_SECRET
from mraster.exchange import errors as E
from mraster.exchange.rest import AsterRest, hmac_signature
from mraster.exchange.rules import rules_from_exchange_info
from mraster.sim.server import Faults


def run(coro):
    return asyncio.run(coro)


def test_binance_signing_example_byte_for_byte():
    secret = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
    msg = ("symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC"
           "&recvWindow=5000&timestamp=1591702613943")
    assert hmac_signature(secret, msg) == "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"
    mixed = ("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC"
             "quantity=1&price=9000&recvWindow=5000&timestamp=1591702613943")
    assert hmac_signature(secret, mixed) == "30baaf0fab549bbeda7f5ef201898b34122da25fd23c646cac2c529aebe670a4"


def test_public_endpoints(sim_factory):
    sim, url, _ = sim_factory()

    async def go():
        async with AsterRest(url) as c:
            assert await c.ping() == {}
            assert abs(await c.server_time() - time.time() * 1000) < 5000
            info = await c.exchange_info()
            rules = rules_from_exchange_info(info)
            sym = next(iter(rules))
            assert rules[sym].tick > 0 and rules[sym].min_notional > 0
            kl = await c.klines(sym, "30m", limit=50)
            assert len(kl) == 50 and len(kl[0]) == 12 and kl[1][0] - kl[0][0] == 1_800_000
            t24 = await c.ticker_24h()
            assert {r["symbol"] for r in t24} == set(rules) and float(t24[0]["quoteVolume"]) > 0
            bt = await c.book_ticker(sym)
            assert float(bt["askPrice"]) > float(bt["bidPrice"])
            pi = await c.premium_index()
            assert {"markPrice", "indexPrice", "lastFundingRate", "nextFundingTime"} <= set(pi[0])
            d = await c.depth(sym, 10)
            assert len(d["bids"]) == 10
            fr = await c.funding_rate(sym)
            assert fr and "fundingRate" in fr[0]
            with pytest.raises(E.BadSymbol):
                await c.klines("NOPEUSDT", "5m")
    run(go())


def test_signed_endpoints_and_order_lifecycle(sim_factory):
    sim, url, _ = sim_factory()

    async def go():
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            info = await c.exchange_info()
            rules = rules_from_exchange_info(info)
            sym = next(iter(rules))
            r = rules[sym]
            assert (await c.set_leverage(sym, 5))["leverage"] == 5
            assert (await c.set_margin_type(sym, "ISOLATED"))["msg"] == "success"
            with pytest.raises(E.BadRequest) as info_err:
                await c.set_margin_type(sym, "ISOLATED")
            assert info_err.value.code == -4046
            bal = await c.balance()
            assert float(bal[0]["availableBalance"]) == 10_000
            bt = await c.book_ticker(sym)
            ask = float(bt["askPrice"])
            qty = r.round_qty(100 / ask)
            o = await c.new_order(symbol=sym, side="BUY", type="MARKET", quantity=qty,
                                  newClientOrderId="mra1-test-entry")
            assert o["status"] == "FILLED" and o["clientOrderId"] == "mra1-test-entry"
            pos = [p for p in await c.position_risk(sym) if float(p["positionAmt"])]
            assert float(pos[0]["positionAmt"]) == float(qty)
            stop = r.round_price(ask * 0.95, "down")
            so = await c.new_order(symbol=sym, side="SELL", type="STOP_MARKET", stopPrice=stop,
                                   closePosition=True, workingType="MARK_PRICE",
                                   newClientOrderId="mra1-test-stop")
            assert so["status"] == "NEW" and so["closePosition"] is True
            assert [x["clientOrderId"] for x in await c.open_orders(sym)] == ["mra1-test-stop"]
            q = await c.query_order(sym, client_id="mra1-test-stop")
            assert q["orderId"] == so["orderId"]
            with pytest.raises(E.WouldTrigger):
                await c.new_order(symbol=sym, side="SELL", type="STOP_MARKET",
                                  stopPrice=r.round_price(ask * 1.05), closePosition=True,
                                  newClientOrderId="mra1-bad-stop")
            with pytest.raises(E.MinNotionalError):
                await c.new_order(symbol=sym, side="BUY", type="MARKET", quantity=r.step,
                                  newClientOrderId="mra1-tiny")
            with pytest.raises(E.PrecisionError):
                await c.new_order(symbol=sym, side="BUY", type="MARKET",
                                  quantity=str(qty + r.step / 3), newClientOrderId="mra1-prec")
            with pytest.raises(E.ReduceOnlyRejected):
                await c.new_order(symbol=sym, side="BUY", type="MARKET", quantity=qty,
                                  reduceOnly=True, newClientOrderId="mra1-ro")
            with pytest.raises(E.InsufficientMargin):
                await c.new_order(symbol=sym, side="BUY", type="MARKET",
                                  quantity=r.round_qty(500_000 / ask), newClientOrderId="mra1-big")
            c2 = await c.cancel_order(sym, client_id="mra1-test-stop")
            assert c2["status"] == "CANCELED"
            with pytest.raises(E.UnknownOrder):
                await c.cancel_order(sym, client_id="mra1-test-stop")
            await c.new_order(symbol=sym, side="SELL", type="TAKE_PROFIT_MARKET",
                              stopPrice=r.round_price(ask * 1.1, "up"), closePosition=True,
                              newClientOrderId="mra1-test-tp")
            assert (await c.cancel_all(sym))["code"] == "200"
            assert await c.open_orders(sym) == []
            close = await c.new_order(symbol=sym, side="SELL", type="MARKET", quantity=qty,
                                      reduceOnly=True, newClientOrderId="mra1-test-close")
            assert close["status"] == "FILLED"
            trades = await c.user_trades(sym)
            assert len(trades) == 2 and float(trades[1]["realizedPnl"]) != 0
            inc = await c.income(sym)
            assert {"COMMISSION", "REALIZED_PNL"} <= {x["incomeType"] for x in inc}
            acct = await c.account()
            assert float(acct["totalWalletBalance"]) < 10_000  # fees and spread were paid
    run(go())


def test_bad_key_bad_signature_and_stale_timestamp_are_refused(sim_factory):
    sim, url, app = sim_factory()

    async def go():
        async with AsterRest(url, "unknown-key", API_SECRET) as c:
            with pytest.raises(E.AuthError) as ei:
                await c.balance()
            assert API_SECRET not in str(ei.value)
        async with AsterRest(url, API_KEY, "wrong-secret-value") as c:
            with pytest.raises(E.InvalidSignature) as ei:
                await c.balance()
            assert "wrong-secret-value" not in str(ei.value) and "signature=" not in str(ei.value)
        # a raw request with a timestamp from a minute ago
        ts = int(time.time() * 1000) - 60_000
        q = f"recvWindow=5000&timestamp={ts}"
        q += "&signature=" + hmac_signature(API_SECRET, q)
        async with httpx.AsyncClient() as h:
            resp = await h.get(f"{url}/fapi/v2/balance?{q}", headers={"X-MBX-APIKEY": API_KEY})
        assert resp.status_code == 400 and resp.json()["code"] == -1021
    run(go())


def test_client_keeps_in_sync_with_a_skewed_server_clock(sim_factory):
    sim, url, app = sim_factory(faults=Faults(skew_ms=-30_000))

    async def go():
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            assert float((await c.balance())[0]["balance"]) == 10_000
            assert -31_000 < c.time_offset_ms < -29_000
            app.state.faults.skew_ms = 20_000  # the server clock jumps: -1021, resync, retry once
            assert await c.balance()
            assert 19_000 < c.time_offset_ms < 21_000
    run(go())


@pytest.mark.parametrize("fault", ["hang", "unknown", "error"])
def test_an_order_with_unknown_outcome_is_never_duplicated(sim_factory, fault):
    faults = {"hang": Faults(hang_rate=1.0, hang_s=1.0),
              "unknown": Faults(unknown_rate=1.0),
              "error": Faults(error_rate=0.5, seed=4)}[fault]
    sim, url, app = sim_factory(faults=faults)

    async def go():
        async with AsterRest(url, API_KEY, API_SECRET, timeout=0.4, read_retries=8) as c:
            app.state.faults.error_rate = 0.0
            info = await c.exchange_info()
            sym = info["symbols"][0]["symbol"]
            r = rules_from_exchange_info(info)[sym]
            ask = float((await c.book_ticker(sym))["askPrice"])
            app.state.faults.error_rate = faults.error_rate
            placed = []
            for i in range(4):
                placed.append(await c.new_order(symbol=sym, side="BUY", type="MARKET",
                                                quantity=r.round_qty(50 / ask),
                                                newClientOrderId=f"mra1-dup-{i}"))
            app.state.faults.error_rate = 0.0
            trades = await c.user_trades(sym)
            return placed, trades, c.stats
    placed, trades, stats = run(go())
    assert [p["clientOrderId"] for p in placed] == [f"mra1-dup-{i}" for i in range(4)]
    acct = next(iter(sim.accounts.values()))
    cids = [o.clientOrderId for o in acct.orders.values()]
    assert sorted(cids) == sorted(set(cids)) and len(cids) == 4  # exactly one order per id
    assert len(trades) == 4
    if fault != "error":
        assert stats["recovered_orders"] == 4


def test_429_storm_pauses_every_request_and_recovers(sim_factory):
    sim, url, app = sim_factory(faults=Faults(weight_limit=30, window_s=1.0))

    async def go():
        async with AsterRest(url, read_retries=6) as c:
            sym = (await c.exchange_info())["symbols"][0]["symbol"]
            # as if another program on this IP used most of the budget: the client's own
            # ledger allows far more than the server will take, so 429s come
            c.governor.set_budget(2400)
            results = await asyncio.gather(*(c.book_ticker(sym) for _ in range(80)))
            return results, c.governor
    results, gov = run(go())
    assert len(results) == 80 and all("bidPrice" in r for r in results)
    assert gov.pauses >= 1
    meter = app.state.meter
    assert meter.max_seen <= 30  # the server never counted more than its limit
    assert meter.rejected < 80   # fewer rejections than requests: paused, not hammering


def test_governor_keeps_the_client_inside_its_budget(sim_factory):
    sim, url, app = sim_factory(faults=Faults(weight_limit=30))

    async def go():
        async with AsterRest(url, rate_share=0.8) as c:
            # exchangeInfo announces 30 weight per minute: the governor follows it (80% = 24)
            sym = (await c.exchange_info())["symbols"][0]["symbol"]
            assert c.governor.limit == 24
            for _ in range(23):
                await c.book_ticker(sym)
            waits = []

            async def no_wait(seconds):  # record the wait instead of sleeping a minute
                waits.append((seconds, 60 - time.time() % 60))
                raise asyncio.CancelledError
            c.governor._sleep = no_wait
            with pytest.raises(asyncio.CancelledError):
                await c.governor.acquire(2)
            return waits
    waits = run(go())
    # the 25th unit waits for the exchange's minute to roll over (its windows are clock minutes)
    (wait, to_minute_end), = waits
    assert 0 < wait <= to_minute_end + 0.5
    assert app.state.meter.max_seen == 24 and app.state.meter.rejected == 0


def test_a_full_budget_waits_only_until_the_exchange_minute_ends():
    """The exchange counts weight per clock minute. A budget used up at second 59 frees at
    second 60; the client used to count its own requests over a sliding 60 s and stalled a
    cycle (or a restarted bot) for up to a whole minute more. Clocks are simulated here so the
    test does not wait a minute."""
    from mraster.exchange.ratelimit import WeightGovernor

    t = {"now": 1_800_000_059.0}  # second 59 of a minute
    waits = []

    async def sleep(seconds):
        waits.append(seconds)
        t["now"] += seconds

    gov = WeightGovernor(budget=100, share=1.0, clock=lambda: t["now"], sleep=sleep,
                         wall=lambda: t["now"])

    async def go():
        await gov.acquire(100)  # the whole minute's budget at second 59
        await gov.acquire(10)   # must wait for the next minute, and only for it
        gov.observe("95")       # the exchange says 95 are used in the new minute
        await gov.acquire(10)   # so this one waits for the minute after
    run(go())
    assert waits == [pytest.approx(1.0), pytest.approx(60.0)]
    assert gov.total_weight == 120
