"""Router rules over N models, reasons and scores, cost specs, policy parsing,
persistence, calibration."""

from __future__ import annotations

import numpy as np
import pytest

from wattserve.errors import ConfigError
from wattserve.route import Router, parse_route_model, threshold_for_quality, threshold_for_share
from wattserve.types import ModelFit, Request


class TableScorer:
    """Predicted quality looked up by prompt text (a scorer with known outputs)."""

    def __init__(self, models, table):
        self.models = tuple(models)
        self.table = table

    def predict_quality(self, texts):
        return np.array([self.table[t] for t in texts], dtype=float)


MODELS = ("tiny", "small", "large")
COSTS = {"tiny": 1.0, "small": 5.0, "large": 40.0}
TABLE = {
    "easy": [0.9, 0.95, 0.99],
    "medium": [0.4, 0.8, 0.95],
    "hard": [0.1, 0.3, 0.7],
    "hopeless": [0.1, 0.2, 0.15],
}


def req(text, **kw):
    return Request(id=text, prompt=text, **kw)


def test_threshold_picks_the_cheapest_model_meeting_it():
    r = Router(MODELS, COSTS, TableScorer(MODELS, TABLE), threshold=0.75)
    assert [r.route(req(t)).model for t in ("easy", "medium", "hard")] == ["tiny", "small", "large"]
    d = r.route(req("medium"))
    assert d.scores == {"tiny": 0.4, "small": 0.8, "large": 0.95}
    assert d.costs == COSTS
    assert "cheapest" in d.reason and "0.800" in d.reason
    # nobody reaches 0.75 on "hopeless": the highest predicted quality wins
    d = r.route(req("hopeless"))
    assert d.model == "small" and "no model reaches" in d.reason
    assert r.with_threshold(0.35).route(req("medium")).model == "tiny"


def test_lambda_objective_trades_cost_against_quality():
    r = Router(MODELS, COSTS, TableScorer(MODELS, TABLE), objective="lambda", lam=10.0)
    # cost - 10 q: tiny 1-4=-3, small 5-8=-3 (tie -> first), large 40-9.5
    assert r.route(req("medium")).model == "tiny"
    assert (
        Router(MODELS, COSTS, TableScorer(MODELS, TABLE), objective="lambda", lam=100.0)
        .route(req("hard"))
        .model
        == "large"
    )


def test_costs_can_be_callables_or_model_fits():
    fit = ModelFit(
        model="large",
        device="cpu",
        quantity="energy_j",
        form="linear-interaction",
        params=("a0_in", "a1_out", "a2_in_out"),
        coefficients=(0.0, 1.0, 0.0),
    )
    costs = {"tiny": lambda r: 0.01 * r.max_tokens, "small": 5.0, "large": fit}
    r = Router(MODELS, costs, TableScorer(MODELS, TABLE), threshold=0.99)
    d = r.route(req("easy", max_tokens=300))
    assert d.costs == {"tiny": 3.0, "small": 5.0, "large": 300.0}
    assert d.model == "large"  # only large reaches 0.99
    assert r.expected_cost(req("easy", max_tokens=300)) == 300.0


def test_bad_configurations_are_config_errors():
    s = TableScorer(MODELS, TABLE)
    with pytest.raises(ConfigError):
        Router(("one",), {"one": 1}, s)
    with pytest.raises(ConfigError):
        Router(MODELS, {"tiny": 1, "small": 2}, s)
    with pytest.raises(ConfigError):
        Router(MODELS, {"tiny": 1, "small": 2, "large": "cheap"}, s)
    with pytest.raises(ConfigError):
        Router(("a", "b"), {"a": 1, "b": 2}, s)  # scorer trained for other models


@pytest.mark.parametrize(
    "model,expected",
    [
        ("router-tfidf-0.62", ("tfidf", 0.62)),
        ("router-tfidf-1", ("tfidf", 1.0)),
        ("router-mmlu-tfidf", ("mmlu-tfidf", None)),
        ("router-mmlu-tfidf-.5", ("mmlu-tfidf", 0.5)),
        ("gpt-4-1106-preview", None),
    ],
)
def test_routing_policy_in_the_model_field(model, expected):
    assert parse_route_model(model) == expected


@pytest.mark.parametrize("model", ["router-", "router-tfidf-1.5", "router-bad name"])
def test_malformed_routing_models_are_rejected(model):
    with pytest.raises(ConfigError):
        parse_route_model(model)


