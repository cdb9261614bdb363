"""Offline energy-optimal, quality-aware planning of a query batch across (model, device) targets.

``build_problem`` predicts every query's cost on every target from ``ModelFit``s; ``solve``
runs an exact MILP (HiGHS), an LP relaxation with rounding, a dual decomposition for very
large sets, or a greedy heuristic, and returns a ``Schedule``; ``baselines``/``compare`` put
simple plans beside it.
"""

from wattserve.plan.baselines import baselines, compare
from wattserve.plan.problem import InfeasibleError, Problem, Target, build_problem
from wattserve.plan.solve import SOLVERS, explain, solve

__all__ = [
    "SOLVERS",
    "InfeasibleError",
    "Problem",
    "Target",
    "baselines",
    "build_problem",
    "compare",
    "explain",
    "solve",
]
