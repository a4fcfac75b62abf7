"""The execution core's typed model: sides, order and position states, owners, and the
Order, Position, Trade and Intent records the engine passes around.

Enums rather than bare strings so a typo is an error, not a silently different state. Their values
are the strings the exchange and the state file already use, so the persisted form is unchanged.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Mapping

# an exchange symbol as the bot accepts one from a setting, the page or a saved file
SYMBOL_RE = re.compile(r"[A-Z0-9]{2,30}")


SYMBOL_EXPECTED = "expected 2-30 characters A-Z and 0-9"  # SYMBOL_RE in words


def is_symbol(x: Any) -> bool:
    """The whole of ``x`` is a symbol (``SYMBOL_RE.match`` would pass "ETH/BTC" on its "ETH")."""
    return isinstance(x, str) and SYMBOL_RE.fullmatch(x) is not None


def shown(value: Any, limit: int = 60) -> str:
    """A refused value as an error message quotes it: ``repr``, cut to ``limit`` characters, so
    a megabyte typed into a field is not sent back whole."""
    try:
        text = repr(value)
    except ValueError:  # an integer with more digits than Python will print
        return "a number too large"
    return text if len(text) <= limit else text[:limit - 3] + "…"


def not_a_symbol(field: str, x: Any, example: str = "BTCUSDT") -> str:
    """What every check that refuses a symbol says: the field, the value, the allowed form."""
    return f"{field}: {shown(x)} is not allowed; {SYMBOL_EXPECTED}, e.g. {example}"


class Side(str, Enum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> "Side":
        return Side.SELL if self is Side.BUY else Side.BUY

    @classmethod
    def of_amount(cls, amount: float) -> "Side":
        return cls.BUY if amount > 0 else cls.SELL


class PositionStatus(str, Enum):
    PENDING = "pending"  # the entry left (or may have left); its outcome is not known yet
    OPEN = "open"


class Owner(str, Enum):
    BOT = "bot"            # opened by orders carrying the bot's client-id prefix
    EXTERNAL = "external"  # opened by anyone else (or not provably the bot's): off limits


class OrderStatus(str, Enum):
    """The outcome of an order the bot sent. Only the exchange's explicit refusal makes it
    REJECTED; a lost answer, a 5xx, a timeout or a failed lookup make it UNKNOWN, which a later
    lookup (by client id) turns into FILLED or REJECTED. See ``next_entry_status``."""
    SENT = "sent"          # on disk as an intent, on its way (or maybe arrived)
    FILLED = "filled"
    REJECTED = "rejected"  # the exchange said no (or says it never had it, after its window)
    UNKNOWN = "unknown"    # the exchange may have acted; only it can say


# the order-outcome state machine: which event moves an entry order from which status
_ENTRY_MOVES: dict[tuple[OrderStatus, str], OrderStatus] = {
    (OrderStatus.SENT, "filled"): OrderStatus.FILLED,
    (OrderStatus.SENT, "refused"): OrderStatus.REJECTED,
    (OrderStatus.SENT, "unknown"): OrderStatus.UNKNOWN,
    (OrderStatus.UNKNOWN, "filled"): OrderStatus.FILLED,
    (OrderStatus.UNKNOWN, "refused"): OrderStatus.REJECTED,
    (OrderStatus.UNKNOWN, "unknown"): OrderStatus.UNKNOWN,
}


def next_entry_status(now: OrderStatus, event: str) -> OrderStatus:
    """Sent → Filled | Rejected | Unknown → (lookup) Filled | Rejected. FILLED and REJECTED are
    final: a late or repeated answer never reopens a closed question (a ValueError says so)."""
    try:
        return _ENTRY_MOVES[(now, event)]
    except KeyError:
        raise ValueError(f"entry order {now.value}: no move on {event!r}") from None


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the bot sends it. Its client id (``execution.ids``) is derived from the
    position's token, so a resend after a lost answer is the same order to the exchange (refused
    as a duplicate, then looked up) and never a second one."""
    symbol: str
    side: Side
    type: str                      # MARKET | STOP_MARKET | TAKE_PROFIT_MARKET
    client_id: str
    quantity: str | None = None    # exact decimals, already on the symbol's step
    stop_price: str | None = None  # triggers on the mark price
    reduce_only: bool = False
    close_position: bool = False   # a bracket: closes whatever size is open when it triggers
    result: bool = False           # ask for the fill in the answer (entries)

    def params(self) -> dict[str, Any]:
        """The order's request parameters, as the exchange names them."""
        p: dict[str, Any] = {"symbol": self.symbol, "side": self.side.value, "type": self.type,
                             "newClientOrderId": self.client_id}
        if self.quantity is not None:
            p["quantity"] = self.quantity
        if self.stop_price is not None:
            p.update(stopPrice=self.stop_price, workingType="MARK_PRICE")
        if self.reduce_only:
            p["reduceOnly"] = True
        if self.close_position:
            p["closePosition"] = True
        if self.result:
            p["newOrderRespType"] = "RESULT"
        return p


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


