"""Log in with the dashboard token; the browser keeps a session cookie (never the token)."""
from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, HTTPException, Response
from pydantic import BaseModel

from mraster.dashboard.context import DashboardContext, get_ctx
from mraster.dashboard.security import SESSION_COOKIE, session_value

router = APIRouter(prefix="/api", tags=["auth"])


class Login(BaseModel):
    token: str


@router.post("/login")
def login(body: Login, response: Response, ctx: DashboardContext = Depends(get_ctx)) -> dict:
    token = ctx.token
    if not token:
        return {"ok": True, "auth": "none"}
    if not hmac.compare_digest(body.token.encode(), token.encode()):
        raise HTTPException(401, "wrong token")
    response.set_cookie(SESSION_COOKIE, session_value(token), httponly=True, samesite="strict",
                        path="/")
    return {"ok": True, "auth": "session"}


@router.post("/logout")
def logout(response: Response) -> dict:
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"ok": True}
