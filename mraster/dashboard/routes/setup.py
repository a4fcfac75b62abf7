"""First run: choose how to trade, and check that the exchange accepts the keys."""
from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from mraster import settings as st
from mraster.dashboard.context import DashboardContext, get_ctx
from mraster.dashboard.routes.config import config_view, save_config
from mraster.dashboard.routes.drill import OVERRIDE, live_unlocked, record_override
from mraster.dashboard.routes.errors import settings_error_response
from mraster.exchange import auth
from mraster.exchange import errors as E

router = APIRouter(prefix="/api/setup", tags=["setup"])
LIVE_CONFIRMATION = "TRADE REAL MONEY"
MODES = {"paper": {"ASTER_PAPER": True, "ASTER_OFFLINE": False},
         "offline": {"ASTER_PAPER": True, "ASTER_OFFLINE": True},
         "live": {"ASTER_PAPER": False, "ASTER_OFFLINE": False}}


class SetupChoice(BaseModel):
    mode: Literal["paper", "offline", "live"]
    confirm: str = Field("", max_length=40)
    override: str = Field("", max_length=40, description=f"type {OVERRIDE} to go live without a "
                                                         "passed fire drill (recorded)")


@router.post("")
def choose(body: SetupChoice, ctx: DashboardContext = Depends(get_ctx)):
    """Paper with live market data, paper on the offline simulator, or live (keys and a typed
    confirmation needed)."""
    if body.mode == "live":
        s, _ = ctx.settings_lenient()
        trouble = auth.problem(s)
        if trouble:
            raise HTTPException(422, f"live mode cannot sign orders yet: {trouble}. Enter the API "
                                     "wallet (V3) or API key (V1) in the keys form first")
        if body.confirm != LIVE_CONFIRMATION:
            raise HTTPException(422, f"confirm: type {LIVE_CONFIRMATION} to trade real money")
        unlocked, why = live_unlocked(ctx, s)
        if not unlocked and body.override != OVERRIDE:
            raise HTTPException(422, f"override: live trading is locked: {why}")
        if not unlocked:
            record_override(ctx, s)
    try:
        save_config(ctx, lambda cfg: {**cfg, **MODES[body.mode]})
    except st.SettingsErrors as exc:
        return settings_error_response(exc, "the mode was not changed")
    return config_view(ctx)


def explain(exc: E.ExchangeError, base: str, v3: bool = False) -> str:
    """An exchange failure in the words a trader can act on."""
    if isinstance(exc, E.InvalidSignature):
        if v3:
            return ("The exchange rejected the signature: the private key does not sign as the "
                    "configured API wallet (ASTER_SIGNER_ADDRESS), or the chain id is wrong.")
        return "The exchange rejected the signature: the API secret does not belong to this key."
    if isinstance(exc, E.AuthError):
        if v3:
            return ("The exchange refused the API wallet: it is not approved for the wallet in "
                    "ASTER_USER_ADDRESS (approve it on Aster, or fix the address).")
        return ("The exchange refused the API key: it is wrong or deleted, this machine's IP "
                "address is not on the key's allow-list, or the key lacks futures permission.")
    if isinstance(exc, E.TimestampError) and exc.code == -4225:
        return ("The exchange refused the request's nonce as expired: this computer's clock is "
                "off by more than 10 seconds. Turn on automatic time synchronisation.")
    if isinstance(exc, E.TimestampError):
        return ("The exchange says this computer's clock is off. Turn on automatic time "
                "synchronisation in your system settings and try again.")
    if isinstance(exc, E.RateLimited):
        return "The exchange is rate-limiting this address; wait a minute and try again."
    if isinstance(exc, E.ExchangeUnavailable):
        return (f"The exchange at {base} cannot be reached: check the address "
                "(ASTER_EXCHANGE_BASE) and your internet connection.")
    return f"The exchange answered with an error: {exc}"


@router.post("/test-connection")
async def test_connection(ctx: DashboardContext = Depends(get_ctx)) -> dict[str, Any]:
    """One signed account request with the saved keys."""
    try:
        s = ctx.settings()
    except st.SettingsErrors as exc:
        return {"ok": False, "message": f"Fix the settings first: {exc}"}
    base = s["ASTER_EXCHANGE_BASE"]
    trouble = auth.problem(s)
    if trouble:
        return {"ok": False, "message": f"Not ready to sign: {trouble}."}
    v3 = auth.scheme(s) == "v3"
    client = auth.make_client(s, timeout=5.0, read_retries=0)
    try:
        acct = await client.account()
    except E.ExchangeError as exc:
        return {"ok": False, "message": explain(exc, base, v3), "code": exc.code}
    finally:
        await client.close()
    what = f"API wallet {client.v3.signer}" if v3 else "the API key"
    return {"ok": True, "message": f"Connected to {base}: {what} works.", "scheme": auth.scheme(s),
            "balance": acct.get("totalWalletBalance"), "can_trade": acct.get("canTrade", True)}
