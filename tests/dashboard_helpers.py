"""A dashboard over temporary files, served by uvicorn on 127.0.0.1 (real HTTP)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import httpx

from mraster.dashboard.app import create_app
from mraster.dashboard.context import make_context
from mraster.dashboard.supervisor import Policy
from mraster.sim.serve import ThreadedServer

CSRF = {"X-MrAster-CSRF": "1"}


def dashboard_environ(tmp_path: Path, **extra: Any) -> dict[str, str]:
    return {"ASTER_STATE_FILE": str(tmp_path / "aster_state.json"),
            "ASTER_CONFIG_FILE": str(tmp_path / "dashboard_config.json"),
            "ASTER_EVENTS_FILE": str(tmp_path / "events.jsonl"),
            "ASTER_BRACKETS_QUEUE_FILE": str(tmp_path / "brackets_queue.json"),
            **{k: str(v) for k, v in extra.items()}}


class Dashboard:
    def __init__(self, tmp_path: Path, environ: dict[str, str], policy: Policy | None = None,
                 command: tuple[str, ...] | None = None) -> None:
        self.tmp = tmp_path
        self.ctx = make_context(environ, cwd=tmp_path, policy=policy, command=command)
        self.ctx.env_file = tmp_path / ".env"
        self.server = ThreadedServer(create_app(self.ctx), lifespan="on")
        self.client: httpx.Client | None = None

    def __enter__(self) -> "Dashboard":
        self.server.start()
        self.client = httpx.Client(base_url=self.server.url, timeout=30)
        return self

    def __exit__(self, *exc) -> None:
        self.client.close()
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def get(self, path: str, **kw) -> httpx.Response:
        return self.client.get(path, **kw)

    def post(self, path: str, json_body: Any = None, **kw) -> httpx.Response:
        return self.client.post(path, json=json_body, headers={**CSRF, **kw.pop("headers", {})}, **kw)

    def put(self, path: str, json_body: Any = None, **kw) -> httpx.Response:
        return self.client.put(path, json=json_body, headers={**CSRF, **kw.pop("headers", {})}, **kw)

    def patch(self, path: str, json_body: Any = None, **kw) -> httpx.Response:
        return self.client.patch(path, json=json_body, headers={**CSRF, **kw.pop("headers", {})}, **kw)

    def delete(self, path: str, **kw) -> httpx.Response:
        return self.client.delete(path, headers={**CSRF, **kw.pop("headers", {})}, **kw)

    def state_file(self) -> dict[str, Any]:
        p = self.tmp / "aster_state.json"
        return json.loads(p.read_text()) if p.exists() else {}


def wait_for(cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll a condition until it holds (synchronisation on an observable fact, not a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def read_stream(url: str, until: Callable[[list[dict]], bool], timeout: float = 30.0,
                headers: dict[str, str] | None = None) -> list[dict]:
    """Read the SSE stream until ``until(events)`` holds."""
    events: list[dict] = []
    with httpx.stream("GET", f"{url}/api/stream", headers=headers or {}, timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        deadline = time.monotonic() + timeout
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if until(events):
                    return events
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"stream ended without the expected events; got {events[-5:]}")