@dataclass(slots=True)
class Position:
    """One position the bot owns (or an entry whose outcome is still being found out).

    The engine, the reconciler, the bracket guard and the exit rules work on this record; the
    state file's form (``to_dict``) and the dashboard's view are derived from it. Keys a newer
    version wrote are kept in ``extra`` and written back unchanged, so a downgrade loses nothing.
    """
    token: str
    symbol: str
    side: Side
    status: PositionStatus
    entry: float
    qty: float
    stop: float
    initial_stop: float
    take_profit: float
    opened_at: int
    entry_client_id: str
    atr: float = 0.0
    leverage: int = 1
    risk_usdt: float = 0.0
    sl_atr_mult: float | None = None
    tp_atr_mult: float | None = None
    entry_status: OrderStatus = OrderStatus.FILLED
    sent_ms: int = 0              # wall time the entry left (the exchange's consistency window)
    origin: str = "bot"           # bot | chat | adopted
    arm: str | None = None        # the policy's choice, taught the trade's R when it closes
    policy_features: list[float] | None = None
    expected_r: float | None = None
    bucket: str | None = None
    ai: Any = None                # the advisor's explanation of its verdict
    ai_source: str | None = None
    fasttp: dict[str, Any] | None = None
    fasttp_at: int = 0
    quote_price: float | None = None  # the price the decision saw (slippage = fill − this)
    regime: str | None = None     # the playbook's market regime at entry (AI mode)
    stop_rule: str | None = None  # breakeven | trailing | fasttp once a rule moved the stop
    close_reason: str | None = None  # why the bot itself closed it (manual, no_stop, ...)
    bracket_seq: dict[str, int] = field(default_factory=dict)
    close_seq: int = 0            # market closes sent so far (each attempt's ids are new)
    # when the reconciliation found the trade over although its symbol holds a position in its
    # direction (someone opened it again after the bot's exit): it holds nothing from then on,
    # and waits only for its booking (the fills read, its leftover brackets cancelled)
    ended_at: int = 0
    protection: dict[str, Any] = field(default_factory=dict)  # the last read-back (ProtectionWatch)
    mark: float | None = None     # from the exchange each cycle, for the dashboard
    unrealized: float | None = None
    liquidation: float | None = None
    r_now: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sign(self) -> int:
        return self.side.sign

    @property
    def is_open(self) -> bool:
        return self.status is PositionStatus.OPEN

    def holds(self, amount: float) -> bool:
        """Is ``amount`` (the exchange's signed size of the symbol) this position's direction?
        Never for a trade found over (``ended_at``): the symbol's position is someone else's."""
        return not self.ended_at and amount != 0 and (amount > 0) == (self.side is Side.BUY)

    def r_at(self, price: float) -> float:
        """Profit at ``price`` in R, against the initial stop."""
        risk = abs(self.entry - self.initial_stop)
        return self.sign * (price - self.entry) / risk if risk else 0.0

    def fill(self, entry: float, qty: float, status: PositionStatus, sl_mult: float,
             tp_mult: float) -> None:
        """Entry, size and bracket levels from the (actual or intended) fill: the stop and the
        target sit ``sl_mult``/``tp_mult`` ATRs from the price actually paid."""
        self.sl_atr_mult = self.sl_atr_mult if self.sl_atr_mult is not None else sl_mult
        self.tp_atr_mult = self.tp_atr_mult if self.tp_atr_mult is not None else tp_mult
        stop = entry - self.sign * self.sl_atr_mult * self.atr
        self.entry, self.qty, self.status = entry, qty, status
        self.initial_stop = self.stop = stop
        self.take_profit = entry + self.sign * self.tp_atr_mult * self.atr
        self.risk_usdt = qty * abs(entry - stop)

    def to_dict(self) -> dict[str, Any]:
        out = {f: _plain(getattr(self, f)) for f in _POSITION_FIELDS if f != "extra"}
        return {**self.extra, **out}

    @classmethod
    def from_dict(cls, d: dict[str, Any], token: str | None = None) -> "Position":
        """From the state file (checked by ``files.PositionShape``); older files lack the client
        id (derived from the token) and the entry's order status (derived from the status)."""
        known = {k: v for k, v in d.items() if k in _POSITION_FIELDS and k != "extra"}
        known["token"] = token or str(d.get("token") or "")
        known["side"] = Side(d["side"])
        known["status"] = PositionStatus(d["status"])
        if "entry_status" in known:
            known["entry_status"] = OrderStatus(known["entry_status"])
        elif known["status"] is PositionStatus.PENDING:
            known["entry_status"] = OrderStatus.UNKNOWN
        if not known.get("entry_client_id"):
            from mraster.execution import ids
            known["entry_client_id"] = ids.order_id("E", known["token"])
        known["bracket_seq"] = dict(known.get("bracket_seq") or {})
        known["protection"] = dict(known.get("protection") or {})
        extra = {k: v for k, v in d.items() if k not in _POSITION_FIELDS}
        return cls(**known, extra=extra)


