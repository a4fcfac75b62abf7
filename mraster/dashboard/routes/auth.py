"""Log in with the dashboard token; the browser keeps a session cookie (a random id the server
remembers, never the token). Wrong tokens slow the peer down (see ``dashboard.sessions``)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from mraster.dashboard.context import DashboardContext, get_ctx
from mraster.dashboard.security import SESSION_COOKIE, token_matches

router = APIRouter(prefix="/api", tags=["auth"])


class Login(BaseModel):
    token: str = Field(max_length=500)


@router.post("/login", responses={401: {"description": "wrong token"},
                                  429: {"description": "too many wrong tokens from this address"}})
def login(body: Login, request: Request, response: Response,
          ctx: DashboardContext = Depends(get_ctx)) -> dict:
    token = ctx.token
    if not token:
        return {"ok": True, "auth": "none"}
    peer = request.client.host if request.client else ""
    wait = ctx.throttle.retry_after(peer)
    if wait > 0:
        raise HTTPException(429, f"too many wrong tokens from this address; try again in "
                                 f"{wait:.0f} s", headers={"Retry-After": str(int(wait) + 1)})
    if not token_matches(body.token, token):
        ctx.throttle.failed(peer)
        raise HTTPException(401, "wrong token")
    ctx.throttle.succeeded(peer)
    response.set_cookie(SESSION_COOKIE, ctx.sessions.create(), httponly=True, samesite="strict",
                        path="/", max_age=int(ctx.sessions.ttl_s))
    return {"ok": True, "auth": "session"}


@router.post("/logout")
def logout(request: Request, response: Response, ctx: DashboardContext = Depends(get_ctx)) -> dict:
    ctx.sessions.end(request.cookies.get(SESSION_COOKIE, ""))
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"ok": True}
