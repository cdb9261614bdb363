"""Offline energy-optimal, quality-aware planning of a query batch across (model, device) targets.

``build_problem`` predicts every query's cost on every target from ``ModelFit``s; ``solve``
runs an exact MILP (HiGHS), an LP relaxation with rounding, a dual decomposition for very
large sets, or a greedy heuristic, and returns a ``Schedule``; ``baselines``/``compare`` put
simple plans beside it. ``read_queries`` / ``read_targets`` read the files ``wattserve plan``
takes (a query CSV; a targets YAML naming a fit per model and device)::

    from wattserve.plan import Target, build_problem, solve
    problem = build_problem(input_tokens, output_tokens, [Target(...), ...], quality_target=0.6)
    schedule = solve(problem)                 # Schedule: assignment, energy_j, mean_quality
"""

from typing import TYPE_CHECKING

from wattserve._lazy import lazy_exports
from wattserve.plan.baselines import baselines, compare
from wattserve.plan.problem import InfeasibleError, Problem, Target, build_problem
from wattserve.plan.solve import SOLVERS, explain, solve

if TYPE_CHECKING:
    from wattserve.plan.io import (
        QuerySet,
        quality_matrix,
        read_queries,
        read_targets,
        synth_queries,
    )

__all__ = [
    "SOLVERS",
    "InfeasibleError",
    "Problem",
    "QuerySet",
    "Target",
    "baselines",
    "build_problem",
    "compare",
    "explain",
    "quality_matrix",
    "read_queries",
    "read_targets",
    "solve",
    "synth_queries",
]

# the file readers load on first use: solving needs none of them
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "wattserve.plan.io": (
            "QuerySet",
            "quality_matrix",
            "read_queries",
            "read_targets",
            "synth_queries",
        )
    },
)
