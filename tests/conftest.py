from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"  # real Binance candles (see tests/data/SOURCES.md)
sys.path.insert(0, str(ROOT))

API_KEY = "test-key-0123456789abcdef"
API_SECRET = "test-secret-fedcba9876543210"
# V3: the demo key of Aster's docs (aster_api.md §1.4) signing for its demo wallet
V3_KEY = "0x4fd0a42218f3eae43a6ce26d22544e986139a01e5b34a62db53757ffca81bae1"
V3_SIGNER = "0x21cF8Ae13Bb72632562c6Fff438652Ba1a151bb0"
V3_USER = "0x63DD5aCC6b1aa0f563956C0e534DD30B6dcF7C4e"


def position(**fields):
    """A ``Position`` from the fields a test cares about; the rest make a plain open XRPUSDT
    long (the stop defaults to the initial stop)."""
    from mraster.domain import Position

    d = {"symbol": "XRPUSDT", "side": "BUY", "status": "open", "opened_at": 0, "qty": 1.0,
         "entry": 100.0, "initial_stop": 99.0, "take_profit": 101.0, **fields}
    d.setdefault("stop", d["initial_stop"])
    return Position.from_dict(d, "t")


def bot_settings(tmp_path: Path, url: str, **extra):
    """Settings for one bot run against the simulator at ``url``: live mode with the test key,
    files in ``tmp_path``, filters opened up so a seeded market trades; ``extra`` overrides."""
    from mraster import settings as st

    env = {"ASTER_PAPER": "false", "ASTER_EXCHANGE_BASE": url, "ASTER_API_KEY": API_KEY,
           "ASTER_API_SECRET": API_SECRET, "ASTER_RUN_ONCE": "true", "ASTER_MIN_QUOTE_VOL_USDT": "0",
           "ASTER_STATE_FILE": str(tmp_path / "aster_state.json"),
           "ASTER_BRACKETS_QUEUE_FILE": str(tmp_path / "brackets_queue.json"),
           "ASTER_EVENTS_FILE": str(tmp_path / "events.jsonl"), "ASTER_MIN_EDGE_R": "0",
           "ASTER_NON_ARB_FILTER_ENABLED": "false", "ASTER_FUNDING_FILTER_ENABLED": "false",
           "ASTER_SPREAD_BPS_MAX": "0.01", "ASTER_WICKINESS_MAX": "1",
           **{k: str(v) for k, v in extra.items()}}
    return st.load(environ=env, env_file=tmp_path / "none.env")


def bare_positions(sim, url: str, tmp_path: Path):
    """One bot scan opens protected positions, then every bracket is cancelled on the exchange
    (by hand, or a crash before they were placed): (settings, symbols held)."""
    import asyncio

    from mraster.engine.runner import run_async

    s = bot_settings(tmp_path, url)
    assert asyncio.run(run_async(s)) == 0
    acct = sim.accounts[API_KEY]
    held = {sym for sym, p in acct.positions.items() if p.amt}
    assert held
    for o in acct.open_orders():
        o.status = "CANCELED"
    return s, held


@pytest.fixture(autouse=True, scope="session")
def _candle_cache(tmp_path_factory):
    """Parsed candle files are cached in the session's own folder (inherited by the processes
    tests start), never in the user's ~/.cache."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def sim_factory():
    """Start simulators on 127.0.0.1 (real HTTP); all are stopped after the test."""
    from mraster.sim.exchange import SimExchange
    from mraster.sim.market import SyntheticMarket
    from mraster.sim.serve import ThreadedServer
    from mraster.sim.server import Faults, create_sim_app

    servers = []

    def make(market=None, faults=None, balance=10_000.0, n=5, seed=3, chain_id=1666, wrap=None):
        """``wrap(app)``: an ASGI app in front of the simulator's (to watch what arrives)."""
        market = market or SyntheticMarket(n, seed=seed, manual=True, history=600)
        sim = SimExchange(market, balance=balance)
        app = create_sim_app(sim, {API_KEY: API_SECRET}, faults or Faults(),
                             agents={V3_USER: {V3_SIGNER}}, chain_id=chain_id)
        srv = ThreadedServer(wrap(app) if wrap else app).start()
        servers.append(srv)
        return sim, srv.url, app

    yield make
    for s in servers:
        s.stop()
