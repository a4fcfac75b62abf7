"""Which credentials the settings describe, whether they are complete and consistent, and the
client that uses them. Messages name the setting to fix and never contain a secret."""
from __future__ import annotations

import ipaddress
from typing import Any, Mapping
from urllib.parse import urlsplit

from mraster.exchange.eip712 import address_of
from mraster.exchange.rest import AsterRest, V3Auth


def scheme(s: Mapping[str, Any]) -> str:
    """"v3" (API wallet, EIP-712) or "hmac" (V1 API key); auto picks V3 when a signer key is set."""
    if s["ASTER_AUTH_SCHEME"] != "auto":
        return s["ASTER_AUTH_SCHEME"]
    return "v3" if s["ASTER_SIGNER_PRIVATE_KEY"] else "hmac"


# the hosts Aster's documentation names (mainnet, its V3 demo host, testnet)
ASTER_HOSTS = frozenset({"fapi.asterdex.com", "fapi3.asterdex.com", "fapi.asterdex-testnet.com"})
MACHINE_LAYERS = ("environment", ".env")  # set on this machine, not through the dashboard


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_problem(s: Mapping[str, Any]) -> str | None:
    """The exchange keys go only to Aster's own hosts, to this machine, or to a host the user set
    in the environment / .env: a setting changed through the dashboard must never send them to
    someone else's server."""
    base = s["ASTER_EXCHANGE_BASE"]
    host = (urlsplit(base).hostname or "").lower()
    if host in ASTER_HOSTS or _loopback(host):
        return None
    if getattr(s, "sources", {}).get("ASTER_EXCHANGE_BASE") in MACHINE_LAYERS:
        return None
    return (f"ASTER_EXCHANGE_BASE points to {host or base!r}, which is not an Aster host: the API "
            f"keys are sent only to {', '.join(sorted(ASTER_HOSTS))}, to this machine, or to a "
            "host set in the environment or .env")


def problem(s: Mapping[str, Any]) -> str | None:
    """What is missing or inconsistent for signed requests, in one sentence (None when fine)."""
    trouble = host_problem(s)
    if trouble:
        return trouble
    if scheme(s) == "hmac":
        missing = [k for k in ("ASTER_API_KEY", "ASTER_API_SECRET") if not s[k]]
        return f"{' and '.join(missing)} not set (V1 API key)" if missing else None
    missing = [k for k in ("ASTER_USER_ADDRESS", "ASTER_SIGNER_PRIVATE_KEY") if not s[k]]
    if missing:
        return f"{' and '.join(missing)} not set (V3 API wallet)"
    try:
        derived = address_of(s["ASTER_SIGNER_PRIVATE_KEY"])
    except (ValueError, TypeError):
        return "ASTER_SIGNER_PRIVATE_KEY is not a valid private key (64 hex digits, optionally 0x)"
    if s["ASTER_SIGNER_ADDRESS"] and s["ASTER_SIGNER_ADDRESS"].lower() != derived.lower():
        return (f"ASTER_SIGNER_PRIVATE_KEY belongs to API wallet {derived}, not to the configured "
                f"ASTER_SIGNER_ADDRESS {s['ASTER_SIGNER_ADDRESS']}; use the key of that API wallet")
    return None


def make_client(s: Mapping[str, Any], **kw: Any) -> AsterRest:
    """A signed client for the configured scheme (check ``problem`` first)."""
    if scheme(s) == "v3":
        key = s["ASTER_SIGNER_PRIVATE_KEY"]
        auth = V3Auth(user=s["ASTER_USER_ADDRESS"],
                      signer=s["ASTER_SIGNER_ADDRESS"] or address_of(key),
                      private_key=key, chain_id=s["ASTER_CHAIN_ID"])
        return AsterRest(s["ASTER_EXCHANGE_BASE"], v3=auth, rate_share=s["ASTER_RATE_LIMIT_SHARE"], **kw)
    return AsterRest(s["ASTER_EXCHANGE_BASE"], s["ASTER_API_KEY"], s["ASTER_API_SECRET"],
                     recv_window=s["ASTER_RECV_WINDOW_MS"], rate_share=s["ASTER_RATE_LIMIT_SHARE"],
                     **kw)
