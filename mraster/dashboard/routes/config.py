"""Read and change the configuration: settings, API keys, presets.

Reading never returns a secret, only whether it is set and its last four characters. Writing
validates the whole resulting configuration against the catalogue before anything is saved; the
file is replaced atomically, so a refused or interrupted write leaves the old one intact.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from mraster import saved_presets as sp
from mraster import settings as st
from mraster.domain import shown
from mraster.dashboard.context import DashboardContext, get_ctx
from mraster.dashboard.routes.errors import settings_error_response
from mraster.exchange.eip712 import address_of
from mraster.words import said

router = APIRouter(prefix="/api", tags=["config"])
OVERRIDING_LAYERS = (".env", "environment")


class ConfigUpdate(BaseModel):
    """``values``: setting name → new value; ``null`` removes the saved value (back to the
    default or the preset)."""
    values: dict[str, Any]


class SecretsUpdate(BaseModel):
    """Secret setting name → new value; ``null`` or ``""`` removes it."""
    values: dict[str, str | None]


def _json(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def config_view(ctx: DashboardContext) -> dict[str, Any]:
    s, errors = ctx.settings_lenient()
    saved = ctx.read_config()
    items = []
    for spec in st.CATALOGUE:
        value = s[spec.name]
        source = s.sources.get(spec.name, "default")
        items.append({
            "key": spec.name, "group": spec.group, "kind": spec.kind, "help": spec.help,
            "allowed": spec.allowed(), "min": spec.min, "max": spec.max, "choices": list(spec.choices),
            "secret": spec.secret, "restart": spec.restart,
            "default": None if spec.secret else _json(spec.default_for("dashboard")),
            "value": st.mask_secret(value) if spec.secret else _json(value),
            "is_set": bool(value) if spec.secret else None,
            "saved": spec.name in saved, "source": source,
            "overridden": source in OVERRIDING_LAYERS,
        })
    return {"settings": items, "groups": list(st.GROUPS), "group_titles": st.GROUP_TITLES,
            "preset": s["ASTER_PRESET_MODE"],
            "mode": s["ASTER_MODE"], "first_run": not ctx.config_path.exists(),
            "errors": [{"field": e.key, "allowed": e.allowed, "message": str(e),
                        "words": e.said().to_dict()} for e in errors],  # the page's language
            "notes": [said(n) for n in [*ctx.import_notes, *getattr(s, "notes", ())]]}


def save_config(ctx: DashboardContext, change) -> tuple[dict[str, Any], dict[str, Any]]:
    """Apply ``change`` to the saved configuration, validate the result and save it atomically.
    Returns (old effective settings, new effective settings); raises SettingsErrors."""
    old, _ = ctx.settings_lenient()
    new_config = change(dict(ctx.read_config()))
    problems = confined_paths(ctx, new_config) + rebind_secrets(old, new_config)
    if problems:
        raise st.SettingsErrors(problems)
    new = ctx.settings(config=new_config)
    doc = ctx.config_doc.read()  # the file's other sections (saved presets, the drill) ride along
    ctx.config_doc.write({**new_config, **{k: doc[k] for k in sp.META_KEYS
                                           if k in doc and k != "schema_version"}})
    return dict(old), dict(new)


ENV_ONLY = {"ASTER_CONFIG_FILE"}  # the file cannot name itself


def confined_paths(ctx: DashboardContext, cfg: dict[str, Any]) -> list[st.SettingError]:
    """File and folder settings saved from the dashboard stay inside the working folder (or the
    folder ``ASTER_DATA_DIR`` names in the environment): a setting must never make the bot or
    the dashboard read or overwrite another file of the user's."""
    roots = [ctx.env_file.parent.resolve()]
    if ctx.environ.get("ASTER_DATA_DIR"):
        roots.append(Path(ctx.environ["ASTER_DATA_DIR"]).resolve())
    errors = []
    for key in ENV_ONLY & cfg.keys():
        errors.append(st.SettingError(key, cfg[key], "to be set in the environment only"))
    for spec in st.CATALOGUE:
        value = cfg.get(spec.name)
        if spec.group != "files" or spec.name in ENV_ONLY or not isinstance(value, str) or not value:
            continue
        path = Path(value)
        resolved = (path if path.is_absolute() else roots[0] / path).resolve()
        if not any(resolved == r or r in resolved.parents for r in roots):
            errors.append(st.SettingError(spec.name, value, "a path inside the working folder "
                                          f"{roots[0]}" + (" or ASTER_DATA_DIR" if len(roots) > 1
                                                           else "")))
    return errors


