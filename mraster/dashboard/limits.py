"""Bounds on every request body, checked before anything parses it.

A body is read at most up to ``MAX_BODY`` bytes (413 beyond, whatever Content-Length claims) and a
JSON body may nest at most ``MAX_DEPTH`` levels (422 beyond): the JSON parser recurses per level,
and a 200 KB body of nested brackets used to crash the whole process.
"""
from __future__ import annotations

import json
from typing import Any

MAX_BODY = 1_000_000
MAX_DEPTH = 32


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in ``body`` (strings skipped), in one pass."""
    depth = deepest = 0
    in_string = escaped = False
    for b in body:
        if in_string:
            if escaped:
                escaped = False
            elif b == 0x5C:  # backslash
                escaped = True
            elif b == 0x22:
                in_string = False
        elif b == 0x22:
            in_string = True
        elif b in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif b in (0x5D, 0x7D):
            depth -= 1
    return deepest


class BodyLimitMiddleware:
    """Pure ASGI: reads the body once, checks it, then hands it on unchanged."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > MAX_BODY:
            return await _refuse(send, 413, f"request body: at most {MAX_BODY} bytes")
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                return await _refuse(send, 413, f"request body: at most {MAX_BODY} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if json_depth(body) > MAX_DEPTH:
            return await _refuse(send, 422, f"request body: JSON nested deeper than {MAX_DEPTH} "
                                            "levels")
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
