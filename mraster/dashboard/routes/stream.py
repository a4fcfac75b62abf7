"""The live log as Server-Sent Events: the last 500 lines on connect, then every new one."""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from mraster.dashboard.context import DashboardContext, get_ctx

router = APIRouter(prefix="/api", tags=["stream"])
KEEPALIVE_S = 15.0
BATCH = 500  # frames sent in one write at most


@router.get("/stream")
async def stream(request: Request, ctx: DashboardContext = Depends(get_ctx)) -> StreamingResponse:
    """``Last-Event-ID`` (sent by the browser on reconnect) replays only what was missed. The
    lines a cycle publishes at once go out to each page in one write."""
    try:
        after = int(request.headers.get("last-event-id", "0"))
    except ValueError:
        after = 0
    replay, queue = ctx.hub.subscribe(after)

    async def events():
        try:
            yield "retry: 2000\n\n" + "".join(replay)
            while not await request.is_disconnected():
                try:
                    frames = [await asyncio.wait_for(queue.get(), KEEPALIVE_S)]
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                while not queue.empty() and len(frames) < BATCH:
                    frames.append(queue.get_nowait())
                yield "".join(frames)
        finally:
            ctx.hub.unsubscribe(queue)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
