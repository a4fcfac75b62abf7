"""ccxt's own ``aster`` exchange (a client nobody here wrote; pinned in requirements-dev.txt) runs
against the simulator over real HTTP: market data, account, orders of every type the bot uses,
error classes, and a small strategy written against ccxt alone, with every answer compared
with the simulator's own state. ccxt signs with EIP-712 from an L1 key, approves its builder
(``approveBuilder``) and adds the builder fee to its orders, as it does against Aster."""
from __future__ import annotations

import ccxt
import pytest

from conftest import V3_KEY, V3_SIGNER
from mraster.sim.matching import TAKER_FEE

SYMBOL = "BTC/USDT:USDT"
BUILDER_FEE = 0.001  # ccxt's default builder rate (options.builderRate)


def client(url: str, **options) -> ccxt.aster:
    ex = ccxt.aster({"privateKey": V3_KEY, "timeout": 30_000,
                     "options": {"defaultType": "swap", **options}})
    ex.urls["api"] = {"fapiPublic": f"{url}/fapi", "fapiPrivate": f"{url}/fapi",
                      "sapiPublic": f"{url}/api", "sapiPrivate": f"{url}/api"}
    return ex


@pytest.fixture
def venue(sim_factory):
    sim, url, app = sim_factory(n=3, seed=5)
    ex = client(url)
    ex.load_markets()
    return sim, ex


def account(sim):
    """ccxt signs as the L1 wallet itself (signer = user = the key's address)."""
    return sim.accounts[V3_SIGNER.lower()]


def test_market_data_agrees_with_the_simulator(venue):
    sim, ex = venue
    m = ex.market(SYMBOL)
    rules = sim.rules["BTCUSDT"]
    assert m["swap"] and m["linear"] and m["settle"] == "USDT"
    assert m["precision"]["amount"] == float(rules.step) and m["precision"]["price"] == float(rules.tick)
    assert m["limits"]["cost"]["min"] == float(rules.min_notional)
    assert sorted(ex.markets) == sorted(f"{s[:-4]}/USDT:USDT" for s in sim.market.series)

    t = ex.fetch_ticker(SYMBOL)
    assert t["last"] == float(sim.ticker_24h("BTCUSDT")["lastPrice"])
    assert set(ex.fetch_tickers()) == set(ex.markets)
    book, top = ex.fetch_order_book(SYMBOL, 5), sim.book_ticker("BTCUSDT")
    assert book["bids"][0][0] == float(top["bidPrice"]) and book["asks"][0][0] == float(top["askPrice"])
    last_prices = ex.fetch_last_prices()
    assert last_prices[SYMBOL]["price"] == float(sim.ticker_price("BTCUSDT")["price"])
    bids_asks = ex.fetch_bids_asks([SYMBOL])
    assert bids_asks[SYMBOL]["bid"] == float(top["bidPrice"])

    candles = ex.fetch_ohlcv(SYMBOL, "5m", limit=50)
    raw = sim.klines("BTCUSDT", "5m", 50)
    assert [c[0] for c in candles] == [r[0] for r in raw]
    assert candles[-2][1:5] == [float(x) for x in raw[-2][1:5]]
    prem = sim.premium_index("BTCUSDT")
    mark = ex.fetch_ohlcv(SYMBOL, "5m", limit=5, params={"price": "mark"})
    index = ex.fetch_ohlcv(SYMBOL, "5m", limit=5, params={"price": "index"})
    assert mark[-1][4] == pytest.approx(float(prem["markPrice"]), rel=1e-9)
    assert index[-1][4] == pytest.approx(float(prem["indexPrice"]), rel=1e-9)

    rate = ex.fetch_funding_rate(SYMBOL)
    assert rate["fundingRate"] == float(prem["lastFundingRate"])
    assert rate["markPrice"] == float(prem["markPrice"])
    assert rate["nextFundingTimestamp"] == prem["nextFundingTime"]
    hist = ex.fetch_funding_rate_history(SYMBOL)
    assert [h["fundingRate"] for h in hist] == \
        [float(r["fundingRate"]) for r in sim.funding_rate("BTCUSDT")]
    assert ex.fetch_funding_intervals([SYMBOL])[SYMBOL]["interval"] == "8h"


