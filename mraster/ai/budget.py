"""What AI calls cost, and a UTC-day budget that no call can cross (also under concurrency).

Prices are USD per token (input, output). A model not in the table is charged the conservative
default. Before a call, its estimated cost is *reserved*; with ``ASTER_AI_STRICT_BUDGET`` a call
whose reservation would cross the limit does not start. After the call the reservation is replaced
by the real cost from the reply's token usage. The High and ATT presets ignore the limit (the user
chose that) but every call is still recorded. The ledger may be shared by processes (the bot and
the dashboard's chat): reservations live in it, not in one process's memory.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping

# USD per token (input, output); ASTER_AI_PRICES adds models or overrides these
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (5e-6, 15e-6), "gpt-4o-mini": (6e-7, 2.4e-6), "o4-mini": (1.2e-6, 3.6e-6),
    "gpt-4.1": (3e-6, 9e-6), "gpt-4.1-mini": (6e-7, 2.4e-6), "gpt-4-turbo": (6e-6, 18e-6),
    "gpt-3.5-turbo": (5e-7, 1.5e-6), "gpt-5": (4e-6, 12e-6),
}
DEFAULT_PRICE = (6e-6, 18e-6)  # unknown model: priced like the dearest in the table
OUTPUT_TOKENS_ESTIMATE = 400
RESERVATION_TTL_MS = 10 * 60_000


def price(model: str, own: Mapping[str, tuple[float, float]] | None = None) -> tuple[float, float]:
    """The user's price (``ASTER_AI_PRICES``), else the table's, else the conservative default."""
    return (own or {}).get(model) or PRICES.get(model, DEFAULT_PRICE)


def cost(model: str, prompt_tokens: int, completion_tokens: int,
         own: Mapping[str, tuple[float, float]] | None = None) -> float:
    pin, pout = price(model, own)
    return prompt_tokens * pin + completion_tokens * pout


def estimate(model: str, prompt_chars: int, own: Mapping[str, tuple[float, float]] | None = None) -> float:
    """Before the call: about four characters per token in, a full-length answer out."""
    return cost(model, prompt_chars // 4 + 1, OUTPUT_TOKENS_ESTIMATE, own)


def utc_day(now: float | None = None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now))


@dataclass
class Reservation:
    id: str
    amount: float


class MemoryLedger:
    """A ledger held in a dict (tests, backtests): the same interface as ``SectionLedger``."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data = {} if data is None else data
        self._lock = threading.Lock()

    def update(self, fn: Callable[[dict[str, Any]], Any]) -> Any:
        with self._lock:
            return fn(self.data)

    def read(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self.data))


class SectionLedger:
    """The ledger as one section of a ``JsonDocument`` (``aster_state.json`` → ``ai_budget``):
    every reservation and settlement is a locked read-modify-write of the file, so the bot's
    advisor and the dashboard's chat share one limit that neither can cross."""

    def __init__(self, doc, key: str = "ai_budget") -> None:
        self.doc, self.key = doc, key

    def update(self, fn: Callable[[dict[str, Any]], Any]) -> Any:
        out: list[Any] = []

        def change(d: dict[str, Any]) -> None:
            out.append(fn(d.setdefault(self.key, {})))
        self.doc.update(change)
        return out[0]

    def read(self) -> dict[str, Any]:
        return self.doc.read().get(self.key, {})


