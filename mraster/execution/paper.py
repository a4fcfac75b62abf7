"""Exchange adapters that do not send real orders, behind the same interface as AsterRest.

- ``LocalExchange``: the built-in simulator in-process (offline paper mode, backtests).
- ``PaperExchange``: market data from the real exchange (any AsterRest), fills from the
  simulator's matching engine against the latest quotes.

Both keep their account (balance, positions, open orders, fills) in a JSON-able form that the
caller persists, so a paper account survives a restart.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from mraster.exchange import errors as E
from mraster.exchange.rules import rules_from_exchange_info
from mraster.sim.exchange import (SimExchange, all_orders, leverage_brackets, position_mode,
                                  set_margin_type)
from mraster.sim.matching import MAKER_FEE, TAKER_FEE, Account, Matching, SimError

Persist = Callable[[dict[str, Any]], None]


def _raise(e: SimError, path: str) -> None:
    raise E.from_response(e.http, e.code, e.msg, path) from None


class _SignedMixin:
    async def account(self) -> dict:
        return self._signed("GET", "account", {})

    async def balance(self) -> list:
        return self._signed("GET", "balance", {})

    async def position_risk(self, symbol: str | None = None) -> list:
        return self._signed("GET", "positionRisk", {"symbol": symbol} if symbol else {})

    async def open_orders(self, symbol: str | None = None) -> list:
        return self._signed("GET", "openOrders", {"symbol": symbol} if symbol else {})

    async def query_order(self, symbol: str, order_id: int | None = None,
                          client_id: str | None = None) -> dict:
        return self._signed("GET", "order", _ids(symbol, order_id, client_id))

    async def cancel_order(self, symbol: str, order_id: int | None = None,
                           client_id: str | None = None) -> dict:
        return self._signed("DELETE", "order", _ids(symbol, order_id, client_id))

    async def cancel_all(self, symbol: str) -> dict:
        return self._signed("DELETE", "allOpenOrders", {"symbol": symbol})

    async def set_leverage(self, symbol: str, leverage: int) -> dict:
        return self._signed("POST", "leverage", {"symbol": symbol, "leverage": str(leverage)})

    async def set_margin_type(self, symbol: str, margin_type: str) -> dict:
        return self._signed("POST", "marginType", {"symbol": symbol, "marginType": margin_type})

    async def user_trades(self, symbol: str, start_time: int | None = None, limit: int = 500) -> list:
        return self._signed("GET", "userTrades", {"symbol": symbol, "startTime": str(start_time or 0),
                                                  "limit": str(limit)})

    async def position_mode(self) -> dict:
        return self._signed("GET", "positionSide/dual", {})

    async def leverage_brackets(self) -> list:
        return self._signed("GET", "leverageBracket", {})

    async def commission_rate(self, symbol: str) -> dict:
        return self._signed("GET", "commissionRate", {"symbol": symbol})

    async def all_orders(self, symbol: str, start_time: int | None = None, limit: int = 500) -> list:
        return self._signed("GET", "allOrders", {"symbol": symbol, "startTime": str(start_time or 0),
                                                 "limit": str(limit)})

    async def income(self, symbol: str | None = None, income_type: str | None = None,
                     start_time: int | None = None, limit: int = 100) -> list:
        p = {"symbol": symbol or "", "incomeType": income_type or "",
             "startTime": str(start_time or 0), "limit": str(limit)}
        return self._signed("GET", "income", p)

    async def new_order(self, **params: Any) -> dict:
        if not params.get("newClientOrderId"):
            raise ValueError("new_order needs newClientOrderId")
        clean = {k: ("true" if v is True else "false" if v is False else str(v))
                 for k, v in params.items() if v is not None}
        return self._signed("POST", "order", clean)

    async def close(self) -> None:
        return None


def _fresh(x: Any) -> Any:
    """A copy of a JSON answer (a fresh one each time, as over HTTP); far cheaper than
    ``copy.deepcopy``, which a backtest would otherwise spend a tenth of its time in. Each
    dict is copied whole (at C speed) and only its nested containers are copied again: the
    answers are mostly lists of flat rows."""
    if isinstance(x, list):
        return [_fresh(v) if type(v) in _NESTED else v for v in x]
    if isinstance(x, dict):
        out = x.copy()
        for k, v in x.items():
            if type(v) in _NESTED:
                out[k] = _fresh(v)
        return out
    return x


_NESTED = (dict, list)


def _copy(path: str, answer: Any) -> Any:
    """``_fresh`` of a repeated read: ``positionRisk`` is a row of plain values per symbol
    (``Matching.position_risk``), copied at C speed (the generic copy looked at every value
    of every row: 50 µs a step at 56 symbols)."""
    return list(map(dict.copy, answer)) if path == "positionRisk" else _fresh(answer)


def _ids(symbol: str, order_id: int | None, client_id: str | None) -> dict[str, str]:
    p = {"symbol": symbol}
    if order_id:
        p["orderId"] = str(order_id)
    if client_id:
        p["origClientOrderId"] = client_id
    return p


class LocalExchange(_SignedMixin):
    """The simulator in-process; ``key`` names the account inside it."""

    has_credentials = True
    answers_at_once = True  # requests sent together are awaited in turn (exchange/together.py)

    def __init__(self, sim: SimExchange, key: str = "paper", persist: Persist | None = None,
                 saved: dict[str, Any] | None = None, sole_client: bool = False) -> None:
        """``sole_client``: nothing but this client changes the simulator between clock steps
        (a backtest), so a repeated read of the whole account may be answered from the last."""
        self.sim = sim
        self.sole_client = sole_client
        self.key = key
        self.persist = persist
        if saved:
            sim.accounts[key] = Account.from_json(saved)
        self.stats = {"requests": 0}
        self._writes = 0
        self._snapshots: dict[str, tuple[tuple[int, int], Any]] = {}

    def _signed(self, method: str, path: str, p: dict[str, str]) -> Any:
        self.stats["requests"] += 1
        # On a stopped clock with no other client (a backtest's step) the account changes only
        # by this client's own writes: asking twice for the whole account gives the same answer.
        again = self.sole_client and method == "GET" and path in ("account", "positionRisk") \
            and not p and self.sim.market.clock.manual
        if again:
            moment = (self.sim.market.clock.now_ms(), self._writes)
            hit = self._snapshots.get(path)
            if hit is not None and hit[0] == moment:
                return _copy(path, hit[1])
        try:
            out = self.sim.handle_signed(self.key, method, path, p)
        except SimError as e:
            _raise(e, path)
        finally:
            if method != "GET":
                self._writes += 1  # refused or not: the next read asks the simulator
        if again:
            self._snapshots[path] = (moment, _copy(path, out))
        if method != "GET" and self.persist:
            self.persist(self.sim.account(self.key).to_json())
        return out

    def _public(self, fn, *a) -> Any:
        self.stats["requests"] += 1
        try:
            with self.sim.lock:
                self.sim.advance()
                return fn(*a)
        except SimError as e:
            _raise(e, fn.__name__)

    async def ping(self) -> dict:
        return {}

    async def server_time(self) -> int:
        return self.sim.now()

    async def exchange_info(self) -> dict:
        return self._public(self.sim.exchange_info)

    async def klines(self, symbol: str, interval: str, limit: int = 500,
                     start_time: int | None = None, end_time: int | None = None) -> list:
        return self._public(self.sim.klines, symbol, interval, limit, start_time, end_time)

    async def ticker_24h(self, symbol: str | None = None) -> Any:
        return self._public(self.sim.ticker_24h, symbol)

    async def book_ticker(self, symbol: str | None = None) -> Any:
        return self._public(self.sim.book_ticker, symbol)

    async def premium_index(self, symbol: str | None = None) -> Any:
        return self._public(self.sim.premium_index, symbol)

    async def depth(self, symbol: str, limit: int = 20) -> dict:
        return self._public(self.sim.depth, symbol, limit)

    async def funding_rate(self, symbol: str | None = None, limit: int = 100) -> list:
        return self._public(self.sim.funding_rate, symbol, limit)

    def now_ms(self) -> int:
        return self.sim.now()


class PaperExchange(_SignedMixin):
    """Real market data, simulated fills. Triggers are checked whenever quotes are refreshed."""

    has_credentials = True

    def __init__(self, market, *, balance: float = 10_000.0, persist: Persist | None = None,
                 saved: dict[str, Any] | None = None) -> None:
        self.market = market
        self.persist = persist
        self.acct = Account.from_json(saved) if saved else Account(balance=balance)
        self.quotes: dict[str, dict[str, float]] = {}
        self.matching: Matching | None = None
        self.stats = market.stats if hasattr(market, "stats") else {}

    def __getattr__(self, name: str):  # public market data: straight from the real exchange
        return getattr(self.market, name)

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    async def close(self) -> None:
        await self.market.close()

    async def exchange_info(self) -> dict:
        info = await self.market.exchange_info()
        self.matching = Matching(rules_from_exchange_info(info), self._quote)
        return info

    def _quote(self, sym: str) -> dict[str, float]:
        q = self.quotes.get(sym)
        if q is None or "bid" not in q:
            raise SimError(-1121, f"No recent price for {sym} in paper mode.")
        return {"mark": q.get("mark", (q["bid"] + q["ask"]) / 2), "last": (q["bid"] + q["ask"]) / 2, **q}

    async def book_ticker(self, symbol: str | None = None) -> Any:
        rows = await self.market.book_ticker(symbol)
        for r in rows if isinstance(rows, list) else [rows]:
            q = self.quotes.setdefault(r["symbol"], {})
            q["bid"], q["ask"] = float(r["bidPrice"]), float(r["askPrice"])
        self._evaluate()
        return rows

    async def premium_index(self, symbol: str | None = None) -> Any:
        rows = await self.market.premium_index(symbol)
        for r in rows if isinstance(rows, list) else [rows]:
            self.quotes.setdefault(r["symbol"], {})["mark"] = float(r["markPrice"])
        return rows

    def _evaluate(self) -> None:
        if self.matching is None:
            return
        now = self.now_ms()
        for sym in dict.fromkeys(o.symbol for o in self.acct.open_orders()):  # (as the simulator)
            if sym in self.quotes and "bid" in self.quotes[sym]:
                q = self._quote(sym)
                last = q["last"]
                self.matching.evaluate(self.acct, sym, last, last, now,
                                       mark_factor=q["mark"] / last if last else 1.0)
        if self.persist:
            self.persist(self.acct.to_json())

    def _signed(self, method: str, path: str, p: dict[str, str]) -> Any:
        if self.matching is None:
            raise E.ExchangeUnavailable(0, "exchange info not loaded yet", 0, path)
        m, acct, now = self.matching, self.acct, self.now_ms()
        try:
            if path == "order" and method == "POST":
                out = m.new_order(acct, p, now).to_api()
            elif path == "order":
                fn = m.find if method == "GET" else (lambda a, s, i, c: m.cancel(a, s, i, c, now))
                out = fn(acct, p["symbol"], int(p["orderId"]) if p.get("orderId") else None,
                         p.get("origClientOrderId")).to_api()
            elif path == "openOrders":
                out = [o.to_api() for o in acct.open_orders(p.get("symbol"))]
            elif path == "allOpenOrders":
                for o in acct.open_orders(p["symbol"]):
                    o.status = "CANCELED"
                out = {"code": "200", "msg": "The operation of cancel all open order is done."}
            elif path == "leverage":
                out = m.set_leverage(acct, p["symbol"], int(p["leverage"]))
            elif path == "marginType":
                out = set_margin_type(acct, p["symbol"], p["marginType"])
            elif path == "positionSide/dual":
                out = position_mode(acct, method, p)
            elif path == "leverageBracket":
                out = leverage_brackets(m.rules, p.get("symbol"))
            elif path == "commissionRate":
                out = {"symbol": p["symbol"], "makerCommissionRate": f"{MAKER_FEE:.6f}",
                       "takerCommissionRate": f"{TAKER_FEE:.6f}"}
            elif path == "positionRisk":
                syms = [p["symbol"]] if p.get("symbol") else list(acct.positions)
                out = [row for sym in syms for row in m.position_risk(acct, sym)]
            elif path == "balance":
                out = m.balance_rows(acct, now)
            elif path == "account":
                out = m.account_info(acct, now)
            elif path == "userTrades":
                out = acct.trades_since(p["symbol"], int(p.get("startTime") or 0))
            elif path == "allOrders":
                out = all_orders(acct, p["symbol"], int(p.get("startTime") or 0),
                                 int(p.get("limit") or 500))
            elif path == "income":
                out = acct.income_since(p.get("symbol"), p.get("incomeType"), 0)
            else:
                raise SimError(-1020, "Unsupported in paper mode.")
        except SimError as e:
            _raise(e, path)
        if method != "GET" and self.persist:
            self.persist(acct.to_json())
        return out
