"""Dashboard under load while the bot runs (offline simulator market, one cycle per second):
p50 / p99 latency of GET /api/state with 50 concurrent clients, live-log fan-out delay to 50
stream clients, and the bot's cycle time with and without that load.

python bench/dashboard_bench.py
Targets: /api/state p99 ≤ 50 ms, fan-out p99 ≤ 60 ms; the bot's cycle time unchanged.
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mraster.sim.serve import free_port  # noqa: E402

CSRF = {"X-MrAster-CSRF": "1"}


def cycle_times(state_file: Path, n: int) -> list[float]:
    """Durations of the next ``n`` bot cycles, read from the state file's telemetry."""
    seen, out = None, []
    while len(out) < n:
        try:
            tel = json.loads(state_file.read_text()).get("telemetry", {})
        except (OSError, ValueError):
            tel = {}
        if tel.get("cycle") and tel["cycle"] != seen:
            if seen is not None:
                out.append(tel["duration_s"])
            seen = tel["cycle"]
        time.sleep(0.1)
    return out


async def state_load(url: str, clients: int, per_client: int) -> list[float]:
    """``clients`` keep-alive connections, each sending ``per_client`` GET /api/state in turn.
    A minimal HTTP/1.1 client on asyncio streams: httpx's own overhead at 50 connections was
    larger than the server's and would have measured the client instead."""
    host, port = url.split("//")[1].split(":")
    # as a browser asks: compressed
    request = (f"GET /api/state HTTP/1.1\r\nHost: {host}:{port}\r\n"
               "Accept-Encoding: gzip, deflate\r\n\r\n").encode()
    lat: list[float] = []

    async def one() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        for _ in range(per_client):
            t0 = time.perf_counter()
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head[:40]
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
        writer.close()
    await asyncio.gather(*(one() for _ in range(clients)))
    return lat


async def stream_fanout(url: str, clients: int, events: int) -> list[float]:
    """Delay between a bot event's timestamp and its arrival at each of ``clients`` streams
    (raw keep-alive sockets, like ``state_load``: the client's own cost stays out of it)."""
    host, port = url.split("//")[1].split(":")
    request = (f"GET /api/stream HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Last-Event-ID: {10**9}\r\n\r\n").encode()
    delays: list[float] = []

    async def one() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        await writer.drain()
        got = 0
        while got < events:
            line = await reader.readline()
            if line.startswith(b"data: ") and b'"event": "cycle"' in line:
                arrived = time.time()
                delays.append(arrived - json.loads(line[6:])["ts"] / 1000)
                got += 1
        writer.close()
    await asyncio.gather(*(one() for _ in range(clients)))
    return delays


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASTER_")}
        env.update(ASTER_OFFLINE="true", ASTER_SCAN_INTERVAL_SECONDS="1")
        server = subprocess.Popen([sys.executable, str(ROOT / "dashboard_server.py"), "--port",
                                   str(port)], cwd=d, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/api/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            httpx.post(f"{url}/api/bot/start", headers=CSRF).raise_for_status()
            state_file = Path(d) / "aster_state.json"
            idle = cycle_times(state_file, 5)
            print(f"bot cycle without dashboard load: median {statistics.median(idle) * 1000:.0f} ms")
            t0 = time.perf_counter()
            lat = asyncio.run(state_load(url, 50, 40))
            rate = len(lat) / (time.perf_counter() - t0)
            print(f"GET /api/state, 50 clients x 40 requests: p50 {pct(lat, 50):.1f} ms, "
                  f"p99 {pct(lat, 99):.1f} ms, max {max(lat) * 1000:.1f} ms, {rate:.0f} requests/s "
                  f"(load generator, dashboard and bot share the machine's cores)")

            fan = asyncio.run(stream_fanout(url, 50, 5))
            print(f"stream fan-out to 50 clients: delay from the bot's event to each page p50 "
                  f"{pct(fan, 50):.1f} ms, p99 {pct(fan, 99):.1f} ms over {len(fan)} deliveries")
            busy_proc = subprocess.Popen([sys.executable, "-c", (
                "import asyncio,sys; sys.path.insert(0, %r); from bench.dashboard_bench import state_load; "
                "asyncio.run(state_load(%r, 50, 200))") % (str(ROOT), url)])
            busy = cycle_times(state_file, 5)
            busy_proc.wait()
            print(f"bot cycle under 50 clients of load: median {statistics.median(busy) * 1000:.0f} ms")
            httpx.post(f"{url}/api/bot/stop", headers=CSRF, timeout=30)
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
