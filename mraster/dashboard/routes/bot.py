"""Start, stop and watch the bot process."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from mraster import settings as st
from mraster.dashboard.context import DashboardContext, get_ctx
from mraster.dashboard.routes.errors import settings_error_response
from mraster.dashboard.supervisor import SupervisorError

router = APIRouter(prefix="/api/bot", tags=["bot"])


def bot_status(ctx: DashboardContext) -> dict[str, Any]:
    s, _ = ctx.settings_lenient()
    state, _ = ctx.read_state()
    status = ctx.supervisor.status()
    bot = state.get("bot", {})
    # the bot writes why it waits into its state, and drops it once the exchange answers
    waiting = bot.get("waiting", "") if status["running"] and bot.get("pid") == status["pid"] else ""
    return {**status, "waiting": waiting, "paper": s["ASTER_PAPER"],
            "mode": state.get("mode") or ("paper" if s["ASTER_PAPER"] else "live"),
            "market_source": state.get("market_source")}


@router.get("/status")
async def status(ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    return bot_status(ctx)


async def _act(ctx: DashboardContext, action) -> dict[str, Any]:
    try:
        await action()
    except st.SettingsErrors as exc:
        return settings_error_response(exc, "the bot was not started: the configuration has "
                                            "invalid settings")
    except SupervisorError as exc:
        raise HTTPException(409, str(exc)) from None
    return bot_status(ctx)


@router.post("/start")
async def start(ctx: DashboardContext = Depends(get_ctx)):
    return await _act(ctx, ctx.supervisor.start)


@router.post("/stop")
async def stop(ctx: DashboardContext = Depends(get_ctx)):
    return await _act(ctx, ctx.supervisor.stop)


@router.post("/restart")
async def restart(ctx: DashboardContext = Depends(get_ctx)):
    return await _act(ctx, ctx.supervisor.restart)
