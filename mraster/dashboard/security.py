"""Who may talk to the dashboard.

The old dashboard had no authentication and answered any web page (CORS ``*``). Here:

- **Token**: with ``ASTER_DASHBOARD_TOKEN`` set, every API route, the stream and the API docs need
  it, as ``Authorization: Bearer <token>``, ``X-MrAster-Token`` or the session cookie that the login
  form sets (HttpOnly, SameSite=Strict; a random session id the server remembers for 12 h, ended
  by logging out). Wrong tokens are counted per peer and lock it out for a growing time (429).
- **Cross-site requests**: a request that changes something must carry the ``X-MrAster-CSRF``
  header (a foreign page cannot add it without a CORS preflight, which is never granted) and, when
  the browser sends an Origin, come from the dashboard's own origin.
- **DNS rebinding**: without a token the dashboard only listens on loopback and only answers
  requests addressed to a loopback host name, so a foreign domain re-pointed at 127.0.0.1 gets 403.
- No CORS headers are ever sent, and pages may not be framed.
"""
from __future__ import annotations

import hmac
import json
from typing import Any, Callable
from urllib.parse import urlsplit

from mraster.dashboard.sessions import LoginThrottle, SessionStore
from mraster.domain import shown

SESSION_COOKIE = "mraster_session"
CSRF_HEADER = "x-mraster-csrf"
PUBLIC_PATHS = ("/", "/api/health", "/api/login", "/favicon.ico")
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def given_token(headers: dict[str, str]) -> str:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return headers.get("x-mraster-token", "")


def token_matches(given: str, token: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def _host_name(host_header: str) -> str:
    return urlsplit(f"//{host_header}").hostname or ""


def _is_loopback_ip(addr: str) -> bool:
    import ipaddress

    if not addr:  # no peer address (a unix socket or an in-process test client): local
        return True
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return addr == "testclient"


def _cookies(raw: str) -> dict[str, str]:
    out = {}
    for part in raw.split(";"):
        if "=" in part:
            k, v = part.strip().split("=", 1)
            out[k] = v
    return out


class SecurityMiddleware:
    """Pure ASGI, so the event stream is passed through untouched."""

    def __init__(self, app, token: Callable[[], str], sessions: Callable[[], SessionStore],
                 throttle: Callable[[], LoginThrottle]) -> None:
        self.app = app
        self.token = token
        self.sessions = sessions
        self.throttle = throttle

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path, method = scope["path"], scope["method"]
        token = self.token()
        client = (scope.get("client") or ("", 0))[0]
        problem = self._check(headers, path, method, token, client, scope.get("scheme", "http"))
        if problem:
            status, message = problem
            body = json.dumps({"detail": message}).encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                         (b"referrer-policy", b"no-referrer")]
                if not path.startswith("/docs"):  # Swagger UI needs its own scripts
                    extra.append((b"content-security-policy", CSP.encode()))
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _check(self, headers: dict[str, str], path: str, method: str, token: str,
               client: str = "127.0.0.1", scheme: str = "http") -> tuple[int, str] | None:
        host = headers.get("host", "")
        if "@" in host or "/" in host or "\\" in host:
            return 400, "malformed Host header"
        if not token and not _is_loopback_ip(client):
            # e.g. `uvicorn dashboard_server:app --host 0.0.0.0` without a token: the Host header
            # can be forged, the peer address cannot
            return 403, ("this dashboard has no ASTER_DASHBOARD_TOKEN, so it only answers this "
                         "machine; set a token to use it from elsewhere")
        if not token and _host_name(host) not in LOOPBACK_NAMES:
            return 403, (f"this dashboard answers only on 127.0.0.1/localhost (request was for "
                         f"{shown(host)}); set ASTER_DASHBOARD_TOKEN to serve other host names")
        if method not in SAFE_METHODS:
            if headers.get(CSRF_HEADER) != "1":
                return 403, "cross-site request refused: the X-MrAster-CSRF header is missing"
            origin = headers.get("origin")
            if origin and origin != "null" and (urlsplit(origin).netloc != host or
                                                urlsplit(origin).scheme != scheme):
                return 403, f"cross-site request refused: origin {shown(origin)} is not this dashboard"
            if origin == "null":
                return 403, "cross-site request refused: opaque origin"
        if token and not (path in PUBLIC_PATHS or path.startswith("/static/")):
            given = given_token(headers)
            if given:
                wait = self.throttle().retry_after(client)
                if wait > 0:
                    return 429, f"too many wrong tokens from this address; try again in {wait:.0f} s"
                if token_matches(given, token):
                    self.throttle().succeeded(client)
                    return None
                self.throttle().failed(client)
            elif self.sessions().valid(_cookies(headers.get("cookie", "")).get(SESSION_COOKIE, "")):
                return None
            return 401, "this dashboard needs its access token (log in on the page, or send " \
                        "Authorization: Bearer <ASTER_DASHBOARD_TOKEN>)"
        return None
