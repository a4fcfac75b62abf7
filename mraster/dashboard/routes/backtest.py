"""Run a backtest from the dashboard: current settings or a preset, progress while it runs."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from mraster import settings as st
from mraster.backtest import report
from mraster.backtest.runner import run_backtest
from mraster.dashboard.context import DashboardContext, get_ctx
from mraster.dashboard.routes.errors import settings_error_response
from mraster.dashboard.routes.journal import backtest_journal
from mraster.domain import is_symbol, not_a_symbol, shown
from mraster.journal import write_backtest
from mraster.sim.market import DataError

router = APIRouter(prefix="/api", tags=["backtest"])
SAMPLE_DATA = Path(__file__).resolve().parents[3] / "tests" / "data"


class BacktestRequest(BaseModel):
    preset: str | None = Field(None, description="low, mid, high or att; empty = current settings")
    # as many as the bot's universe may hold (each is also checked, and the body is capped)
    symbols: list[str] | None = Field(None, max_length=st.BY_NAME["ASTER_UNIVERSE_MAX"].max)
    days: float | None = Field(None, gt=0, le=3650, description="only the last N days of the data")


class Job:
    """One backtest at a time, in a worker thread (it is CPU work; the API stays responsive)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.status: dict[str, Any] = {"state": "idle"}

    def view(self) -> dict[str, Any]:
        with self.lock:
            return dict(self.status)

    def update(self, **kw: Any) -> None:
        with self.lock:
            self.status.update(kw)

    def start(self, **kw: Any) -> bool:
        """Claim the one slot: False when a run is already going (checked and set at once)."""
        with self.lock:
            if self.status["state"] == "running":
                return False
            self.status = {"state": "running", "progress": 0.0, "trades": 0, "error": None,
                           "report": None, "started": time.time(), **kw}
            return True


def _job(ctx: DashboardContext) -> Job:
    if ctx.backtest_job is None:
        ctx.backtest_job = Job()
    return ctx.backtest_job


@router.get("/backtest")
async def get_backtest(ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    return _job(ctx).view()


@router.post("/backtest")
def start_backtest(body: BacktestRequest, ctx: DashboardContext = Depends(get_ctx)):
    job = _job(ctx)
    if body.preset is not None and body.preset not in st.PRESETS:
        raise HTTPException(422, f"preset: {shown(body.preset)} is not allowed; expected one of "
                                 f"{', '.join(st.PRESETS)}")
    config = ctx.read_config()
    if body.preset:
        config = {k: v for k, v in config.items() if k not in st.PRESETS[body.preset]}
        config["ASTER_PRESET_MODE"] = body.preset
    try:
        s = ctx.settings(config=config)
    except st.SettingsErrors as exc:
        return settings_error_response(exc, "fix these settings before running a backtest")
    bad = [x for x in body.symbols or [] if not is_symbol(x.upper())]
    if bad:
        raise HTTPException(422, not_a_symbol("symbols", bad[0], "ETHBTC"))
    data = Path(s["ASTER_BACKTEST_DATA"]) if s["ASTER_BACKTEST_DATA"] else SAMPLE_DATA
    if not data.is_absolute():  # inside the working folder, where a download puts it
        data = ctx.env_file.parent / data
    symbols = [x.upper() for x in body.symbols] if body.symbols else None
    if not job.start(preset=s["ASTER_PRESET_MODE"], data=str(data)):
        raise HTTPException(409, "a backtest is already running; wait for it to finish")

    def work() -> None:
        try:
            result = run_backtest(data, s, symbols=symbols, last_days=body.days,
                                  progress=lambda d, n, o: job.update(progress=d, trades=n))
            rep = report.build(result)
            rep["trades"] = rep["trades"][-300:]  # every one is in the journal (History)
            write_backtest(backtest_journal(s), result)
            job.update(state="done", progress=1.0, report=rep, finished=time.time())
        except (DataError, ValueError) as exc:
            job.update(state="error", error=str(exc))
        except Exception as exc:  # shown on the page, not only in a log
            job.update(state="error", error=f"{type(exc).__name__}: {exc}")
    threading.Thread(target=work, name="backtest", daemon=True).start()
    return job.view()
