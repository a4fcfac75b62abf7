"""Client order ids: how the bot recognises its own orders, across restarts and versions.

Scheme ``mra1`` (current): ``mra1-<kind>-<token>`` where kind is E (entry), S (stop-loss),
T (take-profit), X (market close by the bot's guard), X1 (close the user asked for), X2 (market
close by ``brackets_guard.py``) and ``token`` identifies the position (base36 milliseconds of
the entry decision plus a 4-character random tag), e.g. ``mra1-E-lq3k9x2a-7f3c``. The entry and
its brackets share the token, so a stop can always be matched to its position. FastTP moves add
a counter: ``mra1-T2-<token>``. A market close larger than the exchange's largest market order
goes out in pieces: the first keeps its kind, the k-th adds ``p<k>`` (``mra1-X1p2-<token>``).
The n-th market close of one position adds ``r<n>`` (``mra1-X1r2-<token>``, ``mra1-X1r2p3-…``):
an order whose answer was lost is looked up by its id, and a repeated id would find an earlier,
filled close instead. Ids stay within the exchange's 36-character limit.

BracketGuard also recognises orders it did not create: any ``closePosition`` STOP_MARKET or
TAKE_PROFIT_MARKET (placed by hand or by older versions), and ``reduceOnly`` stop orders.
"""
from __future__ import annotations

import re
import secrets
from collections.abc import Container
from functools import lru_cache

SCHEME = "mra1"
_RE = re.compile(r"^mra1-(E|S\d*|T\d*|X\d*(?:r\d+)?(?:p\d+)?)-([0-9a-z]+-[0-9a-f]{4})$")
_CLOSE = re.compile(r"X\d*")


def _b36(n: int) -> str:
    chars = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = chars[r] + out
        if n == 0:
            return out


def new_token(now_ms: int, rand: str | None = None, taken: Container[str] = ()) -> str:
    """A position's token, none of ``taken`` (the positions held): entries decided in the same
    millisecond share the time part, and 4 random hex characters alone collide about once in
    4,000 cycles of six entries (a position's record was then overwritten by another's)."""
    tag = int(rand or secrets.token_hex(2), 16)
    for k in range(0x10000):  # the next free tag (never 65,536 positions at one moment)
        token = f"{_b36(int(now_ms))}-{(tag + k) % 0x10000:04x}"
        if token not in taken:
            return token
    raise RuntimeError("every position token of this moment is taken")


def order_id(kind: str, token: str) -> str:
    cid = f"{SCHEME}-{kind}-{token}"
    assert len(cid) <= 36, cid
    return cid


def piece(kind: str, k: int) -> str:
    """The kind of piece ``k`` (from 1) of a market close sent in pieces."""
    return kind if k == 1 else f"{kind}p{k}"


def attempt(kind: str, n: int) -> str:
    """The kind of a position's ``n``-th market close (from 1)."""
    return kind if n <= 1 else f"{kind}r{n}"


def close_kind(kind: str) -> str | None:
    """``X`` (the bot's guard's), ``X1`` (the user's) or ``X2`` (``brackets_guard.py``'s) for
    any attempt or piece of a market close."""
    m = _CLOSE.match(kind)
    return m.group() if m else None


def parse(cid: str) -> tuple[str, str] | None:
    """(kind, token) for our ids, None for anything else — also for an id that is no string
    (an answer of the wrong shape)."""
    return _parse(cid) if isinstance(cid, str) else None


@lru_cache(maxsize=4096)
def _parse(cid: str) -> tuple[str, str] | None:
    """(Remembered: every cycle's guard and checks parse the ids of every open order again.)"""
    m = _RE.match(cid)
    return (m.group(1), m.group(2)) if m else None


def bracket_kind(order: dict) -> str | None:
    """'stop', 'tp' or None for an exchange order, whoever placed it."""
    parsed = parse(order.get("clientOrderId", ""))
    typ = order.get("type") or order.get("origType", "")
    if parsed and parsed[0][0] in "ST" and typ in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
        return "stop" if parsed[0][0] == "S" else "tp"
    protective = order.get("closePosition") in (True, "true") or order.get("reduceOnly") in (True, "true")
    if protective and typ in ("STOP_MARKET", "STOP"):
        return "stop"
    if protective and typ in ("TAKE_PROFIT_MARKET", "TAKE_PROFIT"):
        return "tp"
    return None
