"""The user's own presets: named snapshots of their settings, kept in dashboard_config.json.

A saved preset holds every trading setting whose value differs from the catalogue's default at
the moment it was saved (and the built-in preset it was based on); applying it restores exactly
those settings and returns every other trading setting to its default. What is never part of a
preset: secrets, the exchange connection, file paths and the dashboard's own settings, so applying
one never changes where the bot trades or which key it uses. Pure functions; the dashboard's
routes read and write the file.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any, Mapping

from mraster import settings as st

KEY = "saved_presets"          # the section of dashboard_config.json
META_KEYS = ("schema_version", KEY, "fire_drill")  # sections of the file that are not settings
MAX_SAVED = 50
NAME = re.compile(r"^[\w][\w .\-]{0,39}$")  # letters (any script), digits, space . - _
EXCLUDED_GROUPS = {"exchange", "files", "dashboard"}
EXCLUDED = {"ASTER_RUN_ONCE"}


class PresetError(ValueError):
    """A name or a request the user can fix; the message says how."""


def in_presets(spec: st.Setting) -> bool:
    return not (spec.secret or spec.group in EXCLUDED_GROUPS or spec.name in EXCLUDED)


def settings_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration file without its non-setting sections."""
    return {k: v for k, v in doc.items() if k not in META_KEYS}


def check_name(name: str, saved: Mapping[str, Any], *, new: bool = True) -> str:
    name = (name or "").strip()
    if not NAME.match(name):
        raise PresetError("name: 1 to 40 letters, digits, spaces, '.', '-' or '_', starting with "
                          "a letter or digit")
    if name.lower() in st.PRESETS:
        raise PresetError(f"name: {name!r} is a built-in preset; choose another name")
    if new and any(n.lower() == name.lower() for n in saved):
        raise PresetError(f"name: a preset called {name!r} exists already; delete or rename it "
                          "first")
    if new and len(saved) >= MAX_SAVED:
        raise PresetError(f"at most {MAX_SAVED} presets can be saved; delete one first")
    return name


def snapshot(s: st.Settings) -> dict[str, Any]:
    """The trading settings that differ from their defaults now, plus the built-in preset."""
    out = {"ASTER_PRESET_MODE": s["ASTER_PRESET_MODE"]}
    for spec in st.CATALOGUE:
        if in_presets(spec) and s[spec.name] != spec.default_for("dashboard"):
            value = s[spec.name]
            out[spec.name] = list(value) if isinstance(value, tuple) else value
    return out


def with_saved(cfg: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration with a saved preset applied: its settings exactly, every other trading
    setting back to its default, everything outside presets (keys, connection, paths) kept."""
    kept = {k: v for k, v in cfg.items() if k in st.BY_NAME and not in_presets(st.BY_NAME[k])}
    return {**kept, **{k: v for k, v in values.items() if k in st.BY_NAME
                       and in_presets(st.BY_NAME[k])}}


def entry(values: Mapping[str, Any], now_ms: int | None = None) -> dict[str, Any]:
    return {"values": dict(values), "saved_at": now_ms or int(time.time() * 1000)}


def settings_hash(s: Mapping[str, Any]) -> str:
    """A fingerprint of the trading settings (what a preset holds): the fire drill and the audit
    record say which settings they vouch for."""
    items = {spec.name: s[spec.name] for spec in st.CATALOGUE if in_presets(spec)}
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=list).encode()).hexdigest()[:16]
