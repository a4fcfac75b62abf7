"""``mraster <command>``: one entry point for the commands the README names."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mraster.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_the_entry_point_lists_and_runs_each_command():
    p = run()
    assert p.returncode == 0 and all(c in p.stdout for c in ("dashboard", "bot", "backtest", "data",
                                                              "sim", "drill", "guard"))
    assert run("nope").returncode == 2
    p = run("data", "download", "--help")
    assert p.returncode == 0 and "--symbols" in p.stdout
    assert 'mraster = "mraster.cli:main"' in (ROOT / "pyproject.toml").read_text()  # the script