def test_an_account_trades_through_ccxt_as_the_simulator_books_it(venue):
    sim, ex = venue
    assert ex.fetch_balance()["USDT"]["total"] == 10_000
    ex.set_leverage(5, SYMBOL)
    ex.set_margin_mode("isolated", SYMBOL)
    assert ex.fetch_leverages([SYMBOL])[SYMBOL]["longLeverage"] == 5
    assert ex.fetch_margin_modes([SYMBOL])[SYMBOL]["marginMode"] == "isolated"
    assert ex.fetch_position_mode(SYMBOL)["hedged"] is False
    fee = ex.fetch_trading_fee(SYMBOL)
    assert fee["taker"] == TAKER_FEE

    last = ex.fetch_ticker(SYMBOL)["last"]
    qty = float(ex.amount_to_precision(SYMBOL, 500 / last))
    entry = ex.create_order(SYMBOL, "market", "buy", qty, params={"clientOrderId": "strat-e1"})
    assert entry["status"] == "closed" and entry["filled"] == qty and entry["clientOrderId"] == "strat-e1"
    pos = ex.fetch_positions([SYMBOL])
    held = account(sim).positions["BTCUSDT"]
    assert len(pos) == 1 and pos[0]["side"] == "long" and pos[0]["contracts"] == held.amt == qty
    assert pos[0]["entryPrice"] == pytest.approx(held.entry, rel=1e-9)
    assert pos[0]["leverage"] == 5 and pos[0]["marginMode"] == "isolated"
    fill = ex.fetch_my_trades(SYMBOL)[-1]
    # the exchange's fee plus the builder fee ccxt approved and attached
    assert fill["fee"]["cost"] == pytest.approx(fill["cost"] * (TAKER_FEE + BUILDER_FEE), rel=1e-6)
    assert fill["price"] == entry["average"]
    assert [b["builderAddress"] for b in ex.fapiPrivateGetV3Builder()] == \
        [ex.options["builder"].lower()]

    # a stop and a take-profit, as ccxt's unified parameters make them
    stop = ex.create_order(SYMBOL, "market", "sell", qty, params={
        "stopLossPrice": ex.price_to_precision(SYMBOL, last * 0.9), "reduceOnly": True})
    tp = ex.create_order(SYMBOL, "market", "sell", qty, params={
        "takeProfitPrice": ex.price_to_precision(SYMBOL, last * 1.1), "reduceOnly": True})
    open_ = {o["id"]: o for o in ex.fetch_open_orders(SYMBOL)}
    assert set(open_) == {stop["id"], tp["id"]}
    assert open_[stop["id"]]["info"]["type"] == "STOP_MARKET"
    assert open_[tp["id"]]["info"]["type"] == "TAKE_PROFIT_MARKET"
    assert open_[stop["id"]]["triggerPrice"] == float(ex.price_to_precision(SYMBOL, last * 0.9))
    assert ex.fetch_order(stop["id"], SYMBOL)["status"] == "open"
    ex.cancel_order(stop["id"], SYMBOL)
    assert ex.fetch_order(stop["id"], SYMBOL)["status"] == "canceled"
    ex.cancel_all_orders(SYMBOL)
    assert ex.fetch_open_orders(SYMBOL) == [] and not account(sim).open_orders("BTCUSDT")

    close = ex.create_order(SYMBOL, "market", "sell", qty, params={"reduceOnly": True})
    assert close["status"] == "closed" and ex.fetch_positions([SYMBOL]) == []
    assert [o["id"] for o in ex.fetch_orders(SYMBOL)] == \
        [str(o.orderId) for o in account(sim).orders.values()]
    ledger = ex.fetch_ledger()
    income = account(sim).income
    assert len(ledger) == len(income)
    assert sum(e["amount"] * (1 if e["direction"] == "in" else -1) for e in ledger) == \
        pytest.approx(sum(float(r["income"]) for r in income), rel=1e-9)
    assert ex.fetch_balance()["USDT"]["total"] == pytest.approx(account(sim).balance, rel=1e-9)
    tape = ex.fetch_trades(SYMBOL)  # the public tape holds both fills
    assert [t["price"] for t in tape[-2:]] == [entry["average"], close["average"]]
    assert tape[-1]["side"] == "sell"


