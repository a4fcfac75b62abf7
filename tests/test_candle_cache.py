"""The parsed-candle cache: a backtest run again on the same files skips the parse, and never
replays numbers the files no longer hold."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mraster.sim import candle_cache, candle_prefetch, market
from mraster.sim.market import read_candles_csv

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "mraster" / "candles"


def _copy(tmp_path: Path, name: str = "ETH_BTC-5m.csv") -> Path:
    dst = tmp_path / "data" / name
    dst.parent.mkdir(exist_ok=True)
    shutil.copy(DATA / name, dst)
    return dst


def _same(a, b) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y)
                                    for x, y in zip(a, b))


def _no_parse(monkeypatch) -> None:
    def refuse(*a, **k):
        raise AssertionError("the file was parsed again")
    monkeypatch.setattr(market, "_parse_clean", refuse)
    monkeypatch.setattr(market, "_parse_lines", refuse)


def test_a_file_read_again_comes_from_the_cache_bit_for_bit(tmp_path, cache, monkeypatch):
    f = _copy(tmp_path)
    first = read_candles_csv(f)
    assert len(list(cache.glob("*.npz"))) == 1
    _no_parse(monkeypatch)
    again = read_candles_csv(f)
    assert _same(first, again) and again[0].dtype == np.int64


def test_a_file_changed_since_is_parsed_again(tmp_path, cache, monkeypatch):
    f = _copy(tmp_path)
    before = read_candles_csv(f)
    lines = f.read_text().splitlines()
    t, o, h, l, c, v = (float(x) for x in lines[-1].split(","))
    with f.open("a") as fh:  # what ``mraster.data download`` does: one more closed candle
        fh.write(f"{int(t) + 300_000},{c},{c * 1.01},{c * 0.99},{c},12.5\n")
    after = read_candles_csv(f)
    assert len(after[0]) == len(before[0]) + 1 and after[0][-1] == int(t) + 300_000
    assert len(list(cache.glob("*.npz"))) == 1  # the entry was replaced, not added to
    _no_parse(monkeypatch)
    assert _same(read_candles_csv(f), after)


def test_a_file_replaced_with_the_same_size_and_modification_time_is_parsed_again(tmp_path,
                                                                                  cache):
    """Another day's candles copied over the file with ``cp -p`` or ``rsync -t`` can keep its size
    and modification time; the backtest replayed the old numbers from the cache."""
    f = _copy(tmp_path)
    before = read_candles_csv(f)
    lines = f.read_text().splitlines()
    t, o, h, l, c, v = lines[-1].split(",")
    other = "1" if c[-1] != "1" else "2"  # the last close's last digit: same length, new value
    lines[-1] = ",".join([t, o, h, l, c[:-1] + other, v])
    stat = f.stat()
    f.write_text("\n".join(lines) + "\n")
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert f.stat().st_size == stat.st_size and f.stat().st_mtime_ns == stat.st_mtime_ns
    after = read_candles_csv(f)
    assert after[4][-1] == float(c[:-1] + other) != before[4][-1]
    assert _same(after[:4], before[:4])


def test_a_damaged_entry_is_a_miss_and_is_rewritten(tmp_path, cache):
    f = _copy(tmp_path)
    first = read_candles_csv(f)
    (entry,) = cache.glob("*.npz")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # a disk that filled up
    assert _same(read_candles_csv(f), first)
    assert candle_cache.load(candle_cache.entry(f)) is not None


def test_a_messy_file_is_cached_after_its_line_by_line_read(tmp_path, cache, monkeypatch):
    f = tmp_path / "X_BTC-5m.csv"  # an empty line stops the whole-file parse
    f.write_text("open_time_ms,open,high,low,close,volume\n0,1,2,0.5,1.5,10\n\n"
                 "300000,1.5,2,1,1.2,11\n")
    first = read_candles_csv(f)
    _no_parse(monkeypatch)
    assert _same(read_candles_csv(f), first) and list(first[0]) == [0, 300_000]


def test_a_bad_file_is_refused_every_time_and_nothing_is_cached(tmp_path, cache):
    f = tmp_path / "X_BTC-5m.csv"
    f.write_text("open_time_ms,open,high,low,close,volume\n0,1,2,0.5,1.5,10\n0,1,2,0.5,1.5,10\n")
    for _ in range(2):
        with pytest.raises(market.DataError, match=r"X_BTC-5m.csv:3: time 0 is not after"):
            read_candles_csv(f)
    assert not cache.exists() or not list(cache.iterdir())


def test_the_cache_can_be_turned_off(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("MRASTER_CANDLE_CACHE", "off")
    f = _copy(tmp_path)
    assert _same(read_candles_csv(f), read_candles_csv(f))
    assert not cache.exists()


def test_an_unwritable_cache_folder_only_costs_time(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # the cache's parent is a file: the folder cannot be made
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    f = _copy(tmp_path)
    assert _same(read_candles_csv(f), read_candles_csv(f))
    assert os.path.isfile(blocker)


# -- a first run over large files: a helper process parses the last of them into the cache ----
def _seven(tmp_path: Path) -> list[Path]:
    return [_copy(tmp_path, f.name) for f in sorted(DATA.glob("*-5m.csv"))]


def _alone(files: list[Path], monkeypatch) -> list[tuple]:
    """Each file parsed by this process alone, the cache off."""
    monkeypatch.setenv("MRASTER_CANDLE_CACHE", "off")
    got = [read_candles_csv(f) for f in files]
    monkeypatch.delenv("MRASTER_CANDLE_CACHE")
    return got


def _parsed_here(monkeypatch) -> list[str]:
    """The files this process parses (the helper's parse runs in its own process)."""
    seen: list[str] = []
    parse = market._parse_clean

    def watched(path):
        seen.append(Path(path).name)
        return parse(path)
    monkeypatch.setattr(market, "_parse_clean", watched)
    return seen


@pytest.fixture
def small_is_large(monkeypatch):
    """These files are small: count them as enough to share (the threshold is for real years),
    on two cores whatever the machine running the tests has."""
    monkeypatch.setattr(candle_prefetch, "cores", lambda: 2)
    monkeypatch.setattr(candle_prefetch, "MIN_BYTES", 0)
    monkeypatch.setattr(candle_prefetch, "START_BYTES", 0)


def test_a_first_run_over_large_files_parses_half_of_them_in_a_helper_process(
        tmp_path, cache, monkeypatch, small_is_large):
    files = _seven(tmp_path)
    alone = _alone(files, monkeypatch)
    here = _parsed_here(monkeypatch)
    m = market.replay_market(tmp_path / "data")
    mine = candle_prefetch.helpers_share([f.stat().st_size for f in files])
    assert 0 < mine < len(files)
    assert here == [f.name for f in files[:mine]]  # the helper parsed the others
    assert len(list(cache.glob("*.npz"))) == len(files) and not list(cache.glob(".part-*"))
    for f, got in zip(files, alone):
        s = m.series[market.symbol_from_filename(f.name)[0]]
        assert _same(got, (s.t, s.o, s.h, s.l, s.c, s.v)), f.name


def test_a_bad_file_the_helper_took_is_named_with_its_line(tmp_path, cache, small_is_large):
    files = _seven(tmp_path)
    lines = files[-1].read_text().splitlines()
    lines[7] = lines[7].replace(",", ",x", 1)
    files[-1].write_text("\n".join(lines) + "\n")
    with pytest.raises(market.DataError, match=rf"{files[-1].name}:8: not a number"):
        market.replay_market(tmp_path / "data")


def test_without_a_helper_this_process_parses_everything(tmp_path, cache, monkeypatch,
                                                         small_is_large):
    """A helper that cannot start, or stops half-way: every file is still read, and a helper
    stopped at work leaves no half-written entry behind."""
    files = _seven(tmp_path)
    alone = _alone(files, monkeypatch)
    with candle_prefetch.ParsingAhead(files) as ahead:
        ahead.proc.terminate()
        for f, want in zip(files, alone):
            ahead.wait(f)
            assert _same(read_candles_csv(f), want), f.name
    assert sum(ahead.done.values()) < len(ahead.theirs) and not list(cache.glob(".part-*"))
    shutil.rmtree(cache)
    here = _parsed_here(monkeypatch)
    monkeypatch.setattr("sys.executable", str(tmp_path / "no-python-here"))
    market.replay_market(tmp_path / "data")
    assert here == [f.name for f in files]


def test_a_single_file_starts_no_helper(tmp_path, cache, small_is_large):
    """Files are shared whole: with one file to parse there is nothing to give a helper."""
    with candle_prefetch.ParsingAhead([_copy(tmp_path)]) as ahead:
        assert ahead.proc is None and not ahead.theirs
