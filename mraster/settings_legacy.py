"""Setting names of the original bot: mapped to today's with a warning that names the new one,
or refused with a message that says what to use instead. None is ignored silently — a user who
sets ``ASTER_SYMBOL_WHITELIST=BTCUSDT`` must not find the bot scanning every symbol.

Any other ``ASTER_*`` name that is not a setting gets a warning too (a typo, or a knob of the
original that has no counterpart here)."""
from __future__ import annotations

from typing import Any, Mapping

from mraster.words import Words, words

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
              from_env: bool) -> tuple[dict[str, Any], list[Words], list[tuple[str, Any, str]]]:
    """(the layer with old names mapped, warnings, refusals as (name, value, allowed)).
    ``from_env``: the layer is the environment or .env, where other programs' variables live
    too: only ``ASTER_*`` names (and ``OPENAI_API_KEY``) are looked at there."""
    out: dict[str, Any] = {}
    warnings: list[Words] = []  # (said on the settings page, in the reader's language)
    refused: list[tuple[str, Any, str]] = []
    for name, value in layer.items():
        if name in known:
            out[name] = value
        elif name in RENAMED:
            new = RENAMED[name]
            if new in layer:
                warnings.append(words("{name} ({file}) is ignored: {new} is set as well and "
                                      "wins", name=name, file=label, new=new))
                continue
            out[new] = value
            warnings.append(words("{name} ({file}) is an old name: read as {new}; please rename "
                                  "it", name=name, file=label, new=new))
        elif name in REFUSED:
            refused.append((name, value, f"not used any more ({REFUSED[name]})"))
        elif from_env and (not name.startswith("ASTER_") or name in KNOWN_ENV):
            continue  # another program's variable, or one MrAster reads elsewhere
        elif not from_env:  # the editor's file holds settings only: a wrong name is an error
            refused.append((name, value, "a known setting name (see the README table)"))
        else:
            warnings.append(words("{name} ({file}) is not a setting of MrAster and is ignored "
                                  "(see the settings table in the README)", name=name,
                                  file=label))
    return out, warnings, refused


def is_original(doc: Mapping[str, Any], known: Mapping[str, Any]) -> bool:
    """The original dashboard's file: its settings under ``env``, or names of the original
    that are not settings here (today's editor never writes those)."""
    if isinstance(doc.get("env"), dict):
        return True
    names = [k for k in doc if k.startswith("ASTER_") or k in RENAMED]
    return any(k in RENAMED or k in REFUSED for k in names) or \
        sum(1 for k in names if k not in known) >= 3


def import_original(doc: Mapping[str, Any], known: Mapping[str, Any]
                    ) -> tuple[dict[str, Any], list[str], list[str]]:
    """(today's configuration, what was mapped, what was dropped and why) from the original's.
    Values are checked by the catalogue; a value it refuses is dropped with the reason."""
    src = doc["env"] if isinstance(doc.get("env"), dict) else doc
    out: dict[str, Any] = {k: v for k, v in doc.items() if k in ("saved_presets", "fire_drill")}
    mapped: list[str] = []
    dropped: list[str] = []
    for name, value in src.items():
        if name in ("env", "saved_presets", "fire_drill", "schema_version"):
            continue
        target = name if name in known else RENAMED.get(name)
        if target is None:
            dropped.append(f"{name} ({REFUSED.get(name, 'no counterpart in MrAster')})")
            continue
        try:
            out[target] = known[target].parse(value)
        except Exception as exc:  # the catalogue's own words: the field and the allowed range
            dropped.append(f"{name}: {exc}")
            continue
        if target != name:
            mapped.append(f"{name} → {target}")
        out[target] = list(out[target]) if isinstance(out[target], tuple) else out[target]
    return out, mapped, dropped


def migrate_config(path: Any) -> list[Words]:
    """Import an original-format ``dashboard_config.json`` in place (the original is kept next
    to it as ``<name>.original-<time>``); the notes say what was mapped and dropped."""
    import json
    import time
    from pathlib import Path

    from mraster import settings as st
    from mraster.store import atomic_write_text

    p = Path(path)
    if not p.exists():
        return []
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return []  # not JSON: the config document's own check sets it aside
    if not isinstance(doc, dict) or not is_original(doc, st.BY_NAME):
        return []
    new, mapped, dropped = import_original(doc, st.BY_NAME)
    backup = p.with_name(f"{p.name}.original-{int(time.time())}")
    backup.write_text(p.read_text(encoding="utf-8"), encoding="utf-8")
    atomic_write_text(p, json.dumps(new, indent=1))
    notes = [words("{file} was in the original bot's format: imported ({n} setting(s) kept; the "
                   "original is saved as {backup})", file=p.name, n=len(new), backup=backup.name)]
    if mapped:
        notes.append(words("renamed: {names}", names=", ".join(mapped)))
    if dropped:
        notes.append(words("dropped: {names}", names="; ".join(dropped)))
    return notes
