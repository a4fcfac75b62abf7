"""The backtest keeps the memory its screen frees for the next block's temporaries while it
runs (handing it back and faulting it in again was a tenth of a year's run), and hands it back
when the last replay of the process ends. Linux with glibc, as the project runs in CI; the
resident size is read from /proc."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from mraster.sim import heap

PAGE = os.sysconf("SC_PAGE_SIZE")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or heap._MALLOPT is None,
                                reason="glibc's mallopt on Linux only")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def churn(mb: int = 64) -> None:
    """Temporaries of 1 MB (under the size mapped on its own), all alive at once, then freed."""
    arrays = [np.ones(2**17) for _ in range(mb)]
    del arrays


def test_freed_memory_is_kept_while_replays_run_and_handed_back_after_the_last():
    heap.release_free_memory()
    base = rss_mb()
    with heap.reuse_freed_memory():
        with heap.reuse_freed_memory():  # a second replay in another thread of the dashboard
            churn()
            assert rss_mb() > base + 48  # kept for the next block
        assert rss_mb() > base + 48  # one replay still runs
        churn()  # reused: the process grows no further
        assert rss_mb() < base + 64 + 16
    assert rss_mb() < base + 16  # handed back once the last one ended
