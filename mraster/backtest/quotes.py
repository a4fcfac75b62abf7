"""The quotes of a replay's steps, block by block: what a client reads from the simulator's
24 h ticker, book and premium rows at each step (``SimExchange.parsed_quotes``), worked out once
for a block of steps and read by both the bulk screen (a symbol's whole block) and the engine's
steps (every symbol at one step, ``at``), which then make and parse no rows.

The numbers are those of the rows: ``parsed_quotes`` is the rows' decimal formatting done on
arrays, and the 24 h change is the ticker's ``priceChangePercent`` (``ReplayData.day_changes``);
a test compares them with the rows at every step.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from mraster.backtest.data import ReplayData
from mraster.engine.market_data import Quotes
from mraster.sim.exchange import BOOK_QTY, SimExchange
from mraster.strategy.filters import Snapshot

FIELDS = ("bid", "ask", "quote_volume", "mark", "index", "funding")  # and "change" (AI mode)


class ReplayQuotes:
    """Per block of ``block`` steps: each symbol's bid, ask, 24 h quote volume, mark, index and
    funding rate as a client reads them, and (``changes``, AI mode: the playbook reads it) the
    24 h change in %, as one array (field × symbol × step). Blocks before the walk's position
    are dropped (``forget_before``): a year of 50 symbols keeps one or two, 10 MB each."""

    def __init__(self, data: ReplayData, sim: SimExchange, symbols: list[str], times: np.ndarray,
                 block: int, changes: bool = False) -> None:
        self.data, self.sim, self.symbols, self.times = data, sim, symbols, times
        self.size, self.changes = block, changes
        self.fields = FIELDS + ("change",) * changes
        self.col = {sym: k for k, sym in enumerate(symbols)}
        self._blocks: dict[int, np.ndarray] = {}

    def block(self, b: int) -> np.ndarray:
        """Block ``b``'s quotes, worked out when first asked for."""
        got = self._blocks.get(b)
        if got is None:
            times = self.times[b * self.size:(b + 1) * self.size]
            got = self._blocks[b] = np.empty((len(self.fields), len(self.symbols), len(times)))
            for col, sym in enumerate(self.symbols):
                q = self.sim.parsed_quotes(sym, times)
                if self.changes:
                    q["change"] = self.data.day_changes(sym, times, ("change",))["change"]
                for f, name in enumerate(self.fields):
                    got[f, col] = q[name]
        return got

    def field(self, b: int, name: str) -> np.ndarray:
        """One field of block ``b``, symbol × step (AI mode's walk reads the 24 h changes)."""
        return self.block(b)[self.fields.index(name)]

    def of_symbol(self, b: int, col: int) -> dict[str, np.ndarray]:
        """The quotes of the walk's ``col``-th symbol over block ``b``, by field."""
        arr = self.block(b)
        return {name: arr[f, col] for f, name in enumerate(self.fields)}

    def forget_before(self, step: int) -> None:
        """Steps before ``step`` are never asked for again."""
        for b in [b for b in self._blocks if (b + 1) * self.size <= step]:
            del self._blocks[b]

    def at(self, step: int) -> Quotes:
        """Every symbol's quotes at ``step``, as the cycle reads them from the rows."""
        # one conversion for the step: field → symbol → a Python float
        q = dict(zip(self.fields, self.block(step // self.size)[:, :, step % self.size].tolist()))
        col = self.col  # (a symbol the walk does not know is a KeyError, not a silent 0)

        def snap(sym: str) -> Snapshot:
            c = col[sym]
            return Snapshot(bid=q["bid"][c], ask=q["ask"][c], quote_volume=q["quote_volume"][c],
                            mark=q["mark"][c], index=q["index"][c], funding=q["funding"][c],
                            bid_qty=BOOK_QTY, ask_qty=BOOK_QTY)

        def value(field: str) -> Callable[[str], float]:
            return lambda sym: q[field][col[sym]]

        return Quotes(int(self.times[step]), value("quote_volume"), snap, value("change"))
