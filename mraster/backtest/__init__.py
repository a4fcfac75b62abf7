"""Backtest: the live engine (``mraster.engine.cycle.Engine``) over replayed candles."""
