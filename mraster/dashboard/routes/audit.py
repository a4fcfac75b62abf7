"""Live against replay on demand (``mraster.audit``): the recorded day decided again."""
from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends

from mraster import settings as st
from mraster.audit import DAY_MS, audit_file
from mraster.dashboard.context import DashboardContext, get_ctx
from mraster.dashboard.routes.errors import settings_error_response
from mraster.files import beside_state

router = APIRouter(prefix="/api", tags=["audit"])

# (the page says it in the reader's language: a catalogue sentence)
NOTHING_RECORDED = ("nothing recorded yet: the bot records what it sees while it runs "
                    "(ASTER_RECORD_DAYS)")

@router.post("/audit")
def run_audit(ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    """Replay the last day of the record with the current settings (the bot does this itself
    once a day and keeps the report in the state file)."""
    try:
        s = ctx.settings()
    except st.SettingsErrors as exc:
        return settings_error_response(exc, "fix these settings before the audit")
    state, _ = ctx.read_state()
    path = beside_state(s, "ASTER_RECORD_FILE")
    if not path.exists():
        return {"cycles": 0, "compared": 0, "why": NOTHING_RECORDED}
    now = int(time.time() * 1000)
    last = int(((state.get("telemetry") or {}).get("time")) or now)
    return audit_file(str(path), s, last - DAY_MS, list(state.get("history", [])))
