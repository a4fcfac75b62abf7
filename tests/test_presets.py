"""Presets are whole risk profiles; ATT needs its confirmation typed."""
from __future__ import annotations

from pathlib import Path

from dashboard_helpers import Dashboard, dashboard_environ
from mraster import settings as st

PROFILE_KEYS = {"ASTER_SL_ATR_MULT", "ASTER_TP_ATR_MULT", "FASTTP_MIN_R", "ASTER_FUNDING_MAX_LONG",
                "ASTER_ALPHA_THRESHOLD", "ASTER_SIZE_MULT_CAP", "ASTER_DAILY_LOSS_LIMIT",
                "ASTER_MAX_DRAWDOWN", "ASTER_MAX_OPEN_RISK", "ASTER_MAX_TOTAL_NOTIONAL_X",
                "ASTER_LIQUIDATION_BUFFER", "ASTER_BREAKEVEN_R"}


def test_every_preset_is_a_full_profile_that_risks_at_most_one_percent():
    for name in st.PRESETS:
        assert PROFILE_KEYS <= st.PRESETS[name].keys(), name
        s = st.load(environ={"ASTER_PRESET_MODE": name}, env_file=Path("/nonexistent"))
        assert s["ASTER_RISK_PER_TRADE"] <= 0.01 and s["ASTER_DAILY_LOSS_LIMIT"] > 0
        assert s["ASTER_MAX_OPEN_RISK"] <= 0.05 and s["ASTER_MAX_DRAWDOWN"] > 0
    low = st.load(environ={"ASTER_PRESET_MODE": "low"}, env_file=Path("/nonexistent"))
    high = st.load(environ={"ASTER_PRESET_MODE": "high"}, env_file=Path("/nonexistent"))
    assert low["ASTER_MAX_OPEN_RISK"] < high["ASTER_MAX_OPEN_RISK"]
    assert low["ASTER_LIQUIDATION_BUFFER"] > high["ASTER_LIQUIDATION_BUFFER"]


def test_att_needs_its_confirmation_typed_and_says_what_it_does(tmp_path):
    with Dashboard(tmp_path, dashboard_environ(tmp_path)) as d:
        att = next(p for p in d.get("/api/presets").json()["presets"] if p["name"] == "att")
        assert "against the trend" in att["warning"]
        r = d.post("/api/presets/att")
        assert r.status_code == 422 and "against the trend" in r.text
        assert d.get("/api/config").json()["preset"] != "att"
        assert d.post("/api/presets/att", {"confirm": "ATT"}).status_code == 200
        assert d.get("/api/config").json()["preset"] == "att"
        assert d.post("/api/presets/high").status_code == 200  # others need no word
