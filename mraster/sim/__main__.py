"""``python -m mraster.sim``: the built-in Aster futures exchange on 127.0.0.1."""
from __future__ import annotations

import argparse
import os
import sys

from mraster.sim.exchange import SimExchange
from mraster.sim.market import DataError, SyntheticMarket, replay_market
from mraster.sim.server import Faults, create_sim_app


def build(args: argparse.Namespace) -> SimExchange:
    if args.data:
        market = replay_market(args.data, args.symbol_list, speed=args.speed)
    else:
        market = SyntheticMarket(args.symbols, seed=args.seed, speed=args.speed)
    return SimExchange(market, balance=args.balance)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mraster.sim", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--symbols", type=int, default=20, help="number of synthetic symbols")
    p.add_argument("--symbol-list", type=lambda s: [x.strip().upper() for x in s.split(",") if x],
                   default=None, help="replay only these symbols (with --data)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--data", help="folder of candle CSVs to replay instead of synthetic data")
    p.add_argument("--speed", type=float, default=1.0, help="clock speed (1 = real time)")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--balance", type=float, default=10_000.0, help="USDT per new account")
    args = p.parse_args(argv)
    if not 0 <= args.error_rate <= 1:
        p.error("--error-rate must be in [0, 1]")
    try:
        sim = build(args)
    except DataError as exc:
        print(f"mraster.sim: {exc}", file=sys.stderr)
        return 2
    keys = {}
    if os.environ.get("ASTER_API_KEY") and os.environ.get("ASTER_API_SECRET"):
        keys[os.environ["ASTER_API_KEY"]] = os.environ["ASTER_API_SECRET"]
    agents = {}  # V3: the wallet in ASTER_USER_ADDRESS approved the API wallet ASTER_SIGNER_ADDRESS
    if os.environ.get("ASTER_USER_ADDRESS") and os.environ.get("ASTER_SIGNER_ADDRESS"):
        agents[os.environ["ASTER_USER_ADDRESS"]] = {os.environ["ASTER_SIGNER_ADDRESS"]}
    app = create_sim_app(sim, keys, Faults(latency_ms=args.latency_ms, jitter_ms=args.latency_ms / 5,
                                           error_rate=args.error_rate, seed=args.seed),
                         agents=agents, chain_id=int(os.environ.get("ASTER_CHAIN_ID", "1666")))
    import uvicorn

    from mraster.sim.serve import KEEP_ALIVE_S

    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", lifespan="off",
                            timeout_keep_alive=KEEP_ALIVE_S)
    server = uvicorn.Server(config)

    async def serve() -> None:
        import asyncio

        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                return
            await asyncio.sleep(0.02)
        print(f"simulator ready at http://{args.host}:{args.port}", flush=True)
        await task

    import asyncio

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
