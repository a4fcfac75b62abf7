"""One shape for "these settings are not valid" answers (HTTP 422), used by every route."""
from __future__ import annotations

from fastapi.responses import JSONResponse

from mraster import settings as st


def settings_error_response(exc: st.SettingsErrors, detail: str) -> JSONResponse:
    """Every bad field with what is allowed; secret values are never echoed (SettingError masks
    them in its message)."""
    return JSONResponse(status_code=422, content={
        "detail": detail,
        "errors": [{"field": e.key, "allowed": e.allowed, "message": str(e),
                    "words": e.said().to_dict()} for e in exc.errors]})  # the page's language
