"""The simulator's HTTP face: the Aster futures REST protocol on 127.0.0.1.

It checks API keys, HMAC signatures (-1022) and timestamp windows (-1021) like the real exchange,
counts request weight per minute (429 + Retry-After past the limit, 418 when a client keeps going),
and injects seeded, reproducible faults: latency with jitter, 5xx answers, orders that are accepted
and then answered with "execution status unknown" or never answered in time, and clock skew.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mraster.exchange.weights import BUDGET_PER_MINUTE, weight
from mraster.sim.exchange import SimExchange
from mraster.sim.matching import SimError

KLINES = {"klines": "last", "markPriceKlines": "mark", "indexPriceKlines": "index"}
PUBLIC = {"ping", "time", "exchangeInfo", "ticker/24hr", "ticker/bookTicker", "ticker/price",
          "premiumIndex", "depth", "fundingRate", "fundingInfo", "trades", *KLINES}
SIGNED = {"order", "openOrders", "allOpenOrders", "leverage", "marginType", "positionRisk",
          "balance", "account", "accountWithJoinMargin", "userTrades", "income", "allOrders",
          "positionSide/dual", "leverageBracket", "commissionRate", "builder"}
V3_ONLY = {"builder", "approveBuilder"}  # API-wallet and builder approvals exist only in V3
V1_VERSIONS = {"v1", "v2", "v4"}


@dataclass
class Faults:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0        # share of requests answered 5xx without being processed
    unknown_rate: float = 0.0      # share of new orders accepted, then answered 503 / -1007
    hang_rate: float = 0.0         # share of new orders accepted, then answered after hang_s
    hang_s: float = 2.0
    reject_types: frozenset[str] = frozenset()  # order types refused with -1116 (tests)
    skew_ms: int = 0               # server clock ahead (+) or behind (-) the wall clock
    weight_limit: int = BUDGET_PER_MINUTE
    window_s: float = 60.0         # weight window (60 s like the exchange; tests shorten it)
    seed: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.rng.seed(self.seed)


class WeightMeter:
    """Fixed one-minute windows, per client address, as the exchange counts them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: dict[tuple[str, int], int] = {}
        self.rejected = 0
        self.max_seen = 0

    def add(self, ip: str, w: int, now_s: float, limit: int, window_s: float = 60.0) -> tuple[int, bool]:
        minute = int(now_s // window_s)
        with self._lock:
            key = (ip, minute)
            used = self._used.get(key, 0) + w
            if used > limit:
                self.rejected += 1
                return self._used.get(key, 0), False
            self._used[key] = used
            self.max_seen = max(self.max_seen, used)
            for k in [k for k in self._used if k[1] < minute - 1]:
                del self._used[k]
            return used, True


def create_sim_app(sim: SimExchange, keys: dict[str, str] | None = None,
                   faults: Faults | None = None, agents: dict[str, set[str]] | None = None,
                   chain_id: int = 1666) -> FastAPI:
    """``keys`` maps API key → secret for V1 signing; ``agents`` maps a wallet address to the
    API-wallet (signer) addresses it approved, for V3 signing."""
    app = FastAPI(title="MrAster exchange simulator", docs_url=None, redoc_url=None)
    app.state.sim = sim
    app.state.keys = dict(keys or {})
    app.state.agents = {u.lower(): {s.lower() for s in ss} for u, ss in (agents or {}).items()}
    app.state.chain_id = chain_id
    app.state.nonces = V3Nonces()
    app.state.faults = faults or Faults()
    app.state.meter = WeightMeter()
    app.state.orders_seen = 0

    def server_ms() -> int:
        return int(time.time() * 1000) + app.state.faults.skew_ms

    def err(code: int, msg: str, http: int = 400, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"code": code, "msg": msg}, status_code=http, headers=headers)

    @app.post("/sim/step")
    def sim_step(ms: int) -> dict[str, int]:
        """Advance the simulated market clock (tests and demos)."""
        sim.step(ms)
        return {"time": sim.now()}

    @app.get("/api/v3/exchangeInfo")
    def spot_exchange_info() -> dict[str, Any]:
        """Spot markets: none here, but common clients (ccxt) load this at start."""
        return {"timezone": "UTC", "serverTime": server_ms(), "rateLimits": [], "symbols": []}

    @app.api_route("/fapi/{version}/{path:path}", methods=["GET", "POST", "DELETE", "PUT"])
    async def fapi(version: str, path: str, request: Request):
        f: Faults = app.state.faults
        raw_query = request.url.query
        raw_body = (await request.body()).decode("utf-8", "replace")
        params = dict(parse_qsl(raw_body, keep_blank_values=True))
        params.update(dict(parse_qsl(raw_query, keep_blank_values=True)))  # query wins
        if f.latency_ms or f.jitter_ms:
            await asyncio.sleep((f.latency_ms + f.rng.uniform(-1, 1) * f.jitter_ms) / 1000)
        ip = request.client.host if request.client else "?"
        w = weight(path, params)
        used, ok = app.state.meter.add(ip, w, time.time(), f.weight_limit, f.window_s)
        hdr = {"X-MBX-USED-WEIGHT-1M": str(used)}
        if not ok:
            retry = max(1, int(f.window_s - time.time() % f.window_s + 0.999))
            return err(-1003, f"Too many requests; current limit is {f.weight_limit} requests "
                              "per minute.", 429, {**hdr, "Retry-After": str(retry)})
        if f.error_rate and f.rng.random() < f.error_rate:
            return err(-1001, "Internal error; unable to process your request. Please try again.",
                       502, hdr)
        if version not in V1_VERSIONS and version != "v3":
            return err(-1020, "This version is not supported by this simulator.", 404, hdr)
        try:
            if path in PUBLIC:
                body = _public(sim, path, params, server_ms)
                if path == "exchangeInfo":  # announce the weight budget this server enforces
                    body["rateLimits"] = [dict(r, limit=f.weight_limit) if r["rateLimitType"] ==
                                          "REQUEST_WEIGHT" else r for r in body["rateLimits"]]
                return JSONResponse(body, headers=hdr)
            if path not in SIGNED | V3_ONLY or (path in V3_ONLY and version != "v3"):
                return err(-1020, f"Unknown endpoint {path}.", 404, hdr)
            if path == "approveBuilder":
                key = _authenticate_builder_approval(app, raw_body or raw_query, params,
                                                     server_ms())
            elif version == "v3":
                key = _authenticate_v3(app, raw_query, raw_body, params, server_ms())
            else:
                key = _authenticate(app, request, raw_query, raw_body, params, server_ms())
            accepted_order = path == "order" and request.method == "POST"
            if accepted_order and params.get("type") in f.reject_types:
                return err(-1116, "Invalid orderType.", 400, hdr)
            result = await asyncio.to_thread(sim.handle_signed, key, request.method, path, params)
            if accepted_order:
                app.state.orders_seen += 1
                if f.unknown_rate and f.rng.random() < f.unknown_rate:
                    return err(-1007, "Timeout waiting for response from backend server. Send "
                                      "status unknown; execution status unknown.", 503, hdr)
                if f.hang_rate and f.rng.random() < f.hang_rate:
                    await asyncio.sleep(f.hang_s)
            return JSONResponse(result, headers=hdr)
        except SimError as e:
            return err(e.code, e.msg, e.http, hdr)

    return app


