from __future__ import annotations

import re
from pathlib import Path

import pytest

from mraster import settings as st

SEED_DEFAULTS = {
    "ASTER_INTERVAL": "5m", "ASTER_HTF_INTERVAL": "30m", "ASTER_ALLOW_TREND_ALIGN": False,
    "ASTER_TREND_BIAS": "with", "ASTER_MIN_QUOTE_VOL_USDT": 150000, "ASTER_SPREAD_BPS_MAX": 0.0030,
    "ASTER_WICKINESS_MAX": 0.97, "ASTER_MIN_EDGE_R": 0.30, "ASTER_DEFAULT_NOTIONAL": 0,
    "ASTER_SIZE_MULT_FLOOR": 0, "ASTER_MAX_NOTIONAL_USDT": 0, "ASTER_SIZE_MULT_CAP": 3.0,
    "ASTER_CONFIDENCE_SIZING": True, "ASTER_CONFIDENCE_SIZE_MIN": 1.0,
    "ASTER_CONFIDENCE_SIZE_MAX": 3.0, "ASTER_CONFIDENCE_SIZE_BLEND": 1,
    "ASTER_CONFIDENCE_SIZE_EXP": 2.0, "ASTER_EQUITY_FRACTION": 0.66, "ASTER_LEVERAGE": 10,
    "ASTER_MAX_OPEN_GLOBAL": 0, "ASTER_MAX_OPEN_PER_SYMBOL": 1, "ASTER_SL_ATR_MULT": 1.0,
    "ASTER_TP_ATR_MULT": 1.6, "FAST_TP_ENABLED": True, "FASTTP_MIN_R": 0.30,
    "FAST_TP_RET1": -0.0010, "FAST_TP_RET3": -0.0020, "FASTTP_SNAP_ATR": 0.25,
    "FASTTP_COOLDOWN_S": 15, "ASTER_FUNDING_FILTER_ENABLED": True,
    "ASTER_FUNDING_MAX_LONG": 0.0010, "ASTER_FUNDING_MAX_SHORT": 0.0010,
    "ASTER_NON_ARB_FILTER_ENABLED": True, "ASTER_NON_ARB_CLAMP_BPS": 0.0005,
    "ASTER_NON_ARB_EDGE_THRESHOLD": 0.00005, "ASTER_NON_ARB_SKIP_GAP": 0.0015,
    # AI table
    "ASTER_BANDIT_ENABLED": True, "ASTER_AI_MODE": False, "ASTER_ALPHA_ENABLED": True,
    "ASTER_ALPHA_THRESHOLD": 0.55, "ASTER_ALPHA_PROMOTE_DELTA": 0.15, "ASTER_HISTORY_MAX": 250,
    "ASTER_OPENAI_API_KEY": "", "ASTER_CHAT_OPENAI_API_KEY": "", "ASTER_AI_MODEL": "gpt-4.1",
    "ASTER_AI_DAILY_BUDGET_USD": 20, "ASTER_AI_STRICT_BUDGET": True,
    "ASTER_AI_MIN_INTERVAL_SECONDS": 3, "ASTER_AI_CONCURRENCY": 4,
    "ASTER_AI_GLOBAL_COOLDOWN_SECONDS": 1.0, "ASTER_AI_PLAN_TIMEOUT_SECONDS": 45,
    "ASTER_AI_SENTINEL_ENABLED": True, "ASTER_AI_SENTINEL_DECAY_MINUTES": 60,
    "ASTER_AI_NEWS_ENDPOINT": "", "ASTER_AI_NEWS_API_KEY": "", "ASTER_AI_TEMPERATURE": 0.3,
    "ASTER_AI_DEBUG_STATE": False, "ASTER_BRACKETS_QUEUE_FILE": "brackets_queue.json",
}


def load(**kw):
    kw.setdefault("environ", {})
    kw.setdefault("env_file", Path("/nonexistent/.env"))
    return st.load(**kw)


def test_every_seed_variable_has_the_seed_default():
    s = load(origin="cli")
    for key, want in SEED_DEFAULTS.items():
        assert key in st.BY_NAME, key
        assert s[key] == want, key
    assert s.ai_pending_limit == max(4, 3 * 4)


