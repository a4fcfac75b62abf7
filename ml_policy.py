"""BanditPolicy (LinUCB) and AlphaModel: TAKE/SKIP and size S/M/L decisions."""
from __future__ import annotations

from mraster.policy import AlphaModel, BanditPolicy, FEATURES, build_features  # noqa: F401
