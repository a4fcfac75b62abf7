"""The simulated exchange without HTTP: a market, the matching engine and accounts on one clock.

Public data methods return exactly the JSON the real exchange sends, so the in-process market
(offline paper mode) and the HTTP server (``python -m mraster.sim``) share one implementation.
"""
from __future__ import annotations

import bisect
import threading
from decimal import Decimal
from typing import Any

import numpy as np

from mraster.exchange.rules import D, SymbolRules
from mraster.sim.market import FUNDING_MS, Market, _num, as_sent
from mraster.liquidation import brackets_to_api
from mraster.sim.matching import MAKER_FEE, TAKER_FEE, Account, Matching, SimError

MAX_BUILDER_FEE = 0.01  # the highest builder fee rate an account may approve (1 %)
BOOK_QTY = 10.0  # the size the book ticker shows at the best bid and ask

RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
]


def rules_for_market(market: Market) -> dict[str, SymbolRules]:
    out = {}
    for sym, s in market.series.items():
        tick, step = D(f"{s.tick:.12g}"), D(f"{s.step:.12g}")
        out[sym] = SymbolRules(symbol=sym, tick=tick, step=step, min_qty=step,
                               max_qty=D("100000000"), market_step=step, market_min_qty=step,
                               max_price=Decimal(0), market_max_qty=D("100000000"),
                               min_notional=D(f"{s.min_notional:.6g}"), min_price=tick,
                               base=s.base, quote=s.quote)
    return out


def _rate(x: float) -> str:
    return f"{x:.8f}"


