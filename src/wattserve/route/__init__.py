"""Model multiplexer: scorers predict per-model quality, the ``Router`` picks the cheapest
model expected to answer well (or minimises cost - lambda x quality) over N >= 2 models.

Public API (stable, used by the gateway)::

    from wattserve.route import Router, parse_route_model
    router = Router.load("router.pkl")            # trained by `wattserve route train`
    decision = router.route(request)              # RouteDecision(model, reason, scores, costs)
    parse_route_model("router-tfidf-0.62")        # ("tfidf", 0.62); None for plain models
    router.with_threshold(0.62).route(request)
"""

from wattserve.route.calibrate import threshold_for_quality, threshold_for_share
from wattserve.route.data import LabelledPrompts, group_split, load_labelled_csvs, random_split
from wattserve.route.evaluate import evaluate_router
from wattserve.route.router import Router, parse_route_model
from wattserve.route.scorers import EmbeddingScorer, PriorScorer, TfidfScorer, make_scorer

__all__ = [
    "Router",
    "parse_route_model",
    "PriorScorer",
    "TfidfScorer",
    "EmbeddingScorer",
    "make_scorer",
    "LabelledPrompts",
    "load_labelled_csvs",
    "random_split",
    "group_split",
    "threshold_for_share",
    "threshold_for_quality",
    "evaluate_router",
]
