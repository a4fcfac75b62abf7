"""One command for everything: ``mraster <command> [options]`` (installed by pyproject.toml; the
same as ``python -m mraster.cli``). Each command is the module the README names, unchanged."""
from __future__ import annotations

import sys
from importlib import import_module

COMMANDS = {
    "dashboard": ("mraster.dashboard.app", "the dashboard (http://127.0.0.1:8000)"),
    "bot": ("mraster.bot", "the headless bot (ASTER_RUN_ONCE=true: one scan)"),
    "backtest": ("mraster.backtest.__main__", "the live engine over candle CSVs"),
    "optimize": ("mraster.optimize.__main__", "walk-forward search for settings that hold up"),
    "data": ("mraster.data", "download candles, mark prices and funding from Aster"),
    "sim": ("mraster.sim.__main__", "the built-in exchange simulator"),
    "drill": ("mraster.drill", "the fire drill: your settings through a bad day"),
    "guard": ("mraster.execution.brackets", "repair brackets once or in a loop"),
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or args[0] not in COMMANDS:
        print("usage: mraster <command> [options]\n\ncommands:")
        for name, (_, what) in COMMANDS.items():
            print(f"  {name:<10} {what}")
        return 0 if not args or args[0] in ("-h", "--help") else 2
    module = import_module(COMMANDS[args[0]][0])
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
