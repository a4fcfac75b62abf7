"""The Optimise view of the Backtest tab: ``python -m mraster.optimize`` as a child process with
the current settings, its progress, its answer, and the step from a result to a saved preset —
only after the user saw the same preview of the changes as for a built-in preset; never applied.

The study is named after the request and the settings, so starting the same optimisation again
resumes it (finished trials are kept)."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from mraster import saved_presets as sp
from mraster import settings as st
from mraster.dashboard.context import DashboardContext, get_ctx
from mraster.dashboard.routes.backtest import SAMPLE_DATA
from mraster.dashboard.routes.config import _preview, _store_saved
from mraster.dashboard.routes.errors import settings_error_response
from mraster.files import beside_state
from mraster.optimize import space

router = APIRouter(prefix="/api/optimize", tags=["optimize"])
ROOT = Path(__file__).resolve().parents[3]


class OptimizeRequest(BaseModel):
    settings: list[str] = Field(["entries", "exits"], min_length=1, max_length=30,
                                description="groups (entries, exits, filters, sizing, policy) "
                                            "or setting names")
    objective: Literal["expectancy", "sortino", "profit_factor", "calmar"] = "expectancy"
    trials: int = Field(200, ge=4, le=5000)
    folds: int = Field(3, ge=0, le=10)
    holdout: float = Field(0.2, ge=0.05, le=0.5)
    max_drawdown: float = Field(0.25, gt=0, le=1)
    min_trades: int = Field(5, ge=0, le=10_000)
    jobs: int = Field(2, ge=1, le=64)
    days: float | None = Field(None, gt=0, le=3650)


class Run:
    """The dashboard's one optimisation: a child process and what its progress lines said."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.status: dict[str, Any] = {"state": "idle"}
        self.proc: subprocess.Popen | None = None
        self.report: dict[str, Any] | None = None

    def view(self) -> dict[str, Any]:
        with self.lock:
            return {**self.status, "report": _summary(self.report)}

    def update(self, **kw: Any) -> None:
        with self.lock:
            self.status.update(kw)


