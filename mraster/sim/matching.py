"""The matching engine shared by the simulator and paper trading.

One-way positions (``positionSide`` BOTH) with average entry, realized PnL, taker/maker fees and
funding booked to the wallet; MARKET orders fill at the touch plus a size-dependent slippage;
LIMIT orders rest and fill when crossed; STOP_MARKET / TAKE_PROFIT_MARKET trigger on the mark or
the last price per ``workingType``. When a stop and a take-profit are both crossed within one price
range, the stop fills first (the conservative reading of a candle that touched both).
"""
from __future__ import annotations

import bisect
import itertools
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

from mraster.exchange.rules import RuleViolation, SymbolRules
from mraster.liquidation import isolated_margin, liquidation_price

OPEN_STATES = ("NEW", "PARTIALLY_FILLED")
KEEP_ORDERS = 1000  # finished orders kept queryable per account
TAPE_KEEP = 1000  # recent public trades kept for /trades
TAKER_FEE = 0.0004
LIQUIDATION_FEE = 0.005  # of the notional, to the insurance fund
MAKER_FEE = 0.0002
TRIGGER_TYPES = {"STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP", "TAKE_PROFIT"}


class SimError(Exception):
    def __init__(self, code: int, msg: str, http: int = 400) -> None:
        self.code, self.msg, self.http = code, msg, http
        super().__init__(f"{code}: {msg}")


@dataclass
class Order:
    orderId: int
    clientOrderId: str
    symbol: str
    side: str
    type: str
    origQty: float
    price: float
    stopPrice: float
    reduceOnly: bool
    closePosition: bool
    workingType: str
    timeInForce: str
    time: int
    updateTime: int
    status: str = "NEW"
    executedQty: float = 0.0
    avgPrice: float = 0.0
    cumQuote: float = 0.0
    builderFeeRate: float = 0.0  # V3 builder fee, charged on top of the exchange's fee

    def to_api(self) -> dict[str, Any]:
        """The exchange's row, kept with the order: a backtest asks for every open order's on
        every step. The simulator fills an order whole, so a row changes only when its order
        finishes (its key: status, update time and executed quantity), then never again."""
        key = (self.status, self.updateTime, self.executedQty)
        kept = self.__dict__.get("_api")
        if kept is not None and kept[0] == key:
            return kept[1]  # shared: callers only read the rows (JSON out, bookings)
        row = {
            "orderId": self.orderId, "symbol": self.symbol, "status": self.status,
            "clientOrderId": self.clientOrderId, "price": _s(self.price),
            "avgPrice": _s(self.avgPrice), "origQty": _s(self.origQty),
            "executedQty": _s(self.executedQty), "cumQty": _s(self.executedQty),
            "cumQuote": _s(self.cumQuote), "timeInForce": self.timeInForce, "type": self.type,
            "origType": self.type, "reduceOnly": self.reduceOnly,
            "closePosition": self.closePosition, "side": self.side, "positionSide": "BOTH",
            "stopPrice": _s(self.stopPrice), "workingType": self.workingType,
            "priceProtect": False, "time": self.time, "updateTime": self.updateTime,
        }
        self._api = (key, row)
        return row

    def as_dict(self) -> dict[str, Any]:
        """The fields (``dataclasses.asdict`` without its deep copies: every field is a plain
        value)."""
        return {name: getattr(self, name) for name in ORDER_FIELDS}


ORDER_FIELDS = tuple(f.name for f in fields(Order))


@dataclass
class Position:
    amt: float = 0.0  # signed: >0 long, <0 short
    entry: float = 0.0
    realized: float = 0.0
    update_time: int = 0


_FLAT = Position()  # a symbol never traded (only read)


