"""Account-level circuit breakers: when one trips the bot is *reducing* — no new entries (bot,
AI and chat alike) while stops, take-profits, FastTP, the bracket guard, close and flatten keep
working (NautilusTrader's REDUCING state; freqtrade's protections).

Everything here is a pure function of the closed trades, the equity and the market's clock, so
the live loop, paper mode and the backtest trip at the same figures. The only memory is a small
ledger in the state file (``state["protections"]``): the UTC day and its starting equity, the
equity peak, and the breakers the user lifted early.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from mraster.words import Words, words

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Trip:
    """A breaker that is on. ``until`` is the market time it lifts by itself (None: only when
    the user lifts it); ``symbol`` is set for a breaker that locks one symbol only."""
    name: str
    message: str  # English (logs, the backtest's report)
    until: int | None
    symbol: str | None = None
    words: Mapping[str, Any] | None = None  # template and values: the page says it in its language

    @classmethod
    def of(cls, name: str, said: Words, until: int | None, symbol: str | None = None) -> Trip:
        return cls(name, str(said), until, symbol, said.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """Written every cycle a breaker is on (``asdict`` deep-copies: 10× slower)."""
        return {"name": self.name, "message": self.message, "until": self.until,
                "symbol": self.symbol, "words": self.words}


def roll_ledger(ledger: Mapping[str, Any], equity: float, now: int) -> dict[str, Any]:
    """The ledger after this moment: a new UTC day starts from today's first equity reading; the
    peak only rises (a lifted drawdown breaker restarts it from the equity at lifting)."""
    day = now // DAY_MS
    out = dict(ledger)
    if out.get("day") != day:
        out["day"], out["day_start_equity"] = day, equity
    out["peak_equity"] = max(float(out.get("peak_equity") or 0.0), equity)
    out.setdefault("lifted", {})
    return out


def _stops(history: Sequence[Mapping[str, Any]], since: int) -> list[Mapping[str, Any]]:
    """Stop-outs closed at ``since`` or later. History is booked in closing order, so only its
    tail is read (a backtest's history grows by thousands of trades); a trade booked late, after
    a restart, is still found if it closed less than a day before the window."""
    out = []
    for t in reversed(history):
        closed = int(t.get("closed_at") or 0)
        if closed < since - DAY_MS:
            break
        if t.get("reason") == "stop" and closed >= since:
            out.append(t)
    return out[::-1]


def _last_trip(times: list[int], n: int, window: int) -> int | None:
    """The latest moment (a stop-out's time) at which ``n`` stop-outs fell within ``window``;
    the pause runs from there, however the window slides afterwards (freqtrade's StoplossGuard)."""
    if n <= 0 or len(times) < n:
        return None
    hits = [times[j] for j in range(n - 1, len(times)) if times[j] - times[j - n + 1] <= window]
    return hits[-1] if hits else None


def amount(x: float, quote: str) -> float:
    """Cents for a dollar quote; a backtest over BTC-quoted pairs keeps its account in BTC, where
    two decimals showed a loss of 0.0312 BTC (about 400 USD) as "0.03 USDT"."""
    return round(x, 2 if quote.startswith("USD") else 8)


def trips(history: list[Mapping[str, Any]], ledger: Mapping[str, Any], equity: float, now: int,
          s: Mapping[str, Any]) -> list[Trip]:
    """The breakers on at ``now`` (after ``roll_ledger``), less those the user lifted."""
    out: list[Trip] = []
    start = float(ledger.get("day_start_equity") or equity)
    limit, q = s["ASTER_DAILY_LOSS_LIMIT"], s["ASTER_QUOTE"]
    if limit > 0 and start > 0 and start - equity >= limit * start:
        out.append(Trip.of("daily_loss", words(
            "today's loss {loss} {quote} is {loss_pct}% of the day's starting equity {start} "
            "(limit {limit_pct}%)", loss=amount(start - equity, q), quote=q,
            loss_pct=round((start - equity) / start * 100, 1), start=amount(start, q),
            limit_pct=round(limit * 100, 2)), until=(now // DAY_MS + 1) * DAY_MS))
    peak = float(ledger.get("peak_equity") or equity)
    dd = s["ASTER_MAX_DRAWDOWN"]
    if dd > 0 and peak > 0 and peak - equity >= dd * peak:
        out.append(Trip.of("max_drawdown", words(
            "equity {equity} {quote} is {dd_pct}% below its peak {peak} (limit {limit_pct}%); "
            "lift it by hand after reviewing", equity=amount(equity, q), quote=q,
            dd_pct=round((peak - equity) / peak * 100, 1), peak=amount(peak, q),
            limit_pct=round(dd * 100, 2)), until=None))
    window = int(s["ASTER_STREAK_WINDOW_MINUTES"] * 60_000)
    pause = int(s["ASTER_STREAK_PAUSE_MINUTES"] * 60_000)
    lock = int(s["ASTER_SYMBOL_LOCK_MINUTES"] * 60_000)
    n, per = s["ASTER_STREAK_STOPS"], s["ASTER_SYMBOL_STOPS"]
    stops = sorted((int(t.get("closed_at") or 0), str(t.get("symbol")))
                   for t in _stops(history, now - window - max(pause, lock))) \
        if n > 0 or per > 0 else []  # both off: the history need not be read
    tripped = _last_trip([t for t, _ in stops], n, window)
    if tripped is not None and tripped + pause > now:
        out.append(Trip.of("losing_streak", words(
            "{n} stop-outs within {minutes} min", n=n, minutes=s["ASTER_STREAK_WINDOW_MINUTES"]),
            until=tripped + pause))
    for sym in sorted({sym for _, sym in stops}):
        tripped = _last_trip([t for t, x in stops if x == sym], per, window)
        if tripped is not None and tripped + lock > now:
            out.append(Trip.of("symbol_stops", words(
                "{symbol}: {n} stop-outs within {minutes} min", symbol=sym, n=per,
                minutes=s["ASTER_STREAK_WINDOW_MINUTES"]), until=tripped + lock, symbol=sym))
    lifted = ledger.get("lifted", {})
    return [t for t in out if not _is_lifted(t, lifted, now)]


def _key(t: Trip) -> str:
    return f"{t.name}:{t.symbol}" if t.symbol else t.name


def _is_lifted(t: Trip, lifted: Mapping[str, int], now: int) -> bool:
    until = lifted.get(_key(t))
    return until is not None and (until == -1 or until > now)


def lift(ledger: Mapping[str, Any], active: list[Trip], equity: float, now: int) -> dict[str, Any]:
    """The ledger after the user lifted every active breaker early: each stays off until it would
    have lifted by itself (a drawdown: the peak restarts from today's equity)."""
    out = dict(ledger)
    lifted = dict(out.get("lifted", {}))
    for t in active:
        lifted[_key(t)] = t.until if t.until is not None else -1
        if t.name == "max_drawdown":
            out["peak_equity"] = equity
            lifted.pop(_key(t))
    out["lifted"] = {k: v for k, v in lifted.items() if v == -1 or v > now}
    return out


def reducing(active: list[Trip]) -> Trip | None:
    """The account-wide breaker that blocks every entry (the first), if any."""
    return next((t for t in active if t.symbol is None), None)


def locked_symbols(active: list[Trip]) -> frozenset[str]:
    return frozenset(t.symbol for t in active if t.symbol)
