"""Pause / resume, close one position, flatten all: commands for the bot.

They go into a durable inbox in aster_state.json (``commands``), so a command given while the bot
is restarting is not lost; the bot acts on it within about a second and writes its answer to
``command_acks``, which the page shows. Closing needs the symbol typed again, flattening the word
FLATTEN: a misclick must not close a trade.
"""
from __future__ import annotations

import secrets
import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field, StrictBool

from mraster.dashboard.context import DashboardContext, get_ctx
from mraster.dashboard.routes.state import SymbolPath, check_symbol
from mraster.dashboard.views import commands_view

router = APIRouter(prefix="/api", tags=["actions"])
INBOX_MAX = 50


class Pause(BaseModel):
    paused: StrictBool  # true or false, not 0 / "yes"


# the page's confirmation box takes as many characters (index.html gets it from here)
CONFIRM_MAX = 100


class Confirm(BaseModel):
    """The words typed to confirm: the symbol, ADOPT and the symbol, FLATTEN, LIFT."""
    confirm: str = Field(max_length=CONFIRM_MAX)


def new_command(kind: str, symbol: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": f"{int(time.time() * 1000)}-{secrets.token_hex(3)}", "kind": kind,
            "symbol": symbol, "created": int(time.time() * 1000), **extra}


def append_command(d: dict[str, Any], cmd: dict[str, Any]) -> None:
    """Inside a state-file update: put ``cmd`` into the bot's inbox."""
    c = d.setdefault("commands", {})
    c["inbox"] = (c.get("inbox", []) + [cmd])[-INBOX_MAX:]


def queued(ctx: DashboardContext, cmd: dict[str, Any]) -> dict[str, Any]:
    running = ctx.supervisor.status()["running"]
    return {"command": cmd, "queued": True,
            "note": None if running else "the bot is not running; it will act on this when it starts"}


def _enqueue(ctx: DashboardContext, kind: str, symbol: str | None = None) -> dict[str, Any]:
    cmd = new_command(kind, symbol)
    ctx.state_doc().update(lambda d: append_command(d, cmd))
    return queued(ctx, cmd)


@router.post("/bot/pause")
def pause(body: Pause, ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    """Paused: no new entries; stops, take-profits and FastTP keep working."""
    def change(d: dict[str, Any]) -> None:
        d.setdefault("commands", {})["paused"] = body.paused
    return commands_view(ctx.state_doc().update(change))


@router.post("/positions/{symbol}/close")
def close(symbol: SymbolPath, body: Confirm, ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    check_symbol(symbol)
    if body.confirm != symbol:
        raise HTTPException(422, f"confirm: type the symbol ({symbol}) to close this position")
    return _enqueue(ctx, "close", symbol)


ADOPT_WORD = "ADOPT"


@router.post("/positions/{symbol}/adopt")
def adopt(symbol: SymbolPath, body: Confirm, ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    """Hand a position the bot did not open (the original bot's, or one opened by hand) to the
    bot: it gets the bot's stop and take-profit (replacing protective orders of others on that
    symbol) and is managed and booked from then on."""
    check_symbol(symbol)
    if body.confirm != f"{ADOPT_WORD} {symbol}":
        raise HTTPException(422, f"confirm: type {ADOPT_WORD} {symbol} to let the bot manage this "
                                 "position (its stop and take-profit replace the ones on the exchange)")
    return _enqueue(ctx, "adopt", symbol)


@router.post("/positions/flatten")
def flatten(body: Confirm, ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    if body.confirm != "FLATTEN":
        raise HTTPException(422, "confirm: type FLATTEN to close every position of the bot")
    pause(Pause(paused=True), ctx)  # the user wants out: no new entries until they resume
    return _enqueue(ctx, "flatten")


LIFT_CONFIRMATION = "LIFT"


@router.post("/protections/lift")
def lift_breakers(body: Confirm, ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    """Lift the circuit breakers that are on before they lift by themselves."""
    if body.confirm != LIFT_CONFIRMATION:
        raise HTTPException(422, f"confirm: type {LIFT_CONFIRMATION} to allow new trades again "
                                 "before the circuit breaker lifts by itself")
    return _enqueue(ctx, "lift_breakers")