@pytest.mark.parametrize("case,exc,code", [
    ("bad symbol", ccxt.BadSymbol, -1121),
    ("bad precision", ccxt.BadRequest, -1111),
    ("min notional", ccxt.InvalidOrder, -4164),
    ("reduce-only with nothing to reduce", ccxt.OperationRejected, -2022),
    ("insufficient margin", ccxt.InsufficientFunds, -2019),
    ("unknown order", ccxt.OrderNotFound, -2013),
    ("duplicate client id", ccxt.ExchangeError, -4116),
    ("stop that would trigger now", ccxt.OrderImmediatelyFillable, -2021),
])
def test_refusals_reach_ccxt_with_aster_codes_and_the_right_exception(venue, case, exc, code):
    """Raw signed requests (ccxt's implicit API, so ccxt's own argument checks do not stand in
    for the exchange's) get Aster's codes, and ccxt's error mapping raises its class for each."""
    sim, ex = venue
    last = ex.fetch_ticker(SYMBOL)["last"]
    qty = ex.amount_to_precision(SYMBOL, 100 / last)
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": qty}
    bracket = {"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET", "closePosition": "true"}
    assert float(sim.rules["BTCUSDT"].step) * last < float(sim.rules["BTCUSDT"].min_notional)
    requests = {
        "bad symbol": lambda: ex.fapiPrivatePostV3Order({**order, "symbol": "NOPEUSDT"}),
        "bad precision": lambda: ex.fapiPrivatePostV3Order(
            {**order, "quantity": qty + ("000001" if "." in qty else ".000001")}),
        "min notional": lambda: ex.fapiPrivatePostV3Order(  # one step: far below 5 USDT here
            {**order, "quantity": str(sim.rules["BTCUSDT"].step)}),
        "reduce-only with nothing to reduce": lambda: ex.fapiPrivatePostV3Order(
            {**order, "reduceOnly": "true"}),
        "insufficient margin": lambda: ex.fapiPrivatePostV3Order(
            {**order, "quantity": ex.amount_to_precision(SYMBOL, 10_000_000 / last)}),
        "unknown order": lambda: ex.fetch_order("987654", SYMBOL),
        "duplicate client id": lambda: [ex.fapiPrivatePostV3Order(
            {**bracket, "stopPrice": ex.price_to_precision(SYMBOL, last * 0.5),
             "newClientOrderId": "same-id"}) for _ in range(2)],
        "stop that would trigger now": lambda: ex.fapiPrivatePostV3Order(
            {**bracket, "stopPrice": ex.price_to_precision(SYMBOL, last * 1.5)}),
    }
    with pytest.raises(exc) as info:
        requests[case]()
    assert f'"code":{code}' in str(info.value).replace(" ", "")
    assert not account(sim).positions.get("BTCUSDT") or not account(sim).positions["BTCUSDT"].amt


def test_forged_signatures_and_stale_nonces_are_refused(sim_factory):
    sim, url, _ = sim_factory(n=2)
    forged = client(url, signerAddress="0x" + "22" * 20)  # signs with a key that is not this
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        forged.fetch_balance()
    late = client(url)
    late.milliseconds = lambda: sim.now() - 60_000  # this machine's clock a minute behind
    # Aster does not document the code of an expired nonce; the simulator answers -4225,
    # which ccxt (mapping only -1021 to InvalidNonce) raises as its generic ExchangeError
    with pytest.raises(ccxt.ExchangeError, match="Nonce Expired"):
        late.fetch_balance()


