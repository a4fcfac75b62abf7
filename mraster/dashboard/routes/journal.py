"""The History pages: trades, P&L by day/week/month, equity and orders from the trade journal
(``mraster.journal``), paged, filtered and exported as CSV. ``source`` picks the live or paper
journal of the bot, or the last backtest the dashboard ran (the same schema and views)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import StreamingResponse

from mraster.dashboard.context import DashboardContext, get_ctx
from mraster.files import beside_state
from mraster.journal import JournalError, JournalReader, TradeFilter

router = APIRouter(prefix="/api/journal", tags=["journal"])
Source = Literal["live", "paper", "backtest"]
MAX_MS = 10 ** 13  # year 2286: a bound, not a date anyone means


def backtest_journal(s: Mapping[str, Any]) -> Path:
    """The dashboard's last backtest, beside the bot's journal."""
    p = beside_state(s, "ASTER_JOURNAL_FILE")
    return p.with_name(f"{p.stem}.backtest.sqlite")


def _reader(ctx: DashboardContext, source: str | None) -> tuple[JournalReader, str]:
    s, _ = ctx.settings_lenient()
    state, _ = ctx.read_state()
    current = state.get("mode") or ("paper" if s["ASTER_PAPER"] else "live")
    source = source or current
    try:
        if source == "backtest":
            return JournalReader(backtest_journal(s)), source
        # before the bot's first run since the upgrade, the state file's history stands in
        return JournalReader(beside_state(s, "ASTER_JOURNAL_FILE"),
                             fallback=state if source == current else None), source
    except JournalError as exc:
        raise HTTPException(409, f"the trade journal cannot be read: {exc}") from exc


def performance(ctx: DashboardContext) -> dict[str, Any] | None:
    """The overview's figures from the journal; None (the state file's recent trades stand in)
    when it cannot be read — the notice comes from History."""
    try:
        r, source = _reader(ctx, None)
    except HTTPException:
        return None
    with r:
        return r.performance(source)


def trade_filter(source: Source | None = Query(None, description="live, paper or backtest; "
                                                "empty = the bot's current mode"),
                 symbol: str = Query("", max_length=30, pattern="^[A-Za-z0-9]*$"),
                 side: Literal["", "BUY", "SELL"] = "",
                 result: Literal["", "win", "loss"] = "",
                 reason: str = Query("", max_length=40, pattern="^[a-z_]*$"),
                 since: int | None = Query(None, ge=0, le=MAX_MS, description="closed at or "
                                           "after (ms since 1970, UTC)"),
                 until: int | None = Query(None, ge=0, le=MAX_MS, description="closed before")
                 ) -> tuple[str | None, dict[str, Any]]:
    return source, dict(symbol=symbol.upper(), side=side, result=result, reason=reason,
                        since=since, until=until)


Filter = tuple[str | None, dict[str, Any]]


@router.get("/trades")
def trades(f: Filter = Depends(trade_filter), offset: int = Query(0, ge=0, le=10 ** 7),
           limit: int = Query(50, ge=1, le=500),
           ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    """One page of closed trades, newest first, with the totals of all that match."""
    r, source = _reader(ctx, f[0])
    with r:
        return {"source": source, "offset": offset, "limit": limit,
                **r.trades(TradeFilter(mode=source, **f[1]), offset, limit)}


@router.get("/calendar")
def calendar(f: Filter = Depends(trade_filter), period: Literal["day", "week", "month"] = "day",
             ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    """P&L per UTC day, week or month (newest first)."""
    r, source = _reader(ctx, f[0])
    with r:
        return {"source": source, "period": period,
                "rows": r.calendar(TradeFilter(mode=source, **f[1]), period)}


@router.get("/equity")
def equity(source: Source | None = None, points: int = Query(500, ge=10, le=5000),
           ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    """The whole equity curve, thinned to about ``points`` buckets (lows and highs kept)."""
    r, source = _reader(ctx, source)
    with r:
        return {"source": source, "points": r.equity(source, points)}


@router.get("/orders")
def orders(source: Source | None = None, offset: int = Query(0, ge=0, le=10 ** 7),
           limit: int = Query(50, ge=1, le=500),
           ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    """Order events, newest first: what the bot sent and each order's state on the exchange."""
    r, source = _reader(ctx, source)
    with r:
        return {"source": source, "offset": offset, "limit": limit, **r.orders(source, offset, limit)}


def _csv(r: JournalReader, what: str, f: TradeFilter) -> Iterator[str]:
    with r:
        yield from r.csv(what, f)


@router.get("/{what}.csv")
def export(what: Literal["trades", "orders"], f: Filter = Depends(trade_filter),
           ctx: DashboardContext = Depends(get_ctx)) -> StreamingResponse:
    """trades.csv (with the filter) or orders.csv, oldest first."""
    r, source = _reader(ctx, f[0])
    return StreamingResponse(_csv(r, what, TradeFilter(mode=source, **f[1])), media_type="text/csv",
                             headers={"Content-Disposition":
                                      f'attachment; filename="mraster-{source}-{what}.csv"'})
