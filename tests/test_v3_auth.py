"""Aster V3 (API wallet, EIP-712): the reference vector byte for byte, the simulator's checks over
real HTTP, nonces under concurrency, and the bot trading live with V3 credentials."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from eth_utils import keccak

from conftest import V3_KEY, V3_SIGNER, V3_USER, bot_settings
from mraster import settings as st
from mraster.engine.runner import run_async
from mraster.exchange import auth, eip712
from mraster.exchange import errors as E
from mraster.exchange.rest import AsterRest, V3Auth

MSG = ("symbol=ASTERUSDT&type=LIMIT&side=BUY&timeInForce=GTC&quantity=20&price=0.5"
       "&nonce=1748310859508867&user=0x63DD5aCC6b1aa0f563956C0e534DD30B6dcF7C4e"
       "&signer=0x21cF8Ae13Bb72632562c6Fff438652Ba1a151bb0")
OTHER_KEY = "0x" + "11" * 32  # a valid key of some other API wallet


def test_reference_vector_byte_for_byte_with_every_intermediate_hash():
    domain_type = keccak(text="EIP712Domain(string name,string version,uint256 chainId,"
                              "address verifyingContract)")
    assert domain_type.hex() == "8b73c3c69bb8fe3d512ecc4cf759cc79239f7b179b0ffacaa9a75d522b39400f"
    assert keccak(text="Message(string msg)").hex() == \
        "c4cfb57eea370ef2a92403a7e865b2de262d7ca272333665b54ad7e6a602ef68"
    main, test = eip712.signable(MSG, 1666), eip712.signable(MSG, 714)
    assert main.header.hex() == "a95d0a7a6f3f17fcebb0c2336645385ce79cde7523f71ab147fdb7f15e9f37f9"
    assert test.header.hex() == "fad01b07bed5729a04dbb977fd86da612eba71d668660bf12cf10b3d65b74d94"
    assert main.body.hex() == "8a2e8bf68d83a0783bbc0f9be4f6dd0030db52cf4d5d0c3712c9a3d23d4fce8c"
    digest = keccak(b"\x19\x01" + main.header + main.body)
    assert digest.hex() == "214122039b686e20a15baab91d368d354cf8c88067cb8b0e96e9018d8b08a625"
    assert eip712.sign(MSG, V3_KEY, 1666) == (
        "0a56c5923ebf3524475c5f631940ec4c0e41dbd300ad28198d1915d8f3ca49ce"
        "26fd1aeb8b0c3079133595da0de38322ae7e860e0c76d032c4a491d27c1430b01c")
    assert eip712.sign(MSG, V3_KEY, 714) == (
        "f91e000376f360c1661cf0fbc79a816e915dce485c616bd49c5e35c6cbc5ba50"
        "42ccf75a2bffd282676dbf698087a73982bfd1491a993eeedc276f6827c94a8c1c")
    assert eip712.address_of(V3_KEY) == V3_SIGNER
    assert eip712.recover(MSG, "0x" + eip712.sign(MSG, V3_KEY, 1666), 1666) == V3_SIGNER


def v3_client(url: str, key: str = V3_KEY, signer: str = V3_SIGNER, **kw) -> AsterRest:
    return AsterRest(url, v3=V3Auth(user=V3_USER, signer=signer, private_key=key), **kw)


def test_simulator_accepts_v3_and_refuses_wrong_key_signer_stale_and_reused_nonces(sim_factory):
    sim, url, app = sim_factory(n=2)

    async def go():
        async with v3_client(url) as c:
            acct = await c.account()  # /fapi/v3/accountWithJoinMargin
            assert float(acct["totalWalletBalance"]) == 10_000
            assert repr(c).count(V3_KEY[4:12]) == 0  # the key never shows
        with pytest.raises(E.InvalidSignature):  # a key that does not sign as this signer
            async with v3_client(url, key=OTHER_KEY) as c:
                await c.account()
        stranger = eip712.address_of(OTHER_KEY)
        with pytest.raises(E.AuthError) as exc:  # a signer the wallet never approved
            async with v3_client(url, key=OTHER_KEY, signer=stranger) as c:
                await c.account()
        assert exc.value.code == -2015
        async with v3_client(url) as c:  # a clock 30 s behind: refused, resynced, retried
            c.time_offset_ms, c._synced_at = -30_000, 1e18
            await c.account()
            assert c.stats["resyncs"] == 1
    asyncio.run(go())

    # raw requests: a stale nonce, a reused nonce, no user, 0x-prefixed signature
    server_us = int(httpx.get(f"{url}/fapi/v3/time").json()["serverTime"]) * 1000

    def send(nonce: int, with_user: bool = True, prefix: str = "") -> httpx.Response:
        params = {"nonce": str(nonce), **({"user": V3_USER} if with_user else {}), "signer": V3_SIGNER}
        q = urlencode(params)
        return httpx.get(f"{url}/fapi/v3/balance?{q}&signature={prefix}{eip712.sign(q, V3_KEY, 1666)}")
    stale = send(server_us - 20_000_000)
    assert stale.status_code == 400 and stale.json()["code"] == -4225
    assert send(server_us + 1).status_code == 200
    again = send(server_us + 1)
    assert again.json() == {"code": -4225, "msg": "Nonce Expired (duplicate nonce)"}
    assert send(server_us + 2, with_user=False).status_code == 200
    assert send(server_us + 3, prefix="0x").status_code == 200
    assert httpx.get(f"{url}/api/v3/exchangeInfo").json()["symbols"] == []


def test_fifty_concurrent_signed_requests_use_fifty_fresh_nonces(sim_factory):
    sim, url, app = sim_factory(n=2)
    sym = sorted(sim.market.series)[0]  # one symbol's orders: weight 1 (all symbols' weigh 40,
    # and fifty of them waited most of a minute for the client's own weight budget)

    async def go():
        async with v3_client(url) as c:
            return await asyncio.gather(*(c.open_orders(sym) for _ in range(50))), c.stats
    results, stats = asyncio.run(go())
    assert len(results) == 50 and stats["retries"] == 0
    seen = app.state.nonces._seen[V3_USER.lower()]
    assert len(seen) == 50 and len(set(seen)) == 50  # none refused, none reused


def settings_v3(tmp_path: Path, url: str, **extra: str) -> st.Settings:
    wallet = {"ASTER_API_KEY": "", "ASTER_API_SECRET": "", "ASTER_SIGNER_PRIVATE_KEY": V3_KEY,
              "ASTER_USER_ADDRESS": V3_USER, "ASTER_SIGNER_ADDRESS": V3_SIGNER}
    return bot_settings(tmp_path, url, **{**wallet, **extra})


def test_the_bot_trades_live_with_an_api_wallet_and_protects_the_position(sim_factory, tmp_path):
    from mraster.execution import ids

    sim, url, _ = sim_factory(n=12, seed=11)
    s = settings_v3(tmp_path, url)
    assert auth.scheme(s) == "v3" and auth.problem(s) is None
    assert asyncio.run(run_async(s)) == 0
    state = json.loads((tmp_path / "aster_state.json").read_text())
    assert state["positions"]
    acct = sim.accounts[V3_USER.lower()]  # the wallet's account, not the signer's
    brackets = {}
    for o in acct.open_orders():
        brackets.setdefault(o.symbol, []).append(ids.bracket_kind(o.to_api()))
    for p in state["positions"].values():
        assert sorted(brackets[p["symbol"]]) == ["stop", "tp"]


def test_a_key_that_is_not_the_configured_signer_is_refused_at_start(tmp_path, sim_factory):
    _, url, _ = sim_factory(n=2)
    s = settings_v3(tmp_path, url, ASTER_SIGNER_PRIVATE_KEY=OTHER_KEY)
    assert "belongs to API wallet" in auth.problem(s)
    assert asyncio.run(run_async(s)) == 2
    s = settings_v3(tmp_path, url, ASTER_SIGNER_PRIVATE_KEY="0x1234")
    assert "not a valid private key" in auth.problem(s)
    assert "0x1234" not in auth.problem(s)
    s = settings_v3(tmp_path, url, ASTER_USER_ADDRESS="")
    assert "ASTER_USER_ADDRESS" in auth.problem(s)


def test_an_exchange_without_account_with_join_margin_falls_back_to_account(sim_factory):
    """An exchange from before the 2026-03-28 rename: the simulator app behind a thin ASGI layer
    that answers 404 for the new name, as such an exchange would."""
    from mraster.sim.serve import ThreadedServer

    _, _, app = sim_factory(n=2)
    seen = []

    async def older_exchange(scope, receive, send):
        if scope["type"] == "http":
            seen.append(scope["path"])
            if scope["path"].endswith("/accountWithJoinMargin"):
                body = b'{"code":-1020,"msg":"Unknown endpoint."}'
                await send({"type": "http.response.start", "status": 404,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    async def go(url):
        async with v3_client(url) as c:
            return await c.account()
    with ThreadedServer(older_exchange) as srv:
        acct = asyncio.run(go(srv.url))
    assert float(acct["totalWalletBalance"]) == 10_000
    assert [p for p in seen if "account" in p] == ["/fapi/v3/accountWithJoinMargin", "/fapi/v3/account"]
