"""The fire drill from the dashboard (``mraster.drill``): run it, watch its progress, and the
live-trading lock it opens: the wizard switches to live only once the drill passed with the
current trading settings, or after the user typed the override (which is recorded)."""
from __future__ import annotations

import threading
import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from mraster import settings as st
from mraster.dashboard.context import DashboardContext, get_ctx
from mraster.dashboard.routes.backtest import Job
from mraster.dashboard.routes.errors import settings_error_response
from mraster.drill import run_drill
from mraster.saved_presets import settings_hash

router = APIRouter(prefix="/api", tags=["drill"])
SECTION = "fire_drill"          # of dashboard_config.json
OVERRIDE = "SKIP THE DRILL"


def _job(ctx: DashboardContext) -> Job:
    if ctx.drill_job is None:
        ctx.drill_job = Job()
    return ctx.drill_job


def drill_record(ctx: DashboardContext) -> dict[str, Any]:
    rec = ctx.config_doc.read().get(SECTION)
    return dict(rec) if isinstance(rec, dict) else {}


def live_unlocked(ctx: DashboardContext, s: st.Settings) -> tuple[bool, str]:
    """(may the wizard switch to live, why not in words)."""
    rec, want = drill_record(ctx), settings_hash(s)
    if rec.get("passed") and rec.get("hash") == want:
        return True, ""
    if (rec.get("override") or {}).get("hash") == want:
        return True, ""
    if rec.get("hash") == want and not rec.get("passed"):
        return False, ("the fire drill failed with these settings: " + "; ".join(rec.get("why", []))
                       + f". Fix them and run it again, or type {OVERRIDE} to go live anyway")
    return False, ("run the fire drill with these settings first (Settings → Fire drill), or "
                   f"type {OVERRIDE} to go live without it")


def record_override(ctx: DashboardContext, s: st.Settings) -> None:
    def change(doc: dict[str, Any]) -> dict[str, Any]:
        rec = doc.get(SECTION) if isinstance(doc.get(SECTION), dict) else {}
        doc[SECTION] = {**rec, "override": {"hash": settings_hash(s), "at": int(time.time() * 1000)}}
        return doc
    ctx.config_doc.update(change)


@router.get("/drill")
def get_drill(ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    s, _ = ctx.settings_lenient()
    ok, why = live_unlocked(ctx, s)
    return {"job": _job(ctx).view(), "last": drill_record(ctx), "live_unlocked": ok, "why": why,
            "settings_hash": settings_hash(s)}


@router.post("/drill", responses={409: {"description": "a drill is already running"}})
def start_drill(ctx: DashboardContext = Depends(get_ctx)):
    try:
        s = ctx.settings()
    except st.SettingsErrors as exc:
        return settings_error_response(exc, "fix these settings before the drill")
    job = _job(ctx)
    if not job.start(phase=None):
        raise HTTPException(409, "a fire drill is already running; wait for it to finish")

    def work() -> None:
        try:
            card = run_drill(s, lambda done, phase: job.update(progress=done, phase=phase))
            rec = {"hash": settings_hash(s), "passed": card.passed, "why": card.why,
                   "why_words": card.why_words,
                   "at": int(time.time() * 1000), "scorecard": card.to_dict()}

            def change(doc: dict[str, Any]) -> dict[str, Any]:
                old = doc.get(SECTION) if isinstance(doc.get(SECTION), dict) else {}
                doc[SECTION] = {**rec, **({"override": old["override"]} if old.get("override") else {})}
                return doc
            ctx.config_doc.update(change)
            job.update(state="done", progress=1.0, report=card.to_dict(), finished=time.time())
        except Exception as exc:  # shown on the page, not only in a log
            job.update(state="error", error=f"{type(exc).__name__}: {exc}")
    threading.Thread(target=work, name="fire-drill", daemon=True).start()
    return job.view()
