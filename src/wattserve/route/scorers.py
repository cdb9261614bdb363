"""Scorers: predicted probability that each model answers a prompt well.

A scorer is anything with ``predict_quality(texts) -> array (n_texts, n_models)`` and a
``models`` tuple (see ``wattserve.protocols.Scorer``). Here:

- ``PriorScorer``: each model's mean training quality, the same for every prompt
  (the "no information" baseline; routing with it is random routing).
- ``TfidfScorer``: TF-IDF word and character n-grams + one logistic regression per model
  (scikit-learn), with hand features (length, digits, maths symbols) that carry over to
  unseen subjects better than vocabulary does.
- ``EmbeddingScorer``: logistic regression on sentence embeddings from an offline
  embedder (``wattserve.cache.semantic``), when the ``semantic`` extra is installed.
- ``embed-options`` and ``tfidf-embed`` (``wattserve.route.embedding_scorer``): embeddings
  of the prompt, its question stem and its answer options with option-similarity
  features, alone or blended with ``TfidfScorer`` (the best on unseen MMLU subjects).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from wattserve.errors import ConfigError


class PriorScorer:
    name = "prior"

    def __init__(self) -> None:
        self.models: tuple[str, ...] = ()
        self.prior: np.ndarray | None = None

    def fit(self, texts: Sequence[str], labels: np.ndarray, models: Sequence[str]) -> PriorScorer:
        self.models = tuple(models)
        self.prior = np.asarray(labels, dtype=float).mean(axis=0)
        return self

    def predict_quality(self, texts: Sequence[str]) -> np.ndarray:
        if self.prior is None:
            raise ConfigError("scorer is not trained")
        return np.tile(self.prior, (len(texts), 1))


_NUM = re.compile(r"\d")
_MATH = re.compile(r"[=+\-*/^<>∫√πΣ]")


def text_features(texts: Sequence[str]) -> np.ndarray:
    """Subject-independent shape features: log length, digit share, maths-symbol share, lines."""
    out = np.empty((len(texts), 5))
    for i, t in enumerate(texts):
        n = max(len(t), 1)
        out[i] = (
            np.log1p(len(t)),
            len(_NUM.findall(t)) / n,
            len(_MATH.findall(t)) / n,
            np.log1p(t.count("\n")),
            np.log1p(len(t.split())),
        )
    return out


class _PerModelLogistic:
    """One logistic regression per model over a feature matrix.

    Correct/incorrect labels train it as usual. Graded labels ``y`` in [0, 1] train it on
    soft targets: each prompt appears once as a success with weight ``y`` and once as a
    failure with weight ``1 - y`` (the cross-entropy with the graded label), so the
    prediction is the expected normalised score.
    """

    def __init__(self, C: float) -> None:
        self.C = C
        self.clfs: list[Any] = []
        self.constant: list[float | None] = []

    def fit(self, X: Any, labels: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        y_all = np.asarray(labels, dtype=float)
        self.clfs, self.constant = [], []
        for m in range(y_all.shape[1]):
            y = y_all[:, m]
            if y.min() == y.max():
                self.clfs.append(None)  # one value only: a constant prediction
                self.constant.append(float(y.mean()))
                continue
            clf = LogisticRegression(C=self.C, solver="liblinear", max_iter=1000)
            if np.isin(y, (0.0, 1.0)).all():
                clf.fit(X, y.astype(int))
            else:
                clf.fit(
                    _stack(X, X),
                    np.r_[np.ones(len(y)), np.zeros(len(y))].astype(int),
                    sample_weight=np.r_[y, 1.0 - y] + 1e-12,
                )
            self.clfs.append(clf)
            self.constant.append(None)

    def predict(self, X: Any, n: int) -> np.ndarray:
        cols = []
        for clf, const in zip(self.clfs, self.constant, strict=True):
            cols.append(np.full(n, const) if clf is None else clf.predict_proba(X)[:, 1])
        return np.column_stack(cols)


def _stack(a: Any, b: Any) -> Any:
    """Rows of ``a`` then ``b`` (dense arrays or sparse matrices)."""
    from scipy import sparse

    blocks: list[Any] = [a, b]
    if sparse.issparse(a):
        return sparse.vstack(blocks, format="csr")
    return np.vstack(blocks)


class TfidfScorer:
    name = "tfidf"

    def __init__(
        self,
        C: float = 1.0,
        max_features: int = 50_000,
        char_ngrams: bool = False,
        shape_features: bool = True,
    ) -> None:
        self.C = C
        self.max_features = max_features
        self.char_ngrams = char_ngrams
        self.shape_features = shape_features
        self.models: tuple[str, ...] = ()
        self._vec: Any = None
        self._scale: Any = None
        self._lr = _PerModelLogistic(C)

    def _features(self, texts: Sequence[str], fit: bool) -> Any:
        from scipy import sparse

        parts = [self._vec.fit_transform(texts) if fit else self._vec.transform(texts)]
        if self.shape_features:
            f = text_features(texts)
            if fit:
                self._scale = (f.mean(axis=0), f.std(axis=0) + 1e-9)
            parts.append(sparse.csr_matrix((f - self._scale[0]) / self._scale[1]))
        return sparse.hstack(parts).tocsr()

    def fit(self, texts: Sequence[str], labels: np.ndarray, models: Sequence[str]) -> TfidfScorer:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion

        if len(texts) < 10:
            raise ConfigError("need at least 10 labelled prompts to train a scorer")
        self.models = tuple(models)
        word = TfidfVectorizer(
            ngram_range=(1, 2), sublinear_tf=True, min_df=2, max_features=self.max_features
        )
        if self.char_ngrams:
            char = TfidfVectorizer(
                analyzer="char_wb",
                ngram_range=(3, 5),
                sublinear_tf=True,
                min_df=3,
                max_features=self.max_features,
            )
            self._vec = FeatureUnion([("word", word), ("char", char)])
        else:
            self._vec = word
        self._lr.fit(self._features(list(texts), fit=True), labels)
        return self

    def predict_quality(self, texts: Sequence[str]) -> np.ndarray:
        if self._vec is None:
            raise ConfigError("scorer is not trained")
        texts = list(texts)
        return self._lr.predict(self._features(texts, fit=False), len(texts))


class EmbeddingScorer:
    """Logistic regression on offline sentence embeddings (plus shape features)."""

    name = "embed"

    def __init__(self, embedder: Any = None, C: float = 1.0) -> None:
        self.embedder = embedder
        self.C = C
        self.models: tuple[str, ...] = ()
        self._lr = _PerModelLogistic(C)
        self._scale: Any = None

    def _features(self, texts: Sequence[str], fit: bool) -> np.ndarray:
        if self.embedder is None:
            from wattserve.cache.semantic import default_embedder

            self.embedder = default_embedder()
        e = np.asarray(self.embedder.embed(list(texts)), dtype=float)
        f = text_features(texts)
        if fit:
            self._scale = (f.mean(axis=0), f.std(axis=0) + 1e-9)
        return np.hstack([e, (f - self._scale[0]) / self._scale[1]])

    def fit(
        self, texts: Sequence[str], labels: np.ndarray, models: Sequence[str]
    ) -> EmbeddingScorer:
        self.models = tuple(models)
        self._lr.fit(self._features(texts, fit=True), labels)
        return self

    def predict_quality(self, texts: Sequence[str]) -> np.ndarray:
        return self._lr.predict(self._features(texts, fit=False), len(texts))

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["embedder"] = None  # reloaded offline on first use
        return d


def _tfidf_words(**kwargs: Any) -> TfidfScorer:
    """TF-IDF vocabulary only (no shape features): the ablation that shows what transfers."""
    return TfidfScorer(shape_features=False, **kwargs)


def _embed_options(**kwargs: Any) -> Any:
    from wattserve.route.embedding_scorer import OptionEmbeddingScorer

    return OptionEmbeddingScorer(**kwargs)


def _tfidf_embed(**kwargs: Any) -> Any:
    from wattserve.route.embedding_scorer import tfidf_embed

    return tfidf_embed(**kwargs)


SCORERS: dict[str, Callable[..., Any]] = {
    "prior": PriorScorer,
    "tfidf": TfidfScorer,
    "tfidf-words": _tfidf_words,
    "embed": EmbeddingScorer,
    "embed-options": _embed_options,
    "tfidf-embed": _tfidf_embed,
}


def make_scorer(name: str, **kwargs: Any) -> Any:
    if name not in SCORERS:
        raise ConfigError(f"unknown scorer {name!r}; choose one of {', '.join(SCORERS)}")
    return SCORERS[name](**kwargs)