@dataclass
class Account:
    balance: float
    positions: dict[str, Position] = field(default_factory=dict)
    leverage: dict[str, int] = field(default_factory=dict)
    margin_type: dict[str, str] = field(default_factory=dict)
    orders: dict[int, Order] = field(default_factory=dict)
    trades: list[dict[str, Any]] = field(default_factory=list)
    income: list[dict[str, Any]] = field(default_factory=list)
    next_id: int = 1
    next_trade: int = 1
    dual_side: bool = False  # hedge mode (the bot refuses to trade in it)
    builders: dict[str, dict[str, str]] = field(default_factory=dict)  # approved V3 builders
    # indexes, so a query costs what it returns, not the whole run's history (issue 22)
    _open: dict[int, Order] = field(default_factory=dict, repr=False)  # may hold finished ones
    _by_cid: dict[tuple[str, str], Order] = field(default_factory=dict, repr=False)
    _sym_orders: dict[str, dict[int, Order]] = field(default_factory=dict, repr=False)
    _sym_trades: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)
    _sym_income: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for o in list(self.orders.values()):
            self.add_order(o)
        for row in self.trades:
            self._sym_trades.setdefault(row["symbol"], []).append(row)
        for row in self.income:
            self._sym_income.setdefault(row["symbol"], []).append(row)

    def to_json(self) -> dict[str, Any]:
        return {"balance": self.balance,
                "positions": {k: asdict(v) for k, v in self.positions.items() if v.amt},
                "leverage": self.leverage, "margin_type": self.margin_type,
                "orders": [o.as_dict() for o in self.orders.values()][-2000:],
                "trades": self.trades[-2000:], "income": self.income[-2000:],
                "next_id": self.next_id, "next_trade": self.next_trade,
                "dual_side": self.dual_side, "builders": self.builders}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Account":
        return cls(balance=float(d["balance"]),
                   positions={k: Position(**v) for k, v in d.get("positions", {}).items()},
                   leverage={k: int(v) for k, v in d.get("leverage", {}).items()},
                   margin_type=dict(d.get("margin_type", {})),
                   orders={o["orderId"]: Order(**o) for o in d.get("orders", [])},
                   trades=list(d.get("trades", [])), income=list(d.get("income", [])),
                   next_id=int(d.get("next_id", 1)), next_trade=int(d.get("next_trade", 1)),
                   dual_side=bool(d.get("dual_side", False)),
                   builders=dict(d.get("builders", {})))

    # -- orders ------------------------------------------------------------------------------
    def add_order(self, o: Order) -> None:
        self.orders[o.orderId] = o
        self._sym_orders.setdefault(o.symbol, {})[o.orderId] = o
        self._by_cid[(o.symbol, o.clientOrderId)] = o  # the latest of a client id wins
        if o.status in OPEN_STATES:
            self._open[o.orderId] = o

    def forget_order(self, oid: int) -> None:
        o = self.orders.pop(oid)
        self._sym_orders[o.symbol].pop(oid, None)
        self._open.pop(oid, None)
        if self._by_cid.get((o.symbol, o.clientOrderId)) is o:
            del self._by_cid[(o.symbol, o.clientOrderId)]

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        # an order never reopens, so finished ones are dropped from the index as they are met
        done = [oid for oid, o in self._open.items() if o.status not in OPEN_STATES]
        for oid in done:
            del self._open[oid]
        return [o for o in self._open.values() if symbol is None or o.symbol == symbol]

    def symbol_orders(self, symbol: str) -> list[Order]:
        """The symbol's kept orders, oldest first."""
        return list(self._sym_orders.get(symbol, {}).values())

    def by_client_id(self, symbol: str, cid: str) -> Order | None:
        return self._by_cid.get((symbol, cid))

    # -- fills and income --------------------------------------------------------------------
    def add_trade(self, row: dict[str, Any]) -> None:
        self.trades.append(row)
        self._sym_trades.setdefault(row["symbol"], []).append(row)

    def add_income(self, row: dict[str, Any]) -> None:
        self.income.append(row)
        self._sym_income.setdefault(row["symbol"], []).append(row)

    def trades_since(self, symbol: str, start: int) -> list[dict[str, Any]]:
        rows = self._sym_trades.get(symbol, [])
        return rows[bisect.bisect_left(rows, start, key=lambda r: r["time"]):]

    def income_since(self, symbol: str | None, kind: str | None, start: int) -> list[dict[str, Any]]:
        rows = self._sym_income.get(symbol, []) if symbol else self.income
        rows = rows[bisect.bisect_left(rows, start, key=lambda r: r["time"]):]
        return [r for r in rows if r["incomeType"] == kind] if kind else rows


def _s(x: float) -> str:
    return f"{float(x):.10g}" if x else "0"


