"""Load-generating benchmarks: workload -> arrival schedule -> runner -> metrics -> run directory.

Public API (names load lazily, so ``import wattserve.bench`` imports neither numpy nor pydantic)::

    from wattserve.bench import BenchConfig, run_benchmark, load_points
    cfg = BenchConfig(model="mock", base_url="http://127.0.0.1:8000/v1", max_concurrencies=[1, 8])
    record = run_benchmark(cfg)               # RunRecord; the run directory holds run.json etc.
    record.summary.output_throughput          # of the last point; load_points(run_dir) has all
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattserve._lazy import lazy_exports

if TYPE_CHECKING:
    from wattserve.bench.benchmark import arun_benchmark, resume_benchmark, run_benchmark
    from wattserve.bench.config import BenchConfig
    from wattserve.bench.loads import (
        Concurrent,
        ConstantRate,
        GammaRate,
        LoadPoint,
        Poisson,
        make_pattern,
        make_points,
    )
    from wattserve.bench.metrics import summarize
    from wattserve.bench.pareto import Recommendation, pareto_mask, recommend
    from wattserve.bench.point import PointResult, load_points
    from wattserve.bench.runner import run_schedule
    from wattserve.bench.store import catalog_list, find_run, load_run_json, read_requests
    from wattserve.bench.workloads import Workload, build_workload, random_workload

__all__ = [
    "BenchConfig",
    "Concurrent",
    "ConstantRate",
    "GammaRate",
    "LoadPoint",
    "Poisson",
    "PointResult",
    "Recommendation",
    "Workload",
    "arun_benchmark",
    "build_workload",
    "catalog_list",
    "find_run",
    "load_points",
    "load_run_json",
    "make_pattern",
    "make_points",
    "pareto_mask",
    "random_workload",
    "read_requests",
    "recommend",
    "resume_benchmark",
    "run_benchmark",
    "run_schedule",
    "summarize",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "wattserve.bench.benchmark": ("arun_benchmark", "resume_benchmark", "run_benchmark"),
        "wattserve.bench.config": ("BenchConfig",),
        "wattserve.bench.loads": (
            "Concurrent",
            "ConstantRate",
            "GammaRate",
            "LoadPoint",
            "Poisson",
            "make_pattern",
            "make_points",
        ),
        "wattserve.bench.metrics": ("summarize",),
        "wattserve.bench.pareto": ("Recommendation", "pareto_mask", "recommend"),
        "wattserve.bench.point": ("PointResult", "load_points"),
        "wattserve.bench.runner": ("run_schedule",),
        "wattserve.bench.store": ("catalog_list", "find_run", "load_run_json", "read_requests"),
        "wattserve.bench.workloads": ("Workload", "build_workload", "random_workload"),
    },
)
