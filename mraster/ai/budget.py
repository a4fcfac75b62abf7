"""What AI calls cost, and a UTC-day budget that no call can cross (also under concurrency).

Prices are USD per token (input, output). A model not in the table is charged the conservative
default. Before a call, its estimated cost is *reserved*; with ``ASTER_AI_STRICT_BUDGET`` a call
whose reservation would cross the limit does not start. After the call the reservation is replaced
by the real cost from the reply's token usage. The High and ATT presets ignore the limit (the user
chose that) but every call is still recorded.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

# USD per token (input, output); editable: ASTER users can add models here
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (5e-6, 15e-6), "gpt-4o-mini": (6e-7, 2.4e-6), "o4-mini": (1.2e-6, 3.6e-6),
    "gpt-4.1": (3e-6, 9e-6), "gpt-4.1-mini": (6e-7, 2.4e-6), "gpt-4-turbo": (6e-6, 18e-6),
    "gpt-3.5-turbo": (5e-7, 1.5e-6), "gpt-5": (4e-6, 12e-6),
}
DEFAULT_PRICE = (6e-6, 18e-6)  # unknown model: priced like the dearest in the table
OUTPUT_TOKENS_ESTIMATE = 400


def price(model: str) -> tuple[float, float]:
    return PRICES.get(model, DEFAULT_PRICE)


def cost(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    pin, pout = price(model)
    return prompt_tokens * pin + completion_tokens * pout


def estimate(model: str, prompt_chars: int) -> float:
    """Before the call: about four characters per token in, a full-length answer out."""
    return cost(model, prompt_chars // 4 + 1, OUTPUT_TOKENS_ESTIMATE)


def utc_day(now: float | None = None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now))


@dataclass
class Reservation:
    amount: float
    day: str


class DailyBudget:
    """Ledger kept in the state file (``state["ai"]["budget"]``) so a restart does not reset it."""

    def __init__(self, ledger: dict[str, Any], limit_usd: float, *, strict: bool = True,
                 enforced: bool = True) -> None:
        self.ledger = ledger
        self.limit = limit_usd
        self.strict = strict
        self.enforced = enforced
        self.reserved = 0.0

    def _today(self) -> dict[str, Any]:
        day = utc_day()
        if self.ledger.get("day") != day:
            self.ledger.clear()
            self.ledger.update(day=day, spent=0.0, calls=0, models={})
        return self.ledger

    def reserve(self, amount: float) -> Reservation | None:
        """A reservation, or None when the call would cross the daily limit."""
        today = self._today()
        if self.enforced and self.strict and self.limit > 0 and \
                today["spent"] + self.reserved + amount > self.limit:
            return None
        self.reserved += amount
        return Reservation(amount, today["day"])

    def settle(self, res: Reservation, model: str, actual: float | None) -> float:
        """Replace the reservation with the real cost (the estimate when usage is unknown)."""
        self.reserved = max(0.0, self.reserved - res.amount)
        charged = res.amount if actual is None else actual
        today = self._today()
        today["spent"] += charged
        today["calls"] += 1
        m = today["models"].setdefault(model, {"calls": 0, "cost": 0.0})
        m["calls"] += 1
        m["cost"] += charged
        return charged

    def snapshot(self) -> dict[str, Any]:
        today = self._today()
        return {"day": today["day"], "spent": round(today["spent"], 6), "limit": self.limit,
                "remaining": None if self.limit <= 0 else round(max(0.0, self.limit - today["spent"]), 6),
                "calls": today["calls"], "enforced": self.enforced, "strict": self.strict,
                "models": today["models"]}


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