def _public(sim: SimExchange, path: str, p: dict[str, str], server_ms) -> Any:
    with sim.lock:
        sim.advance()
        if path == "ping":
            return {}
        if path == "time":
            return {"serverTime": server_ms()}
        if path == "exchangeInfo":
            info = sim.exchange_info()
            info["serverTime"] = server_ms()
            return info
        if path in KLINES:
            if path == "indexPriceKlines" and p.get("pair"):
                p = {**p, "symbol": p["pair"]}  # the index is asked for by pair
            if not p.get("symbol") or not p.get("interval"):
                raise SimError(-1102, "Mandatory parameter 'symbol' or 'interval' was not sent, "
                                      "was empty/null, or malformed.")
            from mraster.sim.market import INTERVAL_MS

            if p["interval"] not in INTERVAL_MS:
                raise SimError(-1120, "Invalid interval.")
            limit = int(p.get("limit") or 500)
            if not 1 <= limit <= 1500:
                raise SimError(-1130, "Data sent for parameter 'limit' is not valid.")
            return sim.klines(p["symbol"], p["interval"], limit,
                              int(p["startTime"]) if p.get("startTime") else None,
                              int(p["endTime"]) if p.get("endTime") else None, price=KLINES[path])
        if path == "ticker/24hr":
            return sim.ticker_24h(p.get("symbol"))
        if path == "ticker/bookTicker":
            return sim.book_ticker(p.get("symbol"))
        if path == "ticker/price":
            return sim.ticker_price(p.get("symbol"))
        if path == "trades":
            limit = int(p.get("limit") or 500)
            if not 1 <= limit <= 1000:
                raise SimError(-1130, "Data sent for parameter 'limit' is not valid.")
            return sim.recent_trades(p.get("symbol", ""), limit)
        if path == "fundingInfo":
            return sim.funding_info(p.get("symbol"))
        if path == "premiumIndex":
            return sim.premium_index(p.get("symbol"))
        if path == "depth":
            return sim.depth(p.get("symbol", ""), int(p.get("limit") or 20))
        if path == "fundingRate":
            limit = int(p.get("limit") or 100)
            if not 1 <= limit <= 1000:
                raise SimError(-1130, "Data sent for parameter 'limit' is not valid.")
            return sim.funding_rate(p.get("symbol"), limit,
                                    int(p["startTime"]) if p.get("startTime") else None,
                                    int(p["endTime"]) if p.get("endTime") else None)
    raise SimError(-1020, "Unsupported.")


