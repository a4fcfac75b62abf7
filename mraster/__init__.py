"""MrAster: a self-hosted copilot for Aster perpetual futures."""
__version__ = "0.1.0"
