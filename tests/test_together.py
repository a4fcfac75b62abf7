"""Requests sent together (``mraster.exchange.together``): in flight at once over the network,
awaited in turn when the simulator answers in-process — with the same answers and the same
failure rules either way: a refused request never keeps the others from being sent."""
from __future__ import annotations

import asyncio

import pytest

from mraster.exchange import errors as E
from mraster.exchange.together import together
from mraster.execution.paper import LocalExchange
from mraster.sim.exchange import SimExchange
from mraster.sim.market import SyntheticMarket


def local() -> tuple[LocalExchange, str]:
    sim = SimExchange(SyntheticMarket(2, seed=5, manual=True, history=50), balance=10_000.0)
    return LocalExchange(sim), sorted(sim.rules)[0]


def stop(sym: str, cid: str, price: str) -> dict:
    return {"symbol": sym, "side": "SELL", "type": "STOP_MARKET", "stopPrice": price,
            "closePosition": "true", "newClientOrderId": cid}


def below(ex: LocalExchange, sym: str) -> str:
    """A stop price a tenth below the market, on the symbol's tick."""
    return str(ex.sim.rules[sym].round_price(ex.sim.market.quote(sym)["last"] * 0.9, "down"))


def run(coro):
    """With a task factory that counts: in-process, no event-loop task is made per request."""
    made = []

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_task_factory(lambda lp, c, **kw: made.append(1) or asyncio.Task(c, loop=lp, **kw))
        got = await coro
        return got, len(made)
    return asyncio.run(main())


def test_in_process_requests_answer_as_gathered_ones_without_a_task_each():
    ex, sym = local()
    (acct, risk, orders), tasks = run(together(ex, ex.account(), ex.position_risk(), ex.open_orders()))
    assert tasks == 0 and orders == [] and float(acct["totalMarginBalance"]) == 10_000.0
    assert {r["symbol"] for r in risk} == set(ex.sim.rules)
    placed, _ = run(together(ex, ex.new_order(**stop(sym, "a1", below(ex, sym))),
                             ex.open_orders(sym)))
    assert [o["clientOrderId"] for o in placed[1]] == ["a1"]  # sent in the order given


def test_a_refused_request_never_keeps_the_others_from_being_sent():
    """A stop and a take-profit go out together: the stop's refusal is raised, and the other
    was placed all the same (``asyncio.gather`` does the same over the network)."""
    ex, sym = local()
    refused = ex.new_order(**stop(sym, "bad", "-1"))
    good = ex.new_order(**stop(sym, "good", below(ex, sym)))
    with pytest.raises(E.ExchangeError):
        run(together(ex, refused, good))
    assert [o["clientOrderId"] for o in run(ex.open_orders(sym))[0]] == ["good"]
    (err, ok), _ = run(together(ex, ex.new_order(**stop(sym, "bad2", "-1")), ex.open_orders(sym),
                                return_exceptions=True))
    assert isinstance(err, E.ExchangeError) and [o["clientOrderId"] for o in ok] == ["good"]


def test_over_the_network_requests_are_in_flight_together():
    class Network:  # stands for AsterRest: answers arrive later, after the others were sent
        answers_at_once = False
        sent: list[str] = []

        async def ask(self, name: str, seen: list[str]) -> str:
            self.sent.append(name)
            await asyncio.sleep(0)
            seen.append(list(self.sent))
            return name

    net, seen = Network(), []
    got, tasks = run(together(net, net.ask("a", seen), net.ask("b", seen)))
    assert got == ["a", "b"] and tasks >= 2 and seen[0] == ["a", "b"]  # b left before a's answer
