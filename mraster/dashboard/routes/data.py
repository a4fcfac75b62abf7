"""Candles for the backtest from Aster (``mraster.data``), from the Backtest tab: one download at a
time, in a worker thread, with progress; the backtest then reads the folder."""
from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from mraster import settings as st
from mraster.dashboard.context import DashboardContext, get_ctx
from mraster.dashboard.routes.backtest import Job
from mraster.dashboard.routes.config import save_config
from mraster.dashboard.routes.errors import settings_error_response
from mraster.data import download
from mraster.domain import is_symbol, not_a_symbol
from mraster.exchange.rest import AsterRest

router = APIRouter(prefix="/api", tags=["data"])
DEFAULT_FOLDER = "data"


class DownloadRequest(BaseModel):
    symbols: list[str] = Field(..., min_length=1, max_length=20)
    days: float = Field(30, gt=0, le=365)
    interval: str = Field("5m", max_length=4)


def data_folder(ctx: DashboardContext, name: str) -> Path:
    """A relative folder is inside the working folder (where .env and the config live)."""
    p = Path(name)
    return p if p.is_absolute() else ctx.env_file.parent / p


def _job(ctx: DashboardContext) -> Job:
    if ctx.download_job is None:
        ctx.download_job = Job()
    return ctx.download_job


@router.get("/data/download")
def get_download(ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    return _job(ctx).view()


@router.post("/data/download", responses={409: {"description": "a download is running"}})
def start_download(body: DownloadRequest, ctx: DashboardContext = Depends(get_ctx)):
    bad = [x for x in body.symbols if not is_symbol(x.upper())]
    if bad:
        raise HTTPException(422, not_a_symbol("symbols", bad[0]))
    try:
        s = ctx.settings()
    except st.SettingsErrors as exc:
        return settings_error_response(exc, "fix these settings before downloading")
    folder = data_folder(ctx, s["ASTER_BACKTEST_DATA"] or DEFAULT_FOLDER)
    symbols = [x.upper() for x in body.symbols]
    job = _job(ctx)
    if not job.start(folder=str(folder), what=""):
        raise HTTPException(409, "a download is already running; wait for it to finish")

    def work() -> None:
        async def go() -> dict[str, Any]:
            async with AsterRest(s["ASTER_EXCHANGE_BASE"], timeout=15.0) as c:
                return await download(c, symbols, body.interval, body.days, folder,
                                      lambda sym, what, d: job.update(progress=d, what=f"{sym} {what}"))
        try:
            report = asyncio.run(go())
            if not s["ASTER_BACKTEST_DATA"]:  # the backtest reads what was just downloaded
                save_config(ctx, lambda cfg: {**cfg, "ASTER_BACKTEST_DATA": DEFAULT_FOLDER})
            job.update(state="done", progress=1.0, report=report, finished=time.time())
        except Exception as exc:  # shown on the page, not only in a log
            job.update(state="error", error=f"{type(exc).__name__}: {exc}")
    threading.Thread(target=work, name="download", daemon=True).start()
    return job.view()
