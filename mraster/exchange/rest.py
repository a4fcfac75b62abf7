"""Async REST client for Aster futures (Binance USDⓈ-M protocol, V1 HMAC signing).

Rules it keeps, because each one has cost traders money elsewhere:
- it signs exactly the query string it sends (every parameter in the URL, ``signature`` last);
- the clock offset to the server is measured and kept; a -1021 resyncs and retries once;
- all requests pass one weight governor; 429/418 pause every request until Retry-After;
- reads are retried with backoff; a new order is **never** re-sent blindly: when its outcome is
  unknown it is first looked up by its client order id.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

from mraster.exchange import eip712
from mraster.exchange import errors as E
from mraster.exchange.eip712 import NonceSource
from mraster.exchange.ratelimit import WeightGovernor
from mraster.exchange.weights import weight

log = logging.getLogger("mraster.exchange")

# An idle connection is kept at most this long: under the idle timeouts of common front ends
# (a load balancer's 60 s, nginx's 75 s), so the exchange has not dropped it unannounced.
KEEPALIVE_MAX_S = 60.0
KEEPALIVE_MARGIN_S = 15.0


def keepalive_across(pause_s: float) -> float:
    """How long idle connections are kept so the next cycle finds them open after a pause of
    ``pause_s`` between cycles: a new connection costs a TCP and a TLS handshake (two round
    trips or more) before its request goes out, so a warm cycle whose connections expired in
    the pause (httpx's 5 s by default; the bot pauses 30 s) takes three round trips, not one.
    Pauses beyond ``KEEPALIVE_MAX_S`` reconnect as before."""
    return min(KEEPALIVE_MAX_S, max(5.0, pause_s + KEEPALIVE_MARGIN_S))


def hmac_signature(secret: str, payload: str) -> str:
    """HMAC-SHA256 hex digest of the exact query string (plus body) sent."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def _clean(params: dict[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in params.items():
        if v is None:
            continue
        if isinstance(v, bool):
            v = "true" if v else "false"
        out[k] = str(v)
    return out


@dataclass(frozen=True)
class V3Auth:
    """An Aster API wallet: ``signer`` (its address) signs for the main wallet ``user``."""
    user: str
    signer: str
    private_key: str = field(repr=False)
    chain_id: int = 1666


def v3_path(path: str) -> str:
    """V1 paths (/fapi/v1, /fapi/v2, /fapi/v4) → their V3 names (/fapi/v3/...)."""
    if path.startswith("/fapi/v3/"):
        return path
    rest = re.sub(r"^/fapi/v\d+/", "", path)
    return "/fapi/v3/" + ("accountWithJoinMargin" if rest == "account" else rest)


class AsterRest:
    def __init__(self, base_url: str, api_key: str = "", api_secret: str = "", *,
                 v3: V3Auth | None = None,
                 recv_window: int = 5000, rate_share: float = 0.8, timeout: float = 10.0,
                 read_retries: int = 3, order_attempts: int = 3, consistency_s: float = 1.0,
                 keepalive_s: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._secret = api_secret
        self.v3 = v3
        self.nonces = NonceSource()
        self.recv_window = recv_window
        self.read_retries = read_retries
        self.order_attempts = order_attempts
        self.consistency_s = consistency_s  # how long "order does not exist" may still be stale
        self.stop: asyncio.Event | None = None  # set by the bot on SIGTERM: every wait ends
        self.governor = WeightGovernor(share=rate_share, sleep=self._wait,
                                       wall=lambda: self.now_ms() / 1000)
        self.time_offset_ms = 0
        self._synced_at = 0.0
        self._sync_lock = asyncio.Lock()  # signed requests sent together share one time sync
        self._resync: asyncio.Task | None = None  # the ten-minute sync, run beside the requests
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout,
                                       transport=transport,
                                       limits=httpx.Limits(max_connections=32,
                                                           keepalive_expiry=keepalive_s))
        self.stats = {"requests": 0, "retries": 0, "recovered_orders": 0, "resyncs": 0}

    def __repr__(self) -> str:  # never show credentials
        auth = f"v3 signer {self.v3.signer}" if self.v3 else f"key={'set' if self._key else 'none'}"
        return f"AsterRest({self.base_url!r}, {auth})"

    @property
    def has_credentials(self) -> bool:
        return bool(self.v3 or (self._key and self._secret))

    async def close(self) -> None:
        if self._resync is not None and not self._resync.done():
            self._resync.cancel()
            await asyncio.gather(self._resync, return_exceptions=True)
        await self._http.aclose()

    async def __aenter__(self) -> "AsterRest":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- core ---------------------------------------------------------------------------------
    def now_ms(self) -> int:
        """The exchange's clock as best known (wall clock + the offset from the last sync)."""
        return int(time.time() * 1000) + self.time_offset_ms

    def _clock_fresh(self) -> bool:
        return bool(self._synced_at) and time.monotonic() - self._synced_at <= 600

    async def _clock_for_signing(self) -> None:
        """The first sync is waited for (no offset is known yet). The one due every ten minutes
        runs beside the requests, which are signed with the offset held meanwhile: a clock
        drifts milliseconds in that time, well inside the receive window, and a request refused
        for its timestamp (-1021) resyncs and is sent again. A warm cycle used to wait a whole
        round trip for it every ten minutes."""
        if self._synced_at:
            if self._resync is None or self._resync.done():
                self._resync = asyncio.create_task(self._sync_beside())
            return
        async with self._sync_lock:
            if not self._clock_fresh():  # (the request ahead may have just synced)
                await self.sync_time()

    async def _sync_beside(self) -> None:
        try:
            await self.sync_time()
        except (E.ExchangeError, KeyError, TypeError, ValueError) as exc:  # (nobody awaits it)
            log.warning("clock sync failed (%s); the offset held stays in use, asked again at the "
                        "next signed request", exc)

    async def sync_time(self) -> int:
        t0 = time.time() * 1000
        data = await self._request("GET", "/fapi/v1/time")
        t1 = time.time() * 1000
        self.time_offset_ms = int(data["serverTime"] - (t0 + t1) / 2)
        self._synced_at = time.monotonic()
        self.stats["resyncs"] += 1
        return self.time_offset_ms

    async def _request(self, method: str, path: str, params: dict[str, Any] | None = None, *,
                       signed: bool = False, retry: bool = True) -> Any:
        params = _clean(params or {})
        if self.v3:
            path = v3_path(path)
        endpoint = path.split("/", 3)[-1]
        attempts = (self.read_retries + 1) if retry else 1
        resynced = False
        last_exc: Exception | None = None
        for attempt in range(attempts + 1):
            if signed and not self._clock_fresh():
                await self._clock_for_signing()
            await self.governor.acquire(weight(endpoint, params))
            query = urlencode(params)
            headers = {}
            if signed:
                if not self.has_credentials:
                    raise E.AuthError(0, "no API key configured", 0, path)
                query = self._sign(params, headers)
            url = path + ("?" + query if query else "")
            self.stats["requests"] += 1
            try:
                resp = await self._http.request(method, url, headers=headers)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last_exc = E.ExchangeUnavailable(0, type(exc).__name__, 0, path)
                if not retry or attempt >= attempts - 1:
                    raise last_exc from None
                await self._backoff(attempt)
                continue
            self.governor.observe(resp.headers.get("X-MBX-USED-WEIGHT-1M"))
            if resp.status_code < 400:
                return _checked(resp, endpoint, path)
            code, msg = _error_body(resp)
            err = E.from_response(resp.status_code, code, msg, path)
            if resp.status_code in (429, 418):
                retry_after = _retry_after(resp, default=60.0 if resp.status_code == 418 else 5.0)
                self.governor.pause(retry_after)
                log.warning("rate limited (%s) on %s; pausing all requests for %.0fs",
                            resp.status_code, path, retry_after)
                if attempt < attempts - 1 and retry:
                    self.stats["retries"] += 1
                    continue
                raise err
            if isinstance(err, E.TimestampError) and signed and not resynced:
                resynced = True
                await self.sync_time()
                continue
            if isinstance(err, E.ExchangeUnavailable) and retry and attempt < attempts - 1:
                await self._backoff(attempt)
                continue
            raise err
        raise last_exc or E.ExchangeUnavailable(0, "no response", 0, path)

    def _sign(self, params: dict[str, str], headers: dict[str, str]) -> str:
        """The exact query string to send, signature last. Signed afresh on every attempt, so a
        retried V3 request never reuses a nonce."""
        signed = dict(params)
        if self.v3:
            signed.update(nonce=str(self.nonces.next(self.time_offset_ms)), user=self.v3.user,
                          signer=self.v3.signer)
            query = urlencode(signed)
            return query + "&signature=" + eip712.sign(query, self.v3.private_key, self.v3.chain_id)
        signed["recvWindow"] = str(self.recv_window)
        signed["timestamp"] = str(int(time.time() * 1000) + self.time_offset_ms)
        query = urlencode(signed)
        headers["X-MBX-APIKEY"] = self._key
        return query + "&signature=" + hmac_signature(self._secret, query)

    async def _wait(self, seconds: float) -> None:
        """Every wait of the client (rate limit, back-off, consistency window): cut short with
        ``Interrupted`` as soon as the bot is asked to stop, so a stop never waits out a minute."""
        if self.stop is None:
            await asyncio.sleep(seconds)
            return
        if not self.stop.is_set():
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=seconds)
            except asyncio.TimeoutError:
                return
        raise E.Interrupted(0, "stop requested", 0, "")

    async def _backoff(self, attempt: int) -> None:
        self.stats["retries"] += 1
        await self._wait(min(2.0, 0.1 * (2 ** attempt)) * (0.5 + random.random() / 2))

    # -- public market data ----------------------------------------------------------------
    async def ping(self) -> dict:
        return await self._request("GET", "/fapi/v1/ping")

    async def server_time(self) -> int:
        return (await self._request("GET", "/fapi/v1/time"))["serverTime"]

    async def exchange_info(self) -> dict:
        info = await self._request("GET", "/fapi/v1/exchangeInfo")
        for r in info.get("rateLimits", []):
            if r.get("rateLimitType") == "REQUEST_WEIGHT" and r.get("interval") == "MINUTE":
                self.governor.set_budget(int(r["limit"]) // max(1, int(r.get("intervalNum", 1))))
        return info

    async def klines(self, symbol: str, interval: str, limit: int = 500,
                     start_time: int | None = None, end_time: int | None = None) -> list[list]:
        return await self._request("GET", "/fapi/v1/klines", {
            "symbol": symbol, "interval": interval, "limit": limit, "startTime": start_time,
            "endTime": end_time})

    async def mark_klines(self, symbol: str, interval: str, limit: int = 500,
                          start_time: int | None = None, end_time: int | None = None) -> list[list]:
        return await self._request("GET", "/fapi/v1/markPriceKlines", {
            "symbol": symbol, "interval": interval, "limit": limit, "startTime": start_time,
            "endTime": end_time})

    async def funding_history(self, symbol: str, start_time: int | None = None,
                              end_time: int | None = None, limit: int = 1000) -> list:
        """Settled funding rates of ``symbol``, oldest first."""
        return await self._request("GET", "/fapi/v1/fundingRate", {
            "symbol": symbol, "startTime": start_time, "endTime": end_time, "limit": limit})

    async def ticker_24h(self, symbol: str | None = None) -> Any:
        return await self._request("GET", "/fapi/v1/ticker/24hr", {"symbol": symbol})

    async def book_ticker(self, symbol: str | None = None) -> Any:
        return await self._request("GET", "/fapi/v1/ticker/bookTicker", {"symbol": symbol})

    async def premium_index(self, symbol: str | None = None) -> Any:
        return await self._request("GET", "/fapi/v1/premiumIndex", {"symbol": symbol})

    async def depth(self, symbol: str, limit: int = 20) -> dict:
        return await self._request("GET", "/fapi/v1/depth", {"symbol": symbol, "limit": limit})

    async def funding_rate(self, symbol: str | None = None, limit: int = 100) -> list:
        return await self._request("GET", "/fapi/v1/fundingRate", {"symbol": symbol, "limit": limit})

    # -- signed: account --------------------------------------------------------------------
    async def account(self) -> dict:
        try:
            return await self._request("GET", "/fapi/v2/account", signed=True)
        except E.ExchangeError as exc:
            if not (self.v3 and exc.http == 404):
                raise
            # an exchange from before the 2026-03-28 rename still calls it "account"
            return await self._request("GET", "/fapi/v3/account", signed=True)

    async def balance(self) -> list:
        return await self._request("GET", "/fapi/v2/balance", signed=True)

    async def position_risk(self, symbol: str | None = None) -> list:
        return await self._request("GET", "/fapi/v2/positionRisk", {"symbol": symbol}, signed=True)

    async def open_orders(self, symbol: str | None = None) -> list:
        return await self._request("GET", "/fapi/v1/openOrders", {"symbol": symbol}, signed=True)

    async def query_order(self, symbol: str, order_id: int | None = None,
                          client_id: str | None = None) -> dict:
        return await self._request("GET", "/fapi/v1/order", {
            "symbol": symbol, "orderId": order_id, "origClientOrderId": client_id}, signed=True)

    async def cancel_order(self, symbol: str, order_id: int | None = None,
                           client_id: str | None = None) -> dict:
        return await self._request("DELETE", "/fapi/v1/order", {
            "symbol": symbol, "orderId": order_id, "origClientOrderId": client_id}, signed=True)

    async def cancel_all(self, symbol: str) -> dict:
        return await self._request("DELETE", "/fapi/v1/allOpenOrders", {"symbol": symbol},
                                   signed=True)

    async def set_leverage(self, symbol: str, leverage: int) -> dict:
        return await self._request("POST", "/fapi/v1/leverage",
                                   {"symbol": symbol, "leverage": leverage}, signed=True)

    async def set_margin_type(self, symbol: str, margin_type: str) -> dict:
        return await self._request("POST", "/fapi/v1/marginType",
                                   {"symbol": symbol, "marginType": margin_type}, signed=True)

    async def position_mode(self) -> dict:
        """``{"dualSidePosition": bool}``: hedge mode (True) or one-way (False)."""
        return await self._request("GET", "/fapi/v1/positionSide/dual", signed=True)

    async def leverage_brackets(self) -> list:
        """Maintenance-margin tiers per symbol (for liquidation prices)."""
        return await self._request("GET", "/fapi/v1/leverageBracket", signed=True)

    async def commission_rate(self, symbol: str) -> dict:
        """The account's maker and taker fee rates on ``symbol``."""
        return await self._request("GET", "/fapi/v1/commissionRate", {"symbol": symbol}, signed=True)

    async def user_trades(self, symbol: str, start_time: int | None = None, limit: int = 500) -> list:
        return await self._request("GET", "/fapi/v1/userTrades", {
            "symbol": symbol, "startTime": start_time, "limit": limit}, signed=True)

    async def income(self, symbol: str | None = None, income_type: str | None = None,
                     start_time: int | None = None, limit: int = 100) -> list:
        return await self._request("GET", "/fapi/v1/income", {
            "symbol": symbol, "incomeType": income_type, "startTime": start_time,
            "limit": limit}, signed=True)

    # -- signed: orders (idempotent) --------------------------------------------------------
    async def _lookup_after_consistency(self, symbol: str, cid: str) -> dict | None:
        """The order by client id, or None when the exchange still says "does not exist" after
        its consistency window (an order just accepted may not be visible at once)."""
        for i in range(2):
            try:
                return await self.query_order(symbol, client_id=cid)
            except E.UnknownOrder:
                if i == 0:
                    await self._wait(self.consistency_s)
        return None

    async def all_orders(self, symbol: str, start_time: int | None = None,
                         limit: int = 500) -> list:
        """Recent orders of ``symbol`` in every state (the exchange keeps about 7 days)."""
        return await self._request("GET", "/fapi/v1/allOrders", {
            "symbol": symbol, "startTime": start_time, "limit": limit}, signed=True)

    async def new_order(self, **params: Any) -> dict:
        """Place an order exactly once. ``newClientOrderId`` is required: it is how an order whose
        answer was lost is found again instead of being sent a second time.

        Outcomes: the order (placed, or found by its id after a lost answer); an exchange error
        for which ``errors.is_refusal`` holds (it was refused, nothing happened); or
        ``OrderStatusUnknown`` whenever neither could be established (lost answer and a failed
        lookup, 5xx, -1007): the caller keeps the order pending and asks again later."""
        cid = params.get("newClientOrderId")
        if not cid:
            raise ValueError("new_order needs newClientOrderId (see mraster.execution.ids)")
        symbol = params["symbol"]
        why = "not sent"
        for attempt in range(self.order_attempts):
            try:
                return await self._request("POST", "/fapi/v1/order", params, signed=True,
                                           retry=False)
            except E.DuplicateClientId:
                why = "its client id exists already"  # an earlier attempt did arrive
            except E.RateLimited:
                # rejected before processing; the governor pause applies to the next attempt
                why = "rate limited"
                continue
            except E.ExchangeError as exc:
                if E.is_refusal(exc):
                    raise
                why = exc.msg or type(exc).__name__
                log.warning("order %s %s: outcome unknown (%s); looking it up before any retry",
                            symbol, cid, why)
            try:
                found = await self._lookup_after_consistency(symbol, cid)
            except E.ExchangeError as exc:  # the lookup failed too: only the exchange knows
                raise E.OrderStatusUnknown(0, f"order {cid}: {why}; lookup failed "
                                              f"({exc.msg or type(exc).__name__})", 0,
                                           "/fapi/v1/order") from None
            if found is None:
                log.info("order %s %s was not placed; sending it again", symbol, cid)
                continue
            self.stats["recovered_orders"] += 1
            log.info("order %s %s was placed after all (status %s)", symbol, cid,
                     found.get("status"))
            return found
        raise E.OrderStatusUnknown(0, f"order {cid} could not be confirmed ({why})", 0,
                                   "/fapi/v1/order")


# the fields the bot relies on, per endpoint (every row of a list answer)
REQUIRED: dict[str, tuple[str, ...]] = {
    "positionRisk": ("symbol", "positionAmt", "entryPrice"),
    "openOrders": ("symbol", "orderId", "clientOrderId", "side", "type", "status"),
    "order": ("symbol", "orderId", "clientOrderId", "status", "executedQty"),
    "allOrders": ("symbol", "orderId", "clientOrderId", "side", "status", "executedQty"),
    "userTrades": ("id", "orderId", "side", "price", "qty", "commission", "time"),
    "ticker/24hr": ("symbol",), "ticker/bookTicker": ("symbol", "bidPrice", "askPrice"),
    "premiumIndex": ("symbol", "markPrice"), "time": ("serverTime",),
    "exchangeInfo": ("symbols",),
}


def _checked(resp: httpx.Response, endpoint: str, path: str) -> Any:
    try:
        data = resp.json()
    except ValueError:
        raise E.MalformedReply(0, "not JSON", resp.status_code, path) from None
    fields = REQUIRED.get(endpoint)
    if fields:
        for row in data if isinstance(data, list) else [data]:
            missing = [f for f in fields if not isinstance(row, dict) or f not in row]
            if missing:
                raise E.MalformedReply(0, f"missing {', '.join(missing)}", resp.status_code, path)
    return data


def _error_body(resp: httpx.Response) -> tuple[int, str]:
    try:
        body = resp.json()
        return int(body.get("code", 0)), str(body.get("msg", ""))[:300]
    except Exception:
        return 0, resp.text[:200]


def _retry_after(resp: httpx.Response, default: float) -> float:
    try:
        return float(resp.headers.get("Retry-After", default))
    except ValueError:
        return default
