"""What the bot knows, shaped for the page; UI preferences; dismissing notices."""
from __future__ import annotations

import gzip
import hashlib
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, field_validator

from mraster.ai.budget import daily_budget
from mraster.dashboard.context import DashboardContext, get_ctx
from mraster.dashboard.routes.bot import bot_status
from mraster.dashboard.routes.journal import performance
from mraster.dashboard.views import alerts_view, chart_view, state_view
from mraster.domain import SYMBOL_EXPECTED, SYMBOL_RE, is_symbol, not_a_symbol, shown

router = APIRouter(prefix="/api", tags=["state"])
SYMBOL_PATTERN = f"^{SYMBOL_RE.pattern}$"
# a symbol in a path, as the published schema states it (check_symbol says it in words)
SymbolPath = Annotated[str, Path(pattern=SYMBOL_PATTERN, examples=["BTCUSDT"])]


def check_symbol(symbol: str) -> str:
    if not is_symbol(symbol):
        raise HTTPException(422, not_a_symbol("symbol", symbol))
    return symbol


class UiPrefs(BaseModel):
    chart_symbol: str | None = None

    @field_validator("chart_symbol")
    @classmethod
    def _symbol(cls, v: str | None) -> str | None:
        if v is not None and not is_symbol(v):
            raise ValueError(f"{SYMBOL_EXPECTED}, e.g. BTCUSDT")
        return v


# the status's figures that count seconds: the page counts them from started_ms and
# next_restart_ms, so an idle poll finds the answer unchanged
TICKING = ("uptime_s", "next_restart_in_s")


@router.get("/state")
async def get_state(request: Request, ctx: DashboardContext = Depends(get_ctx)) -> Response:
    """Serialised and compressed once per change of the state file or the bot's status, however
    many pages poll it; a poll that already has this version (``If-None-Match``) gets 304 and no
    body — between two cycles of the bot that is every poll."""
    state, version = ctx.read_state()
    budget = daily_budget(ctx.settings_lenient()[0], {})  # its limits; the figures are the state's
    files = ctx.file_alerts()
    # the journal changes when the state file does (the bot writes both each cycle)
    perf = ctx.cached("performance", version, lambda: performance(ctx))
    body = ctx.cached("state_view", (version, budget.limit, budget.strict, budget.enforced,
                                     tuple(a["message"] for a in files)),
                      lambda: json.dumps(state_view(state, budget.view(state.get("ai_budget")),
                                                    files, perf), default=str)[1:])
    bot = {k: v for k, v in bot_status(ctx).items() if k not in TICKING}
    whole = json.dumps({"bot": bot})[:-1] + "," + body
    tag, packed = ctx.cached("state_wire", whole, lambda: (
        etag(whole), gzip.compress(whole.encode(), 6, mtime=0)))
    return revalidated(request, whole, tag, packed)


@router.get("/chart/{symbol}")
def get_chart(request: Request, symbol: SymbolPath, timeframe: Literal["ltf", "htf"] = "ltf",
              ctx: DashboardContext = Depends(get_ctx)) -> Response:
    """``timeframe``: ltf = the signal timeframe, htf = the trend timeframe. The chart changes
    once a cycle; the page asks every refresh, and an unchanged chart is answered 304."""
    state, version = ctx.read_state()
    s = ctx.settings_lenient()[0]
    sym = check_symbol(symbol)
    # built once per cycle (and per setting it shows), not on every page's refresh
    key = (version, sym, tuple(s[k] for k in ("ASTER_INTERVAL", "ASTER_HTF_INTERVAL",
                                                "ASTER_RSI_BUY_MIN", "ASTER_RSI_SELL_MAX")))
    body, tag = ctx.cached(f"chart:{timeframe}", key, lambda: _tagged(json.dumps(
        chart_view(state, sym, s, timeframe), default=str)))
    return revalidated(request, body, tag)


def _tagged(body: str) -> tuple[str, str]:
    return body, etag(body)


def etag(body: str) -> str:
    return 'W/"%s"' % hashlib.blake2b(body.encode(), digest_size=12).hexdigest()


def revalidated(request: Request, body: str, tag: str, packed: bytes | None = None) -> Response:
    """``body`` under its ETag, 304 without it when the page has this version already;
    ``packed``: the body gzip-compressed once beforehand (else the middleware compresses it)."""
    headers = {"ETag": tag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    if tag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    if packed is None or "gzip" not in request.headers.get("accept-encoding", ""):
        return Response(body, media_type="application/json", headers=headers)
    return Response(packed, media_type="application/json",
                    headers={**headers, "Content-Encoding": "gzip"})


@router.put("/ui")
def put_ui(body: UiPrefs, ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    """UI preferences live in aster_state.json ("ui"); the bot charts ``chart_symbol``."""
    def change(d: dict[str, Any]) -> None:
        d.setdefault("ui", {}).update(body.model_dump(exclude_unset=True))
    return ctx.state_doc().update(change)["ui"]


@router.post("/alerts/{alert_id}/dismiss")
def dismiss(alert_id: str, ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    doc = ctx.state_doc()
    if alert_id not in {a["id"] for a in alerts_view(doc.read(), ctx.file_alerts())}:
        raise HTTPException(404, f"no open notice with id {shown(alert_id)}")

    def change(d: dict[str, Any]) -> None:
        ui = d.setdefault("ui", {})
        ui["dismissed_alerts"] = (ui.get("dismissed_alerts", []) + [alert_id])[-500:]
    doc.update(change)
    return {"dismissed": alert_id}
