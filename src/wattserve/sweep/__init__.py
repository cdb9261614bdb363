"""Replica sweeps: replicas per device x concurrency (x request rate) x engine backend, each
point a benchmark through the bench runner; Pareto frontier and a recommendation at the end.

Public API (names load lazily: ``import wattserve.sweep`` imports no pydantic or engine)::

    from wattserve.sweep import SweepConfig, run_sweep
    result = run_sweep(SweepConfig(backends=["mock"], replicas=[1, 2], result_dir="runs/sweep"))
    result.rows[result.recommendation.index]           # the recommended point's summary row

A sweep directory resumes: points already in its ``summary.csv`` are skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattserve._lazy import lazy_exports

if TYPE_CHECKING:
    from wattserve.sweep.config import SweepConfig
    from wattserve.sweep.run import SweepResult, finish_sweep, run_sweep

__all__ = ["SweepConfig", "SweepResult", "finish_sweep", "run_sweep"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "wattserve.sweep.config": ("SweepConfig",),
        "wattserve.sweep.run": ("SweepResult", "finish_sweep", "run_sweep"),
    },
)
