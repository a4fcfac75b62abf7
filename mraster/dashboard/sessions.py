"""Dashboard log-in sessions and the brake on guessing the token.

A session is a random id the server remembers (never derived from the token), so it expires and
logging out ends it. Wrong tokens are counted per peer address: after ``FREE_TRIES`` failures
within the window every further attempt from that peer is refused (429) for a time that doubles
with each failure, so guessing even a short token takes years instead of minutes.
"""
from __future__ import annotations

import secrets
import threading
import time
from typing import Callable

SESSION_TTL_S = 12 * 3600
FREE_TRIES = 5
WINDOW_S = 900.0
MAX_LOCK_S = 900.0
MIN_TOKEN_OFF_LOOPBACK = 16


class SessionStore:
    def __init__(self, ttl_s: float = SESSION_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._sessions: dict[str, float] = {}
        self._lock = threading.Lock()

    def create(self) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = self._clock()
            self._sessions = {k: v for k, v in self._sessions.items() if v > now}
            self._sessions[sid] = now + self.ttl_s
        return sid

    def valid(self, sid: str) -> bool:
        with self._lock:
            expires = self._sessions.get(sid)
            return expires is not None and expires > self._clock()

    def end(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)


class LoginThrottle:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._fails: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def retry_after(self, peer: str) -> float:
        """Seconds until ``peer`` may try again (0: now)."""
        with self._lock:
            return max(0.0, self._locked_until.get(peer, 0.0) - self._clock())

    def failed(self, peer: str) -> None:
        with self._lock:
            now = self._clock()
            fails = [t for t in self._fails.get(peer, []) if now - t < WINDOW_S] + [now]
            self._fails[peer] = fails
            extra = len(fails) - FREE_TRIES
            if extra >= 0:
                self._locked_until[peer] = now + min(MAX_LOCK_S, 2.0 * 2 ** extra)

    def succeeded(self, peer: str) -> None:
        with self._lock:
            self._fails.pop(peer, None)
            self._locked_until.pop(peer, None)


def token_problem(token: str, loopback_only: bool) -> str | None:
    """Why a dashboard token is too weak for where it listens (None when it is fine)."""
    if loopback_only or len(token) >= MIN_TOKEN_OFF_LOOPBACK:
        return None
    return (f"ASTER_DASHBOARD_TOKEN must have at least {MIN_TOKEN_OFF_LOOPBACK} characters when "
            f"the dashboard listens beyond this machine; for example this random one: "
            f"{secrets.token_urlsafe(24)}")