def test_required_extra_settings_exist():
    for key in ("ASTER_API_KEY", "ASTER_API_SECRET", "ASTER_EXCHANGE_BASE", "ASTER_PAPER",
                "ASTER_RUN_ONCE", "ASTER_MODE", "ASTER_PRESET_MODE", "ASTER_QUOTE", "ASTER_SYMBOLS",
                "ASTER_EXCLUDE_SYMBOLS", "ASTER_UNIVERSE_MAX", "ASTER_SCAN_INTERVAL_SECONDS",
                "ASTER_STATE_FILE", "ASTER_LOGLEVEL", "ASTER_AI_BASE_URL", "ASTER_DASHBOARD_HOST",
                "ASTER_DASHBOARD_PORT", "ASTER_DASHBOARD_TOKEN"):
        assert key in st.BY_NAME
    s = load()
    assert s["ASTER_EXCHANGE_BASE"] == "https://fapi.asterdex.com"
    assert s["ASTER_PAPER"] is True
    assert st.BY_NAME["ASTER_API_SECRET"].secret and st.BY_NAME["ASTER_API_KEY"].secret
    assert st.BY_NAME["ASTER_MODE"].choices == ("standard", "pro", "ai")
    assert st.BY_NAME["ASTER_PRESET_MODE"].choices == ("low", "mid", "high", "att")


def test_cli_and_dashboard_defaults_differ_exactly_as_the_seed_says():
    cli, dash = load(origin="cli"), load(origin="dashboard")
    assert (cli["ASTER_RSI_BUY_MIN"], cli["ASTER_RSI_SELL_MAX"], cli["ASTER_RISK_PER_TRADE"]) == (52, 48, 0.006)
    assert (dash["ASTER_RSI_BUY_MIN"], dash["ASTER_RSI_SELL_MAX"], dash["ASTER_RISK_PER_TRADE"]) == (51, 49, 0.007)
    differing = {k for k in st.BY_NAME if cli[k] != dash[k]}
    assert differing == {"ASTER_RSI_BUY_MIN", "ASTER_RSI_SELL_MAX", "ASTER_RISK_PER_TRADE"}


def test_precedence_default_config_dotenv_environment(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("ASTER_RSI_BUY_MIN=55\nASTER_LEVERAGE=7\nUNRELATED=1\n")
    s = st.load(origin="cli", config={"ASTER_RSI_BUY_MIN": 53, "ASTER_LEVERAGE": 5,
                                       "ASTER_SPREAD_BPS_MAX": 0.002},
                env_file=env_file, environ={"ASTER_LEVERAGE": "3", "PATH": "/bin"})
    assert s["ASTER_SPREAD_BPS_MAX"] == 0.002 and s.sources["ASTER_SPREAD_BPS_MAX"] == "dashboard_config.json"
    assert s["ASTER_RSI_BUY_MIN"] == 55 and s.sources["ASTER_RSI_BUY_MIN"] == ".env"
    assert s["ASTER_LEVERAGE"] == 3 and s.sources["ASTER_LEVERAGE"] == "environment"
    # the dashboard config overrides the CLI defaults, as the seed says
    assert load(origin="cli", config={"ASTER_RISK_PER_TRADE": 0.007})["ASTER_RISK_PER_TRADE"] == 0.007


@pytest.mark.parametrize("preset,ef,lev,risk,bias,budget", [
    ("low", 0.33, 4, 0.004, "with", True),
    ("mid", 0.66, 10, 0.006, "with", True),
    ("high", 1.0, 125, 0.01, "with", False),
    ("att", 1.0, 125, 0.01, "against", False),
])
def test_presets(preset, ef, lev, risk, bias, budget):
    s = load(environ={"ASTER_PRESET_MODE": preset})
    assert s["ASTER_EQUITY_FRACTION"] == ef
    assert s["ASTER_LEVERAGE"] == lev
    assert s["ASTER_RISK_PER_TRADE"] == risk
    assert s["ASTER_TREND_BIAS"] == bias
    assert s.ai_budget_enforced is budget
    for values in st.PRESETS.values():
        assert values.get("ASTER_RISK_PER_TRADE", 0) <= 0.01
    # explicit settings beat the preset
    assert load(environ={"ASTER_PRESET_MODE": preset, "ASTER_LEVERAGE": "2"})["ASTER_LEVERAGE"] == 2


def test_preset_changes_preview():
    s = load()
    diff = st.preset_changes(s, "att")
    assert diff["ASTER_TREND_BIAS"] == ("with", "against")
    assert diff["ASTER_LEVERAGE"] == (10, 125)
    assert "ASTER_SL_ATR_MULT" not in diff


@pytest.mark.parametrize("key,value,fragment", [
    ("ASTER_LEVERAGE", "abc", "an integer in [1, 125]"),
    ("ASTER_LEVERAGE", 500, "an integer in [1, 125]"),
    ("ASTER_LEVERAGE", 2.5, "an integer in [1, 125]"),
    ("ASTER_RISK_PER_TRADE", 0.5, "a number in [0.0001, 0.02]"),
    ("ASTER_RISK_PER_TRADE", "nan", "a number in"),
    ("ASTER_PAPER", "maybe", "a boolean"),
    ("ASTER_MODE", "turbo", "one of standard, pro, ai"),
    ("ASTER_AI_MODEL", "gpt\n4", "without newlines or NUL"),
    ("ASTER_AI_MODEL", "gpt\x004", "without newlines or NUL"),
    ("ASTER_SYMBOLS", "BTC USDT;DROP", "comma-separated list"),
    ("ASTER_EXCHANGE_BASE", "ftp://x", "URL"),
    ("ASTER_USER_ADDRESS", "0x1234", "40 hex digits"),
    ("ASTER_NOT_A_SETTING", "1", "a known setting name"),
])
def test_validation_rejects_with_key_value_and_range(key, value, fragment):
    with pytest.raises(st.SettingsErrors) as info:
        st.validate({key: value})
    msg = str(info.value)
    assert key in msg and fragment in msg
    if key != "ASTER_AI_MODEL":
        assert repr(value) in msg


def test_validation_lists_every_bad_field():
    with pytest.raises(st.SettingsErrors) as info:
        st.validate({"ASTER_LEVERAGE": 0, "ASTER_PAPER": "x", "ASTER_LOGLEVEL": "info"})
    assert {e.key for e in info.value.errors} == {"ASTER_LEVERAGE", "ASTER_PAPER"}


@pytest.mark.parametrize("word,val", [("true", True), ("FALSE", False), ("1", True), ("0", False),
                                      ("yes", True), ("no", False), ("On", True), ("off", False)])
def test_boolean_spellings(word, val):
    assert st.validate({"ASTER_PAPER": word})["ASTER_PAPER"] is val


def test_secrets_never_in_repr_or_errors():
    secret = "sk-live-abcdefgh12345678"
    s = load(environ={"ASTER_OPENAI_API_KEY": secret, "ASTER_API_SECRET": "supersecretvalue99"})
    assert secret not in repr(s) and secret not in str(s)
    assert "supersecretvalue99" not in repr(s)
    assert "••••5678" in repr(s)
    with pytest.raises(st.SettingsErrors) as info:
        st.validate({"ASTER_API_SECRET": "bad\nsecret-value"})
    assert "secret-value" not in str(info.value)


def test_env_layer_errors_name_their_source():
    with pytest.raises(st.SettingsErrors) as info:
        load(environ={"ASTER_LEVERAGE": "0"})
    assert "(from environment)" in str(info.value)


def test_readme_tables_match_the_catalogue():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"<!-- settings-table:start -->\n(.*?)\n<!-- settings-table:end -->", readme, re.S)
    assert block, "README lacks the generated settings table"
    assert block.group(1).strip() == st.markdown_table().strip(), \
        "README settings table is stale: run `python -m mraster.settings` and paste it"
    presets = re.search(r"<!-- preset-table:start -->\n(.*?)\n<!-- preset-table:end -->", readme, re.S)
    assert presets and presets.group(1).strip() == st.preset_table().strip()


