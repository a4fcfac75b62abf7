"""A local server that speaks the part of Telegram's Bot API the bot uses (sendMessage,
getUpdates) and a webhook receiver, on 127.0.0.1 (the real ones are on the internet)."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def create_telegram_stub() -> FastAPI:
    app = FastAPI()
    app.state.sent = []          # (token, body) of every sendMessage that was accepted
    app.state.fail_next = 0      # answer this many sendMessage calls with 500 first
    app.state.updates = []       # what getUpdates hands out
    app.state.hooks = []         # webhook bodies

    @app.post("/bot{token}/sendMessage")
    async def send(token: str, request: Request):
        if app.state.fail_next:
            app.state.fail_next -= 1
            return JSONResponse({"ok": False, "description": "Internal Server Error"}, 500)
        app.state.sent.append((token, await request.json()))
        return {"ok": True, "result": {"message_id": len(app.state.sent)}}

    @app.get("/bot{token}/getUpdates")
    async def updates(token: str, offset: int = 0, timeout: int = 0):
        return {"ok": True, "result": [u for u in app.state.updates if u["update_id"] >= offset]}

    @app.post("/hook")
    async def hook(request: Request):
        app.state.hooks.append(await request.json())
        return {"ok": True}
    return app