class SimExchange:
    """Thread-safe: the HTTP server and tests may call it from several threads."""

    def __init__(self, market: Market, *, balance: float = 10_000.0) -> None:
        self.market = market
        self.rules = rules_for_market(market)
        self.matching = Matching(self.rules, self._quote,
                                 max_leverage=lambda s: market.series[s].max_leverage)
        self.accounts: dict[str, Account] = {}
        self.default_balance = balance
        self.lock = threading.RLock()
        self._last_eval: dict[str, int] = {}
        self._last_funding: int = market.clock.now_ms() // FUNDING_MS
        self._advanced_at: int | None = None
        self._quotes: dict[str, dict[str, float]] = {}
        self._quotes_at: int | None = None

    def now(self) -> int:
        return self.market.clock.now_ms()

    def _quote(self, sym: str, now: int | None = None) -> dict[str, float]:
        """The market's quote now (or at ``now``, a moment read from the clock); one moment's
        quotes are computed once (a cycle asks for a symbol's mark a dozen times: margins,
        positions, the account, and its ticker, book and premium rows). Callers hold
        ``self.lock`` (the HTTP server's and the in-process client's requests do), so the memo
        and its moment change together."""
        now = self.now() if now is None else now
        if now != self._quotes_at:
            self._quotes, self._quotes_at = {}, now
        q = self._quotes.get(sym)
        if q is None:
            q = self._quotes[sym] = self.market.quote(sym, now)
        return q

    def account(self, key: str) -> Account:
        with self.lock:
            if key not in self.accounts:
                self.accounts[key] = Account(balance=self.default_balance)
            return self.accounts[key]

    # -- time ------------------------------------------------------------------------------
    def advance(self) -> None:
        """Bring every account up to the clock: triggers over the traversed range, funding."""
        with self.lock:
            now = self.now()
            if now == self._advanced_at:
                return  # the clock has not moved: nothing can have triggered since
            self._advanced_at = now
            for acct in self.accounts.values():
                # symbols in the order of their oldest open order: a set's order changed with
                # each process's string hashing, and with it which stop filled first (the
                # fills' ids, and a cross-margin account's balance at the next symbol's fill)
                for sym in dict.fromkeys(o.symbol for o in acct.open_orders()):
                    t0 = self._last_eval.get(sym, now)
                    lo, hi = self.market.range_between(sym, min(t0, now), now)
                    self.matching.evaluate(
                        acct, sym, lo, hi, now, mark_factor=1 + self.market.basis_at(sym, now),
                        reach=lambda level, falling, sym=sym, t0=min(t0, now):
                            self.market.first_reach(sym, t0, now, level, falling))
            for sym in self.market.series:
                self._last_eval[sym] = now
            epoch = now // FUNDING_MS
            if epoch > self._last_funding:
                for acct in self.accounts.values():
                    for sym, pos in acct.positions.items():
                        if pos.amt:
                            q = self._quote(sym, now)
                            self.matching.settle_funding(acct, sym, q["funding"], q["mark"], now)
                self._last_funding = epoch

    def step(self, ms: int) -> None:
        """Move the clock (tests, replays) and process everything that happened meanwhile."""
        with self.lock:
            self.market.clock.step(ms)
            self.advance()

    # -- public market data (exchange JSON) -------------------------------------------------
    def exchange_info(self) -> dict[str, Any]:
        return {"timezone": "UTC", "serverTime": self.now(), "rateLimits": RATE_LIMITS,
                "exchangeFilters": [], "assets": [{"asset": "USDT", "marginAvailable": True,
                                                   "autoAssetExchange": "-10000"}],
                "symbols": [r.to_exchange_info() for r in self.rules.values()]}

    def klines(self, symbol: str, interval: str, limit: int = 500, start: int | None = None,
               end: int | None = None, price: str = "last") -> list[list]:
        self._check_symbol(symbol)
        return self.market.candles(symbol, interval, self.now(), limit=limit, start=start, end=end,
                                   price=price)

    def ticker_price(self, symbol: str | None = None) -> Any:
        def row(sym: str, now: int) -> dict[str, Any]:
            return {"symbol": sym, "price": _num(self._quote(sym, now)["last"]), "time": now}
        return self._per_symbol(symbol, row)

    def recent_trades(self, symbol: str, limit: int = 500) -> list[dict[str, Any]]:
        """The public tape: every fill of every account on ``symbol``, oldest first."""
        self._check_symbol(symbol)
        rows = [{k: v for k, v in t.items() if k != "symbol"}
                for t in self.matching.tape if t["symbol"] == symbol]
        return rows[-limit:]

    def funding_info(self, symbol: str | None = None) -> Any:
        """Funding interval and caps per symbol (every symbol settles each FUNDING_MS)."""
        def row(sym: str, now: int) -> dict[str, Any]:
            return {"symbol": sym, "interestRate": "0.00010000", "time": now,
                    "fundingIntervalHours": FUNDING_MS // 3_600_000,
                    "fundingFeeCap": 0.03, "fundingFeeFloor": -0.03}
        rows = self._per_symbol(symbol, row)
        return rows if isinstance(rows, list) else [rows]

    def _per_symbol(self, symbol: str | None, row) -> Any:
        """One row for a symbol, or the list for all symbols (the exchange's bulk form)."""
        now = self.now()
        rows = [row(sym, now) for sym in self._symbols(symbol)]
        return rows[0] if symbol else rows

    def ticker_24h(self, symbol: str | None = None) -> Any:
        return self._per_symbol(symbol, lambda sym, now: ticker_row(self.market, sym, now))

    def parsed_quotes(self, sym: str, times: np.ndarray) -> dict[str, np.ndarray]:
        """What a client reads from the bulk ticker, book and premium rows at each of these
        moments (the quotes after the exchange's decimal formatting): a backtest's whole
        history in one call."""
        q = self.market.quotes(sym, times)
        out = {k: as_sent(q[k]) for k in ("bid", "ask", "quote_volume", "mark")}
        out["index"] = out["mark"] if np.array_equal(q["index"], q["mark"]) else as_sent(q["index"])
        out["funding"] = as_sent(q["funding"], _rate, places=8)
        return out

    def book_ticker(self, symbol: str | None = None) -> Any:
        def row(sym: str, now: int) -> dict[str, Any]:
            q = self._quote(sym, now)
            return {"symbol": sym, "bidPrice": _num(q["bid"]), "bidQty": _num(BOOK_QTY),
                    "askPrice": _num(q["ask"]), "askQty": _num(BOOK_QTY), "time": now,
                    "lastUpdateId": now}
        return self._per_symbol(symbol, row)

    def premium_index(self, symbol: str | None = None) -> Any:
        def row(sym: str, now: int) -> dict[str, Any]:
            q = self._quote(sym, now)
            return {"symbol": sym, "markPrice": _num(q["mark"]), "indexPrice": _num(q["index"]),
                    "estimatedSettlePrice": _num(q["index"]),
                    "lastFundingRate": _rate(q["funding"]),
                    "nextFundingTime": self.market.next_funding_time(sym, now),
                    "interestRate": "0.00010000", "time": now}
        return self._per_symbol(symbol, row)

    def depth(self, symbol: str, limit: int = 20) -> dict[str, Any]:
        self._check_symbol(symbol)
        q = self.market.quote(symbol)
        tick = float(self.rules[symbol].tick)
        bids = [[_num(q["bid"] - i * tick), _num(5 * (1 + i))] for i in range(limit)]
        asks = [[_num(q["ask"] + i * tick), _num(5 * (1 + i))] for i in range(limit)]
        now = self.now()
        return {"lastUpdateId": now, "E": now, "T": now, "bids": bids, "asks": asks}

    def funding_rate(self, symbol: str | None = None, limit: int = 100, start: int | None = None,
                     end: int | None = None) -> list[dict[str, Any]]:
        """Settled rates, ascending: the last ``limit`` before ``end`` (default now), or the first
        ``limit`` from ``start`` when it is given (Aster's paging)."""
        now = self.now()
        hi = min(end if end is not None else now, now)
        out = []
        for sym in self._symbols(symbol):
            s = self.market.series[sym]
            if s.funding_times is not None and s.funding is not None:  # a replay's real settlements
                rows = [(int(x), float(r)) for x, r in zip(s.funding_times, s.funding)
                        if x <= hi and (start is None or x >= start)]
                rows = rows[:limit] if start is not None else rows[-limit:]
                out += [{"symbol": sym, "fundingRate": f"{r:.8f}", "fundingTime": x} for x, r in rows]
                continue
            else:
                first = hi // FUNDING_MS * FUNDING_MS
                lo = start if start is not None else first - (limit - 1) * FUNDING_MS
                lo = -(-lo // FUNDING_MS) * FUNDING_MS
                times = list(range(lo, first + 1, FUNDING_MS))
            times = times[:limit] if start is not None else times[-limit:]
            out += [{"symbol": sym, "fundingRate": f"{self.market.funding_at(sym, ts):.8f}",
                     "fundingTime": ts} for ts in times]
        return sorted(out, key=lambda r: r["fundingTime"])

    def _symbols(self, symbol: str | None) -> list[str]:
        if symbol:
            self._check_symbol(symbol)
            return [symbol]
        return list(self.market.series)

    def _check_symbol(self, symbol: str) -> None:
        if symbol not in self.market.series:
            raise SimError(-1121, "Invalid symbol.")

    # -- signed endpoints ---------------------------------------------------------------------
    def handle_signed(self, key: str, method: str, path: str, p: dict[str, str]) -> Any:
        """Dispatch a signed request (path without the version prefix, e.g. ``order``)."""
        with self.lock:
            self.advance()
            acct = self.account(key)
            now = self.now()
            m = self.matching
            if path == "order" and method == "POST":
                return m.new_order(acct, p, now).to_api()
            if path == "order" and method == "GET":
                return m.find(acct, p.get("symbol", ""), _int(p.get("orderId")),
                              p.get("origClientOrderId")).to_api()
            if path == "order" and method == "DELETE":
                return m.cancel(acct, p.get("symbol", ""), _int(p.get("orderId")),
                                p.get("origClientOrderId"), now).to_api()
            if path == "openOrders":
                if p.get("symbol"):
                    self._check_symbol(p["symbol"])
                return [o.to_api() for o in acct.open_orders(p.get("symbol"))]
            if path == "allOpenOrders" and method == "DELETE":
                self._check_symbol(p.get("symbol", ""))
                for o in acct.open_orders(p["symbol"]):
                    o.status, o.updateTime = "CANCELED", now
                return {"code": "200", "msg": "The operation of cancel all open order is done."}
            if path == "leverage":
                return m.set_leverage(acct, p.get("symbol", ""), _int(p.get("leverage")) or 0)
            if path == "marginType":
                self._check_symbol(p.get("symbol", ""))
                return set_margin_type(acct, p.get("symbol", ""), p.get("marginType", ""))
            if path == "positionSide/dual":
                return position_mode(acct, method, p)
            if path == "leverageBracket":
                return leverage_brackets(self.rules, p.get("symbol"))
            if path == "commissionRate":
                self._check_symbol(p.get("symbol", ""))
                return {"symbol": p["symbol"], "makerCommissionRate": f"{MAKER_FEE:.6f}",
                        "takerCommissionRate": f"{TAKER_FEE:.6f}"}
            if path == "builder":
                return [{"userAddress": key, "builderAddress": b, **info}
                        for b, info in acct.builders.items()]
            if path == "approveBuilder":
                builder = p.get("builder", "").lower()
                rate = p.get("maxFeeRate", "")
                if not builder.startswith("0x") or len(builder) != 42:
                    raise SimError(-1102, "Parameter 'builder' is not an address.")
                try:
                    if not 0 <= float(rate) <= MAX_BUILDER_FEE:
                        raise ValueError
                except ValueError:
                    raise SimError(-1102, f"Parameter 'maxFeeRate' must be within [0, "
                                          f"{MAX_BUILDER_FEE}].") from None
                acct.builders[builder] = {"maxFeeRate": rate,
                                          "builderName": p.get("builderName", "")[:64]}
                return {"code": 200, "msg": "success"}
            if path == "positionRisk":
                if p.get("symbol"):
                    self._check_symbol(p["symbol"])
                return m.position_risk(acct, p.get("symbol"))
            if path == "balance":
                return m.balance_rows(acct, now)
            if path in ("account", "accountWithJoinMargin"):
                return m.account_info(acct, now)
            if path == "allOrders":
                sym = p.get("symbol", "")
                self._check_symbol(sym)
                return all_orders(acct, sym, _int(p.get("startTime")) or 0,
                                  min(1000, _int(p.get("limit")) or 500))
            if path == "userTrades":
                sym = p.get("symbol", "")
                self._check_symbol(sym)
                start = _int(p.get("startTime")) or 0
                return acct.trades_since(sym, start)[-(_int(p.get("limit")) or 500):]
            if path == "income":
                rows = acct.income_since(p.get("symbol"), p.get("incomeType"),
                                         _int(p.get("startTime")) or 0)
                return rows[-(_int(p.get("limit")) or 100):]
            raise SimError(-1020, "This operation is not supported.", http=404)


def ticker_row(market: Market, sym: str, now: int) -> dict[str, Any]:
    """The 24 h ticker of ``sym`` at ``now``, as the exchange sends it (a backtest's sentinel
    reads it for earlier moments too)."""
    st = market.stats_24h(sym, now)
    chg = st["last"] - st["open"]
    vwap = st["quote_volume"] / st["volume"] if st["volume"] else st["last"]
    return {"symbol": sym, "priceChange": _num(chg),
            "priceChangePercent": f"{100 * chg / st['open']:.3f}",
            "weightedAvgPrice": _num(vwap), "prevClosePrice": _num(st["open"]),
            "lastPrice": _num(st["last"]), "lastQty": "1", "openPrice": _num(st["open"]),
            "highPrice": _num(st["high"]), "lowPrice": _num(st["low"]),
            "volume": _num(st["volume"]), "quoteVolume": _num(st["quote_volume"]),
            "openTime": now - 86_400_000, "closeTime": now, "firstId": 1, "lastId": 2,
            "count": 2}


def set_margin_type(acct: Account, sym: str, want: str) -> dict[str, Any]:
    """``POST marginType`` as Aster answers it (aster_api.md: -4046 no change, -4047 open
    orders, -4048 an open position)."""
    want = want.upper()
    if want not in ("ISOLATED", "CROSSED"):
        raise SimError(-1130, "Data sent for parameter 'marginType' is not valid.")
    if (acct.margin_type.get(sym, "cross") == "isolated") == (want == "ISOLATED"):
        raise SimError(-4046, "No need to change margin type.")
    pos = acct.positions.get(sym)
    if pos is not None and pos.amt:
        raise SimError(-4048, "Margin type cannot be changed if there exists position.")
    if acct.open_orders(sym):
        raise SimError(-4047, "Margin type cannot be changed if there exists open orders.")
    acct.margin_type[sym] = "isolated" if want == "ISOLATED" else "cross"
    return {"code": 200, "msg": "success"}


def leverage_brackets(rules: dict[str, Any], symbol: str | None) -> Any:
    """``GET leverageBracket`` in Aster's shape (one object for a symbol, else a list)."""
    if symbol:
        if symbol not in rules:
            raise SimError(-1121, "Invalid symbol.")
        return [brackets_to_api(symbol)]
    return [brackets_to_api(sym) for sym in rules]


def position_mode(acct: Account, method: str, p: dict[str, str]) -> dict[str, Any]:
    """``GET/POST positionSide/dual``: hedge mode (two positions per symbol) or one-way."""
    if method == "GET":
        return {"dualSidePosition": acct.dual_side}
    want = str(p.get("dualSidePosition", "")).lower() == "true"
    if want == acct.dual_side:
        raise SimError(-4059, "No need to change position side.")
    acct.dual_side = want
    return {"code": 200, "msg": "success"}


def all_orders(acct: Account, symbol: str, start: int, limit: int) -> list[dict[str, Any]]:
    """``GET allOrders``: the symbol's kept orders (any status) created from ``start`` on, oldest
    first, the most recent ``limit`` of them (orders are kept in creation order)."""
    rows = acct.symbol_orders(symbol)
    rows = rows[bisect.bisect_left(rows, start, key=lambda o: o.time):][-limit:]
    return [o.to_api() for o in rows]


def _int(x: Any) -> int | None:
    try:
        return int(x) if x not in (None, "") else None
    except (TypeError, ValueError):
        raise SimError(-1130, f"Data sent for parameter '{x}' is not valid.") from None
