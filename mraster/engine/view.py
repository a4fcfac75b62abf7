"""What the engine publishes for the dashboard each cycle: marks of the open positions, the
market table and the chart candles. Pure functions of the cycle's data; the dashboard's own
views (``mraster.dashboard.views``) derive the page from the state file these end up in."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from mraster.domain import Position
from mraster.strategy.signals import Candles

CHART_SYMBOLS = 8


def mark_positions(positions: Iterable[Position], rows: list[dict]) -> None:
    """Mark price, unrealised PnL, liquidation price and R (against the initial stop) of the
    open positions, from the exchange's positionRisk rows."""
    by_sym = {r["symbol"]: r for r in rows if float(r["positionAmt"])}
    for pos in positions:
        r = by_sym.get(pos.symbol)
        if r is None or not pos.is_open:
            continue
        pnl = float(r.get("unRealizedProfit", 0))
        risk = abs(pos.entry - pos.initial_stop) * pos.qty
        pos.mark = float(r.get("markPrice", 0))
        pos.unrealized = round(pnl, 8)
        pos.liquidation = float(r.get("liquidationPrice") or 0)
        pos.r_now = round(pnl / risk, 4) if risk else 0.0


def market_table(universe: list[str], tickers: Mapping[str, dict],
                 decisions: Mapping[str, dict]) -> dict[str, dict[str, Any]]:
    """One row per scanned symbol: the 24 h figures and this cycle's decision."""
    out = {}
    for sym in universe:
        t, d = tickers.get(sym, {}), decisions.get(sym, {})
        out[sym] = {"change_pct": float(t.get("priceChangePercent", 0)),
                    "quote_volume": float(t.get("quoteVolume", 0)), "last": float(t.get("lastPrice", 0)),
                    "action": d.get("action"), "side": d.get("side"), "reason": d.get("reason")}
    return out


def tick_places(rules: Mapping[str, Any], symbols: Iterable[str]) -> dict[str, int]:
    """Decimal places of each symbol's price tick, so the page shows prices as the exchange
    quotes them."""
    return {s: rules[s].price_places for s in dict.fromkeys(symbols) if s in rules}


def charts(candles: Mapping[str, tuple[Candles, Candles]], wanted: Iterable[str]
           ) -> dict[str, dict[str, list[list[float]]]]:
    """The closed candles the bot judged (open time, OHLC, volume) on both of its timeframes,
    for the dashboard's chart of the ``wanted`` symbols, in order of preference (at most
    CHART_SYMBOLS symbols): the whole window the indicators saw, so the chart's EMA and RSI
    are the bot's own."""
    out: dict[str, dict[str, list[list[float]]]] = {}
    for sym in dict.fromkeys(wanted):
        if len(out) >= CHART_SYMBOLS:
            break
        if sym in candles:
            out[sym] = {tf: np.column_stack([c.t, c.o, c.h, c.l, c.c, c.v]).tolist()
                        for tf, c in zip(("ltf", "htf"), candles[sym])}
    return out