# a secret belongs to the host it was entered for: setting → the keys sent to it
HOST_KEYS = {"ASTER_AI_BASE_URL": ("ASTER_OPENAI_API_KEY", "ASTER_CHAT_OPENAI_API_KEY"),
             "ASTER_AI_NEWS_ENDPOINT": ("ASTER_AI_NEWS_API_KEY",),
             "ASTER_TELEGRAM_API_BASE": ("ASTER_TELEGRAM_BOT_TOKEN",)}


def rebind_secrets(old: st.Settings, cfg: dict[str, Any]) -> list[st.SettingError]:
    """When the dashboard changes the host a key is sent to, the saved key is forgotten (it was
    entered for the old host; enter it again for the new one). A key from the environment or
    .env cannot be forgotten from here, so the change is refused. The exchange's keys are bound
    by ``auth.host_problem`` instead (Aster's hosts, this machine, or the environment's)."""
    errors = []
    for host_key, keys in HOST_KEYS.items():
        if host_key not in cfg or str(cfg[host_key] or "").rstrip("/") == old[host_key]:
            continue
        for key in keys:
            if not old[key]:
                continue
            if old.sources.get(key) in (".env", "environment"):
                errors.append(st.SettingError(host_key, cfg[host_key], f"the host {key} was set "
                                              "for; that key comes from the environment or .env, "
                                              "so change the host there too"))
            else:
                cfg.pop(key, None)  # enter it again for the new host
    return errors


def _changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [k for k in new if old.get(k) != new[k]]


