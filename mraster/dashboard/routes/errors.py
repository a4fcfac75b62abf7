"""The dashboard's answers to bad input (HTTP 422): one shape for "these settings are not valid",
used by every route, and request bodies refused by their schema without the value sent."""
from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from mraster import settings as st


def settings_error_response(exc: st.SettingsErrors, detail: str) -> JSONResponse:
    """Every bad field with what is allowed; secret values are never echoed (SettingError masks
    them in its message)."""
    return JSONResponse(status_code=422, content={
        "detail": detail,
        "errors": [{"field": e.key, "allowed": e.allowed, "message": str(e),
                    "words": e.said().to_dict()} for e in exc.errors]})  # the page's language


async def schema_error_response(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's answer with each error's place, kind and message, but not the ``input`` it
    quotes: that may be a secret (a login token or an API key of the wrong type) or a megabyte
    pasted into a field, and the sender knows what it sent."""
    return JSONResponse(status_code=422, content={"detail": [
        {k: e[k] for k in ("type", "loc", "msg") if k in e} for e in exc.errors()]})
