"""Request weights per endpoint (Aster follows Binance USDⓈ-M), shared by client and simulator."""
from __future__ import annotations

BUDGET_PER_MINUTE = 2400


def weight(path: str, params: dict[str, str] | None = None) -> int:
    """Weight of one request; ``path`` is the part after ``/fapi/vN/``."""
    params = params or {}
    has_symbol = bool(params.get("symbol"))
    if path in ("klines", "markPriceKlines", "indexPriceKlines"):
        limit = int(params.get("limit") or 500)
        return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
    if path == "depth":
        limit = int(params.get("limit") or 500)
        return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20
    if path == "ticker/24hr":
        return 1 if has_symbol else 40
    if path in ("ticker/bookTicker", "ticker/price"):
        return 1 if has_symbol else 2
    if path == "openOrders":
        return 1 if has_symbol else 40
    if path in ("balance", "positionRisk", "account", "accountWithJoinMargin", "userTrades",
                "allOrders"):
        return 5
    if path in ("income", "positionSide/dual"):
        return 30
    if path == "commissionRate":
        return 20
    return 1