def _result(ctx: DashboardContext, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    changed = _changed(old, new)
    running = ctx.supervisor.status()["running"]
    restart = [k for k in changed if st.BY_NAME[k].restart]
    return {"changed": changed, "restart_needed": bool(running and restart),
            "restart_settings": restart, "config": config_view(ctx)}


@router.get("/config")
def get_config(ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    return config_view(ctx)


@router.put("/config")
def put_config(body: ConfigUpdate, ctx: DashboardContext = Depends(get_ctx)):
    secret = [k for k in body.values if k in st.SECRET_NAMES]
    if secret:
        return settings_error_response(st.SettingsErrors([
            st.SettingError(k, "", "to be set in the API keys form (PUT /api/config/secrets)",
                            secret=True) for k in secret]), "secrets are not changed here")

    def change(cfg: dict[str, Any]) -> dict[str, Any]:
        for k, v in body.values.items():
            if v is None:
                cfg.pop(k, None)
            else:
                cfg[k] = v
        return cfg
    try:
        old, new = save_config(ctx, change)
    except st.SettingsErrors as exc:
        st.given_by(exc, body.values, "dashboard_config.json", None)  # typed, never saved
        return settings_error_response(exc, f"{len(exc.errors)} setting(s) not valid; nothing "
                                            "was saved")
    return _result(ctx, old, new)


@router.put("/config/secrets")
def put_secrets(body: SecretsUpdate, ctx: DashboardContext = Depends(get_ctx)):
    bad = [k for k in body.values if k not in st.SECRET_NAMES]
    if bad:
        return settings_error_response(st.SettingsErrors([
            st.SettingError(k, "", "one of " + ", ".join(sorted(st.SECRET_NAMES))) for k in bad]),
            "only secret settings are changed here")

    trouble = signer_key_problem(ctx, body.values.get("ASTER_SIGNER_PRIVATE_KEY"))
    if trouble:
        return settings_error_response(st.SettingsErrors([trouble]), "the key was not saved")

    def change(cfg: dict[str, Any]) -> dict[str, Any]:
        for k, v in body.values.items():
            if v:
                cfg[k] = v.strip()
            else:
                cfg.pop(k, None)
        return cfg
    try:
        old, new = save_config(ctx, change)
    except st.SettingsErrors as exc:
        return settings_error_response(exc, "the key was not saved")
    return _result(ctx, old, new)


def signer_key_problem(ctx: DashboardContext, key: str | None) -> st.SettingError | None:
    """A malformed API-wallet key, or one of another wallet than the configured signer, is
    refused before it is saved (it would only fail later, at the first signed request)."""
    if not key:
        return None
    try:
        derived = address_of(key.strip())
    except (ValueError, TypeError):
        return st.SettingError("ASTER_SIGNER_PRIVATE_KEY", key, "a private key: 64 hex digits, "
                               "optionally starting with 0x", secret=True)
    signer = ctx.settings_lenient()[0]["ASTER_SIGNER_ADDRESS"]
    if signer and signer.lower() != derived.lower():
        return st.SettingError("ASTER_SIGNER_PRIVATE_KEY", key, f"the key of API wallet {signer} "
                               f"(ASTER_SIGNER_ADDRESS); this one belongs to {derived}", secret=True)
    return None


# -- presets ---------------------------------------------------------------------------------
def _with_preset(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """The saved configuration with a preset applied: the preset name is saved and the user's own
    values for the preset's settings are dropped, so the preset's values take effect."""
    cfg = {k: v for k, v in cfg.items() if k not in st.PRESETS[name]}
    cfg["ASTER_PRESET_MODE"] = name
    return cfg


def _preview(ctx: DashboardContext, name: str, after_config: dict[str, Any],
             touched: Any) -> dict[str, Any]:
    """What applying a preset would change (the same diff for built-in and saved ones), and
    which of its settings the environment or .env keep as they are."""
    s = ctx.settings()
    current = dict(s)
    after = dict(ctx.settings(config=after_config))
    changes = [{"key": k, "from": _json(current[k]), "to": _json(after[k])}
               for k in _changed(current, after)]
    kept = [{"key": k, "value": _json(current[k]), "source": s.sources[k]}
            for k in touched if s.sources.get(k) in OVERRIDING_LAYERS]
    mode = after["ASTER_PRESET_MODE"]
    return {"name": name, "changes": changes, "kept_by_override": kept,
            "ignores_ai_budget": mode in st.PRESETS_IGNORING_AI_BUDGET,
            "warning": st.ATT_WARNING if mode == "att" else None}


def preset_preview(ctx: DashboardContext, name: str) -> dict[str, Any]:
    return _preview(ctx, name, _with_preset(ctx.read_config(), name), st.PRESETS[name])


def saved_preview(ctx: DashboardContext, name: str, item: dict[str, Any]) -> dict[str, Any]:
    after = sp.with_saved(ctx.read_config(), item["values"])
    touched = [spec.name for spec in st.CATALOGUE if sp.in_presets(spec)]
    return {**_preview(ctx, name, after, touched), "saved": True,
            "saved_at": item.get("saved_at"), "settings": len(item["values"])}


def _preset_name(name: str) -> str:
    if name not in st.PRESETS:
        raise HTTPException(404, f"unknown preset {shown(name)}; expected one of {', '.join(st.PRESETS)}")
    return name


@router.get("/presets")
def presets(ctx: DashboardContext = Depends(get_ctx)):
    try:
        return {"current": ctx.settings()["ASTER_PRESET_MODE"],
                "presets": [preset_preview(ctx, n) for n in st.PRESETS],
                "saved": [saved_preview(ctx, n, item) for n, item in ctx.saved_presets().items()]}
    except st.SettingsErrors as exc:
        return settings_error_response(exc, "fix these settings before choosing a preset")


class PresetChoice(BaseModel):
    confirm: str = Field("", max_length=20)


@router.post("/presets/{name}", responses={404: {"description": "unknown preset"},
                                          422: {"description": "ATT needs its confirmation"}})
def apply_preset(name: str, body: PresetChoice | None = None,
                 ctx: DashboardContext = Depends(get_ctx)):
    name = _preset_name(name)
    if name == "att" and (body is None or body.confirm != "ATT"):
        raise HTTPException(422, f"confirm: {st.ATT_WARNING}")
    try:
        old, new = save_config(ctx, lambda cfg: _with_preset(cfg, name))
    except st.SettingsErrors as exc:
        return settings_error_response(exc, "the preset was not applied")
    return _result(ctx, old, new)


# -- the user's saved presets (mraster.saved_presets) ---------------------------------------------
class SavedPresetName(BaseModel):
    name: str = Field(..., max_length=200)


def _saved(ctx: DashboardContext, name: str) -> dict[str, Any]:
    item = ctx.saved_presets().get(name)
    if item is None:
        raise HTTPException(404, f"no saved preset called {shown(name)}")
    return item


def _store_saved(ctx: DashboardContext, change) -> None:
    """Change the saved presets in one locked read-modify-write of the file (the settings in it
    are left exactly as they are)."""
    def update(doc: dict[str, Any]) -> dict[str, Any]:
        saved = doc.get(sp.KEY) if isinstance(doc.get(sp.KEY), dict) else {}
        doc[sp.KEY] = change(dict(saved))
        if not doc[sp.KEY]:
            doc.pop(sp.KEY)
        return doc
    ctx.config_doc.update(update)


def _fail(exc: sp.PresetError):
    raise HTTPException(422, str(exc))


@router.post("/saved-presets", status_code=201,
             responses={422: {"description": "bad or taken name"}})
def save_preset(body: SavedPresetName, ctx: DashboardContext = Depends(get_ctx)):
    """Save the current settings as a named preset."""
    try:
        name = sp.check_name(body.name, ctx.saved_presets())
        values = sp.snapshot(ctx.settings())
    except sp.PresetError as exc:
        _fail(exc)
    except st.SettingsErrors as exc:
        return settings_error_response(exc, "fix these settings before saving them as a preset")
    _store_saved(ctx, lambda saved: {**saved, name: sp.entry(values)})
    return {"name": name, "settings": len(values)}


@router.patch("/saved-presets/{name}", responses={404: {"description": "no such preset"},
                                                  422: {"description": "bad or taken name"}})
def rename_preset(name: str, body: SavedPresetName, ctx: DashboardContext = Depends(get_ctx)):
    item = _saved(ctx, name)
    others = {k: v for k, v in ctx.saved_presets().items() if k != name}
    try:
        new = sp.check_name(body.name, others)
    except sp.PresetError as exc:
        _fail(exc)
    _store_saved(ctx, lambda saved: {(new if k == name else k): (item if k == name else v)
                                     for k, v in saved.items()})
    return {"name": new}


@router.delete("/saved-presets/{name}", responses={404: {"description": "no such preset"}})
def delete_preset(name: str, ctx: DashboardContext = Depends(get_ctx)):
    _saved(ctx, name)
    _store_saved(ctx, lambda saved: {k: v for k, v in saved.items() if k != name})
    return {"deleted": name}


@router.post("/saved-presets/{name}/apply",
             responses={404: {"description": "no such preset"},
                        422: {"description": "ATT needs its confirmation"}})
def apply_saved_preset(name: str, body: PresetChoice | None = None,
                       ctx: DashboardContext = Depends(get_ctx)):
    item = _saved(ctx, name)
    if item["values"].get("ASTER_PRESET_MODE") == "att" and (body is None or body.confirm != "ATT"):
        raise HTTPException(422, f"confirm: {st.ATT_WARNING}")
    try:
        old, new = save_config(ctx, lambda cfg: sp.with_saved(cfg, item["values"]))
    except st.SettingsErrors as exc:
        return settings_error_response(exc, "the preset was not applied (a setting it holds is "
                                            "no longer valid)")
    return _result(ctx, old, new)