def positions_of(doc: Mapping[str, Any]) -> dict[str, "Position"]:
    """A state document's positions (shape-checked on read, ``files.PositionShape``) as
    records; ones that are records already are kept as they are."""
    return {t: p if isinstance(p, Position) else Position.from_dict(p, t)
            for t, p in doc.get("positions", {}).items()}


def position_amounts(rows: list[dict]) -> dict[str, float]:
    """Signed position sizes of the symbols with a position (from positionRisk rows)."""
    return {r["symbol"]: float(r["positionAmt"]) for r in rows if float(r["positionAmt"])}


_POSITION_FIELDS = tuple(f.name for f in fields(Position))  # declaration order: the file's


@dataclass(frozen=True, slots=True)
class Trade:
    """A closed trade as History, trades.csv and the postmortems read it: every number from
    fills (``execution.booking``), so pnl = side × (exit − entry) × qty − fees + funding."""
    symbol: str
    side: Side
    qty: float
    entry: float
    exit: float | None
    initial_stop: float
    stop: float
    take_profit: float
    opened_at: int
    closed_at: int
    pnl: float
    fees: float
    funding: float
    r: float
    reason: str
    client_id: str
    origin: str = "bot"
    arm: str | None = None
    ai: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Intent:
    """What the evaluator wants done: open ``side`` on ``symbol``. The executor sizes it (risk,
    leverage, liquidation buffer, exposure caps) and may still refuse it with a skip reason."""
    symbol: str
    side: Side
    expected_r: float
    win_prob: float
    features: Any              # strategy.signals.Features of the closed candles
    snapshot: Any              # strategy.filters.Snapshot of the quotes
    decision: Any              # policy.Decision (arm, bucket, alpha)
    policy_features: Any       # the bandit's context vector (None for a user's trade)
    confidence: float
    info: dict[str, Any]       # the figures shown with the decision (rsi, trend)
    ai: Any = None             # ai.plan.TradePlan when the advisor approved it
    origin: str = "bot"        # bot | chat