def _summary(rep: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the page shows (the full report is optimize.json / optimize.html)."""
    if rep is None:
        return None
    return {"folds": [{k: f.get(k) for k in ("name", "train", "test", "trials", "feasible",
                                             "in_sample", "out_of_sample", "warning",
                                             "warning_words")}
                      for f in rep["folds"]],
            "warnings": rep["warnings"], "warnings_words": rep.get("warnings_words"),
            "changes": rep["preset"]["changes"],
            "importances": rep["importances"], "monte_carlo": rep["monte_carlo"],
            "objective": rep["objective_words"]}


def _run(ctx: DashboardContext) -> Run:
    if ctx.optimize_run is None:
        ctx.optimize_run = Run()
    return ctx.optimize_run


def stop_running(ctx: DashboardContext) -> None:
    run = ctx.optimize_run
    if run is not None and run.proc is not None and run.proc.poll() is None:
        os.killpg(run.proc.pid, signal.SIGTERM)


def out_dir(s: st.Settings) -> Path:
    """Absolute: the optimiser runs in the program's folder, the dashboard in the user's."""
    return (beside_state(s, "ASTER_STATE_FILE").parent / "optimize-out").resolve()


@router.get("")
async def get_optimize(ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    return _run(ctx).view()


@router.post("", responses={409: {"description": "an optimisation is running"}})
def start_optimize(body: OptimizeRequest, ctx: DashboardContext = Depends(get_ctx)):
    run = _run(ctx)
    try:
        s = ctx.settings()
    except st.SettingsErrors as exc:
        return settings_error_response(exc, "fix these settings before optimising")
    try:
        space.build(body.settings, s)
    except space.SpaceError as exc:
        raise HTTPException(422, str(exc)) from exc
    with run.lock:
        if run.proc is not None and run.proc.poll() is None:
            raise HTTPException(409, "an optimisation is running; stop it or wait for it")
        data = Path(s["ASTER_BACKTEST_DATA"]) if s["ASTER_BACKTEST_DATA"] else SAMPLE_DATA
        if not data.is_absolute():
            data = ctx.env_file.parent / data
        data = data.resolve()
        out = out_dir(s)
        out.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASTER_")}
        env.update({k: v for k, v in s.to_env().items() if k not in st.SECRET_NAMES})
        key = hashlib.sha256(json.dumps([body.model_dump(), sorted(env.items())],
                                        default=str).encode()).hexdigest()[:10]
        cmd = [sys.executable, "-m", "mraster.optimize", "--data", str(data), "--json-progress",
               "--settings", ",".join(body.settings), "--objective", body.objective,
               "--trials", str(body.trials), "--folds", str(body.folds),
               "--holdout", str(body.holdout), "--max-drawdown", str(body.max_drawdown),
               "--min-trades", str(body.min_trades), "--jobs", str(body.jobs),
               "--out", str(out), "--study", f"dashboard-{key}"]
        if body.days:
            cmd += ["--days", str(body.days)]
        log = (out / "optimize.log").open("w")
        run.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log,
                                    text=True, start_new_session=True)
        run.report = None
        run.status = {"state": "running", "started": time.time(), "study": f"dashboard-{key}",
                      "progress": {"done": 0, "total": body.trials}, "error": None}
    threading.Thread(target=_follow, args=(run, run.proc, out), daemon=True).start()
    return run.view()


def _follow(run: Run, proc: subprocess.Popen, out: Path) -> None:
    """Progress lines → the status; the exit → the report, or the error in words."""
    for line in proc.stdout:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("event") == "progress":
            run.update(progress={k: msg.get(k) for k in ("done", "total", "study", "best", "eta_s")})
        elif msg.get("event") == "report":
            run.update(phase="report")  # trials done; the unseen windows are being scored
    code = proc.wait()
    if code == 0:
        try:
            rep = json.loads((out / "optimize.json").read_text())
        except (OSError, ValueError) as exc:
            run.update(state="error", error=f"the report could not be read: {exc}")
            return
        with run.lock:
            run.report = rep
            run.status.update(state="done", finished=time.time())
        return
    if run.view()["state"] == "stopping" or code == 130:
        run.update(state="stopped", error=None)
        return
    lines = [x for x in (out / "optimize.log").read_text(errors="replace").splitlines()
             if x.startswith("mraster.optimize:")]
    run.update(state="error", error=(lines[-1].split(":", 1)[1].strip() if lines else
                                     f"the optimiser exited with code {code}; see optimize.log"))


@router.post("/stop")
def stop_optimize(ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    """Stop after the trials in hand; starting the same optimisation again resumes it."""
    run = _run(ctx)
    with run.lock:
        if run.proc is None or run.proc.poll() is not None:
            raise HTTPException(409, "no optimisation is running")
        run.status["state"] = "stopping"
        os.killpg(run.proc.pid, signal.SIGTERM)
    return run.view()


@router.get("/report.html", response_class=HTMLResponse)
def report_page(ctx: DashboardContext = Depends(get_ctx)) -> HTMLResponse:
    path = out_dir(ctx.settings_lenient()[0]) / "optimize.html"
    if _run(ctx).report is None or not path.exists():
        raise HTTPException(404, "no finished optimisation yet")
    return HTMLResponse(path.read_text(encoding="utf-8"))


def _values(ctx: DashboardContext) -> dict[str, Any]:
    rep = _run(ctx).report
    if rep is None or not rep["preset"]["values"]:
        raise HTTPException(404, "no finished optimisation with a trial that met the constraints")
    return rep["preset"]["values"]


@router.get("/preset-preview")
def preset_preview(ctx: DashboardContext = Depends(get_ctx)):
    """What the proposed settings would change: the same preview as for a built-in preset."""
    values = _values(ctx)
    try:
        return _preview(ctx, "optimised", {**ctx.read_config(), **values}, list(values))
    except st.SettingsErrors as exc:
        return settings_error_response(exc, "the proposed settings are not valid with yours")


class PresetName(BaseModel):
    name: str = Field(..., max_length=200)


@router.post("/preset", status_code=201, responses={422: {"description": "bad or taken name"}})
def save_as_preset(body: PresetName, ctx: DashboardContext = Depends(get_ctx)):
    """Save the proposed settings as a named preset (applied only from Settings, later)."""
    values = _values(ctx)
    try:
        name = sp.check_name(body.name, ctx.saved_presets())
        s = ctx.settings(config={**ctx.read_config(), **values})  # full validation
    except sp.PresetError as exc:
        raise HTTPException(422, str(exc)) from exc
    except st.SettingsErrors as exc:
        return settings_error_response(exc, "the proposed settings were not saved")
    if s["ASTER_RISK_PER_TRADE"] > space.RISK_CAP:
        raise HTTPException(422, f"ASTER_RISK_PER_TRADE: {s['ASTER_RISK_PER_TRADE']} is not "
                                 f"allowed in an optimised preset; expected at most {space.RISK_CAP}")
    snap = sp.snapshot(s)
    _store_saved(ctx, lambda saved: {**saved, name: sp.entry(snap)})
    return {"name": name, "settings": len(snap)}