def test_wallet_addresses_must_be_checksummed_or_lower_case():
    from conftest import V3_USER

    spec = st.BY_NAME["ASTER_USER_ADDRESS"]
    assert spec.parse(V3_USER) == V3_USER  # EIP-55 checksummed
    assert spec.parse(V3_USER.lower()) == V3_USER.lower()
    broken = V3_USER[:2] + V3_USER[2:].swapcase()
    with pytest.raises(st.SettingError, match="EIP-55"):
        spec.parse(broken)
    with pytest.raises(st.SettingError, match="40 hex digits"):
        spec.parse("0x1234")


@pytest.mark.parametrize("value,said", [("1", False), ("0", True), ("3", True)])
def test_a_per_symbol_limit_other_than_one_loads_and_is_said_at_start(value, said):
    """The bot holds at most one position per symbol (``risk.entry_gate``); a saved 0 or 3 still
    loads (a bot must not stop starting over it), and the start's notes — logged, so on the
    dashboard's live log — say that it acts as 1 and where it came from."""
    s = st.load(environ={"ASTER_MAX_OPEN_PER_SYMBOL": value}, env_file=Path("/none"))
    assert s["ASTER_MAX_OPEN_PER_SYMBOL"] == int(value)
    notes = [str(n) for n in s.notes if "ASTER_MAX_OPEN_PER_SYMBOL" in str(n)]
    assert bool(notes) == said
    if said:
        assert notes == [f"ASTER_MAX_OPEN_PER_SYMBOL={value} acts as 1 (from environment): the "
                         "exchange nets a symbol's positions into one and each stop and "
                         "take-profit closes all of it, so the bot holds at most one position "
                         "per symbol"]
