"""An OpenAI-compatible chat-completions server on 127.0.0.1 for the AI tests: scripted replies
with token usage, and faults (slow, malformed JSON, 429, 500). The real ``openai`` client talks to
it over HTTP; only the model behind it is scripted, because no real model can run here."""
from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

PLAN = {"take": True, "size_multiplier": 0.5, "sl_multiplier": 1.0, "tp_multiplier": 1.2,
        "leverage": 5, "confidence": 0.7,
        "explanation": "Trend and momentum agree; funding is neutral, so half size is enough.",
        "fasttp": {"min_r": 0.2}}


def create_stub() -> FastAPI:
    app = FastAPI()
    app.state.script = deque()      # per request: dict(kind=ok|slow|malformed|429|500, plan=..., delay=...)
    app.state.default = {"kind": "ok", "plan": PLAN}
    app.state.requests = []         # bodies received
    app.state.by_topic = {}         # words of the system prompt → reply (postmortem, playbook...)
    app.state.schema_support = True  # False: refuse JSON-schema output with 400, like some servers
    app.state.inflight = 0
    app.state.max_inflight = 0

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        app.state.requests.append(body)
        if body.get("response_format", {}).get("type") == "json_schema" and not app.state.schema_support:
            return JSONResponse({"error": {"message": "response_format json_schema is not supported",
                                           "type": "invalid_request_error"}}, status_code=400)
        system = body["messages"][0]["content"]
        topic = next((v for k, v in app.state.by_topic.items() if k in system), None)
        step = app.state.script.popleft() if app.state.script else topic or app.state.default
        app.state.inflight += 1
        app.state.max_inflight = max(app.state.max_inflight, app.state.inflight)
        try:
            if step.get("delay"):
                await asyncio.sleep(step["delay"])
            if step["kind"] == "429":
                return JSONResponse({"error": {"message": "rate limited", "type": "rate_limit"}},
                                    status_code=429)
            if step["kind"] == "500":
                return JSONResponse({"error": {"message": "boom", "type": "server_error"}},
                                    status_code=500)
            content = "this is not JSON at all" if step["kind"] == "malformed" else \
                json.dumps(step.get("plan", PLAN))
            return {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "test"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200}}
        finally:
            app.state.inflight -= 1

    return app


def script(app: FastAPI, *steps: dict[str, Any]) -> None:
    app.state.script.extend(steps)
