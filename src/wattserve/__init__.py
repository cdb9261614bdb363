"""wattserve: serve small language models at the lowest energy per answer, with measurements.

The shared vocabulary (``wattserve.types``) and the user-facing errors (``wattserve.errors``)
are re-exported here and load on first use, so ``import wattserve`` stays cheap::

    from wattserve import Completion, ModelFit, Request

Each stage has its own package: ``bench``, ``fit``, ``plan``, ``route``, ``cache``, ``serve``,
``sim``, ``sweep``, ``report``, ``energy``, ``engines`` (docs/architecture.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattserve._lazy import lazy_exports

if TYPE_CHECKING:
    from wattserve.errors import ConfigError, EngineUnavailable, WattserveError
    from wattserve.types import (
        CacheEntry,
        Chunk,
        Completion,
        EnergyReading,
        Measurement,
        Message,
        ModelFit,
        Request,
        RouteDecision,
        RunRecord,
        RunSummary,
        Schedule,
        Usage,
    )

__version__ = "0.1.0"

__all__ = [
    "CacheEntry",
    "Chunk",
    "Completion",
    "ConfigError",
    "EnergyReading",
    "EngineUnavailable",
    "Measurement",
    "Message",
    "ModelFit",
    "Request",
    "RouteDecision",
    "RunRecord",
    "RunSummary",
    "Schedule",
    "Usage",
    "WattserveError",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "wattserve.errors": ("ConfigError", "EngineUnavailable", "WattserveError"),
        "wattserve.types": (
            "CacheEntry",
            "Chunk",
            "Completion",
            "EnergyReading",
            "Measurement",
            "Message",
            "ModelFit",
            "Request",
            "RouteDecision",
            "RunRecord",
            "RunSummary",
            "Schedule",
            "Usage",
        ),
    },
)
