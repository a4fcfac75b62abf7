"""Symbol trading rules from exchangeInfo, and rounding that always respects them.

Decimal arithmetic avoids float artefacts (0.1 + 0.2) that the exchange would reject with
"Precision is over the maximum" (-1111) or "not increased by tick size" (-4014).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any


def D(x: Any) -> Decimal:
    return x if isinstance(x, Decimal) else Decimal(str(x))


@lru_cache(maxsize=4096)
def _on_tick(tick: Decimal, base: Decimal, kind: type, price: Any, direction: str) -> Decimal:
    """``round_price``, remembered (by the price's type too: 1 and 1.0 are written apart): the
    guard and its checks round each position's stop and take-profit again every cycle."""
    mode = {"down": ROUND_FLOOR, "up": ROUND_CEILING, "nearest": ROUND_HALF_UP}[direction]
    n = ((D(price) - base) / tick).to_integral_value(rounding=mode)
    return (base + n * tick).quantize(tick)


class RuleViolation(ValueError):
    """An order does not pass a symbol rule; ``code`` is the exchange's error code for it."""

    def __init__(self, code: int, msg: str) -> None:
        self.code = code
        super().__init__(msg)


@dataclass(frozen=True)
class SymbolRules:
    symbol: str
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_step: Decimal
    market_min_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal
    min_price: Decimal = Decimal(0)
    max_price: Decimal = Decimal(0)
    status: str = "TRADING"
    base: str = ""
    quote: str = "USDT"

    @classmethod
    def from_exchange_info(cls, row: dict[str, Any]) -> "SymbolRules":
        f = {flt["filterType"]: flt for flt in row.get("filters", [])}
        pf = f.get("PRICE_FILTER", {})
        lot = f.get("LOT_SIZE", {})
        mlot = f.get("MARKET_LOT_SIZE", lot)
        mn = f.get("MIN_NOTIONAL", {})
        return cls(
            symbol=row["symbol"],
            tick=D(pf.get("tickSize", "0.0001")),
            step=D(lot.get("stepSize", "0.001")),
            min_qty=D(lot.get("minQty", "0")),
            max_qty=D(lot.get("maxQty", "0")),
            market_step=D(mlot.get("stepSize", lot.get("stepSize", "0.001"))),
            market_min_qty=D(mlot.get("minQty", "0")),
            market_max_qty=D(mlot.get("maxQty", "0")),
            min_notional=D(mn.get("notional", mn.get("minNotional", "0"))),
            min_price=D(pf.get("minPrice", "0")),
            max_price=D(pf.get("maxPrice", "0")),
            status=row.get("status", "TRADING"),
            base=row.get("baseAsset", ""),
            quote=row.get("quoteAsset", "USDT"),
        )

    @property
    def price_places(self) -> int:
        """Decimal places the exchange quotes this symbol's prices with."""
        return _places(self.tick)

    # -- rounding ---------------------------------------------------------------------------
    def round_price(self, price: Any, direction: str = "nearest") -> Decimal:
        """Round to the tick. ``down``/``up`` choose the side; brackets use the protective side
        (a long's stop rounds down, its take-profit up; a short's the other way)."""
        return _on_tick(self.tick, self.min_price or Decimal(0), type(price), price, direction)

    def round_qty(self, qty: Any, market: bool = False) -> Decimal:
        """Round a quantity down to the step (never up: rounding up would exceed the user's risk)."""
        step = self.market_step if market else self.step
        n = (D(qty) / step).to_integral_value(rounding=ROUND_FLOOR)
        return (n * step).quantize(step)

    def market_pieces(self, qty: Any, most: int = 10) -> list[Decimal]:
        """A market order of ``qty`` (on the market step) as pieces the exchange accepts: one when it
        is within the largest market order, else near-equal pieces each within it (a close of
        a position larger than that — adopted, or after the exchange lowered its limit — was
        refused whole, -4005, every time it was tried). At most ``most`` pieces (a burst of
        orders the rate limits allow): beyond that, they cover ``most`` × the largest order."""
        q, hi = D(qty), self.market_max_qty
        if not hi or q <= hi:
            return [q]
        step = self.market_step
        units, most_units = int(q / step), int(self.round_qty(hi, market=True) / step)
        if most_units < 1:  # a limit below one step: nothing to split into
            return [q]
        n = min(most, -(-units // most_units))  # as few pieces as the limit allows
        units = min(units, n * most_units)
        each, extra = divmod(units, n)  # near-equal: ``extra`` of them one step larger
        return [((each + 1) * step).quantize(step)] * extra + \
            [(each * step).quantize(step)] * (n - extra)

    # -- checks -----------------------------------------------------------------------------
    def check_price(self, price: Any, field: str = "price") -> None:
        p = _number(price, field)
        if _places(p) > _places(self.tick):
            raise RuleViolation(-1111, "Precision is over the maximum defined for this asset.")
        if p <= 0:
            raise RuleViolation(-4001, f"{field} less than or equal to zero.")
        if self.min_price and p < self.min_price:
            raise RuleViolation(-4013, "Price less than min price.")
        if self.max_price and p > self.max_price:
            raise RuleViolation(-4002, "Price greater than max price.")
        if ((p - self.min_price) % self.tick) != 0:
            raise RuleViolation(-4014, "Price not increased by tick size.")

    def check_qty(self, qty: Any, market: bool = False) -> None:
        q = _number(qty, "quantity")
        step = self.market_step if market else self.step
        if _places(q) > _places(step):
            raise RuleViolation(-1111, "Precision is over the maximum defined for this asset.")
        lo = self.market_min_qty if market else self.min_qty
        hi = self.market_max_qty if market else self.max_qty
        if q <= 0:
            raise RuleViolation(-4003, "Quantity less than or equal to zero.")
        if lo and q < lo:
            raise RuleViolation(-4004, "Quantity less than min quantity.")
        if hi and q > hi:
            raise RuleViolation(-4005, "Quantity greater than max quantity.")
        if (q - (lo if lo else 0)) % step != 0:
            raise RuleViolation(-4023, "Qty not increased by step size.")

    def check_notional(self, qty: Any, price: Any, reduce_only: bool = False) -> None:
        if reduce_only or not self.min_notional:
            return
        if D(qty) * D(price) < self.min_notional:
            raise RuleViolation(-4164, f"Order's notional must be no smaller than "
                                       f"{self.min_notional} (unless you choose reduce only)")

    def check_order(self, qty: Any, price: Any, *, market: bool = False,
                    reduce_only: bool = False) -> None:
        self.check_qty(qty, market)
        if not market:
            self.check_price(price)
        self.check_notional(qty, price, reduce_only)

    def to_exchange_info(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The symbol's exchangeInfo row, as the exchange sends it (numbers as strings)."""
        row = {
            "symbol": self.symbol, "pair": self.symbol, "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": self.status,
            "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
            "baseAsset": self.base, "quoteAsset": self.quote, "marginAsset": self.quote,
            "pricePrecision": self.price_places,
            "quantityPrecision": _places(self.step),
            "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
            "underlyingSubType": [], "settlePlan": 0, "triggerProtect": "0.0500",
            "liquidationFee": "0.015000", "marketTakeBound": "0.05",
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": str(self.min_price),
                 "maxPrice": str(self.max_price), "tickSize": str(self.tick)},
                {"filterType": "LOT_SIZE", "stepSize": str(self.step), "maxQty": str(self.max_qty),
                 "minQty": str(self.min_qty)},
                {"filterType": "MARKET_LOT_SIZE", "stepSize": str(self.market_step),
                 "maxQty": str(self.market_max_qty), "minQty": str(self.market_min_qty)},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": str(self.min_notional)},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500",
                 "multiplierDown": "0.9500", "multiplierDecimal": 4},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                           "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
        }
        row.update(extra or {})
        return row


def rules_from_exchange_info(info: dict[str, Any]) -> dict[str, SymbolRules]:
    return {row["symbol"]: SymbolRules.from_exchange_info(row) for row in info.get("symbols", [])}


def bracket_rounding(side: str) -> tuple[str, str]:
    """Rounding directions (stop, take-profit) for a position side, away from harm: a long's stop
    rounds down and its take-profit up, a short's stop up and its take-profit down."""
    return ("down", "up") if side.upper() in ("LONG", "BUY") else ("up", "down")


def _number(x: Any, name: str) -> Decimal:
    """A finite decimal, or the exchange's "malformed parameter" refusal (never a crash)."""
    try:
        d = D(x)
    except ArithmeticError:
        d = Decimal("NaN")
    if not d.is_finite():
        raise RuleViolation(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, "
                                   "or malformed.")
    return d


def _places(x: Decimal) -> int:
    """Decimal places of a number as written without trailing zeros (0.0100 → 2)."""
    return max(0, -x.normalize().as_tuple().exponent)
