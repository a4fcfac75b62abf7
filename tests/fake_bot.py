"""Stand-in for aster_multi_bot.py in the supervisor's own tests, because the real bot cannot be
made to crash or to ignore SIGTERM on purpose. ``crash``: exit 1 at once with an error line;
``ignore_term``: ignore SIGTERM and run until killed."""
from __future__ import annotations

import signal
import sys
import time

mode = sys.argv[1]
print('{"event": "start", "ts": 0}', flush=True)
if mode == "crash":
    print("2026-01-01 00:00:00 ERROR   mraster.bot: boom: simulated crash", file=sys.stderr, flush=True)
    sys.exit(1)
if mode == "ignore_term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print('{"event": "ready", "ts": 0}', flush=True)
    while True:
        time.sleep(1)
