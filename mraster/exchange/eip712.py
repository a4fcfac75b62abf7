"""Aster V3 request signing: an EIP-712 typed-data signature over the exact parameter string.

Domain ``AsterSignTransaction`` / version ``1`` / chainId (1666 mainnet, 714 testnet) / zero
verifying contract; one message field ``msg`` holding the urlencoded parameters in the order they
are sent. The cryptography is eth-account's (keccak, secp256k1, recovery), never our own.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any

_LIMIT = sys.getrecursionlimit()
from eth_account import Account  # noqa: E402
from eth_account.messages import SignableMessage, encode_typed_data  # noqa: E402

# py_ecc (imported by eth-account) raises the interpreter's recursion limit to 100,000; deep
# recursion then overflows the C stack instead of raising RecursionError (a 200 KB body of
# nested brackets crashed the dashboard). Signing does not need it: put the limit back.
sys.setrecursionlimit(_LIMIT)

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


def typed_data(msg: str, chain_id: int) -> dict[str, Any]:
    return {
        "types": {"EIP712Domain": [{"name": "name", "type": "string"},
                                   {"name": "version", "type": "string"},
                                   {"name": "chainId", "type": "uint256"},
                                   {"name": "verifyingContract", "type": "address"}],
                  "Message": [{"name": "msg", "type": "string"}]},
        "primaryType": "Message",
        "domain": {"name": "AsterSignTransaction", "version": "1", "chainId": int(chain_id),
                   "verifyingContract": ZERO_ADDRESS},
        "message": {"msg": msg},
    }


def signable(msg: str, chain_id: int) -> SignableMessage:
    """``header`` is the domain separator, ``body`` the struct hash of the message."""
    return encode_typed_data(full_message=typed_data(msg, chain_id))


def sign(msg: str, private_key: str, chain_id: int) -> str:
    """r‖s‖v as hex without ``0x`` (the format of Aster's own examples)."""
    sig = Account.sign_message(signable(msg, chain_id), private_key).signature.hex()
    return sig[2:] if sig.startswith("0x") else sig


def recover(msg: str, signature: str, chain_id: int) -> str:
    """The address that signed ``msg`` (checksummed); accepts the signature with or without 0x."""
    sig = signature if signature.startswith("0x") else "0x" + signature
    return Account.recover_message(signable(msg, chain_id), signature=sig)


BUILDER_APPROVAL = [{"name": n, "type": t} for n, t in (
    ("Builder", "string"), ("MaxFeeRate", "string"), ("BuilderName", "string"),
    ("AsterChain", "string"), ("User", "string"), ("Nonce", "uint256"))]


def recover_builder_approval(params: dict[str, str], signature: str, chain_id: int) -> str:
    """Who signed an ``approveBuilder`` request: the struct ``ApproveBuilder`` under the same
    domain as every V3 request (the simulator checks it; MrAster itself never approves one)."""
    data = {"types": {"EIP712Domain": typed_data("", chain_id)["types"]["EIP712Domain"],
                      "ApproveBuilder": BUILDER_APPROVAL},
            "primaryType": "ApproveBuilder",
            "domain": typed_data("", chain_id)["domain"],
            "message": {"Builder": params["builder"], "MaxFeeRate": params["maxFeeRate"],
                        "BuilderName": params["builderName"], "AsterChain": params["asterChain"],
                        "User": params["user"], "Nonce": int(params["nonce"])}}
    sig = signature if signature.startswith("0x") else "0x" + signature
    return Account.recover_message(encode_typed_data(full_message=data), signature=sig)


def address_of(private_key: str) -> str:
    return Account.from_key(private_key).address


class NonceSource:
    """Microsecond nonces from the exchange's clock, strictly increasing for one signer even when
    many requests are signed at once (a repeated or stale nonce is refused by the exchange)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self, offset_ms: int = 0) -> int:
        with self._lock:
            now = int(time.time() * 1_000_000) + offset_ms * 1000
            self._last = max(self._last + 1, now)
            return self._last