def momentum_strategy(ex: ccxt.Exchange, symbol: str, budget: float, step) -> dict:
    """A strategy as a ccxt user writes it (nothing of MrAster in it): follow the last hour's
    direction with a bracketed market order, then wait for a bracket to close the position.
    ``step`` lets the test move the simulated market's time on."""
    candles = ex.fetch_ohlcv(symbol, "5m", limit=13)
    side = "buy" if candles[-1][4] >= candles[0][1] else "sell"
    exit_side = "sell" if side == "buy" else "buy"
    last = ex.fetch_ticker(symbol)["last"]
    qty = float(ex.amount_to_precision(symbol, budget / last))
    ex.set_leverage(3, symbol)
    entry = ex.create_order(symbol, "market", side, qty)
    sign = 1 if side == "buy" else -1
    sl = ex.price_to_precision(symbol, entry["average"] * (1 - sign * 0.004))
    tp = ex.price_to_precision(symbol, entry["average"] * (1 + sign * 0.004))
    ex.create_order(symbol, "market", exit_side, qty, params={"stopLossPrice": sl, "reduceOnly": True})
    ex.create_order(symbol, "market", exit_side, qty, params={"takeProfitPrice": tp, "reduceOnly": True})
    for _ in range(2_000):
        if not ex.fetch_positions([symbol]):
            break
        step()
    ex.cancel_all_orders(symbol)
    trades = ex.fetch_my_trades(symbol)
    return {"side": side, "qty": qty, "entry": entry["average"], "trades": trades,
            "sl": float(sl), "tp": float(tp)}


def test_a_strategy_written_against_ccxt_runs_unchanged_on_the_simulator(sim_factory):
    """The market opens five minutes before a funding time (the simulator's clock starts at the
    open of the candle forming at ``start_ms``), so the position pays or receives funding on
    its way, as one held across 00:00, 08:00 or 16:00 UTC does: the wallet must add up to the
    fill's PnL, the fees and that funding. (Started at the wall clock's time, this test failed
    only when run just before a funding time.)"""
    from mraster.sim.market import FUNDING_MS, SyntheticMarket

    funding_at = 1_767_225_600_000  # 2026-01-01 00:00 UTC
    assert funding_at % FUNDING_MS == 0
    market = SyntheticMarket(3, seed=5, manual=True, history=600, start_ms=funding_at - 1)
    sim, url, _ = sim_factory(market=market)
    ex = client(url)
    ex.load_markets()
    before = ex.fetch_balance()["USDT"]["total"]
    out = momentum_strategy(ex, SYMBOL, 300.0, lambda: sim.market.clock.step(60_000))
    assert ex.fetch_positions([SYMBOL]) == [] and ex.fetch_open_orders(SYMBOL) == []
    exit_fill = out["trades"][-1]
    assert exit_fill["side"] != out["side"] and exit_fill["amount"] == out["qty"]
    assert exit_fill["timestamp"] > funding_at  # held across the funding time
    sign = 1 if out["side"] == "buy" else -1
    pnl = float(exit_fill["info"]["realizedPnl"])
    assert pnl == pytest.approx(sign * (exit_fill["price"] - out["entry"]) * out["qty"], rel=1e-6)
    fees = sum(t["fee"]["cost"] for t in out["trades"])
    funding = [f["amount"] for f in ex.fetch_funding_history(SYMBOL)]
    assert len(funding) == 1 and funding[0] != 0
    assert ex.fetch_balance()["USDT"]["total"] == pytest.approx(
        before + pnl - fees + funding[0], rel=1e-9)
    # it left at one of its brackets (a stop fills at market, so at or beyond its level)
    assert sign * (exit_fill["price"] - out["tp"]) >= -1e-9 or sign * (exit_fill["price"] - out["sl"]) <= 1e-9


def test_a_malformed_number_is_refused_by_name_not_a_server_error(venue):
    sim, ex = venue
    with pytest.raises(ccxt.ArgumentsRequired, match="quantity"):
        ex.fapiPrivatePostV3Order({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                   "quantity": "2.6.1"})
    with pytest.raises(ccxt.ArgumentsRequired, match="stopPrice"):
        ex.fapiPrivatePostV3Order({"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET",
                                   "closePosition": "true", "stopPrice": "nan"})