class DailyBudget:
    """The day's spending and the reservations of calls in flight, in a ledger that several
    processes may share. A reservation left by a process that died mid-call expires after
    ``RESERVATION_TTL_MS`` (longer than any call may take), counted as spent meanwhile."""

    def __init__(self, ledger: dict[str, Any] | MemoryLedger | SectionLedger, limit_usd: float,
                 *, strict: bool = True, enforced: bool = True) -> None:
        self.ledger = MemoryLedger(ledger) if isinstance(ledger, dict) else ledger
        self.limit = limit_usd
        self.strict = strict
        self.enforced = enforced

    @staticmethod
    def _today(d: dict[str, Any]) -> dict[str, Any]:
        day = utc_day()
        if d.get("day") != day:
            d.clear()
            d.update(day=day, spent=0.0, calls=0, models={}, reservations={})
        now = int(time.time() * 1000)
        res = d.setdefault("reservations", {})
        for rid in [k for k, (_, until) in res.items() if until < now]:
            del res[rid]
        return d

    def reserve(self, amount: float) -> Reservation | None:
        """A reservation, or None when the call would cross the daily limit."""
        rid = uuid.uuid4().hex[:12]

        def take(d: dict[str, Any]) -> Reservation | None:
            today = self._today(d)
            held = sum(a for a, _ in today["reservations"].values())
            if self.enforced and self.strict and self.limit > 0 and \
                    today["spent"] + held + amount > self.limit:
                return None
            today["reservations"][rid] = [amount, int(time.time() * 1000) + RESERVATION_TTL_MS]
            return Reservation(rid, amount)
        return self.ledger.update(take)

    def settle(self, res: Reservation, model: str, actual: float | None, kind: str = "plan") -> float:
        """Replace the reservation with the real cost (the estimate when usage is unknown)."""
        charged = res.amount if actual is None else actual

        def book(d: dict[str, Any]) -> None:
            today = self._today(d)
            today["reservations"].pop(res.id, None)
            today["spent"] += charged
            today["calls"] += 1
            m = today["models"].setdefault(model, {"calls": 0, "cost": 0.0})
            m["calls"] += 1
            m["cost"] += charged
            k = today.setdefault("kinds", {}).setdefault(kind, {"calls": 0, "cost": 0.0})
            k["calls"] += 1
            k["cost"] += charged
        self.ledger.update(book)
        return charged

    def snapshot(self) -> dict[str, Any]:
        """A read: no write to the ledger (the bot shows it every cycle)."""
        return self.view(self.ledger.read())

    def view(self, ledger: Mapping[str, Any] | None) -> dict[str, Any]:
        """The figures of a ledger already read (e.g. with the rest of the state file)."""
        return budget_view(ledger, self.limit, strict=self.strict, enforced=self.enforced)


def budget_view(ledger: Mapping[str, Any] | None, limit: float, *, strict: bool,
                enforced: bool) -> dict[str, Any]:
    """The day's figures for the page (a ledger of an earlier day counts as nothing spent)."""
    today = ledger if ledger and ledger.get("day") == utc_day() else {}
    spent = float(today.get("spent", 0.0))
    return {"day": utc_day(), "spent": round(spent, 6), "limit": limit,
            "remaining": None if limit <= 0 else round(max(0.0, limit - spent), 6),
            "calls": today.get("calls", 0), "enforced": enforced, "strict": strict,
            "models": today.get("models", {}), "kinds": today.get("kinds", {})}


def daily_budget(s, ledger: dict[str, Any] | MemoryLedger | SectionLedger) -> DailyBudget:
    """The budget the settings ask for (the High and ATT presets record but do not enforce)."""
    return DailyBudget(ledger, s["ASTER_AI_DAILY_BUDGET_USD"], strict=s["ASTER_AI_STRICT_BUDGET"],
                       enforced=s.ai_budget_enforced)


class BudgetLearner:
    """Per symbol: what trades the AI reviewed earned against what its calls for that symbol
    cost. After ``min_trades`` such trades, a symbol whose trades did not pay for the calls gets
    no AI calls for ``pause_hours`` (its candidates are decided by the rules); then it starts
    over with a clean slate."""

    def __init__(self, book: dict[str, Any], min_trades: int = 5, pause_hours: float = 24.0) -> None:
        self.book = book  # kept in the state file
        self.min_trades = min_trades
        self.pause_ms = int(pause_hours * 3_600_000)

    def _sym(self, symbol: str) -> dict[str, Any]:
        return self.book.setdefault(symbol, {"cost": 0.0, "pnl": 0.0, "trades": 0, "paused_until": 0})

    def spent(self, symbol: str, usd: float) -> None:
        self._sym(symbol)["cost"] += usd

    def traded(self, symbol: str, pnl_usd: float, now_ms: int) -> None:
        e = self._sym(symbol)
        e["pnl"] += pnl_usd
        e["trades"] += 1
        if e["trades"] >= self.min_trades and e["pnl"] < e["cost"]:
            e.update(paused_until=now_ms + self.pause_ms, cost=0.0, pnl=0.0, trades=0)

    def allows(self, symbol: str, now_ms: int) -> bool:
        return self.book.get(symbol, {}).get("paused_until", 0) <= now_ms
