"""Setting names of the original bot: mapped to today's with a warning that names the new one,
or refused with a message that says what to use instead. None is ignored silently — a user who
sets ``ASTER_SYMBOL_WHITELIST=BTCUSDT`` must not find the bot scanning every symbol.

Any other ``ASTER_*`` name that is not a setting gets a warning too (a typo, or a knob of the
original that has no counterpart here)."""
from __future__ import annotations

from typing import Any, Mapping

# old name → new name (the value means the same)
RENAMED = {
    "ASTER_SYMBOL_WHITELIST": "ASTER_SYMBOLS",
    "ASTER_INCLUDE_SYMBOLS": "ASTER_SYMBOLS",
    "ASTER_INCLUDE": "ASTER_SYMBOLS",
    "ASTER_SYMBOL_BLACKLIST": "ASTER_EXCLUDE_SYMBOLS",
    "ASTER_EXCLUDE": "ASTER_EXCLUDE_SYMBOLS",
    "ASTER_LOOP_SLEEP": "ASTER_SCAN_INTERVAL_SECONDS",
    "ASTER_RECV_WINDOW": "ASTER_RECV_WINDOW_MS",
    "OPENAI_API_KEY": "ASTER_OPENAI_API_KEY",
    "ASTER_PLAYBOOK_REFRESH_MINUTES": "ASTER_AI_PLAYBOOK_REFRESH_MINUTES",
}
# old name → why it is refused and what to use instead
REFUSED = {
    "ASTER_RISK_PROFILE": "risk profiles are presets now: use ASTER_PRESET_MODE (low, mid, high, att)",
    "ASTER_MARKETS_URL": "the exchange is named by ASTER_EXCHANGE_BASE",
    "ASTER_AI_DEFAULT_NOTIONAL": "the advisor sizes within the bot's risk sizing: use "
                                 "ASTER_DEFAULT_NOTIONAL and ASTER_RISK_PER_TRADE",
}
# names read from the environment that are not settings but are used (never warned about)
KNOWN_ENV = {"ASTER_ORIGIN", "ASTER_DATA_DIR", "ASTER_CONFIG_FILE"}


def translate(layer: Mapping[str, Any], known: Mapping[str, Any], label: str,
              from_env: bool) -> tuple[dict[str, Any], list[str], list[tuple[str, Any, str]]]:
    """(the layer with old names mapped, warnings, refusals as (name, value, allowed)).
    ``from_env``: the layer is the environment or .env, where other programs' variables live
    too: only ``ASTER_*`` names (and ``OPENAI_API_KEY``) are looked at there."""
    out: dict[str, Any] = {}
    warnings: list[str] = []
    refused: list[tuple[str, Any, str]] = []
    for name, value in layer.items():
        if name in known:
            out[name] = value
        elif name in RENAMED:
            new = RENAMED[name]
            if new in layer:
                warnings.append(f"{name} ({label}) is ignored: {new} is set as well and wins")
                continue
            out[new] = value
            warnings.append(f"{name} ({label}) is an old name: read as {new}; please rename it")
        elif name in REFUSED:
            refused.append((name, value, f"not used any more ({REFUSED[name]})"))
        elif from_env and (not name.startswith("ASTER_") or name in KNOWN_ENV):
            continue  # another program's variable, or one MrAster reads elsewhere
        elif not from_env:  # the editor's file holds settings only: a wrong name is an error
            refused.append((name, value, "a known setting name (see the README table)"))
        else:
            warnings.append(f"{name} ({label}) is not a setting of MrAster and is ignored (see "
                            "the settings table in the README)")
    return out, warnings, refused
