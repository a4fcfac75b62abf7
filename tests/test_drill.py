"""The fire drill: the user's settings through a bad day on the simulator (live mode over HTTP,
faults injected), scored by an observer that reads the simulator directly. It passes the real
build, fails a deliberately broken one, and locks the dashboard's live mode until it passed."""
from __future__ import annotations

from pathlib import Path

from conftest import API_KEY, API_SECRET
from dashboard_helpers import Dashboard, dashboard_environ, wait_for
from mraster import settings as st
from mraster.drill import run_drill


def defaults(**over) -> st.Settings:
    return st.load(origin="dashboard", environ={k: str(v) for k, v in over.items()},
                   env_file=Path("/none"))


def test_the_real_build_passes_the_drill_and_every_phase_happened():
    card = run_drill(defaults())
    assert card.passed, card.why
    assert card.entries >= 5 and card.trades >= 5 and not card.duplicate_ids
    assert not card.bad_trades and card.liquidations == 0 and not card.limits_exceeded
    assert card.recovery_cycles is not None and card.recovery_cycles <= 3
    names = [p["name"] for p in card.phases]
    assert len(names) == 10 and names[-1] == "network healed"
    # the stops refused: positions went unprotected, but no longer than the stop grace allows
    grace_min = defaults()["ASTER_STOP_GRACE_SECONDS"] / 60
    assert all(u["minutes"] <= grace_min + 2 for u in card.unprotected)


def test_a_build_that_places_no_brackets_fails_the_drill(monkeypatch):
    """The deliberately broken build: the bracket guard does nothing."""
    from mraster.execution.brackets import BracketGuard

    async def no_brackets(self, positions, amounts, **kw):
        return {"placed": 0, "replaced": 0, "cancelled": 0, "closed": 0, "failed": 0}
    monkeypatch.setattr(BracketGuard, "run", no_brackets)
    card = run_drill(defaults())
    assert not card.passed
    assert any("without a stop" in w for w in card.why)
    assert any(w["template"].startswith("{n} position(s) without a stop for longer than")
               for w in card.why_words)  # the page says it in the reader's language
    assert max(u["minutes"] for u in card.unprotected) > 5


def test_live_is_locked_until_the_drill_passed_with_these_settings(tmp_path):
    with Dashboard(tmp_path, dashboard_environ(tmp_path)) as d:
        assert d.put("/api/config/secrets", {"values": {"ASTER_API_KEY": API_KEY,
                                                        "ASTER_API_SECRET": API_SECRET}}).status_code == 200
        live = {"mode": "live", "confirm": "TRADE REAL MONEY"}
        assert d.get("/api/drill").json()["live_unlocked"] is False
        assert d.post("/api/setup", live).status_code == 422
        assert d.post("/api/drill").status_code == 200
        assert d.post("/api/drill").status_code == 409  # one at a time
        job = wait_for(lambda: (j := d.get("/api/drill").json())["job"]["state"] != "running" and j,
                       timeout=300, what="the fire drill")
        assert job["job"]["state"] == "done" and job["last"]["passed"], job
        assert job["live_unlocked"] is True and job["job"]["report"]["entries"] >= 5
        # a changed trading setting is not what the drill rehearsed: locked again
        assert d.put("/api/config", {"values": {"ASTER_LEVERAGE": 3}}).status_code == 200
        assert d.get("/api/drill").json()["live_unlocked"] is False
        assert d.put("/api/config", {"values": {"ASTER_LEVERAGE": None}}).status_code == 200
        assert d.get("/api/drill").json()["live_unlocked"] is True  # the saved result still holds
        assert d.post("/api/setup", live).status_code == 200
