"""A fault-injecting HTTP proxy for tests: it sits on 127.0.0.1 between the bot and the simulator
and, per request, forwards it, forwards it and then drops the answer (the exchange acted, the
client never hears), refuses it before forwarding (503), forwards it and holds the answer past
the client's timeout, or forwards it and answers with every row stripped of its fields (a
malformed reply). Seeded and switchable at run time, so a test can break the network for one
cycle and heal it for the next.

It records every request it forwarded upstream, so a test can check that no order's client id
ever reached the exchange twice.
"""
from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx

from mraster.sim.serve import free_port

ACTIONS = ("forward", "drop", "refuse", "hang", "mangle")


@dataclass(frozen=True)
class Rule:
    """Shares of requests matching ``method`` and ``path`` (a prefix; None matches any) that
    are dropped after forwarding, refused before forwarding, or hung; the rest are forwarded.
    ``symbol``: a name matches only requests for that symbol, True only those naming one,
    False only those naming none (a bulk read), None all. The first matching rule decides."""
    method: str | None = None
    path: str | None = None
    symbol: str | bool | None = None
    drop: float = 0.0
    refuse: float = 0.0
    hang: float = 0.0
    mangle: float = 0.0

    def matches(self, method: str, path: str, query: dict[str, str] | None = None) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or path.startswith(self.path)) and self._for_symbol(query or {})

    def _for_symbol(self, query: dict[str, str]) -> bool:
        if self.symbol is None:
            return True
        if isinstance(self.symbol, bool):
            return self.symbol == ("symbol" in query)
        return query.get("symbol") == self.symbol


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, str]
    action: str


class FaultProxy:
    def __init__(self, upstream: str, *, seed: int = 0, hang_s: float = 30.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.hang_s = hang_s
        self._rng = random.Random(seed)
        self._rules: tuple[Rule, ...] = ()
        self._lock = threading.Lock()
        self.seen: list[Seen] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- switching ----------------------------------------------------------------------------
    def set_rules(self, *rules: Rule) -> None:
        with self._lock:
            self._rules = tuple(rules)

    def heal(self) -> None:
        self.set_rules()

    def count(self, action: str, method: str | None = None, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for s in self.seen if s.action == action and Rule(method, path).matches(
                s.method, s.path))

    def forwarded_client_ids(self) -> list[str]:
        """Client ids of every new order that reached the exchange (one entry per arrival)."""
        with self._lock:
            return [s.query["newClientOrderId"] for s in self.seen
                    if s.method == "POST" and s.path.endswith("/order")
                    and s.action != "refuse" and "newClientOrderId" in s.query]

    def _choose(self, method: str, path: str, query: dict[str, str]) -> str:
        with self._lock:
            rule = next((r for r in self._rules if r.matches(method, path, query)), None)
            if rule is None:
                return "forward"
            x = self._rng.random()
            if x < rule.refuse:
                return "refuse"
            if x < rule.refuse + rule.drop:
                return "drop"
            if x < rule.refuse + rule.drop + rule.hang:
                return "hang"
            if x < rule.refuse + rule.drop + rule.hang + rule.mangle:
                return "mangle"
            return "forward"

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> "FaultProxy":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server:
                self._server.close()
            await self._client.aclose()
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._client = httpx.AsyncClient(base_url=self.upstream, timeout=30.0)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    # -- one connection -----------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                parts = urlsplit(target)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                action = self._choose(method, parts.path, query)
                with self._lock:
                    self.seen.append(Seen(method, parts.path, query, action))
                if action == "refuse":
                    payload = b'{"code":-1001,"msg":"proxy: service unavailable"}'
                    writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
                                 b"application/json\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(payload), payload))
                    await writer.drain()
                    continue
                fwd = {k: v for k, v in headers.items()
                       if k not in ("host", "content-length", "connection")}
                try:
                    resp = await self._client.request(method, target, headers=fwd, content=body)
                except httpx.HTTPError:
                    return  # upstream gone: the client sees a dropped connection
                if action == "drop":
                    return
                if action == "hang":
                    try:  # hold the answer until the client gives up (or hang_s passes)
                        await asyncio.wait_for(reader.read(1), self.hang_s)
                    except asyncio.TimeoutError:
                        pass
                    return
                content = resp.content
                if action == "mangle":
                    content = b"[{}]" if content.startswith(b"[") else b"{}"
                out = [f"HTTP/1.1 {resp.status_code} {resp.reason_phrase}"]
                out += [f"{k}: {v}" for k, v in resp.headers.items()
                        if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                             "content-encoding")]
                out.append(f"Content-Length: {len(content)}")
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + content)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
