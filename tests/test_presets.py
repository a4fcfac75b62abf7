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


def test_the_users_own_presets_are_saved_listed_applied_renamed_and_deleted(tmp_path):
    import json

    from mraster.bot import load_settings

    env = dashboard_environ(tmp_path)
    with Dashboard(tmp_path, env) as d:
        assert d.put("/api/config/secrets", {"values": {"ASTER_API_KEY": "k" * 64}}).status_code == 200
        assert d.post("/api/presets/low").status_code == 200
        assert d.put("/api/config", {"values": {"ASTER_LEVERAGE": 3, "ASTER_RSI_BUY_MIN": 57,
                                                "ASTER_SYMBOLS": ["BTCUSDT", "ETHUSDT"]}}).status_code == 200
        r = d.post("/api/saved-presets", {"name": "Ruhig 3x"})
        assert r.status_code == 201 and r.json()["name"] == "Ruhig 3x"
        # something else now: a built-in preset and other values
        assert d.post("/api/presets/high").status_code == 200
        assert d.put("/api/config", {"values": {"ASTER_LEVERAGE": 8, "ASTER_WICKINESS_MAX": 0.5}}).status_code == 200
        saved = d.get("/api/presets").json()["saved"]
        assert [p["name"] for p in saved] == ["Ruhig 3x"]
        diff = {c["key"]: c for c in saved[0]["changes"]}  # the same preview as a built-in one
        assert diff["ASTER_LEVERAGE"]["from"] == 8 and diff["ASTER_LEVERAGE"]["to"] == 3
        assert diff["ASTER_PRESET_MODE"]["to"] == "low" and diff["ASTER_WICKINESS_MAX"]["to"] == 0.97
        # an editor save in between keeps the saved presets in the file
        assert d.put("/api/config", {"values": {"ASTER_UNIVERSE_MAX": 5}}).status_code == 200
        r = d.post("/api/saved-presets/Ruhig 3x/apply")
        assert r.status_code == 200
        cfg = {x["key"]: x["value"] for x in d.get("/api/config").json()["settings"]}
        assert cfg["ASTER_LEVERAGE"] == 3 and cfg["ASTER_RSI_BUY_MIN"] == 57
        assert cfg["ASTER_SYMBOLS"] == ["BTCUSDT", "ETHUSDT"] and cfg["ASTER_WICKINESS_MAX"] == 0.97
        assert cfg["ASTER_UNIVERSE_MAX"] == 0  # not part of the preset: back to its default
        assert d.get("/api/config").json()["preset"] == "low"
        assert cfg["ASTER_API_KEY"].endswith("kkkk")  # keys are never part of a preset
        # names: refused with the field and the rule; built-in names and duplicates too
        for bad, why in (("", "name: 1 to 40"), ("x" * 41, "name: 1 to 40"), ("../etc", "name: 1 to 40"),
                         ("HIGH", "built-in"), ("ruhig 3X", "exists already")):
            r = d.post("/api/saved-presets", {"name": bad})
            assert r.status_code == 422 and why in r.text, (bad, r.text)
        assert d.patch("/api/saved-presets/Ruhig 3x", {"name": "Vorsicht"}).status_code == 200
        assert d.post("/api/saved-presets/Ruhig 3x/apply").status_code == 404
        assert [p["name"] for p in d.get("/api/presets").json()["saved"]] == ["Vorsicht"]
        # the bot reads the same file: the saved presets are not settings to it
        doc = json.loads((tmp_path / "dashboard_config.json").read_text())
        assert list(doc["saved_presets"]) == ["Vorsicht"]
        s = load_settings_from(tmp_path, load_settings)
        assert s["ASTER_LEVERAGE"] == 3
        assert d.delete("/api/saved-presets/Vorsicht").status_code == 200
        assert d.get("/api/presets").json()["saved"] == []
        assert "saved_presets" not in json.loads((tmp_path / "dashboard_config.json").read_text())
        assert d.delete("/api/saved-presets/Vorsicht").status_code == 404


def load_settings_from(folder, load_settings):
    import os

    before = os.environ.get("ASTER_CONFIG_FILE")
    os.environ["ASTER_CONFIG_FILE"] = str(folder / "dashboard_config.json")
    try:
        return load_settings()
    finally:
        if before is None:
            os.environ.pop("ASTER_CONFIG_FILE")
        else:
            os.environ["ASTER_CONFIG_FILE"] = before


def test_a_saved_att_preset_needs_the_same_confirmation(tmp_path):
    with Dashboard(tmp_path, dashboard_environ(tmp_path)) as d:
        assert d.post("/api/presets/att", {"confirm": "ATT"}).status_code == 200
        assert d.post("/api/saved-presets", {"name": "wild"}).status_code == 201
        assert d.post("/api/presets/mid").status_code == 200
        saved = d.get("/api/presets").json()["saved"][0]
        assert "against the trend" in saved["warning"]
        assert d.post("/api/saved-presets/wild/apply").status_code == 422
        assert d.post("/api/saved-presets/wild/apply", {"confirm": "ATT"}).status_code == 200
        assert d.get("/api/config").json()["preset"] == "att"
