"""Setting names of the original bot are mapped with a warning that names the new one, or refused
with what to use instead; none is ignored silently (ASTER_SYMBOL_WHITELIST=BTCUSDT used to scan
every symbol)."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from conftest import bot_settings
from mraster import settings as st


def load(**env) -> st.Settings:
    return st.load(environ=env, env_file=Path("/none"))


def test_old_names_are_read_as_the_new_ones_and_said():
    s = load(ASTER_SYMBOL_WHITELIST="BTCUSDT", ASTER_SYMBOL_BLACKLIST="DOGEUSDT",
             ASTER_LOOP_SLEEP="12", OPENAI_API_KEY="sk-old-name-key-1234", PATH="/usr/bin")
    assert s["ASTER_SYMBOLS"] == ("BTCUSDT",) and s["ASTER_EXCLUDE_SYMBOLS"] == ("DOGEUSDT",)
    assert s["ASTER_SCAN_INTERVAL_SECONDS"] == 12 and s["ASTER_OPENAI_API_KEY"].endswith("1234")
    notes = [str(n) for n in s.notes]
    assert any("ASTER_SYMBOL_WHITELIST" in n and "ASTER_SYMBOLS" in n for n in notes)
    assert not any("PATH" in n for n in notes)  # other programs' variables are not ours
    both = load(ASTER_SYMBOL_WHITELIST="BTCUSDT", ASTER_SYMBOLS="ETHUSDT")
    assert both["ASTER_SYMBOLS"] == ("ETHUSDT",) and any("wins" in str(n) for n in both.notes)
    typo = load(ASTER_LEVERAGEE="3")
    assert any("ASTER_LEVERAGEE" in str(n) and "not a setting" in str(n) for n in typo.notes)


def test_names_that_mean_something_else_now_are_refused_with_the_replacement():
    with pytest.raises(st.SettingsErrors, match="ASTER_RISK_PROFILE.*ASTER_PRESET_MODE"):
        load(ASTER_RISK_PROFILE="balanced")
    with pytest.raises(st.SettingsErrors, match="ASTER_MARKETS_URL.*ASTER_EXCHANGE_BASE"):
        load(ASTER_MARKETS_URL="https://fapi.asterdex.com")
    with pytest.raises(st.SettingsErrors, match="ASTER_NOPE.*known setting"):
        st.load(environ={}, env_file=Path("/none"), config={"ASTER_NOPE": 1})


def test_the_bot_trades_only_the_old_whitelist(sim_factory, tmp_path):
    from mraster.engine.runner import run_async

    sim, url, _ = sim_factory(n=8, seed=11)
    env = bot_settings(tmp_path, url)
    first = sorted(sim.market.series)[0]
    plain = {k: v for k, v in env.to_env().items() if k != "ASTER_SYMBOLS"}
    s = st.load(environ={**plain, "ASTER_SYMBOL_WHITELIST": first}, env_file=Path("/none"))
    assert s["ASTER_SYMBOLS"] == (first,)
    assert asyncio.run(run_async(s)) == 0
    state = json.loads((tmp_path / "aster_state.json").read_text())
    assert list(state["decisions"]) == [first]  # one symbol scanned, not eight


ORIGINAL = {"ASTER_LEVERAGE": "5", "ASTER_SYMBOL_WHITELIST": "BTCUSDT,ETHUSDT",
            "ASTER_STOCHRSI_LONG_MAX": "44", "ASTER_RISK_PROFILE": "balanced",
            "ASTER_SPREAD_BPS_MAX": "0.009", "ASTER_WICKINESS_MAX": "2", "ASTER_PAPER": "true"}


def test_an_original_config_file_is_imported_with_a_summary(tmp_path, monkeypatch):
    from mraster.bot import load_settings

    cfg = tmp_path / "dashboard_config.json"
    cfg.write_text(json.dumps(ORIGINAL))
    monkeypatch.setenv("ASTER_CONFIG_FILE", str(cfg))
    s = load_settings()
    assert s["ASTER_LEVERAGE"] == 5 and s["ASTER_SYMBOLS"] == ("BTCUSDT", "ETHUSDT")
    assert s["ASTER_SPREAD_BPS_MAX"] == 0.009 and s["ASTER_WICKINESS_MAX"] == 0.97  # refused: default
    notes = " | ".join(map(str, s.notes))
    assert "original bot's format: imported" in notes
    assert "ASTER_SYMBOL_WHITELIST → ASTER_SYMBOLS" in notes
    assert "ASTER_STOCHRSI_LONG_MAX (no counterpart" in notes
    assert "ASTER_RISK_PROFILE (risk profiles are presets now" in notes
    assert "ASTER_WICKINESS_MAX" in notes and "[0, 1]" in notes
    (backup,) = tmp_path.glob("dashboard_config.json.original-*")
    assert json.loads(backup.read_text()) == ORIGINAL  # the user's file is kept as it was
    assert load_settings().notes == ()  # imported once: the new file is today's format


def test_the_dashboard_imports_an_original_config_and_says_what_happened(tmp_path):
    from dashboard_helpers import Dashboard, dashboard_environ

    (tmp_path / "dashboard_config.json").write_text(json.dumps({"env": ORIGINAL}))
    with Dashboard(tmp_path, dashboard_environ(tmp_path)) as d:
        cfg = d.get("/api/config").json()
        assert any("imported" in n["message"] for n in cfg["notes"]) and not cfg["errors"]
        # in the reader's language: each note is a sentence with its values
        assert {n["words"]["template"] for n in cfg["notes"]} >= {
            "{file} was in the original bot's format: imported ({n} setting(s) kept; the "
            "original is saved as {backup})", "renamed: {names}", "dropped: {names}"}
        values = {x["key"]: x["value"] for x in cfg["settings"]}
        assert values["ASTER_LEVERAGE"] == 5 and values["ASTER_SYMBOLS"] == ["BTCUSDT", "ETHUSDT"]


def test_a_headless_bot_that_imports_an_original_config_says_so_on_the_page(
        sim_factory, tmp_path, monkeypatch):
    """The bot started first (headless) imports an original ``dashboard_config.json``; the
    dashboard started later finds today's format and has nothing to say. The summary was only
    in the bot's log: now the bot keeps it as notices, in the reader's language."""
    from mraster.bot import load_settings
    from mraster.dashboard.views import alerts_view
    from mraster.engine.runner import run_async

    sim, url, _ = sim_factory(n=4, seed=11)
    for k, v in bot_settings(tmp_path, url).to_env().items():
        monkeypatch.setenv(k, v)
    cfg = tmp_path / "dashboard_config.json"
    cfg.write_text(json.dumps({k: v for k, v in ORIGINAL.items() if k != "ASTER_SYMBOL_WHITELIST"}))
    monkeypatch.setenv("ASTER_CONFIG_FILE", str(cfg))
    assert asyncio.run(run_async(load_settings())) == 0
    state = json.loads((tmp_path / "aster_state.json").read_text())
    said = {a["words"]["template"]: a for a in alerts_view(state) if "words" in a}
    imported = said["{file} was in the original bot's format: imported ({n} setting(s) kept; "
                    "the original is saved as {backup})"]
    assert imported["level"] == "warning" and imported["words"]["params"]["file"] == cfg.name
    assert "ASTER_STOCHRSI_LONG_MAX" in said["dropped: {names}"]["message"]
    assert asyncio.run(run_async(load_settings())) == 0  # imported once: said once
    again = json.loads((tmp_path / "aster_state.json").read_text())
    assert sum("original bot's format" in a["message"] for a in alerts_view(again)) == 1