Quote = dict[str, float]  # keys: bid, ask, last, mark


class Matching:
    """Order handling for accounts against quotes supplied by a market."""

    def __init__(self, rules: dict[str, SymbolRules], quote: Callable[[str], Quote],
                 max_leverage: Callable[[str], int] = lambda s: 125,
                 impact_notional: float = 250_000.0) -> None:
        self.rules = rules
        self.quote = quote
        self.max_leverage = max_leverage
        self.impact_notional = impact_notional
        self._cid = itertools.count(1)
        self.tape: deque[dict[str, Any]] = deque(maxlen=TAPE_KEEP)  # every fill, all accounts
        self._tape_id = itertools.count(1)

    # -- orders -----------------------------------------------------------------------------
    def new_order(self, acct: Account, p: dict[str, str], now: int) -> Order:
        sym = p.get("symbol", "")
        rules = self.rules.get(sym)
        if rules is None:
            raise SimError(-1121, "Invalid symbol.")
        side = p.get("side", "").upper()
        if side not in ("BUY", "SELL"):
            raise SimError(-1117, "Invalid side.")
        typ = p.get("type", "").upper()
        if typ not in ("MARKET", "LIMIT", "STOP_MARKET", "TAKE_PROFIT_MARKET"):
            raise SimError(-1116, "Invalid orderType.")
        cid = p.get("newClientOrderId") or f"sim_{next(self._cid)}_{now}"
        if len(cid) > 36:
            raise SimError(-4015, "Client order id length should not be more than 36 chars")
        if any(o.clientOrderId == cid for o in acct.open_orders(sym)):
            raise SimError(-4116, "ClientOrderId is duplicated.")
        reduce_only = str(p.get("reduceOnly", "false")).lower() == "true"
        close_pos = str(p.get("closePosition", "false")).lower() == "true"
        working = p.get("workingType", "CONTRACT_PRICE").upper()
        if working not in ("MARK_PRICE", "CONTRACT_PRICE"):
            raise SimError(-4031, "Invalid workingType.")
        q = self.quote(sym)
        pos = acct.positions.get(sym, Position())
        qty = 0.0
        if close_pos:
            if typ not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
                raise SimError(-1106, "Parameter 'closePosition' sent when not required.")
            if p.get("quantity"):
                raise SimError(-4137, "Quantity can not be sent with closePosition=true.")
            if reduce_only:
                raise SimError(-1106, "Parameter 'reduceOnly' sent when not required.")
        else:
            if not p.get("quantity"):
                raise SimError(-1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
            try:
                rules.check_qty(p["quantity"], market=typ == "MARKET")
            except RuleViolation as e:
                raise SimError(e.code, str(e)) from None
            qty = float(p["quantity"])
        price = 0.0
        if typ == "LIMIT":
            if not p.get("price"):
                raise SimError(-1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
            if not p.get("timeInForce"):
                raise SimError(-1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")
            try:
                rules.check_price(p["price"])
            except RuleViolation as e:
                raise SimError(e.code, str(e)) from None
            price = float(p["price"])
        stop = 0.0
        if typ in TRIGGER_TYPES:
            if not p.get("stopPrice"):
                raise SimError(-1102, "Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed.")
            try:
                rules.check_price(p["stopPrice"], "stopPrice")
            except RuleViolation as e:
                raise SimError(e.code, str(e)) from None
            stop = float(p["stopPrice"])
            ref = q["mark"] if working == "MARK_PRICE" else q["last"]
            if self._triggered(typ, side, stop, ref, ref):
                raise SimError(-2021, "Order would immediately trigger.")
        if reduce_only and not close_pos:
            if pos.amt == 0 or (pos.amt > 0) == (side == "BUY"):
                raise SimError(-2022, "ReduceOnly Order is rejected.")
        ref_price = price or stop or (q["ask"] if side == "BUY" else q["bid"])
        if not close_pos:
            try:
                rules.check_notional(qty, q["mark"] if typ == "MARKET" else ref_price, reduce_only)
            except RuleViolation as e:
                raise SimError(e.code, str(e)) from None
            increases = not reduce_only and (pos.amt == 0 or (pos.amt > 0) == (side == "BUY")
                                             or qty > abs(pos.amt))
            if increases and typ in ("MARKET", "LIMIT"):
                self._check_margin(acct, sym, side, qty, ref_price)
        builder_fee = self._builder_fee(acct, p)
        oid = acct.next_id
        acct.next_id += 1
        order = Order(oid, cid, sym, side, typ, qty, price, stop, reduce_only, close_pos, working,
                      p.get("timeInForce", "GTC").upper(), now, now, builderFeeRate=builder_fee)
        acct.add_order(order)
        if len(acct.orders) > KEEP_ORDERS * 2:
            self._forget_old_orders(acct)
        if typ == "MARKET":
            self._fill(acct, order, self._market_price(sym, side, qty, q), now, taker=True)
        elif typ == "LIMIT":
            crosses = (side == "BUY" and q["ask"] <= price) or (side == "SELL" and q["bid"] >= price)
            if crosses:
                if order.timeInForce == "GTX":
                    order.status = "EXPIRED"
                else:
                    self._fill(acct, order, q["ask"] if side == "BUY" else q["bid"], now, taker=True)
        return order

    @staticmethod
    def _builder_fee(acct: Account, p: dict[str, str]) -> float:
        """A V3 order may name a builder the account approved and a fee rate within the
        approved maximum; both or neither."""
        builder, rate = p.get("builder"), p.get("feeRate")
        if not builder and not rate:
            return 0.0
        approved = acct.builders.get((builder or "").lower())
        if approved is None:
            raise SimError(-1102, "Parameter 'builder' is not an approved builder of this account.")
        try:
            fee = float(rate or "")
        except ValueError:
            raise SimError(-1102, "Mandatory parameter 'feeRate' was not sent, was empty/null, "
                                  "or malformed.") from None
        if not 0 <= fee <= float(approved["maxFeeRate"]):
            raise SimError(-1102, f"Parameter 'feeRate' must be within [0, "
                                  f"{approved['maxFeeRate']}] (the approved maximum).")
        return fee

    def _check_margin(self, acct: Account, sym: str, side: str, qty: float, price: float) -> None:
        lev = acct.leverage.get(sym, 20)
        need = qty * price / lev
        if need > self.available(acct) + 1e-9:
            raise SimError(-2019, "Margin is insufficient.")

    @staticmethod
    def _forget_old_orders(acct: Account) -> None:
        """Like the exchange, keep only recent finished orders queryable (open ones always), so
        a long run does not slow down every order lookup."""
        done = [oid for oid, o in acct.orders.items() if o.status not in OPEN_STATES]
        for oid in done[: len(acct.orders) - KEEP_ORDERS]:
            acct.forget_order(oid)

    def _market_price(self, sym: str, side: str, qty: float, q: Quote) -> float:
        touch = q["ask"] if side == "BUY" else q["bid"]
        slip = min(0.01, (qty * touch) / self.impact_notional * 0.0005)  # deeper orders pay more
        return touch * (1 + slip) if side == "BUY" else touch * (1 - slip)

    @staticmethod
    def _triggered(typ: str, side: str, stop: float, lo: float, hi: float) -> bool:
        if typ in ("STOP_MARKET", "STOP"):
            return hi >= stop if side == "BUY" else lo <= stop
        return lo <= stop if side == "BUY" else hi >= stop

    def cancel(self, acct: Account, symbol: str, order_id: int | None, cid: str | None, now: int) -> Order:
        order = self.find(acct, symbol, order_id, cid)
        if order.status not in ("NEW", "PARTIALLY_FILLED"):
            raise SimError(-2011, "Unknown order sent.")
        order.status = "CANCELED"
        order.updateTime = now
        return order

    def find(self, acct: Account, symbol: str, order_id: int | None, cid: str | None) -> Order:
        order = acct.orders.get(int(order_id)) if order_id else (
            acct.by_client_id(symbol, cid) if cid else None)
        if order is None or order.symbol != symbol:
            raise SimError(-2013, "Order does not exist.")
        return order

    # -- fills, triggers, funding -----------------------------------------------------------
    def _fill(self, acct: Account, order: Order, px: float, now: int, taker: bool) -> None:
        sym = order.symbol
        pos = acct.positions.setdefault(sym, Position())
        qty = order.origQty
        if order.closePosition:
            qty = abs(pos.amt)
        if order.reduceOnly or order.closePosition:
            qty = min(qty, abs(pos.amt))
            if qty == 0 or (pos.amt > 0) == (order.side == "BUY"):
                order.status = "EXPIRED"
                order.updateTime = now
                return
        signed = qty if order.side == "BUY" else -qty
        realized = 0.0
        if pos.amt == 0 or (pos.amt > 0) == (signed > 0):
            new_amt = pos.amt + signed
            pos.entry = (pos.entry * abs(pos.amt) + px * qty) / abs(new_amt)
            pos.amt = new_amt
        else:
            closing = min(qty, abs(pos.amt))
            direction = 1 if pos.amt > 0 else -1
            realized = (px - pos.entry) * closing * direction
            pos.amt += signed
            if abs(pos.amt) < 1e-12:
                pos.amt, pos.entry = 0.0, 0.0
            elif (pos.amt > 0) != (direction > 0):  # flipped
                pos.entry = px
        pos.realized += realized
        pos.update_time = now
        fee = qty * px * ((TAKER_FEE if taker else MAKER_FEE) + order.builderFeeRate)
        acct.balance += realized - fee
        order.executedQty = qty
        order.avgPrice = px
        order.cumQuote = qty * px
        order.status = "FILLED"
        order.updateTime = now
        tid = acct.next_trade
        acct.next_trade += 1
        acct.add_trade({"buyer": order.side == "BUY", "commission": _s(fee),
                            "commissionAsset": "USDT", "id": tid, "maker": not taker,
                            "orderId": order.orderId, "price": _s(px), "qty": _s(qty),
                            "quoteQty": _s(qty * px), "realizedPnl": _s(realized),
                            "side": order.side, "positionSide": "BOTH", "symbol": sym, "time": now})
        self.tape.append({"id": next(self._tape_id), "price": _s(px), "qty": _s(qty),
                          "quoteQty": _s(qty * px), "time": now, "symbol": sym,
                          "isBuyerMaker": (order.side == "SELL") == taker})
        if realized:
            self._income(acct, sym, "REALIZED_PNL", realized, now, tid)
        self._income(acct, sym, "COMMISSION", -fee, now, tid)

    def _income(self, acct: Account, sym: str, kind: str, amount: float, now: int, tid: int = 0) -> None:
        acct.add_income({"symbol": sym, "incomeType": kind, "income": _s(amount),
                            "asset": "USDT", "info": "", "time": now, "tranId": len(acct.income) + 1,
                            "tradeId": str(tid) if tid else ""})

    def evaluate(self, acct: Account, symbol: str, lo: float, hi: float, now: int,
                 mark_factor: float = 1.0,
                 reach: Callable[[float, bool], float | None] | None = None) -> list[Order]:
        """Fill resting orders of ``symbol`` crossed by a price range [lo, hi] traded since the
        last evaluation. Stops fill before take-profits when both were crossed.

        ``reach(level, falling)``: where the traded path first reached a level (the level, or a
        gapped open beyond it). Without it a triggered stop fills at the worse of its price and
        the current touch, which is right only when the range is a few seconds wide."""
        filled = []
        q = self.quote(symbol)
        orders = sorted(acct.open_orders(symbol),
                        key=lambda o: (0 if o.type.startswith("STOP") else 1, o.orderId))
        for o in orders:
            if o.status != "NEW":
                continue
            if not o.type.startswith("STOP") and o.type in TRIGGER_TYPES:
                # take-profits after the liquidation check: a stop inside the liquidation price
                # fills first, a position whose stop lies beyond it is liquidated first
                liquidated = self.liquidate(acct, symbol, lo, hi, now, mark_factor)
                if liquidated is not None:
                    filled.append(liquidated)
            if o.type in TRIGGER_TYPES:
                f = mark_factor if o.workingType == "MARK_PRICE" else 1.0
                if self._triggered(o.type, o.side, o.stopPrice, lo * f, hi * f):
                    pos = acct.positions.get(symbol, Position())
                    # a gap through the stop fills at the worse of stop and the first price
                    # beyond it (or the current touch when the path is unknown)
                    px = o.stopPrice / f if f else o.stopPrice
                    if o.type.startswith("STOP"):
                        first = reach(px, o.side == "SELL") if reach else None
                        if first is None:
                            first = q["ask"] if o.side == "BUY" else q["bid"]
                        px = max(px, first) if o.side == "BUY" else min(px, first)
                    if o.closePosition and pos.amt == 0:
                        o.status, o.updateTime = "EXPIRED", now
                        continue
                    self._fill(acct, o, self._slip(o.side, px, o.origQty or abs(pos.amt)), now,
                               taker=True)
                    filled.append(o)
            elif o.type == "LIMIT":
                if (o.side == "BUY" and lo <= o.price) or (o.side == "SELL" and hi >= o.price):
                    self._fill(acct, o, o.price, now, taker=False)
                    filled.append(o)
        liquidated = self.liquidate(acct, symbol, lo, hi, now, mark_factor)
        if liquidated is not None:
            filled.append(liquidated)
        return filled

    # -- liquidation -------------------------------------------------------------------------
    def liquidation_price(self, acct: Account, sym: str) -> float:
        """By the exchange's formula (``mraster.liquidation``): an isolated position is backed
        by its own margin, a crossed one by the wallet and the other positions' unrealised PnL."""
        pos = acct.positions.get(sym)
        if pos is None or not pos.amt:
            return 0.0
        lev = acct.leverage.get(sym, 20)
        if acct.margin_type.get(sym, "cross") == "isolated":
            wallet = isolated_margin(pos.entry, pos.amt, lev)
        else:
            others = sum((self.quote(s)["mark"] - p.entry) * p.amt
                         for s, p in acct.positions.items() if p.amt and s != sym)
            wallet = acct.balance + others
        return liquidation_price(1 if pos.amt > 0 else -1, pos.entry, pos.amt, wallet)

    def liquidate(self, acct: Account, sym: str, lo: float, hi: float, now: int,
                  mark_factor: float = 1.0) -> Order | None:
        """Close a position whose liquidation price the mark crossed in [lo, hi] (last-price
        range × ``mark_factor``), at that price, with the liquidation fee; the order carries the
        exchange's ``autoclose-`` client id and type LIQUIDATION, as Aster's history shows it."""
        pos = acct.positions.get(sym)
        liq = self.liquidation_price(acct, sym)
        if pos is None or not pos.amt or liq <= 0:
            return None
        long = pos.amt > 0
        if not ((long and lo * mark_factor <= liq) or (not long and hi * mark_factor >= liq)):
            return None
        oid = acct.next_id
        acct.next_id += 1
        side = "SELL" if long else "BUY"
        order = Order(oid, f"autoclose-{now}", sym, side, "LIQUIDATION", abs(pos.amt), 0.0, 0.0,
                      True, False, "MARK_PRICE", "IOC", now, now)
        acct.add_order(order)
        px = liq / mark_factor if mark_factor else liq
        qty = abs(pos.amt)
        self._fill(acct, order, px, now, taker=True)
        fee = qty * px * LIQUIDATION_FEE
        acct.balance -= fee
        self._income(acct, sym, "INSURANCE_CLEAR", -fee, now)
        return order

    def _slip(self, side: str, px: float, qty: float) -> float:
        slip = min(0.01, qty * px / self.impact_notional * 0.0005)
        return px * (1 + slip) if side == "BUY" else px * (1 - slip)

    def settle_funding(self, acct: Account, symbol: str, rate: float, mark: float, now: int) -> float:
        pos = acct.positions.get(symbol)
        if not pos or not pos.amt:
            return 0.0
        pay = -pos.amt * mark * rate  # longs pay shorts when the rate is positive
        acct.balance += pay
        self._income(acct, symbol, "FUNDING_FEE", pay, now)
        return pay

    # -- account views ----------------------------------------------------------------------
    def unrealized(self, acct: Account) -> float:
        total = 0.0
        for sym, pos in acct.positions.items():
            if pos.amt:
                total += (self.quote(sym)["mark"] - pos.entry) * pos.amt
        return total

    def used_margin(self, acct: Account) -> float:
        used = 0.0
        for sym, pos in acct.positions.items():
            if pos.amt:
                used += abs(pos.amt) * self.quote(sym)["mark"] / acct.leverage.get(sym, 20)
        for o in acct.open_orders():
            if o.type == "LIMIT" and not o.reduceOnly:
                used += o.origQty * o.price / acct.leverage.get(o.symbol, 20)
        return used

    def available(self, acct: Account) -> float:
        return acct.balance + self.unrealized(acct) - self.used_margin(acct)

    def set_leverage(self, acct: Account, symbol: str, lev: int) -> dict[str, Any]:
        if symbol not in self.rules:
            raise SimError(-1121, "Invalid symbol.")
        if not 1 <= lev <= self.max_leverage(symbol):
            raise SimError(-4028, f"Leverage {lev} is not valid")
        acct.leverage[symbol] = lev
        return {"leverage": lev, "maxNotionalValue": "1000000", "symbol": symbol}

    def position_risk(self, acct: Account, symbol: str | None = None) -> list[dict[str, Any]]:
        rows = []
        for sym in ([symbol] if symbol else list(self.rules)):
            pos = acct.positions.get(sym) or _FLAT
            lev = acct.leverage.get(sym, 20)
            if pos.amt or symbol:
                mark = self.quote(sym)["mark"]
                mark_s, upnl, liq, notional = (
                    _s(mark), _s((mark - pos.entry) * pos.amt),
                    _s(self.liquidation_price(acct, sym)), _s(pos.amt * mark))
            else:  # (the whole account's rows: most symbols are flat, their figures all 0)
                mark_s = upnl = liq = notional = "0"
            rows.append({"symbol": sym, "positionAmt": _s(pos.amt) if pos.amt else "0.0",
                         "entryPrice": _s(pos.entry) if pos.amt else "0.0",
                         "markPrice": mark_s, "unRealizedProfit": upnl,
                         "liquidationPrice": liq,
                         "leverage": str(lev),
                         "maxNotionalValue": "1000000",
                         "marginType": acct.margin_type.get(sym, "cross"),
                         "isolatedMargin": _s(isolated_margin(pos.entry, pos.amt, lev))
                         if pos.amt and acct.margin_type.get(sym) == "isolated" else "0.00000000",
                         "isAutoAddMargin": "false",
                         "positionSide": "BOTH", "notional": notional,
                         "isolatedWallet": "0", "updateTime": pos.update_time})
        return rows

    def balance_rows(self, acct: Account, now: int, asset: str = "USDT",
                     upnl: float | None = None, avail: float | None = None
                     ) -> list[dict[str, Any]]:
        upnl = self.unrealized(acct) if upnl is None else upnl
        avail = self.available(acct) if avail is None else avail
        return [{"accountAlias": "SgsR", "asset": asset, "balance": _s(acct.balance),
                 "crossWalletBalance": _s(acct.balance), "crossUnPnl": _s(upnl),
                 "availableBalance": _s(avail), "maxWithdrawAmount": _s(max(avail, 0)),
                 "marginAvailable": True, "updateTime": now}]

    def account_info(self, acct: Account, now: int, asset: str = "USDT") -> dict[str, Any]:
        upnl = self.unrealized(acct)
        used = self.used_margin(acct)
        avail = acct.balance + upnl - used  # ``available``, from the sums just made
        positions = [
            {"symbol": s, "positionAmt": _s(p.amt), "entryPrice": _s(p.entry),
             "unrealizedProfit": _s((self.quote(s)["mark"] - p.entry) * p.amt),
             "leverage": str(acct.leverage.get(s, 20)), "positionSide": "BOTH",
             "updateTime": p.update_time}
            for s, p in acct.positions.items() if p.amt]
        return {"feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True,
                "updateTime": now, "totalInitialMargin": _s(used), "totalMaintMargin": _s(used / 4),
                "totalWalletBalance": _s(acct.balance), "totalUnrealizedProfit": _s(upnl),
                "totalMarginBalance": _s(acct.balance + upnl),
                "totalPositionInitialMargin": _s(used), "totalOpenOrderInitialMargin": "0",
                "totalCrossWalletBalance": _s(acct.balance), "totalCrossUnPnl": _s(upnl),
                "availableBalance": _s(avail), "maxWithdrawAmount": _s(max(avail, 0)),
                "assets": self.balance_rows(acct, now, asset, upnl, avail), "positions": positions}
