"""Progress of a command-line task on the terminal (``python -m mraster.backtest``,
``python -m mraster.optimize``)."""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator, TextIO


class ProgressLine(logging.Handler):
    """A long task's progress on one line of stderr (the backtest's, the optimiser's), and the
    engine's notices (a breaker that trips) each on a line of its own above it: a notice printed
    after the progress text continued that line (``open  2circuit breaker …``). Where stderr is
    not a terminal (a log file, a pipe) a carriage return does not overwrite, so progress goes
    out as whole lines, every tenth."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.WARNING)
        self.stream, self.text, self.tty = stream, "", stream.isatty()
        self._tenth = -1

    def show(self, text: str, done: float) -> None:
        """``text`` is the line; ``done`` the share of the work (0…1)."""
        self.text = text
        if self.tty:
            print(f"\r{self.text}", end="", file=self.stream, flush=True)
        elif int(done * 10) > self._tenth:
            self._tenth = int(done * 10)
            print(self.text, file=self.stream, flush=True)

    def emit(self, record: logging.LogRecord) -> None:
        wipe = f"\r{' ' * len(self.text)}\r" if self.tty and self.text else ""
        print(f"{wipe}{record.getMessage()}", file=self.stream)
        if wipe:
            print(self.text, end="", file=self.stream, flush=True)

    def end(self) -> None:
        if self.tty and self.text:
            print(file=self.stream, flush=True)
        self.text = ""

    @contextlib.contextmanager
    def attached(self) -> Iterator[ProgressLine]:
        """The engine's notices come here instead of Python's bare last-resort output."""
        log = logging.getLogger("mraster")
        log.addHandler(self)
        propagate, log.propagate = log.propagate, False
        try:
            yield self
        finally:
            self.end()
            log.removeHandler(self)
            log.propagate = propagate
