"""Start ``python -m mraster.sim`` as a separate process for a benchmark (so its memory and CPU
are not counted as the client's)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY, SECRET = "bench-key-000000000000", "bench-secret-0000000000"


def start_simulator(symbols: int, latency_ms: float) -> tuple[subprocess.Popen, str]:
    from mraster.sim.serve import free_port

    port = free_port()
    env = {**os.environ, "ASTER_API_KEY": KEY, "ASTER_API_SECRET": SECRET}
    proc = subprocess.Popen([sys.executable, "-m", "mraster.sim", "--port", str(port),
                             "--symbols", str(symbols), "--latency-ms", str(latency_ms)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # "simulator ready at http://..."
    if "ready" not in line:
        proc.kill()
        raise SystemExit(f"the simulator did not start: {line!r}")
    return proc, f"http://127.0.0.1:{port}"