def _authenticate(app: FastAPI, request: Request, raw_query: str, raw_body: str,
                  params: dict[str, str], server_ms: int) -> str:
    key = request.headers.get("X-MBX-APIKEY", "")
    if not key:
        raise SimError(-2014, "API-key format invalid.", 401)
    secret = app.state.keys.get(key)
    if secret is None:
        raise SimError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
    sig = params.get("signature", "")
    q, b = _strip_signature(raw_query), _strip_signature(raw_body)
    expected = hmac.new(secret.encode(), (q + b).encode(), hashlib.sha256).hexdigest()
    if not sig or not hmac.compare_digest(sig.lower(), expected):
        raise SimError(-1022, "Signature for this request is not valid.", 400)
    try:
        ts = int(params.get("timestamp", ""))
        recv = int(params.get("recvWindow") or 5000)
    except ValueError:
        raise SimError(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or "
                              "malformed.") from None
    if recv > 60000:
        raise SimError(-1130, "Data sent for parameter 'recvWindow' is not valid.")
    if not (ts < server_ms + 1000 and server_ms - ts <= recv):
        raise SimError(-1021, "Timestamp for this request is outside of the recvWindow.")
    return key


class V3Nonces:
    """Per user: nonces within ±10 s of the server clock, each used once; the last 100 kept."""

    WINDOW_US = 10_000_000
    KEEP = 100

    def __init__(self) -> None:
        self._seen: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def use(self, user: str, nonce: int, server_ms: int) -> None:
        if abs(nonce - server_ms * 1000) > self.WINDOW_US:
            raise SimError(-4225, "Nonce Expired")
        with self._lock:
            seen = self._seen.setdefault(user, [])
            if nonce in seen:
                raise SimError(-4225, "Nonce Expired (duplicate nonce)")
            if len(seen) >= self.KEEP and nonce < min(seen):
                raise SimError(-4225, "Nonce Expired")
            seen.append(nonce)
            if len(seen) > self.KEEP:
                seen.remove(min(seen))


def _authenticate_v3(app: FastAPI, raw_query: str, raw_body: str, params: dict[str, str],
                     server_ms: int) -> str:
    """EIP-712 over the raw parameter string as received (never re-encoded); the signer must be
    the wallet itself or an API wallet it approved. Returns the account (wallet address)."""
    from mraster.exchange import eip712

    sig = params.get("signature", "")
    signer = params.get("signer", "").lower()
    if not sig or not signer or not params.get("nonce"):
        raise SimError(-1102, "Mandatory parameter 'signer', 'nonce' or 'signature' was not sent, "
                              "was empty/null, or malformed.")
    raw = raw_query if "signature=" in raw_query else raw_body
    try:
        recovered = eip712.recover(_strip_signature(raw), sig, app.state.chain_id).lower()
    except Exception:  # malformed signature bytes
        recovered = ""
    if recovered != signer:
        raise SimError(-1022, "Signature for this request is not valid.", 400)
    user = params.get("user", "").lower()
    if not user:  # requests may omit the wallet: the signer's wallet is implied
        owners = [u for u, agents in app.state.agents.items() if signer in agents]
        user = owners[0] if len(owners) == 1 else signer
    if signer != user and signer not in app.state.agents.get(user, set()):
        raise SimError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
    try:
        nonce = int(params["nonce"])
    except ValueError:
        raise SimError(-1102, "Parameter 'nonce' is malformed.") from None
    app.state.nonces.use(user, nonce, server_ms)
    return user


def _authenticate_builder_approval(app: FastAPI, raw: str, params: dict[str, str],
                                   server_ms: int) -> str:
    """``approveBuilder`` is signed by the wallet itself as an EIP-712 ``ApproveBuilder`` struct
    (Builder, MaxFeeRate, BuilderName, AsterChain, User, Nonce), not as the usual message; an
    API wallet cannot approve a builder."""
    from mraster.exchange import eip712

    need = ("builder", "maxFeeRate", "builderName", "asterChain", "user", "nonce", "signature")
    if any(not params.get(k) for k in need):
        raise SimError(-1102, "Mandatory parameter 'builder', 'maxFeeRate', 'builderName', "
                              "'asterChain', 'user', 'nonce' or 'signature' was not sent, was "
                              "empty/null, or malformed.")
    try:
        nonce = int(params["nonce"])
        recovered = eip712.recover_builder_approval(
            params, params["signature"], int(params.get("signatureChainId") or app.state.chain_id))
    except Exception:  # malformed numbers or signature bytes
        recovered = ""
    user = params["user"].lower()
    if recovered.lower() != user:
        raise SimError(-1022, "Signature for this request is not valid.", 400)
    app.state.nonces.use(user, nonce, server_ms)
    return user


def _strip_signature(raw: str) -> str:
    """Everything before ``signature=`` (which must be the last parameter)."""
    if not raw:
        return ""
    idx = raw.find("signature=")
    if idx < 0:
        return raw
    return raw[: max(idx - 1, 0)] if idx > 0 else ""