def test_save_and_load_round_trip(tmp_path):
    r = Router(MODELS, COSTS, TableScorer(MODELS, TABLE), threshold=0.75, name="t")
    r.save(tmp_path / "r.pkl")
    back = Router.load(tmp_path / "r.pkl")
    assert back.route(req("medium")) == r.route(req("medium"))
    assert (
        Router.from_file(tmp_path / "r.pkl", costs={"large": 1.0}).route(req("medium")).model
        == "large"
    )
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ConfigError):
        Router.load(tmp_path / "junk.pkl")
    with pytest.raises(ConfigError):
        Router.load(tmp_path / "missing.pkl")


def test_calibration_to_a_share_and_to_a_quality():
    rng = np.random.default_rng(0)
    n = 400
    texts = [f"p{i}" for i in range(n)]
    qw = rng.random(n)
    table = {t: [w, 0.9] for t, w in zip(texts, qw, strict=True)}
    r = Router(
        ("weak", "strong"), {"weak": 1.0, "strong": 10.0}, TableScorer(("weak", "strong"), table)
    )
    t = threshold_for_share(r, texts, 0.3)
    share = np.mean(
        [m == "strong" for m in r.with_threshold(t).route_many([req(x) for x in texts])]
    )
    assert share == pytest.approx(0.3, abs=0.01)
    # labels: the weak model is right exactly when its predicted quality is above 0.5
    labels = np.column_stack([(qw > 0.5).astype(float), np.ones(n)])
    t = threshold_for_quality(r, texts, labels, target_quality=1.0)
    picks = r.with_threshold(t).route_many([req(x) for x in texts])
    assert all(m == "strong" for m, w in zip(picks, qw, strict=True) if w <= 0.5)
    assert np.mean([m == "strong" for m in picks]) == pytest.approx(np.mean(qw <= 0.5), abs=0.01)
    with pytest.raises(ConfigError):
        threshold_for_quality(r, texts, labels * 0.5, target_quality=0.9)


def test_gain_objective_upgrades_only_when_the_quality_gain_is_worth_it():
    table = {
        "both-fail": [0.1, 0.15, 0.2],  # weak is bad but nobody is better: stay cheap
        "big-gain": [0.3, 0.4, 0.95],
        "mid-gain": [0.5, 0.9, 0.92],
    }
    costs = {"tiny": 1.0, "small": 5.0, "large": 41.0}  # normalised: 0, 0.1, 1
    r = Router(MODELS, costs, TableScorer(MODELS, table), objective="gain", threshold=0.5)
    assert r.route(req("both-fail")).model == "tiny"
    assert r.route(req("big-gain")).model == "large"  # 0.95 - 0.5 > 0.4 - 0.05 > 0.3
    d = r.route(req("mid-gain"))
    assert d.model == "small" and "gain worth its cost" in d.reason  # 0.9 - 0.05 beats 0.92 - 0.5
    assert r.with_threshold(0.0).route(req("mid-gain")).model == "large"
    assert (
        r.with_threshold(1.0).route(req("big-gain")).model == "tiny"
    )  # 0.3 vs 0.4-0.1 (tie -> cheaper)
    # calibration works on the gain knob too
    texts = list(table)
    t = threshold_for_share(r, texts, 1 / 3)
    assert r.with_threshold(t).route_many([req(x) for x in texts]).count("large") == 1


def test_embedding_and_tfidf_scorers_learn_which_prompts_the_weak_model_fails():
    from wattserve.cache.semantic import HashingEmbedder
    from wattserve.route import EmbeddingScorer, TfidfScorer

    rng = np.random.default_rng(1)
    words = ["integral", "derivative", "matrix", "eigenvalue", "limit"]
    easy = ["capital", "river", "author", "painting", "festival"]
    texts, labels = [], []
    for i in range(120):
        hard = i % 2 == 0
        w = rng.choice(words if hard else easy, size=3)
        texts.append(
            " ".join(w) + f" question {i} = {i * 7}" if hard else " ".join(w) + f" question {i}"
        )
        labels.append([0.0 if hard else 1.0, 1.0])
    labels = np.array(labels)
    for scorer in (EmbeddingScorer(embedder=HashingEmbedder()), TfidfScorer()):
        scorer.fit(texts[:100], labels[:100], ("weak", "strong"))
        q = scorer.predict_quality(texts[100:])
        hard = np.arange(100, 120) % 2 == 0
        assert q.shape == (20, 2)
        assert q[~hard, 0].min() > q[hard, 0].max()  # weak predicted worse on every hard prompt
        assert np.allclose(q[:, 1], 1.0)  # one class only: a constant prediction
